//! [`StoredResponse`]: what the HTTP adapter keeps of a response, and the
//! clock it dates responses with.

use std::time::{Duration, SystemTime};

use bytes::Bytes;
use http::header::{AGE, HeaderName, HeaderValue};
use http::{HeaderMap, Response, StatusCode, Version};
use serde::de::{self, Deserializer};
use serde::ser::Serializer;
use serde::{Deserialize, Serialize};

use crate::entry::Lifetime;
use crate::http::adapter::body::HttpCacheBody;
use crate::http::age_header;

/// A response as the HTTP adapter stores it: status, version, headers and
/// the whole body, with when it was stored and for how long it is fresh.
///
/// Hits are rebuilt from it with an `Age` header (replacing the stored
/// one). It serializes (serde) for the remote tier: headers as bytes, the
/// time stored as wall-clock time, so that another process computes the
/// same age and remaining freshness.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredResponse {
    status: StatusCode,
    version: Version,
    headers: HeaderMap,
    body: Bytes,
    stored_at: SystemTime,
    upstream_age: Duration,
    ttl: Duration,
    no_stale: bool,
}

/// When a response was judged and what the policy said about it.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Dated {
    pub(crate) stored_at: SystemTime,
    pub(crate) ttl: Duration,
    pub(crate) no_stale: bool,
    pub(crate) upstream_age: Duration,
}

impl StoredResponse {
    pub(crate) fn new<T>(res: &Response<T>, body: Bytes, dated: Dated) -> Self {
        Self {
            status: res.status(),
            version: res.version(),
            headers: res.headers().clone(),
            body,
            stored_at: dated.stored_at,
            upstream_age: dated.upstream_age,
            ttl: dated.ttl,
            no_stale: dated.no_stale,
        }
    }

    /// The status.
    pub fn status(&self) -> StatusCode {
        self.status
    }

    /// The HTTP version.
    pub fn version(&self) -> Version {
        self.version
    }

    /// The headers as the upstream sent them (the `Age` of a hit is
    /// computed on the way out).
    pub fn headers(&self) -> &HeaderMap {
        &self.headers
    }

    /// The whole body.
    pub fn body(&self) -> &Bytes {
        &self.body
    }

    /// When the response was received from the upstream.
    pub fn stored_at(&self) -> SystemTime {
        self.stored_at
    }

    /// The `Age` the upstream reported.
    pub fn upstream_age(&self) -> Duration {
        self.upstream_age
    }

    /// How long it is fresh from [`stored_at`](Self::stored_at).
    pub fn ttl(&self) -> Duration {
        self.ttl
    }

    /// It must not be served stale (`must-revalidate`, `s-maxage`).
    pub fn no_stale(&self) -> bool {
        self.no_stale
    }

    /// Its remaining freshness at `now`, as the generic layer's lifetime:
    /// never stale-served when `no_stale`, not cached once used up.
    pub(crate) fn lifetime(&self, now: SystemTime) -> Lifetime {
        let expires = self.stored_at + self.ttl;
        let left = expires.duration_since(now).unwrap_or(Duration::ZERO);
        if self.no_stale {
            Lifetime::ForNoStale(left)
        } else {
            Lifetime::For(left)
        }
    }

    /// The response to serve at `now`, with its `Age`.
    pub(crate) fn to_response<B>(&self, now: SystemTime) -> Response<HttpCacheBody<B>> {
        let mut res = Response::new(HttpCacheBody::full(self.body.clone()));
        *res.status_mut() = self.status;
        *res.version_mut() = self.version;
        let headers = res.headers_mut();
        headers.clone_from(&self.headers);
        headers.insert(AGE, age_header(self.stored_at, now, self.upstream_age));
        res
    }

    /// Its weight in bytes (body and headers), for a byte-bounded cache.
    pub(crate) fn weight(&self) -> u32 {
        let headers: usize = self
            .headers
            .iter()
            .map(|(name, value)| name.as_str().len() + value.len())
            .sum();
        u32::try_from(self.body.len().saturating_add(headers)).unwrap_or(u32::MAX)
    }
}

// === A clock for Age ===

/// Wall-clock time that advances with tokio's clock: the wall time when
/// the cache was built plus tokio's time since, so that `Age` and
/// remaining freshness follow paused time in tests.
#[derive(Debug, Clone, Copy)]
pub(crate) struct WallClock {
    wall: SystemTime,
    base: tokio::time::Instant,
}

impl WallClock {
    pub(crate) fn new() -> Self {
        Self {
            wall: SystemTime::now(),
            base: tokio::time::Instant::now(),
        }
    }

    pub(crate) fn now(&self) -> SystemTime {
        self.wall + self.base.elapsed()
    }
}

// === serde ===

/// The serialized form: plain types, validated on the way back.
#[derive(Serialize, Deserialize)]
struct Wire<H, B> {
    status: u16,
    version: u8,
    headers: Vec<(H, B)>,
    body: B,
    stored_at: SystemTime,
    upstream_age: Duration,
    ttl: Duration,
    no_stale: bool,
}

const VERSIONS: [Version; 5] = [
    Version::HTTP_09,
    Version::HTTP_10,
    Version::HTTP_11,
    Version::HTTP_2,
    Version::HTTP_3,
];

impl Serialize for StoredResponse {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let version = VERSIONS.iter().position(|v| *v == self.version);
        Wire {
            status: self.status.as_u16(),
            version: version.map_or(u8::MAX, |i| i as u8),
            headers: self
                .headers
                .iter()
                .map(|(name, value)| (name.as_str(), value.as_bytes()))
                .collect(),
            body: &self.body[..],
            stored_at: self.stored_at,
            upstream_age: self.upstream_age,
            ttl: self.ttl,
            no_stale: self.no_stale,
        }
        .serialize(s)
    }
}

impl<'de> Deserialize<'de> for StoredResponse {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let wire = Wire::<String, Vec<u8>>::deserialize(d)?;
        let status = StatusCode::from_u16(wire.status).map_err(de::Error::custom)?;
        let version = *VERSIONS
            .get(usize::from(wire.version))
            .ok_or_else(|| de::Error::custom("unknown HTTP version"))?;
        let mut headers = HeaderMap::with_capacity(wire.headers.len());
        for (name, value) in wire.headers {
            let name = HeaderName::from_bytes(name.as_bytes()).map_err(de::Error::custom)?;
            let value = HeaderValue::from_bytes(&value).map_err(de::Error::custom)?;
            headers.append(name, value);
        }
        Ok(Self {
            status,
            version,
            headers,
            body: Bytes::from(wire.body),
            stored_at: wire.stored_at,
            upstream_age: wire.upstream_age,
            ttl: wire.ttl,
            no_stale: wire.no_stale,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stored() -> StoredResponse {
        let res = Response::builder()
            .status(203)
            .version(Version::HTTP_2)
            .header("cache-control", "max-age=60")
            .header("x-multi", "a")
            .header("x-multi", "b")
            .body(())
            .unwrap();
        let dated = Dated {
            stored_at: SystemTime::UNIX_EPOCH + Duration::from_secs(1_000),
            ttl: Duration::from_secs(60),
            no_stale: true,
            upstream_age: Duration::from_secs(3),
        };
        StoredResponse::new(&res, Bytes::from_static(b"hello"), dated)
    }

    #[test]
    fn serde_round_trip_keeps_every_field() {
        let s = stored();
        let bytes = postcard::to_allocvec(&s).unwrap();
        let back: StoredResponse = postcard::from_bytes(&bytes).unwrap();
        assert_eq!(back, s);
        let multi: Vec<_> = back.headers().get_all("x-multi").iter().collect();
        assert_eq!(multi, ["a", "b"]);
    }

    #[test]
    fn bad_bytes_do_not_decode() {
        let mut wire = Wire {
            status: 99,
            version: 2,
            headers: vec![("ok".to_string(), b"v".to_vec())],
            body: Vec::new(),
            stored_at: SystemTime::UNIX_EPOCH,
            upstream_age: Duration::ZERO,
            ttl: Duration::ZERO,
            no_stale: false,
        };
        let decode = |w: &Wire<String, Vec<u8>>| {
            postcard::from_bytes::<StoredResponse>(&postcard::to_allocvec(w).unwrap())
        };
        assert!(decode(&wire).is_err(), "status 99");
        wire.status = 200;
        assert!(decode(&wire).is_ok());
        wire.version = 9;
        assert!(decode(&wire).is_err(), "version 9");
        wire.version = 2;
        wire.headers[0].0 = "bad name".into();
        assert!(decode(&wire).is_err(), "header name");
    }

    #[test]
    fn lifetime_is_what_is_left() {
        let s = stored();
        let at = |secs| s.stored_at + Duration::from_secs(secs);
        assert_eq!(
            s.lifetime(at(0)),
            Lifetime::ForNoStale(Duration::from_secs(60))
        );
        assert_eq!(
            s.lifetime(at(45)),
            Lifetime::ForNoStale(Duration::from_secs(15))
        );
        assert_eq!(s.lifetime(at(90)), Lifetime::ForNoStale(Duration::ZERO));
        let res = s.to_response::<()>(at(7));
        assert_eq!(res.headers()["age"], "10");
        assert_eq!(res.status(), 203);
        assert_eq!(s.weight() as usize, 5 + "cache-control".len() + 10 + 2 * 8);
    }
}
