//! The cache's counters: atomics read by [`Handle`](crate::Handle) and the
//! same events as `metrics` counters.

use std::sync::atomic::{AtomicU64, Ordering};

use metrics::Counter;
use rampart_core::metric_name;
use rampart_core::metrics::{InstanceLabels, labels};

/// One event's count, kept for the handle and reported to `metrics`.
#[derive(Debug)]
pub(crate) struct Count {
    value: AtomicU64,
    counter: Counter,
}

impl Count {
    fn new(counter: Counter) -> Self {
        Self {
            value: AtomicU64::new(0),
            counter,
        }
    }

    #[inline]
    pub(crate) fn add(&self) {
        self.value.fetch_add(1, Ordering::Relaxed);
        self.counter.increment(1);
    }

    fn get(&self) -> u64 {
        self.value.load(Ordering::Relaxed)
    }
}

macro_rules! stats {
    ($( $(#[$doc:meta])* $field:ident => $name:literal $(, $label:expr => $value:literal)?; )*) => {
        /// Every counter of one cache.
        #[derive(Debug)]
        pub(crate) struct Stats {
            $( pub(crate) $field: Count, )*
        }

        impl Stats {
            /// Registers every handle, labelled with the instance's labels.
            pub(crate) fn new(l: &InstanceLabels) -> Self {
                Self {
                    $( $field: Count::new(metrics::counter!(
                        metric_name!("cache", $name),
                        stats!(@labels l $(, $label => $value)?)
                    )), )*
                }
            }

            pub(crate) fn snapshot(&self) -> Snapshot {
                Snapshot { $( $field: self.$field.get(), )* }
            }
        }

        /// A cache's counters at one moment, since it was built.
        #[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
        #[non_exhaustive]
        pub struct Snapshot {
            $( $(#[$doc])* pub $field: u64, )*
        }
    };
    (@labels $l:ident) => { $l.to_vec() };
    (@labels $l:ident, $label:expr => $value:literal) => { $l.with($label, $value) };
}

stats! {
    /// Requests answered from a fresh entry (negative ones excluded).
    hits => "hits_total";
    /// Requests answered from a fresh "not found" entry.
    negative_hits => "negative_hits_total";
    /// Requests that found no servable entry (each one waits for a load,
    /// its own or another request's).
    misses => "misses_total";
    /// Requests answered with a stale entry while it was refreshed.
    stale_served => "stale_served_total";
    /// Requests answered "absent" because the bloom filter of known keys
    /// rejected their key (the upstream was not called).
    bloom_rejected => "bloom_rejected_total";
    /// Requests that bypassed the cache (the key function said `None`).
    bypassed => "bypassed_total";
    /// Loads from the upstream on a miss (one per key however many
    /// requests waited for it).
    loads => "loads_total";
    /// Loads on a miss that failed (the error went to every waiter and was
    /// not cached).
    load_failures => "load_failures_total";
    /// Background refreshes started (stale-while-revalidate or early).
    refreshes => "refreshes_total";
    /// Background refreshes that failed (the old entry stays).
    refresh_failures => "refresh_failures_total";
    /// Values not cached because they weighed more than `max_entry_weight`.
    oversized => "not_stored_total", labels::REASON => "oversized";
    /// Responses not cached because they said so (`Lifetime::DoNotCache`)
    /// or had no value (`to_value` gave `None`).
    uncacheable => "not_stored_total", labels::REASON => "uncacheable";
    /// Entries evicted after their lifetime.
    evicted_expired => "evictions_total", labels::REASON => "expired";
    /// Entries evicted to stay within `max_capacity`.
    evicted_size => "evictions_total", labels::REASON => "size";
    /// Entries dropped by an invalidation, local or broadcast.
    invalidations => "invalidations_total";
    /// Misses answered by the remote tier.
    remote_hits => "remote_hits_total";
    /// Misses the remote tier had no entry for.
    remote_misses => "remote_misses_total";
    /// Remote calls that failed (treated as misses or skipped).
    remote_errors => "remote_errors_total", labels::REASON => "store";
    /// Remote values that did not decode (treated as misses).
    remote_decode_errors => "remote_errors_total", labels::REASON => "decode";
}
