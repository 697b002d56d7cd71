//! An upstream that counts its calls, answers after a delay and can be
//! told to fail or to answer "not found".

#![allow(dead_code, unreachable_pub)]

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use rampart_core::BoxError;
use tower::util::BoxCloneService;
use tower::{ServiceExt, service_fn};

/// Knobs and counters of a fake upstream.
#[derive(Debug, Default)]
pub struct Upstream {
    pub calls: AtomicUsize,
    pub fail: AtomicBool,
    /// Version the answers, so a test can tell a refreshed value.
    pub version: AtomicUsize,
}

impl Upstream {
    pub fn calls(&self) -> usize {
        self.calls.load(Ordering::SeqCst)
    }

    pub fn set_fail(&self, fail: bool) {
        self.fail.store(fail, Ordering::SeqCst);
    }

    pub fn bump(&self) {
        self.version.fetch_add(1, Ordering::SeqCst);
    }
}

/// A service answering `key` with `"key@version"` after `delay`, or
/// `None` for keys starting with `missing`.
pub fn upstream(
    delay: Duration,
) -> (
    Arc<Upstream>,
    BoxCloneService<String, Option<String>, BoxError>,
) {
    let state = Arc::new(Upstream::default());
    let s = state.clone();
    let svc = service_fn(move |key: String| {
        let s = s.clone();
        async move {
            s.calls.fetch_add(1, Ordering::SeqCst);
            tokio::time::sleep(delay).await;
            if s.fail.load(Ordering::SeqCst) {
                return Err::<_, BoxError>("upstream down".into());
            }
            if key.starts_with("missing") {
                return Ok(None);
            }
            Ok(Some(format!("{key}@{}", s.version.load(Ordering::SeqCst))))
        }
    });
    (state, svc.boxed_clone())
}

/// Lets spawned background work (refreshes, remote writes) run.
pub async fn settle() {
    for _ in 0..10 {
        tokio::task::yield_now().await;
    }
}

/// The key function of the tests: the request is the key.
#[allow(clippy::ptr_arg)] // its signature is `Fn(&Request) -> Option<Key>`
pub fn key(k: &String) -> Option<String> {
    Some(k.clone())
}
