//! Helpers shared by the transaction tests.
#![allow(dead_code, unreachable_pub)]

pub mod crash_suite;

/// The PostgreSQL the tests use: `RAMPART_POSTGRES_URL`, default
/// `postgres://postgres@127.0.0.1:5432/test` (scripts/services.sh).
pub fn postgres_url() -> String {
    std::env::var("RAMPART_POSTGRES_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".to_owned())
}

/// A store on that PostgreSQL in `schema` (created if missing); fails the
/// test, naming the script that starts it, when it is unreachable.
#[cfg(feature = "postgres")]
pub async fn postgres_store(schema: &str) -> rampart_transaction::store::SqlTxStore {
    match rampart_transaction::store::SqlStoreConfig::new(postgres_url())
        .schema(schema)
        .pool_size(4)
        .connect_timeout(std::time::Duration::from_secs(5))
        .connect()
        .await
    {
        Ok(store) => store,
        Err(e) => panic!(
            "PostgreSQL at {} unreachable ({e}): start it with scripts/services.sh",
            postgres_url()
        ),
    }
}

use std::sync::atomic::{AtomicU32, Ordering};

/// A name no other test (or concurrent run) uses: `test_pid_n_nanos`.
pub(crate) fn unique(test: &str) -> String {
    static N: AtomicU32 = AtomicU32::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .subsec_nanos();
    format!(
        "{test}_{}_{}_{nanos}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    )
}

// === the TxStore conformance suite ===

// The `TxStore` conformance suite: every store (memory, SQLite,
// PostgreSQL) must pass each case. `conformance!(make)` expands to one
// test per case, `make(test_name)` giving each a fresh, isolated store.

use std::time::Duration;

use rampart_transaction::model::{
    BranchId, BranchRecord, BranchState, Decision, Op, Protocol, TxId, TxRecord, TxState, now_ms,
};
use rampart_transaction::store::{StoreError, TxFilter, TxStore, TxUpdate, Write};
use serde_json::json;

/// A unique id for this run (tests re-run against the same database).
pub fn id(name: &str) -> TxId {
    TxId::new(format!("{name}-{}", TxId::generate())).unwrap()
}

pub fn tx(id: &TxId, state: TxState, created_at: u64) -> TxRecord {
    TxRecord {
        id: id.clone(),
        protocol: Protocol::Saga,
        state,
        decision: None,
        input: json!({"order": id.as_str(), "lines": [1, 2.5, "x"], "nested": {"ok": true}}),
        plan: json!({"steps": ["reserve", "charge"]}),
        reason: None,
        created_at,
        updated_at: created_at,
        deadline: Some(created_at + 60_000),
        version: 1,
        branches: vec![],
    }
}

pub fn branch(name: &str, op: Op, state: BranchState) -> BranchRecord {
    BranchRecord {
        branch: BranchId::new(name).unwrap(),
        op,
        state,
        request: json!({"branch": name, "op": op.as_str()}),
        output: None,
        error: None,
        attempts: 0,
        updated_at: 1_000,
    }
}

fn set_state(state: TxState) -> Write {
    Write {
        tx: Some(TxUpdate {
            state: Some(state),
            ..TxUpdate::default()
        }),
        branches: vec![],
    }
}

const LONG: Duration = Duration::from_secs(600);

pub async fn create_load_exists(store: &dyn TxStore) {
    let id = id("create");
    let mut t = tx(&id, TxState::Running, now_ms());
    t.branches = vec![
        branch("reserve", Op::Action, BranchState::Sent),
        branch("charge", Op::Action, BranchState::Sent),
    ];
    t.version = 7; // create always starts at 1
    store.create(&t, "a", LONG).await.unwrap();
    let loaded = store.load(&id).await.unwrap().expect("created");
    t.version = 1;
    assert_eq!(loaded, t);

    let mut again = tx(&id, TxState::Aborted, 5);
    again.branches = vec![branch("other", Op::Try, BranchState::Failed)];
    match store.create(&again, "b", LONG).await {
        Err(StoreError::Exists(found)) => assert_eq!(found, id),
        other => panic!("expected Exists, got {other:?}"),
    }
    assert_eq!(
        store.load(&id).await.unwrap().unwrap(),
        t,
        "nothing written"
    );
    assert_eq!(store.load(&self::id("missing")).await.unwrap(), None);
}

pub async fn commit_versions_and_conflict(store: &dyn TxStore) {
    let id = id("commit");
    store
        .create(&tx(&id, TxState::Running, now_ms()), "a", LONG)
        .await
        .unwrap();
    let write = Write {
        tx: Some(TxUpdate {
            state: Some(TxState::Committing),
            decision: Some(Decision::Commit),
            reason: Some(Some("all prepared".to_owned())),
        }),
        branches: vec![branch("a", Op::Prepare, BranchState::Succeeded)],
    };
    assert_eq!(store.commit(&id, 1, write.clone()).await.unwrap(), 2);
    // a branches-only write still bumps the version
    assert_eq!(store.commit(&id, 2, Write::default()).await.unwrap(), 3);

    match store.commit(&id, 1, set_state(TxState::Aborted)).await {
        Err(StoreError::Conflict {
            id: cid,
            expected,
            found,
        }) => assert_eq!((cid, expected, found), (id.clone(), 1, 3)),
        other => panic!("expected Conflict, got {other:?}"),
    }
    match store.commit(&self::id("ghost"), 1, Write::default()).await {
        Err(StoreError::NotFound(_)) => {}
        other => panic!("expected NotFound, got {other:?}"),
    }

    // the decision is never changed once made; a reason can be cleared
    let flip = Write {
        tx: Some(TxUpdate {
            state: Some(TxState::Committed),
            decision: Some(Decision::Abort),
            reason: Some(None),
        }),
        branches: vec![],
    };
    assert_eq!(store.commit(&id, 3, flip).await.unwrap(), 4);
    let t = store.load(&id).await.unwrap().unwrap();
    assert_eq!(t.version, 4);
    assert_eq!(t.state, TxState::Committed);
    assert_eq!(t.decision, Some(Decision::Commit));
    assert_eq!(t.reason, None);
    assert_eq!(t.branches, write.branches);
    assert!(t.updated_at >= t.created_at);

    // a write without reason keeps it
    let with_reason = Write {
        tx: Some(TxUpdate {
            reason: Some(Some("why".to_owned())),
            ..TxUpdate::default()
        }),
        branches: vec![],
    };
    store.commit(&id, 4, with_reason).await.unwrap();
    store
        .commit(&id, 5, set_state(TxState::Resolved))
        .await
        .unwrap();
    let t = store.load(&id).await.unwrap().unwrap();
    assert_eq!(t.reason.as_deref(), Some("why"));
    assert_eq!(t.state, TxState::Resolved);
}

pub async fn branch_upsert_keeps_order(store: &dyn TxStore) {
    let id = id("branches");
    let mut t = tx(&id, TxState::Running, now_ms());
    t.branches = vec![branch("b1", Op::Action, BranchState::Sent)];
    store.create(&t, "a", LONG).await.unwrap();
    let w = |branches| Write { tx: None, branches };
    store
        .commit(&id, 1, w(vec![branch("b2", Op::Action, BranchState::Sent)]))
        .await
        .unwrap();
    let mut b1 = branch("b1", Op::Action, BranchState::Succeeded);
    b1.output = Some(json!({"reserved": 3}));
    b1.attempts = 2;
    b1.error = Some("first try timed out".to_owned());
    b1.updated_at = 2_000;
    store
        .commit(
            &id,
            2,
            w(vec![
                b1.clone(),
                branch("b1", Op::Compensate, BranchState::Sent),
            ]),
        )
        .await
        .unwrap();
    let t = store.load(&id).await.unwrap().unwrap();
    let keys: Vec<(&str, Op)> = t
        .branches
        .iter()
        .map(|b| (b.branch.as_str(), b.op))
        .collect();
    assert_eq!(
        keys,
        [
            ("b1", Op::Action),
            ("b2", Op::Action),
            ("b1", Op::Compensate)
        ]
    );
    assert_eq!(t.branch(&b1.branch, Op::Action), Some(&b1));
    assert_eq!(t.version, 3);
}

/// Hundreds of branch records in one create and one commit (more rows than
/// one SQL statement carries), one pair twice in a write: every record
/// kept in the order first logged, the later record of the pair in place
/// of the earlier.
pub async fn many_branches_in_one_write(store: &dyn TxStore) {
    let id = id("many");
    let name = |i: usize| format!("s{i:03}");
    let mut t = tx(&id, TxState::Running, now_ms());
    t.branches = (0..250)
        .map(|i| branch(&name(i), Op::Action, BranchState::Sent))
        .collect();
    store.create(&t, "a", LONG).await.unwrap();
    let mut branches: Vec<BranchRecord> = (250..500)
        .map(|i| branch(&name(i), Op::Action, BranchState::Sent))
        .collect();
    let mut replaced = branch(&name(300), Op::Action, BranchState::Succeeded);
    replaced.attempts = 2;
    branches.push(replaced.clone());
    branches.push(branch(&name(7), Op::Action, BranchState::Succeeded));
    let write = Write { tx: None, branches };
    assert_eq!(store.commit(&id, 1, write).await.unwrap(), 2);
    let t = store.load(&id).await.unwrap().unwrap();
    let names: Vec<&str> = t.branches.iter().map(|b| b.branch.as_str()).collect();
    let expected: Vec<String> = (0..500).map(name).collect();
    assert_eq!(names, expected);
    assert_eq!(t.branch(&replaced.branch, Op::Action), Some(&replaced));
    assert_eq!(t.branches[7].state, BranchState::Succeeded);
}

pub async fn claim_renew_release(store: &dyn TxStore) {
    // Only look at ours, in case a backend shares the store.
    let held = id("held");
    let free = id("free");
    let done = id("done");
    let parked = id("parked");
    let base = 1_000; // old, so these come before anything else in the store
    let setup = [
        (&held, TxState::Running, LONG),
        (&free, TxState::Committing, Duration::ZERO),
        (&done, TxState::Committed, Duration::ZERO),
        (&parked, TxState::NeedsIntervention, Duration::ZERO),
    ];
    for (i, (id, state, lease)) in setup.into_iter().enumerate() {
        store
            .create(&tx(id, state, base + i as u64), "a", lease)
            .await
            .unwrap();
    }

    let ours = |ids: Vec<TxId>| -> Vec<TxId> {
        ids.into_iter()
            .filter(|i| [&held, &free, &done, &parked].contains(&i))
            .collect()
    };
    let got = ours(store.claim("b", LONG, 100).await.unwrap());
    assert_eq!(got, vec![free.clone()], "only the active, unleased one");
    assert!(ours(store.claim("c", LONG, 100).await.unwrap()).is_empty());

    assert!(!store.renew(&free, "a", LONG).await.unwrap(), "a lost it");
    assert!(store.renew(&free, "b", LONG).await.unwrap());
    assert!(matches!(
        store.renew(&self::id("ghost"), "b", LONG).await,
        Err(StoreError::NotFound(_))
    ));

    store.release(&free, "c").await.unwrap(); // not c's: a no-op
    assert!(ours(store.claim("c", LONG, 100).await.unwrap()).is_empty());
    store.release(&free, "b").await.unwrap();
    assert_eq!(
        ours(store.claim("c", LONG, 100).await.unwrap()),
        vec![free.clone()]
    );

    // an expired lease is taken over
    let short = id("short");
    store
        .create(
            &tx(&short, TxState::Aborting, base + 4),
            "a",
            Duration::from_millis(50),
        )
        .await
        .unwrap();
    let all = [held.clone(), free.clone(), short.clone()];
    let mine = |ids: Vec<TxId>| {
        ids.into_iter()
            .filter(|i| all.contains(i))
            .collect::<Vec<_>>()
    };
    assert!(mine(store.claim("d", LONG, 100).await.unwrap()).is_empty());
    tokio::time::sleep(Duration::from_millis(120)).await;
    assert_eq!(
        mine(store.claim("d", LONG, 100).await.unwrap()),
        vec![short.clone()]
    );
    assert!(!store.renew(&short, "a", LONG).await.unwrap());

    // claims change no version
    assert_eq!(store.load(&short).await.unwrap().unwrap().version, 1);
}

pub async fn claim_limit_oldest_first(store: &dyn TxStore) {
    // ids created "long ago" at distinct times: oldest first, limit kept
    let base = 2_000;
    let ids: Vec<TxId> = (0..5).map(|i| id(&format!("lim{i}"))).collect();
    for (i, id) in ids.iter().enumerate().rev() {
        store
            .create(
                &tx(id, TxState::Running, base + i as u64),
                "a",
                Duration::ZERO,
            )
            .await
            .unwrap();
    }
    let mut got = Vec::new();
    loop {
        let batch = store.claim("z", LONG, 2).await.unwrap();
        assert!(batch.len() <= 2);
        if batch.is_empty() {
            break;
        }
        got.extend(batch.into_iter().filter(|i| ids.contains(i)));
    }
    assert_eq!(got, ids);
}

pub async fn list_filters(store: &dyn TxStore) {
    let tag = TxId::generate();
    let mk = |n: &str| TxId::new(format!("list-{n}-{tag}")).unwrap();
    // far-future creation times, unique per run, so only ours match
    let base = 4_000_000_000_000 + (now_ms() % 1_000_000) * 1_000;
    let (a, b, c, d) = (mk("a"), mk("b"), mk("c"), mk("d"));
    let mut ta = tx(&a, TxState::Running, base);
    ta.protocol = Protocol::Tcc;
    let tb = tx(&b, TxState::Committed, base + 1);
    let mut tc = tx(&c, TxState::Aborted, base + 2);
    tc.reason = Some("out of stock".to_owned());
    tc.protocol = Protocol::TwoPhase;
    let td = tx(&d, TxState::Running, base + 3);
    for t in [&td, &tc, &tb, &ta] {
        store.create(t, "a", LONG).await.unwrap();
    }
    async fn listed(store: &dyn TxStore, f: TxFilter, base: u64, tag: &str) -> Vec<TxId> {
        store
            .list(&f)
            .await
            .unwrap()
            .into_iter()
            .filter(|s| s.created_at >= base && s.id.as_str().ends_with(tag))
            .map(|s| s.id)
            .collect()
    }
    let ours = |f: TxFilter| listed(store, f, base, tag.as_str());
    assert_eq!(
        ours(TxFilter::default()).await,
        [a.clone(), b.clone(), c.clone(), d.clone()]
    );
    let running = TxFilter {
        states: vec![TxState::Running],
        ..TxFilter::default()
    };
    assert_eq!(ours(running).await, [a.clone(), d.clone()]);
    let ended = TxFilter {
        states: vec![TxState::Committed, TxState::Aborted],
        ..TxFilter::default()
    };
    assert_eq!(ours(ended).await, [b.clone(), c.clone()]);
    let saga = TxFilter {
        protocol: Some(Protocol::Saga),
        ..TxFilter::default()
    };
    assert_eq!(ours(saga).await, [b.clone(), d.clone()]);
    let early = TxFilter {
        created_before: Some(base + 1),
        ..TxFilter::default()
    };
    let early: Vec<TxId> = ours(early).await;
    assert_eq!(early, [a.clone(), b.clone()]);

    let summaries = store
        .list(&TxFilter {
            protocol: Some(Protocol::TwoPhase),
            states: vec![TxState::Aborted],
            created_before: Some(base + 2),
            limit: None,
        })
        .await
        .unwrap();
    let s = summaries.iter().find(|s| s.id == c).expect("c listed");
    assert_eq!(s.reason.as_deref(), Some("out of stock"));
    assert_eq!((s.created_at, s.updated_at), (base + 2, base + 2));
    assert_eq!(s.state, TxState::Aborted);
    assert_eq!(s.protocol, Protocol::TwoPhase);

    let limited = store
        .list(&TxFilter {
            limit: Some(2),
            ..TxFilter::default()
        })
        .await
        .unwrap();
    assert!(limited.len() <= 2);
    assert!(
        limited
            .windows(2)
            .all(|w| w[0].created_at <= w[1].created_at)
    );
}

pub async fn purge_terminal(store: &dyn TxStore) {
    let old = 10_000;
    let (gone, aborted, resolved, active, parked) =
        (id("p-c"), id("p-a"), id("p-r"), id("p-run"), id("p-int"));
    let mut t = tx(&gone, TxState::Committed, old);
    t.branches = vec![branch("x", Op::Action, BranchState::Succeeded)];
    store.create(&t, "a", LONG).await.unwrap();
    store
        .create(&tx(&aborted, TxState::Aborted, old), "a", LONG)
        .await
        .unwrap();
    store
        .create(&tx(&resolved, TxState::Resolved, old), "a", LONG)
        .await
        .unwrap();
    store
        .create(&tx(&active, TxState::Running, old), "a", LONG)
        .await
        .unwrap();
    store
        .create(&tx(&parked, TxState::NeedsIntervention, old), "a", LONG)
        .await
        .unwrap();
    // recently written: kept
    let recent = id("p-new");
    store
        .create(&tx(&recent, TxState::Running, old), "a", LONG)
        .await
        .unwrap();
    store
        .commit(&recent, 1, set_state(TxState::Committed))
        .await
        .unwrap();

    let purged = store.purge(old + 1).await.unwrap();
    assert!(purged >= 3, "purged {purged}");
    for id in [&gone, &aborted, &resolved] {
        assert_eq!(store.load(id).await.unwrap(), None, "{id} purged");
    }
    for id in [&active, &parked, &recent] {
        assert!(store.load(id).await.unwrap().is_some(), "{id} kept");
    }
    // its branches went with it: a new transaction of the same id starts clean
    store
        .create(&tx(&gone, TxState::Running, old), "a", LONG)
        .await
        .unwrap();
    assert!(
        store
            .load(&gone)
            .await
            .unwrap()
            .unwrap()
            .branches
            .is_empty()
    );
}

/// A store for one test and what to do after it (drop its schema, delete
/// its file).
pub struct Fixture {
    pub store: Box<dyn TxStore>,
    pub cleanup: Option<std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send>>>,
}

impl Fixture {
    pub fn new(store: impl TxStore + 'static) -> Self {
        Self {
            store: Box::new(store),
            cleanup: None,
        }
    }

    pub async fn finish(self) {
        drop(self.store);
        if let Some(cleanup) = self.cleanup {
            cleanup.await;
        }
    }
}

/// One `#[tokio::test]` per conformance case; `$make` is an async fn
/// `(&'static str) -> Fixture`.
#[macro_export]
macro_rules! conformance {
    ($make:path) => {
        $crate::conformance!(@case $make,
            create_load_exists,
            commit_versions_and_conflict,
            branch_upsert_keeps_order,
            many_branches_in_one_write,
            claim_renew_release,
            claim_limit_oldest_first,
            list_filters,
            purge_terminal
        );
    };
    (@case $make:path, $($case:ident),*) => {
        mod conformance {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $case() {
                    let fixture = $make(stringify!($case)).await;
                    $crate::common::$case(&*fixture.store).await;
                    fixture.finish().await;
                }
            )*
        }
    };
}
