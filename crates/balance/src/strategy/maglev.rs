//! Maglev consistent hashing (Eisenbud et al., NSDI 2016), weighted as in
//! Envoy, with optional bounded load.

use rampart_core::error::{ConfigError, validate};
use serde::Deserialize;
use xxhash_rust::xxh3::xxh3_64_with_seed;

use super::hash::{capacity, mix, validate_balance_factor, walk};
use super::shared::{SlotIds, fixed_weight, random_routable};
use super::{Endpoint, Pick, Strategy};

/// The largest lookup table accepted (Envoy's limit), a prime.
pub const MAX_TABLE_SIZE: u64 = 5_000_011;

/// Seeds of the two id hashes that make an endpoint's permutation.
const OFFSET_SEED: u64 = 0x6d61_676c_6576_0001;
const SKIP_SEED: u64 = 0x6d61_676c_6576_0002;

/// Settings of [`Maglev`] (Envoy's names).
///
/// ```
/// use rampart_balance::strategy::MaglevConfig;
///
/// let cfg: MaglevConfig = toml::from_str("table_size = 65537\nhash_balance_factor = 1.5").unwrap();
/// let maglev = cfg.build().unwrap();
/// # let _ = maglev;
/// let err = MaglevConfig::new().table_size(65536).build().unwrap_err();
/// assert_eq!(err.field(), "table_size");
/// ```
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct MaglevConfig {
    pub(crate) table_size: u64,
    pub(crate) hash_balance_factor: Option<f64>,
}

impl Default for MaglevConfig {
    fn default() -> Self {
        Self {
            table_size: 65537,
            hash_balance_factor: None,
        }
    }
}

impl MaglevConfig {
    /// The defaults: see each setter.
    pub fn new() -> Self {
        Self::default()
    }

    /// Entries of the lookup table: a prime up to 5,000,011, well above
    /// the number of endpoints (the paper suggests M ≥ 100 × N, for shares
    /// within about 1% of the weights). 4 bytes each. Defaults to 65,537.
    pub fn table_size(mut self, m: u64) -> Self {
        self.table_size = m;
        self
    }

    /// Bounded load: skip an endpoint whose pending requests would exceed
    /// `c` × the mean (c ≥ 1.0). Defaults to off.
    pub fn hash_balance_factor(mut self, c: f64) -> Self {
        self.hash_balance_factor = Some(c);
        self
    }

    /// Checks every field, naming the first one refused.
    pub fn validate(&self) -> Result<(), ConfigError> {
        validate::at_most("table_size", self.table_size, MAX_TABLE_SIZE)?;
        if !is_prime(self.table_size) {
            return Err(ConfigError::new(
                "table_size",
                format!("must be a prime number, got {}", self.table_size),
            ));
        }
        validate_balance_factor(self.hash_balance_factor)
    }

    /// The strategy, or the first field refused.
    pub fn build(&self) -> Result<Maglev, ConfigError> {
        self.validate()?;
        Ok(Maglev {
            config: self.clone(),
            ..Maglev::default()
        })
    }
}

/// Whether `n` is prime (trial division; `n` ≤ 5,000,011).
fn is_prime(n: u64) -> bool {
    if n < 2 {
        return false;
    }
    let mut d = 2;
    while d * d <= n {
        if n.is_multiple_of(d) {
            return false;
        }
        d += 1;
    }
    true
}

/// Maglev consistent hashing by [`Pick::hash`]: a pick is one lookup,
/// `table[key % M]`.
///
/// Each endpoint has a permutation of the `M` table entries, from two
/// hashes of its id (`offset = xxh3(id) mod M`, `skip = xxh3'(id) mod
/// (M − 1) + 1`, entry `j` at `offset + j·skip mod M`); the endpoints take
/// turns claiming their next free entry until the table is full. Weighted
/// as in Envoy: an endpoint of weight `w` takes a turn in `w / max weight`
/// of the rounds, so its share of the table is its share of the weight
/// (within about `N / M`). Removing one of `n` endpoints moves its keys
/// and, by the refill, a few percent of the others (the paper's "minimal
/// disruption" is near-minimal, not exact; use [`RingHash`](super::RingHash)
/// when only the removed endpoint's keys may move). Weights are the
/// configured [`Endpoint::weight`]s (slow start does not rebuild the
/// table).
///
/// When the entry's endpoint is not routable the pick walks on to the next
/// entries to the first routable endpoint; with a
/// [`hash_balance_factor`](MaglevConfig::hash_balance_factor) it also
/// passes endpoints at capacity. Without a key it picks a routable endpoint
/// at random from [`Pick::rng`]. With more endpoints than entries, some
/// get no entry and are reached only by the no-key fallback.
///
/// The table is rebuilt (O(M log M)) only when an id or configured weight
/// changes.
#[derive(Debug, Default)]
pub struct Maglev {
    config: MaglevConfig,
    ids: SlotIds,
    /// The slot owning each entry; empty while the table has no endpoint.
    table: Vec<u32>,
}

impl Maglev {
    /// A table of the default size (65,537).
    pub fn new() -> Self {
        Self::default()
    }

    /// How many entries of the table each slot owns (indexed by slot),
    /// to inspect the table's balance.
    pub fn entries_per_slot(&self) -> Vec<usize> {
        let top = self.table.iter().max().map_or(0, |&s| s as usize + 1);
        let mut counts = vec![0; top];
        for &slot in &self.table {
            counts[slot as usize] += 1;
        }
        counts
    }

    fn build_table(&mut self, endpoints: &[Option<Endpoint>]) {
        /// One endpoint's progress through its permutation.
        struct Builder {
            slot: u32,
            weight: u64,
            target: u64,
            position: u64,
            skip: u64,
        }
        let m = self.config.table_size;
        let mut builders: Vec<Builder> = endpoints
            .iter()
            .enumerate()
            .filter_map(|(slot, e)| {
                let e = e.as_ref()?;
                let id = e.id.as_bytes();
                Some(Builder {
                    slot: slot as u32,
                    weight: fixed_weight(e),
                    target: 0,
                    position: xxh3_64_with_seed(id, OFFSET_SEED) % m,
                    skip: xxh3_64_with_seed(id, SKIP_SEED) % (m - 1).max(1) + 1,
                })
            })
            .collect();
        self.table.clear();
        let Some(max_weight) = builders.iter().map(|b| b.weight).max() else {
            return;
        };
        const FREE: u32 = u32::MAX;
        let mut table = vec![FREE; m as usize];
        let mut filled = 0;
        let mut round: u64 = 0;
        while filled < m {
            for b in &mut builders {
                if filled == m {
                    break;
                }
                // A weight-w endpoint takes a turn in w/max of the rounds.
                if round * b.weight < b.target {
                    continue;
                }
                b.target += max_weight;
                // m is prime and 1 ≤ skip < m: the walk visits every entry,
                // so a free one is found while the table is not full.
                while table[b.position as usize] != FREE {
                    b.position = (b.position + b.skip) % m;
                }
                table[b.position as usize] = b.slot;
                b.position = (b.position + b.skip) % m;
                filled += 1;
            }
            round += 1;
        }
        self.table = table;
    }
}

impl Strategy for Maglev {
    fn update(&mut self, endpoints: &[Option<Endpoint>]) {
        if self.ids.sync(endpoints, |_| {}) {
            self.build_table(endpoints);
        }
    }

    fn pick(&mut self, pick: &Pick<'_>) -> Option<usize> {
        let Some(key) = pick.hash else {
            return random_routable(pick);
        };
        if self.table.is_empty() {
            return random_routable(pick);
        }
        let start = (mix(key) % self.table.len() as u64) as usize;
        let cap = self.config.hash_balance_factor.map(|c| capacity(c, pick));
        walk(&self.table, start, pick, cap)
    }
}
