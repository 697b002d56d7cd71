//! An upstream that counts its calls, answers after a delay and can be
//! told to fail or to answer "not found".

#![allow(dead_code, unreachable_pub)]

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rampart_cache::remote::{BoxFuture, RemoteCache, RemoteError, RemoteErrorKind};
use rampart_core::BoxError;
use tokio::sync::broadcast;
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

/// A store shared by "processes" in one test, with a broadcast of
/// invalidations; it can be told to fail every call.
pub struct FakeRemote {
    pub data: Mutex<HashMap<String, (Vec<u8>, Duration)>>,
    pub bus: broadcast::Sender<String>,
    pub down: AtomicBool,
}

impl FakeRemote {
    pub fn new() -> Arc<Self> {
        Arc::new(Self {
            data: Mutex::default(),
            bus: broadcast::channel(64).0,
            down: AtomicBool::new(false),
        })
    }

    pub fn check(&self) -> Result<(), RemoteError> {
        if self.down.load(Ordering::SeqCst) {
            Err(RemoteError::new(RemoteErrorKind::Unavailable, None))
        } else {
            Ok(())
        }
    }

    pub fn put_raw(&self, key: &str, bytes: Vec<u8>) {
        let ttl = Duration::from_secs(1);
        self.data.lock().unwrap().insert(key.into(), (bytes, ttl));
    }

    pub fn stored(&self, key: &str) -> Option<(Vec<u8>, Duration)> {
        self.data.lock().unwrap().get(key).cloned()
    }
}

impl RemoteCache for FakeRemote {
    fn get<'a>(&'a self, key: &'a str) -> BoxFuture<'a, Result<Option<Vec<u8>>, RemoteError>> {
        Box::pin(async move {
            self.check()?;
            Ok(self.data.lock().unwrap().get(key).map(|(v, _)| v.clone()))
        })
    }

    fn set<'a>(
        &'a self,
        key: &'a str,
        value: Vec<u8>,
        ttl: Duration,
    ) -> BoxFuture<'a, Result<(), RemoteError>> {
        Box::pin(async move {
            self.check()?;
            self.data.lock().unwrap().insert(key.into(), (value, ttl));
            Ok(())
        })
    }

    fn delete<'a>(&'a self, key: &'a str) -> BoxFuture<'a, Result<(), RemoteError>> {
        Box::pin(async move {
            self.check()?;
            self.data.lock().unwrap().remove(key);
            Ok(())
        })
    }

    fn invalidate<'a>(&'a self, key: &'a str) -> BoxFuture<'a, Result<(), RemoteError>> {
        Box::pin(async move {
            self.delete(key).await?;
            let _ = self.bus.send(key.to_string());
            Ok(())
        })
    }

    fn invalidations(&self) -> Option<broadcast::Receiver<String>> {
        Some(self.bus.subscribe())
    }
}
