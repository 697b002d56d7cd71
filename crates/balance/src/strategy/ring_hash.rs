//! Consistent hashing on a ring of virtual nodes (Envoy's `RING_HASH`,
//! Karger et al.), weight-aware, with optional bounded load.

use rampart_core::error::{ConfigError, validate};
use serde::Deserialize;
use xxhash_rust::xxh3::xxh3_64_with_seed;

use super::hash::{capacity, mix, validate_balance_factor, walk};
use super::shared::{SlotIds, fixed_weight, random_routable};
use super::{Endpoint, Pick, Strategy};

/// The largest ring accepted (Envoy's limit): 8 Mi entries.
pub const MAX_RING_SIZE: u64 = 8 * 1024 * 1024;

/// Settings of [`RingHash`] (Envoy's names).
///
/// ```
/// use rampart_balance::strategy::RingHashConfig;
///
/// let cfg: RingHashConfig = toml::from_str(r#"
///     minimum_ring_size = 4096
///     hash_balance_factor = 1.25
/// "#).unwrap();
/// let ring = cfg.build().unwrap();
/// # let _ = ring;
/// assert!(RingHashConfig::new().hash_balance_factor(0.5).build().is_err());
/// ```
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RingHashConfig {
    pub(crate) minimum_ring_size: u64,
    pub(crate) maximum_ring_size: u64,
    pub(crate) hash_balance_factor: Option<f64>,
}

impl Default for RingHashConfig {
    fn default() -> Self {
        Self {
            minimum_ring_size: 1024,
            maximum_ring_size: MAX_RING_SIZE,
            hash_balance_factor: None,
        }
    }
}

impl RingHashConfig {
    /// The defaults: see each setter.
    pub fn new() -> Self {
        Self::default()
    }

    /// The ring holds at least this many virtual nodes (1 ..= the maximum);
    /// more nodes spread keys more evenly and cost memory (12 bytes each).
    /// Defaults to 1024.
    pub fn minimum_ring_size(mut self, n: u64) -> Self {
        self.minimum_ring_size = n;
        self
    }

    /// The ring holds at most this many virtual nodes, but always at least
    /// one per endpoint (the minimum ..= 8,388,608). Defaults to 8,388,608.
    pub fn maximum_ring_size(mut self, n: u64) -> Self {
        self.maximum_ring_size = n;
        self
    }

    /// Bounded load: skip an endpoint whose pending requests would exceed
    /// `c` × the mean (c ≥ 1.0; 1.25 is a common choice). Defaults to off.
    pub fn hash_balance_factor(mut self, c: f64) -> Self {
        self.hash_balance_factor = Some(c);
        self
    }

    /// Checks every field, naming the first one refused.
    pub fn validate(&self) -> Result<(), ConfigError> {
        validate::non_zero("minimum_ring_size", self.minimum_ring_size)?;
        validate::at_most("minimum_ring_size", self.minimum_ring_size, MAX_RING_SIZE)?;
        validate::at_most("maximum_ring_size", self.maximum_ring_size, MAX_RING_SIZE)?;
        if self.maximum_ring_size < self.minimum_ring_size {
            return Err(ConfigError::new(
                "maximum_ring_size",
                format!(
                    "must be at least minimum_ring_size ({}), got {}",
                    self.minimum_ring_size, self.maximum_ring_size
                ),
            ));
        }
        validate_balance_factor(self.hash_balance_factor)
    }

    /// The strategy, or the first field refused.
    pub fn build(&self) -> Result<RingHash, ConfigError> {
        self.validate()?;
        Ok(RingHash {
            config: self.clone(),
            ..RingHash::default()
        })
    }
}

/// Consistent hashing by [`Pick::hash`] on a ring of virtual nodes.
///
/// Each endpoint owns `weight × k` points on a 64-bit ring, the `i`-th at
/// `xxh3(id, seed = i)`, where `k` (virtual nodes per unit of weight) is
/// the power of two, possibly below 1, that makes the ring at least
/// [`minimum_ring_size`](RingHashConfig::minimum_ring_size) and under
/// twice that; it is scaled down to stay within
/// [`maximum_ring_size`](RingHashConfig::maximum_ring_size) (at least one
/// point per endpoint). An endpoint's points depend only on its id and
/// `k`, and `k` only moves when the total weight crosses a power of two
/// relative to the minimum, so adding or removing one of `n` equal
/// endpoints remaps only the keys it owns, about `1/n`. Weights are the
/// configured [`Endpoint::weight`]s: slow start does not reshape the ring
/// (that would remap keys at every step of the ramp).
///
/// A pick mixes the key, finds the first point at or after it, and walks
/// clockwise to the first routable endpoint: a key whose endpoint is
/// ejected goes to its ring successor and comes back when it recovers.
/// With a [`hash_balance_factor`](RingHashConfig::hash_balance_factor) the
/// walk also passes endpoints at capacity (see the crate's guide).
///
/// Without a key ([`Pick::hash`] is `None`) it picks a routable endpoint
/// at random from [`Pick::rng`]; it never fails while one is routable.
///
/// The ring is rebuilt (O(size · log size)) only when an id or configured
/// weight changes.
#[derive(Debug, Default)]
pub struct RingHash {
    config: RingHashConfig,
    ids: SlotIds,
    /// Point positions, ascending.
    hashes: Vec<u64>,
    /// The slot owning each point, parallel to `hashes`.
    slots: Vec<u32>,
}

impl RingHash {
    /// A ring with the default settings.
    pub fn new() -> Self {
        Self::default()
    }

    /// The number of virtual nodes on the ring now.
    pub fn ring_size(&self) -> usize {
        self.hashes.len()
    }

    /// The virtual nodes each occupied slot gets, by the rule in the type's
    /// docs.
    fn vnodes(&self, endpoints: &[Option<Endpoint<'_>>]) -> Vec<(usize, u64)> {
        let weights: Vec<(usize, u64)> = endpoints
            .iter()
            .enumerate()
            .filter_map(|(slot, e)| e.as_ref().map(|e| (slot, fixed_weight(e))))
            .collect();
        let total: u64 = weights.iter().map(|&(_, w)| w).sum();
        if total == 0 {
            return weights;
        }
        let (min, max) = (
            self.config.minimum_ring_size.max(1),
            self.config.maximum_ring_size,
        );
        let mut counts: Vec<(usize, u64)> = if total >= min {
            // k = 2^-s: the largest s with total / 2^s still ≥ min.
            let mut s = 0;
            while s < 63 && (total >> (s + 1)) >= min {
                s += 1;
            }
            let round = (1u64 << s) - 1;
            weights
                .iter()
                .map(|&(slot, w)| (slot, w.saturating_add(round) >> s))
                .collect()
        } else {
            // k = 2^e: the smallest e with total · 2^e ≥ min.
            let mut e = 0;
            while (total << e) < min {
                e += 1;
            }
            weights.iter().map(|&(slot, w)| (slot, w << e)).collect()
        };
        let size: u64 = counts.iter().map(|&(_, c)| c).sum();
        if size > max {
            for (_, c) in &mut counts {
                *c = ((u128::from(*c) * u128::from(max) / u128::from(size)) as u64).max(1);
            }
        }
        counts
    }
}

impl Strategy for RingHash {
    fn update(&mut self, endpoints: &[Option<Endpoint<'_>>]) {
        if !self.ids.sync(endpoints, |_| {}) {
            return;
        }
        let counts = self.vnodes(endpoints);
        let size: u64 = counts.iter().map(|&(_, c)| c).sum();
        let mut ring: Vec<(u64, u32)> = Vec::with_capacity(size as usize);
        for (slot, count) in counts {
            let Some(e) = endpoints[slot].as_ref() else {
                continue;
            };
            for i in 0..count {
                ring.push((xxh3_64_with_seed(e.id.as_bytes(), i), slot as u32));
            }
        }
        ring.sort_unstable();
        self.hashes = ring.iter().map(|&(h, _)| h).collect();
        self.slots = ring.iter().map(|&(_, s)| s).collect();
    }

    fn pick(&mut self, pick: &Pick<'_, '_>) -> Option<usize> {
        let Some(key) = pick.hash else {
            return random_routable(pick);
        };
        let key = mix(key);
        let start = self.hashes.partition_point(|&h| h < key);
        let cap = self.config.hash_balance_factor.map(|c| capacity(c, pick));
        walk(&self.slots, start, pick, cap)
    }
}
