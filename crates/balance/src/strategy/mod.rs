//! Load-balancing strategies: how one endpoint is picked for a request.
//!
//! A [`Strategy`] sees the balancer's endpoint table as [`Endpoint`] views,
//! each in a stable *slot* (an index that an endpoint keeps for as long as
//! it is in the set; a removed endpoint's slot may be reused by a later
//! one). The balancer calls [`Strategy::update`] whenever the set or a
//! weight changes, and [`Strategy::pick`] for every request with the slots
//! that may take it now ([`Pick::routable`]: ready, not ejected; every
//! ready slot under a panic threshold). A strategy returns one of those
//! slots, or `None` only when `routable` is empty.
//!
//! Loads change with every request, so they are not part of the table: a
//! strategy that balances on load reads the few it needs through
//! [`Pick::pending`] and [`Pick::cost`].
//!
//! Randomness comes from the [`Pick::rng`] the balancer owns, seeded from
//! its configuration, so a test that fixes the seed repeats exactly.
//!
//! The strategies, each its own type (and [`StrategyConfig`] to choose one
//! from configuration):
//!
//! | strategy | picks | settings | state |
//! |---|---|---|---|
//! | [`RoundRobin`] | each routable slot in turn | none | the last slot picked |
//! | [`SmoothWeightedRoundRobin`] | nginx's smooth weighted rotation | none | a `current` per slot |
//! | [`WeightedRandom`] | at random, by effective weight | none | none |
//! | [`LeastRequest`] | fewest pending (Envoy: n choices, or weight / (pending + 1)^bias) | [`LeastRequestConfig`] | per slot |
//! | [`PowerOfTwoChoices`] | the less loaded of two random, by pending or peak EWMA | [`PowerOfTwoChoicesConfig`] | none |
//! | [`RingHash`] | by request key on a ring of virtual nodes | [`RingHashConfig`] | the ring |
//! | [`Maglev`] | by request key in a Maglev table | [`MaglevConfig`] | the table |
//!
//! Every strategy returns a routable slot whenever one exists, whatever the
//! weights, loads or key say: a hash strategy without a key picks at
//! random among the routable (documented fallback), a table the strategy
//! has not seen yet is picked from all the same.
//!
//! ```
//! use rampart_balance::strategy::{Endpoint, Pick, StrategyConfig};
//! use rampart_core::random::SharedRng;
//!
//! let cfg: StrategyConfig = toml::from_str(r#"kind = "smooth_weighted_round_robin""#).unwrap();
//! let mut strategy = cfg.build().unwrap();
//! let ep = |id, w: u32| Some(Endpoint::new(id, w));
//! let table = [ep("a", 2), None, ep("b", 1)];
//! strategy.update(&table);
//! let rng = SharedRng::new(7);
//! let pick = Pick::new(&table, &[0, 2], &rng);
//! let picks: Vec<_> = (0..3).map(|_| strategy.pick(&pick).unwrap()).collect();
//! assert_eq!(picks, [0, 2, 0]);
//! ```

use std::fmt;
use std::sync::Arc;

use rampart_core::random::SharedRng;

mod config;
mod hash;
mod least_request;
mod maglev;
mod p2c;
mod ring_hash;
mod round_robin;
mod shared;
mod smooth_weighted;
mod weighted_random;

pub use config::StrategyConfig;
pub use least_request::{LeastRequest, LeastRequestConfig};
pub use maglev::{MAX_TABLE_SIZE, Maglev, MaglevConfig};
pub use p2c::{Load, PowerOfTwoChoices, PowerOfTwoChoicesConfig};
pub use ring_hash::{MAX_RING_SIZE, RingHash, RingHashConfig};
pub use round_robin::RoundRobin;
pub use smooth_weighted::SmoothWeightedRoundRobin;
pub use weighted_random::WeightedRandom;

/// What a strategy knows of one endpoint of the table.
#[derive(Debug, Clone, PartialEq)]
pub struct Endpoint {
    /// The endpoint's id (the discovery key).
    pub id: Arc<str>,
    /// The configured weight, at least 1 (the balancer turns a weight of 0
    /// into 1 and says so; weights are never 0 here).
    pub weight: u32,
    /// The weight to balance by now: `weight` scaled by slow start, in
    /// `(0, weight]`.
    pub effective_weight: f64,
}

impl Endpoint {
    /// An endpoint of `weight` (at least 1) at its full weight.
    pub fn new(id: impl Into<Arc<str>>, weight: u32) -> Self {
        let weight = weight.max(1);
        Self {
            id: id.into(),
            weight,
            effective_weight: f64::from(weight),
        }
    }
}

/// The current load of the endpoints, read at pick time.
pub trait Loads {
    /// Requests sent to the endpoint in `slot` and not yet answered.
    fn pending(&self, slot: usize) -> u32;

    /// The endpoint's peak-EWMA cost: its latency estimate in nanoseconds
    /// (failure penalties included) times `pending + 1`.
    fn cost(&self, slot: usize) -> f64;
}

/// One request's pick.
pub struct Pick<'a> {
    /// Every slot of the table; `None` for a free slot.
    pub endpoints: &'a [Option<Endpoint>],
    /// The slots that may take this request, in ascending order; never
    /// free slots.
    pub routable: &'a [usize],
    /// The request's hash key, when the balancer's key extractor found one.
    pub hash: Option<u64>,
    /// The balancer's random number generator.
    pub rng: &'a SharedRng,
    /// The endpoints' loads.
    pub loads: &'a dyn Loads,
}

/// Loads of a table where nothing is in flight and nothing was measured.
#[derive(Debug, Clone, Copy, Default)]
pub struct Idle;

impl Loads for Idle {
    fn pending(&self, _: usize) -> u32 {
        0
    }

    fn cost(&self, _: usize) -> f64 {
        0.0
    }
}

impl<'a> Pick<'a> {
    /// A pick among `routable` slots of `endpoints`, with no hash key and
    /// [`Idle`] loads.
    pub fn new(
        endpoints: &'a [Option<Endpoint>],
        routable: &'a [usize],
        rng: &'a SharedRng,
    ) -> Self {
        Self {
            endpoints,
            routable,
            hash: None,
            rng,
            loads: &Idle,
        }
    }

    /// The same pick with the request's hash key.
    pub fn with_hash(mut self, hash: Option<u64>) -> Self {
        self.hash = hash;
        self
    }

    /// The same pick with these loads.
    pub fn with_loads(mut self, loads: &'a dyn Loads) -> Self {
        self.loads = loads;
        self
    }
}

impl Pick<'_> {
    /// Requests in flight to the endpoint in `slot`.
    pub fn pending(&self, slot: usize) -> u32 {
        self.loads.pending(slot)
    }

    /// The peak-EWMA cost of the endpoint in `slot` (see [`Loads::cost`]).
    pub fn cost(&self, slot: usize) -> f64 {
        self.loads.cost(slot)
    }
}

impl fmt::Debug for Pick<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Pick")
            .field("endpoints", &self.endpoints)
            .field("routable", &self.routable)
            .field("hash", &self.hash)
            .finish_non_exhaustive()
    }
}

/// A load-balancing algorithm. See the [module docs](self).
pub trait Strategy: Send + fmt::Debug {
    /// The endpoint table changed (an endpoint was added, removed, or its
    /// weight or effective weight changed). `endpoints` is the whole table
    /// by slot. Called once before the first pick.
    fn update(&mut self, endpoints: &[Option<Endpoint>]);

    /// Picks one of `pick.routable`, or `None` when it is empty.
    fn pick(&mut self, pick: &Pick<'_>) -> Option<usize>;
}

/// A boxed strategy (what [`StrategyConfig::build`] returns) is one.
impl Strategy for Box<dyn Strategy> {
    fn update(&mut self, endpoints: &[Option<Endpoint>]) {
        (**self).update(endpoints);
    }

    fn pick(&mut self, pick: &Pick<'_>) -> Option<usize> {
        (**self).pick(pick)
    }
}
