//! The HTTP caching policy's configuration: setters, TOML and validation.

use std::fmt;
use std::time::Duration;

use http::HeaderName;
use rampart_core::error::{ConfigError, validate};
use serde::Deserialize;
use serde::de::{self, Deserializer, SeqAccess, Visitor};

/// The default largest body stored: 1 MiB.
pub const DEFAULT_MAX_BODY_BYTES: usize = 1024 * 1024;

/// The default cap on a stored response's time to live: one day.
pub const DEFAULT_MAX_TTL: Duration = Duration::from_secs(24 * 60 * 60);

/// The statuses RFC 9111 §4.2.2 calls heuristically cacheable (RFC 9110
/// §15.1): the default of [`HttpCachePolicy::cacheable_statuses`].
pub const HEURISTICALLY_CACHEABLE: [u16; 11] =
    [200, 203, 204, 300, 301, 308, 404, 405, 410, 414, 501];

/// Which HTTP responses a cache stores, under which key, and for how long.
///
/// The policy is data: it decides, the cache layer acts. Every setter says
/// its default; [`validate`](Self::validate) names the first field it
/// refuses. The same fields load from TOML, unknown keys refused:
///
/// ```
/// use std::time::Duration;
/// use rampart_cache::http::HttpCachePolicy;
///
/// let policy: HttpCachePolicy = toml::from_str(r#"
///     vary = ["Accept-Encoding", "accept-language"]
///     default_ttl = "30s"
///     max_ttl = "1h"
///     max_body_bytes = 262144
///     cacheable_statuses = [200, 404]
/// "#).unwrap();
/// policy.validate().unwrap();
/// assert_eq!(policy, HttpCachePolicy::new()
///     .vary([http::header::ACCEPT_ENCODING, http::header::ACCEPT_LANGUAGE])
///     .default_ttl(Duration::from_secs(30))
///     .max_ttl(Duration::from_secs(3600))
///     .max_body_bytes(256 * 1024)
///     .cacheable_statuses([200, 404]));
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct HttpCachePolicy {
    #[serde(deserialize_with = "header_names")]
    pub(crate) vary: Vec<HeaderName>,
    pub(crate) cache_private: bool,
    pub(crate) cache_set_cookie: bool,
    #[serde(with = "rampart_core::duration::option")]
    pub(crate) default_ttl: Option<Duration>,
    #[serde(with = "rampart_core::duration")]
    pub(crate) max_ttl: Duration,
    pub(crate) max_body_bytes: usize,
    pub(crate) cacheable_statuses: Vec<u16>,
}

impl Default for HttpCachePolicy {
    fn default() -> Self {
        Self {
            vary: Vec::new(),
            cache_private: false,
            cache_set_cookie: false,
            default_ttl: None,
            max_ttl: DEFAULT_MAX_TTL,
            max_body_bytes: DEFAULT_MAX_BODY_BYTES,
            cacheable_statuses: HEURISTICALLY_CACHEABLE.to_vec(),
        }
    }
}

impl HttpCachePolicy {
    /// The defaults: see each setter.
    pub fn new() -> Self {
        Self::default()
    }

    /// Request headers whose values are part of the key, so that responses
    /// that vary on them (`Vary: Accept-Encoding`) are stored once per
    /// value. A response whose `Vary` names a header not in this list is
    /// not stored: the key could not tell its variants apart. Defaults to
    /// none.
    pub fn vary(mut self, headers: impl IntoIterator<Item = HeaderName>) -> Self {
        self.vary = headers.into_iter().collect();
        self
    }

    /// Act as a private cache (one user's, RFC 9111 §1): store responses
    /// marked `private`, prefer `max-age` to `s-maxage`, and store answers
    /// to requests with `Authorization`. Defaults to off: a shared cache,
    /// which is what a layer in front of a service used by many clients is.
    pub fn cache_private(mut self, yes: bool) -> Self {
        self.cache_private = yes;
        self
    }

    /// Store responses that carry `Set-Cookie` (and replay the cookie to
    /// every client served from the cache). Defaults to off.
    pub fn cache_set_cookie(mut self, yes: bool) -> Self {
        self.cache_set_cookie = yes;
        self
    }

    /// How long to keep a response of a cacheable status that says nothing
    /// about its freshness (no `max-age`, `s-maxage` or `Expires`): a
    /// heuristic lifetime (RFC 9111 §4.2.2). Defaults to none: such
    /// responses are not stored.
    pub fn default_ttl(mut self, ttl: Duration) -> Self {
        self.default_ttl = Some(ttl);
        self
    }

    /// The longest any response is kept, whatever it says. Defaults to one
    /// day.
    pub fn max_ttl(mut self, ttl: Duration) -> Self {
        self.max_ttl = ttl;
        self
    }

    /// The largest body, in bytes, that is collected and stored; a larger
    /// one passes through to the caller whole and is not stored. Defaults
    /// to 1 MiB.
    pub fn max_body_bytes(mut self, bytes: usize) -> Self {
        self.max_body_bytes = bytes;
        self
    }

    /// The response statuses that may be stored (each 100–599, not 1xx,
    /// 206 or 304; at least one). A response of another status is never
    /// stored, even with an explicit `max-age`. Defaults to the
    /// heuristically cacheable statuses, [`HEURISTICALLY_CACHEABLE`]: 200,
    /// 203, 204, 300, 301, 308, 404, 405, 410, 414 and 501.
    pub fn cacheable_statuses(mut self, statuses: impl IntoIterator<Item = u16>) -> Self {
        self.cacheable_statuses = statuses.into_iter().collect();
        self
    }

    /// The configured `Vary` request headers.
    pub fn vary_headers(&self) -> &[HeaderName] {
        &self.vary
    }

    /// The largest body stored, in bytes.
    pub fn body_limit(&self) -> usize {
        self.max_body_bytes
    }

    /// The longest time to live [`freshness`](Self::freshness) returns.
    pub fn ttl_cap(&self) -> Duration {
        self.max_ttl
    }

    /// Checks the policy, naming the first field it refuses.
    pub fn validate(&self) -> Result<(), ConfigError> {
        for (i, name) in self.vary.iter().enumerate() {
            if self.vary[..i].contains(name) {
                return Err(ConfigError::new("vary", format!("names {name:?} twice")));
            }
            if name.as_str() == "*" {
                return Err(ConfigError::new(
                    "vary",
                    "\"*\" is not a request header (responses with `Vary: *` are never stored)",
                ));
            }
        }
        validate::non_zero_duration("max_ttl", self.max_ttl)?;
        if let Some(ttl) = self.default_ttl {
            validate::non_zero_duration("default_ttl", ttl)?;
            if ttl > self.max_ttl {
                return Err(ConfigError::new(
                    "default_ttl",
                    format!("must be at most max_ttl ({:?}), got {ttl:?}", self.max_ttl),
                ));
            }
        }
        validate::non_zero("max_body_bytes", self.max_body_bytes as u64)?;
        if self.cacheable_statuses.is_empty() {
            return Err(ConfigError::new(
                "cacheable_statuses",
                "must name at least one status (leave the cache out instead)",
            ));
        }
        for &status in &self.cacheable_statuses {
            if !(200..=599).contains(&status) || status == 206 || status == 304 {
                return Err(ConfigError::new(
                    "cacheable_statuses",
                    format!(
                        "{status} cannot be stored (a final status within 200..=599, \
                         not 206 or 304)"
                    ),
                ));
            }
        }
        Ok(())
    }

    pub(crate) fn is_cacheable_status(&self, status: http::StatusCode) -> bool {
        self.cacheable_statuses.contains(&status.as_u16())
    }
}

// === Deserialize header names ===

fn header_names<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<HeaderName>, D::Error> {
    struct Names;

    impl<'de> Visitor<'de> for Names {
        type Value = Vec<HeaderName>;

        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("a list of request header names such as [\"accept-encoding\"]")
        }

        fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
            let mut names = Vec::new();
            while let Some(name) = seq.next_element::<String>()? {
                let parsed = HeaderName::from_bytes(name.as_bytes()).map_err(|_| {
                    de::Error::custom(format!("vary: {name:?} is not a valid header name"))
                })?;
                names.push(parsed);
            }
            Ok(names)
        }
    }

    d.deserialize_seq(Names)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn refused(policy: HttpCachePolicy) -> &'static str {
        policy.validate().unwrap_err().field()
    }

    #[test]
    fn defaults_are_valid() {
        let policy = HttpCachePolicy::new();
        policy.validate().unwrap();
        assert!(!policy.cache_private && !policy.cache_set_cookie);
        assert_eq!(policy.default_ttl, None);
        assert_eq!(policy.body_limit(), 1024 * 1024);
        assert_eq!(policy.ttl_cap(), DEFAULT_MAX_TTL);
        assert_eq!(policy.cacheable_statuses, HEURISTICALLY_CACHEABLE);
        assert!(policy.vary_headers().is_empty());
    }

    #[test]
    fn refusals_name_the_field() {
        let p = HttpCachePolicy::new;
        assert_eq!(refused(p().max_ttl(Duration::ZERO)), "max_ttl");
        assert_eq!(refused(p().default_ttl(Duration::ZERO)), "default_ttl");
        assert_eq!(
            refused(
                p().max_ttl(Duration::from_secs(5))
                    .default_ttl(Duration::from_secs(6))
            ),
            "default_ttl"
        );
        assert_eq!(refused(p().max_body_bytes(0)), "max_body_bytes");
        assert_eq!(refused(p().cacheable_statuses([])), "cacheable_statuses");
        for bad in [100, 199, 206, 304, 600, 0] {
            assert_eq!(
                refused(p().cacheable_statuses([200, bad])),
                "cacheable_statuses"
            );
        }
        assert_eq!(
            refused(p().vary([http::header::ACCEPT, http::header::ACCEPT])),
            "vary"
        );
        assert_eq!(refused(p().vary([HeaderName::from_static("*")])), "vary");
        p().cacheable_statuses([200, 302, 307, 599])
            .validate()
            .unwrap();
    }

    #[test]
    fn toml_refuses_unknown_keys_and_bad_names() {
        let err = toml::from_str::<HttpCachePolicy>("max_age = 5").unwrap_err();
        assert!(err.to_string().contains("unknown field"), "{err}");
        let err = toml::from_str::<HttpCachePolicy>("vary = [\"bad name\"]").unwrap_err();
        assert!(err.to_string().contains("vary"), "{err}");
        let policy: HttpCachePolicy =
            toml::from_str("cache_private = true\ncache_set_cookie = true").unwrap();
        assert_eq!(
            policy,
            HttpCachePolicy::new()
                .cache_private(true)
                .cache_set_cookie(true)
        );
    }
}
