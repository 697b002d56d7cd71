//! Per-key queues: isolation between keys, the handle, and idle eviction
//! ending a key's worker.

use std::convert::Infallible;
use std::future::{Ready, ready};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use rampart_backpressure::{KeyedQueue, Overloaded, QueueConfig, Reason};
use rampart_core::keyed::KeyedConfig;
use tokio_test::{assert_pending, assert_ready_ok, task};
use tower::{Layer, Service, ServiceExt};

type Req = (&'static str, u32);
type KeyFn = fn(&Req) -> &'static str;
type Svc = KeyedQueue<Upstream, &'static str, KeyFn, Req>;

fn key(req: &Req) -> &'static str {
    req.0
}

/// An upstream that answers at once, except that a clone which served key
/// `"stuck"` is never ready again: that key's worker stalls and its queue
/// fills. `token` counts the live clones.
#[derive(Clone)]
struct Upstream {
    stalled: bool,
    token: Arc<()>,
}

impl Upstream {
    fn new() -> (Self, Arc<()>) {
        let token = Arc::new(());
        let upstream = Self {
            stalled: false,
            token: token.clone(),
        };
        (upstream, token)
    }
}

impl Service<Req> for Upstream {
    type Response = String;
    type Error = Infallible;
    type Future = Ready<Result<String, Infallible>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        if self.stalled {
            Poll::Pending
        } else {
            Poll::Ready(Ok(()))
        }
    }

    fn call(&mut self, (key, n): Req) -> Self::Future {
        self.stalled = key == "stuck";
        let _ = &self.token;
        ready(Ok(format!("{key}{n}")))
    }
}

async fn settle() {
    for _ in 0..10 {
        tokio::task::yield_now().await;
    }
}

fn layer(capacity: usize, keys: KeyedConfig) -> impl Layer<Upstream, Service = Svc> {
    QueueConfig::new()
        .name("tenants")
        .capacity(capacity)
        .build_keyed(key as KeyFn, keys)
        .unwrap()
}

#[tokio::test(start_paused = true)]
async fn one_keys_flood_fills_only_its_own_queue() {
    let (upstream, _token) = Upstream::new();
    let mut svc = layer(2, KeyedConfig::default()).layer(upstream);
    let handle = svc.handle();

    // The first call stalls the key's worker; the next two fill its queue
    // (one in the worker's hands, one in the channel), and the flood after
    // that is refused.
    assert_eq!(
        svc.ready().await.unwrap().call(("stuck", 0)).await.unwrap(),
        "stuck0"
    );
    let mut held = Vec::new();
    for n in 1..3 {
        let mut call = task::spawn(svc.ready().await.unwrap().call(("stuck", n)));
        assert_pending!(call.poll());
        held.push(call);
        settle().await;
    }
    for n in 3..13 {
        let err = svc
            .ready()
            .await
            .unwrap()
            .call(("stuck", n))
            .await
            .unwrap_err();
        let overloaded = err.downcast_ref::<Overloaded>().unwrap();
        assert_eq!(overloaded.reason(), Reason::QueueFull);
    }

    // Another key's calls go through all along.
    for n in 0..20 {
        let mut call = task::spawn(svc.ready().await.unwrap().call(("calm", n)));
        settle().await;
        assert_eq!(assert_ready_ok!(call.poll()), format!("calm{n}"));
    }

    let stuck = handle.get(&"stuck").unwrap();
    assert_eq!((stuck.depth(), stuck.rejected()), (2, 10));
    let calm = handle.get(&"calm").unwrap();
    assert_eq!((calm.depth(), calm.rejected()), (0, 0));
    assert_eq!(calm.capacity(), 2);
    assert_eq!(calm.name(), "tenants");
    assert!(handle.get(&"absent").is_none());
    assert_eq!(handle.len(), 2);
    let mut keys: Vec<_> = handle.entries().into_iter().map(|(k, _)| *k).collect();
    keys.sort_unstable();
    assert_eq!(keys, ["calm", "stuck"]);
}

#[tokio::test(start_paused = true)]
async fn clones_share_the_queues_and_each_layer_call_makes_its_own() {
    let (upstream, _token) = Upstream::new();
    let layer = layer(4, KeyedConfig::default());
    let mut svc = layer.layer(upstream.clone());
    let mut clone = svc.clone();
    let other = layer.layer(upstream);
    assert_eq!(
        svc.ready().await.unwrap().call(("k", 1)).await.unwrap(),
        "k1"
    );
    assert_eq!(
        clone.ready().await.unwrap().call(("k", 2)).await.unwrap(),
        "k2"
    );
    assert_eq!(svc.handle().len(), 1);
    assert_eq!(clone.handle().len(), 1);
    assert!(other.handle().is_empty());
}

/// Blocks the test's thread for `d` of wall-clock time: the keyed map's
/// idle eviction runs on the wall clock (moka's), which tokio's paused
/// clock does not drive. Nothing else in the test is timed.
#[allow(clippy::disallowed_methods)]
fn wall_clock_pause(d: Duration) {
    std::thread::sleep(d);
}

#[tokio::test(start_paused = true)]
async fn an_evicted_idle_key_ends_its_worker() {
    let (upstream, token) = Upstream::new();
    let keys = KeyedConfig {
        max_keys: 100,
        idle_timeout: Some(Duration::from_millis(20)),
    };
    let mut svc = layer(4, keys).layer(upstream);
    let handle = svc.handle();
    assert_eq!(
        svc.ready().await.unwrap().call(("idle", 0)).await.unwrap(),
        "idle0"
    );
    // The test's, the template's and the key's worker's.
    assert_eq!(Arc::strong_count(&token), 3);

    // Wait (on the wall clock) until the map evicts the idle key and drops
    // its queue; `len` runs the map's pending maintenance. Then the
    // worker, finding its queue closed, ends and drops its clone of the
    // inner service.
    let mut waited = 0;
    while Arc::strong_count(&token) > 2 {
        assert!(waited < 1000, "the idle key's worker never ended in 10 s");
        wall_clock_pause(Duration::from_millis(10));
        let _ = handle.len();
        settle().await;
        waited += 1;
    }
    assert!(handle.is_empty());
    assert!(handle.get(&"idle").is_none());

    // The key's next call starts a fresh queue and worker.
    assert_eq!(
        svc.ready().await.unwrap().call(("idle", 1)).await.unwrap(),
        "idle1"
    );
    assert_eq!(Arc::strong_count(&token), 3);
    assert_eq!(handle.get(&"idle").unwrap().depth(), 0);
}
