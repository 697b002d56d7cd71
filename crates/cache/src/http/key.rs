//! The cache key of an HTTP request, and what the response rules need to
//! know about the request.

use std::fmt::{self, Write as _};

use http::header::{AUTHORIZATION, HOST};
use http::uri::Authority;
use http::{HeaderMap, Method, Request, Uri, request};
use serde::{Deserialize, Serialize};

use crate::http::HttpCachePolicy;
use crate::http::cache_control::{CacheControl, trim};

/// The key a response is stored under: method, target URI and the values
/// of the configured `Vary` request headers.
///
/// Two requests get the same key exactly when a response to one may
/// answer the other. Its [`Display`](fmt::Display) form is stable and
/// unambiguous (distinct keys print differently), for stores keyed by
/// strings such as Redis:
///
/// ```
/// use rampart_cache::http::HttpCachePolicy;
///
/// let policy = HttpCachePolicy::new().vary([http::header::ACCEPT_ENCODING]);
/// let req = http::Request::get("https://Example.com/a?b=1")
///     .header("accept-encoding", "gzip")
///     .body(())
///     .unwrap();
/// let key = policy.cache_key(&req).unwrap();
/// assert_eq!(key.to_string(), "GET https://example.com/a?b=1 accept-encoding=gzip");
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct HttpCacheKey {
    method: KeyMethod,
    target: String,
    vary: Vec<(String, Option<Vec<u8>>)>,
}

/// The methods whose responses are stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
enum KeyMethod {
    Get,
    Head,
}

impl HttpCacheKey {
    /// `GET` or `HEAD`.
    pub fn method(&self) -> Method {
        match self.method {
            KeyMethod::Get => Method::GET,
            KeyMethod::Head => Method::HEAD,
        }
    }

    /// The target URI: `scheme://authority` when the request has them
    /// (scheme and host lower-cased), else the `Host` header (lower-cased)
    /// when there is one, then the path and query as sent.
    pub fn target(&self) -> &str {
        &self.target
    }

    /// Each configured `Vary` header with its value: `None` when the
    /// request did not carry it, several field lines joined with `", "`,
    /// spaces around each line trimmed.
    pub fn vary_values(&self) -> impl Iterator<Item = (&str, Option<&[u8]>)> {
        self.vary
            .iter()
            .map(|(name, value)| (name.as_str(), value.as_deref()))
    }
}

impl fmt::Display for HttpCacheKey {
    /// `METHOD target` then ` name=value` per `Vary` header (value bytes
    /// other than visible ASCII, and `%`, percent-encoded), or ` name!`
    /// when the request did not carry it.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let method = match self.method {
            KeyMethod::Get => "GET",
            KeyMethod::Head => "HEAD",
        };
        write!(f, "{method} {}", self.target)?;
        for (name, value) in &self.vary {
            write!(f, " {name}")?;
            match value {
                None => f.write_char('!')?,
                Some(value) => {
                    f.write_char('=')?;
                    for &b in value {
                        if b.is_ascii_graphic() && b != b'%' {
                            f.write_char(char::from(b))?;
                        } else {
                            write!(f, "%{b:02X}")?;
                        }
                    }
                }
            }
        }
        Ok(())
    }
}

// === impl HttpCachePolicy: keys ===

impl HttpCachePolicy {
    /// The key to look `req` up under and store its response under, or
    /// `None` when the request must bypass the cache: a method other than
    /// `GET` or `HEAD`, `Cache-Control: no-store` on the request, or a
    /// target that could be confused with another (a `Host` header that
    /// is not a valid authority, or a path starting with `//` and no host
    /// at all).
    ///
    /// The method is part of the key: a `HEAD` is answered from a stored
    /// `HEAD` response, never from a stored `GET` (simpler, and no body
    /// has to be stripped; it costs a second entry for URIs asked both
    /// ways).
    pub fn cache_key<B>(&self, req: &Request<B>) -> Option<HttpCacheKey> {
        self.key_of(req.method(), req.uri(), req.headers())
    }

    /// [`cache_key`](Self::cache_key) for a request split into parts.
    pub fn cache_key_parts(&self, parts: &request::Parts) -> Option<HttpCacheKey> {
        self.key_of(&parts.method, &parts.uri, &parts.headers)
    }

    fn key_of(&self, method: &Method, uri: &Uri, headers: &HeaderMap) -> Option<HttpCacheKey> {
        let method = match *method {
            Method::GET => KeyMethod::Get,
            Method::HEAD => KeyMethod::Head,
            _ => return None,
        };
        if CacheControl::from_headers(headers).no_store {
            return None;
        }
        let target = target(uri, headers)?;
        let vary = self
            .vary
            .iter()
            .map(|name| (name.as_str().to_owned(), joined_values(headers, name)))
            .collect();
        Some(HttpCacheKey {
            method,
            target,
            vary,
        })
    }
}

/// `scheme://authority/path?query`, the authority's host lower-cased; the
/// `Host` header (`//host/path?query`) stands in for a missing authority.
/// `None` (do not cache) when that cannot be told apart from another
/// request's target: a `Host` that is not a valid authority (`a/b` would
/// be read as host `a` and path `/b…`), or a path starting with `//` and
/// no host at all.
fn target(uri: &Uri, headers: &HeaderMap) -> Option<String> {
    let path = uri.path_and_query().map_or("/", |pq| pq.as_str());
    let mut out = String::with_capacity(path.len() + 32);
    if let Some(scheme) = uri.scheme_str() {
        out.push_str(&scheme.to_ascii_lowercase());
        out.push_str("://");
    }
    if let Some(authority) = uri.authority() {
        push_authority(&mut out, authority);
    } else if let Some(host) = headers.get(HOST) {
        let host = Authority::try_from(trim(host.as_bytes())).ok()?;
        out.push_str("//");
        push_authority(&mut out, &host);
    } else if path.starts_with("//") {
        return None;
    }
    if !path.starts_with('/') && !out.is_empty() {
        out.push('/');
    }
    out.push_str(path);
    Some(out)
}

/// Userinfo and port as sent; the host, which is case-insensitive,
/// lower-cased.
fn push_authority(out: &mut String, authority: &Authority) {
    let text = authority.as_str();
    if let Some(at) = text.rfind('@') {
        out.push_str(&text[..=at]);
    }
    out.push_str(&authority.host().to_ascii_lowercase());
    if let Some(port) = authority.port() {
        out.push(':');
        out.push_str(port.as_str());
    }
}

/// Every field line of `name`, trimmed and joined with `", "`; `None`
/// when there is none.
fn joined_values(headers: &HeaderMap, name: &http::HeaderName) -> Option<Vec<u8>> {
    let mut values = headers.get_all(name).iter();
    let mut joined = trim(values.next()?.as_bytes()).to_vec();
    for value in values {
        joined.extend_from_slice(b", ");
        joined.extend_from_slice(trim(value.as_bytes()));
    }
    Some(joined)
}

// === RequestFacts ===

/// What the response rules need to know about the request, taken before
/// the request is handed to the inner service (it is `Copy`, so a cache
/// layer keeps it beside the key at no cost).
///
/// Built from a request or its parts with `From`:
/// `RequestFacts::from(&req)`; [`HttpCachePolicy::freshness`] and
/// [`HttpCachePolicy::body_plan`] accept either directly.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RequestFacts {
    authorization: bool,
    head: bool,
}

impl RequestFacts {
    fn of(method: &Method, headers: &HeaderMap) -> Self {
        Self {
            authorization: headers.contains_key(AUTHORIZATION),
            head: method == Method::HEAD,
        }
    }

    /// The request carried `Authorization`.
    pub fn has_authorization(&self) -> bool {
        self.authorization
    }

    /// The request was a `HEAD` (its response has no body, whatever its
    /// `Content-Length` says).
    pub fn is_head(&self) -> bool {
        self.head
    }
}

impl<B> From<&Request<B>> for RequestFacts {
    fn from(req: &Request<B>) -> Self {
        Self::of(req.method(), req.headers())
    }
}

impl From<&request::Parts> for RequestFacts {
    fn from(parts: &request::Parts) -> Self {
        Self::of(&parts.method, &parts.headers)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn key(policy: &HttpCachePolicy, req: Request<()>) -> Option<HttpCacheKey> {
        policy.cache_key(&req)
    }

    fn get(uri: &str) -> http::request::Builder {
        Request::get(uri)
    }

    #[test]
    fn only_get_and_head() {
        let policy = HttpCachePolicy::new();
        for method in [
            Method::POST,
            Method::PUT,
            Method::DELETE,
            Method::PATCH,
            Method::OPTIONS,
        ] {
            let req = Request::builder()
                .method(method.clone())
                .uri("/a")
                .body(())
                .unwrap();
            assert_eq!(key(&policy, req), None, "{method}");
        }
        let g = key(&policy, get("/a").body(()).unwrap()).unwrap();
        let h = key(&policy, Request::head("/a").body(()).unwrap()).unwrap();
        assert_eq!(g.method(), Method::GET);
        assert_eq!(h.method(), Method::HEAD);
        assert_ne!(g, h, "HEAD is keyed apart from GET");
        assert_eq!(h.to_string(), "HEAD /a");
    }

    #[test]
    fn request_no_store_bypasses() {
        let policy = HttpCachePolicy::new();
        let req = get("/a")
            .header("cache-control", "max-age=0, No-Store")
            .body(())
            .unwrap();
        assert_eq!(key(&policy, req), None);
        let req = get("/a")
            .header("cache-control", "no-cache")
            .body(())
            .unwrap();
        assert!(key(&policy, req).is_some());
    }

    #[test]
    fn target_forms() {
        let policy = HttpCachePolicy::new();
        let t = |req: Request<()>| key(&policy, req).unwrap().target().to_owned();
        assert_eq!(
            t(get("HTTP://Ex.COM:8080/P?Q=1").body(()).unwrap()),
            "http://ex.com:8080/P?Q=1"
        );
        assert_eq!(
            t(get("https://u:P@Ex.com/").body(()).unwrap()),
            "https://u:P@ex.com/"
        );
        assert_eq!(t(get("http://ex.com").body(()).unwrap()), "http://ex.com/");
        assert_eq!(
            t(get("/p?q").header("host", "Ex.com").body(()).unwrap()),
            "//ex.com/p?q"
        );
        assert_eq!(t(get("/p?q").body(()).unwrap()), "/p?q");
        assert_eq!(
            t(get("/p").header("host", "Ex.com:81").body(()).unwrap()),
            "//ex.com:81/p"
        );
        // Ambiguous targets bypass the cache: a Host with a path in it
        // would collide with another host's path, and so would a hostless
        // path starting with `//`.
        assert_eq!(
            key(
                &policy,
                get("/p").header("host", "ex.com/x").body(()).unwrap()
            ),
            None
        );
        assert_eq!(
            key(&policy, get("/p").header("host", "").body(()).unwrap()),
            None
        );
        assert_eq!(key(&policy, get("//ex.com/p").body(()).unwrap()), None);
        assert!(
            key(
                &policy,
                get("//ex.com/p").header("host", "h").body(()).unwrap()
            )
            .is_some()
        );
        // Different hosts or queries are different keys.
        assert_ne!(
            t(get("/p").header("host", "a").body(()).unwrap()),
            t(get("/p").header("host", "b").body(()).unwrap())
        );
        assert_ne!(
            t(get("/p?a").body(()).unwrap()),
            t(get("/p?b").body(()).unwrap())
        );
    }

    #[test]
    fn vary_values_missing_empty_and_joined() {
        let policy = HttpCachePolicy::new().vary([http::header::ACCEPT_ENCODING]);
        let missing = key(&policy, get("/").body(()).unwrap()).unwrap();
        let empty = key(
            &policy,
            get("/").header("accept-encoding", "").body(()).unwrap(),
        )
        .unwrap();
        assert_ne!(missing, empty);
        assert_eq!(missing.to_string(), "GET / accept-encoding!");
        assert_eq!(empty.to_string(), "GET / accept-encoding=");
        let joined = key(
            &policy,
            get("/")
                .header("accept-encoding", " gzip ")
                .header("accept-encoding", "br")
                .body(())
                .unwrap(),
        )
        .unwrap();
        assert_eq!(
            joined.vary_values().collect::<Vec<_>>(),
            vec![("accept-encoding", Some(&b"gzip, br"[..]))]
        );
        assert_eq!(joined.to_string(), "GET / accept-encoding=gzip,%20br");
        let single = key(
            &policy,
            get("/")
                .header("accept-encoding", "gzip, br")
                .body(())
                .unwrap(),
        );
        assert_eq!(single.unwrap(), joined, "one line or two, the same value");
    }

    #[test]
    fn facts() {
        let req = Request::head("/")
            .header("authorization", "x")
            .body(())
            .unwrap();
        let facts = RequestFacts::from(&req);
        assert!(facts.has_authorization() && facts.is_head());
        let (parts, ()) = get("/").body(()).unwrap().into_parts();
        let facts = RequestFacts::from(&parts);
        assert!(!facts.has_authorization() && !facts.is_head());
        assert_eq!(
            HttpCachePolicy::new()
                .cache_key_parts(&parts)
                .unwrap()
                .target(),
            "/"
        );
    }

    #[test]
    fn serde_round_trip() {
        let policy = HttpCachePolicy::new().vary([http::header::ACCEPT]);
        let k = key(&policy, get("/x").header("accept", "a/b").body(()).unwrap()).unwrap();
        let bytes = postcard::to_allocvec(&k).unwrap();
        assert_eq!(postcard::from_bytes::<HttpCacheKey>(&bytes).unwrap(), k);
    }

    proptest! {
        /// Distinct keys print distinct strings, so a string-keyed store
        /// never mixes two variants.
        #[test]
        fn display_is_injective(
            a in proptest::option::of(proptest::collection::vec(any::<u8>(), 0..8)),
            b in proptest::option::of(proptest::collection::vec(any::<u8>(), 0..8)),
            c in proptest::option::of(proptest::collection::vec(any::<u8>(), 0..8)),
            d in proptest::option::of(proptest::collection::vec(any::<u8>(), 0..8)),
        ) {
            let mk = |x: &Option<Vec<u8>>, y: &Option<Vec<u8>>| HttpCacheKey {
                method: KeyMethod::Get,
                target: "/".into(),
                vary: vec![("a".into(), x.clone()), ("b".into(), y.clone())],
            };
            let (k1, k2) = (mk(&a, &b), mk(&c, &d));
            prop_assert_eq!(k1 == k2, k1.to_string() == k2.to_string());
        }
    }
}
