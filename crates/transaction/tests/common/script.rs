//! A scripted participant for the behaviour tests (tests/saga.rs,
//! tests/tcc.rs, tests/two_phase.rs): records every call and answers as a
//! closure says.
#![allow(dead_code)]

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rampart_retry::Backoff;
use rampart_transaction::coordinator::{Coordinator, CoordinatorConfig};
use rampart_transaction::participant::{BranchCall, BranchError, Participant, participant};
use rampart_transaction::store::{MemoryTxStore, TxStore};
use serde_json::{Value, json};
use tokio::time::Instant;

pub(crate) type Behaviour =
    dyn Fn(&BranchCall, u32) -> (Duration, Result<Value, BranchError>) + Send + Sync;

/// Records every call (`branch:op`, start and end on tokio's clock) and
/// answers as `behave(call, nth call of this branch:op)` says.
#[derive(Clone)]
pub(crate) struct Script {
    log: Arc<Mutex<Vec<(String, Instant, Instant)>>>,
    counts: Arc<Mutex<HashMap<String, u32>>>,
    behave: Arc<Behaviour>,
}

impl Script {
    pub(crate) fn new(
        behave: impl Fn(&BranchCall, u32) -> (Duration, Result<Value, BranchError>)
        + Send
        + Sync
        + 'static,
    ) -> Self {
        Self {
            log: Arc::default(),
            counts: Arc::default(),
            behave: Arc::new(behave),
        }
    }

    pub(crate) fn ok() -> Self {
        Self::new(|call, _| (Duration::ZERO, Ok(json!({ "by": call.branch.as_str() }))))
    }

    pub(crate) fn participant(&self) -> Participant {
        let this = self.clone();
        participant(tower::service_fn(move |call: BranchCall| {
            let this = this.clone();
            async move {
                let key = format!("{}:{}", call.branch, call.op);
                let n = {
                    let mut c = this.counts.lock().unwrap();
                    let n = c.entry(key.clone()).or_default();
                    *n += 1;
                    *n
                };
                let start = Instant::now();
                let (delay, answer) = (this.behave)(&call, n);
                tokio::time::sleep(delay).await;
                this.log.lock().unwrap().push((key, start, Instant::now()));
                answer
            }
        }))
    }

    pub(crate) fn calls(&self) -> Vec<String> {
        self.log
            .lock()
            .unwrap()
            .iter()
            .map(|(k, _, _)| k.clone())
            .collect()
    }

    pub(crate) fn call(&self, key: &str) -> (Instant, Instant) {
        let log = self.log.lock().unwrap();
        let (_, s, e) = log
            .iter()
            .find(|(k, _, _)| k == key)
            .unwrap_or_else(|| panic!("no call {key}"));
        (*s, *e)
    }

    pub(crate) fn count(&self, key: &str) -> u32 {
        self.counts.lock().unwrap().get(key).copied().unwrap_or(0)
    }
}

/// The behaviour tests' coordinator settings: 3 attempts, 100 ms apart.
pub(crate) fn config() -> CoordinatorConfig {
    CoordinatorConfig::new()
        .name("test")
        .max_attempts(3)
        .backoff(Backoff::Constant {
            delay: Duration::from_millis(100),
        })
}

/// A coordinator on `store` with `script` as participant `p`.
pub(crate) fn coordinator(store: Arc<dyn TxStore>, script: &Script) -> Coordinator {
    Coordinator::new(store, config())
        .unwrap()
        .participant("p", script.participant())
}

/// A fresh memory store.
pub(crate) fn memory() -> Arc<dyn TxStore> {
    Arc::new(MemoryTxStore::new())
}
