//! Whether a response may be stored, and for how long (RFC 9111 §3, §4.2).

use std::fmt;
use std::time::{Duration, SystemTime};

use http::header::{AGE, DATE, EXPIRES, HeaderValue, SET_COOKIE, VARY};
use http::{HeaderMap, response};

use crate::http::HttpCachePolicy;
use crate::http::RequestFacts;
use crate::http::cache_control::{CacheControl, DELTA_SECONDS_MAX, parse_delta_seconds, trim};

/// The verdict of [`HttpCachePolicy::freshness`] on a response.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Storability {
    /// Store the response for `ttl` (more than zero, at most the policy's
    /// `max_ttl`).
    #[non_exhaustive]
    Store {
        /// How long the response stays fresh from now.
        ttl: Duration,
        /// The response forbids being served stale (`must-revalidate`,
        /// `proxy-revalidate`, or `s-maxage` in a shared cache, RFC 9111
        /// §4.2.4): a cache with stale-while-revalidate must not serve it
        /// once `ttl` has passed.
        no_stale: bool,
        /// The age the upstream reported (`Age`), already taken off
        /// `ttl`; give it to [`age_header`] on every hit.
        upstream_age: Duration,
    },
    /// Do not store the response; it goes to the caller as it is.
    DoNotStore(Reason),
}

impl Storability {
    /// The time to live, when the response may be stored.
    pub fn ttl(&self) -> Option<Duration> {
        match *self {
            Storability::Store { ttl, .. } => Some(ttl),
            Storability::DoNotStore(_) => None,
        }
    }
}

/// Why a response is not stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Reason {
    /// Its status is not one of the policy's `cacheable_statuses`.
    Status,
    /// `Cache-Control: no-store`.
    NoStore,
    /// `Cache-Control: private` (or `private="..."`) in a shared cache.
    Private,
    /// `Cache-Control: no-cache` (or `no-cache="..."`): it may only be
    /// served after revalidation, which this cache does not do, so it is
    /// not worth storing.
    NoCache,
    /// It sets a cookie and the policy does not cache those.
    SetCookie,
    /// `Vary: *`: no request can be known to match it.
    VaryAny,
    /// Its `Vary` names a request header that is not in the policy's
    /// `vary` list, so the key cannot tell its variants apart.
    VaryUnkeyed,
    /// The request carried `Authorization` and the response does not
    /// say a shared cache may store it (`public`, `s-maxage` or
    /// `must-revalidate`, RFC 9111 §3.5).
    Authorization,
    /// No `max-age`, `s-maxage` or `Expires`, and no `default_ttl`.
    NoFreshness,
    /// It is already stale: its lifetime is zero (an `Expires` in the
    /// past or invalid, `max-age=0`, a malformed `max-age`) or its `Age`
    /// has used it up.
    Stale,
}

impl Reason {
    /// A short lowercase name, for logs and metric labels.
    pub fn as_str(&self) -> &'static str {
        match self {
            Reason::Status => "status",
            Reason::NoStore => "no_store",
            Reason::Private => "private",
            Reason::NoCache => "no_cache",
            Reason::SetCookie => "set_cookie",
            Reason::VaryAny => "vary_any",
            Reason::VaryUnkeyed => "vary_unkeyed",
            Reason::Authorization => "authorization",
            Reason::NoFreshness => "no_freshness",
            Reason::Stale => "stale",
        }
    }
}

impl fmt::Display for Reason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

// === impl HttpCachePolicy: freshness ===

impl HttpCachePolicy {
    /// Whether the response `res` to the request `req` may be stored, and
    /// for how long, judged at `now` (when the response arrived).
    ///
    /// In order: the status must be one of `cacheable_statuses`; then
    /// `no-store`, `private` (shared cache), `no-cache`, `Set-Cookie`
    /// (unless `cache_set_cookie`), `Vary: *`, a `Vary` naming a header
    /// outside the `vary` list, and `Authorization` on the request
    /// (shared cache, unless `public`, `s-maxage` or `must-revalidate`)
    /// each refuse it. Its lifetime is the first of: `s-maxage` (shared
    /// cache only), `max-age`, `Expires − Date` (`Date` missing or
    /// invalid: `now`; `Expires` invalid: already expired), `default_ttl`.
    /// The upstream's `Age` is taken off, and the result capped at
    /// `max_ttl`; a lifetime of zero is not stored.
    ///
    /// `Age` is trusted and `Date` is used only against `Expires`, not to
    /// estimate an age from this host's clock (RFC 9111's apparent age),
    /// so that an upstream with a wrong clock does not make every
    /// response uncacheable.
    pub fn freshness(
        &self,
        req: impl Into<RequestFacts>,
        res: &response::Parts,
        now: SystemTime,
    ) -> Storability {
        match self.lifetime(req.into(), res, now) {
            Ok((lifetime, no_stale)) => {
                let upstream_age = upstream_age(&res.headers);
                let ttl = lifetime.saturating_sub(upstream_age).min(self.max_ttl);
                if ttl.is_zero() {
                    Storability::DoNotStore(Reason::Stale)
                } else {
                    Storability::Store {
                        ttl,
                        no_stale,
                        upstream_age,
                    }
                }
            }
            Err(reason) => Storability::DoNotStore(reason),
        }
    }

    /// The freshness lifetime and whether serving stale is forbidden, or
    /// why the response is not stored.
    fn lifetime(
        &self,
        req: RequestFacts,
        res: &response::Parts,
        now: SystemTime,
    ) -> Result<(Duration, bool), Reason> {
        let shared = !self.cache_private;
        let headers = &res.headers;
        if !self.is_cacheable_status(res.status) {
            return Err(Reason::Status);
        }
        let cc = CacheControl::from_headers(headers);
        if cc.no_store {
            return Err(Reason::NoStore);
        }
        if cc.private && shared {
            return Err(Reason::Private);
        }
        if cc.no_cache {
            return Err(Reason::NoCache);
        }
        if !self.cache_set_cookie && headers.contains_key(SET_COOKIE) {
            return Err(Reason::SetCookie);
        }
        self.check_vary(headers)?;
        if shared
            && req.has_authorization()
            && !(cc.public || cc.s_maxage.is_some() || cc.must_revalidate)
        {
            return Err(Reason::Authorization);
        }
        let no_stale =
            cc.must_revalidate || (shared && (cc.proxy_revalidate || cc.s_maxage.is_some()));
        let seconds = match (shared.then_some(cc.s_maxage).flatten(), cc.max_age) {
            (Some(s), _) | (None, Some(s)) => s,
            (None, None) if headers.contains_key(EXPIRES) => {
                return Ok((expires_lifetime(headers, now), no_stale));
            }
            (None, None) => {
                return self
                    .default_ttl
                    .map(|t| (t, no_stale))
                    .ok_or(Reason::NoFreshness);
            }
        };
        Ok((Duration::from_secs(seconds), no_stale))
    }

    /// Refuses `Vary: *` and a `Vary` naming a header outside the list.
    fn check_vary(&self, headers: &HeaderMap) -> Result<(), Reason> {
        for line in headers.get_all(VARY) {
            for member in line.as_bytes().split(|&b| b == b',') {
                let name = trim(member);
                if name.is_empty() {
                    continue;
                }
                if name == b"*" {
                    return Err(Reason::VaryAny);
                }
                if !self
                    .vary
                    .iter()
                    .any(|v| v.as_str().as_bytes().eq_ignore_ascii_case(name))
                {
                    return Err(Reason::VaryUnkeyed);
                }
            }
        }
        Ok(())
    }
}

/// `Expires − Date`, zero when `Expires` is invalid or past; `now` stands
/// in for a missing or invalid `Date`.
fn expires_lifetime(headers: &HeaderMap, now: SystemTime) -> Duration {
    let Some(expires) = http_date(headers, EXPIRES) else {
        return Duration::ZERO;
    };
    let date = http_date(headers, DATE).unwrap_or(now);
    expires.duration_since(date).unwrap_or(Duration::ZERO)
}

fn http_date(headers: &HeaderMap, name: http::HeaderName) -> Option<SystemTime> {
    let value = headers.get(name)?.to_str().ok()?;
    httpdate::parse_http_date(value.trim()).ok()
}

/// The upstream's `Age`: its first member (RFC 9111 §5.1), zero when
/// missing or invalid.
fn upstream_age(headers: &HeaderMap) -> Duration {
    headers
        .get(AGE)
        .and_then(|v| {
            let first = v.as_bytes().split(|&b| b == b',').next()?;
            parse_delta_seconds(trim(first))
        })
        .map_or(Duration::ZERO, Duration::from_secs)
}

/// The `Age` header to send with a response served from the cache: the
/// age the upstream reported plus the time since the response was stored,
/// in whole seconds (at most 2³¹, RFC 9111 §5.1). A clock that went
/// backwards counts as no time spent in the cache.
///
/// The cache layer *replaces* the stored response's `Age` with this value
/// (`headers.insert`, not `append`).
///
/// ```
/// use std::time::{Duration, SystemTime};
/// use rampart_cache::http::age_header;
///
/// let stored = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000);
/// let now = stored + Duration::from_millis(2_900);
/// assert_eq!(age_header(stored, now, Duration::from_secs(10)), "12");
/// ```
pub fn age_header(stored_at: SystemTime, now: SystemTime, upstream_age: Duration) -> HeaderValue {
    let resident = now.duration_since(stored_at).unwrap_or(Duration::ZERO);
    let age = upstream_age
        .as_secs()
        .saturating_add(resident.as_secs())
        .min(DELTA_SECONDS_MAX);
    HeaderValue::from(age)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn res(headers: &[(&str, &str)]) -> response::Parts {
        let mut b = http::Response::builder().status(200);
        for (k, v) in headers {
            b = b.header(*k, *v);
        }
        b.body(()).unwrap().into_parts().0
    }

    fn req() -> http::Request<()> {
        http::Request::get("/").body(()).unwrap()
    }

    #[test]
    fn age_is_first_member_and_ignored_when_invalid() {
        assert_eq!(
            upstream_age(&res(&[("age", "7")]).headers),
            Duration::from_secs(7)
        );
        assert_eq!(
            upstream_age(&res(&[("age", " 7 , 9")]).headers),
            Duration::from_secs(7)
        );
        assert_eq!(upstream_age(&res(&[("age", "-3")]).headers), Duration::ZERO);
        assert_eq!(upstream_age(&res(&[("age", "x")]).headers), Duration::ZERO);
        assert_eq!(upstream_age(&res(&[]).headers), Duration::ZERO);
    }

    #[test]
    fn age_header_sums_and_clamps() {
        let t0 = SystemTime::UNIX_EPOCH + Duration::from_secs(100);
        assert_eq!(age_header(t0, t0, Duration::ZERO), "0");
        assert_eq!(
            age_header(t0, t0 - Duration::from_secs(5), Duration::from_secs(3)),
            "3"
        );
        assert_eq!(
            age_header(
                t0,
                t0 + Duration::from_secs(u64::from(u32::MAX)),
                Duration::MAX
            ),
            "2147483648"
        );
    }

    #[test]
    fn no_stale_flags() {
        let policy = HttpCachePolicy::new();
        let no_stale = |h: &[(&str, &str)], p: &HttpCachePolicy| match p.freshness(
            &req(),
            &res(h),
            SystemTime::now(),
        ) {
            Storability::Store { no_stale, .. } => no_stale,
            other => panic!("{other:?}"),
        };
        assert!(!no_stale(&[("cache-control", "max-age=5")], &policy));
        assert!(no_stale(
            &[("cache-control", "max-age=5, must-revalidate")],
            &policy
        ));
        assert!(no_stale(
            &[("cache-control", "max-age=5, proxy-revalidate")],
            &policy
        ));
        assert!(no_stale(&[("cache-control", "s-maxage=5")], &policy));
        let private = HttpCachePolicy::new().cache_private(true);
        assert!(!no_stale(
            &[("cache-control", "max-age=5, proxy-revalidate")],
            &private
        ));
    }

    #[test]
    fn reason_names() {
        assert_eq!(Reason::VaryUnkeyed.to_string(), "vary_unkeyed");
        assert_eq!(Reason::NoStore.as_str(), "no_store");
    }
}
