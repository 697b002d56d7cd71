//! The known-keys bloom filter: no false negatives, its false-positive
//! rate, rotation of generations, failures, the rebuild task, config.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use proptest::prelude::*;
use rampart_cache::bloom::{BloomConfig, KeySource, KnownKeys, NoKeySource};
use rampart_cache::remote::BoxFuture;
use rampart_core::BoxError;
use tracing::field::{Field, Visit};
use tracing::span::{Attributes, Id, Record};
use tracing::{Event, Level, Metadata, Subscriber};

// === test key source ===

/// A key source whose keys, delay and failure the test changes as it goes,
/// counting its calls.
#[derive(Clone, Default)]
struct Source {
    keys: Arc<Mutex<Vec<String>>>,
    delay: Arc<Mutex<Duration>>,
    fail: Arc<Mutex<bool>>,
    calls: Arc<AtomicUsize>,
}

impl Source {
    fn of(keys: impl IntoIterator<Item = String>) -> Self {
        let source = Self::default();
        source.set(keys);
        source
    }

    fn set(&self, keys: impl IntoIterator<Item = String>) {
        *self.keys.lock().unwrap() = keys.into_iter().collect();
    }

    fn slow(&self, delay: Duration) {
        *self.delay.lock().unwrap() = delay;
    }

    fn failing(&self, fail: bool) {
        *self.fail.lock().unwrap() = fail;
    }

    fn calls(&self) -> usize {
        self.calls.load(Ordering::SeqCst)
    }

    fn known(&self, config: &BloomConfig) -> KnownKeys<String> {
        KnownKeys::new(config, Some(Arc::new(self.clone())))
    }
}

impl KeySource<String> for Source {
    fn keys(&self) -> BoxFuture<'_, Result<Vec<String>, BoxError>> {
        Box::pin(async move {
            self.calls.fetch_add(1, Ordering::SeqCst);
            let delay = *self.delay.lock().unwrap();
            if !delay.is_zero() {
                tokio::time::sleep(delay).await;
            }
            if *self.fail.lock().unwrap() {
                return Err("key source down".into());
            }
            Ok(self.keys.lock().unwrap().clone())
        })
    }
}

fn keys(prefix: &str, n: usize) -> Vec<String> {
    (0..n).map(|i| format!("{prefix}-{i}")).collect()
}

fn paused_runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .start_paused(true)
        .build()
        .unwrap()
}

/// A small filter with a low false-positive rate, so that a handful of
/// keys never collides in practice.
fn small() -> BloomConfig {
    BloomConfig::new()
        .expected_items(1_000)
        .false_positive_rate(0.0001)
}

fn false_positives(known: &KnownKeys<String>, absent: &[String]) -> usize {
    absent
        .iter()
        .filter(|k| known.might_exist(k.as_str()))
        .count()
}

// === no false negatives ===

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    /// Every key from the source and every inserted key (before, during
    /// and after a rebuild) answers `true`, whatever the sizes.
    #[test]
    fn no_false_negatives(
        source_keys in prop::collection::hash_set("[a-z0-9]{1,12}", 0..300),
        before in prop::collection::vec("[A-Z0-9]{1,12}", 0..50),
        during in prop::collection::vec("[A-Z0-9]{1,12}", 0..50),
        after in prop::collection::vec("[A-Z0-9]{1,12}", 0..50),
        expected_items in 1usize..200,
    ) {
        paused_runtime().block_on(async {
            let source = Source::of(source_keys.iter().cloned());
            source.slow(Duration::from_millis(10));
            let config = BloomConfig::new().expected_items(expected_items);
            let known = source.known(&config);
            for k in &before {
                known.insert(k.as_str());
            }
            let rebuild = tokio::spawn({
                let known = known.clone();
                async move { known.rebuild().await.unwrap() }
            });
            tokio::time::sleep(Duration::from_millis(5)).await;
            for k in &during {
                known.insert(k.as_str());
            }
            assert_eq!(rebuild.await.unwrap(), source_keys.len());
            for k in &after {
                known.insert(k.as_str());
            }
            for k in source_keys.iter().chain(&during).chain(&after) {
                assert!(known.might_exist(k.as_str()), "false negative for {k:?}");
            }
            assert_eq!(known.generation(), 1);
        });
    }

    /// Without a source the filter knows exactly what was inserted (no
    /// false negatives) and nothing else is answered from an empty filter.
    #[test]
    fn without_a_source_inserted_keys_are_known(
        inserted in prop::collection::hash_set("[a-z0-9]{1,12}", 0..300),
    ) {
        let known = KnownKeys::<String>::new(&BloomConfig::new(), None);
        prop_assert!(!known.might_exist("never inserted"));
        for k in &inserted {
            known.insert(k.as_str());
        }
        for k in &inserted {
            prop_assert!(known.might_exist(k.as_str()));
        }
    }
}

// === false-positive rate ===

#[tokio::test]
async fn false_positive_rate_is_within_twice_the_configured_rate() {
    let config = BloomConfig::new()
        .expected_items(10_000)
        .false_positive_rate(0.01);
    let source = Source::of(keys("present", 10_000));
    let known = source.known(&config);
    known.rebuild().await.unwrap();
    let fp = false_positives(&known, &keys("absent", 10_000));
    assert!(fp <= 200, "{fp} false positives in 10,000 absent keys");

    // The same filter fed by inserts only.
    let learned = KnownKeys::<String>::new(&config, None);
    for k in keys("present", 10_000) {
        learned.insert(&k);
    }
    let fp = false_positives(&learned, &keys("absent", 10_000));
    assert!(fp <= 200, "{fp} false positives in 10,000 absent keys");
}

#[tokio::test]
async fn a_rebuild_resizes_for_a_source_larger_than_expected() {
    let config = BloomConfig::new()
        .expected_items(1_000)
        .false_positive_rate(0.01);
    let source = Source::of(keys("present", 20_000));
    let known = source.known(&config);
    assert_eq!(known.capacity(), 1_000);
    known.rebuild().await.unwrap();
    assert_eq!(known.capacity(), 25_000);
    let fp = false_positives(&known, &keys("absent", 10_000));
    assert!(fp <= 200, "{fp} false positives in 10,000 absent keys");

    // And shrinks back, never below expected_items.
    source.set(keys("present", 10));
    known.rebuild().await.unwrap();
    assert_eq!(known.capacity(), 1_000);
}

// === generations ===

#[tokio::test]
async fn open_until_the_first_generation_is_built() {
    let source = Source::of(keys("k", 3));
    let known = source.known(&small());
    assert_eq!(known.generation(), 0);
    assert!(
        known.might_exist("anything"),
        "open before the source is read"
    );
    assert_eq!(known.rebuild().await.unwrap(), 3);
    assert_eq!(known.generation(), 1);
    assert!(known.might_exist("k-0"));
    assert!(!known.might_exist("anything"));
}

#[tokio::test]
async fn a_key_removed_from_the_source_disappears_at_the_next_rebuild() {
    let source = Source::of(["a", "b", "c"].map(String::from));
    let known = source.known(&small());
    known.rebuild().await.unwrap();
    known.insert("inserted");
    assert!(known.might_exist("b") && known.might_exist("inserted"));

    source.set(["a", "c"].map(String::from));
    known.rebuild().await.unwrap();
    assert_eq!(known.generation(), 2);
    assert!(known.might_exist("a") && known.might_exist("c"));
    assert!(!known.might_exist("b"), "removed from the source");
    assert!(
        !known.might_exist("inserted"),
        "inserted before the rebuild, not in the source"
    );

    known.insert("b");
    assert!(known.might_exist("b"), "inserted again");
    known.rebuild().await.unwrap();
    assert_eq!(known.generation(), 3);
    assert!(!known.might_exist("b"));
}

#[tokio::test(start_paused = true)]
async fn keys_inserted_during_a_rebuild_survive_it() {
    let source = Source::of(["a".to_owned()]);
    let known = source.known(&small());
    known.rebuild().await.unwrap();
    known.insert("before");

    source.slow(Duration::from_secs(1));
    let rebuild = tokio::spawn({
        let known = known.clone();
        async move { known.rebuild().await }
    });
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(source.calls(), 2, "the rebuild is reading the source");
    known.insert("during");
    assert!(
        known.might_exist("during"),
        "in the current generation at once"
    );
    assert_eq!(known.generation(), 1);

    assert_eq!(rebuild.await.unwrap().unwrap(), 1);
    assert_eq!(known.generation(), 2);
    assert!(known.might_exist("a"));
    assert!(known.might_exist("during"), "kept by the new generation");
    assert!(
        !known.might_exist("before"),
        "not in the source, inserted before"
    );
}

/// Keys that start to exist while rebuilds run on another thread: each
/// is added to the source's truth and then inserted, so it is either in
/// the source's answer or inserted after the rebuild started reading it.
/// After every rebuild, every key inserted so far must be known.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_inserts_and_rebuilds_lose_no_key() {
    let source = Source::of(keys("source", 2_000));
    let known = source.known(&BloomConfig::new().expected_items(10_000));
    let created = keys("created", 5_000);
    let inserted = Arc::new(AtomicUsize::new(0));
    let inserter = tokio::spawn({
        let (known, source, inserted) = (known.clone(), source.clone(), inserted.clone());
        let created = created.clone();
        async move {
            for (i, k) in created.iter().enumerate() {
                source.keys.lock().unwrap().push(k.clone());
                known.insert(k.as_str());
                inserted.store(i + 1, Ordering::SeqCst);
                if i % 10 == 0 {
                    tokio::task::yield_now().await;
                }
            }
        }
    });
    let mut rebuilds = 0;
    while !inserter.is_finished() || rebuilds == 0 {
        known.rebuild().await.unwrap();
        rebuilds += 1;
        let done = inserted.load(Ordering::SeqCst);
        for k in &created[..done] {
            assert!(
                known.might_exist(k.as_str()),
                "lost {k:?} at rebuild {rebuilds}"
            );
        }
    }
    inserter.await.unwrap();
    assert_eq!(known.generation(), rebuilds);
    for k in source.keys.lock().unwrap().iter() {
        assert!(known.might_exist(k.as_str()), "lost {k:?}");
    }
}

// === failures ===

#[tokio::test]
async fn a_failing_source_keeps_the_current_generation() {
    let events = Events::default();
    let _guard = tracing::subscriber::set_default(events.clone());
    let source = Source::of(["a", "b"].map(String::from));
    let known = source.known(&small());
    known.rebuild().await.unwrap();

    source.failing(true);
    source.set([]);
    let err = known.rebuild().await.unwrap_err();
    assert_eq!(err.to_string(), "key source down");
    assert_eq!(known.generation(), 1);
    assert!(
        known.might_exist("a") && known.might_exist("b"),
        "not emptied"
    );
    assert_eq!(events.warnings_containing("rebuild failed"), 1);

    source.failing(false);
    known.rebuild().await.unwrap();
    assert_eq!(known.generation(), 2);
    assert!(!known.might_exist("a"), "the source now has no key");
}

#[tokio::test]
async fn a_failing_first_rebuild_stays_open() {
    let source = Source::of([]);
    source.failing(true);
    let known = source.known(&small());
    assert!(known.rebuild().await.is_err());
    assert_eq!(known.generation(), 0);
    assert!(known.might_exist("anything"), "open, not empty");
}

#[tokio::test]
async fn without_a_source_the_filter_starts_empty_and_learns() {
    let known = KnownKeys::<String>::new(&small(), None);
    assert!(known.is_empty());
    assert!(!known.might_exist("unknown"), "absent until inserted");
    known.insert("k");
    assert!(known.might_exist("k"));
    let err = known.rebuild().await.unwrap_err();
    assert!(err.downcast_ref::<NoKeySource>().is_some());
    assert!(known.might_exist("k"), "kept");
    assert_eq!(known.generation(), 0);
    assert!(known.spawn_rebuilds().is_none(), "nothing to rebuild from");
}

// === size estimate ===

#[tokio::test]
async fn len_counts_distinct_keys_and_warns_once_past_twice_the_capacity() {
    let events = Events::default();
    let _guard = tracing::subscriber::set_default(events.clone());
    let source = Source::of(keys("source", 80));
    let config = BloomConfig::new()
        .expected_items(100)
        .false_positive_rate(0.001);
    let known = source.known(&config);
    known.rebuild().await.unwrap();
    assert_eq!(known.len(), 80);
    assert_eq!(known.capacity(), 100);
    known.insert("source-0");
    assert_eq!(known.len(), 80, "a known key is not counted again");

    for k in keys("new", 100) {
        known.insert(&k);
    }
    assert!((170..=180).contains(&known.len()), "len {}", known.len());
    assert_eq!(events.warnings_containing("twice the keys"), 0);
    for k in keys("more", 1_000) {
        known.insert(&k);
    }
    assert!(known.len() > 200);
    assert_eq!(events.warnings_containing("twice the keys"), 1, "once");

    // A new generation starts counting (and warning) afresh.
    known.rebuild().await.unwrap();
    assert_eq!(known.len(), 80);
    for k in keys("again", 1_000) {
        known.insert(&k);
    }
    assert_eq!(events.warnings_containing("twice the keys"), 2);
}

// === the rebuild task ===

#[tokio::test(start_paused = true)]
async fn spawn_rebuilds_rebuilds_on_the_interval_until_every_clone_is_dropped() {
    let source = Source::of(keys("k", 3));
    let config = small().rebuild_every(Duration::from_secs(10));
    let known = source.known(&config);
    let clone = known.clone();
    let task = known.spawn_rebuilds().unwrap();

    tokio::time::sleep(Duration::from_millis(1)).await;
    assert_eq!((source.calls(), known.generation()), (1, 1), "at once");
    tokio::time::sleep(Duration::from_secs(10)).await;
    assert_eq!((source.calls(), known.generation()), (2, 2));
    tokio::time::sleep(Duration::from_secs(25)).await;
    assert_eq!(known.generation(), 4);

    drop(known);
    tokio::time::sleep(Duration::from_secs(10)).await;
    assert_eq!(
        clone.generation(),
        5,
        "one clone is enough to keep it going"
    );
    assert!(!task.is_finished());

    drop(clone);
    let ended = tokio::time::timeout(Duration::from_millis(1), task).await;
    assert!(ended.is_ok(), "the task ends with the last clone");
    tokio::time::sleep(Duration::from_secs(60)).await;
    assert_eq!(source.calls(), 5, "no rebuild after the end");
}

#[tokio::test(start_paused = true)]
async fn a_failed_rebuild_is_retried_at_the_next_tick() {
    let source = Source::of(keys("k", 3));
    source.failing(true);
    let known = source.known(&small().rebuild_every(Duration::from_secs(10)));
    let _task = known.spawn_rebuilds().unwrap();
    tokio::time::sleep(Duration::from_millis(1)).await;
    assert_eq!((source.calls(), known.generation()), (1, 0));
    source.failing(false);
    tokio::time::sleep(Duration::from_secs(10)).await;
    assert_eq!((source.calls(), known.generation()), (2, 1));
}

#[tokio::test(start_paused = true)]
async fn spawning_again_replaces_the_task() {
    let source = Source::of(keys("k", 3));
    let known = source.known(&small().rebuild_every(Duration::from_secs(10)));
    let first = known.spawn_rebuilds().unwrap();
    let _second = known.spawn_rebuilds().unwrap();
    tokio::time::sleep(Duration::from_secs(25)).await;
    assert!(first.is_finished());
    assert_eq!(source.calls(), 3, "one task: at 0, 10 and 20 seconds");
}

#[test]
fn no_task_without_an_interval() {
    let source = Source::of([]);
    let known = source.known(&small());
    assert!(known.spawn_rebuilds().is_none());
}

// === config ===

#[test]
fn bad_config_names_the_field() {
    let field = |c: BloomConfig| c.validate().unwrap_err().field();
    assert_eq!(
        field(BloomConfig::new().expected_items(0)),
        "bloom.expected_items"
    );
    assert_eq!(
        field(BloomConfig::new().expected_items(1_000_000_001)),
        "bloom.expected_items"
    );
    for p in [0.0, 1.0, -0.1, 1.5, f64::NAN] {
        assert_eq!(
            field(BloomConfig::new().false_positive_rate(p)),
            "bloom.false_positive_rate"
        );
    }
    assert_eq!(
        field(BloomConfig::new().rebuild_every(Duration::ZERO)),
        "bloom.rebuild_every"
    );
    BloomConfig::new()
        .expected_items(1)
        .false_positive_rate(0.5)
        .rebuild_every(Duration::from_millis(1))
        .validate()
        .unwrap();
}

#[test]
fn config_loads_from_toml() {
    let config: BloomConfig = toml::from_str(
        "expected_items = 5000\nfalse_positive_rate = 0.001\nrebuild_every = \"10m\"",
    )
    .unwrap();
    assert_eq!(
        config,
        BloomConfig::new()
            .expected_items(5_000)
            .false_positive_rate(0.001)
            .rebuild_every(Duration::from_secs(600))
    );
    assert_eq!(
        toml::from_str::<BloomConfig>("").unwrap(),
        BloomConfig::new()
    );
    assert_eq!(
        toml::from_str::<BloomConfig>("rebuild_every = 1500").unwrap(),
        BloomConfig::new().rebuild_every(Duration::from_millis(1500))
    );
    let err = toml::from_str::<BloomConfig>("expected = 5").unwrap_err();
    assert!(err.to_string().contains("unknown field"), "{err}");
    assert!(toml::from_str::<BloomConfig>("rebuild_every = \"soon\"").is_err());
}

#[test]
fn debug_shows_the_generation_and_size() {
    let known = KnownKeys::<String>::new(&small(), None);
    known.insert("k");
    let debug = format!("{known:?}");
    assert!(debug.contains("generation: 0"), "{debug}");
    assert!(debug.contains("len: 1"), "{debug}");
    assert!(debug.contains("capacity: 1000"), "{debug}");
}

// === tracing capture ===

/// Records the message of every `warn` event.
#[derive(Clone, Default)]
struct Events {
    warnings: Arc<Mutex<Vec<String>>>,
}

impl Events {
    fn warnings_containing(&self, text: &str) -> usize {
        let warnings = self.warnings.lock().unwrap();
        warnings.iter().filter(|w| w.contains(text)).count()
    }
}

struct Message(String);

impl Visit for Message {
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        if field.name() == "message" {
            self.0 = format!("{value:?}");
        }
    }
}

impl Subscriber for Events {
    fn enabled(&self, _: &Metadata<'_>) -> bool {
        true
    }
    fn new_span(&self, _: &Attributes<'_>) -> Id {
        Id::from_u64(1)
    }
    fn record(&self, _: &Id, _: &Record<'_>) {}
    fn record_follows_from(&self, _: &Id, _: &Id) {}
    fn event(&self, event: &Event<'_>) {
        if *event.metadata().level() == Level::WARN {
            let mut message = Message(String::new());
            event.record(&mut message);
            self.warnings.lock().unwrap().push(message.0);
        }
    }
    fn enter(&self, _: &Id) {}
    fn exit(&self, _: &Id) {}
}
