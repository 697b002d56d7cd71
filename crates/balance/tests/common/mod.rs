//! A test-side endpoint table: owned endpoints in slots, viewed as the
//! `Endpoint`s a strategy sees.

#![allow(dead_code, unreachable_pub)]

use rampart_balance::strategy::{Endpoint, Loads, Pick, Strategy};
use rampart_core::random::SharedRng;

/// One endpoint of a test table.
#[derive(Debug, Clone)]
pub struct Ep {
    pub id: String,
    pub weight: u32,
    pub effective_weight: f64,
    pub pending: u32,
    pub cost: f64,
}

impl Ep {
    pub fn new(id: impl Into<String>, weight: u32) -> Self {
        Self {
            id: id.into(),
            weight,
            effective_weight: f64::from(weight),
            pending: 0,
            cost: 0.0,
        }
    }
}

/// A table of slots, some free.
#[derive(Debug, Clone, Default)]
pub struct Table {
    pub slots: Vec<Option<Ep>>,
}

impl Table {
    /// Endpoints `e0`, `e1`, ... with these weights, in slots 0, 1, ...
    pub fn weighted(weights: &[u32]) -> Self {
        Self {
            slots: weights
                .iter()
                .enumerate()
                .map(|(i, &w)| Some(Ep::new(format!("e{i}"), w)))
                .collect(),
        }
    }

    /// `n` endpoints of weight 1.
    pub fn equal(n: usize) -> Self {
        Self::weighted(&vec![1; n])
    }

    pub fn view(&self) -> Vec<Option<Endpoint>> {
        self.slots
            .iter()
            .map(|s| {
                s.as_ref().map(|e| Endpoint {
                    id: e.id.as_str().into(),
                    weight: e.weight,
                    effective_weight: e.effective_weight,
                })
            })
            .collect()
    }

    /// Every occupied slot.
    pub fn occupied(&self) -> Vec<usize> {
        (0..self.slots.len())
            .filter(|&i| self.slots[i].is_some())
            .collect()
    }

    pub fn ep(&mut self, slot: usize) -> &mut Ep {
        self.slots[slot].as_mut().expect("occupied slot")
    }
}

/// The table's own pending counts and costs.
impl Loads for Table {
    fn pending(&self, slot: usize) -> u32 {
        self.slots
            .get(slot)
            .and_then(Option::as_ref)
            .map_or(0, |e| e.pending)
    }

    fn cost(&self, slot: usize) -> f64 {
        self.slots
            .get(slot)
            .and_then(Option::as_ref)
            .map_or(0.0, |e| e.cost)
    }
}

/// `strategy.update` with the table.
pub fn update(strategy: &mut dyn Strategy, table: &Table) {
    strategy.update(&table.view());
}

/// One pick over `table` with `routable`, key `hash`.
pub fn pick(
    strategy: &mut dyn Strategy,
    table: &Table,
    routable: &[usize],
    hash: Option<u64>,
    rng: &SharedRng,
) -> Option<usize> {
    let view = table.view();
    strategy.pick(
        &Pick::new(&view, routable, rng)
            .with_hash(hash)
            .with_loads(table),
    )
}

/// `n` picks over the whole occupied table without a key.
pub fn picks(strategy: &mut dyn Strategy, table: &Table, n: usize, rng: &SharedRng) -> Vec<usize> {
    let view = table.view();
    let routable = table.occupied();
    let pick = Pick::new(&view, &routable, rng).with_loads(table);
    (0..n)
        .map(|_| strategy.pick(&pick).expect("a routable slot"))
        .collect()
}

/// How often each slot occurs in `picks`.
pub fn counts(picks: &[usize], slots: usize) -> Vec<usize> {
    let mut c = vec![0; slots];
    for &p in picks {
        c[p] += 1;
    }
    c
}
