//! The adaptive limiter reports through the `metrics` facade with the
//! shared names: its limit, calls in flight, rejections and drops, per
//! instance and per key.

use std::time::Duration;

use rampart_backpressure::{AdaptiveLimitConfig, Admission};
use rampart_core::keyed::KeyedConfig;
use rampart_core::testing::TestRecorder;
use tokio_test::{assert_pending, assert_ready_err, assert_ready_ok, task};
use tower::Layer;
use tower_test::mock;

type Mock = mock::Mock<&'static str, &'static str>;

const LIMIT: &str = "rampart_backpressure_concurrency_limit";
const IN_FLIGHT: &str = "rampart_backpressure_concurrency_in_flight";
const DROPS: &str = "rampart_backpressure_concurrency_drops_total";
const REJECTED: &str = "rampart_backpressure_rejected_total";

/// Runs `test` on a paused current-thread runtime with `recorder`
/// installed, so that handles registered while it runs land there.
fn with_recorder(recorder: &TestRecorder, test: impl AsyncFnOnce()) {
    metrics::with_local_recorder(recorder, || {
        tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .start_paused(true)
            .build()
            .unwrap()
            .block_on(test());
    });
}

#[test]
fn reports_limit_in_flight_rejections_and_drops() {
    let recorder = TestRecorder::default();
    let gauge = |name| recorder.get(name, &[("name", "db")]).gauge();
    with_recorder(&recorder, async || {
        let layer = AdaptiveLimitConfig::new()
            .name("db")
            .initial_limit(2)
            .backoff_ratio(0.5)
            .admission(Admission::FailFast)
            .build()
            .unwrap();
        let (mut svc, mut inner) = mock::spawn_with(|m: Mock| layer.layer(m));
        inner.allow(10);
        assert_eq!(gauge(LIMIT), 2.0);

        assert_ready_ok!(svc.poll_ready());
        let mut a = task::spawn(svc.call("a"));
        assert_ready_ok!(svc.poll_ready());
        let b = task::spawn(svc.call("b"));
        assert_pending!(a.poll());
        assert_eq!(gauge(IN_FLIGHT), 2.0);
        assert_ready_ok!(svc.poll_ready());
        let mut c = task::spawn(svc.call("c"));
        assert_ready_err!(c.poll());

        let (_, send) = inner.next_request().await.unwrap();
        send.send_error(std::io::Error::other("boom"));
        assert_ready_err!(a.poll());
        // The failure is a drop: the limit halves.
        assert_eq!(gauge(LIMIT), 1.0);
        assert_eq!(gauge(IN_FLIGHT), 1.0);
        drop(b);
        assert_eq!(gauge(IN_FLIGHT), 0.0);
    });
    let counter = |name, labels: &[_]| recorder.get(name, labels).counter();
    assert_eq!(
        counter(REJECTED, &[("name", "db"), ("reason", "concurrency_limit")]),
        1
    );
    assert_eq!(counter(DROPS, &[("name", "db")]), 1);
}

#[test]
fn keyed_limiters_report_with_a_key_label() {
    let recorder = TestRecorder::default();
    with_recorder(&recorder, async || {
        let layer = AdaptiveLimitConfig::new()
            .name("api")
            .initial_limit(1)
            .max_limit(1)
            .latency_threshold(Duration::from_millis(100))
            .build_keyed(|req: &&'static str| *req, KeyedConfig::default())
            .unwrap();
        let (mut svc, mut inner) = mock::spawn_with(|m: Mock| layer.layer(m));
        inner.allow(10);
        assert_ready_ok!(svc.poll_ready());
        let mut held = task::spawn(svc.call("tenant-a"));
        assert_pending!(held.poll());
        assert_ready_ok!(svc.poll_ready());
        let mut refused = task::spawn(svc.call("tenant-a"));
        assert_ready_err!(refused.poll());
        assert_ready_ok!(svc.poll_ready());
        let mut other = task::spawn(svc.call("tenant-b"));
        assert_pending!(other.poll());
        for _ in 0..2 {
            let (_, send) = inner.next_request().await.unwrap();
            send.send_response("ok");
        }
        assert_ready_ok!(held.poll());
        assert_ready_ok!(other.poll());
    });
    let labels = |key| [("name", "api"), ("key", key)];
    for key in ["tenant-a", "tenant-b"] {
        assert_eq!(recorder.get(LIMIT, &labels(key)).gauge(), 1.0);
        assert_eq!(recorder.get(IN_FLIGHT, &labels(key)).gauge(), 0.0);
        assert_eq!(recorder.get(DROPS, &labels(key)).counter(), 0);
    }
    let rejected = |key| {
        recorder
            .get(
                REJECTED,
                &[
                    ("name", "api"),
                    ("key", key),
                    ("reason", "concurrency_limit"),
                ],
            )
            .counter()
    };
    assert_eq!((rejected("tenant-a"), rejected("tenant-b")), (1, 0));
}
