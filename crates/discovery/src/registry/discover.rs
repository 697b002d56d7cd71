//! [`DiscoverChanges`]: a registry watch as a [`tower::discover::Discover`]
//! stream.

use std::collections::HashSet;
use std::fmt;
use std::marker::PhantomData;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use futures_core::Stream;
use tower::discover::Change;

use super::{EventKind, Instance, Registry, RegistryError, ServiceName, Watch};

/// A [`Watch`] turned into the changes a tower balancer consumes: it
/// implements [`tower::discover::Discover`] with the instance id as key and
/// the service `make(&instance)` returns for each endpoint.
///
/// Only [routable](Instance::is_routable) instances (not unhealthy, weight
/// above 0) are inserted:
///
/// - an insert or update of a routable instance yields
///   `Change::Insert(id, make(&instance))`; for an id already inserted this
///   replaces its service (tower's balancers replace the service of a key
///   that is inserted again, see `ReadyCache::push`), so a weight or
///   metadata change reaches the balancer without a gap;
/// - a remove, or an update that makes an inserted instance unroutable,
///   yields `Change::Remove(id)`;
/// - an update or remove of an instance that was never inserted yields
///   nothing.
///
/// The stream ends when the watch ends, and passes on a watch's errors,
/// except [`RegistryError::Source`]: a read-only registry whose source
/// failed keeps serving its last good instances, so the balancer keeps its
/// endpoints too; such an error is logged (`warn`) and skipped, since
/// passing it on would fail the balancer's `poll_ready`.
pub struct DiscoverChanges<F, S> {
    watch: Watch,
    make: F,
    inserted: HashSet<String>,
    _service: PhantomData<fn() -> S>,
}

// `make` is only ever called through `&F`, never pinned.
impl<F, S> Unpin for DiscoverChanges<F, S> {}

impl<F, S> fmt::Debug for DiscoverChanges<F, S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DiscoverChanges")
            .field("watch", &self.watch)
            .field("inserted", &self.inserted)
            .finish_non_exhaustive()
    }
}

impl<F, S> DiscoverChanges<F, S>
where
    F: Fn(&Instance) -> S,
{
    /// Changes from `watch`, with `make` building each endpoint's service.
    pub fn new(watch: Watch, make: F) -> Self {
        Self {
            watch,
            make,
            inserted: HashSet::new(),
            _service: PhantomData,
        }
    }
}

/// Watches `service` on `registry` and returns its changes as a
/// [`tower::discover::Discover`]: see [`DiscoverChanges`].
pub async fn discover<R, F, S>(
    registry: &R,
    service: &ServiceName,
    make: F,
) -> Result<DiscoverChanges<F, S>, RegistryError>
where
    R: Registry + ?Sized,
    F: Fn(&Instance) -> S,
{
    Ok(DiscoverChanges::new(registry.watch(service).await?, make))
}

impl<F, S> Stream for DiscoverChanges<F, S>
where
    F: Fn(&Instance) -> S,
{
    type Item = Result<Change<String, S>, RegistryError>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = self.get_mut();
        loop {
            let event = match ready!(Pin::new(&mut this.watch).poll_next(cx)) {
                None => return Poll::Ready(None),
                Some(Err(RegistryError::Source(error))) => {
                    tracing::warn!(%error, "registry source failed, endpoints kept");
                    continue;
                }
                Some(Err(e)) => return Poll::Ready(Some(Err(e))),
                Some(Ok(event)) => event,
            };
            let id = event.instance.id();
            let routable = event.kind != EventKind::Remove && event.instance.is_routable();
            if routable {
                if !this.inserted.contains(id) {
                    this.inserted.insert(id.to_owned());
                }
                let svc = (this.make)(&event.instance);
                return Poll::Ready(Some(Ok(Change::Insert(id.to_owned(), svc))));
            }
            if this.inserted.remove(id) {
                return Poll::Ready(Some(Ok(Change::Remove(id.to_owned()))));
            }
        }
    }
}
