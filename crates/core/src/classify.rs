//! One decision per call outcome, shared by every layer that judges calls.
//!
//! The breaker counts failures with it, retry asks it whether a call may be
//! repeated (and after how long), balance feeds outlier ejection from it and
//! the mesh uses the HTTP impl at the edge. One classifier therefore means
//! the same thing everywhere.
//!
//! | classifier | success | failure | retry allowed |
//! |---|---|---|---|
//! | [`ResultClassifier`] (default) | `Ok(_)` | `Err(_)` | every `Err` |
//! | [`HttpClassifier`] | 1xx–4xx except 429 | 5xx, 429, `Err` (connect errors, timeouts) | `Err`, 429, 502, 503, 504, with `Retry-After` |
//! | [`ClassifyFn`] | your closure decides | | |
//!
//! ```
//! use rampart_core::classify::{Classify, Decision, HttpClassifier, classify_fn};
//! use std::time::Duration;
//!
//! let res: Result<http::Response<()>, std::io::Error> = Ok(http::Response::builder()
//!     .status(503)
//!     .header("retry-after", "3")
//!     .body(())
//!     .unwrap());
//! let d = HttpClassifier::default().classify(&res);
//! assert!(d.is_failure());
//! assert_eq!(d.retry_after(), Some(Duration::from_secs(3)));
//!
//! // Your own rule: only timeouts count against the breaker.
//! let only_timeouts = classify_fn(|r: &Result<u32, std::io::Error>| match r {
//!     Err(e) if e.kind() == std::io::ErrorKind::TimedOut => Decision::failure(),
//!     Err(_) => Decision::ignored(),
//!     Ok(_) => Decision::success(),
//! });
//! assert!(only_timeouts.classify(&Err(std::io::ErrorKind::TimedOut.into())).is_failure());
//! ```

use std::fmt;
use std::time::{Duration, SystemTime};

/// How a call ended, as far as health accounting is concerned.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Outcome {
    /// The call succeeded; it counts for the callee's health.
    Success,
    /// The call failed in a way that counts against the callee (a breaker
    /// or outlier detector records it).
    Failure,
    /// The call is not evidence either way (for example a cancelled call or
    /// a client error the user chose to ignore); it is not recorded.
    Ignored,
}

/// Whether a call may be repeated.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RetryHint {
    /// Never retry this outcome.
    Never,
    /// A retry is allowed, after the retry layer's own backoff.
    Allowed,
    /// A retry is allowed no earlier than after this long (server pushback,
    /// e.g. `Retry-After`).
    After(Duration),
}

/// The classification of one call outcome.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Decision {
    /// Success, failure or ignored.
    pub outcome: Outcome,
    /// Whether (and when) a retry is allowed.
    pub retry: RetryHint,
}

impl Decision {
    /// A success that must not be retried.
    pub const fn success() -> Self {
        Self {
            outcome: Outcome::Success,
            retry: RetryHint::Never,
        }
    }

    /// A failure that may be retried.
    pub const fn failure() -> Self {
        Self {
            outcome: Outcome::Failure,
            retry: RetryHint::Allowed,
        }
    }

    /// An outcome that is neither recorded nor retried.
    pub const fn ignored() -> Self {
        Self {
            outcome: Outcome::Ignored,
            retry: RetryHint::Never,
        }
    }

    /// The same outcome with a different retry hint.
    pub const fn with_retry(self, retry: RetryHint) -> Self {
        Self {
            outcome: self.outcome,
            retry,
        }
    }

    /// `true` when the outcome counts against the callee.
    pub fn is_failure(&self) -> bool {
        self.outcome == Outcome::Failure
    }

    /// `true` when the outcome counts for the callee.
    pub fn is_success(&self) -> bool {
        self.outcome == Outcome::Success
    }

    /// `true` when a retry is allowed.
    pub fn is_retryable(&self) -> bool {
        !matches!(self.retry, RetryHint::Never)
    }

    /// The server's pushback, if it gave one.
    pub fn retry_after(&self) -> Option<Duration> {
        match self.retry {
            RetryHint::After(d) => Some(d),
            _ => None,
        }
    }
}

/// Classifies the outcome of a call returning `Result<T, E>`.
///
/// Implemented by [`ResultClassifier`], [`HttpClassifier`] and, through
/// [`classify_fn`], by any `Fn(&Result<T, E>) -> Decision`.
pub trait Classify<T, E> {
    /// Decides what `result` means.
    fn classify(&self, result: &Result<T, E>) -> Decision;
}

impl<T, E, C: Classify<T, E> + ?Sized> Classify<T, E> for std::sync::Arc<C> {
    fn classify(&self, result: &Result<T, E>) -> Decision {
        (**self).classify(result)
    }
}

// === impl ResultClassifier ===

/// The default classifier: `Ok` is a success, `Err` is a retryable failure.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ResultClassifier;

impl<T, E> Classify<T, E> for ResultClassifier {
    #[inline]
    fn classify(&self, result: &Result<T, E>) -> Decision {
        match result {
            Ok(_) => Decision::success(),
            Err(_) => Decision::failure(),
        }
    }
}

// === impl ClassifyFn ===

/// A classifier made from a closure; see [`classify_fn`].
#[derive(Clone, Copy)]
pub struct ClassifyFn<F> {
    f: F,
}

/// Uses `f` as a classifier.
pub fn classify_fn<F>(f: F) -> ClassifyFn<F> {
    ClassifyFn { f }
}

impl<F> fmt::Debug for ClassifyFn<F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ClassifyFn")
            .field("f", &std::any::type_name::<F>())
            .finish()
    }
}

impl<T, E, F> Classify<T, E> for ClassifyFn<F>
where
    F: Fn(&Result<T, E>) -> Decision,
{
    #[inline]
    fn classify(&self, result: &Result<T, E>) -> Decision {
        (self.f)(result)
    }
}

// === impl HttpClassifier ===

/// Classifies HTTP responses.
///
/// - `Err(_)` (connect errors, timeouts, broken connections): failure,
///   retryable.
/// - 5xx and 429: failure. 429, 502, 503 and 504 are retryable, honouring
///   `Retry-After` (delta-seconds or HTTP-date); other 5xx are not.
/// - Everything else, 4xx included: success, not retryable. A 404 says the
///   server is healthy.
///
/// Whether the *request* may be replayed (its method is idempotent, or it
/// carries an `Idempotency-Key`) is a separate question answered by
/// [`is_replayable`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct HttpClassifier {
    _priv: (),
}

impl<B, E> Classify<http::Response<B>, E> for HttpClassifier {
    fn classify(&self, result: &Result<http::Response<B>, E>) -> Decision {
        let Ok(res) = result else {
            return Decision::failure();
        };
        classify_status(res.status(), res.headers())
    }
}

/// Classifies a status code and its headers as [`HttpClassifier`] does.
pub fn classify_status(status: http::StatusCode, headers: &http::HeaderMap) -> Decision {
    use http::StatusCode as S;
    let failure = status.is_server_error() || status == S::TOO_MANY_REQUESTS;
    if !failure {
        return Decision::success();
    }
    let retryable = matches!(
        status,
        S::TOO_MANY_REQUESTS | S::BAD_GATEWAY | S::SERVICE_UNAVAILABLE | S::GATEWAY_TIMEOUT
    );
    let retry = if !retryable {
        RetryHint::Never
    } else {
        match retry_after(headers, SystemTime::now()) {
            Some(d) => RetryHint::After(d),
            None => RetryHint::Allowed,
        }
    };
    Decision {
        outcome: Outcome::Failure,
        retry,
    }
}

/// Parses `Retry-After` in either of its forms: delta-seconds (`120`) or an
/// HTTP-date (`Wed, 21 Oct 2015 07:28:00 GMT`), the latter measured from
/// `now`. A date in the past means "now" (zero). Malformed values yield
/// `None`.
pub fn retry_after(headers: &http::HeaderMap, now: SystemTime) -> Option<Duration> {
    let value = headers
        .get(http::header::RETRY_AFTER)?
        .to_str()
        .ok()?
        .trim();
    if value.bytes().all(|b| b.is_ascii_digit()) && !value.is_empty() {
        return value.parse::<u64>().ok().map(Duration::from_secs);
    }
    let at = httpdate::parse_http_date(value).ok()?;
    Some(at.duration_since(now).unwrap_or(Duration::ZERO))
}

/// `true` for methods RFC 9110 defines as idempotent: GET, HEAD, OPTIONS,
/// TRACE, PUT and DELETE.
pub fn is_idempotent(method: &http::Method) -> bool {
    use http::Method as M;
    matches!(
        *method,
        M::GET | M::HEAD | M::OPTIONS | M::TRACE | M::PUT | M::DELETE
    )
}

/// `true` when a request may be sent again: its method is idempotent or it
/// carries an `Idempotency-Key` header.
pub fn is_replayable<B>(req: &http::Request<B>) -> bool {
    is_idempotent(req.method()) || req.headers().contains_key("idempotency-key")
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn resp(status: u16, retry_after: Option<&str>) -> Result<http::Response<()>, ()> {
        let mut b = http::Response::builder().status(status);
        if let Some(v) = retry_after {
            b = b.header("retry-after", v);
        }
        Ok(b.body(()).unwrap())
    }

    #[test]
    fn result_classifier() {
        assert_eq!(
            ResultClassifier.classify(&Ok::<_, ()>(1)),
            Decision::success()
        );
        let d = ResultClassifier.classify(&Err::<(), _>("boom"));
        assert!(d.is_failure() && d.is_retryable());
    }

    #[test]
    fn http_statuses() {
        let c = HttpClassifier::default();
        assert!(c.classify(&resp(200, None)).is_success());
        assert!(c.classify(&resp(404, None)).is_success());
        assert!(!c.classify(&resp(404, None)).is_retryable());
        let d = c.classify(&resp(500, None));
        assert!(d.is_failure() && !d.is_retryable());
        for s in [502, 503, 504, 429] {
            let d = c.classify(&resp(s, None));
            assert!(d.is_failure() && d.is_retryable(), "{s}");
            assert_eq!(d.retry, RetryHint::Allowed);
        }
        let d = c.classify(&Err::<http::Response<()>, _>(()));
        assert!(d.is_failure() && d.is_retryable());
    }

    #[test]
    fn retry_after_both_forms() {
        let c = HttpClassifier::default();
        assert_eq!(
            c.classify(&resp(429, Some("120"))).retry_after(),
            Some(Duration::from_secs(120))
        );
        // a date in the past is "now"
        assert_eq!(
            c.classify(&resp(503, Some("Wed, 21 Oct 2015 07:28:00 GMT")))
                .retry_after(),
            Some(Duration::ZERO)
        );
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_445_412_000);
        let mut h = http::HeaderMap::new();
        h.insert(
            "retry-after",
            "Wed, 21 Oct 2015 07:28:00 GMT".parse().unwrap(),
        );
        assert_eq!(retry_after(&h, now), Some(Duration::from_secs(480)));
        h.insert("retry-after", "soon".parse().unwrap());
        assert_eq!(retry_after(&h, now), None);
        assert_eq!(
            c.classify(&resp(503, Some("-5"))).retry,
            RetryHint::Allowed,
            "malformed values fall back to plain retry"
        );
    }

    #[test]
    fn replayable_requests() {
        let get = http::Request::get("/").body(()).unwrap();
        let post = http::Request::post("/").body(()).unwrap();
        let keyed = http::Request::post("/")
            .header("idempotency-key", "abc")
            .body(())
            .unwrap();
        assert!(is_replayable(&get));
        assert!(!is_replayable(&post));
        assert!(is_replayable(&keyed));
    }

    proptest! {
        #[test]
        fn every_status_is_classified_consistently(code in 100u16..=599) {
            let d = HttpClassifier::default().classify(&resp(code, None));
            let status = http::StatusCode::from_u16(code).unwrap();
            prop_assert_eq!(d.is_failure(), status.is_server_error() || code == 429);
            prop_assert!(!d.is_retryable() || d.is_failure());
        }
    }
}
