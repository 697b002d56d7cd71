//! Rampart's registry and config store (issue 5) side by side with what a
//! hand-written one would use: a locked map, tokio's `watch` channel, and
//! the raw etcd client.
//!
//! Every function runs on a current-thread tokio runtime; registries and
//! stores are built and filled once, outside the measured loop.
//!
//! Groups and function ids are fixed: `bench-report --discovery` reads
//! `target/criterion/<group>/<function>/new/estimates.json`.
//!
//! | group | functions |
//! |---|---|
//! | `registry` | `memory_discover`, `mutex_map_discover`, `memory_register_heartbeat`, `etcd_discover`, `etcd_client_discover` |
//! | `config` | `memory_get`, `rwlock_map_get`, `memory_watch_fanout_1000`, `tokio_watch_fanout_1000`, `etcd_put_to_watch_latency`, `etcd_client_put_to_watch_latency` |
//!
//! The `etcd_*` functions talk to a real etcd (`RAMPART_ETCD_ENDPOINTS`,
//! default `http://127.0.0.1:2379`; `scripts/services.sh` starts one) and
//! are skipped, saying so, when it is unreachable.
//!
//! Run with `cargo bench -p rampart-benches --bench discovery`, then
//! `cargo run -p rampart-benches --bin bench-report -- --discovery`.

use std::collections::HashMap;
use std::hint::black_box;
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use bytes::Bytes;
use criterion::{Criterion, criterion_group, criterion_main};
use etcd_client::{Client, GetOptions, WatchOptions};
use rampart_discovery::config::{ConfigStore, EtcdConfigStoreConfig, MemoryConfigStore};
use rampart_discovery::registry::{
    EtcdRegistryConfig, Instance, MemoryRegistry, Registry, ServiceName,
};
use tokio::runtime::Runtime;

mod common;
use common::{config, looped, note, runtime, timed_calls};

/// Instances of the discovered service.
const INSTANCES: usize = 16;

/// Other services in the same registry, each with [`INSTANCES`] instances:
/// a lookup must find its service among them.
const OTHER_SERVICES: usize = 15;

/// Watchers of the fan-out functions.
const WATCHERS: usize = 1000;

/// Where the etcd functions keep their keys (removed before and after).
const ETCD_PREFIX: &str = "/rampart-bench";

/// A config value of a typical size (a small JSON document).
const CONFIG_VALUE: &str = r#"{"max_conns":64,"timeout":"250ms","retries":2,"zone":"eu-west-1a"}"#;

/// Lease time of every registration: far longer than a run.
const TTL: Duration = Duration::from_secs(600);

fn instance(service: &str, n: usize) -> Instance {
    Instance::new(
        format!("{service}-{n}"),
        service,
        format!("10.0.{}.{}", n / 250, n % 250 + 1),
        8080,
    )
    .expect("a valid instance")
    .with_zone("eu-west-1a")
    .with_metadata("version", "1.4.2")
}

fn service_names() -> Vec<String> {
    (0..=OTHER_SERVICES)
        .map(|s| {
            if s == 0 {
                "shop/orders".to_owned()
            } else {
                format!("shop/svc{s}")
            }
        })
        .collect()
}

fn orders() -> ServiceName {
    "shop/orders".parse().expect("a valid service name")
}

fn etcd_endpoints() -> Vec<String> {
    std::env::var("RAMPART_ETCD_ENDPOINTS")
        .unwrap_or_else(|_| "http://127.0.0.1:2379".to_owned())
        .split(',')
        .map(str::to_owned)
        .collect()
}

/// A raw etcd client, or why there is none (the etcd functions are then
/// skipped).
async fn etcd_client() -> Result<Client, String> {
    let connect = Client::connect(etcd_endpoints(), None);
    let mut client = tokio::time::timeout(Duration::from_secs(3), connect)
        .await
        .map_err(|_| "connect timed out".to_owned())?
        .map_err(|e| e.to_string())?;
    tokio::time::timeout(Duration::from_secs(3), client.status())
        .await
        .map_err(|_| "status timed out".to_owned())?
        .map_err(|e| e.to_string())?;
    Ok(client)
}

async fn etcd_clear(client: &mut Client) {
    client
        .delete(
            ETCD_PREFIX,
            Some(etcd_client::DeleteOptions::new().with_prefix()),
        )
        .await
        .expect("delete the bench's keys");
}

// === group registry ===

/// Group `registry`: a service's instances from the memory registry and
/// from a locked map; a registration with its heartbeat; the same lookup
/// on etcd, through the registry and with the raw client.
fn registry(c: &mut Criterion) {
    let rt = runtime();
    let mut group = c.benchmark_group("registry");

    let memory = MemoryRegistry::new();
    let mut by_service: HashMap<String, Vec<Instance>> = HashMap::new();
    rt.block_on(async {
        for service in service_names() {
            for n in 0..INSTANCES {
                let i = instance(&service, n);
                memory.register(i.clone(), TTL).await.expect("register");
                by_service.entry(service.clone()).or_default().push(i);
            }
        }
    });
    let name = orders();
    group.bench_function("memory_discover", |b| {
        b.iter_custom(|iters| {
            rt.block_on(looped(iters, async || {
                let found = memory.discover(black_box(&name)).await.expect("discover");
                assert_eq!(black_box(found).instances.len(), INSTANCES);
            }))
        });
    });

    // What a hand-written registry does: one lock, one clone.
    let map = Mutex::new(by_service);
    group.bench_function("mutex_map_discover", |b| {
        b.iter(|| {
            let found = map
                .lock()
                .expect("not poisoned")
                .get(black_box("shop/orders"))
                .cloned();
            assert_eq!(black_box(found).map(|v| v.len()), Some(INSTANCES));
        });
    });

    // Register an instance (replacing its previous registration, so the
    // registry stays the same size) and heartbeat its lease.
    let fresh = instance("shop/orders", INSTANCES);
    group.bench_function("memory_register_heartbeat", |b| {
        b.iter_custom(|iters| {
            rt.block_on(looped(iters, async || {
                let lease = memory.register(fresh.clone(), TTL).await.expect("register");
                memory.heartbeat(black_box(lease)).await.expect("heartbeat");
            }))
        });
    });

    match rt.block_on(etcd_client()) {
        Ok(client) => etcd_registry(&mut group, &rt, client),
        Err(e) => note(&format!(
            "registry/etcd_*: skipped: etcd at {:?} is unreachable ({e}); start it with \
             `scripts/services.sh` (or set RAMPART_ETCD_ENDPOINTS)",
            etcd_endpoints()
        )),
    }
    group.finish();
}

fn etcd_registry(
    group: &mut criterion::BenchmarkGroup<'_, criterion::measurement::WallTime>,
    rt: &Runtime,
    mut client: Client,
) {
    let prefix = format!("{ETCD_PREFIX}/registry");
    let registry = rt.block_on(async {
        etcd_clear(&mut client).await;
        let registry = EtcdRegistryConfig::new()
            .endpoints(etcd_endpoints())
            .prefix(prefix.clone())
            .build()
            .await
            .expect("the etcd registry");
        for service in service_names() {
            for n in 0..INSTANCES {
                registry
                    .register(instance(&service, n), TTL)
                    .await
                    .expect("register");
            }
        }
        registry
    });
    let name = orders();
    group.bench_function("etcd_discover", |b| {
        b.iter(|| {
            let found = rt
                .block_on(registry.discover(black_box(&name)))
                .expect("discover");
            assert_eq!(black_box(found).instances.len(), INSTANCES);
        });
    });

    // The raw client on the same keys: one prefix range, each value
    // decoded, as a hand-written etcd discovery would.
    let service_prefix = registry.service_prefix(&name);
    let mut kv = client.kv_client();
    group.bench_function("etcd_client_discover", |b| {
        b.iter(|| {
            rt.block_on(async {
                let resp = kv
                    .get(
                        service_prefix.as_str(),
                        Some(GetOptions::new().with_prefix()),
                    )
                    .await
                    .expect("range");
                let instances: Vec<Instance> = resp
                    .kvs()
                    .iter()
                    .map(|kv| serde_json::from_slice(kv.value()).expect("an instance"))
                    .collect();
                assert_eq!(black_box(instances).len(), INSTANCES);
            });
        });
    });
    rt.block_on(etcd_clear(&mut client));
}

// === group config ===

/// Group `config`: a key read from the memory store and from a locked map;
/// one write seen by 1,000 watchers, through the store and through tokio's
/// `watch` channel; a write on etcd until a watcher has it, through the
/// store and with the raw client.
fn config_group(c: &mut Criterion) {
    let rt = runtime();
    let mut group = c.benchmark_group("config");

    let store = MemoryConfigStore::new();
    let mut map: HashMap<String, (Bytes, u64)> = HashMap::new();
    rt.block_on(async {
        for k in 0..1000 {
            let key = format!("app/key{k}");
            let version = store
                .put(&key, Bytes::from_static(CONFIG_VALUE.as_bytes()))
                .await
                .expect("put");
            map.insert(key, (Bytes::from_static(CONFIG_VALUE.as_bytes()), version));
        }
    });
    group.bench_function("memory_get", |b| {
        b.iter_custom(|iters| {
            rt.block_on(looped(iters, async || {
                let got = store.get(black_box("app/key500")).await.expect("get");
                assert!(black_box(got).is_some());
            }))
        });
    });
    let map = RwLock::new(map);
    group.bench_function("rwlock_map_get", |b| {
        b.iter(|| {
            let got = map
                .read()
                .expect("not poisoned")
                .get(black_box("app/key500"))
                .cloned();
            assert!(black_box(got).is_some());
        });
    });

    // One put, then every watcher's next change: the time until the last
    // of them has it.
    let mut watchers = rt.block_on(async {
        let mut watchers = Vec::with_capacity(WATCHERS);
        for _ in 0..WATCHERS {
            watchers.push(store.watch("app/").await.expect("watch"));
        }
        watchers
    });
    let value = Bytes::from_static(CONFIG_VALUE.as_bytes());
    group.bench_function("memory_watch_fanout_1000", |b| {
        b.iter_custom(|iters| {
            rt.block_on(looped(iters, async || {
                store.put("app/limits", value.clone()).await.expect("put");
                for w in &mut watchers {
                    let change = w.next().await.expect("a change");
                    black_box(change);
                }
            }))
        });
    });
    drop(watchers);

    // The primitive a hand-written config push uses: one `watch` channel,
    // 1,000 receivers.
    let (tx, mut receivers) = {
        let (tx, rx) = tokio::sync::watch::channel(Arc::new(value.clone()));
        let receivers: Vec<_> = (0..WATCHERS).map(|_| rx.clone()).collect();
        (tx, receivers)
    };
    group.bench_function("tokio_watch_fanout_1000", |b| {
        b.iter_custom(|iters| {
            rt.block_on(looped(iters, async || {
                tx.send(Arc::new(value.clone())).expect("receivers live");
                for rx in &mut receivers {
                    rx.changed().await.expect("a change");
                    black_box(rx.borrow_and_update().len());
                }
            }))
        });
    });

    match rt.block_on(etcd_client()) {
        Ok(client) => etcd_config(&mut group, &rt, client),
        Err(e) => note(&format!(
            "config/etcd_*: skipped: etcd at {:?} is unreachable ({e}); start it with \
             `scripts/services.sh` (or set RAMPART_ETCD_ENDPOINTS)",
            etcd_endpoints()
        )),
    }
    group.finish();
}

fn etcd_config(
    group: &mut criterion::BenchmarkGroup<'_, criterion::measurement::WallTime>,
    rt: &Runtime,
    mut client: Client,
) {
    let prefix = format!("{ETCD_PREFIX}/config");
    let value = Bytes::from_static(CONFIG_VALUE.as_bytes());
    let (store, mut watch) = rt.block_on(async {
        etcd_clear(&mut client).await;
        let store = EtcdConfigStoreConfig::new()
            .endpoints(etcd_endpoints())
            .prefix(prefix.clone())
            .build()
            .await
            .expect("the etcd store");
        let watch = store.watch("app/").await.expect("watch");
        (store, watch)
    });
    group.bench_function("etcd_put_to_watch_latency", |b| {
        b.iter_custom(|iters| {
            rt.block_on(timed_calls(
                iters,
                async || {
                    store.put("app/limits", value.clone()).await.expect("put");
                    black_box(watch.next().await.expect("a change"));
                },
                || std::future::ready(()),
            ))
        });
    });
    drop(watch);

    let raw_key = format!("{prefix}/raw/limits");
    let mut stream = rt.block_on(async {
        let mut stream = client
            .watch(raw_key.as_str(), Some(WatchOptions::new()))
            .await
            .expect("watch");
        // etcd first confirms the watch, with no event
        let created = stream
            .message()
            .await
            .expect("watch stream")
            .expect("created");
        assert!(created.created() && created.events().is_empty());
        stream
    });
    let mut kv = client.kv_client();
    group.bench_function("etcd_client_put_to_watch_latency", |b| {
        b.iter_custom(|iters| {
            rt.block_on(timed_calls(
                iters,
                async || {
                    kv.put(raw_key.as_str(), value.to_vec(), None)
                        .await
                        .expect("put");
                    let resp = stream
                        .message()
                        .await
                        .expect("watch stream")
                        .expect("a response");
                    assert_eq!(black_box(resp).events().len(), 1);
                },
                || std::future::ready(()),
            ))
        });
    });
    drop(stream);
    rt.block_on(etcd_clear(&mut client));
}

criterion_group! {
    name = discovery;
    config = config();
    targets = registry, config_group
}
criterion_main!(discovery);
