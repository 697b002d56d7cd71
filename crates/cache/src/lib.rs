//! Caching for Tower services: a local tier on moka, a remote tier shared
//! by many processes (Redis), and defences against penetration, stampedes
//! (breakdown) and avalanches.
//!
//! ```
//! use rampart_cache::CacheConfig;
//! use std::time::Duration;
//! use tower::{ServiceBuilder, ServiceExt, service_fn};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), rampart_core::BoxError> {
//! let cache = CacheConfig::new()
//!     .name("users")
//!     .max_capacity(10_000)                              // entries
//!     .ttl(Duration::from_secs(60))                      // ± 10 % jitter by default
//!     .negative_ttl(Duration::from_secs(5))              // "not found" lives 5 s
//!     .stale_while_revalidate(Duration::from_secs(10))   // hot keys never block on expiry
//!     .builder(|id: &u64| Some(*id))                     // the request is the key
//!     .negative(|user: &Option<String>| user.is_none())  // Ok(None) means "not found"
//!     .build()?;
//! let handle = cache.handle();
//!
//! let users = ServiceBuilder::new()
//!     .layer(cache)
//!     .service(service_fn(|id: u64| async move {
//!         // the database
//!         Ok::<_, std::io::Error>((id < 100).then(|| format!("user {id}")))
//!     }));
//!
//! assert_eq!(users.clone().oneshot(7).await?, Some("user 7".to_string())); // loaded
//! assert_eq!(users.clone().oneshot(7).await?, Some("user 7".to_string())); // cached
//! assert_eq!(users.clone().oneshot(500).await?, None);                     // loaded
//! assert_eq!(users.oneshot(500).await?, None);                             // cached "not found"
//! let stats = handle.stats();
//! assert_eq!((stats.loads, stats.hits, stats.negative_hits), (2, 1, 1));
//! # Ok(())
//! # }
//! ```
//!
//! # What it protects against
//!
//! - **Load.** Repeated reads of the same key reach the upstream once per
//!   TTL instead of once per request.
//! - **Breakdown (stampede).** When a key is missing, every concurrent
//!   request for it waits for **one** upstream call (moka's
//!   `try_get_with`): 1,000 concurrent misses make 1 call. A failed load
//!   goes to every waiter as a [`LoadFailed`] sharing the one error, and is
//!   not cached.
//! - **Hot-key expiry.** With `stale_while_revalidate` an expired entry is
//!   served at once while one background call refreshes it; with
//!   `early_refresh` (XFetch) a hot entry is refreshed shortly *before* it
//!   expires, with a probability rising as expiry nears.
//! - **Avalanche.** TTLs are spread by `ttl_jitter` (± 10 % by default) so
//!   that entries loaded together do not expire together.
//! - **Penetration.** With [`known_keys`](CacheBuilder::known_keys), a
//!   bloom filter of the keys that exist ([`bloom::KnownKeys`], rebuilt in
//!   generations from a [`bloom::KeySource`]) answers a key it rejects
//!   "absent" at once, without touching either tier or the upstream. "Not
//!   found" answers that get past it (your
//!   [`negative`](CacheBuilder::negative) predicate: `Ok(None)`, a 404)
//!   are cached for `negative_ttl`, so repeated requests for a missing key
//!   do not all reach the upstream.
//! - **Memory.** The local tier is bounded by entries or by weight (bytes,
//!   with a [`weigher`](CacheBuilder::weigher)); values heavier than
//!   `max_entry_weight` are passed on whole and not cached.
//!
//! # Settings
//!
//! [`CacheConfig`] (setters or TOML):
//!
//! | setting | default | meaning |
//! |---|---|---|
//! | `name` | `""` | the `name` label of metrics and logs |
//! | `max_capacity` | 10,000 | entries, or total weight with a weigher |
//! | `ttl` | 5 min | freshness of a loaded value |
//! | `tti` | none | drop an entry unread for this long |
//! | `ttl_jitter` | 0.1 | TTLs spread over `ttl × (1 ± jitter)`, `0.0..1.0` |
//! | `negative_ttl` | 10 s | freshness of a "not found" answer |
//! | `max_entry_weight` | none | heavier values are not cached (needs a weigher) |
//! | `stale_while_revalidate` | none | serve stale this long after the TTL while one refresh runs |
//! | `early_refresh` | none | XFetch β (1.0 usual): refresh hot keys before expiry |
//! | `log_interval` | 10 s | at most one remote-failure log line per interval |
//! | `seed` | random | seeds jitter and early refresh, for tests |
//!
//! [`CacheBuilder`] (functions):
//!
//! | function | default | meaning |
//! |---|---|---|
//! | key (`builder`/`builder_with`) | required | `Fn(&Req) -> Option<K>`; `None` bypasses the cache |
//! | `to_value`, `from_value` (`builder_with`) | clone the response | store something other than the response |
//! | [`negative`](CacheBuilder::negative) | none | which values mean "not found" |
//! | [`lifetime`](CacheBuilder::lifetime) | [`Lifetime::Default`] | a value's own TTL, or [`Lifetime::DoNotCache`] |
//! | [`weigher`](CacheBuilder::weigher) | weight 1 | weight of an entry (bytes) |
//! | [`remote`](CacheBuilder::remote) | none | a [`RemoteCache`](remote::RemoteCache) tier shared by processes |
//!
//! Bad values are refused by [`CacheBuilder::build`] with a
//! [`ConfigError`](rampart_core::ConfigError) naming the field.
//!
//! # Two tiers
//!
//! With [`remote`](CacheBuilder::remote), a local miss reads the remote
//! store before the upstream (inside the single flight: one remote read
//! per key), a load fills both tiers (the remote write runs in the
//! background), and [`Handle::invalidate`] deletes the key locally and
//! remotely and broadcasts it, so every other process drops its local
//! copy. Any remote failure, and bytes that do not decode (another writer,
//! another schema version of [`Codec`](remote::Codec)), is a miss:
//! counted, logged at most once per `log_interval`, never the caller's
//! error. See `docs/cache.md` for the read and write paths.
//!
//! # HTTP adapter
//!
//! [`http::HttpCacheLayer`] puts this cache in front of an HTTP service,
//! with [`http::HttpCachePolicy`] (RFC 9111, shared cache) deciding what
//! is stored: `GET` and `HEAD` responses, keyed by method, URI and the
//! configured `Vary` request headers, for as long as `s-maxage`,
//! `max-age` or `Expires` say (capped at `max_ttl`); never `no-store`,
//! `private`, `no-cache` or `Set-Cookie` responses (unless told to), nor
//! other methods, which bypass the cache. Every hit carries an `Age`
//! header (the upstream's plus the time stored, replacing the stored one).
//!
//! ```
//! use bytes::Bytes;
//! use http_body_util::{BodyExt, Full};
//! use rampart_cache::CacheConfig;
//! use rampart_cache::http::{HttpCacheLayer, HttpCachePolicy};
//! use tower::{ServiceBuilder, ServiceExt, service_fn};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), rampart_core::BoxError> {
//! let cache = HttpCacheLayer::new(
//!     CacheConfig::new().name("pages").max_capacity(10_000),
//!     HttpCachePolicy::new()
//!         .vary([http::header::ACCEPT_ENCODING]) // one entry per encoding
//!         .max_body_bytes(256 * 1024),           // larger bodies stream through
//! )?;
//! let handle = cache.handle();
//!
//! let site = ServiceBuilder::new()
//!     .layer(cache)
//!     .service(service_fn(|_req: http::Request<Full<Bytes>>| async {
//!         let res = http::Response::builder()
//!             .header("cache-control", "public, max-age=60")
//!             .body(Full::new(Bytes::from("hello")))?;
//!         Ok::<_, http::Error>(res)
//!     }));
//!
//! let get = || http::Request::get("https://example.com/").body(Full::default());
//! let res = site.clone().oneshot(get()?).await?;          // from the upstream
//! assert!(res.headers().get("age").is_none());
//! let res = site.oneshot(get()?).await?;                  // from the cache
//! assert_eq!(res.headers()["age"], "0");
//! assert_eq!(res.into_body().collect().await?.to_bytes(), "hello");
//! assert_eq!(handle.stats().hits, 1);
//! # Ok(())
//! # }
//! ```
//!
//! - Under the generic layer, a small service dates each upstream
//!   response and asks the policy about it; only a storable one has its
//!   body collected, up to `max_body_bytes`. A body over the limit (by
//!   `Content-Length`, size hint, or found while collecting) reaches the
//!   caller whole, as the bytes read so far then the rest streamed once,
//!   and is not stored. Responses come as
//!   [`HttpCacheBody`](http::HttpCacheBody): whole (hits, collected bodies,
//!   exact size hint) or streamed.
//! - What is stored is a [`StoredResponse`](http::StoredResponse), for
//!   exactly its remaining freshness (no jitter); a response marked
//!   `must-revalidate`, `proxy-revalidate` or `s-maxage` is never served
//!   stale, even with `stale_while_revalidate`
//!   ([`Lifetime::ForNoStale`]).
//! - Concurrent misses of one key make one upstream call, as elsewhere;
//!   a response that is not storable (`private`, say) is never handed to
//!   the other waiters: each sends its own request.
//! - [`HttpCacheBuilder`](http::HttpCacheBuilder) adds a byte bound
//!   (`weigh_bytes`: `max_capacity` and `max_entry_weight` in bytes) and
//!   the remote tier (`StoredResponse` is serde; keys are named
//!   `prefix` + the key's encoding in hex).
//! - Not done: revalidation (conditional requests), so `no-cache`
//!   responses are not stored; request directives other than `no-store`.
//!   See [`http`] for the policy's rules.
//!
//! # Behaviour under overload
//!
//! - A hit costs one moka lookup, a few atomics and one allocation (the
//!   boxed response future); it takes no lock.
//! - Misses of one key coalesce: however many requests miss it at once,
//!   the upstream sees one call; the waiters hold no upstream resource.
//!   Misses of *distinct* keys are not limited here: put a bulkhead or a
//!   rate limit under the cache to bound them.
//! - A stale hit answers at once; its refresh is one spawned task per key
//!   at a time (a second one starts only after a failure).
//! - The local tier never exceeds `max_capacity` for long: moka evicts
//!   the least valuable entries (TinyLFU) as it applies writes.
//! - A slow or dead remote store costs each miss at most the store's own
//!   timeout (the Redis implementation's breaker and timeout); fills never
//!   delay the caller.
//!
//! # Errors
//!
//! The services' error type is [`BoxError`](rampart_core::BoxError).
//!
//! | error | when |
//! |---|---|
//! | [`LoadFailed`] | the load this request waited for (its own or another's) failed; [`LoadFailed::inner`] is the upstream's error, shared |
//! | the inner service's error, boxed | a request the key function bypassed |
//!
//! # Observability
//!
//! Counters on [`Handle::stats`] ([`Snapshot`]) and through the `metrics`
//! facade, labelled `name`: `rampart_cache_hits_total`,
//! `negative_hits_total`, `misses_total`, `stale_served_total`,
//! `bypassed_total`, `loads_total`, `load_failures_total`,
//! `refreshes_total`, `refresh_failures_total`, `not_stored_total`
//! (`reason` = `oversized` | `uncacheable`), `evictions_total` (`reason` =
//! `expired` | `size`), `invalidations_total`, `remote_hits_total`,
//! `remote_misses_total`, `remote_errors_total` (`reason` = `store` |
//! `decode`), all prefixed `rampart_cache_`.
//!
//! # Time
//!
//! Freshness (TTL, TTI, stale window, jitter, early refresh) is kept by
//! each entry on tokio's clock, so it can be tested with paused time.
//! moka's own expiry, on the wall clock, only frees the memory of entries
//! that can no longer be served. Loads on a miss and refreshes need a
//! Tokio runtime (refreshes and remote fills are spawned).
//!
//! # Differences from other caches
//!
//! - moka alone has single-flight loading but no stale-while-revalidate,
//!   negative caching, jitter, stats or remote tier.
//! - `tower-resilience`'s cache is a count-bounded LRU without single
//!   flight or per-entry lifetimes.

pub mod bloom;
mod builder;
mod config;
mod entry;
mod error;
pub mod future;
mod handle;
pub mod http;
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

// The guide's Rust examples run as doctests.
#[cfg(doctest)]
#[doc = include_str!("../../../docs/cache.md")]
struct Guide;
