//! Caching for Tower services: a local tier on moka, a remote tier shared
//! by many processes (Redis), and defences against penetration, stampedes
//! (breakdown) and avalanches.
//!
//! (Work in progress: the layer lands in the next commits; the remote
//! tier's contract and value format are here.)
//!
//! ```
//! use rampart_cache::remote::Codec;
//!
//! let codec = Codec::new(1);
//! let bytes = codec.encode(&42u64).unwrap();
//! assert_eq!(codec.decode::<u64>(&bytes).unwrap(), 42);
//! ```

pub mod bloom;
pub mod http;
pub mod remote;
