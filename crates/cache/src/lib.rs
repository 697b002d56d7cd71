//! Caching for Tower services: a local tier on moka, a remote tier shared
//! by many processes (Redis), and defences against penetration, stampedes
//! (breakdown) and avalanches.
//!
//! ```
//! use rampart_cache::remote::Codec;
//!
//! let codec = Codec::new(1);
//! let bytes = codec.encode(&42u64).unwrap();
//! assert_eq!(codec.decode::<u64>(&bytes).unwrap(), 42);
//! ```

mod builder;
mod config;
mod entry;
mod error;
pub mod future;
mod handle;
mod layer;
pub mod remote;
mod service;
mod shared;
mod stats;
mod two_tier;

pub use builder::CacheBuilder;
pub use config::{CacheConfig, MAX_EARLY_REFRESH};
pub use entry::Lifetime;
pub use error::LoadFailed;
pub use handle::Handle;
pub use layer::CacheLayer;
pub use service::Cache;
pub use stats::Snapshot;
