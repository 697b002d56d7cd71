//! The retry layer reports through the `metrics` facade with the shared names.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use metrics::{Counter, Gauge, Histogram, Key, KeyName, Metadata, Recorder, SharedString, Unit};
use rampart_retry::{Backoff, BudgetConfig, RetryConfig};
use tower::{Layer, ServiceExt, service_fn};

/// Keeps every counter by `name{label=value,...}`.
#[derive(Default)]
struct TestRecorder {
    values: Mutex<BTreeMap<String, Arc<AtomicU64>>>,
}

impl TestRecorder {
    fn slot(&self, key: &Key) -> Arc<AtomicU64> {
        let labels: Vec<String> = key
            .labels()
            .map(|l| format!("{}={}", l.key(), l.value()))
            .collect();
        let id = format!("{}{{{}}}", key.name(), labels.join(","));
        Arc::clone(self.values.lock().unwrap().entry(id).or_default())
    }

    fn counter(&self, id: &str) -> u64 {
        self.values
            .lock()
            .unwrap()
            .get(id)
            .map_or(0, |v| v.load(Ordering::SeqCst))
    }
}

impl Recorder for TestRecorder {
    fn describe_counter(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}
    fn describe_gauge(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}
    fn describe_histogram(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}
    fn register_counter(&self, key: &Key, _: &Metadata<'_>) -> Counter {
        Counter::from_arc(self.slot(key))
    }
    fn register_gauge(&self, key: &Key, _: &Metadata<'_>) -> Gauge {
        Gauge::from_arc(self.slot(key))
    }
    fn register_histogram(&self, _: &Key, _: &Metadata<'_>) -> Histogram {
        Histogram::noop()
    }
}

#[test]
fn reports_attempts_retries_and_exhaustion() {
    let recorder = TestRecorder::default();
    metrics::with_local_recorder(&recorder, || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .start_paused(true)
            .build()
            .unwrap();
        rt.block_on(async {
            // one retry per window, whatever the traffic
            let layer = RetryConfig::new()
                .name("inventory")
                .max_attempts(3)
                .backoff(Backoff::Constant {
                    delay: Duration::from_millis(10),
                })
                .budget(
                    BudgetConfig::new()
                        .ratio(0.0)
                        .min_per_second(1)
                        .window(Duration::from_secs(1), 1),
                )
                .build()
                .unwrap();
            let svc = layer.layer(service_fn(|fail: bool| async move {
                if fail { Err("boom") } else { Ok(()) }
            }));
            svc.clone().oneshot(false).await.unwrap();
            // try, retry (the only one paid for), then the budget is out
            assert!(svc.clone().oneshot(true).await.is_err());
        });
    });
    let c = |id: &str| recorder.counter(id);
    assert_eq!(c("rampart_retry_attempts_total{name=inventory}"), 3);
    assert_eq!(c("rampart_retry_retries_total{name=inventory}"), 1);
    assert_eq!(c("rampart_retry_budget_exhausted_total{name=inventory}"), 1);
}
