//! Consistent hashing on a ring of virtual nodes (Envoy's `RING_HASH`,
//! Karger et al.), weight-aware, with optional bounded load.

use rampart_core::error::{ConfigError, validate};
use rampart_core::random::splitmix64;
use serde::Deserialize;
use xxhash_rust::xxh3::xxh3_64;

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
/// Each endpoint owns points on a 64-bit ring in proportion to its weight,
/// the `i`-th at `splitmix64(xxh3(id) ^ splitmix64(i))`: the heaviest endpoint gets
/// [`minimum_ring_size`](RingHashConfig::minimum_ring_size) points, every
/// other `ceil(weight / heaviest × minimum_ring_size)`, so the ring holds
/// at least the minimum; when the total would pass
/// [`maximum_ring_size`](RingHashConfig::maximum_ring_size) every count is
/// scaled down to fit (at least one point each). Weights are the
/// configured [`Endpoint::weight`]s: slow start does not reshape the ring
/// (that would remap keys at every step of the ramp).
///
/// An endpoint's points depend only on its id, its weight and the heaviest
/// weight, never on how many endpoints there are, so removing one of `n`
/// endpoints moves exactly its own keys (about `1/n`) and adding one takes
/// keys only for itself. Differences from Envoy's `RING_HASH`: Envoy sizes
/// the whole ring to `minimum_ring_size` and shares it out, so every
/// change of the set rescales every endpoint's points and moves keys
/// between endpoints that stay (at 64 endpoints and the default minimum,
/// one removal moves about 10% of keys instead of 1.6%), and each endpoint
/// gets only `minimum / n` points (uneven shares). The price here is a
/// larger ring: `n × minimum_ring_size` points with equal weights (12
/// bytes each; 64 endpoints, 768 KiB), within the maximum. Changing the
/// heaviest weight, or a ring at its maximum, rescales as Envoy does.
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

    /// The points each occupied slot gets, by the rule in the type's docs.
    fn vnodes(&self, endpoints: &[Option<Endpoint>]) -> Vec<(usize, u64)> {
        let weights: Vec<(usize, u64)> = endpoints
            .iter()
            .enumerate()
            .filter_map(|(slot, e)| e.as_ref().map(|e| (slot, fixed_weight(e))))
            .collect();
        let Some(heaviest) = weights.iter().map(|&(_, w)| w).max() else {
            return weights;
        };
        let per_heaviest = u128::from(self.config.minimum_ring_size.max(1));
        let mut counts: Vec<(usize, u64)> = weights
            .iter()
            .map(|&(slot, w)| {
                let n = (u128::from(w) * per_heaviest).div_ceil(u128::from(heaviest));
                (slot, n as u64)
            })
            .collect();
        let size: u64 = counts.iter().map(|&(_, c)| c).sum();
        let max = self.config.maximum_ring_size.max(1);
        if size > max {
            for (_, c) in &mut counts {
                *c = ((u128::from(*c) * u128::from(max) / u128::from(size)) as u64).max(1);
            }
        }
        counts
    }
}

impl Strategy for RingHash {
    fn update(&mut self, endpoints: &[Option<Endpoint>]) {
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
            // Point i at splitmix(xxh3(id) ^ splitmix(i)): seeding xxh3 with
            // i directly would collide short ids ("e10", "e11") whose
            // seeds differ by a little.
            let id = xxh3_64(e.id.as_bytes());
            for i in 0..count {
                ring.push((splitmix64(id ^ splitmix64(i)), slot as u32));
            }
        }
        ring.sort_unstable();
        self.hashes = ring.iter().map(|&(h, _)| h).collect();
        self.slots = ring.iter().map(|&(_, s)| s).collect();
    }

    fn pick(&mut self, pick: &Pick<'_>) -> Option<usize> {
        let Some(key) = pick.hash else {
            return random_routable(pick);
        };
        let key = mix(key);
        let start = self.hashes.partition_point(|&h| h < key);
        let cap = self.config.hash_balance_factor.map(|c| capacity(c, pick));
        walk(&self.slots, start, pick, cap)
    }
}
