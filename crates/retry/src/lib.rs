//! Retries for Tower services, configured by data.
//!
//! A retry turns a transient failure (a dropped connection, a 503 from an
//! instance being replaced) into a success the caller never sees. Retries
//! also multiply load on a dependency that is already struggling, so this
//! layer retries only what the classifier allows, only requests that can
//! be replayed, after a backoff with jitter, within a deadline, and within
//! a budget shared across callers.
//!
//! ```
//! use std::time::Duration;
//! use rampart_retry::{Backoff, RetryConfig};
//! use std::sync::Arc;
//! use std::sync::atomic::{AtomicU32, Ordering};
//! use tower::{ServiceBuilder, ServiceExt, service_fn};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), rampart_core::BoxError> {
//! let layer = RetryConfig::new()
//!     .name("inventory")
//!     .max_attempts(3)
//!     .backoff(Backoff::Exponential {
//!         base: Duration::from_millis(1),
//!         cap: Duration::from_millis(10),
//!     })
//!     .per_try_timeout(Duration::from_secs(1))
//!     .deadline(Duration::from_secs(5))
//!     .build()?;
//!
//! // Fails twice, then answers.
//! let calls = Arc::new(AtomicU32::new(0));
//! let seen = Arc::clone(&calls);
//! let svc = ServiceBuilder::new()
//!     .layer(layer)
//!     .service(service_fn(move |n: u32| {
//!         let call = seen.fetch_add(1, Ordering::SeqCst);
//!         async move { if call < 2 { Err("flaky") } else { Ok(n * 2) } }
//!     }));
//!
//! assert_eq!(svc.oneshot(21).await?, 42);
//! assert_eq!(calls.load(Ordering::SeqCst), 3);
//! # Ok(()) }
//! ```
//!
//! For HTTP, [`RetryLayer::for_http`] retries connect errors, timeouts,
//! 429, 502, 503 and 504 (honouring `Retry-After`), and only requests with
//! an idempotent method or an `Idempotency-Key` header.
//!
//! # What it does
//!
//! | rule | setting |
//! |---|---|
//! | tries in all (1 = no retry) | [`RetryConfig::max_attempts`] |
//! | backoff: constant, exponential, full jitter, decorrelated jitter, each capped; seeded RNG | [`RetryConfig::backoff`], [`Backoff`], [`RetryConfig::seed`] |
//! | retry only what the classifier allows | [`RetryLayer::classifier`] with any [`rampart_core::Classify`] |
//! | replay only replayable requests | [`RetryLayer::replay_policy`], [`RetryLayer::for_http`] |
//! | `Retry-After` honoured when longer than our backoff, up to a cap | [`RetryConfig::max_retry_after`] |
//! | per-try timeout, overall deadline | [`RetryConfig::per_try_timeout`], [`RetryConfig::deadline`] |
//! | the time a try has left, sent upstream (`grpc-timeout`, or a header) | [`RetryConfig::deadline_header`], [`ReplayPolicy::propagate_deadline`] |
//! | retry budget (a ratio of first tries plus a floor per second), shareable | [`RetryConfig::budget`], [`RetryBudget`], [`RetryLayer::with_budget`] |
//! | per-request attempts and deadline | [`RetryOverride`] in an `http::Request`'s extensions |
//! | hedged requests after a fixed delay or a tracked latency percentile, from the same budget | [`HedgeConfig`], [`HedgeLayer`]; see [Hedging](#hedging) |
//! | replay HTTP requests whose body is not `Clone`: buffered up to a limit, larger bodies sent once | [`ReplayBodyLayer`], [`ReplayBodyConfig::limit`] |
//!
//! A retry is made only when all of these hold: the classifier's
//! [`Decision`](rampart_core::Decision) allows it; attempts remain; the
//! request is replayable; any `Retry-After` is within
//! [`max_retry_after`](RetryConfig::max_retry_after) (a longer one is not
//! waited on: the response goes back at once); the backoff ends before
//! the deadline; and the budget pays for it. Otherwise the last real
//! outcome (response or error) goes back to the caller.
//!
//! Metrics (labelled with the layer's name): `rampart_retry_attempts_total`
//! (every try), `rampart_retry_retries_total`,
//! `rampart_retry_budget_exhausted_total`. Each try runs in a
//! `retry_attempt` tracing span with an `attempt` field.
//!
//! # Replaying HTTP request bodies
//!
//! Requests are replayed by cloning them, so an `http::Request<B>` needs
//! `B: Clone`; streaming bodies (hyper's `Incoming`, a boxed body, a
//! stream) are not. Put a [`ReplayBodyLayer`] outside the retry layer: it
//! reads each body up to a limit (64 KiB by default,
//! [`ReplayBodyConfig::limit`]) and hands on a [`ReplayBody`], which is
//! `Clone`.
//!
//! - A body within the limit (counted in data bytes; trailers are kept
//!   too) is held in memory, and every try sends it byte-identical.
//! - A body over the limit is sent once, whole and in order, never
//!   truncated: the bytes already read, then the rest of the stream. When
//!   its `Content-Length` or size hint already says so, it is not read
//!   before the call at all. The request is marked [`NotReplayable`],
//!   [`HttpRequests`] never replays it, and its outcome (a 503 included)
//!   goes back to the caller. A copy of such a body yields [`BodyTaken`]
//!   instead of part of the body.
//! - If reading the body fails while buffering, the call fails with
//!   [`BodyReadError`] (its source is the body's error) and nothing is
//!   sent.
//!
//! ```
//! use std::convert::Infallible;
//! use std::sync::Arc;
//! use std::sync::atomic::{AtomicU32, Ordering};
//! use std::time::Duration;
//! use bytes::Bytes;
//! use http_body_util::{BodyExt, Full, combinators::BoxBody};
//! use rampart_core::BoxError;
//! use rampart_retry::{Backoff, ReplayBody, ReplayBodyLayer, RetryConfig};
//! use tower::{ServiceBuilder, ServiceExt, service_fn};
//!
//! // A boxed body is not `Clone`.
//! type Body = BoxBody<Bytes, Infallible>;
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), BoxError> {
//! // Answers 503 first, then 200; checks the body every time.
//! let calls = Arc::new(AtomicU32::new(0));
//! let seen = Arc::clone(&calls);
//! let client = service_fn(move |req: http::Request<ReplayBody<Body>>| {
//!     let call = seen.fetch_add(1, Ordering::SeqCst);
//!     async move {
//!         assert_eq!(req.into_body().collect().await?.to_bytes(), "order #42");
//!         let status = if call == 0 { 503 } else { 200 };
//!         Ok::<_, BoxError>(http::Response::builder().status(status).body(())?)
//!     }
//! });
//!
//! let svc = ServiceBuilder::new()
//!     .layer(ReplayBodyLayer::new()) // outside: buffers bodies up to 64 KiB
//!     .layer(
//!         RetryConfig::new()
//!             .backoff(Backoff::Constant { delay: Duration::from_millis(1) })
//!             .build()?
//!             .for_http(),
//!     )
//!     .service(client);
//!
//! let body: Body = Full::new(Bytes::from("order #42")).boxed();
//! let resp = svc.oneshot(http::Request::put("/orders/42").body(body)?).await?;
//! assert_eq!(resp.status(), 200);
//! assert_eq!(calls.load(Ordering::SeqCst), 2);
//! # Ok(()) }
//! ```
//!
//! Only requests the HTTP rule may replay (an idempotent method or an
//! `Idempotency-Key`) are buffered; a `POST` without a key goes through
//! unread. For a custom [`ReplayPolicy`] that replays more, set
//! [`ReplayBodyConfig::all_methods`].
//!
//! The first try starts only once the body is buffered (up to the
//! limit), as with Envoy's request buffer: a slow upload delays it, and
//! the inner service made ready by `poll_ready` is held meanwhile. Under
//! overload, the memory held for bodies is bounded by the limit times the
//! requests in flight (each may also keep the one frame that passed the
//! limit until it is sent); lower the limit, or bound concurrency with a
//! bulkhead outside, to bound it further. Only [`HttpRequests`] (and so
//! [`RetryLayer::for_http`]) knows [`NotReplayable`]; a custom
//! [`ReplayPolicy`] for HTTP should check it too.
//!
//! # Errors
//!
//! The service's error is `BoxError`:
//!
//! | error | when |
//! |---|---|
//! | the inner service's error, boxed | the last try failed and no retry followed; downcast to your type |
//! | [`TryTimeout`] | the last try exceeded the per-try timeout |
//! | [`DeadlineExceeded`] | the deadline passed while a try was in flight (a retry that could not finish in time is not started, and the previous outcome is returned instead) |
//! | [`BodyReadError`] (with [`ReplayBodyLayer`]) | reading the request body failed while buffering it; nothing was sent |
//! | [`rampart_core::ConfigError`] (from `build`) | a setting was refused; it names the field |
//!
//! The budget never produces an error of its own: an exhausted budget
//! returns the last real outcome.
//!
//! # Under overload
//!
//! When a dependency fails wholesale, retries would multiply its load by
//! `max_attempts`. The budget caps that: over its window retries add at
//! most `ratio` of first tries (20 % by default) plus a small floor, so
//! retry traffic shrinks as a share of the load exactly when it stops
//! helping. Jittered backoff spreads the retries that are made, and
//! `Retry-After` from the server is honoured. Put a breaker inside the
//! retry layer to stop trying an open dependency altogether. With a
//! [`ReplayBodyLayer`], bodies held for replay take at most its limit per
//! request in flight.
//!
//! # Differences from tower's retry
//!
//! - Configured by data (and TOML), not by writing a `Policy`.
//! - Backoff with jitter, `Retry-After`, per-try timeouts and a deadline
//!   are built in; tower's `Policy` leaves all of them to the user.
//! - tower's `TpsBudget` is a per-policy budget; here a [`RetryBudget`] is
//!   a shared handle with a floor per second on tokio's clock.
//! - Decisions come from [`rampart_core::Classify`], the same classifier
//!   the breaker and the mesh use, and HTTP requests are replayed only
//!   when idempotent.
//! - Like tower, requests are cloned to be replayed (`Req: Clone`); for
//!   HTTP bodies that are not `Clone`, [`ReplayBodyLayer`] buffers them up
//!   to a limit and sends larger ones once, where tower leaves bodies to
//!   the user.
//!
//! # Hedging
//!
//! A retry waits for a failure. A hedge does not wait that long: when a
//! call has gone unanswered for a delay, [`HedgeLayer`] sends the same
//! request once more and takes the first answer the classifier does not
//! call a failure; the other attempt is dropped, which cancels it. One
//! slow instance, a lost packet or a pause no longer sets the caller's
//! latency.
//!
//! ```
//! use std::sync::Arc;
//! use std::sync::atomic::{AtomicU32, Ordering};
//! use std::time::Duration;
//! use rampart_retry::{HedgeConfig, HedgeDelay, RetryConfig};
//! use tokio::time::{Instant, sleep};
//! use tower::{ServiceBuilder, ServiceExt, service_fn};
//!
//! # #[tokio::main(flavor = "current_thread", start_paused = true)]
//! # async fn main() -> Result<(), rampart_core::BoxError> {
//! let retry = RetryConfig::new().name("search").build()?;
//! let hedge = HedgeConfig::new()
//!     .name("search")
//!     // In production, rather HedgeDelay::percentile(0.95).
//!     .delay(HedgeDelay::Fixed(Duration::from_millis(20)))
//!     .build()?
//!     // Retries and hedges spend from one budget.
//!     .with_budget(retry.budget().expect("a retry budget by default"));
//!
//! // The first call is stuck for 10 s, the next answers in 5 ms.
//! let calls = Arc::new(AtomicU32::new(0));
//! let seen = Arc::clone(&calls);
//! let svc = ServiceBuilder::new()
//!     .layer(retry)
//!     .layer(hedge)
//!     .service(service_fn(move |q: u32| {
//!         let stuck = seen.fetch_add(1, Ordering::SeqCst) == 0;
//!         async move {
//!             sleep(Duration::from_millis(if stuck { 10_000 } else { 5 })).await;
//!             Ok::<_, rampart_core::BoxError>(q)
//!         }
//!     }));
//!
//! let start = Instant::now();
//! assert_eq!(svc.oneshot(7).await?, 7);
//! assert_eq!(start.elapsed(), Duration::from_millis(25)); // 20 ms delay + 5 ms
//! assert_eq!(calls.load(Ordering::SeqCst), 2);
//! # Ok(()) }
//! ```
//!
//! | rule | setting |
//! |---|---|
//! | the delay: fixed, or the percentile of recent latencies | [`HedgeConfig::delay`], [`HedgeDelay`] |
//! | hedges per call (1–3), each one delay after the previous | [`HedgeConfig::max_hedges`] |
//! | hedge only replayable requests (HTTP: idempotent or `Idempotency-Key`) | [`HedgeLayer::replay_policy`], [`HedgeLayer::for_http`] |
//! | what counts as a good answer | [`HedgeLayer::classifier`] |
//! | every hedge paid from a budget, shareable with retries | [`HedgeConfig::budget`], [`HedgeLayer::with_budget`] |
//!
//! A hedge is sent when all of these hold: the request is replayable;
//! the delay has passed with no attempt answered; a delay is known (a
//! percentile needs a complete window of `min_samples` calls first; until
//! then, no hedge); a clone of the inner service is ready (while it is
//! not, the first attempt carries on alone and the hedge goes when the
//! clone is ready); and the budget pays for it. Every call deposits into
//! the budget, as a retry layer's first tries do.
//!
//! The first answer that is not a failure wins and the attempts still in
//! flight are dropped. A failure waits for the attempts still in flight;
//! when every attempt sent has failed, the last failure comes back. A
//! failure before any hedge was sent comes back at once: hedging does not
//! retry, so put a [`RetryLayer`] around it for that (as above). The
//! service's error is `BoxError`, the inner error boxed; hedging adds no
//! error of its own.
//!
//! The percentile is tracked online in a histogram of atomic counters
//! (log-scale buckets, 6.25 % wide; one `fetch_add` per call, no lock, no
//! allocation), per window, and the delay is the percentile of the last
//! complete window rounded up to its bucket's end. Each call records one
//! latency: its first attempt's, or when a hedge answers first, the time
//! waited so far (a lower bound of the first attempt's), so that winning
//! hedges do not drag the estimate down. See
//! [`HedgeDelay::Percentile`].
//!
//! Metrics (labelled with the layer's name): `rampart_hedge_sent_total`,
//! `rampart_hedge_won_total` (a hedge's answer was returned) and
//! `rampart_hedge_budget_exhausted_total` (a hedge was due but not paid
//! for). Each attempt runs in a `hedge_attempt` tracing span with an
//! `attempt` field (1 for the first).
//!
//! Under overload, hedges add at most the budget's share of load (by
//! default 20 % of calls plus 10 per second) however slow the dependency
//! gets: a dependency that slows down gets hedges only while the budget
//! pays, then each call waits on its first attempt alone. With a
//! percentile delay, a dependency that is slow across the board moves the
//! percentile up within two windows, and hedging falls back to the slowest
//! share of calls. When a retry layer and a hedge layer share a budget and
//! are stacked, both deposit for each call, so the budget allows twice its
//! ratio per request; halve the ratio to keep the same bound.
//!
//! Differences from tower's `hedge`: tower returns whichever attempt
//! finishes first, error or not, while here a failure waits for the other
//! attempt; hedges here are paid from a budget; the delay may be fixed;
//! the histogram is lock-free and records a lower bound for calls a hedge
//! won, where tower records only completed attempts' own latencies under a
//! mutex; and the whole is configured by data.

mod backoff;
mod budget;
mod config;
mod error;
mod future;
mod hedge;
mod layer;
mod policy;
mod replay;
mod service;

pub use crate::backoff::{Backoff, Rng};
pub use crate::budget::{BudgetConfig, BudgetSnapshot, RetryBudget};
pub use crate::config::{MAX_ATTEMPTS, RetryConfig};
pub use crate::error::{DeadlineExceeded, TryTimeout};
pub use crate::future::ResponseFuture;
pub use crate::hedge::{Hedge, HedgeConfig, HedgeDelay, HedgeFuture, HedgeLayer, MAX_HEDGES};
pub use crate::layer::RetryLayer;
pub use crate::policy::{AnyRequest, HttpRequests, ReplayPolicy, RetryOverride};
pub use crate::replay::{
    BodyReadError, BodyTaken, NotReplayable, ReplayBody, ReplayBodyConfig, ReplayBodyLayer,
    ReplayBodyService, ReplayFuture,
};
pub use crate::service::Retry;

// The guide's Rust examples run as doctests.
#[cfg(doctest)]
#[doc = include_str!("../../../docs/retry.md")]
struct Guide;
