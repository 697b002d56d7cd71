//! `GuardedRemote` around a scripted store, on tokio's paused clock: the
//! timeout, the breaker (open, fail fast, half-open recovery), what counts
//! as a failure, and the counters and metrics.

use std::sync::Arc;
use std::sync::atomic::{AtomicU8, AtomicU32, Ordering};
use std::time::Duration;

use rampart_breaker::{BreakerConfig, State};
use rampart_cache::remote::{
    BoxFuture, GuardConfig, GuardedRemote, RemoteCache, RemoteError, RemoteErrorKind,
};
use rampart_core::testing::TestRecorder;

const UP: u8 = 0;
const DOWN: u8 = 1;
const HANGS: u8 = 2;
const ERRORS: u8 = 3;

/// A store whose behaviour the test switches, counting calls that reach it.
#[derive(Clone, Debug, Default)]
struct Scripted {
    mode: Arc<AtomicU8>,
    calls: Arc<AtomicU32>,
}

impl Scripted {
    fn set_mode(&self, mode: u8) {
        self.mode.store(mode, Ordering::SeqCst);
    }

    fn calls(&self) -> u32 {
        self.calls.load(Ordering::SeqCst)
    }

    fn answer<T: Send + 'static>(&self, ok: T) -> BoxFuture<'_, Result<T, RemoteError>> {
        self.calls.fetch_add(1, Ordering::SeqCst);
        let mode = self.mode.load(Ordering::SeqCst);
        Box::pin(async move {
            match mode {
                UP => Ok(ok),
                DOWN => Err(RemoteError::new(RemoteErrorKind::Unavailable, None)),
                ERRORS => Err(RemoteError::new(RemoteErrorKind::Store, None)),
                _ => std::future::pending().await,
            }
        })
    }
}

impl RemoteCache for Scripted {
    fn get<'a>(&'a self, _: &'a str) -> BoxFuture<'a, Result<Option<Vec<u8>>, RemoteError>> {
        self.answer(Some(b"v".to_vec()))
    }
    fn set<'a>(
        &'a self,
        _: &'a str,
        _: Vec<u8>,
        _: Duration,
    ) -> BoxFuture<'a, Result<(), RemoteError>> {
        self.answer(())
    }
    fn delete<'a>(&'a self, _: &'a str) -> BoxFuture<'a, Result<(), RemoteError>> {
        self.answer(())
    }
    fn invalidate<'a>(&'a self, _: &'a str) -> BoxFuture<'a, Result<(), RemoteError>> {
        self.answer(())
    }
}

fn guard(store: &Scripted) -> GuardedRemote<Scripted> {
    GuardConfig::new()
        .name("users")
        .timeout(Duration::from_millis(50))
        .breaker(
            BreakerConfig::new()
                .count_window(4)
                .minimum_calls(4)
                .failure_rate_threshold(0.5)
                .open_duration(Duration::from_secs(1))
                .half_open_max_calls(1),
        )
        .build(store.clone())
        .unwrap()
}

fn kind<T: std::fmt::Debug>(r: Result<T, RemoteError>) -> RemoteErrorKind {
    r.unwrap_err().kind()
}

#[tokio::test(start_paused = true)]
async fn a_slow_store_times_out() {
    let store = Scripted::default();
    let remote = guard(&store);
    store.set_mode(HANGS);
    let started = tokio::time::Instant::now();
    assert_eq!(kind(remote.get("k").await), RemoteErrorKind::Timeout);
    assert_eq!(started.elapsed(), Duration::from_millis(50));
    assert_eq!(remote.handle().errors(RemoteErrorKind::Timeout), 1);
}

#[tokio::test(start_paused = true)]
async fn opens_fails_fast_and_recovers_through_a_trial_call() {
    let store = Scripted::default();
    let remote = guard(&store);
    let handle = remote.handle();
    assert_eq!(remote.get("k").await.unwrap(), Some(b"v".to_vec()));

    store.set_mode(DOWN);
    for _ in 0..2 {
        assert_eq!(kind(remote.get("k").await), RemoteErrorKind::Unavailable);
    }
    store.set_mode(HANGS);
    assert_eq!(
        kind(remote.set("k", vec![], Duration::from_secs(1)).await),
        RemoteErrorKind::Timeout
    );
    assert_eq!(handle.state(), State::Open);

    // open: refused without reaching the store
    let reached = store.calls();
    for _ in 0..10 {
        assert_eq!(kind(remote.delete("k").await), RemoteErrorKind::BreakerOpen);
    }
    assert_eq!(store.calls(), reached);
    assert_eq!(handle.errors(RemoteErrorKind::BreakerOpen), 10);

    // the store returns; after the open duration one trial closes it
    store.set_mode(UP);
    tokio::time::advance(Duration::from_millis(1001)).await;
    remote.invalidate("k").await.unwrap();
    assert_eq!(handle.state(), State::Closed);
    assert_eq!(remote.get("k").await.unwrap(), Some(b"v".to_vec()));
    assert_eq!(store.calls(), reached + 2);
    assert_eq!(handle.errors(RemoteErrorKind::Unavailable), 2);
    assert_eq!(handle.errors(RemoteErrorKind::Timeout), 1);
}

#[tokio::test(start_paused = true)]
async fn a_failed_trial_reopens() {
    let store = Scripted::default();
    let remote = guard(&store);
    store.set_mode(DOWN);
    for _ in 0..4 {
        let _ = remote.get("k").await;
    }
    assert_eq!(remote.handle().state(), State::Open);
    tokio::time::advance(Duration::from_millis(1001)).await;
    assert_eq!(kind(remote.get("k").await), RemoteErrorKind::Unavailable);
    assert_eq!(remote.handle().state(), State::Open);
    assert_eq!(kind(remote.get("k").await), RemoteErrorKind::BreakerOpen);
}

#[tokio::test(start_paused = true)]
async fn store_errors_are_counted_but_do_not_open_the_breaker() {
    let store = Scripted::default();
    let remote = guard(&store);
    store.set_mode(ERRORS);
    for _ in 0..20 {
        assert_eq!(kind(remote.get("k").await), RemoteErrorKind::Store);
    }
    assert_eq!(remote.handle().state(), State::Closed);
    assert_eq!(remote.handle().errors(RemoteErrorKind::Store), 20);
}

#[test]
fn errors_are_reported_as_metrics() {
    let recorder = TestRecorder::default();
    metrics::with_local_recorder(&recorder, || {
        tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .start_paused(true)
            .build()
            .unwrap()
            .block_on(async {
                let store = Scripted::default();
                let remote = guard(&store);
                store.set_mode(DOWN);
                for _ in 0..4 {
                    let _ = remote.get("k").await;
                }
                let _ = remote.get("k").await;
                store.set_mode(HANGS);
                tokio::time::advance(Duration::from_millis(1001)).await;
                let _ = remote.get("k").await;
            });
    });
    let c = |reason| {
        recorder
            .get(
                "rampart_cache_remote_errors_total",
                &[("name", "users"), ("reason", reason)],
            )
            .counter()
    };
    assert_eq!(c("unavailable"), 4);
    assert_eq!(c("breaker_open"), 1);
    assert_eq!(c("timeout"), 1);
    assert_eq!(c("store"), 0);
}

#[test]
fn bad_settings_name_their_field() {
    let err = GuardConfig::new()
        .timeout(Duration::ZERO)
        .validate()
        .unwrap_err();
    assert_eq!(err.field(), "remote.timeout");
    let err = GuardConfig::new()
        .breaker(BreakerConfig::new().failure_rate_threshold(2.0))
        .build(Scripted::default())
        .unwrap_err();
    assert_eq!(err.field(), "failure_rate_threshold");
    let cfg: Result<GuardConfig, _> = toml::from_str("timeout = \"1s\"\nretries = 3");
    assert!(cfg.is_err(), "unknown keys are refused");
}
