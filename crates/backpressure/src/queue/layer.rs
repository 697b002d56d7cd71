//! [`QueueLayer`].

use std::fmt;
use std::marker::PhantomData;
use std::sync::Arc;

use rampart_core::BoxError;
use rampart_core::metrics::InstanceLabels;
use tower_layer::Layer;
use tower_service::Service;

use crate::queue::config::QueueConfig;
use crate::queue::service::Queue;
use crate::queue::shared::Shared;

/// Puts a bounded queue, drained by a worker task, in front of services.
/// Built by [`QueueConfig::build`](crate::QueueConfig::build).
///
/// Each call to [`layer`](Layer::layer) makes a new queue and spawns its
/// worker on the current Tokio runtime; clones of the resulting [`Queue`]
/// share it. Reach it through [`Queue::handle`]. The worker ends when every
/// clone of the queue is dropped.
///
/// # Panics
///
/// [`layer`](Layer::layer) panics when called outside a Tokio runtime, as
/// `tokio::spawn` does (tower's `Buffer` behaves the same).
pub struct QueueLayer<Req> {
    config: Arc<QueueConfig>,
    _req: PhantomData<fn(Req)>,
}

impl<Req> QueueLayer<Req> {
    pub(crate) fn new(config: QueueConfig) -> Self {
        Self {
            config: Arc::new(config),
            _req: PhantomData,
        }
    }
}

impl<Req> Clone for QueueLayer<Req> {
    fn clone(&self) -> Self {
        Self {
            config: self.config.clone(),
            _req: PhantomData,
        }
    }
}

impl<S, Req> Layer<S> for QueueLayer<Req>
where
    S: Service<Req> + Send + 'static,
    S::Future: Send + 'static,
    S::Error: Into<BoxError>,
    Req: Send + 'static,
{
    type Service = Queue<Req, S::Future>;

    fn layer(&self, inner: S) -> Self::Service {
        let labels = InstanceLabels::new(self.config.name_ref());
        let shared = Shared::new(&self.config, &labels);
        Queue::spawn(inner, Arc::new(shared), self.config.codel_value())
    }
}

impl<Req> fmt::Debug for QueueLayer<Req> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("QueueLayer")
            .field("config", &self.config)
            .finish()
    }
}
