//! tower's retry with its own budget, shared by the criterion bench and
//! the instruction-count probe so both measure the same peer.

use std::future::Ready;
use std::sync::Arc;
use std::time::Duration;

use tower::retry::budget::{Budget, TpsBudget};

/// tower's retry with its own budget, written as tower's documentation
/// writes it (`tower::retry::budget`): deposit on success, withdraw before
/// a retry, at most 3 tries. The same work as `rampart_no_retry` (a budget
/// deposit per call), so the two compare like with like.
#[derive(Clone)]
pub(crate) struct BudgetedRetry {
    budget: Arc<TpsBudget>,
    retries_left: u32,
}

impl BudgetedRetry {
    pub(crate) fn new() -> Self {
        Self {
            // tower's defaults in spirit: 10 s window, 10/s floor, 20 %
            budget: Arc::new(TpsBudget::new(Duration::from_secs(10), 10, 0.2)),
            retries_left: 2,
        }
    }
}

impl<Req: Clone, Res, E> tower::retry::Policy<Req, Res, E> for BudgetedRetry {
    type Future = Ready<()>;

    fn retry(&mut self, _req: &mut Req, result: &mut Result<Res, E>) -> Option<Self::Future> {
        match result {
            Ok(_) => {
                self.budget.deposit();
                None
            }
            Err(_) if self.retries_left > 0 && self.budget.withdraw() => {
                self.retries_left -= 1;
                Some(std::future::ready(()))
            }
            Err(_) => None,
        }
    }

    fn clone_request(&mut self, req: &Req) -> Option<Req> {
        Some(req.clone())
    }
}
