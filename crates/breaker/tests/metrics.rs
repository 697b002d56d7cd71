//! The breaker reports through the `metrics` facade with the shared names.

use std::time::Duration;

use rampart_breaker::BreakerConfig;
use rampart_core::testing::TestRecorder;
use tower::{Layer, ServiceExt, service_fn};

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
    const NAME: (&str, &str) = ("name", "inventory");
    let calls = |outcome| {
        recorder
            .get("rampart_breaker_calls_total", &[NAME, ("outcome", outcome)])
            .counter()
    };
    assert_eq!(calls("success"), 1);
    assert_eq!(calls("failure"), 3);
    assert_eq!(calls("rejected"), 1);
    // every call took 150 ms ≥ 100 ms: slow, failed or not
    assert_eq!(
        recorder
            .get("rampart_breaker_slow_calls_total", &[NAME])
            .counter(),
        4
    );
    let opened = recorder.get(
        "rampart_breaker_transitions_total",
        &[NAME, ("state", "open")],
    );
    assert_eq!(opened.counter(), 1);
    assert_eq!(recorder.get("rampart_breaker_state", &[NAME]).gauge(), 1.0);
}
