//! Which requests may be sent again, per-request overrides, and the
//! deadline each try carries.

use std::time::Duration;

use http::HeaderName;
use http::header::{CONTENT_TYPE, HeaderValue};

/// Per-request overrides of a retry layer's settings.
///
/// With [`HttpRequests`] (see [`RetryLayer::for_http`](crate::RetryLayer::for_http)),
/// put one in the request's extensions:
///
/// ```
/// use std::time::Duration;
/// use rampart_retry::RetryOverride;
///
/// let mut req = http::Request::get("/slow-report").body(()).unwrap();
/// req.extensions_mut().insert(RetryOverride {
///     max_attempts: Some(1),
///     deadline: Some(Duration::from_secs(30)),
/// });
/// ```
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RetryOverride {
    /// Tries in all for this request, instead of the layer's
    /// `max_attempts` (0 is taken as 1: no retry).
    pub max_attempts: Option<u32>,
    /// The overall deadline for this request, instead of the layer's.
    pub deadline: Option<Duration>,
}

/// Decides whether a request may be replayed, and reads its overrides.
pub trait ReplayPolicy<Req> {
    /// `true` when sending `req` again is safe.
    fn is_replayable(&self, req: &Req) -> bool;

    /// Overrides carried by `req`. Defaults to none.
    fn overrides(&self, _req: &Req) -> RetryOverride {
        RetryOverride::default()
    }

    /// Tells the next hop how long this try has (`remaining`: the shorter
    /// of the per-try timeout and what is left of the deadline), by writing
    /// it onto `req` before the try is sent; `header` is the layer's
    /// [`deadline_header`](crate::RetryConfig::deadline_header). Called only
    /// when the try has a timeout or a deadline. Defaults to nothing.
    fn propagate_deadline(
        &self,
        _req: &mut Req,
        _remaining: Duration,
        _header: Option<&HeaderName>,
    ) {
    }
}

/// Every request may be replayed (the default for non-HTTP services): the
/// classifier alone decides.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct AnyRequest;

impl<Req> ReplayPolicy<Req> for AnyRequest {
    #[inline]
    fn is_replayable(&self, _req: &Req) -> bool {
        true
    }
}

/// HTTP requests: only those with an idempotent method or an
/// `Idempotency-Key` header are replayed
/// ([`rampart_core::classify::is_replayable`]), never one marked
/// [`NotReplayable`](crate::NotReplayable) (a body over the replay limit);
/// a [`RetryOverride`] in the extensions is honoured.
///
/// Each try tells the upstream how long it has: a gRPC request (its
/// `content-type` starts with `application/grpc`) gets `grpc-timeout`, any
/// other request the layer's
/// [`deadline_header`](crate::RetryConfig::deadline_header) in whole
/// milliseconds, if one is set. A value the request already carries that
/// is shorter (a deadline from further upstream) is kept.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct HttpRequests;

impl<B> ReplayPolicy<http::Request<B>> for HttpRequests {
    #[inline]
    fn is_replayable(&self, req: &http::Request<B>) -> bool {
        rampart_core::classify::is_replayable(req)
            && req.extensions().get::<crate::NotReplayable>().is_none()
    }

    fn overrides(&self, req: &http::Request<B>) -> RetryOverride {
        req.extensions()
            .get::<RetryOverride>()
            .copied()
            .unwrap_or_default()
    }

    fn propagate_deadline(
        &self,
        req: &mut http::Request<B>,
        remaining: Duration,
        header: Option<&HeaderName>,
    ) {
        propagate_http_deadline(req.headers_mut(), remaining, header);
    }
}

/// The gRPC deadline header.
const GRPC_TIMEOUT: HeaderName = HeaderName::from_static("grpc-timeout");

/// Writes `remaining` onto an HTTP request's headers: `grpc-timeout` for
/// gRPC, else `header` in milliseconds; a shorter value already there wins.
fn propagate_http_deadline(
    headers: &mut http::HeaderMap,
    remaining: Duration,
    header: Option<&HeaderName>,
) {
    let is_grpc = headers
        .get(CONTENT_TYPE)
        .is_some_and(|v| v.as_bytes().starts_with(b"application/grpc"));
    let (name, current, encode): (&HeaderName, _, fn(Duration) -> HeaderValue) = if is_grpc {
        (
            &GRPC_TIMEOUT,
            headers.get(&GRPC_TIMEOUT).and_then(parse_grpc_timeout),
            grpc_timeout,
        )
    } else if let Some(name) = header {
        (name, headers.get(name).and_then(parse_millis), millis)
    } else {
        return;
    };
    if current.is_some_and(|c| c <= remaining) {
        return;
    }
    headers.insert(name.clone(), encode(remaining));
}

/// `grpc-timeout`: at most 8 digits and a unit; the finest unit that fits,
/// rounded down so the next hop never believes it has longer than it does.
pub(crate) fn grpc_timeout(d: Duration) -> HeaderValue {
    const MAX: u128 = 99_999_999;
    let nanos = d.as_nanos().max(1);
    let (value, unit) = [
        (1, 'n'),
        (1_000, 'u'),
        (1_000_000, 'm'),
        (1_000_000_000, 'S'),
        (60_000_000_000, 'M'),
        (3_600_000_000_000, 'H'),
    ]
    .into_iter()
    .map(|(per, unit)| ((nanos / per).max(1), unit))
    .find(|(v, _)| *v <= MAX)
    .unwrap_or((MAX, 'H'));
    HeaderValue::from_str(&format!("{value}{unit}")).unwrap_or(HeaderValue::from_static("1n"))
}

/// Parses a `grpc-timeout` value; `None` for anything malformed.
pub(crate) fn parse_grpc_timeout(v: &HeaderValue) -> Option<Duration> {
    let s = v.to_str().ok()?;
    if s.len() < 2 || s.len() > 9 {
        return None;
    }
    let (digits, unit) = s.split_at(s.len() - 1);
    if !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let n: u64 = digits.parse().ok()?;
    Some(match unit {
        "n" => Duration::from_nanos(n),
        "u" => Duration::from_micros(n),
        "m" => Duration::from_millis(n),
        "S" => Duration::from_secs(n),
        "M" => Duration::from_secs(n * 60),
        "H" => Duration::from_secs(n * 3600),
        _ => return None,
    })
}

/// Whole milliseconds, at least 1.
fn millis(d: Duration) -> HeaderValue {
    HeaderValue::from(u64::try_from(d.as_millis().max(1)).unwrap_or(u64::MAX))
}

fn parse_millis(v: &HeaderValue) -> Option<Duration> {
    let s = v.to_str().ok()?;
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    s.parse().ok().map(Duration::from_millis)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn grpc_timeout_picks_the_finest_unit_that_fits() {
        let enc = |d| grpc_timeout(d).to_str().unwrap().to_owned();
        assert_eq!(enc(Duration::from_nanos(5)), "5n");
        assert_eq!(enc(Duration::from_millis(250)), "250000u");
        assert_eq!(enc(Duration::from_secs(3)), "3000000u");
        assert_eq!(enc(Duration::from_secs(300)), "300000m");
        assert_eq!(enc(Duration::from_secs(200_000)), "200000S");
        assert_eq!(enc(Duration::ZERO), "1n");
        assert_eq!(enc(Duration::MAX), "99999999H");
    }

    #[test]
    fn malformed_values_are_ignored() {
        for bad in ["", "5", "m", "5x", "-5m", "123456789m", "5.0S", "5 m"] {
            let v = HeaderValue::from_str(bad).unwrap();
            assert_eq!(parse_grpc_timeout(&v), None, "{bad:?}");
        }
        for bad in ["", "-1", "1.5", "abc", "99999999999999999999999"] {
            let v = HeaderValue::from_str(bad).unwrap();
            assert_eq!(parse_millis(&v), None, "{bad:?}");
        }
    }

    proptest! {
        /// Encoding never promises more time than there is, loses at most
        /// one part in 10^5 (8 digits, units 60 to 1000 apart), and parses back.
        #[test]
        fn grpc_timeout_round_trips_rounded_down(nanos in 1u64..=u64::MAX / 2) {
            let d = Duration::from_nanos(nanos);
            let back = parse_grpc_timeout(&grpc_timeout(d)).unwrap();
            prop_assert!(back <= d);
            prop_assert!(d - back <= d / 100_000 + Duration::from_nanos(1));
        }
    }
}
