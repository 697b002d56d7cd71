//! Service registration and discovery, and a config center, for Tower
//! services (work in progress: see the modules).
//!
//! ```
//! // The registry and the config center are built in the next commits.
//! assert_eq!(2 + 2, 4);
//! ```

pub mod config;
pub mod registry;
