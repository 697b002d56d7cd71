//! [`Probe`]s: one check of one instance. [`HttpProbe`] and [`TcpProbe`]
//! are built in; any other check (gRPC health, a script) implements the
//! trait.

use std::fmt;
use std::io;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper_util::rt::TokioIo;
use rampart_core::BoxError;
use tokio::net::TcpStream;

use super::{CheckKind, HttpCheck, TcpCheck};
use crate::registry::{BoxFuture, Instance};

/// One check of one instance: `Ok` if it passed.
///
/// Object safe, so a [`HealthChecker`](super::HealthChecker) or a
/// [`Sidecar`](super::Sidecar) takes any `Arc<dyn Probe>`. The caller
/// bounds every probe by the check's timeout, so a probe that never
/// finishes fails with [`ProbeError::Timeout`].
///
/// ```
/// use rampart_discovery::health::{Probe, ProbeError};
/// use rampart_discovery::registry::{BoxFuture, Instance};
///
/// /// Passes when the instance's metadata says it is ready.
/// #[derive(Debug)]
/// struct MetadataProbe;
///
/// impl Probe for MetadataProbe {
///     fn probe<'a>(&'a self, target: &'a Instance) -> BoxFuture<'a, Result<(), ProbeError>> {
///         Box::pin(async move {
///             match target.metadata().get("ready").map(String::as_str) {
///                 Some("true") => Ok(()),
///                 _ => Err(ProbeError::Failed("not ready".into())),
///             }
///         })
///     }
/// }
/// ```
pub trait Probe: Send + Sync + fmt::Debug {
    /// Checks `target` (its address and port) once.
    fn probe<'a>(&'a self, target: &'a Instance) -> BoxFuture<'a, Result<(), ProbeError>>;
}

impl<P: Probe + ?Sized> Probe for Arc<P> {
    fn probe<'a>(&'a self, target: &'a Instance) -> BoxFuture<'a, Result<(), ProbeError>> {
        (**self).probe(target)
    }
}

/// The probe a [`CheckKind`] describes: an [`HttpProbe`] or a [`TcpProbe`].
pub fn probe_for(kind: &CheckKind) -> Arc<dyn Probe> {
    match kind {
        CheckKind::Http(h) => Arc::new(HttpProbe::new(h.clone())),
        CheckKind::Tcp(t) => Arc::new(TcpProbe::new(t.clone())),
    }
}

/// Why a probe failed.
#[derive(Debug)]
#[non_exhaustive]
pub enum ProbeError {
    /// The TCP connection could not be made (refused, unreachable, the
    /// host name did not resolve).
    Connect(io::Error),
    /// The probe took longer than its timeout.
    Timeout(Duration),
    /// The HTTP response had a status that is not expected.
    Status(u16),
    /// The HTTP exchange failed after connecting (a malformed response,
    /// the connection closed early).
    Http(BoxError),
    /// A custom probe's failure.
    Failed(BoxError),
}

impl fmt::Display for ProbeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Connect(e) => write!(f, "health probe could not connect: {e}"),
            Self::Timeout(t) => write!(f, "health probe timed out after {t:?}"),
            Self::Status(s) => write!(f, "health probe got unexpected status {s}"),
            Self::Http(e) => write!(f, "health probe http exchange failed: {e}"),
            Self::Failed(e) => write!(f, "health probe failed: {e}"),
        }
    }
}

impl std::error::Error for ProbeError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Self::Connect(e) => Some(e),
            Self::Http(e) | Self::Failed(e) => Some(&**e),
            Self::Timeout(_) | Self::Status(_) => None,
        }
    }
}

/// Runs `probe` on `target`, failing it with [`ProbeError::Timeout`] after
/// `timeout` on the tokio clock.
pub(crate) async fn bounded(
    probe: &dyn Probe,
    target: &Instance,
    timeout: Duration,
) -> Result<(), ProbeError> {
    tokio::time::timeout(timeout, probe.probe(target))
        .await
        .unwrap_or(Err(ProbeError::Timeout(timeout)))
}

// === impl TcpProbe ===

/// Passes when a TCP connection to the instance's `address:port` is
/// established within the timeout; the connection is closed at once.
#[derive(Debug, Clone)]
pub struct TcpProbe {
    check: TcpCheck,
}

impl TcpProbe {
    /// A probe with `check`'s timeout.
    pub fn new(check: TcpCheck) -> Self {
        Self { check }
    }
}

impl Probe for TcpProbe {
    fn probe<'a>(&'a self, target: &'a Instance) -> BoxFuture<'a, Result<(), ProbeError>> {
        Box::pin(async move {
            let timeout = self.check.timeout;
            tokio::time::timeout(timeout, TcpStream::connect(target.authority()))
                .await
                .map_err(|_| ProbeError::Timeout(timeout))?
                .map_err(ProbeError::Connect)?;
            Ok(())
        })
    }
}

// === impl HttpProbe ===

/// An HTTP/1.1 `GET` of the check's path over a fresh TCP connection (no
/// pooling: each probe tests that the instance accepts connections),
/// with `Host` set to the check's host or the instance's `address:port`
/// and `Connection: close`. It passes when the status is expected; the
/// body is read up to [`HttpCheck::max_body_bytes`] and discarded. The
/// whole exchange is bounded by the check's timeout.
#[derive(Debug, Clone)]
pub struct HttpProbe {
    check: HttpCheck,
}

impl HttpProbe {
    /// A probe doing `check`.
    pub fn new(check: HttpCheck) -> Self {
        Self { check }
    }

    async fn exchange(&self, target: &Instance) -> Result<(), ProbeError> {
        let authority = target.authority();
        let stream = TcpStream::connect(&authority)
            .await
            .map_err(ProbeError::Connect)?;
        let host = self.check.host.as_deref().unwrap_or(&authority);
        let request = http::Request::get(self.check.path.as_str())
            .header(http::header::HOST, host)
            .header(http::header::CONNECTION, "close")
            .header(
                http::header::USER_AGENT,
                concat!("rampart-health/", env!("CARGO_PKG_VERSION")),
            )
            .body(Empty::<Bytes>::new())
            .map_err(|e| ProbeError::Http(e.into()))?;
        let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .map_err(|e| ProbeError::Http(e.into()))?;
        let exchange = async move {
            let response = sender
                .send_request(request)
                .await
                .map_err(|e| ProbeError::Http(e.into()))?;
            let status = response.status().as_u16();
            let mut body = response.into_body();
            let mut read = 0usize;
            while read < self.check.max_body_bytes {
                match body.frame().await {
                    Some(Ok(frame)) => read += frame.data_ref().map_or(0, Bytes::len),
                    Some(Err(e)) => return Err(ProbeError::Http(e.into())),
                    None => break,
                }
            }
            if self.check.expects(status) {
                Ok(())
            } else {
                Err(ProbeError::Status(status))
            }
        };
        // the connection must be driven while the exchange runs; both end
        // with this function, so nothing outlives the probe
        let mut conn = std::pin::pin!(conn);
        let mut exchange = std::pin::pin!(exchange);
        tokio::select! {
            result = &mut exchange => result,
            closed = &mut conn => match closed {
                Err(e) => Err(ProbeError::Http(e.into())),
                // closed cleanly: the exchange has its answer (or its error)
                Ok(()) => exchange.await,
            },
        }
    }
}

impl Probe for HttpProbe {
    fn probe<'a>(&'a self, target: &'a Instance) -> BoxFuture<'a, Result<(), ProbeError>> {
        Box::pin(async move {
            let timeout = self.check.timeout;
            tokio::time::timeout(timeout, self.exchange(target))
                .await
                .unwrap_or(Err(ProbeError::Timeout(timeout)))
        })
    }
}
