//! [`LoadFailed`]: the one error the cache adds.

use std::fmt;
use std::sync::Arc;

use rampart_core::BoxError;

/// A load from the upstream failed, for this request and every request
/// that waited for the same key's load (single flight): they all get a
/// `LoadFailed` sharing the one upstream error. Nothing was cached.
///
/// [`source`](std::error::Error::source) and [`inner`](Self::inner) give
/// the upstream's error, to downcast.
///
/// ```
/// use rampart_cache::{CacheConfig, LoadFailed};
/// use tower::{Layer, ServiceExt, service_fn};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// let layer = CacheConfig::new().builder(|id: &u32| Some(*id)).build().unwrap();
/// let svc = layer.layer(service_fn(|_: u32| async {
///     Err::<String, _>(std::io::Error::other("database down"))
/// }));
/// let err = svc.oneshot(7).await.unwrap_err();
/// let failed = err.downcast_ref::<LoadFailed>().unwrap();
/// assert!(failed.inner().is::<std::io::Error>());
/// # }
/// ```
#[derive(Clone)]
pub struct LoadFailed {
    source: Arc<BoxError>,
}

impl LoadFailed {
    pub(crate) fn new(source: Arc<BoxError>) -> Self {
        Self { source }
    }

    /// The upstream's error, shared by every request that waited for the
    /// load.
    pub fn inner(&self) -> &(dyn std::error::Error + Send + Sync + 'static) {
        &**self.source
    }
}

impl fmt::Debug for LoadFailed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("LoadFailed").field(&self.source).finish()
    }
}

impl fmt::Display for LoadFailed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "cache load failed: {}", self.source)
    }
}

impl std::error::Error for LoadFailed {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&**self.source)
    }
}
