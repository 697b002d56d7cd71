//! A short timeout and a circuit breaker around any [`RemoteCache`].

use std::fmt;
use std::future::Future;
use std::marker::PhantomData;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll, ready};
use std::time::Duration;

use pin_project_lite::pin_project;
use rampart_breaker::{Breaker, BreakerConfig, BreakerOpen, Handle, NoFallback, State};
use rampart_core::classify::{Classify, Decision};
use rampart_core::error::validate;
use rampart_core::metrics::{InstanceLabels, labels};
use rampart_core::{BoxError, ConfigError, metric_name};
use serde::Deserialize;
use tower_layer::Layer;
use tower_service::Service;

use super::{BoxFuture, RemoteCache, RemoteError, RemoteErrorKind};

/// Settings of a [`GuardedRemote`]; loads from TOML.
///
/// ```
/// use rampart_cache::remote::GuardConfig;
///
/// let cfg: GuardConfig = toml::from_str(r#"
///     name = "users"
///     timeout = "50ms"
///     [breaker]
///     minimum_calls = 10
///     open_duration = "2s"
/// "#).unwrap();
/// cfg.validate().unwrap();
/// ```
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct GuardConfig {
    name: String,
    #[serde(with = "rampart_core::duration")]
    timeout: Duration,
    breaker: BreakerConfig,
}

impl Default for GuardConfig {
    fn default() -> Self {
        Self {
            name: String::new(),
            timeout: Duration::from_millis(100),
            breaker: BreakerConfig::new()
                .count_window(20)
                .minimum_calls(5)
                .failure_rate_threshold(0.5)
                .open_duration(Duration::from_secs(2))
                .half_open_max_calls(1),
        }
    }
}

impl GuardConfig {
    /// The defaults: see each setter.
    pub fn new() -> Self {
        Self::default()
    }

    /// A name for logs and metric labels (the breaker takes it too).
    /// Defaults to none.
    pub fn name(mut self, name: impl Into<String>) -> Self {
        self.name = name.into();
        self
    }

    pub(crate) fn name_ref(&self) -> &str {
        &self.name
    }

    /// The longest one remote call may take; a slower one fails with
    /// [`RemoteErrorKind::Timeout`] and counts against the breaker.
    /// Defaults to 100 ms: a remote hit slower than that is no better than
    /// a load.
    pub fn timeout(mut self, d: Duration) -> Self {
        self.timeout = d;
        self
    }

    /// The breaker's settings. Defaults: a count window of 20 calls, open
    /// at 50 % failures after at least 5 calls, for 2 s, then one trial
    /// call.
    pub fn breaker(mut self, breaker: BreakerConfig) -> Self {
        self.breaker = breaker;
        self
    }

    /// Checks every setting; the error names the field at fault
    /// (`remote.timeout`, or the breaker's own field names).
    pub fn validate(&self) -> Result<(), ConfigError> {
        validate::non_zero_duration("remote.timeout", self.timeout)?;
        self.breaker.validate()
    }

    /// Wraps `inner`.
    pub fn build<R: RemoteCache>(&self, inner: R) -> Result<GuardedRemote<R>, ConfigError> {
        self.validate()?;
        let layer = self.breaker.clone().name(self.name.clone()).build()?;
        let breaker = layer.handle();
        let stats = Arc::new(Stats::new(InstanceLabels::new(self.name.clone())));
        Ok(GuardedRemote {
            inner: Arc::new(inner),
            service: layer.classifier(RemoteClassifier).layer(Run {
                timeout: self.timeout,
            }),
            handle: GuardHandle { stats, breaker },
        })
    }
}

/// A [`RemoteCache`] whose every call is bounded by a short timeout and
/// passes a circuit breaker (`rampart-breaker`).
///
/// - A call slower than [`GuardConfig::timeout`] fails with
///   [`RemoteErrorKind::Timeout`]; its future is dropped.
/// - Timeouts and [`Unavailable`](RemoteErrorKind::Unavailable) errors
///   count as failures; a [`Store`](RemoteErrorKind::Store) error (Redis
///   answered, with an error) counts as a success of the connection.
/// - When the breaker opens, calls fail at once with
///   [`RemoteErrorKind::BreakerOpen`], without touching the store (the
///   layer treats that as a miss). After the open duration one trial call
///   goes through; when it succeeds the breaker closes: the guard recovers
///   by itself once the store is back.
/// - [`invalidations`](RemoteCache::invalidations) is the inner store's:
///   the subscription has its own reconnection and needs no breaker.
///
/// Errors by kind and the breaker's state are on [`GuardHandle`], and as
/// metrics: `rampart_cache_remote_errors_total{name, reason}` with
/// `reason` one of `unavailable`, `timeout`, `breaker_open`, `store`,
/// plus the breaker's own metrics under the same name.
///
/// ```
/// use std::time::Duration;
/// use rampart_cache::remote::{BoxFuture, GuardConfig, RemoteCache, RemoteError, RemoteErrorKind};
///
/// /// A store that is down.
/// struct Down;
/// impl RemoteCache for Down {
///     fn get<'a>(&'a self, _: &'a str) -> BoxFuture<'a, Result<Option<Vec<u8>>, RemoteError>> {
///         Box::pin(async { Err(RemoteError::new(RemoteErrorKind::Unavailable, None)) })
///     }
///     fn set<'a>(&'a self, _: &'a str, _: Vec<u8>, _: Duration) -> BoxFuture<'a, Result<(), RemoteError>> {
///         Box::pin(async { Err(RemoteError::new(RemoteErrorKind::Unavailable, None)) })
///     }
///     fn delete<'a>(&'a self, _: &'a str) -> BoxFuture<'a, Result<(), RemoteError>> {
///         Box::pin(async { Err(RemoteError::new(RemoteErrorKind::Unavailable, None)) })
///     }
///     fn invalidate<'a>(&'a self, key: &'a str) -> BoxFuture<'a, Result<(), RemoteError>> {
///         self.delete(key)
///     }
/// }
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// let remote = GuardConfig::new().name("users").build(Down).unwrap();
/// let handle = remote.handle();
/// for _ in 0..5 {
///     assert_eq!(remote.get("k").await.unwrap_err().kind(), RemoteErrorKind::Unavailable);
/// }
/// // five failures in five calls: open, and the next call fails at once
/// assert!(handle.state().is_open());
/// assert_eq!(remote.get("k").await.unwrap_err().kind(), RemoteErrorKind::BreakerOpen);
/// assert_eq!(handle.errors(RemoteErrorKind::Unavailable), 5);
/// assert_eq!(handle.errors(RemoteErrorKind::BreakerOpen), 1);
/// # }
/// ```
pub struct GuardedRemote<R> {
    inner: Arc<R>,
    service: Breaker<Run, RemoteClassifier, NoFallback>,
    handle: GuardHandle,
}

impl<R: RemoteCache> GuardedRemote<R> {
    /// Wraps `inner` with the default [`GuardConfig`].
    pub fn new(inner: R) -> Self {
        GuardConfig::new()
            .build(inner)
            .expect("the default GuardConfig is valid")
    }

    /// The wrapped store.
    pub fn get_ref(&self) -> &R {
        &self.inner
    }

    /// Counters and the breaker's state.
    pub fn handle(&self) -> GuardHandle {
        self.handle.clone()
    }

    /// Runs `op` (unless the breaker refuses) within the timeout, and
    /// counts its error.
    fn guarded<'a, T: Send + 'a>(
        &'a self,
        op: impl FnOnce(&'a R) -> BoxFuture<'a, Result<T, RemoteError>> + Send + 'a,
    ) -> BoxFuture<'a, Result<T, RemoteError>> {
        let inner = &*self.inner;
        let call = self.service.clone().call(Op {
            start: move || op(inner),
            _out: PhantomData,
        });
        let stats = &self.handle.stats;
        Box::pin(async move {
            let result = call.await.map_err(into_remote_error);
            if let Err(e) = &result {
                stats.count(e.kind());
            }
            result
        })
    }
}

impl<R: RemoteCache> RemoteCache for GuardedRemote<R> {
    fn get<'a>(&'a self, key: &'a str) -> BoxFuture<'a, Result<Option<Vec<u8>>, RemoteError>> {
        self.guarded(move |r| r.get(key))
    }

    fn set<'a>(
        &'a self,
        key: &'a str,
        value: Vec<u8>,
        ttl: Duration,
    ) -> BoxFuture<'a, Result<(), RemoteError>> {
        self.guarded(move |r| r.set(key, value, ttl))
    }

    fn delete<'a>(&'a self, key: &'a str) -> BoxFuture<'a, Result<(), RemoteError>> {
        self.guarded(move |r| r.delete(key))
    }

    fn invalidate<'a>(&'a self, key: &'a str) -> BoxFuture<'a, Result<(), RemoteError>> {
        self.guarded(move |r| r.invalidate(key))
    }

    fn invalidations(&self) -> Option<tokio::sync::broadcast::Receiver<String>> {
        self.inner.invalidations()
    }
}

impl<R: fmt::Debug> fmt::Debug for GuardedRemote<R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("GuardedRemote")
            .field("inner", &self.inner)
            .field("state", &self.handle.state())
            .finish()
    }
}

/// A cloneable view of a [`GuardedRemote`]: errors by kind and the
/// breaker.
#[derive(Clone, Debug)]
pub struct GuardHandle {
    stats: Arc<Stats>,
    breaker: Handle,
}

impl GuardHandle {
    /// Calls that failed with `kind` since the guard was built.
    pub fn errors(&self, kind: RemoteErrorKind) -> u64 {
        self.stats.counter(kind).0.load(Ordering::Relaxed)
    }

    /// The breaker's state.
    pub fn state(&self) -> State {
        self.breaker.state()
    }

    /// The breaker itself: metrics, state changes, forcing a state.
    pub fn breaker(&self) -> &Handle {
        &self.breaker
    }
}

struct Stats {
    unavailable: (AtomicU64, metrics::Counter),
    timeout: (AtomicU64, metrics::Counter),
    breaker_open: (AtomicU64, metrics::Counter),
    store: (AtomicU64, metrics::Counter),
}

impl Stats {
    fn new(instance: InstanceLabels) -> Self {
        let counter = |reason: &'static str| {
            (
                AtomicU64::new(0),
                metrics::counter!(
                    metric_name!("cache", "remote_errors_total"),
                    instance.with(labels::REASON, reason)
                ),
            )
        };
        Self {
            unavailable: counter("unavailable"),
            timeout: counter("timeout"),
            breaker_open: counter("breaker_open"),
            store: counter("store"),
        }
    }

    fn counter(&self, kind: RemoteErrorKind) -> &(AtomicU64, metrics::Counter) {
        match kind {
            RemoteErrorKind::Unavailable => &self.unavailable,
            RemoteErrorKind::Timeout => &self.timeout,
            RemoteErrorKind::BreakerOpen => &self.breaker_open,
            RemoteErrorKind::Store => &self.store,
        }
    }

    fn count(&self, kind: RemoteErrorKind) {
        let (n, counter) = self.counter(kind);
        n.fetch_add(1, Ordering::Relaxed);
        counter.increment(1);
    }
}

impl fmt::Debug for Stats {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let n = |c: &(AtomicU64, metrics::Counter)| c.0.load(Ordering::Relaxed);
        f.debug_struct("Stats")
            .field("unavailable", &n(&self.unavailable))
            .field("timeout", &n(&self.timeout))
            .field("breaker_open", &n(&self.breaker_open))
            .field("store", &n(&self.store))
            .finish()
    }
}

fn into_remote_error(e: BoxError) -> RemoteError {
    match e.downcast::<RemoteError>() {
        Ok(e) => *e,
        Err(e) if e.is::<BreakerOpen>() => RemoteError::new(RemoteErrorKind::BreakerOpen, Some(e)),
        Err(e) => RemoteError::new(RemoteErrorKind::Store, Some(e)),
    }
}

/// What trips the breaker: the store not answering (in time).
#[derive(Clone, Copy, Debug)]
struct RemoteClassifier;

impl<T> Classify<T, RemoteError> for RemoteClassifier {
    fn classify(&self, result: &Result<T, RemoteError>) -> Decision {
        match result {
            Ok(_) => Decision::success(),
            Err(e) => match e.kind() {
                RemoteErrorKind::Unavailable | RemoteErrorKind::Timeout => Decision::failure(),
                // the store answered: the connection is fine
                RemoteErrorKind::Store => Decision::success(),
                // a nested guard refused: says nothing about this one
                _ => Decision::ignored(),
            },
        }
    }
}

/// One remote call, not started until the breaker admits it.
struct Op<'a, T, F> {
    start: F,
    _out: PhantomData<fn() -> BoxFuture<'a, T>>,
}

/// The service the breaker wraps: starts an admitted [`Op`] under the
/// timeout.
#[derive(Clone, Copy, Debug)]
struct Run {
    timeout: Duration,
}

impl<'a, T, F> Service<Op<'a, T, F>> for Run
where
    F: FnOnce() -> BoxFuture<'a, Result<T, RemoteError>>,
{
    type Response = T;
    type Error = RemoteError;
    type Future = Timed<'a, T>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), RemoteError>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, op: Op<'a, T, F>) -> Timed<'a, T> {
        Timed {
            inner: tokio::time::timeout(self.timeout, (op.start)()),
        }
    }
}

pin_project! {
    /// A remote call under its timeout.
    struct Timed<'a, T> {
        #[pin]
        inner: tokio::time::Timeout<BoxFuture<'a, Result<T, RemoteError>>>,
    }
}

impl<T> Future for Timed<'_, T> {
    type Output = Result<T, RemoteError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        Poll::Ready(match ready!(self.project().inner.poll(cx)) {
            Ok(result) => result,
            Err(elapsed) => Err(RemoteError::new(
                RemoteErrorKind::Timeout,
                Some(Box::new(elapsed)),
            )),
        })
    }
}
