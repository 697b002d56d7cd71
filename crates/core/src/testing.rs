//! Test support (feature `test-util`): a `metrics` recorder that keeps
//! every value, so tests can assert what a layer reports.
//!
//! ```
//! use rampart_core::testing::TestRecorder;
//!
//! let recorder = TestRecorder::default();
//! let calls = metrics::with_local_recorder(&recorder, || {
//!     metrics::counter!("rampart_demo_calls_total", "name" => "x")
//! });
//! calls.increment(2);
//! assert_eq!(recorder.get("rampart_demo_calls_total", &[("name", "x")]).counter(), 2);
//! assert_eq!(recorder.registrations(), 1);
//! ```

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use metrics::{
    Counter, CounterFn, Gauge, GaugeFn, Histogram, HistogramFn, Key, KeyName, Label, Metadata,
    Recorder, SharedString, Unit,
};

/// One metric's value, whatever its kind.
#[derive(Debug, Default)]
pub struct MetricValue {
    counter: AtomicU64,
    gauge: Mutex<f64>,
    histogram: Mutex<Vec<f64>>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

impl MetricValue {
    /// The counter's value.
    pub fn counter(&self) -> u64 {
        self.counter.load(Ordering::SeqCst)
    }

    /// The gauge's value.
    pub fn gauge(&self) -> f64 {
        *lock(&self.gauge)
    }

    /// Every value the histogram recorded, in order.
    pub fn histogram(&self) -> Vec<f64> {
        lock(&self.histogram).clone()
    }
}

impl CounterFn for MetricValue {
    fn increment(&self, value: u64) {
        self.counter.fetch_add(value, Ordering::SeqCst);
    }
    fn absolute(&self, value: u64) {
        self.counter.fetch_max(value, Ordering::SeqCst);
    }
}

impl GaugeFn for MetricValue {
    fn increment(&self, value: f64) {
        *lock(&self.gauge) += value;
    }
    fn decrement(&self, value: f64) {
        *lock(&self.gauge) -= value;
    }
    fn set(&self, value: f64) {
        *lock(&self.gauge) = value;
    }
}

impl HistogramFn for MetricValue {
    fn record(&self, value: f64) {
        lock(&self.histogram).push(value);
    }
}

/// Counts registrations and keeps every metric's value by name and labels.
#[derive(Debug, Default)]
pub struct TestRecorder {
    registrations: AtomicU64,
    values: Mutex<HashMap<Key, Arc<MetricValue>>>,
}

impl TestRecorder {
    fn register(&self, key: &Key) -> Arc<MetricValue> {
        self.registrations.fetch_add(1, Ordering::SeqCst);
        Arc::clone(lock(&self.values).entry(key.clone()).or_default())
    }

    /// How many handles were registered.
    pub fn registrations(&self) -> u64 {
        self.registrations.load(Ordering::SeqCst)
    }

    /// The metric `name` with exactly `labels` (in registration order).
    ///
    /// # Panics
    ///
    /// If no such metric was registered: the test fails naming it.
    pub fn get(
        &self,
        name: &'static str,
        labels: &[(&'static str, &'static str)],
    ) -> Arc<MetricValue> {
        let labels: Vec<Label> = labels.iter().map(|(k, v)| Label::new(*k, *v)).collect();
        let key = Key::from_parts(name, labels);
        lock(&self.values)
            .get(&key)
            .cloned()
            .unwrap_or_else(|| panic!("{key:?} was never registered"))
    }
}

impl Recorder for TestRecorder {
    fn describe_counter(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}
    fn describe_gauge(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}
    fn describe_histogram(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}

    fn register_counter(&self, key: &Key, _: &Metadata<'_>) -> Counter {
        Counter::from_arc(self.register(key))
    }

    fn register_gauge(&self, key: &Key, _: &Metadata<'_>) -> Gauge {
        Gauge::from_arc(self.register(key))
    }

    fn register_histogram(&self, key: &Key, _: &Metadata<'_>) -> Histogram {
        Histogram::from_arc(self.register(key))
    }
}
