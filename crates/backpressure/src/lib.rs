//! Backpressure for Tower services: a bounded queue (global or per key) with
//! CoDel and early shedding, GCRA rate limiting (global and per key) and an
//! adaptive (AIMD, Vegas or Gradient2) concurrency limit (global and per
//! key), under one admission model and one overload error.
//!
//! ```
//! use rampart_backpressure::{Admission, Overloaded, QueueConfig, RateLimitConfig};
//! use std::time::Duration;
//! use tower::{ServiceBuilder, ServiceExt, service_fn};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), rampart_core::BoxError> {
//! let limiter = RateLimitConfig::new()
//!     .name("api")
//!     .rate(100, Duration::from_secs(1)) // 100 calls per second, evenly spaced
//!     .burst(20)                         // up to 20 at once after a quiet spell
//!     .admission(Admission::FailFast)    // no token: reject at once
//!     .build()?;
//! let handle = limiter.handle();
//!
//! let service = ServiceBuilder::new()
//!     .layer(limiter)
//!     .layer(
//!         QueueConfig::new()
//!             .capacity(64)                                           // at most 64 queued
//!             .codel(Duration::from_millis(5), Duration::from_millis(100)) // shed a standing queue
//!             .build()?,
//!     )
//!     .service(service_fn(|name: String| async move {
//!         Ok::<_, std::io::Error>(format!("hello, {name}"))
//!     }));
//!
//! match service.oneshot("ada".to_string()).await {
//!     Ok(greeting) => assert_eq!(greeting, "hello, ada"),
//!     Err(e) => match e.downcast_ref::<Overloaded>() {
//!         // shed: answer 429/503, with `Retry-After` when known
//!         Some(overloaded) => println!("{overloaded}, retry after {:?}", overloaded.retry_after()),
//!         None => return Err(e),
//!     },
//! }
//! assert_eq!(handle.admitted(), 1);
//! # Ok(())
//! # }
//! ```
//!
//! # What it protects against
//!
//! A service that accepts more work than it can do gets slower for
//! everyone: queues grow, latency grows, callers time out and retry, and
//! the extra load makes it worse.
//!
//! - A **rate limiter** ([`RateLimitConfig`]) caps the work let in to a
//!   sustained rate with a bounded burst, so that a flood (a retry storm, a
//!   misbehaving client, a tenant on a loop) is refused at the door with a
//!   cheap, typed error telling the caller when to come back. With
//!   [`build_keyed`](RateLimitConfig::build_keyed) each client, route or
//!   tenant gets its own budget, so one cannot spend the others'.
//! - A **bounded queue** ([`QueueConfig`]) decouples callers from a
//!   service that takes one call at a time through `poll_ready` (a
//!   connection, a `!Clone` client): a worker task drains it, and its bound
//!   stops a burst from turning into unbounded memory and latency. With
//!   [`codel`](QueueConfig::codel) it also sheds a *standing* queue, one that
//!   never drains below a target delay, which only adds latency to every
//!   call; with [`shed_depth`](QueueConfig::shed_depth) it sheds at random
//!   before it is full (random early detection). With
//!   [`build_keyed`](QueueConfig::build_keyed) each tenant gets its own
//!   queue and worker, so one tenant's flood fills only its own queue.
//! - An **adaptive concurrency limit** ([`AdaptiveLimitConfig`]) finds how
//!   many calls in flight the inner service sustains without its latency
//!   climbing, AIMD-style, with TCP Vegas or with Netflix's Gradient2
//!   ([`Algorithm`]), and follows it as it changes: no hand-tuned
//!   bulkhead size that is too small on a good day and too large on a bad
//!   one. With [`build_keyed`](AdaptiveLimitConfig::build_keyed) each
//!   tenant or route gets its own limit, so one slow tenant shrinks only
//!   its own.
//!
//! # The admission model
//!
//! Every limiter takes an [`Admission`] that says what happens to a call
//! it cannot admit now:
//!
//! - [`Admission::Backpressure`]: `poll_ready` returns `Pending` until
//!   capacity returns (a token is due, a queue slot frees) and the task is
//!   woken exactly then, by a timer or a notification (it never spins and
//!   never sleeps in a loop). The caller bounds the wait. Callers waiting
//!   for a queue slot are served first come, first served.
//! - [`Admission::FailFast`] (the default): the call fails at once with
//!   [`Overloaded`].
//! - [`Admission::Wait`]: the call waits up to a bound, then fails with
//!   [`Overloaded`]. A rate limiter knows at once whether a token will come
//!   within the bound, so a call that would wait too long fails at once;
//!   one that waits holds a reserved slot and gives it back if dropped.
//!
//! # Behaviour under overload
//!
//! - Capacity is taken when the call starts (in `call`), never held by an
//!   idle client: under `Backpressure`, `poll_ready` that finds capacity
//!   free takes nothing. (A client of the queue or of the adaptive limit
//!   that had to wait in `poll_ready` is handed its slot or permit in turn
//!   and keeps it for its next call, or passes it on if dropped, so that no
//!   newcomer takes it first.) A backpressured call that lost the last
//!   token, slot or permit to another caller between `poll_ready` and
//!   `call` is not rejected and never exceeds the bound: its response
//!   future waits for the next one.
//! - **Rate limiter**: calls are spaced `period / rate` apart; after a
//!   quiet spell up to `burst` go through at once. The state is one atomic
//!   "theoretical arrival time" updated by CAS: no lock, no allocation on
//!   the admit and reject paths. A rejection carries
//!   [`Overloaded::retry_after`], exactly how long until a token is due.
//!   The rate changes at run time through a [`Handle`] (or a
//!   [`KeyedRateLimitHandle`] for every key); calls already admitted or
//!   waiting keep their slots, and slowing down re-prices the calls still
//!   counted against the limiter, so calls admitted at one instant never
//!   outnumber the burst across a change (model-checked with loom).
//! - **Queue**: a call takes a slot when it enters the queue and frees it
//!   when the worker hands it to the inner service (or sheds it). A caller
//!   that gives up while queued is skipped by the worker and never reaches
//!   the inner service. The worker calls the inner service inside the
//!   caller's `tracing` span and hands the response future back to the
//!   caller, so calls still run concurrently. Waiting callers
//!   (`Backpressure`, `Wait`) get slots in the order they came: a freed
//!   slot is granted to the first in line on its behalf, a newcomer never
//!   takes it first, and a waiter that gives up leaves the line, passing
//!   on a slot granted meanwhile. The uncontended path is one CAS, no lock.
//! - **Early shedding** ([`shed_depth`](QueueConfig::shed_depth) `n`): a
//!   call that finds `d` calls queued is shed ([`Reason::Shed`]) with
//!   probability `(d + 1 - n) / (capacity - n)`, whatever the admission:
//!   never while it keeps the depth at or below `n`, always when it would
//!   fill the queue. The random numbers can be seeded
//!   ([`seed`](QueueConfig::seed)).
//! - **Keyed queue** ([`QueueConfig::build_keyed`]): one queue, worker and
//!   clone of the inner service per key, in a bounded
//!   [`KeyedMap`](rampart_core::keyed::KeyedMap); an evicted key's worker
//!   ends once its calls are done. `poll_ready` cannot know the key, so it
//!   is always ready and a call to a full key waits (`Backpressure`,
//!   `Wait`) or fails (`FailFast`) in its response future.
//! - **CoDel**: when the shortest queueing delay over a whole interval was
//!   above the target, calls that waited longer than the target are shed
//!   ([`Reason::Shed`]) for the next interval; a queue that drains stops
//!   shedding.
//! - **Adaptive limit**: a call takes a permit if fewer than the current
//!   limit are in flight and nobody waits, and releases it when its
//!   response future completes or is dropped. With AIMD the limit shrinks by
//!   `backoff_ratio` (once per round trip) when a call fails or exceeds
//!   `latency_threshold`, and grows by about one per round trip while at
//!   least half of it is used; with Vegas it follows the queueing the
//!   latency reveals against the fastest latency seen; with Gradient2
//!   against a long-term average latency that it keeps re-learning, so a
//!   service that becomes slower for good, but healthy, keeps its limit.
//!   It stays within `min_limit..=max_limit`. Read it on an
//!   [`AdaptiveHandle`] or the `concurrency_limit` gauge.
//! - **Adaptive limit, waiting callers** (`Backpressure`, `Wait`): they
//!   are served first come, first served. A freed permit is handed
//!   directly to the caller that has waited longest (no race among woken
//!   callers), and a newcomer never takes it while someone waits. A waiter
//!   that gives up passes its turn, or the permit already handed to it, to
//!   the next. Under `Backpressure` a service that waited in `poll_ready`
//!   holds the permit handed to it until its next `call` (or its drop).
//!   The fast path (a permit free, nobody waiting) is one CAS: no lock, no
//!   allocation.
//!
//! # Per-key queues and early shedding
//!
//! ```
//! use rampart_backpressure::{Overloaded, QueueConfig, Reason};
//! use rampart_core::keyed::KeyedConfig;
//! use tower::{ServiceBuilder, ServiceExt, service_fn};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), rampart_core::BoxError> {
//! // One queue of 64 per tenant; above 48 queued, shed at random.
//! let queues = QueueConfig::new()
//!     .name("ingest")
//!     .capacity(64)
//!     .shed_depth(48)
//!     .build_keyed(|(tenant, _): &(String, u32)| tenant.clone(), KeyedConfig::default())?;
//! let service = ServiceBuilder::new()
//!     .layer(queues)
//!     .service(service_fn(|(tenant, n): (String, u32)| async move {
//!         Ok::<_, std::io::Error>(format!("{tenant}: {n}"))
//!     }));
//! let handle = service.handle();
//!
//! match service.clone().oneshot(("acme".to_string(), 1)).await {
//!     Ok(answer) => assert_eq!(answer, "acme: 1"),
//!     Err(e) => match e.downcast_ref::<Overloaded>() {
//!         Some(o) if o.reason() == Reason::Shed => println!("shed early: {o}"),
//!         _ => return Err(e),
//!     },
//! }
//! let acme = handle.get(&"acme".to_string()).expect("made on first use");
//! assert_eq!((acme.capacity(), acme.shed_depth()), (64, Some(48)));
//! # Ok(())
//! # }
//! ```
//!
//! # Errors
//!
//! The services' error type is [`BoxError`](rampart_core::BoxError).
//!
//! | error | when | what to do |
//! |---|---|---|
//! | [`Overloaded`], [`Reason::RateLimited`] | no token now (`FailFast`) or within the bound (`Wait`) | the inner service never saw the request: shed it (HTTP 429 with `Retry-After` at the edge) or retry after [`retry_after`](Overloaded::retry_after) |
//! | [`Overloaded`], [`Reason::QueueFull`] | the queue was full (`FailFast`), or no slot freed within the bound (`Wait`) | as above (HTTP 503 at the edge); no `retry_after` |
//! | [`Overloaded`], [`Reason::Shed`] | CoDel shed the call from a standing queue, or `shed_depth` shed it above the threshold | as above |
//! | [`Overloaded`], [`Reason::ConcurrencyLimit`] | the adaptive limit was reached (`FailFast`), or no permit freed within the bound (`Wait`) | as above |
//! | [`QueueClosed`] | the queue's inner service failed in `poll_ready` (its error is the `source`), or the worker's runtime shut down | the queue is dead: rebuild it |
//! | the inner service's error, boxed unchanged | the inner service failed | downcast to its own type |
//!
//! Invalid values are refused by [`RateLimitConfig::build`],
//! [`QueueConfig::build`] and [`AdaptiveLimitConfig::build`] with a [`ConfigError`](rampart_core::ConfigError)
//! naming the field.
//!
//! # Observability
//!
//! Metrics go through the `metrics` facade, with handles registered once
//! when a limiter (or a key's rate or adaptive limiter, or a queue) is
//! built, labelled `name` (and `key`):
//!
//! | metric | kind | meaning |
//! |---|---|---|
//! | `rampart_backpressure_rate_admitted_total` | counter | calls a rate limiter admitted |
//! | `rampart_backpressure_rate_delayed_total` | counter | calls that waited for a reserved slot |
//! | `rampart_backpressure_rate_per_second` | gauge | a rate limiter's current sustained rate |
//! | `rampart_backpressure_queue_depth` | gauge | calls queued, not yet handed to the inner service |
//! | `rampart_backpressure_queue_sojourn_seconds` | histogram | time from entering the queue to reaching the inner service (or being shed) |
//! | `rampart_backpressure_concurrency_limit` | gauge | an adaptive limiter's current limit |
//! | `rampart_backpressure_concurrency_in_flight` | gauge | calls holding an adaptive limiter's permit |
//! | `rampart_backpressure_concurrency_drops_total` | counter | samples counted as drops (failed or slow) |
//! | `rampart_backpressure_rejected_total` | counter | calls refused, `reason` = `rate_limited`, `queue_full`, `shed` (CoDel or `shed_depth`) or `concurrency_limit` |
//!
//! Each refusal also emits a `tracing` debug event with the field `reason`
//! (and `name`, `retry_after`, `depth`, `sojourn` where they apply).
//!
//! # Differences from tower's `RateLimit`, `Buffer` and `ConcurrencyLimit`
//!
//! - **Sharing.** tower's `RateLimit` keeps its state in the service, so
//!   every clone (and every service a layer makes) has its own budget;
//!   ours share one limiter, which is what `Router::layer` needs.
//! - **Algorithm.** tower counts calls in fixed windows, allowing twice the
//!   rate across a window edge; GCRA spaces calls evenly with an explicit
//!   burst.
//! - **Readiness.** tower's `RateLimit` and `Buffer` only park callers in
//!   `poll_ready`, and `Buffer` holds a queue slot from `poll_ready` until
//!   `call`, so a ready but idle client holds capacity. Ours take capacity
//!   in `call`, and can also fail fast with a typed, downcastable error
//!   carrying `retry_after`, or wait a bounded time.
//! - **Cancellation.** `Buffer` calls the inner service for a request
//!   whose caller already left once the worker holds it; our worker checks
//!   again after the inner service is ready and skips it.
//! - **Shedding.** `Buffer` has no notion of queueing delay; ours can shed
//!   a standing queue (CoDel), or shed early on depth before it is full.
//! - **Fairness.** `Buffer` has one queue for every caller; ours serves
//!   waiting callers first come, first served, and a keyed queue gives
//!   each tenant its own.
//! - **Adaptive.** `ConcurrencyLimit` has a fixed limit, taken in
//!   `poll_ready`; ours adapts it to latency and errors and takes the
//!   permit in `call`.
//! - **Run time.** Per-key rate limiters, live rate changes, counters
//!   through handles, metrics and tracing.
//!
//! # Adaptive limits
//!
//! One limit for a service with Gradient2, and one per tenant with AIMD,
//! whose callers wait up to 50 ms in line for a permit:
//!
//! ```
//! use rampart_backpressure::{AdaptiveLimitConfig, Admission, Algorithm};
//! use rampart_core::keyed::KeyedConfig;
//! use std::time::Duration;
//! use tower::{ServiceBuilder, ServiceExt, service_fn};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), rampart_core::BoxError> {
//! let overall = AdaptiveLimitConfig::new()
//!     .name("search")
//!     .algorithm(Algorithm::Gradient2) // re-learns a slower base latency
//!     .initial_limit(20)
//!     .max_limit(200)
//!     .build()?;
//! let per_tenant = AdaptiveLimitConfig::new()
//!     .name("search")
//!     .latency_threshold(Duration::from_millis(250)) // slower: a drop
//!     .admission(Admission::Wait(Duration::from_millis(50)))
//!     .build_keyed(
//!         |(tenant, _query): &(String, String)| tenant.clone(),
//!         KeyedConfig::default(),
//!     )?;
//! let tenants = per_tenant.handle();
//!
//! let service = ServiceBuilder::new()
//!     .layer(overall)
//!     .layer(per_tenant)
//!     .service(service_fn(|(_tenant, query): (String, String)| async move {
//!         Ok::<_, std::io::Error>(query.len())
//!     }));
//! let found = service.oneshot(("acme".to_string(), "tower".to_string())).await?;
//! assert_eq!(found, 5);
//! assert_eq!(tenants.get(&"acme".to_string()).unwrap().in_flight(), 0);
//! # Ok(())
//! # }
//! ```
//!
//! # Runtime
//!
//! Time comes from `tokio::time`, so tests can pause and advance it. A call
//! that has to wait, and `poll_ready` under `Backpressure`, use a Tokio
//! timer or notification; [`QueueLayer::layer`](tower_layer::Layer::layer)
//! spawns the worker with `tokio::spawn` (a [`KeyedQueue`] spawns each
//! key's worker on the key's first call), so it must run inside a Tokio
//! runtime with the time driver.

pub mod adaptive;
mod admission;
mod error;
pub mod queue;
pub mod rate;
mod sync;

pub use adaptive::config::{AdaptiveLimitConfig, Algorithm, MAX_LIMIT, MAX_LONG_WINDOW, QueueSize};
pub use adaptive::handle::Handle as AdaptiveHandle;
pub use adaptive::keyed::{KeyedAdaptiveLimit, KeyedAdaptiveLimitHandle, KeyedAdaptiveLimitLayer};
pub use adaptive::service::{AdaptiveLimit, AdaptiveLimitLayer};
pub use admission::Admission;
pub use error::{Overloaded, QueueClosed, Reason};
pub use queue::codel::Codel;
pub use queue::config::{MAX_CAPACITY, QueueConfig};
pub use queue::handle::Handle as QueueHandle;
pub use queue::keyed::{KeyedQueue, KeyedQueueHandle, KeyedQueueLayer};
pub use queue::layer::QueueLayer;
pub use queue::service::Queue;
pub use rate::config::{MAX_PERIOD, RateLimitConfig};
pub use rate::handle::Handle;
pub use rate::keyed::{KeyedRateLimit, KeyedRateLimitHandle, KeyedRateLimitLayer};
pub use rate::layer::RateLimitLayer;
pub use rate::service::RateLimit;
