//! Rampart's balancer (issue 6) side by side with tower's p2c balancer.
//!
//! Every function measures one `ready().call()` round trip through a
//! balancer over 16 ready endpoints, each a no-op service that answers at
//! once. Balancers are built and their endpoints discovered once, outside
//! the measured loop; calls run in batches on a current-thread tokio
//! runtime. Requests carry a key from a cycle of 1,024, which the hash
//! strategies hash on.
//!
//! Group and function ids are fixed: `bench-report --balance` reads
//! `target/criterion/<group>/<function>/new/estimates.json`.
//!
//! | group | functions |
//! |---|---|
//! | `pick` | `rampart_round_robin`, `rampart_swrr`, `rampart_p2c_ewma`, `tower_p2c_ewma`, `rampart_ring_hash`, `rampart_maglev` |
//!
//! Run with `cargo bench -p rampart-benches --bench balance`, then
//! `cargo run -p rampart-benches --bin bench-report -- --balance`.

use std::convert::Infallible;
use std::future::{Ready, ready};
use std::hint::black_box;
use std::task::{Context, Poll};
use std::time::Duration;

use criterion::measurement::WallTime;
use criterion::{BenchmarkGroup, Criterion, criterion_group, criterion_main};
use rampart_balance::strategy::{
    Load, Maglev, PowerOfTwoChoices, RingHash, RoundRobin, SmoothWeightedRoundRobin, Strategy,
};
use rampart_balance::{Balance, BalanceConfig};
use tokio::runtime::Runtime;
use tower::balance::p2c::Balance as TowerBalance;
use tower::discover::ServiceList;
use tower::load::{CompleteOnResponse, PeakEwmaDiscover};
use tower::{Service, ServiceExt};

mod common;
use common::{config, now, runtime};

/// Endpoints of every balancer.
const ENDPOINTS: usize = 16;

/// Distinct request keys, cycled through.
const KEYS: u64 = 1024;

/// Peak EWMA's prior and decay, the same for tower and rampart.
const DEFAULT_RTT: Duration = Duration::from_millis(30);
const DECAY: Duration = Duration::from_secs(10);

/// An endpoint: answers its request's key at once.
#[derive(Debug, Clone, Copy)]
struct Echo;

impl Service<u64> for Echo {
    type Response = u64;
    type Error = Infallible;
    type Future = Ready<Result<u64, Infallible>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: u64) -> Self::Future {
        ready(Ok(req))
    }
}

/// The 16 endpoints, keyed 0 to 15.
fn endpoints() -> ServiceList<Vec<Echo>> {
    ServiceList::new(vec![Echo; ENDPOINTS])
}

/// Makes `iters` calls on `svc` inside one `block_on`, keys cycling, and
/// returns the time they took.
fn batch<S>(rt: &Runtime, svc: &mut S, iters: u64) -> Duration
where
    S: Service<u64, Response = u64>,
    S::Error: std::fmt::Debug,
{
    rt.block_on(async {
        let start = now();
        for i in 0..iters {
            let key = i % KEYS;
            let ready = svc.ready().await.expect("a ready endpoint");
            let answer = ready.call(key).await.expect("an answer");
            assert_eq!(black_box(answer), key);
        }
        start.elapsed()
    })
}

fn bench_service<S>(group: &mut BenchmarkGroup<'_, WallTime>, rt: &Runtime, id: &str, mut svc: S)
where
    S: Service<u64, Response = u64>,
    S::Error: std::fmt::Debug,
{
    group.bench_function(id, |b| b.iter_custom(|iters| batch(rt, &mut svc, iters)));
}

/// A rampart balancer over the 16 endpoints with `strategy`; requests hash
/// on their key.
fn rampart(
    strategy: impl Strategy + 'static,
) -> impl Service<u64, Response = u64, Error = rampart_core::BoxError> {
    let config = BalanceConfig::new()
        .seed(7)
        .default_rtt(DEFAULT_RTT)
        .decay(DECAY);
    Balance::with_config(endpoints(), strategy, config)
        .expect("valid settings")
        .hash_by(|key: &u64| Some(*key))
}

/// Group `pick`.
fn pick(c: &mut Criterion) {
    let rt = runtime();
    let mut group = c.benchmark_group("pick");
    // Endpoints are discovered on the first poll, inside the runtime.
    bench_service(
        &mut group,
        &rt,
        "rampart_round_robin",
        rampart(RoundRobin::new()),
    );
    bench_service(
        &mut group,
        &rt,
        "rampart_swrr",
        rampart(SmoothWeightedRoundRobin::new()),
    );
    bench_service(
        &mut group,
        &rt,
        "rampart_p2c_ewma",
        rampart(PowerOfTwoChoices::new(Load::PeakEwma)),
    );
    let tower = TowerBalance::new(PeakEwmaDiscover::new(
        endpoints(),
        DEFAULT_RTT,
        DECAY,
        CompleteOnResponse::default(),
    ));
    bench_service(&mut group, &rt, "tower_p2c_ewma", tower);
    bench_service(
        &mut group,
        &rt,
        "rampart_ring_hash",
        rampart(RingHash::new()),
    );
    bench_service(&mut group, &rt, "rampart_maglev", rampart(Maglev::new()));
    group.finish();
}

criterion_group! {
    name = balance;
    config = config();
    targets = pick
}
criterion_main!(balance);
