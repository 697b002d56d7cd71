//! Shedding on depth below capacity (`shed_depth`, random early
//! detection), seeded so that every run sheds the same calls.

use std::time::Duration;

use rampart_backpressure::{Admission, Overloaded, Queue, QueueConfig, QueueHandle, Reason};
use rampart_core::BoxError;
use tokio_test::{assert_pending, assert_ready_ok, task};
use tower::{Layer, Service};
use tower_test::mock;

type Svc = Queue<u32, mock::future::ResponseFuture<u32>>;
type Call = task::Spawn<<Svc as Service<u32>>::Future>;

fn setup(config: QueueConfig) -> (mock::Spawn<Svc>, mock::Handle<u32, u32>, QueueHandle) {
    let (inner, mut handle) = mock::pair::<u32, u32>();
    // Nothing drains: the depth only grows.
    handle.allow(0);
    let svc: Svc = config.build().unwrap().layer(inner);
    let queue = svc.handle();
    (mock::Spawn::new(svc), handle, queue)
}

/// Makes a call; `Err` with the refusal if it was refused at once.
fn send(svc: &mut mock::Spawn<Svc>, req: u32) -> Result<Call, BoxError> {
    assert_ready_ok!(svc.poll_ready());
    let mut call = task::spawn(svc.call(req));
    match call.poll() {
        std::task::Poll::Pending => Ok(call),
        std::task::Poll::Ready(Err(e)) => Err(e),
        std::task::Poll::Ready(Ok(_)) => panic!("nothing drains the queue"),
    }
}

fn is_shed(err: &BoxError) -> bool {
    err.downcast_ref::<Overloaded>()
        .is_some_and(|e| e.reason() == Reason::Shed && e.retry_after().is_none())
}

#[tokio::test(start_paused = true)]
async fn below_the_threshold_nothing_is_shed() {
    for seed in 0..200 {
        let (mut svc, _inner, queue) =
            setup(QueueConfig::new().capacity(10).shed_depth(5).seed(seed));
        let calls: Vec<_> = (0..5)
            .map(|i| send(&mut svc, i).expect("kept at or below shed_depth"))
            .collect();
        assert_eq!(queue.depth(), 5);
        assert_eq!(queue.shed(), 0);
        drop(calls);
    }
}

#[tokio::test(start_paused = true)]
async fn above_the_threshold_the_chance_rises_linearly() {
    // capacity 6, shed_depth 2: a call finding 2 queued is shed with
    // probability 1/4, finding 3 with 2/4, finding 4 with 3/4, finding 5
    // always (it would fill the queue).
    let trials = 800;
    let mut shed_at = [0usize; 4];
    let mut tried_at = [0usize; 4];
    for seed in 0..trials {
        let (mut svc, _inner, queue) =
            setup(QueueConfig::new().capacity(6).shed_depth(2).seed(seed));
        let mut kept: Vec<_> = (0..2).map(|i| send(&mut svc, i).unwrap()).collect();
        // One call at each depth from 2 up, until one is shed.
        while queue.depth() < 6 {
            let depth = queue.depth();
            tried_at[depth - 2] += 1;
            match send(&mut svc, 9) {
                Ok(call) => kept.push(call),
                Err(e) => {
                    assert!(is_shed(&e), "{e:?}");
                    shed_at[depth - 2] += 1;
                    break;
                }
            }
        }
        assert!(queue.depth() < 6, "the queue never fills");
        assert_eq!(queue.rejected(), 0, "shed, never refused as full");
    }
    assert_eq!(tried_at[0], trials as usize);
    assert_eq!(
        shed_at[3], tried_at[3],
        "the call that would fill is always shed"
    );
    for (i, quarters) in [1.0, 2.0, 3.0].into_iter().enumerate() {
        let p = quarters / 4.0;
        let n = tried_at[i] as f64;
        let sd = (n * p * (1.0 - p)).sqrt();
        let got = shed_at[i] as f64;
        assert!(
            (got - n * p).abs() <= 5.0 * sd,
            "depth {}: {got} shed of {n}, expected {}",
            i + 2,
            n * p
        );
    }
}

#[tokio::test(start_paused = true)]
async fn the_same_seed_sheds_the_same_calls() {
    let run = || async {
        let (mut svc, _inner, _queue) =
            setup(QueueConfig::new().capacity(64).shed_depth(8).seed(42));
        let mut kept = Vec::new();
        let mut pattern = Vec::new();
        for i in 0..64 {
            match send(&mut svc, i) {
                Ok(call) => {
                    kept.push(call);
                    pattern.push(true);
                }
                Err(_) => pattern.push(false),
            }
        }
        pattern
    };
    let first = run().await;
    assert_eq!(first, run().await);
    assert!(first.contains(&false), "some calls were shed");
}

#[tokio::test(start_paused = true)]
async fn backpressure_and_wait_callers_are_shed_not_piled_up() {
    for admission in [
        Admission::Backpressure,
        Admission::Wait(Duration::from_secs(1)),
    ] {
        let (mut svc, _inner, queue) = setup(
            QueueConfig::new()
                .capacity(4)
                .shed_depth(1)
                .admission(admission)
                .seed(3),
        );
        let mut kept = Vec::new();
        let mut shed = 0;
        for i in 0..100 {
            // Never pending in poll_ready, and every refusal is at once.
            match send(&mut svc, i) {
                Ok(mut call) => {
                    assert_pending!(call.poll());
                    kept.push(call);
                }
                Err(e) => {
                    assert!(is_shed(&e), "{e:?}");
                    shed += 1;
                }
            }
            assert!(queue.depth() < 4, "{admission:?}: depth {}", queue.depth());
        }
        assert_eq!(kept.len(), 3, "{admission:?}");
        assert_eq!(shed, 97);
        assert_eq!(queue.shed(), 97);
        assert_eq!(queue.rejected(), 0);
    }
}
