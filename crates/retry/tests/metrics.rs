//! The retry layer reports through the `metrics` facade with the shared names.

mod common;

use std::time::Duration;

use rampart_core::testing::TestRecorder;
use rampart_retry::{Backoff, BudgetConfig, RetryConfig};
use tower::{Layer, ServiceExt, service_fn};

#[test]
fn reports_attempts_retries_and_exhaustion() {
    let recorder = TestRecorder::default();
    metrics::with_local_recorder(&recorder, || {
        common::paused_runtime().block_on(async {
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
    let c = |name| recorder.get(name, &[("name", "inventory")]).counter();
    assert_eq!(c("rampart_retry_attempts_total"), 3);
    assert_eq!(c("rampart_retry_retries_total"), 1);
    assert_eq!(c("rampart_retry_budget_exhausted_total"), 1);
}
