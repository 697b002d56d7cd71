//! The breaker reports through the `metrics` facade with the shared names.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use metrics::{Counter, Gauge, Histogram, Key, KeyName, Metadata, Recorder, SharedString, Unit};
use rampart_breaker::BreakerConfig;
use tower::{Layer, ServiceExt, service_fn};

/// Keeps every counter and gauge by `name{label=value,...}`.
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

    fn gauge(&self, id: &str) -> f64 {
        f64::from_bits(self.counter(id))
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
fn reports_calls_rejections_state_and_transitions() {
    let recorder = TestRecorder::default();
    metrics::with_local_recorder(&recorder, || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .start_paused(true)
            .build()
            .unwrap();
        rt.block_on(async {
            let layer = BreakerConfig::new()
                .name("inventory")
                .count_window(10)
                .minimum_calls(4)
                .slow_calls(Duration::from_millis(100), 1.0)
                .build()
                .unwrap();
            let svc = layer.layer(service_fn(|fail: bool| async move {
                tokio::time::sleep(Duration::from_millis(150)).await;
                if fail { Err("boom") } else { Ok(()) }
            }));
            svc.clone().oneshot(false).await.unwrap();
            // 1 success + 3 failures: 75% of 4 calls failed, it opens.
            for _ in 0..3 {
                let _ = svc.clone().oneshot(true).await;
            }
            assert!(svc.clone().oneshot(false).await.is_err());
        });
    });
    let c = |id: &str| recorder.counter(id);
    assert_eq!(
        c("rampart_breaker_calls_total{name=inventory,outcome=success}"),
        1
    );
    assert_eq!(
        c("rampart_breaker_calls_total{name=inventory,outcome=failure}"),
        3
    );
    assert_eq!(
        c("rampart_breaker_calls_total{name=inventory,outcome=rejected}"),
        1
    );
    // every call took 150 ms ≥ 100 ms: slow, failed or not
    assert_eq!(c("rampart_breaker_slow_calls_total{name=inventory}"), 4);
    assert_eq!(
        c("rampart_breaker_transitions_total{name=inventory,state=open}"),
        1
    );
    assert_eq!(recorder.gauge("rampart_breaker_state{name=inventory}"), 1.0);
}
