//! The conformance suite on `MemoryTxStore`.

mod common;

use common::Fixture;
use rampart_transaction::store::MemoryTxStore;

async fn store(_test: &'static str) -> Fixture {
    Fixture::new(MemoryTxStore::new())
}

conformance!(super::store);
