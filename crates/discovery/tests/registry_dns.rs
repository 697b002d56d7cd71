//! The DNS registry against a tiny DNS server on 127.0.0.1 (UDP, messages
//! encoded with hickory-proto) whose answers each test changes; never the
//! internet. Real time (the resolver waits on a real socket), kept short.
#![cfg(feature = "dns")]

use std::collections::HashMap;
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use hickory_proto::op::{Message, ResponseCode};
use hickory_proto::rr::rdata::{A, AAAA, SRV};
use hickory_proto::rr::{Name, RData, Record, RecordType};
use rampart_core::testing::TestRecorder;
use rampart_discovery::registry::{
    DnsRegistry, DnsRegistryConfig, DnsService, Event, EventKind, HealthStatus, Registry,
    RegistryError, SOURCE_ERRORS_TOTAL, ServiceName, SourceError, Watch,
};
use tokio::net::UdpSocket;
use tokio::time::{sleep, timeout};

// === the test DNS server ===

#[derive(Clone)]
enum Reply {
    Records(Vec<Record>),
    NxDomain,
    ServFail,
}

#[derive(Default)]
struct ZoneState {
    replies: HashMap<(String, RecordType), Reply>,
    queries: Vec<(String, RecordType)>,
}

/// The answers the server gives, changed by the test, and the queries it
/// got.
#[derive(Clone, Default)]
struct Zone(Arc<Mutex<ZoneState>>);

fn name(s: &str) -> Name {
    s.parse().unwrap()
}

impl Zone {
    fn set(&self, owner: &str, kind: RecordType, reply: Reply) {
        self.0
            .lock()
            .unwrap()
            .replies
            .insert((owner.to_owned(), kind), reply);
    }

    fn srv(&self, owner: &str, ttl: u32, targets: &[(u16, u16, u16, &str)]) {
        let records = targets
            .iter()
            .map(|&(priority, weight, port, target)| {
                Record::from_rdata(
                    name(owner),
                    ttl,
                    RData::SRV(SRV::new(priority, weight, port, name(target))),
                )
            })
            .collect();
        self.set(owner, RecordType::SRV, Reply::Records(records));
    }

    fn a(&self, owner: &str, ttl: u32, ips: &[[u8; 4]]) {
        let records = ips
            .iter()
            .map(|ip| Record::from_rdata(name(owner), ttl, RData::A(A(Ipv4Addr::from(*ip)))))
            .collect();
        self.set(owner, RecordType::A, Reply::Records(records));
    }

    fn aaaa(&self, owner: &str, ttl: u32, ips: &[Ipv6Addr]) {
        let records = ips
            .iter()
            .map(|ip| Record::from_rdata(name(owner), ttl, RData::AAAA(AAAA(*ip))))
            .collect();
        self.set(owner, RecordType::AAAA, Reply::Records(records));
    }

    fn queries(&self, owner: &str, kind: RecordType) -> usize {
        let state = self.0.lock().unwrap();
        state
            .queries
            .iter()
            .filter(|(n, k)| n == owner && *k == kind)
            .count()
    }

    /// Answers a query: the records set for its name and type, an empty
    /// `NOERROR` for anything else.
    fn answer(&self, query: &Message) -> Message {
        let mut response = Message::response(query.metadata.id, query.metadata.op_code);
        response.metadata.recursion_desired = query.metadata.recursion_desired;
        response.metadata.recursion_available = true;
        response.metadata.authoritative = true;
        let Some(q) = query.queries.first() else {
            response.metadata.response_code = ResponseCode::FormErr;
            return response;
        };
        response.add_query(q.clone());
        let key = (q.name().to_ascii().to_ascii_lowercase(), q.query_type());
        let mut state = self.0.lock().unwrap();
        state.queries.push(key.clone());
        match state.replies.get(&key).cloned() {
            Some(Reply::Records(records)) => {
                response.add_answers(records);
            }
            Some(Reply::NxDomain) => response.metadata.response_code = ResponseCode::NXDomain,
            Some(Reply::ServFail) => response.metadata.response_code = ResponseCode::ServFail,
            None => {}
        }
        response
    }

    /// Serves the zone on a fresh UDP port of 127.0.0.1.
    async fn serve(&self) -> SocketAddr {
        let socket = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let addr = socket.local_addr().unwrap();
        let zone = self.clone();
        tokio::spawn(async move {
            let mut buf = vec![0u8; 4096];
            loop {
                let Ok((n, peer)) = socket.recv_from(&mut buf).await else {
                    return;
                };
                let Ok(query) = Message::from_vec(&buf[..n]) else {
                    continue;
                };
                let response = zone.answer(&query).to_vec().unwrap();
                let _ = socket.send_to(&response, peer).await;
            }
        });
        addr
    }
}

// === helpers ===

fn service(s: &str) -> ServiceName {
    s.parse().unwrap()
}

const SRV_NAME: &str = "_http._tcp.orders.test.";

fn config(server: SocketAddr) -> DnsRegistryConfig {
    DnsRegistryConfig::new()
        .name("dns")
        .name_server(server)
        .min_ttl(Duration::from_millis(100))
        .max_ttl(Duration::from_secs(5))
        .timeout(Duration::from_millis(500))
        .retry_backoff(Duration::from_millis(100))
        .service(DnsService::srv(service("shop/orders"), SRV_NAME).unwrap())
}

async fn next(watch: &mut Watch) -> Result<Event, RegistryError> {
    timeout(Duration::from_secs(5), watch.next())
        .await
        .expect("an item within 5 s")
        .expect("the watch is open")
}

fn ids(found: &[rampart_discovery::registry::Instance]) -> Vec<&str> {
    found.iter().map(|i| i.id()).collect()
}

/// A zone whose SRV name has one target, 10.0.0.1:8080, with TTL 0 (so a
/// refresh every `min_ttl`, 100 ms), a registry on it, and a watch of the
/// service past its first insert.
async fn one_instance_with_ttl_0() -> (Zone, DnsRegistry, Watch) {
    let zone = Zone::default();
    zone.srv(SRV_NAME, 0, &[(10, 1, 8080, "a.test.")]);
    zone.a("a.test.", 0, &[[10, 0, 0, 1]]);
    let server = zone.serve().await;
    let registry = DnsRegistry::start(config(server)).await.unwrap();
    let mut watch = registry.watch(&service("shop/orders")).await.unwrap();
    next(&mut watch).await.unwrap();
    (zone, registry, watch)
}

// === tests ===

#[tokio::test]
async fn srv_and_host_names_become_instances() {
    let zone = Zone::default();
    zone.srv(
        SRV_NAME,
        30,
        &[(20, 0, 8081, "b.test."), (10, 5, 8080, "a.test.")],
    );
    zone.a("a.test.", 30, &[[10, 0, 0, 1]]);
    zone.aaaa("a.test.", 30, &[Ipv6Addr::LOCALHOST]);
    zone.a("b.test.", 30, &[[10, 0, 0, 2]]);
    zone.a("billing.test.", 30, &[[10, 0, 0, 3]]);
    zone.aaaa("billing.test.", 30, &["fd00::3".parse().unwrap()]);
    let server = zone.serve().await;
    let registry = DnsRegistry::start(
        config(server)
            .service(DnsService::host(service("billing"), "billing.test.", 9000).unwrap()),
    )
    .await
    .unwrap();

    let orders = registry.discover(&service("shop/orders")).await.unwrap();
    assert!(!orders.stale);
    assert_eq!(
        ids(&orders.instances),
        ["10.0.0.1:8080", "10.0.0.2:8081", "[::1]:8080"]
    );
    let a = &orders.instances[0];
    assert_eq!((a.address(), a.port(), a.weight()), ("10.0.0.1", 8080, 5));
    assert_eq!(a.metadata()["srv_priority"], "10");
    assert_eq!(a.metadata()["srv_target"], "a.test.");
    let b = &orders.instances[1];
    assert_eq!(b.weight(), 1, "SRV weight 0 is not a drain");
    assert_eq!(
        (
            b.metadata()["srv_weight"].as_str(),
            b.metadata()["srv_priority"].as_str()
        ),
        ("0", "20")
    );
    assert_eq!(orders.instances[2].authority(), "[::1]:8080");

    let billing = registry.discover(&service("billing")).await.unwrap();
    assert_eq!(ids(&billing.instances), ["10.0.0.3:9000", "[fd00::3]:9000"]);
    assert_eq!(billing.instances[0].metadata()["dns_name"], "billing.test.");

    // read-only, health overlay works
    assert!(matches!(
        registry
            .deregister(rampart_discovery::registry::LeaseId(1))
            .await,
        Err(RegistryError::ReadOnly { backend: "dns" })
    ));
    registry
        .set_health(
            &service("billing"),
            "10.0.0.3:9000",
            HealthStatus::Unhealthy,
        )
        .await
        .unwrap();
    let billing = registry.discover(&service("billing")).await.unwrap();
    assert_eq!(billing.instances[0].health(), HealthStatus::Unhealthy);
}

#[tokio::test]
async fn a_ttl_driven_refresh_becomes_watch_diffs() {
    let zone = Zone::default();
    zone.srv(
        SRV_NAME,
        1,
        &[(10, 1, 8080, "a.test."), (10, 1, 8080, "b.test.")],
    );
    zone.a("a.test.", 30, &[[10, 0, 0, 1]]);
    zone.a("b.test.", 30, &[[10, 0, 0, 2]]);
    zone.a("c.test.", 30, &[[10, 0, 0, 3]]);
    let server = zone.serve().await;
    let registry = DnsRegistry::start(config(server)).await.unwrap();
    let orders = service("shop/orders");
    let mut watch = registry.watch(&orders).await.unwrap();
    let first: Vec<_> = [
        next(&mut watch).await.unwrap(),
        next(&mut watch).await.unwrap(),
    ]
    .into_iter()
    .map(|e| (e.kind, e.instance.id().to_owned()))
    .collect();
    assert_eq!(
        first,
        [
            (EventKind::Insert, "10.0.0.1:8080".to_owned()),
            (EventKind::Insert, "10.0.0.2:8080".to_owned())
        ]
    );

    // the answer changes; nothing is asked again before its TTL (1 s) runs out
    zone.srv(
        SRV_NAME,
        1,
        &[(10, 1, 8080, "a.test."), (10, 3, 8080, "c.test.")],
    );
    sleep(Duration::from_millis(600)).await;
    assert_eq!(
        zone.queries(SRV_NAME, RecordType::SRV),
        1,
        "no polling before the TTL"
    );
    assert!(watch.try_next().is_none());

    let changes: Vec<_> = [
        next(&mut watch).await.unwrap(),
        next(&mut watch).await.unwrap(),
    ]
    .into_iter()
    .map(|e| {
        (
            e.revision,
            e.kind,
            e.instance.id().to_owned(),
            e.instance.weight(),
        )
    })
    .collect();
    assert_eq!(
        changes,
        [
            (3, EventKind::Remove, "10.0.0.2:8080".to_owned(), 1),
            (4, EventKind::Insert, "10.0.0.3:8080".to_owned(), 3)
        ]
    );
    assert_eq!(zone.queries(SRV_NAME, RecordType::SRV), 2);
    let found = registry.discover(&orders).await.unwrap();
    assert_eq!(ids(&found.instances), ["10.0.0.1:8080", "10.0.0.3:8080"]);
    assert_eq!(found.revision, 4);
}

#[tokio::test]
async fn a_failed_lookup_keeps_the_last_set_marked_stale() {
    let recorder = TestRecorder::default();
    let _guard = metrics::set_default_local_recorder(&recorder);
    let (zone, registry, mut watch) = one_instance_with_ttl_0().await;
    let orders = service("shop/orders");

    // the server fails: the watch hears it once, the set stays, stale
    zone.set(SRV_NAME, RecordType::SRV, Reply::ServFail);
    let err = next(&mut watch).await.unwrap_err();
    assert!(
        matches!(&err, RegistryError::Source(s) if matches!(&**s, SourceError::Lookup { name, .. } if name == SRV_NAME)),
        "{err:?}"
    );
    let found = registry.discover(&orders).await.unwrap();
    assert!(found.stale);
    assert_eq!(ids(&found.instances), ["10.0.0.1:8080"]);

    // NXDOMAIN is a failure too, not an empty set; retries back off and count
    zone.set(SRV_NAME, RecordType::SRV, Reply::NxDomain);
    sleep(Duration::from_millis(800)).await;
    assert!(watch.try_next().is_none(), "reported once per outage");
    let found = registry.discover(&orders).await.unwrap();
    assert!(found.stale);
    assert_eq!(found.instances.len(), 1);
    let failures = recorder
        .get(
            SOURCE_ERRORS_TOTAL,
            &[("name", "dns"), ("service", "default/shop/orders")],
        )
        .counter();
    // backoff 100, 200, 400 ms... : a handful of attempts in ~0.8 s, not one per 100 ms
    assert!((2..=5).contains(&failures), "{failures} failed attempts");

    // back, with another answer: applied, no longer stale
    zone.srv(SRV_NAME, 0, &[(10, 1, 8080, "b.test.")]);
    zone.a("b.test.", 0, &[[10, 0, 0, 2]]);
    let e = next(&mut watch).await.unwrap();
    assert_eq!(
        (e.kind, e.instance.id()),
        (EventKind::Remove, "10.0.0.1:8080")
    );
    let e = next(&mut watch).await.unwrap();
    assert_eq!(
        (e.kind, e.instance.id()),
        (EventKind::Insert, "10.0.0.2:8080")
    );
    assert!(!registry.discover(&orders).await.unwrap().stale);
}

#[tokio::test]
async fn an_empty_noerror_answer_is_an_empty_set() {
    let (zone, registry, mut watch) = one_instance_with_ttl_0().await;
    let orders = service("shop/orders");

    zone.set(SRV_NAME, RecordType::SRV, Reply::Records(Vec::new()));
    let e = next(&mut watch).await.unwrap();
    assert_eq!(
        (e.kind, e.instance.id()),
        (EventKind::Remove, "10.0.0.1:8080")
    );
    let found = registry.discover(&orders).await.unwrap();
    assert!(found.instances.is_empty());
    assert!(!found.stale, "a real answer, not a failure");
}

#[tokio::test]
async fn an_unreachable_server_at_start_leaves_the_service_empty_and_stale() {
    // a bound socket that never answers
    let silent = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let registry = DnsRegistry::start(config(silent.local_addr().unwrap()))
        .await
        .unwrap();
    let found = registry.discover(&service("shop/orders")).await.unwrap();
    assert!(found.instances.is_empty());
    assert!(found.stale);
}

#[test]
fn settings_are_validated() {
    let server: SocketAddr = "127.0.0.1:53".parse().unwrap();
    let field = |c: DnsRegistryConfig| c.validate().unwrap_err().field();
    assert_eq!(field(DnsRegistryConfig::new()), "name_servers");
    assert_eq!(
        field(
            config(server)
                .min_ttl(Duration::from_secs(10))
                .max_ttl(Duration::from_secs(1))
        ),
        "max_ttl"
    );
    assert_eq!(field(config(server).min_ttl(Duration::ZERO)), "min_ttl");
    assert_eq!(
        field(config(server).service(DnsService::srv(service("shop/orders"), "x.test.").unwrap())),
        "services"
    );
    assert!(DnsService::host(service("a"), "a.test.", 0).is_err());
    assert!(DnsService::srv(service("a"), "bad name..").is_err());
    assert!(
        toml::from_str::<DnsRegistryConfig>(
            "services = [{ service = \"a\", srv = \"x.test.\", port = 1 }]"
        )
        .is_err()
    );
}
