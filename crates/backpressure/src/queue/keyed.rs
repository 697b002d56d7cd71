//! Per-key queues: [`KeyedQueueLayer`], [`KeyedQueue`] and
//! [`KeyedQueueHandle`].

use std::fmt;
use std::hash::Hash;
use std::marker::PhantomData;
use std::sync::Arc;
use std::task::{Context, Poll};

use rampart_core::BoxError;
use rampart_core::keyed::{KeyedConfig, KeyedMap};
use rampart_core::metrics::InstanceLabels;
use tokio::sync::mpsc;
use tower_layer::Layer;
use tower_service::Service;

use crate::queue::config::QueueConfig;
use crate::queue::future::ResponseFuture;
use crate::queue::handle::Handle;
use crate::queue::service::start;
use crate::queue::shared::Shared;
use crate::queue::worker::{self, Message};

/// Puts one bounded queue, with its own worker, in front of services per
/// key. Built by [`QueueConfig::build_keyed`].
///
/// The key function runs on every request; each key gets its own queue
/// with the configured capacity, admission and shedding, and its own
/// worker driving its own clone of the inner service, created on first
/// use. So tenants are isolated: one key's flood fills only its own queue
/// and is refused there, while the other keys' calls go through. Queues
/// live in a bounded [`KeyedMap`]: at most `max_keys`, and one unused for
/// `idle_timeout` is dropped; its worker ends once the calls it still
/// holds are done (the key's next call starts a fresh queue).
///
/// Each call to [`layer`](Layer::layer) makes a new set of queues for that
/// inner service; clones of the resulting [`KeyedQueue`] share it. Reach
/// them through [`KeyedQueue::handle`].
///
/// Under [`Admission::Backpressure`](crate::Admission::Backpressure)
/// `poll_ready` cannot know the key of the next request, so it is always
/// ready and a call that finds its key's queue full waits in line for a
/// slot in its response future, however long; bound it with a timeout or
/// prefer [`Admission::Wait`](crate::Admission::Wait).
///
/// # Panics
///
/// A call for a new key spawns its worker with `tokio::spawn`, so it
/// panics outside a Tokio runtime.
pub struct KeyedQueueLayer<K, F, Req> {
    config: Arc<QueueConfig>,
    keys: KeyedConfig,
    key: Arc<F>,
    _types: PhantomData<fn(Req) -> K>,
}

/// A service with one queue and worker per key; see [`KeyedQueueLayer`].
pub struct KeyedQueue<S, K, F, Req>
where
    S: Service<Req>,
{
    /// Cloned for each new key's worker.
    inner: S,
    state: Arc<KeyedState<K, Req, S::Future>>,
    key: Arc<F>,
}

/// A cloneable handle on the queues of a [`KeyedQueue`].
pub struct KeyedQueueHandle<K> {
    state: Arc<dyn Lookup<K>>,
}

struct KeyedState<K, Req, Fut> {
    config: Arc<QueueConfig>,
    labels: InstanceLabels,
    map: KeyedMap<K, KeyQueue<Req, Fut>>,
}

/// One key's queue: what the map keeps. Dropping the last clone closes the
/// queue, and its worker ends.
struct KeyQueue<Req, Fut> {
    tx: mpsc::UnboundedSender<Message<Req, Fut>>,
    shared: Arc<Shared>,
}

impl<Req, Fut> Clone for KeyQueue<Req, Fut> {
    fn clone(&self) -> Self {
        Self {
            tx: self.tx.clone(),
            shared: self.shared.clone(),
        }
    }
}

/// The handle's view of the map, whatever the request and future types.
trait Lookup<K>: Send + Sync {
    fn get(&self, key: &K) -> Option<Arc<Shared>>;
    fn entries(&self) -> Vec<(Arc<K>, Arc<Shared>)>;
    fn len(&self) -> u64;
}

impl<K, Req, Fut> Lookup<K> for KeyedState<K, Req, Fut>
where
    K: Hash + Eq + Send + Sync + 'static,
    Req: Send + 'static,
    Fut: Send + 'static,
{
    fn get(&self, key: &K) -> Option<Arc<Shared>> {
        self.map.get(key).map(|queue| queue.shared)
    }

    fn entries(&self) -> Vec<(Arc<K>, Arc<Shared>)> {
        self.map
            .entries()
            .into_iter()
            .map(|(key, queue)| (key, queue.shared))
            .collect()
    }

    fn len(&self) -> u64 {
        self.map.len()
    }
}

// === impl KeyedQueueLayer ===

impl<K, F, Req> KeyedQueueLayer<K, F, Req> {
    /// `config` and `keys` are validated by the caller.
    pub(crate) fn new(config: QueueConfig, keys: KeyedConfig, key: F) -> Self {
        Self {
            config: Arc::new(config),
            keys,
            key: Arc::new(key),
            _types: PhantomData,
        }
    }
}

impl<K, F, Req> Clone for KeyedQueueLayer<K, F, Req> {
    fn clone(&self) -> Self {
        Self {
            config: self.config.clone(),
            keys: self.keys,
            key: self.key.clone(),
            _types: PhantomData,
        }
    }
}

impl<S, K, F, Req> Layer<S> for KeyedQueueLayer<K, F, Req>
where
    S: Service<Req>,
    K: Hash + Eq + Send + Sync + 'static,
    Req: Send + 'static,
    S::Future: Send + 'static,
{
    type Service = KeyedQueue<S, K, F, Req>;

    fn layer(&self, inner: S) -> Self::Service {
        let state = KeyedState {
            config: self.config.clone(),
            labels: InstanceLabels::new(self.config.name_ref()),
            map: KeyedMap::new(self.keys),
        };
        KeyedQueue {
            inner,
            state: Arc::new(state),
            key: self.key.clone(),
        }
    }
}

impl<K, F, Req> fmt::Debug for KeyedQueueLayer<K, F, Req> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KeyedQueueLayer")
            .field("config", &self.config)
            .field("keys", &self.keys)
            .finish()
    }
}

// === impl KeyedQueue ===

impl<S, K, F, Req> KeyedQueue<S, K, F, Req>
where
    S: Service<Req>,
    K: Hash + Eq + Send + Sync + 'static,
    Req: Send + 'static,
    S::Future: Send + 'static,
{
    /// A handle on the service's queues.
    pub fn handle(&self) -> KeyedQueueHandle<K> {
        KeyedQueueHandle {
            state: self.state.clone(),
        }
    }
}

impl<S, K, F, Req> KeyedQueue<S, K, F, Req>
where
    S: Service<Req>,
{
    /// The inner service new keys' workers are cloned from.
    pub fn get_ref(&self) -> &S {
        &self.inner
    }
}

impl<S, K, F, Req> Clone for KeyedQueue<S, K, F, Req>
where
    S: Service<Req> + Clone,
{
    fn clone(&self) -> Self {
        Self {
            inner: self.inner.clone(),
            state: self.state.clone(),
            key: self.key.clone(),
        }
    }
}

impl<S, K, F, Req> Service<Req> for KeyedQueue<S, K, F, Req>
where
    S: Service<Req> + Clone + Send + 'static,
    S::Future: Send + 'static,
    S::Error: Into<BoxError>,
    F: Fn(&Req) -> K,
    K: Hash + Eq + fmt::Display + Send + Sync + 'static,
    Req: Send + 'static,
{
    type Response = S::Response;
    type Error = BoxError;
    type Future = ResponseFuture<S::Future, Req>;

    /// Always ready: the key, and so the queue, is known only in `call`.
    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: Req) -> Self::Future {
        let key = (self.key)(&request);
        let state = &self.state;
        let inner = &self.inner;
        let queue = state.map.get_or_build(key, &state.labels, |labels| {
            let shared = Arc::new(Shared::new(&state.config, labels));
            KeyQueue {
                tx: worker::spawn(inner.clone(), shared.clone(), state.config.codel_value()),
                shared,
            }
        });
        start(&queue.tx, &queue.shared, request, None)
    }
}

impl<S, K, F, Req> fmt::Debug for KeyedQueue<S, K, F, Req>
where
    S: Service<Req> + fmt::Debug,
{
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KeyedQueue")
            .field("inner", &self.inner)
            .field("keys", &self.state.map)
            .finish()
    }
}

// === impl KeyedQueueHandle ===

impl<K> KeyedQueueHandle<K> {
    /// The handle of `key`'s queue, if it exists.
    pub fn get(&self, key: &K) -> Option<Handle> {
        self.state.get(key).map(Handle::new)
    }

    /// A snapshot of every live key and its queue's handle.
    pub fn entries(&self) -> Vec<(Arc<K>, Handle)> {
        self.state
            .entries()
            .into_iter()
            .map(|(key, shared)| (key, Handle::new(shared)))
            .collect()
    }

    /// The number of live queues (approximate until evictions run).
    pub fn len(&self) -> u64 {
        self.state.len()
    }

    /// `true` when no queue is alive.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl<K> Clone for KeyedQueueHandle<K> {
    fn clone(&self) -> Self {
        Self {
            state: self.state.clone(),
        }
    }
}

impl<K> fmt::Debug for KeyedQueueHandle<K> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KeyedQueueHandle")
            .field("len", &self.state.len())
            .finish()
    }
}
