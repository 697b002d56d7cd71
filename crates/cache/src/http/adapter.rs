//! The HTTP adapter: [`HttpCacheLayer`] puts the generic cache in front of
//! an HTTP service, with [`HttpCachePolicy`] deciding what is stored.
//!
//! Under the generic [`Cache`] sits a small service that dates each
//! upstream response, asks the policy whether it may be stored and, if
//! so, collects its body up to `max_body_bytes`. The generic layer then
//! keeps a [`StoredResponse`] only for a storable response whose body
//! came whole, for exactly the freshness the policy gave it.

mod body;
mod collect;
mod stored;

use std::fmt::{self, Write as _};
use std::sync::Arc;
use std::task::{Context, Poll};

use http::{Request, Response};
use http_body::Body;
use rampart_core::{BoxError, ConfigError};
use tower_layer::Layer;
use tower_service::Service;

pub use self::body::HttpCacheBody;
pub use self::stored::StoredResponse;

use self::collect::Collect;
use self::stored::{Dated, WallClock};
use crate::future::ResponseFuture;
use crate::http::{HttpCacheKey, HttpCachePolicy};
use crate::remote::{Codec, RemoteCache};
use crate::{Cache, CacheBuilder, CacheConfig, CacheLayer, Handle};

type Inner<B, RB> =
    CacheLayer<Request<B>, Response<HttpCacheBody<RB>>, HttpCacheKey, StoredResponse>;

/// Caches the responses of an HTTP service by [`HttpCachePolicy`]: `GET`
/// and `HEAD` keyed by method, URI and the configured `Vary` headers, for
/// as long as `Cache-Control` or `Expires` say, with an `Age` header on
/// every hit.
///
/// `B` is the request body and `RB` the upstream's response body; both
/// are inferred from the service the layer wraps. The layer owns one
/// cache, shared by every service it makes and by their clones.
pub struct HttpCacheLayer<B, RB> {
    cache: Inner<B, RB>,
    policy: Arc<HttpCachePolicy>,
    clock: WallClock,
}

impl<B, RB> HttpCacheLayer<B, RB>
where
    B: Send + 'static,
    RB: Send + 'static,
{
    /// A cache with `config`'s settings (capacity, stale-while-revalidate,
    /// ...) following `policy`, counting responses (not bytes), local
    /// only. Refuses a bad `config` or `policy` naming the field. See
    /// [`HttpCacheBuilder`] for a byte bound and a remote tier.
    pub fn new(config: CacheConfig, policy: HttpCachePolicy) -> Result<Self, ConfigError> {
        HttpCacheBuilder::new(config, policy).build()
    }

    /// A handle on the cache: counters, and invalidation by
    /// [`HttpCacheKey`] (from [`HttpCachePolicy::cache_key`]).
    pub fn handle(&self) -> Handle<HttpCacheKey> {
        self.cache.handle()
    }
}

impl<B, RB> Clone for HttpCacheLayer<B, RB> {
    fn clone(&self) -> Self {
        Self {
            cache: self.cache.clone(),
            policy: Arc::clone(&self.policy),
            clock: self.clock,
        }
    }
}

impl<B, RB> fmt::Debug for HttpCacheLayer<B, RB> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HttpCacheLayer")
            .field("cache", &self.cache)
            .field("policy", &self.policy)
            .finish()
    }
}

impl<S, B, RB> Layer<S> for HttpCacheLayer<B, RB>
where
    S: Service<Request<B>, Response = Response<RB>>,
    RB: Body,
    RB::Error: Into<BoxError>,
{
    type Service = HttpCache<S, B, RB>;

    fn layer(&self, inner: S) -> Self::Service {
        let collect = Collect::new(inner, Arc::clone(&self.policy), self.clock);
        HttpCache {
            inner: self.cache.layer(collect),
        }
    }
}

// === HttpCacheBuilder ===

/// An [`HttpCacheLayer`] with options beyond [`HttpCacheLayer::new`]'s.
pub struct HttpCacheBuilder {
    config: CacheConfig,
    policy: HttpCachePolicy,
    weigh_bytes: bool,
    remote: Option<(Arc<dyn RemoteCache>, Codec, String)>,
}

impl HttpCacheBuilder {
    /// A cache with `config`'s settings following `policy`; see the
    /// options below, then [`build`](Self::build).
    pub fn new(config: CacheConfig, policy: HttpCachePolicy) -> Self {
        Self {
            config,
            policy,
            weigh_bytes: false,
            remote: None,
        }
    }

    /// Weigh each stored response by its size in bytes (body, header names
    /// and values), so that [`max_capacity`](CacheConfig::max_capacity)
    /// bounds the cache's memory and
    /// [`max_entry_weight`](CacheConfig::max_entry_weight) the largest
    /// response kept. Defaults to off: `max_capacity` counts responses.
    pub fn weigh_bytes(mut self) -> Self {
        self.weigh_bytes = true;
        self
    }

    /// Adds a remote tier shared by many processes (see
    /// [`CacheBuilder::remote`]). A response is stored there under
    /// `prefix` followed by its key in hex (the key's postcard encoding),
    /// so that invalidations broadcast by other processes map back to
    /// keys. Defaults to none.
    pub fn remote(
        mut self,
        store: Arc<dyn RemoteCache>,
        codec: Codec,
        prefix: impl Into<String>,
    ) -> Self {
        self.remote = Some((store, codec, prefix.into()));
        self
    }

    /// Checks the policy and the cache settings (naming the field at
    /// fault) and builds the layer.
    pub fn build<B, RB>(self) -> Result<HttpCacheLayer<B, RB>, ConfigError>
    where
        B: Send + 'static,
        RB: Send + 'static,
    {
        self.policy.validate()?;
        let policy = Arc::new(self.policy);
        let clock = WallClock::new();
        let key_policy = Arc::clone(&policy);
        let mut builder: CacheBuilder<_, _, _, StoredResponse> = self
            .config
            .builder_with(
                move |req: &Request<B>| key_policy.cache_key(req),
                |res: &Response<HttpCacheBody<RB>>| {
                    let dated = res.extensions().get::<Dated>()?;
                    let body = res.body().storable()?;
                    Some(StoredResponse::new(res, body, *dated))
                },
                move |stored: &StoredResponse| stored.to_response(clock.now()),
            )
            .lifetime(move |stored| stored.lifetime(clock.now()));
        if self.weigh_bytes {
            builder = builder.weigher(|_, stored| stored.weight());
        }
        if let Some((store, codec, prefix)) = self.remote {
            let from_prefix = prefix.clone();
            builder = builder.remote(
                store,
                codec,
                move |key| remote_name(&prefix, key),
                move |name| key_of_remote_name(&from_prefix, name),
            );
        }
        Ok(HttpCacheLayer {
            cache: builder.build()?,
            policy,
            clock,
        })
    }
}

/// `prefix` then the key's postcard encoding in lowercase hex.
fn remote_name(prefix: &str, key: &HttpCacheKey) -> String {
    let bytes = postcard::to_allocvec(key).expect("a key of strings and bytes always encodes");
    let mut name = String::with_capacity(prefix.len() + 2 * bytes.len());
    name.push_str(prefix);
    for b in bytes {
        let _ = write!(name, "{b:02x}");
    }
    name
}

/// The key [`remote_name`] named `name`, if it is one.
fn key_of_remote_name(prefix: &str, name: &str) -> Option<HttpCacheKey> {
    let hex = name.strip_prefix(prefix)?.as_bytes();
    if hex.len() % 2 != 0 {
        return None;
    }
    let digit = |c: u8| char::from(c).to_digit(16).map(|d| d as u8);
    let bytes = hex
        .chunks_exact(2)
        .map(|pair| Some(digit(pair[0])? << 4 | digit(pair[1])?))
        .collect::<Option<Vec<u8>>>()?;
    postcard::from_bytes(&bytes).ok()
}

impl fmt::Debug for HttpCacheBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HttpCacheBuilder")
            .field("config", &self.config)
            .field("policy", &self.policy)
            .field("weigh_bytes", &self.weigh_bytes)
            .field("remote", &self.remote.is_some())
            .finish()
    }
}

// === HttpCache ===

/// An HTTP service answering from a cache, made by [`HttpCacheLayer`].
///
/// Its responses carry an [`HttpCacheBody`]: whole for a hit or a body
/// collected within the limit, streamed for the rest. Its error is
/// [`BoxError`]: the upstream's error, or a
/// [`LoadFailed`](crate::LoadFailed) when the load it waited for failed.
pub struct HttpCache<S, B, RB> {
    inner: Cache<Collect<S>, Request<B>, Response<HttpCacheBody<RB>>, HttpCacheKey, StoredResponse>,
}

impl<S, B, RB> HttpCache<S, B, RB>
where
    B: Send + 'static,
    RB: Send + 'static,
{
    /// A handle on the cache: counters and invalidation.
    pub fn handle(&self) -> Handle<HttpCacheKey> {
        self.inner.handle()
    }
}

impl<S, B, RB> Service<Request<B>> for HttpCache<S, B, RB>
where
    S: Service<Request<B>, Response = Response<RB>> + Clone + Send + 'static,
    S::Error: Into<BoxError>,
    S::Future: Send,
    B: Send + 'static,
    RB: Body + Send + 'static,
    RB::Error: Into<BoxError>,
{
    type Response = Response<HttpCacheBody<RB>>;
    type Error = BoxError;
    type Future = ResponseFuture<Self::Response>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request<B>) -> Self::Future {
        self.inner.call(req)
    }
}

impl<S: Clone, B, RB> Clone for HttpCache<S, B, RB> {
    fn clone(&self) -> Self {
        Self {
            inner: self.inner.clone(),
        }
    }
}

impl<S: fmt::Debug, B, RB> fmt::Debug for HttpCache<S, B, RB> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HttpCache")
            .field("inner", &self.inner)
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn remote_names_map_back_to_keys() {
        let policy = HttpCachePolicy::new().vary([http::header::ACCEPT]);
        let req = Request::get("https://h/p?q")
            .header("accept", "a/b")
            .body(())
            .unwrap();
        let key = policy.cache_key(&req).unwrap();
        let name = remote_name("web:", &key);
        assert!(name.starts_with("web:"));
        assert_eq!(key_of_remote_name("web:", &name), Some(key));
        assert_eq!(key_of_remote_name("api:", &name), None, "another prefix");
        assert_eq!(key_of_remote_name("web:", "web:0"), None, "odd length");
        assert_eq!(key_of_remote_name("web:", "web:zz"), None, "not hex");
    }
}
