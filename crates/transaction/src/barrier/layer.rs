//! [`BarrierLayer`]: the SQL barrier around a tower service.

use std::fmt;
use std::sync::Arc;
use std::task::{Context, Poll};

use rampart_core::BoxError;
use serde_json::Value;
use sqlx::{Pool, Transaction};
use tokio::sync::{Mutex, MutexGuard};
use tower::{Layer, Service};

use super::sql::{BarrierDb, SqlBarrier};
use crate::participant::BranchCall;
use crate::store::BoxFuture;

/// Puts a [`SqlBarrier`] in front of a participant written as a tower
/// service.
///
/// The wrapped service is a `Service<BranchCall, Response = Value, Error
/// = BoxError>` (a participant, see
/// [`participant`](crate::participant::participant)); the inner service
/// is a `Service<BarrierRequest<DB>, Response = Value>`. For each call the
/// layer begins a transaction on its pool and applies the barrier; when
/// the call proceeds, it calls the inner service with the call and the
/// open transaction ([`BarrierRequest`]) through [`SqlBarrier::run`], then commits on `Ok` (storing the
/// answer for duplicates) or rolls back on `Err`. Other verdicts answer
/// without calling the inner service (see [`Verdict`](super::Verdict)).
///
/// ```no_run
/// # #[cfg(feature = "sqlite")]
/// # async fn demo() -> Result<(), rampart_core::BoxError> {
/// use rampart_core::BoxError;
/// use rampart_transaction::barrier::{BarrierLayer, BarrierRequest, SqlBarrier};
/// use rampart_transaction::participant::participant;
/// use serde_json::{Value, json};
/// use tower::ServiceBuilder;
///
/// let pool = sqlx::SqlitePool::connect("sqlite://participant.db?mode=rwc").await?;
/// let barrier = SqlBarrier::<sqlx::Sqlite>::new();
/// barrier.migrate(&pool).await?;
/// let reserve = participant(
///     ServiceBuilder::new()
///         .layer(BarrierLayer::new(barrier, pool))
///         .service_fn(|req: BarrierRequest<sqlx::Sqlite>| async move {
///             let mut tx = req.tx.lock().await;
///             sqlx::query("UPDATE stock SET n = n - 1 WHERE item = 'apple'")
///                 .execute(&mut **tx)
///                 .await?;
///             Ok::<Value, BoxError>(json!({ "reserved": 1 }))
///         }),
/// );
/// # let _ = reserve; Ok(()) }
/// ```
pub struct BarrierLayer<DB: BarrierDb> {
    barrier: SqlBarrier<DB>,
    pool: Pool<DB>,
}

impl<DB: BarrierDb> BarrierLayer<DB> {
    /// A layer applying `barrier` in transactions of `pool`.
    pub fn new(barrier: SqlBarrier<DB>, pool: Pool<DB>) -> Self {
        Self { barrier, pool }
    }
}

impl<DB: BarrierDb> Clone for BarrierLayer<DB> {
    fn clone(&self) -> Self {
        Self {
            barrier: self.barrier.clone(),
            pool: self.pool.clone(),
        }
    }
}

impl<DB: BarrierDb> fmt::Debug for BarrierLayer<DB> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BarrierLayer")
            .field("barrier", &self.barrier)
            .finish_non_exhaustive()
    }
}

impl<S, DB: BarrierDb> Layer<S> for BarrierLayer<DB> {
    type Service = BarrierService<S, DB>;

    fn layer(&self, inner: S) -> Self::Service {
        BarrierService::new(inner, self.barrier.clone(), self.pool.clone())
    }
}

/// What the inner service of a [`BarrierLayer`] receives: the call and the
/// open transaction holding its barrier row.
pub struct BarrierRequest<DB: BarrierDb> {
    /// The branch call.
    pub call: BranchCall,
    /// The transaction to do the business work in.
    pub tx: SharedTx<DB>,
}

impl<DB: BarrierDb> fmt::Debug for BarrierRequest<DB> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BarrierRequest")
            .field("call", &self.call)
            .finish_non_exhaustive()
    }
}

/// The open transaction of a [`BarrierRequest`]. Lock it to run
/// statements (`&mut **guard` is the connection). Do not keep it (or a
/// clone) past the answer: a transaction someone still holds cannot be
/// committed, and the call answers
/// [`BarrierError::TransactionHeld`](super::BarrierError::TransactionHeld).
pub struct SharedTx<DB: BarrierDb> {
    tx: Arc<Mutex<Transaction<'static, DB>>>,
}

impl<DB: BarrierDb> SharedTx<DB> {
    pub(super) fn new(tx: Transaction<'static, DB>) -> Self {
        Self {
            tx: Arc::new(Mutex::new(tx)),
        }
    }

    /// The transaction back, unless another handle still exists.
    pub(super) fn into_inner(self) -> Option<Transaction<'static, DB>> {
        Arc::try_unwrap(self.tx).ok().map(Mutex::into_inner)
    }

    /// Waits for exclusive use of the transaction.
    pub async fn lock(&self) -> MutexGuard<'_, Transaction<'static, DB>> {
        self.tx.lock().await
    }
}

impl<DB: BarrierDb> Clone for SharedTx<DB> {
    fn clone(&self) -> Self {
        Self {
            tx: Arc::clone(&self.tx),
        }
    }
}

impl<DB: BarrierDb> fmt::Debug for SharedTx<DB> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SharedTx").finish_non_exhaustive()
    }
}

/// The service [`BarrierLayer`] builds.
pub struct BarrierService<S, DB: BarrierDb> {
    inner: S,
    barrier: SqlBarrier<DB>,
    pool: Pool<DB>,
}

impl<S, DB: BarrierDb> BarrierService<S, DB> {
    /// `inner` behind `barrier`, in transactions of `pool`.
    pub fn new(inner: S, barrier: SqlBarrier<DB>, pool: Pool<DB>) -> Self {
        Self {
            inner,
            barrier,
            pool,
        }
    }
}

impl<S: Clone, DB: BarrierDb> Clone for BarrierService<S, DB> {
    fn clone(&self) -> Self {
        Self::new(self.inner.clone(), self.barrier.clone(), self.pool.clone())
    }
}

impl<S: fmt::Debug, DB: BarrierDb> fmt::Debug for BarrierService<S, DB> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BarrierService")
            .field("inner", &self.inner)
            .field("barrier", &self.barrier)
            .finish_non_exhaustive()
    }
}

impl<S, DB> Service<BranchCall> for BarrierService<S, DB>
where
    DB: BarrierDb,
    S: Service<BarrierRequest<DB>, Response = Value> + Clone + Send + 'static,
    S::Error: Into<BoxError>,
    S::Future: Send + 'static,
{
    type Response = Value;
    type Error = BoxError;
    type Future = BoxFuture<'static, Result<Value, BoxError>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx).map_err(Into::into)
    }

    fn call(&mut self, call: BranchCall) -> Self::Future {
        // the ready instance serves this call; a fresh clone the next one
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        let barrier = self.barrier.clone();
        let pool = self.pool.clone();
        Box::pin(async move {
            barrier
                .run(&pool, &call, |tx| {
                    let call = call.clone();
                    let answer = inner.call(BarrierRequest { call, tx });
                    async move { answer.await.map_err(Into::<BoxError>::into) }
                })
                .await
        })
    }
}
