//! [`MemoryTxStore`]: the log in a mutex, for tests of engine logic.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use super::{BoxFuture, StoreError, TxFilter, TxStore, TxSummary, Write};
use crate::model::{TxId, TxRecord, duration_ms, now_ms};

/// The transaction log in process memory. Clones share it.
///
/// It keeps every guarantee of [`TxStore`] (atomic writes, version fences,
/// leases) but nothing survives the process: use it to test engine logic
/// and coordinator crashes (drop the coordinator, keep the store), and the
/// SQL store for anything that must outlive the process.
#[derive(Debug, Clone, Default)]
pub struct MemoryTxStore {
    inner: Arc<Mutex<BTreeMap<TxId, Entry>>>,
}

#[derive(Debug, Clone)]
struct Entry {
    tx: TxRecord,
    lease_owner: Option<String>,
    lease_until: u64,
}

impl MemoryTxStore {
    /// An empty log.
    pub fn new() -> Self {
        Self::default()
    }

    fn lock(&self) -> MutexGuard<'_, BTreeMap<TxId, Entry>> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn commit_now(&self, id: &TxId, expected: u64, write: Write) -> Result<u64, StoreError> {
        let mut map = self.lock();
        let entry = map
            .get_mut(id)
            .ok_or_else(|| StoreError::NotFound(id.clone()))?;
        if entry.tx.version != expected {
            return Err(StoreError::Conflict {
                id: id.clone(),
                expected,
                found: entry.tx.version,
            });
        }
        let tx = &mut entry.tx;
        let now = now_ms();
        write.apply_to(tx);
        tx.version += 1;
        tx.updated_at = now;
        Ok(tx.version)
    }
}

impl TxStore for MemoryTxStore {
    fn create<'a>(
        &'a self,
        tx: &'a TxRecord,
        owner: &'a str,
        lease: Duration,
    ) -> BoxFuture<'a, Result<(), StoreError>> {
        Box::pin(async move {
            let mut map = self.lock();
            if map.contains_key(&tx.id) {
                return Err(StoreError::Exists(tx.id.clone()));
            }
            let mut tx = tx.clone();
            tx.version = 1;
            map.insert(
                tx.id.clone(),
                Entry {
                    tx,
                    lease_owner: Some(owner.to_owned()),
                    lease_until: now_ms().saturating_add(duration_ms(lease)),
                },
            );
            Ok(())
        })
    }

    fn load<'a>(&'a self, id: &'a TxId) -> BoxFuture<'a, Result<Option<TxRecord>, StoreError>> {
        Box::pin(async move { Ok(self.lock().get(id).map(|e| e.tx.clone())) })
    }

    fn commit<'a>(
        &'a self,
        id: &'a TxId,
        expected_version: u64,
        write: Write,
    ) -> BoxFuture<'a, Result<u64, StoreError>> {
        Box::pin(async move { self.commit_now(id, expected_version, write) })
    }

    fn claim<'a>(
        &'a self,
        owner: &'a str,
        lease: Duration,
        limit: usize,
    ) -> BoxFuture<'a, Result<Vec<TxId>, StoreError>> {
        Box::pin(async move {
            let now = now_ms();
            let mut map = self.lock();
            let mut due: Vec<&mut Entry> = map
                .values_mut()
                .filter(|e| {
                    e.tx.state.is_active() && (e.lease_owner.is_none() || e.lease_until <= now)
                })
                .collect();
            due.sort_by_key(|e| e.tx.created_at);
            Ok(due
                .into_iter()
                .take(limit)
                .map(|e| {
                    e.lease_owner = Some(owner.to_owned());
                    e.lease_until = now.saturating_add(duration_ms(lease));
                    e.tx.id.clone()
                })
                .collect())
        })
    }

    fn renew<'a>(
        &'a self,
        id: &'a TxId,
        owner: &'a str,
        lease: Duration,
    ) -> BoxFuture<'a, Result<bool, StoreError>> {
        Box::pin(async move {
            let mut map = self.lock();
            let entry = map
                .get_mut(id)
                .ok_or_else(|| StoreError::NotFound(id.clone()))?;
            if entry.lease_owner.as_deref() != Some(owner) {
                return Ok(false);
            }
            entry.lease_until = now_ms().saturating_add(duration_ms(lease));
            Ok(true)
        })
    }

    fn release<'a>(
        &'a self,
        id: &'a TxId,
        owner: &'a str,
    ) -> BoxFuture<'a, Result<(), StoreError>> {
        Box::pin(async move {
            if let Some(entry) = self.lock().get_mut(id)
                && entry.lease_owner.as_deref() == Some(owner)
            {
                entry.lease_owner = None;
                entry.lease_until = 0;
            }
            Ok(())
        })
    }

    fn list<'a>(
        &'a self,
        filter: &'a TxFilter,
    ) -> BoxFuture<'a, Result<Vec<TxSummary>, StoreError>> {
        Box::pin(async move {
            let map = self.lock();
            let mut found: Vec<TxSummary> = map
                .values()
                .map(|e| &e.tx)
                .filter(|tx| filter.states.is_empty() || filter.states.contains(&tx.state))
                .filter(|tx| filter.protocol.is_none_or(|p| p == tx.protocol))
                .filter(|tx| filter.created_before.is_none_or(|t| tx.created_at <= t))
                .map(|tx| TxSummary {
                    id: tx.id.clone(),
                    protocol: tx.protocol,
                    state: tx.state,
                    reason: tx.reason.clone(),
                    created_at: tx.created_at,
                    updated_at: tx.updated_at,
                })
                .collect();
            found.sort_by(|a, b| (a.created_at, &a.id).cmp(&(b.created_at, &b.id)));
            if let Some(limit) = filter.limit {
                found.truncate(limit);
            }
            Ok(found)
        })
    }

    fn purge(&self, before: u64) -> BoxFuture<'_, Result<u64, StoreError>> {
        Box::pin(async move {
            let mut map = self.lock();
            let len = map.len();
            map.retain(|_, e| !(e.tx.state.is_terminal() && e.tx.updated_at < before));
            Ok((len - map.len()) as u64)
        })
    }
}
