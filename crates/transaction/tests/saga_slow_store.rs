//! A saga whose store suspends on every write (as a real database does)
//! runs its parallel steps to the end. Regression: the coordinator once
//! read its record through the lock the running steps were queued for, and
//! waited forever as soon as a write took real time.

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::crash_suite::{config, saga};
use rampart_transaction::coordinator::Coordinator;
use rampart_transaction::model::TxState;
use rampart_transaction::store::MemoryTxStore;
use rampart_transaction::testing::{EffectLedger, FaultyStore};
use serde_json::json;

#[tokio::test(start_paused = true)]
async fn parallel_steps_finish_when_every_write_suspends() {
    let ledger = EffectLedger::new();
    // every write waits a millisecond, as a database's would
    let store =
        FaultyStore::new(Arc::new(MemoryTxStore::new())).delay_writes(Duration::from_millis(1));
    let coordinator = Coordinator::new(Arc::new(store), config())
        .unwrap()
        .participant("p", ledger.participant())
        .participant("q", ledger.participant());
    let outcome = tokio::time::timeout(
        Duration::from_secs(60),
        coordinator.start(&saga(None), json!({ "order": 1 })),
    )
    .await
    .expect("the saga finishes")
    .unwrap();
    assert_eq!(outcome.state, TxState::Committed);
    assert_eq!(outcome.outputs.len(), 4);
}
