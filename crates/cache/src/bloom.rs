//! Keys known to exist: the penetration defence.
//!
//! A request for a key that does not exist misses every cache tier and
//! reaches the upstream each time; many such requests (a scan, a bug, an
//! attacker walking ids) go straight through the cache to the database.
//! [`KnownKeys`] is a [bloom filter] of the keys that do exist, so that the
//! cache can answer "absent" for a key the filter rejects without calling
//! the upstream.
//!
//! [bloom filter]: https://en.wikipedia.org/wiki/Bloom_filter
//!
//! # What an answer means
//!
//! [`might_exist`](KnownKeys::might_exist) returning `false` means the key
//! is in neither the key source's last answer nor any [`insert`] since: it
//! does not exist as far as the filter knows, and there are no false
//! negatives. `true` means "maybe": the key is known, or it is a false
//! positive, which happens at about the configured
//! [`false_positive_rate`](BloomConfig::false_positive_rate) while the
//! filter holds no more keys than it was sized for.
//!
//! # Where the keys come from
//!
//! - A [`KeySource`] (for example `SELECT id FROM users`), read at start
//!   and at every rebuild. Each [`rebuild`](KnownKeys::rebuild) builds a new
//!   filter (a *generation*) from the source and swaps it in atomically.
//! - [`insert`]: a key that starts to exist between rebuilds (the cache
//!   inserts every key it loads successfully; the application inserts the
//!   keys it creates).
//!
//! A bloom filter cannot delete, so deletions take effect by rotation: the
//! new generation holds the source's keys plus every key inserted since the
//! rebuild started (those are written to both the current and the building
//! generation, so none is lost), and nothing else. A key deleted from the
//! source disappears at the next rebuild unless it was inserted again.
//!
//! **Before the first generation.** With a source, the filter answers
//! `true` for every key until the first rebuild from the source succeeds
//! (generation 0 is *open*): a cache that starts, or whose source is down
//! at start, keeps working without the defence instead of answering every
//! key "absent". Call [`rebuild`](KnownKeys::rebuild) once at start, or
//! [`spawn_rebuilds`](KnownKeys::spawn_rebuilds), whose first rebuild runs
//! at once.
//!
//! **Without a source** the filter starts empty and learns only from
//! [`insert`]: it answers `false` for every key never inserted. A cache
//! with the filter on and no source therefore answers every such key
//! "absent" and never loads it; the application must insert each key when
//! it creates it. Use this only when every key is created through the
//! application; otherwise give a source.
//!
//! **A failed rebuild** (the source returns an error) keeps the current
//! generation, returns the error and logs it at `warn`: the filter is
//! never emptied by a failure. A rebuild whose future is dropped before it
//! ends leaves the current generation as it was. An *empty* list from the
//! source is an answer, not a failure: the next generation holds only the
//! keys inserted meanwhile.
//!
//! # Sizing
//!
//! A generation is sized for [`expected_items`](BloomConfig::expected_items)
//! keys at [`false_positive_rate`](BloomConfig::false_positive_rate): about
//! `-ln(p) / ln(2)²` bits per key, so 9.6 bits (1.2 bytes) per key at 1 %
//! and 14.4 bits at 0.1 % (100,000 keys at 1 % take 120 KB). Each rebuild
//! resizes to `max(expected_items, 1.25 × the source's key count)`, so a
//! growing key set keeps its rate. Keys inserted beyond the size make the
//! false-positive rate climb; [`len`](KnownKeys::len) estimates the keys in
//! the current generation, and the filter logs once per generation at
//! `warn` when it passes twice its [`capacity`](KnownKeys::capacity).
//!
//! # Hashing
//!
//! Each key is hashed once with SipHash-1-3 under keys drawn at random
//! when the [`KnownKeys`] is created (std's `RandomState`), and the 64-bit
//! result is what the `bloomfilter` crate stores. Every generation of one
//! [`KnownKeys`] uses the same hasher, so rebuilds and inserts agree, and
//! `String` and `&str` keys hash alike (`insert` and `might_exist` take any
//! borrowed form of `K`). The keys are random per process, so a client
//! cannot compute in advance which absent keys pass the filter. The
//! fingerprint adds a chance of `n / 2⁶⁴` to the false-positive rate.
//!
//! # Cost and concurrency
//!
//! [`might_exist`](KnownKeys::might_exist) hashes the key and takes one
//! read lock; it never allocates and never waits for a rebuild's work.
//! [`insert`] takes a write lock unless the key is already in the filter
//! and no rebuild runs. A rebuild reads the source and builds the next
//! generation outside the lock, then takes the write lock once to add the
//! keys inserted in the last moments and swap. One rebuild runs at a time;
//! a second call waits for the first.
//!
//! # Configuration
//!
//! [`BloomConfig`] deserializes with every field optional, durations as
//! `"10m"` (an integer is milliseconds) and unknown keys refused:
//!
//! ```
//! use rampart_cache::bloom::BloomConfig;
//! use std::time::Duration;
//!
//! let config: BloomConfig = toml::from_str(r#"
//!     expected_items = 1_000_000
//!     false_positive_rate = 0.001
//!     rebuild_every = "10m"
//! "#).unwrap();
//! assert_eq!(config, BloomConfig::new()
//!     .expected_items(1_000_000)
//!     .false_positive_rate(0.001)
//!     .rebuild_every(Duration::from_secs(600)));
//! config.validate().unwrap();
//! ```
//!
//! # Example
//!
//! ```
//! use std::sync::Arc;
//! use std::time::Duration;
//!
//! use rampart_cache::bloom::{BloomConfig, KeySource, KnownKeys};
//! use rampart_cache::remote::BoxFuture;
//! use rampart_core::BoxError;
//!
//! /// The ids of existing users (in real life, a database query).
//! struct UserIds;
//!
//! impl KeySource<u64> for UserIds {
//!     fn keys(&self) -> BoxFuture<'_, Result<Vec<u64>, BoxError>> {
//!         Box::pin(async { Ok(vec![1, 2, 3]) })
//!     }
//! }
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), BoxError> {
//! let config = BloomConfig::new()
//!     .expected_items(10_000)
//!     .false_positive_rate(0.001)
//!     .rebuild_every(Duration::from_secs(600));
//! config.validate()?;
//! let known = KnownKeys::new(&config, Some(Arc::new(UserIds)));
//!
//! // Open until the first generation is built from the source.
//! assert!(known.might_exist(&42));
//! assert_eq!(known.rebuild().await?, 3);
//! assert_eq!(known.generation(), 1);
//! assert!(known.might_exist(&1));
//! assert!(!known.might_exist(&42));
//!
//! // User 42 is created: known from now on, and kept by rebuilds that
//! // run meanwhile.
//! known.insert(&42);
//! assert!(known.might_exist(&42));
//!
//! // Rebuild every ten minutes until the last clone of `known` is dropped.
//! let task = known.spawn_rebuilds().expect("a source and an interval");
//! drop(known);
//! task.await.ok();
//! # Ok(())
//! # }
//! ```
//!
//! [`insert`]: KnownKeys::insert

use std::borrow::Borrow;
use std::collections::hash_map::RandomState;
use std::fmt;
use std::hash::{BuildHasher, Hash};
use std::mem;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError, RwLock, RwLockReadGuard, RwLockWriteGuard};
use std::time::Duration;

use bloomfilter::Bloom;
use rampart_core::error::validate;
use rampart_core::{BoxError, ConfigError};
use serde::Deserialize;
use tokio::task::{AbortHandle, JoinHandle};
use tokio::time::MissedTickBehavior;

use crate::remote::BoxFuture;

/// The most keys [`BloomConfig::expected_items`] accepts (a filter of
/// 1.2 GB at a 1 % false-positive rate).
pub const MAX_EXPECTED_ITEMS: usize = 1_000_000_000;

/// How much room a rebuild leaves over the source's key count.
const HEADROOM: f64 = 1.25;

/// The bloom filter's own hash seed. The per-instance randomness is in the
/// fingerprint hasher, so a fixed seed here costs nothing.
const SEED: [u8; 32] = *b"rampart-cache known keys filter!";

/// A rebuild yields to the runtime after adding this many source keys, so
/// that a large source does not hold a worker thread for long.
const YIELD_EVERY: usize = 16_384;

// === impl BloomConfig ===

/// The size of the filter and how often it is rebuilt.
///
/// Build one with the consuming setters (each says what it defaults to)
/// and check it with [`validate`](Self::validate); the cache's `build()`
/// does so. It deserializes from TOML (see the [module docs](self)).
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct BloomConfig {
    expected_items: usize,
    false_positive_rate: f64,
    #[serde(with = "rampart_core::duration::option")]
    rebuild_every: Option<Duration>,
}

impl Default for BloomConfig {
    fn default() -> Self {
        Self {
            expected_items: 100_000,
            false_positive_rate: 0.01,
            rebuild_every: None,
        }
    }
}

impl BloomConfig {
    /// The defaults: see each setter.
    pub fn new() -> Self {
        Self::default()
    }

    /// How many keys a generation is sized for; a rebuild sizes for more
    /// when the source gives more (1.25 × its key count). Must be 1 to
    /// [`MAX_EXPECTED_ITEMS`]. Defaults to 100,000.
    pub fn expected_items(mut self, n: usize) -> Self {
        self.expected_items = n;
        self
    }

    /// The share of absent keys the filter lets through while it holds no
    /// more keys than it is sized for. Must be greater than 0 and less
    /// than 1. Defaults to 0.01.
    pub fn false_positive_rate(mut self, p: f64) -> Self {
        self.false_positive_rate = p;
        self
    }

    /// How often [`KnownKeys::spawn_rebuilds`] rebuilds the filter from
    /// its source (on tokio's clock). Must be longer than zero. Defaults to
    /// none: rebuilds happen only when [`KnownKeys::rebuild`] is called.
    pub fn rebuild_every(mut self, d: Duration) -> Self {
        self.rebuild_every = Some(d);
        self
    }

    /// Checks the settings, naming the first field at fault:
    ///
    /// - `bloom.expected_items` is 0 or above [`MAX_EXPECTED_ITEMS`];
    /// - `bloom.false_positive_rate` is not strictly between 0 and 1;
    /// - `bloom.rebuild_every` is zero.
    pub fn validate(&self) -> Result<(), ConfigError> {
        validate::non_zero("bloom.expected_items", self.expected_items as u64)?;
        validate::at_most(
            "bloom.expected_items",
            self.expected_items as u64,
            MAX_EXPECTED_ITEMS as u64,
        )?;
        let p = self.false_positive_rate;
        if !(p > 0.0 && p < 1.0) {
            return Err(ConfigError::new(
                "bloom.false_positive_rate",
                format!("must be greater than 0.0 and less than 1.0, got {p}"),
            ));
        }
        if let Some(every) = self.rebuild_every {
            validate::non_zero_duration("bloom.rebuild_every", every)?;
        }
        Ok(())
    }

    /// The sizing, with out-of-range values brought into range so that a
    /// config that skipped [`validate`](Self::validate) cannot panic the
    /// `bloomfilter` crate.
    fn sizing(&self) -> Sizing {
        if let Err(error) = self.validate() {
            tracing::warn!(%error, "bloom filter config not validated; using the nearest valid values");
        }
        let p = self.false_positive_rate;
        Sizing {
            expected_items: self.expected_items.clamp(1, MAX_EXPECTED_ITEMS),
            false_positive_rate: if p > 0.0 && p < 1.0 { p } else { 0.01 },
        }
    }
}

/// How big each generation is.
#[derive(Debug, Clone, Copy)]
struct Sizing {
    expected_items: usize,
    false_positive_rate: f64,
}

impl Sizing {
    /// The capacity of a generation built from `source_len` keys.
    fn capacity_for(self, source_len: usize) -> usize {
        let with_headroom = (source_len as f64 * HEADROOM).ceil() as usize;
        self.expected_items.max(with_headroom)
    }

    fn generation(self, capacity: usize, open: bool) -> Generation {
        let filter = Bloom::new_for_fp_rate_with_seed(capacity, self.false_positive_rate, &SEED)
            .expect("bloomfilter 3 only fails on a zero size or a rate outside 0..1, which Sizing excludes");
        Generation {
            filter,
            open,
            capacity,
            len: 0,
            warned: false,
        }
    }
}

// === impl KeySource ===

/// Where the set of existing keys comes from (at start and at each
/// rebuild).
///
/// Return every key that exists now; an error keeps the filter's current
/// generation (see the [module docs](self)).
pub trait KeySource<K>: Send + Sync + 'static {
    /// Every key that exists.
    fn keys(&self) -> BoxFuture<'_, Result<Vec<K>, BoxError>>;
}

/// [`KnownKeys::rebuild`] was called on a filter created without a
/// [`KeySource`]; the current generation is kept.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NoKeySource;

impl fmt::Display for NoKeySource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("bloom filter has no key source to rebuild from")
    }
}

impl std::error::Error for NoKeySource {}

// === impl KnownKeys ===

/// Keys known to exist: a bloom filter in rotating generations.
///
/// Clones share one filter. See the [module docs](self) for what its
/// answers mean and how generations rotate.
pub struct KnownKeys<K> {
    shared: Arc<Shared<K>>,
}

struct Shared<K> {
    sizing: Sizing,
    rebuild_every: Option<Duration>,
    source: Option<Arc<dyn KeySource<K>>>,
    hasher: RandomState,
    state: RwLock<State>,
    /// The current generation's number, readable without the lock.
    generation: AtomicU64,
    /// Held for the whole of a rebuild: one at a time.
    rebuilding: tokio::sync::Mutex<()>,
    /// The task of [`KnownKeys::spawn_rebuilds`], stopped when the last
    /// clone goes.
    task: Mutex<Option<AbortHandle>>,
}

struct State {
    current: Generation,
    /// Fingerprints inserted since the running rebuild started: `Some`
    /// exactly while a rebuild runs, so that it can add them to the
    /// generation it builds.
    pending: Option<Vec<u64>>,
}

/// One filter and what is known about it.
struct Generation {
    filter: Bloom<u64>,
    /// Answers `true` for every key: a filter with a source, before its
    /// first generation is built.
    open: bool,
    capacity: usize,
    /// Keys added that were not in the filter before: an estimate of the
    /// distinct keys it holds (false positives make it a little low).
    len: usize,
    /// Whether the over-capacity warning was logged.
    warned: bool,
}

impl Generation {
    fn check(&self, fingerprint: u64) -> bool {
        self.open || self.filter.check(&fingerprint)
    }

    fn add(&mut self, fingerprint: u64) {
        if !self.filter.check_and_set(&fingerprint) {
            self.len += 1;
        }
    }

    /// Whether the filter just passed twice its capacity (true once).
    fn passed_twice_capacity(&mut self) -> bool {
        let over = !self.warned && self.len > self.capacity.saturating_mul(2);
        self.warned |= over;
        over
    }
}

impl<K: Hash + Send + Sync + 'static> KnownKeys<K> {
    /// A filter sized by `config`, fed by `source` when given.
    ///
    /// With a source it answers `true` for every key until the first
    /// [`rebuild`](Self::rebuild) succeeds; without one it starts empty and
    /// learns from [`insert`](Self::insert) only (see the
    /// [module docs](self)). `config` should have passed
    /// [`BloomConfig::validate`]; out-of-range values are replaced by the
    /// nearest valid ones and logged.
    pub fn new(config: &BloomConfig, source: Option<Arc<dyn KeySource<K>>>) -> Self {
        let sizing = config.sizing();
        let current = sizing.generation(sizing.expected_items, source.is_some());
        Self {
            shared: Arc::new(Shared {
                sizing,
                rebuild_every: config.rebuild_every,
                source,
                hasher: RandomState::new(),
                state: RwLock::new(State {
                    current,
                    pending: None,
                }),
                generation: AtomicU64::new(0),
                rebuilding: tokio::sync::Mutex::new(()),
                task: Mutex::new(None),
            }),
        }
    }

    /// Reads the source, builds a new generation from its keys and swaps
    /// it in atomically; returns how many keys the source gave.
    ///
    /// The new generation also holds every key [inserted](Self::insert)
    /// while the rebuild ran. On error (the source failed, or there is no
    /// source: [`NoKeySource`]) the current generation is kept; a source
    /// error is also logged at `warn`. Waits for a rebuild already running.
    pub async fn rebuild(&self) -> Result<usize, BoxError> {
        self.shared.rebuild().await
    }

    /// Whether `key` may exist: `false` means it is neither in the
    /// source's last answer nor inserted since; `true` may be a false
    /// positive. One read lock, no allocation.
    pub fn might_exist<Q>(&self, key: &Q) -> bool
    where
        K: Borrow<Q>,
        Q: Hash + ?Sized,
    {
        let fingerprint = self.shared.hasher.hash_one(key);
        read(&self.shared.state).current.check(fingerprint)
    }

    /// Records that `key` exists, in the current generation and in the one
    /// a running rebuild is building.
    pub fn insert<Q>(&self, key: &Q)
    where
        K: Borrow<Q>,
        Q: Hash + ?Sized,
    {
        let fingerprint = self.shared.hasher.hash_one(key);
        {
            let state = read(&self.shared.state);
            if state.pending.is_none() && state.current.filter.check(&fingerprint) {
                return;
            }
        }
        let mut state = write(&self.shared.state);
        if let Some(pending) = &mut state.pending {
            pending.push(fingerprint);
        }
        state.current.add(fingerprint);
        if state.current.passed_twice_capacity() {
            let (len, capacity) = (state.current.len, state.current.capacity);
            drop(state);
            tracing::warn!(
                len,
                capacity,
                generation = self.generation(),
                "bloom filter holds over twice the keys it is sized for; its false-positive rate \
                 is climbing until the next rebuild (raise bloom.expected_items)"
            );
        }
    }

    /// Rebuilds at once and then every
    /// [`rebuild_every`](BloomConfig::rebuild_every) on tokio's clock, until
    /// the last clone of this filter is dropped. Failed rebuilds are
    /// logged and retried at the next tick.
    ///
    /// `None` when there is no interval or no source. Calling it again
    /// replaces (aborts) the previous task. Must be called within a tokio
    /// runtime, like [`tokio::spawn`].
    pub fn spawn_rebuilds(&self) -> Option<JoinHandle<()>> {
        let every = self.shared.rebuild_every?;
        self.shared.source.as_ref()?;
        let shared = Arc::downgrade(&self.shared);
        let task = tokio::spawn(async move {
            let mut ticks = tokio::time::interval(every);
            ticks.set_missed_tick_behavior(MissedTickBehavior::Delay);
            loop {
                ticks.tick().await;
                let Some(shared) = shared.upgrade() else {
                    return;
                };
                // A failure is logged by `rebuild` and retried next tick.
                let _ = shared.rebuild().await;
            }
        });
        let previous = lock(&self.shared.task).replace(task.abort_handle());
        if let Some(previous) = previous {
            previous.abort();
        }
        Some(task)
    }

    /// The current generation's number: 0 until the first rebuild, then
    /// one more for each successful rebuild.
    pub fn generation(&self) -> u64 {
        self.shared.generation.load(Ordering::Acquire)
    }
}

impl<K> KnownKeys<K> {
    /// An estimate of the distinct keys in the current generation (the
    /// source's and the inserted ones). When it passes twice
    /// [`capacity`](Self::capacity) the false-positive rate is well above
    /// the configured one until the next rebuild.
    pub fn len(&self) -> usize {
        read(&self.shared.state).current.len
    }

    /// Whether the current generation holds no key.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// How many keys the current generation is sized for.
    pub fn capacity(&self) -> usize {
        read(&self.shared.state).current.capacity
    }
}

impl<K: Hash + Send + Sync + 'static> Shared<K> {
    async fn rebuild(&self) -> Result<usize, BoxError> {
        let Some(source) = &self.source else {
            return Err(NoKeySource.into());
        };
        let _one_at_a_time = self.rebuilding.lock().await;
        let built = self.build(source.as_ref()).await;
        if let Err(error) = &built {
            tracing::warn!(
                %error,
                generation = self.generation.load(Ordering::Acquire),
                "bloom filter rebuild failed; keeping the current generation"
            );
        }
        built
    }

    async fn build(&self, source: &dyn KeySource<K>) -> Result<usize, BoxError> {
        let pending = PendingInserts::start(&self.state);
        let keys = source.keys().await?;
        let source_len = keys.len();
        let capacity = self.sizing.capacity_for(source_len);
        let mut next = self.sizing.generation(capacity, false);
        for (i, key) in keys.into_iter().enumerate() {
            next.add(self.hasher.hash_one(&key));
            if (i + 1) % YIELD_EVERY == 0 {
                tokio::task::yield_now().await;
            }
        }
        // Add what was inserted so far outside the lock; the swap adds the
        // few that arrive meanwhile.
        for fingerprint in pending.take_so_far() {
            next.add(fingerprint);
        }
        let previous = pending.swap_in(next);
        self.generation.fetch_add(1, Ordering::AcqRel);
        // The old filter is freed here, outside the lock.
        drop(previous);
        Ok(source_len)
    }
}

impl<K> Drop for Shared<K> {
    fn drop(&mut self) {
        let task = self
            .task
            .get_mut()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        if let Some(task) = task {
            task.abort();
        }
    }
}

/// Collects the fingerprints inserted while a rebuild runs; stops
/// collecting when dropped, so that a rebuild that fails or is cancelled
/// leaves nothing behind.
struct PendingInserts<'a> {
    state: &'a RwLock<State>,
}

impl<'a> PendingInserts<'a> {
    fn start(state: &'a RwLock<State>) -> Self {
        write(state).pending = Some(Vec::new());
        Self { state }
    }

    fn take_so_far(&self) -> Vec<u64> {
        write(self.state)
            .pending
            .as_mut()
            .map(mem::take)
            .unwrap_or_default()
    }

    /// Adds the last inserted fingerprints to `next`, makes it current and
    /// returns the previous generation.
    fn swap_in(self, mut next: Generation) -> Generation {
        let mut state = write(self.state);
        for fingerprint in state.pending.take().unwrap_or_default() {
            next.add(fingerprint);
        }
        mem::replace(&mut state.current, next)
    }
}

impl Drop for PendingInserts<'_> {
    fn drop(&mut self) {
        write(self.state).pending = None;
    }
}

impl<K> Clone for KnownKeys<K> {
    fn clone(&self) -> Self {
        Self {
            shared: Arc::clone(&self.shared),
        }
    }
}

impl<K> fmt::Debug for KnownKeys<K> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let state = read(&self.shared.state);
        f.debug_struct("KnownKeys")
            .field(
                "generation",
                &self.shared.generation.load(Ordering::Acquire),
            )
            .field("open", &state.current.open)
            .field("len", &state.current.len)
            .field("capacity", &state.current.capacity)
            .field("has_source", &self.shared.source.is_some())
            .field("rebuild_every", &self.shared.rebuild_every)
            .finish()
    }
}

/// The state is consistent between statements, so a panic elsewhere while
/// a lock was held (poisoning) leaves nothing to repair.
fn read(lock: &RwLock<State>) -> RwLockReadGuard<'_, State> {
    lock.read().unwrap_or_else(PoisonError::into_inner)
}

fn write(lock: &RwLock<State>) -> RwLockWriteGuard<'_, State> {
    lock.write().unwrap_or_else(PoisonError::into_inner)
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Fixed(Vec<String>);

    impl KeySource<String> for Fixed {
        fn keys(&self) -> BoxFuture<'_, Result<Vec<String>, BoxError>> {
            Box::pin(async move { Ok(self.0.clone()) })
        }
    }

    /// A source that never answers.
    struct Never;

    impl KeySource<String> for Never {
        fn keys(&self) -> BoxFuture<'_, Result<Vec<String>, BoxError>> {
            Box::pin(std::future::pending())
        }
    }

    fn sizing(expected_items: usize) -> Sizing {
        Sizing {
            expected_items,
            false_positive_rate: 0.01,
        }
    }

    #[test]
    fn capacity_is_expected_items_or_a_quarter_over_the_source() {
        assert_eq!(sizing(100).capacity_for(0), 100);
        assert_eq!(sizing(100).capacity_for(80), 100);
        assert_eq!(sizing(100).capacity_for(81), 102);
        assert_eq!(sizing(100).capacity_for(1_000), 1_250);
    }

    #[test]
    fn defaults() {
        let config = BloomConfig::new();
        assert_eq!(config.expected_items, 100_000);
        assert_eq!(config.false_positive_rate, 0.01);
        assert_eq!(config.rebuild_every, None);
        config.validate().unwrap();
    }

    #[test]
    fn an_unvalidated_config_does_not_panic() {
        let config = BloomConfig::new()
            .expected_items(0)
            .false_positive_rate(2.0);
        let known = KnownKeys::<String>::new(&config, None);
        known.insert("a");
        assert!(known.might_exist("a"));
        assert_eq!(known.capacity(), 1);
    }

    #[test]
    fn borrowed_forms_hash_alike() {
        let known = KnownKeys::<String>::new(&BloomConfig::new(), None);
        known.insert(&"k".to_owned());
        assert!(known.might_exist("k"));
        assert!(known.might_exist(&"k".to_owned()));
    }

    #[tokio::test(start_paused = true)]
    async fn a_dropped_rebuild_stops_collecting_inserts() {
        let known = KnownKeys::new(&BloomConfig::new(), Some(Arc::new(Never)));
        let rebuild = tokio::time::timeout(Duration::from_secs(1), known.rebuild());
        let mut rebuild = Box::pin(rebuild);
        assert!(poll_once(rebuild.as_mut()).await.is_none());
        assert!(read(&known.shared.state).pending.is_some());
        known.insert("during");
        assert!(rebuild.as_mut().await.is_err(), "timed out");
        assert!(
            read(&known.shared.state).pending.is_some(),
            "not dropped yet"
        );
        drop(rebuild);
        assert!(read(&known.shared.state).pending.is_none());
        assert_eq!(known.generation(), 0);
        assert!(
            known.shared.rebuilding.try_lock().is_ok(),
            "the rebuild lock is free"
        );
    }

    #[tokio::test]
    async fn a_rebuild_replaces_the_open_generation() {
        let source = Fixed(vec!["a".into(), "b".into()]);
        let known = KnownKeys::new(&BloomConfig::new(), Some(Arc::new(source)));
        assert!(read(&known.shared.state).current.open);
        assert_eq!(known.rebuild().await.unwrap(), 2);
        let state = read(&known.shared.state);
        assert!(!state.current.open);
        assert_eq!(state.current.len, 2);
        assert!(state.pending.is_none());
    }

    #[test]
    fn inserts_between_the_early_drain_and_the_swap_are_kept() {
        let known = KnownKeys::new(&BloomConfig::new(), Some(Arc::new(Fixed(Vec::new()))));
        let shared = &known.shared;
        let pending = PendingInserts::start(&shared.state);
        known.insert("early");
        let mut next = shared.sizing.generation(100, false);
        for fingerprint in pending.take_so_far() {
            next.add(fingerprint);
        }
        known.insert("late");
        drop(pending.swap_in(next));
        assert!(known.might_exist("early") && known.might_exist("late"));
        assert!(!known.might_exist("never"));
        assert!(read(&shared.state).pending.is_none());
    }

    /// Polls `fut` once: `Some` if it finished.
    async fn poll_once<F: std::future::Future + Unpin>(fut: F) -> Option<F::Output> {
        let mut fut = fut;
        std::future::poll_fn(|cx| {
            std::task::Poll::Ready(match std::pin::Pin::new(&mut fut).poll(cx) {
                std::task::Poll::Ready(out) => Some(out),
                std::task::Poll::Pending => None,
            })
        })
        .await
    }
}
