//! The balancer over a `rampart-discovery` registry: instances registered,
//! re-weighted, marked unhealthy and deregistered reach the balancer.

use std::time::Duration;

use rampart_balance::strategy::SmoothWeightedRoundRobin;
use rampart_balance::{Balance, Weighted};
use rampart_discovery::registry::{
    HealthStatus, Instance, MemoryRegistry, Registry, ServiceName, discover,
};
use tower::{BoxError, Service, ServiceExt, service_fn};

async fn send<S>(balance: &mut S, n: usize) -> Vec<String>
where
    S: Service<(), Response = String, Error = BoxError>,
{
    let mut answers = Vec::new();
    for _ in 0..n {
        answers.push(balance.ready().await.unwrap().call(()).await.unwrap());
    }
    answers.sort();
    answers
}

fn count(answers: &[String], id: &str) -> usize {
    answers.iter().filter(|a| *a == id).count()
}

#[tokio::test(start_paused = true)]
async fn follows_a_registry_with_weights_and_health() {
    let registry = MemoryRegistry::new();
    let ttl = Duration::from_secs(30);
    let orders: ServiceName = "shop/orders".parse().unwrap();
    let a = registry
        .register(
            Instance::new("a", "shop/orders", "10.0.0.1", 80)
                .unwrap()
                .with_weight(3),
            ttl,
        )
        .await
        .unwrap();
    registry
        .register(
            Instance::new("b", "shop/orders", "10.0.0.2", 80).unwrap(),
            ttl,
        )
        .await
        .unwrap();
    let endpoints = discover(&registry, &orders, |i: &Instance| {
        let id = i.id().to_owned();
        let svc = service_fn(move |()| {
            let id = id.clone();
            async move { Ok::<_, BoxError>(id) }
        });
        Weighted::new(svc, i.weight())
    })
    .await
    .unwrap();
    let mut balance =
        Balance::new(endpoints, SmoothWeightedRoundRobin::new()).weight_by(Weighted::weight);

    // weights 3 and 1
    let answers = send(&mut balance, 8).await;
    assert_eq!((count(&answers, "a"), count(&answers, "b")), (6, 2));

    // an unhealthy instance leaves the balancer, and comes back
    registry
        .set_health(&orders, "b", HealthStatus::Unhealthy)
        .await
        .unwrap();
    assert_eq!(count(&send(&mut balance, 4).await, "b"), 0);
    registry
        .set_health(&orders, "b", HealthStatus::Healthy)
        .await
        .unwrap();
    assert_eq!(count(&send(&mut balance, 8).await, "b"), 2);

    // a re-registration with another weight is followed
    registry
        .register(
            Instance::new("b", "shop/orders", "10.0.0.2", 80)
                .unwrap()
                .with_weight(3),
            ttl,
        )
        .await
        .unwrap();
    let answers = send(&mut balance, 8).await;
    assert_eq!((count(&answers, "a"), count(&answers, "b")), (4, 4));

    // deregistered: gone
    registry.deregister(a).await.unwrap();
    assert_eq!(count(&send(&mut balance, 4).await, "b"), 4);
    assert_eq!(balance.len(), 1);
}
