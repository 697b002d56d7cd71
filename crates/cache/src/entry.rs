//! One cached value with its own lifetimes on tokio's clock, the lifetime
//! a value may ask for ([`Lifetime`]), and the small random source of
//! jitter and early refresh.
//!
//! Freshness is decided by the entry itself, on tokio's clock (so that
//! paused-time tests hold); moka's own expiry, on its wall clock, only
//! bounds memory: it drops an entry once the entry can no longer be served
//! even stale.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;
#[allow(clippy::disallowed_types)]
use std::time::Instant as StdInstant;

use rampart_core::clock::{Origin, nanos};

/// How long a value may be cached, as decided by
/// [`CacheBuilder::lifetime`](crate::CacheBuilder::lifetime) (the HTTP
/// adapter maps `Cache-Control` to it).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lifetime {
    /// The configured [`ttl`](crate::CacheConfig::ttl), with jitter.
    Default,
    /// Exactly this long (no jitter: the value said so).
    For(Duration),
    /// Exactly this long, and never served stale afterwards, even with
    /// [`stale_while_revalidate`](crate::CacheConfig::stale_while_revalidate)
    /// (an HTTP response with `must-revalidate` or `s-maxage`).
    ForNoStale(Duration),
    /// Not at all: the value is passed on but not stored.
    DoNotCache,
}

/// Where an entry stands at one instant.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum State {
    /// Within its TTL and not idle.
    Fresh,
    /// Past its TTL, within the stale-while-revalidate window.
    Stale,
    /// Not servable.
    Expired,
}

/// A cached value and its lifetimes, as nanoseconds since the cache's
/// origin.
#[derive(Debug)]
pub(crate) struct Entry<V> {
    pub(crate) value: V,
    /// A "not found" answer.
    pub(crate) negative: bool,
    /// Fresh before this.
    expires_at: u64,
    /// Servable stale before this (`expires_at` without a SWR window).
    stale_until: u64,
    /// Last read, for the idle timeout.
    last_access: AtomicU64,
    /// How long the load took (XFetch's delta).
    pub(crate) load_nanos: u64,
    /// The weight the weigher gave it (1 without a weigher).
    pub(crate) weight: u32,
    /// A background refresh of this entry is running.
    refreshing: AtomicBool,
}

impl<V> Entry<V> {
    pub(crate) fn new(
        value: V,
        negative: bool,
        now: u64,
        ttl: Duration,
        swr: Option<Duration>,
        load_nanos: u64,
        weight: u32,
    ) -> Self {
        let expires_at = now.saturating_add(nanos(ttl));
        Self {
            value,
            negative,
            expires_at,
            stale_until: expires_at.saturating_add(swr.map_or(0, nanos)),
            last_access: AtomicU64::new(now),
            load_nanos,
            weight,
            refreshing: AtomicBool::new(false),
        }
    }

    /// Where the entry stands at `now`, given the idle timeout.
    pub(crate) fn state(&self, now: u64, tti: Option<u64>) -> State {
        if let Some(tti) = tti
            && now >= self.last_access.load(Ordering::Relaxed).saturating_add(tti)
        {
            return State::Expired;
        }
        if now < self.expires_at {
            State::Fresh
        } else if now < self.stale_until {
            State::Stale
        } else {
            State::Expired
        }
    }

    /// Records a read at `now` (for the idle timeout).
    pub(crate) fn touch(&self, now: u64) {
        self.last_access.fetch_max(now, Ordering::Relaxed);
    }

    pub(crate) fn expires_at(&self) -> u64 {
        self.expires_at
    }

    /// Nanoseconds from `now` until the entry cannot be served any more.
    pub(crate) fn servable_for(&self, now: u64) -> u64 {
        self.stale_until.saturating_sub(now)
    }

    /// Claims the entry's one background refresh; false if one runs.
    pub(crate) fn claim_refresh(&self) -> bool {
        !self.refreshing.swap(true, Ordering::AcqRel)
    }

    /// A failed refresh lets the next reader try again.
    pub(crate) fn release_refresh(&self) {
        self.refreshing.store(false, Ordering::Release);
    }
}

/// moka's expiry for entries: drop an entry when it can no longer be
/// served (its TTL plus the stale window), or after the idle timeout
/// without reads, whichever comes first. Only a memory bound: freshness
/// is [`Entry::state`]'s.
pub(crate) struct MemoryBound {
    pub(crate) origin: Origin,
    pub(crate) tti: Option<Duration>,
}

impl MemoryBound {
    fn until<V>(&self, entry: &Entry<V>) -> Duration {
        let left = Duration::from_nanos(entry.servable_for(self.origin.nanos()));
        self.tti.map_or(left, |tti| left.min(tti))
    }
}

// moka's trait hands us its wall-clock instants; they are ignored.
#[allow(clippy::disallowed_types)]
impl<K, V> moka::Expiry<K, std::sync::Arc<Entry<V>>> for MemoryBound {
    fn expire_after_create(
        &self,
        _: &K,
        entry: &std::sync::Arc<Entry<V>>,
        _: StdInstant,
    ) -> Option<Duration> {
        Some(self.until(entry))
    }

    fn expire_after_read(
        &self,
        _: &K,
        entry: &std::sync::Arc<Entry<V>>,
        _: StdInstant,
        left: Option<Duration>,
        _: StdInstant,
    ) -> Option<Duration> {
        match self.tti {
            Some(_) => Some(self.until(entry)),
            None => left,
        }
    }

    fn expire_after_update(
        &self,
        _: &K,
        entry: &std::sync::Arc<Entry<V>>,
        _: StdInstant,
        _: Option<Duration>,
    ) -> Option<Duration> {
        Some(self.until(entry))
    }
}

/// A lock-free splitmix64 stream: cheap, seeded, repeatable. Not for
/// secrets.
/// `ttl` spread uniformly over `ttl × (1 ± jitter)` by `u` in `(0, 1]`.
pub(crate) fn jittered(ttl: Duration, jitter: f64, u: f64) -> Duration {
    if jitter == 0.0 {
        return ttl;
    }
    let factor = 1.0 + jitter * (2.0 * u - 1.0);
    ttl.mul_f64(factor.max(0.0))
}

/// XFetch: refresh now if `now + delta × beta × -ln(u)` reaches the expiry.
pub(crate) fn refresh_early(now: u64, expires_at: u64, delta: u64, beta: f64, u: f64) -> bool {
    let gap = delta as f64 * beta * -u.ln();
    now as f64 + gap >= expires_at as f64
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use rampart_core::random::SharedRng;

    proptest! {
        /// Jitter stays within `ttl × (1 ± jitter)`.
        #[test]
        fn jitter_stays_in_bounds(ttl_ms in 1u64..10_000_000, jitter in 0.0f64..1.0, seed in any::<u64>()) {
            let ttl = Duration::from_millis(ttl_ms);
            let random = SharedRng::new(seed);
            for _ in 0..16 {
                let d = jittered(ttl, jitter, random.unit()).as_secs_f64();
                let (lo, hi) = (ttl.as_secs_f64() * (1.0 - jitter), ttl.as_secs_f64() * (1.0 + jitter));
                prop_assert!(d >= lo - 1e-6 && d <= hi + 1e-6, "{d} not in {lo}..={hi}");
            }
        }

        /// Unit draws lie in (0, 1].
        #[test]
        fn unit_is_in_range(seed in any::<u64>()) {
            let random = SharedRng::new(seed);
            for _ in 0..64 {
                let u = random.unit();
                prop_assert!(u > 0.0 && u <= 1.0);
            }
        }
    }

    #[test]
    fn jitter_spreads_over_the_whole_range() {
        let random = SharedRng::new(7);
        let ttl = Duration::from_secs(100);
        let draws: Vec<f64> = (0..1000)
            .map(|_| jittered(ttl, 0.2, random.unit()).as_secs_f64())
            .collect();
        let min = draws.iter().copied().fold(f64::MAX, f64::min);
        let max = draws.iter().copied().fold(0.0, f64::max);
        assert!(min < 82.0 && max > 118.0, "{min}..{max}");
    }

    #[test]
    fn xfetch_refreshes_more_often_near_expiry() {
        let random = SharedRng::new(3);
        let count = |now| {
            (0..10_000)
                .filter(|_| refresh_early(now, 1_000, 100, 1.0, random.unit()))
                .count()
        };
        let (far, near) = (count(500), count(950));
        assert!(far < near, "{far} >= {near}");
        assert!(count(1_000) == 10_000);
    }

    #[test]
    fn states_follow_ttl_window_and_idle() {
        let e = Entry::new(
            (),
            false,
            0,
            Duration::from_nanos(100),
            Some(Duration::from_nanos(50)),
            0,
            1,
        );
        assert_eq!(e.state(99, None), State::Fresh);
        assert_eq!(e.state(100, None), State::Stale);
        assert_eq!(e.state(150, None), State::Expired);
        assert_eq!(e.state(20, Some(20)), State::Expired);
        e.touch(10);
        assert_eq!(e.state(20, Some(20)), State::Fresh);
        assert!(e.claim_refresh());
        assert!(!e.claim_refresh());
        e.release_refresh();
        assert!(e.claim_refresh());
    }
}
