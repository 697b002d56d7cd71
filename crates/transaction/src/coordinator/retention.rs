//! Retention: finished transactions deleted from the log once they are
//! older than [`retention`](super::CoordinatorConfig::retention), one round at a
//! time or on a timer.

use rampart_core::metric_name;

use super::{Coordinator, Metrics, TxError};
use crate::model::{duration_ms, now_ms};

/// Counter: finished transactions deleted by retention.
pub const PURGED_TOTAL: &str = metric_name!("transaction", "purged_total");

impl Metrics {
    fn purged(&self, n: u64) {
        metrics::counter!(PURGED_TOTAL, self.labels.to_vec()).increment(n);
    }
}

impl Coordinator {
    /// One retention round: deletes (with their branches) the finished
    /// transactions ([`Committed`](crate::model::TxState::Committed),
    /// [`Aborted`](crate::model::TxState::Aborted),
    /// [`Resolved`](crate::model::TxState::Resolved)) last written more
    /// than [`retention`](super::CoordinatorConfig::retention) ago, and returns
    /// how many. Active and parked
    /// ([`NeedsIntervention`](crate::model::TxState::NeedsIntervention))
    /// transactions are kept whatever their age.
    ///
    /// The age is measured on the log's clock (wall time,
    /// [`now_ms`]), which every coordinator sharing the store reads alike.
    /// Several coordinators purging one store at once is harmless.
    pub async fn purge_finished(&self) -> Result<u64, TxError> {
        let inner = &*self.inner;
        let before = now_ms().saturating_sub(duration_ms(inner.config.retention));
        let purged = inner.store.purge(before).await?;
        inner.metrics.purged(purged);
        if purged > 0 {
            tracing::info!(name = %inner.config.name, purged, "purged finished transactions past retention");
        }
        Ok(purged)
    }

    /// Runs [`purge_finished`](Self::purge_finished) now and then every
    /// [`retention_interval`](super::CoordinatorConfig::retention_interval), for
    /// ever (spawn it; drop or abort the task to stop). A failed round is
    /// logged and the loop goes on. The interval is measured on tokio's
    /// clock; the age of a transaction on the log's wall clock.
    pub async fn run_retention(&self) {
        let interval = self.inner.config.retention_interval;
        loop {
            if let Err(e) = self.purge_finished().await {
                tracing::warn!(name = %self.inner.config.name, error = %e, "retention round failed; retrying next interval");
            }
            tokio::time::sleep(interval).await;
        }
    }
}
