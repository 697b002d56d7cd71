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

use std::fmt;
use std::sync::Arc;

use rampart_core::random::SharedRng;

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
