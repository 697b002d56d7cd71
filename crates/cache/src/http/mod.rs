//! HTTP caching policy (RFC 9111) for caching `GET` and `HEAD` responses.
//!
//! [`HttpCachePolicy`] decides; a cache layer acts. For each request it
//! gives the key to look up and store under ([`HttpCachePolicy::cache_key`],
//! `None` = bypass the cache), for each response whether and how long to
//! store it ([`HttpCachePolicy::freshness`]) and what to do with its body
//! ([`HttpCachePolicy::body_plan`]), and on each hit the `Age` to send
//! ([`age_header`]).
//!
//! ```
//! use std::time::{Duration, SystemTime};
//! use rampart_cache::http::{HttpCachePolicy, Reason, RequestFacts, Storability, age_header};
//!
//! let policy = HttpCachePolicy::new()
//!     .vary([http::header::ACCEPT_ENCODING])
//!     .max_ttl(Duration::from_secs(600));
//! policy.validate().unwrap();
//!
//! // The request: its key, and the facts the response rules need, taken
//! // before it is handed to the upstream.
//! let req = http::Request::get("https://example.com/items?page=2")
//!     .header("accept-encoding", "gzip")
//!     .body(())
//!     .unwrap();
//! let key = policy.cache_key(&req).expect("a GET is cacheable");
//! let facts = RequestFacts::from(&req);
//!
//! // The response: stored for s-maxage (a shared cache) minus its Age.
//! let (res, _body) = http::Response::builder()
//!     .header("cache-control", "public, max-age=60, s-maxage=300")
//!     .header("vary", "Accept-Encoding")
//!     .header("age", "100")
//!     .body("...")
//!     .unwrap()
//!     .into_parts();
//! let now = SystemTime::now();
//! let Storability::Store { ttl, upstream_age, .. } = policy.freshness(facts, &res, now) else {
//!     panic!("storable");
//! };
//! assert_eq!(ttl, Duration::from_secs(200));
//!
//! // A hit 5 s later says the response is 105 s old.
//! assert_eq!(age_header(now, now + Duration::from_secs(5), upstream_age), "105");
//! assert_eq!(
//!     key.to_string(),
//!     "GET https://example.com/items?page=2 accept-encoding=gzip"
//! );
//!
//! // What is not stored says why.
//! let (cookie, _) = http::Response::builder()
//!     .header("cache-control", "max-age=60")
//!     .header("set-cookie", "session=1")
//!     .body(())
//!     .unwrap()
//!     .into_parts();
//! assert_eq!(policy.freshness(facts, &cookie, now), Storability::DoNotStore(Reason::SetCookie));
//!
//! // POST, and requests that say `no-store`, bypass the cache.
//! let post = http::Request::post("/items").body(()).unwrap();
//! assert!(policy.cache_key(&post).is_none());
//! ```
//!
//! # The rules, and where they depart from RFC 9111
//!
//! - Only `GET` and `HEAD` are cached, each under its own key: a `HEAD`
//!   is not answered from a stored `GET`.
//! - The key is the method, the target URI (scheme and host lower-cased;
//!   the `Host` header when the URI has no authority) and the value of
//!   each configured `vary` request header, a missing header distinct from
//!   an empty one. The same resource asked in origin form
//!   (`/p` + `Host`) and absolute form (`https://h/p`, as HTTP/2 gives
//!   it) gets two keys: fewer hits, never a wrong one.
//! - The policy is a shared cache unless `cache_private` is set: `private`
//!   responses and answers to `Authorization` requests (without `public`,
//!   `s-maxage` or `must-revalidate`) are not stored, and `s-maxage` wins
//!   over `max-age`, which wins over `Expires`.
//! - The cache never revalidates (no conditional requests), so a response
//!   with `no-cache`, which may only be served after revalidation, is not
//!   stored. `must-revalidate` and `proxy-revalidate` are honoured by never
//!   serving the response stale ([`Storability::Store`]'s `no_stale`).
//! - A response whose `Vary` names a header outside the `vary` list is not
//!   stored (the key could not tell its variants apart); `Vary: *` never.
//! - Request directives other than `no-store` (`no-cache`, `max-age`,
//!   `min-fresh`, `only-if-cached`, `Pragma`) are not interpreted: a fresh
//!   stored response is served.
//! - A response of a status outside `cacheable_statuses` is never stored,
//!   even with an explicit lifetime; one inside it without a lifetime only
//!   with `default_ttl` (heuristic freshness is off by default).
//! - `Cache-Control` is parsed forgivingly: directive names in any case,
//!   quoted arguments, every field line; a repeated directive takes its
//!   most restrictive value and a malformed `max-age` or `s-maxage` reads
//!   as 0 (stale at once, not stored).
//! - Bodies are collected up to `max_body_bytes`; a larger one reaches the
//!   caller whole and is not stored ([`BodyPlan`]).

mod adapter;
mod body;
mod cache_control;
mod config;
mod freshness;
mod key;

pub use adapter::{HttpCache, HttpCacheBody, HttpCacheBuilder, HttpCacheLayer, StoredResponse};
pub use body::BodyPlan;
pub use config::{
    DEFAULT_MAX_BODY_BYTES, DEFAULT_MAX_TTL, HEURISTICALLY_CACHEABLE, HttpCachePolicy,
};
pub use freshness::{Reason, Storability, age_header};
pub use key::{HttpCacheKey, RequestFacts};
