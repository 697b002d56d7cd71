//! The cache reports through the `metrics` facade with the shared names,
//! and the same counts on its handle.

mod common;

use std::time::Duration;

use common::upstream;
use rampart_cache::CacheConfig;
use rampart_core::testing::TestRecorder;
use tower::{Layer, ServiceExt};

const NAME: (&str, &str) = ("name", "users");

#[tokio::test(start_paused = true)]
async fn counters_follow_the_calls() {
    let recorder = TestRecorder::default();
    let layer = metrics::with_local_recorder(&recorder, || {
        CacheConfig::new()
            .name("users")
            .ttl(Duration::from_secs(10))
            .ttl_jitter(0.0)
            .max_capacity(100)
            .max_entry_weight(8)
            .builder(|k: &String| (k != "skip").then(|| k.clone()))
            .negative(Option::is_none)
            .weigher(|_, v: &Option<String>| v.as_ref().map_or(1, |s| s.len() as u32))
            .build()
            .unwrap()
    });
    let h = layer.handle();
    let (up, svc) = upstream(Duration::ZERO);
    let svc = layer.layer(svc);
    for k in ["a", "a", "missing", "missing", "skip", "longer-key"] {
        svc.clone().oneshot(k.to_string()).await.unwrap();
    }
    up.set_fail(true);
    svc.clone().oneshot("b".into()).await.unwrap_err();

    let c = |name, extra: Option<(&'static str, &'static str)>| {
        let mut labels = vec![NAME];
        labels.extend(extra);
        recorder.get(name, &labels).counter()
    };
    assert_eq!(c("rampart_cache_hits_total", None), 1);
    assert_eq!(c("rampart_cache_negative_hits_total", None), 1);
    assert_eq!(c("rampart_cache_misses_total", None), 4);
    assert_eq!(c("rampart_cache_loads_total", None), 4);
    assert_eq!(c("rampart_cache_load_failures_total", None), 1);
    assert_eq!(c("rampart_cache_bypassed_total", None), 1);
    assert_eq!(
        c(
            "rampart_cache_not_stored_total",
            Some(("reason", "oversized"))
        ),
        1
    );
    let s = h.stats();
    assert_eq!(
        (
            s.hits,
            s.negative_hits,
            s.misses,
            s.loads,
            s.load_failures,
            s.bypassed,
            s.oversized
        ),
        (1, 1, 4, 4, 1, 1, 1)
    );
}
