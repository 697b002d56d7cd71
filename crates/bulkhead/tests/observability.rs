//! Metrics through the `metrics` facade and tracing events, captured with a
//! small in-test recorder and subscriber.

use std::time::Duration;

use rampart_bulkhead::BulkheadConfig;
use rampart_core::keyed::KeyedConfig;
use rampart_core::testing::TestRecorder;
use tokio_test::{assert_pending, assert_ready_err, assert_ready_ok, task};
use tower_test::{assert_request_eq, mock};

const NAME: (&str, &str) = ("name", "payments");

#[tokio::test(start_paused = true)]
async fn metrics_are_registered_once_and_follow_the_calls() {
    let recorder = TestRecorder::default();
    let layer = metrics::with_local_recorder(&recorder, || {
        BulkheadConfig::default()
            .name("payments")
            .max_concurrent(1)
            .max_wait(Duration::from_millis(100))
            .max_queued(1)
            .build()
            .unwrap()
    });
    let registered = recorder.registrations();
    assert_eq!(
        registered, 7,
        "every handle is registered when the bulkhead is built"
    );
    let max = recorder.get("rampart_bulkhead_max_concurrent", &[NAME]);
    assert_eq!(max.gauge(), 1.0);

    let h = layer.handle();
    let (mut svc, mut inner) = mock::spawn_layer::<&'static str, &'static str, _>(layer);
    // calls run outside the recorder's scope: they only use the handles
    assert_ready_ok!(svc.poll_ready());
    let mut a = task::spawn(svc.call("a"));
    let in_flight = recorder.get("rampart_bulkhead_in_flight", &[NAME]);
    assert_eq!(in_flight.gauge(), 1.0);

    assert_ready_ok!(svc.poll_ready());
    let mut b = task::spawn(svc.call("b"));
    assert_pending!(b.poll());
    let queued = recorder.get("rampart_bulkhead_queued", &[NAME]);
    assert_eq!(queued.gauge(), 1.0);
    assert_ready_ok!(svc.poll_ready());
    let mut c = task::spawn(svc.call("c"));
    assert_ready_err!(c.poll());

    tokio::time::advance(Duration::from_millis(100)).await;
    assert_ready_err!(b.poll());
    assert_eq!(queued.gauge(), 0.0);

    assert_request_eq!(inner, "a").send_response("A");
    assert_ready_ok!(a.poll());
    assert_eq!(in_flight.gauge(), 0.0);

    let admitted = recorder.get("rampart_bulkhead_admitted_total", &[NAME]);
    assert_eq!(admitted.counter(), 1);
    let full = recorder.get(
        "rampart_bulkhead_rejected_total",
        &[NAME, ("reason", "full")],
    );
    assert_eq!(full.counter(), 1);
    let timed_out = recorder.get(
        "rampart_bulkhead_rejected_total",
        &[NAME, ("reason", "max_wait")],
    );
    assert_eq!(timed_out.counter(), 1);
    let wait = recorder.get("rampart_bulkhead_wait_seconds", &[NAME]);
    assert_eq!(wait.histogram(), [0.1]);

    h.set_max_concurrent(5).unwrap();
    assert_eq!(max.gauge(), 5.0);
    assert_eq!(recorder.registrations(), registered);
}

#[tokio::test(start_paused = true)]
async fn each_key_registers_its_metrics_with_a_key_label() {
    let recorder = TestRecorder::default();
    let layer = BulkheadConfig::default()
        .name("payments")
        .max_concurrent(1)
        .build_keyed(|req: &&'static str| *req, KeyedConfig::default())
        .unwrap();
    let (mut svc, _inner) = mock::spawn_layer::<&'static str, &'static str, _>(layer);
    let (_a1, _a2, _b1) = metrics::with_local_recorder(&recorder, || {
        let mut call = |req| {
            assert_ready_ok!(svc.poll_ready());
            svc.call(req)
        };
        (call("a"), call("a"), call("b"))
    });
    // two keys, seven handles each; the second call on "a" registered none
    assert_eq!(recorder.registrations(), 14);
    let a = recorder.get("rampart_bulkhead_in_flight", &[NAME, ("key", "a")]);
    assert_eq!(a.gauge(), 1.0);
    let a_full = recorder.get(
        "rampart_bulkhead_rejected_total",
        &[NAME, ("key", "a"), ("reason", "full")],
    );
    assert_eq!(a_full.counter(), 1);
}

mod capture {
    //! A subscriber that keeps every event as `field=value` strings.

    use std::fmt::Debug;
    use std::sync::{Arc, Mutex};

    use tracing::field::{Field, Visit};
    use tracing::span::{Attributes, Id, Record};
    use tracing::{Event, Level, Metadata, Subscriber};

    /// Each event's level and its fields.
    pub(crate) type Events = Arc<Mutex<Vec<(Level, Vec<String>)>>>;

    #[derive(Clone, Default)]
    pub(crate) struct Capture(pub(crate) Events);

    struct Fields<'a>(&'a mut Vec<String>);

    impl Visit for Fields<'_> {
        fn record_debug(&mut self, field: &Field, value: &dyn Debug) {
            self.0.push(format!("{}={:?}", field.name(), value));
        }
    }

    impl Subscriber for Capture {
        fn enabled(&self, _: &Metadata<'_>) -> bool {
            true
        }
        fn new_span(&self, _: &Attributes<'_>) -> Id {
            Id::from_u64(1)
        }
        fn record(&self, _: &Id, _: &Record<'_>) {}
        fn record_follows_from(&self, _: &Id, _: &Id) {}
        fn event(&self, event: &Event<'_>) {
            let mut fields = Vec::new();
            event.record(&mut Fields(&mut fields));
            self.0
                .lock()
                .unwrap()
                .push((*event.metadata().level(), fields));
        }
        fn enter(&self, _: &Id) {}
        fn exit(&self, _: &Id) {}
    }
}

#[tokio::test]
async fn a_rejection_emits_a_debug_event_with_structured_fields() {
    let capture = capture::Capture::default();
    let layer = BulkheadConfig::default()
        .name("payments")
        .max_concurrent(1)
        .build()
        .unwrap();
    let (mut svc, _inner) = mock::spawn_layer::<&'static str, &'static str, _>(layer);
    let _calls = tracing::subscriber::with_default(capture.clone(), || {
        let mut call = |req| {
            assert_ready_ok!(svc.poll_ready());
            svc.call(req)
        };
        (call("a"), call("b"))
    });

    let events = capture.0.lock().unwrap();
    assert_eq!(events.len(), 1, "one event, for the rejection only");
    let (level, fields) = &events[0];
    assert_eq!(*level, tracing::Level::DEBUG);
    for expected in [
        "message=bulkhead full, call rejected",
        "name=payments",
        "max_concurrent=1",
        "in_flight=1",
        "queued=0",
        "waited=0ns",
        "reason=\"full\"",
    ] {
        assert!(
            fields.iter().any(|f| f == expected),
            "{expected} not in {fields:?}"
        );
    }
}
