//! Each try runs in a `retry_attempt` span carrying its attempt number.

mod common;

use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rampart_retry::{Backoff, HedgeConfig, HedgeDelay, RetryConfig};
use tower::{Layer, ServiceExt, service_fn};
use tracing::field::{Field, Visit};
use tracing::span::{Attributes, Id, Record};
use tracing::{Event, Metadata, Subscriber};

/// A span's name and its `attempt` field.
type Created = (String, Option<u64>);

/// Records `(span name, attempt)` for every span created, and the attempt
/// of the span that was entered when the inner service was called.
#[derive(Default, Clone)]
struct Spans {
    created: Arc<Mutex<Vec<Created>>>,
    next: Arc<AtomicU64>,
}

struct Attempt(Option<u64>);

impl Visit for Attempt {
    fn record_u64(&mut self, field: &Field, value: u64) {
        if field.name() == "attempt" {
            self.0 = Some(value);
        }
    }
    fn record_debug(&mut self, _: &Field, _: &dyn std::fmt::Debug) {}
}

impl Subscriber for Spans {
    fn enabled(&self, _: &Metadata<'_>) -> bool {
        true
    }
    fn new_span(&self, span: &Attributes<'_>) -> Id {
        let mut attempt = Attempt(None);
        span.record(&mut attempt);
        self.created
            .lock()
            .unwrap()
            .push((span.metadata().name().to_string(), attempt.0));
        Id::from_u64(self.next.fetch_add(1, Ordering::SeqCst) + 1)
    }
    fn record(&self, _: &Id, _: &Record<'_>) {}
    fn record_follows_from(&self, _: &Id, _: &Id) {}
    fn event(&self, _: &Event<'_>) {}
    fn enter(&self, _: &Id) {}
    fn exit(&self, _: &Id) {}
}

/// The `attempt` field of every span called `name` created while `run`
/// ran on a paused runtime.
fn attempts(name: &str, run: impl Future<Output = ()>) -> Vec<Option<u64>> {
    let spans = Spans::default();
    let _guard = tracing::subscriber::set_default(spans.clone());
    common::paused_runtime().block_on(run);
    let created = spans.created.lock().unwrap();
    created
        .iter()
        .filter(|(span, _)| span == name)
        .map(|(_, a)| *a)
        .collect()
}

#[test]
fn a_span_per_attempt() {
    let attempts = attempts("retry_attempt", async {
        let layer = RetryConfig::new()
            .no_budget()
            .max_attempts(3)
            .backoff(Backoff::Constant {
                delay: Duration::from_millis(5),
            })
            .build()
            .unwrap();
        let svc = layer.layer(service_fn(|_: ()| async { Err::<(), _>("boom") }));
        assert!(svc.oneshot(()).await.is_err());
    });
    assert_eq!(attempts, [Some(1), Some(2), Some(3)]);
}

#[test]
fn a_span_per_hedge_attempt() {
    let attempts = attempts("hedge_attempt", async {
        let layer = HedgeConfig::new()
            .delay(HedgeDelay::Fixed(Duration::from_millis(5)))
            .build()
            .unwrap();
        // The first attempt hangs; the hedge answers.
        let calls = Arc::new(AtomicU64::new(0));
        let svc = layer.layer(service_fn(move |_: ()| {
            let first = calls.fetch_add(1, Ordering::SeqCst) == 0;
            async move {
                if first {
                    std::future::pending::<()>().await;
                }
                Ok::<_, &str>(())
            }
        }));
        svc.oneshot(()).await.unwrap();
    });
    assert_eq!(attempts, [Some(1), Some(2)]);
}
