//! The rate limiter and the queue report through the `metrics` facade with
//! the shared names and labels.

use std::time::Duration;

use rampart_backpressure::{Admission, Queue, QueueConfig, RateLimitConfig};
use rampart_core::keyed::KeyedConfig;
use rampart_core::testing::TestRecorder;
use tokio_test::{assert_pending, assert_ready_ok, task};
use tower::{Layer, Service, ServiceExt, service_fn};
use tower_test::{assert_request_eq, mock};

const MS: Duration = Duration::from_millis(1);

/// Runs `test` on a paused current-thread runtime with `recorder` as this
/// thread's recorder.
fn with_recorder<F: std::future::Future<Output = ()>>(
    recorder: &TestRecorder,
    test: impl FnOnce() -> F,
) {
    metrics::with_local_recorder(recorder, || {
        tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .start_paused(true)
            .build()
            .unwrap()
            .block_on(test());
    });
}

async fn settle() {
    for _ in 0..10 {
        tokio::task::yield_now().await;
    }
}

#[test]
fn rate_limiter_reports_admitted_delayed_rejected_and_its_rate() {
    let recorder = TestRecorder::default();
    with_recorder(&recorder, || async {
        // one call every 100 ms, no burst; wait up to 150 ms for a slot
        let layer = RateLimitConfig::new()
            .name("api")
            .rate(10, Duration::from_secs(1))
            .burst(1)
            .admission(Admission::Wait(150 * MS))
            .build()
            .unwrap();
        let handle = layer.handle();
        let svc = layer.layer(service_fn(|()| async { Ok::<_, std::io::Error>(()) }));
        svc.clone().oneshot(()).await.unwrap();
        let mut second = svc.clone();
        let mut third = svc.clone();
        second.ready().await.unwrap();
        third.ready().await.unwrap();
        let delayed = second.call(()); // its slot is 100 ms away
        let refused = third.call(()); // 200 ms away: beyond the bound
        assert!(refused.await.is_err());
        delayed.await.unwrap();
        assert_eq!(
            recorder
                .get("rampart_backpressure_rate_per_second", &[("name", "api")])
                .gauge(),
            10.0
        );
        handle.set_rate(20, Duration::from_secs(1)).unwrap();
    });
    let get = |name| recorder.get(name, &[("name", "api")]);
    assert_eq!(get("rampart_backpressure_rate_admitted_total").counter(), 2);
    assert_eq!(get("rampart_backpressure_rate_delayed_total").counter(), 1);
    assert_eq!(get("rampart_backpressure_rate_per_second").gauge(), 20.0);
    let rejected = recorder.get(
        "rampart_backpressure_rejected_total",
        &[("name", "api"), ("reason", "rate_limited")],
    );
    assert_eq!(rejected.counter(), 1);
}

#[test]
fn keyed_rate_limiters_label_each_key() {
    let recorder = TestRecorder::default();
    with_recorder(&recorder, || async {
        let layer = RateLimitConfig::new()
            .name("api")
            .rate(1, Duration::from_secs(1))
            .burst(1)
            .build_keyed(|k: &&'static str| *k, KeyedConfig::default())
            .unwrap();
        let svc = layer.layer(service_fn(|_: &'static str| async {
            Ok::<_, std::io::Error>(())
        }));
        svc.clone().oneshot("a").await.unwrap();
        assert!(svc.clone().oneshot("a").await.is_err());
        svc.clone().oneshot("b").await.unwrap();
    });
    for (key, admitted, rejected) in [("a", 1, 1), ("b", 1, 0)] {
        let labels = [("name", "api"), ("key", key)];
        let get = |name| recorder.get(name, &labels);
        assert_eq!(
            get("rampart_backpressure_rate_admitted_total").counter(),
            admitted
        );
        assert_eq!(get("rampart_backpressure_rate_per_second").gauge(), 1.0);
        let reason = [("name", "api"), ("key", key), ("reason", "rate_limited")];
        assert_eq!(
            recorder
                .get("rampart_backpressure_rejected_total", &reason)
                .counter(),
            rejected
        );
    }
}

type QueueSvc = Queue<u32, mock::future::ResponseFuture<u32>>;

#[test]
fn queue_reports_depth_sojourn_and_queue_full() {
    let recorder = TestRecorder::default();
    with_recorder(&recorder, || async {
        let (inner, mut handle) = mock::pair::<u32, u32>();
        handle.allow(0);
        let svc: QueueSvc = QueueConfig::new()
            .name("ingest")
            .capacity(2)
            .build()
            .unwrap()
            .layer(inner);
        let mut svc = mock::Spawn::new(svc);
        let depth = recorder.get("rampart_backpressure_queue_depth", &[("name", "ingest")]);
        let mut calls = Vec::new();
        for i in 0..2 {
            assert_ready_ok!(svc.poll_ready());
            let mut call = task::spawn(svc.call(i));
            assert_pending!(call.poll());
            calls.push(call);
        }
        assert_eq!(depth.gauge(), 2.0);
        assert_ready_ok!(svc.poll_ready());
        assert!(svc.call(9).await.is_err(), "full");

        tokio::time::advance(5 * MS).await;
        handle.allow(2);
        settle().await;
        assert_eq!(depth.gauge(), 0.0);
        assert_request_eq!(handle, 0).send_response(0);
        assert_request_eq!(handle, 1).send_response(1);
        for call in calls {
            call.await.unwrap();
        }
    });
    let sojourn = recorder
        .get(
            "rampart_backpressure_queue_sojourn_seconds",
            &[("name", "ingest")],
        )
        .histogram();
    assert_eq!(sojourn, [0.005, 0.005]);
    let rejected = |reason| {
        recorder
            .get(
                "rampart_backpressure_rejected_total",
                &[("name", "ingest"), ("reason", reason)],
            )
            .counter()
    };
    assert_eq!(rejected("queue_full"), 1);
    assert_eq!(rejected("shed"), 0);
}

#[test]
fn queue_counts_shed_calls_with_reason_shed() {
    let recorder = TestRecorder::default();
    let mut shed = 0;
    with_recorder(&recorder, || async {
        let (inner, mut handle) = mock::pair::<u32, u32>();
        handle.allow(0);
        let svc: QueueSvc = QueueConfig::new()
            .name("red")
            .capacity(4)
            .shed_depth(1)
            .seed(11)
            .build()
            .unwrap()
            .layer(inner);
        let queue = svc.handle();
        let mut svc = mock::Spawn::new(svc);
        let mut kept = Vec::new();
        for i in 0..50 {
            assert_ready_ok!(svc.poll_ready());
            let mut call = task::spawn(svc.call(i));
            if call.poll().is_pending() {
                kept.push(call);
            }
        }
        shed = queue.shed();
        assert_eq!(shed, 50 - kept.len() as u64);
    });
    assert!(shed > 0);
    let rejected = |reason| {
        recorder
            .get(
                "rampart_backpressure_rejected_total",
                &[("name", "red"), ("reason", reason)],
            )
            .counter()
    };
    assert_eq!(rejected("shed"), shed);
    assert_eq!(rejected("queue_full"), 0);
}

#[test]
fn keyed_queues_label_each_key() {
    let recorder = TestRecorder::default();
    with_recorder(&recorder, || async {
        let layer = QueueConfig::new()
            .name("tenants")
            .build_keyed(|k: &&'static str| *k, KeyedConfig::default())
            .unwrap();
        let svc = layer.layer(service_fn(|k: &'static str| async move {
            Ok::<_, std::io::Error>(k)
        }));
        assert_eq!(svc.clone().oneshot("a").await.unwrap(), "a");
        assert_eq!(svc.clone().oneshot("b").await.unwrap(), "b");
    });
    for key in ["a", "b"] {
        let labels = [("name", "tenants"), ("key", key)];
        let sojourn = recorder
            .get("rampart_backpressure_queue_sojourn_seconds", &labels)
            .histogram();
        assert_eq!(sojourn.len(), 1, "{key}");
        let depth = recorder.get("rampart_backpressure_queue_depth", &labels);
        assert_eq!(depth.gauge(), 0.0);
    }
}
