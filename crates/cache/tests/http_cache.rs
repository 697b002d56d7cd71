//! The HTTP adapter end to end: what is cached and for how long (paused
//! time), `Age`, keys (method, `Vary`), bodies over the limit, errors, the
//! no-stale rule under stale-while-revalidate, and the remote tier.

mod common;

use std::collections::VecDeque;
use std::convert::Infallible;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use common::{FakeRemote, settle};
use http::{Request, Response};
use http_body::{Body, Frame, SizeHint};
use http_body_util::BodyExt;
use rampart_cache::http::{HttpCache, HttpCacheBuilder, HttpCacheLayer, HttpCachePolicy};
use rampart_cache::remote::Codec;
use rampart_cache::{CacheConfig, Handle, LoadFailed};
use rampart_core::BoxError;
use tower::util::BoxCloneService;
use tower::{Layer, ServiceExt, service_fn};

const SEC: Duration = Duration::from_secs(1);

// === A fake upstream ===

/// A response body sent in chunks, with an exact size hint or none.
struct Chunks {
    chunks: VecDeque<Bytes>,
    exact: bool,
}

impl Chunks {
    fn new(chunks: &[&'static str], exact: bool) -> Self {
        Self {
            chunks: chunks
                .iter()
                .map(|c| Bytes::from_static(c.as_bytes()))
                .collect(),
            exact,
        }
    }
}

impl Body for Chunks {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        _: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        Poll::Ready(self.chunks.pop_front().map(|c| Ok(Frame::data(c))))
    }

    fn size_hint(&self) -> SizeHint {
        if self.exact {
            SizeHint::with_exact(self.chunks.iter().map(|c| c.len() as u64).sum())
        } else {
            SizeHint::default()
        }
    }
}

type Upstream = BoxCloneService<Request<()>, Response<Chunks>, BoxError>;
type Svc = HttpCache<Upstream, (), Chunks>;

/// An upstream answering with `respond(request, call number)`; the count
/// of calls it received.
fn upstream(
    respond: impl Fn(&Request<()>, usize) -> Result<Response<Chunks>, BoxError> + Send + Sync + 'static,
) -> (Arc<AtomicUsize>, Upstream) {
    let calls = Arc::new(AtomicUsize::new(0));
    let counted = Arc::clone(&calls);
    let respond = Arc::new(respond);
    let svc = service_fn(move |req: Request<()>| {
        let n = counted.fetch_add(1, Ordering::SeqCst);
        let res = respond(&req, n);
        async move { res }
    });
    (calls, svc.boxed_clone())
}

/// An upstream answering every request with `headers` and the body
/// `"v{call number}"`.
fn answering(headers: &'static [(&'static str, &'static str)]) -> (Arc<AtomicUsize>, Upstream) {
    upstream(move |_, n| Ok(response(headers, Chunks::new(&[body_of(n)], true))))
}

fn body_of(n: usize) -> &'static str {
    ["v0", "v1", "v2", "v3", "v4", "v5"][n]
}

fn response(headers: &[(&str, &str)], body: Chunks) -> Response<Chunks> {
    let mut b = Response::builder().status(200);
    for (k, v) in headers {
        b = b.header(*k, *v);
    }
    b.body(body).unwrap()
}

fn cache(
    config: CacheConfig,
    policy: HttpCachePolicy,
    up: Upstream,
) -> (Handle<rampart_cache::http::HttpCacheKey>, Svc) {
    let layer = HttpCacheLayer::new(config, policy).unwrap();
    (layer.handle(), layer.layer(up))
}

fn local(up: Upstream) -> Svc {
    cache(CacheConfig::new(), HttpCachePolicy::new(), up).1
}

fn get(uri: &str) -> Request<()> {
    Request::get(uri).body(()).unwrap()
}

/// Sends `req`; the response's `Age` (if any) and whole body.
async fn send(svc: &Svc, req: Request<()>) -> (Option<String>, Bytes) {
    let res = svc.clone().oneshot(req).await.unwrap();
    let age = res
        .headers()
        .get_all("age")
        .iter()
        .map(|v| v.to_str().unwrap().to_owned())
        .reduce(|a, b| format!("{a},{b}"));
    (age, res.into_body().collect().await.unwrap().to_bytes())
}

fn calls(n: &AtomicUsize) -> usize {
    n.load(Ordering::SeqCst)
}

// === Tests ===

#[tokio::test(start_paused = true)]
async fn a_fresh_get_is_answered_from_the_cache_with_a_growing_age() {
    let (n, up) = answering(&[("cache-control", "max-age=60")]);
    let svc = local(up);
    assert_eq!(send(&svc, get("/a")).await, (None, "v0".into()));
    assert_eq!(send(&svc, get("/a")).await, (Some("0".into()), "v0".into()));
    tokio::time::advance(5 * SEC).await;
    assert_eq!(send(&svc, get("/a")).await, (Some("5".into()), "v0".into()));
    tokio::time::advance(40 * SEC).await;
    assert_eq!(
        send(&svc, get("/a")).await,
        (Some("45".into()), "v0".into())
    );
    assert_eq!(calls(&n), 1, "hits were not sent upstream");
    // Another URI is another entry.
    assert_eq!(send(&svc, get("/b")).await, (None, "v1".into()));
}

#[tokio::test(start_paused = true)]
async fn the_upstream_age_counts_and_is_replaced_not_appended() {
    let (n, up) = answering(&[("cache-control", "max-age=600"), ("age", "100")]);
    let svc = local(up);
    send(&svc, get("/")).await;
    tokio::time::advance(7 * SEC).await;
    assert_eq!(
        send(&svc, get("/")).await,
        (Some("107".into()), "v0".into())
    );
    assert_eq!(calls(&n), 1);
}

#[tokio::test(start_paused = true)]
async fn entries_expire_after_their_max_age() {
    let (n, up) = answering(&[("cache-control", "max-age=60")]);
    let svc = local(up);
    send(&svc, get("/")).await;
    tokio::time::advance(59 * SEC).await;
    assert_eq!(send(&svc, get("/")).await.1, "v0");
    assert_eq!(calls(&n), 1);
    tokio::time::advance(SEC).await;
    assert_eq!(send(&svc, get("/")).await, (None, "v1".into()));
    assert_eq!(calls(&n), 2, "expired at max-age");
}

#[tokio::test(start_paused = true)]
async fn responses_that_forbid_storing_are_not_cached() {
    let cases: [&'static [(&str, &str)]; 5] = [
        &[("cache-control", "no-store, max-age=60")],
        &[("cache-control", "private, max-age=60")],
        &[("cache-control", "max-age=60"), ("set-cookie", "s=1")],
        &[("cache-control", "no-cache, max-age=60")],
        &[], // no freshness at all
    ];
    for headers in cases {
        let (n, up) = answering(headers);
        let svc = local(up);
        assert_eq!(send(&svc, get("/")).await.1, "v0");
        assert_eq!(send(&svc, get("/")).await.1, "v1", "{headers:?}");
        assert_eq!(calls(&n), 2, "{headers:?}");
    }
}

#[tokio::test(start_paused = true)]
async fn set_cookie_is_cached_when_the_policy_says_so() {
    let (n, up) = answering(&[("cache-control", "max-age=60"), ("set-cookie", "s=1")]);
    let policy = HttpCachePolicy::new().cache_set_cookie(true);
    let svc = cache(CacheConfig::new(), policy, up).1;
    send(&svc, get("/")).await;
    let res = svc.clone().oneshot(get("/")).await.unwrap();
    assert_eq!(res.headers()["set-cookie"], "s=1");
    assert_eq!(calls(&n), 1);
}

#[tokio::test(start_paused = true)]
async fn s_maxage_beats_max_age() {
    // Longer s-maxage: kept past max-age.
    let (n, up) = answering(&[("cache-control", "max-age=10, s-maxage=60")]);
    let svc = local(up);
    send(&svc, get("/")).await;
    tokio::time::advance(30 * SEC).await;
    assert_eq!(send(&svc, get("/")).await.1, "v0");
    assert_eq!(calls(&n), 1, "s-maxage=60 holds past max-age=10");
    // Shorter s-maxage: dropped before max-age.
    let (n, up) = answering(&[("cache-control", "max-age=60, s-maxage=10")]);
    let svc = local(up);
    send(&svc, get("/")).await;
    tokio::time::advance(10 * SEC).await;
    assert_eq!(send(&svc, get("/")).await.1, "v1");
    assert_eq!(calls(&n), 2, "s-maxage=10 ends it before max-age=60");
}

#[tokio::test(start_paused = true)]
async fn vary_headers_are_part_of_the_key() {
    let (n, up) = upstream(|req, n| {
        let enc = req.headers()["accept-encoding"]
            .to_str()
            .unwrap()
            .to_owned();
        let body = Bytes::from(format!("{enc}:{n}"));
        let mut res = response(
            &[("cache-control", "max-age=60"), ("vary", "Accept-Encoding")],
            Chunks::new(&[], true),
        );
        res.body_mut().chunks.push_back(body);
        Ok(res)
    });
    let policy = HttpCachePolicy::new().vary([http::header::ACCEPT_ENCODING]);
    let svc = cache(CacheConfig::new(), policy, up).1;
    let with = |enc: &str| {
        Request::get("/")
            .header("accept-encoding", enc)
            .body(())
            .unwrap()
    };
    assert_eq!(send(&svc, with("gzip")).await.1, "gzip:0");
    assert_eq!(send(&svc, with("br")).await.1, "br:1");
    assert_eq!(send(&svc, with("gzip")).await.1, "gzip:0");
    assert_eq!(send(&svc, with("br")).await.1, "br:1");
    assert_eq!(calls(&n), 2, "one upstream call per encoding");
}

#[tokio::test(start_paused = true)]
async fn a_vary_outside_the_policy_is_not_cached() {
    let (n, up) = answering(&[("cache-control", "max-age=60"), ("vary", "accept-language")]);
    let svc = local(up);
    send(&svc, get("/")).await;
    send(&svc, get("/")).await;
    assert_eq!(calls(&n), 2);
}

#[tokio::test(start_paused = true)]
async fn post_bypasses_the_cache() {
    let (n, up) = answering(&[("cache-control", "max-age=60")]);
    let (handle, svc) = cache(CacheConfig::new(), HttpCachePolicy::new(), up);
    let post = || Request::post("/").body(()).unwrap();
    assert_eq!(send(&svc, post()).await.1, "v0");
    assert_eq!(send(&svc, post()).await.1, "v1");
    assert_eq!(calls(&n), 2);
    assert_eq!(handle.stats().bypassed, 2);
    // A GET of the same URI was not answered by a POST's response.
    assert_eq!(send(&svc, get("/")).await.1, "v2");
}

#[tokio::test(start_paused = true)]
async fn head_is_keyed_apart_from_get() {
    let (n, up) = upstream(|req, n| {
        let body = if req.method() == http::Method::HEAD {
            ""
        } else {
            body_of(n)
        };
        Ok(response(
            &[("cache-control", "max-age=60"), ("content-length", "2")],
            Chunks::new(&[body], true),
        ))
    });
    let svc = local(up);
    let head = || Request::head("/").body(()).unwrap();
    assert_eq!(send(&svc, get("/")).await.1, "v0");
    let res = svc.clone().oneshot(head()).await.unwrap();
    assert_eq!(calls(&n), 2, "a HEAD is not answered from the stored GET");
    assert_eq!(res.headers()["content-length"], "2");
    assert!(
        res.into_body()
            .collect()
            .await
            .unwrap()
            .to_bytes()
            .is_empty()
    );
    assert_eq!(send(&svc, head()).await, (Some("0".into()), Bytes::new()));
    assert_eq!(send(&svc, get("/")).await.1, "v0");
    assert_eq!(calls(&n), 2, "each from its own entry");
}

#[tokio::test(start_paused = true)]
async fn a_body_over_the_limit_passes_through_whole_and_is_not_cached() {
    // 4 + 4 + 4 + 3 bytes, no size hint: found over the limit of 10 while
    // collecting; the caller still gets every byte.
    let chunks: &[&'static str] = &["abcd", "efgh", "ijkl", "mno"];
    for exact in [false, true] {
        let (n, up) = upstream(move |_, _| {
            Ok(response(
                &[("cache-control", "max-age=60")],
                Chunks::new(chunks, exact),
            ))
        });
        let (handle, svc) = cache(
            CacheConfig::new(),
            HttpCachePolicy::new().max_body_bytes(10),
            up,
        );
        for _ in 0..2 {
            let res = svc.clone().oneshot(get("/big")).await.unwrap();
            assert!(!res.body().is_whole());
            if exact {
                assert_eq!(res.body().size_hint().exact(), Some(15));
            }
            let body = res.into_body().collect().await.unwrap().to_bytes();
            assert_eq!(body, "abcdefghijklmno", "exact size hint: {exact}");
        }
        assert_eq!(calls(&n), 2, "not cached (size hint known: {exact})");
        assert_eq!(handle.stats().hits, 0);
    }
}

#[tokio::test(start_paused = true)]
async fn a_body_exactly_at_the_limit_is_cached() {
    let (n, up) = upstream(|_, _| {
        Ok(response(
            &[("cache-control", "max-age=60")],
            Chunks::new(&["abcde", "fghij"], false),
        ))
    });
    let svc = cache(
        CacheConfig::new(),
        HttpCachePolicy::new().max_body_bytes(10),
        up,
    )
    .1;
    let res = svc.clone().oneshot(get("/")).await.unwrap();
    assert!(res.body().is_whole());
    assert_eq!(res.body().size_hint().exact(), Some(10));
    assert_eq!(
        res.into_body().collect().await.unwrap().to_bytes(),
        "abcdefghij"
    );
    let res = svc.clone().oneshot(get("/")).await.unwrap();
    assert_eq!(res.body().size_hint().exact(), Some(10));
    assert_eq!(
        res.into_body().collect().await.unwrap().to_bytes(),
        "abcdefghij"
    );
    assert_eq!(calls(&n), 1);
}

#[tokio::test(start_paused = true)]
async fn an_upstream_error_is_not_cached() {
    let (n, up) = upstream(|_, n| {
        if n == 0 {
            Err("upstream down".into())
        } else {
            Ok(response(
                &[("cache-control", "max-age=60")],
                Chunks::new(&["ok"], true),
            ))
        }
    });
    let svc = local(up);
    let err = svc.clone().oneshot(get("/")).await.unwrap_err();
    assert!(err.is::<LoadFailed>(), "{err}");
    assert_eq!(send(&svc, get("/")).await, (None, "ok".into()));
    assert_eq!(send(&svc, get("/")).await.1, "ok");
    assert_eq!(calls(&n), 2);
}

#[tokio::test(start_paused = true)]
async fn an_error_status_is_not_cached() {
    let (n, up) = upstream(|_, _| {
        let mut res = response(
            &[("cache-control", "max-age=60")],
            Chunks::new(&["x"], true),
        );
        *res.status_mut() = http::StatusCode::INTERNAL_SERVER_ERROR;
        Ok(res)
    });
    let svc = local(up);
    send(&svc, get("/")).await;
    send(&svc, get("/")).await;
    assert_eq!(calls(&n), 2);
}

#[tokio::test(start_paused = true)]
async fn no_stale_responses_are_never_served_stale() {
    let config = || CacheConfig::new().stale_while_revalidate(Duration::from_secs(30));
    // max-age: served stale after expiry while one refresh runs.
    let (n, up) = answering(&[("cache-control", "max-age=10")]);
    let svc = cache(config(), HttpCachePolicy::new(), up).1;
    send(&svc, get("/")).await;
    tokio::time::advance(11 * SEC).await;
    assert_eq!(send(&svc, get("/")).await, (Some("11".into()), "v0".into()));
    settle().await;
    assert_eq!(calls(&n), 2, "refreshed in the background");
    // must-revalidate and s-maxage: a miss at expiry, answered fresh.
    for cc in ["max-age=10, must-revalidate", "s-maxage=10"] {
        let (n, up) = upstream(move |_, n| {
            let mut res = response(&[], Chunks::new(&[body_of(n)], true));
            res.headers_mut()
                .insert("cache-control", cc.parse().unwrap());
            Ok(res)
        });
        let svc = cache(config(), HttpCachePolicy::new(), up).1;
        send(&svc, get("/")).await;
        tokio::time::advance(11 * SEC).await;
        assert_eq!(send(&svc, get("/")).await, (None, "v1".into()), "{cc}");
        assert_eq!(calls(&n), 2, "{cc}");
    }
}

#[tokio::test(start_paused = true)]
async fn bad_configuration_is_refused_naming_the_field() {
    let err = HttpCacheLayer::<(), Chunks>::new(
        CacheConfig::new(),
        HttpCachePolicy::new().max_body_bytes(0),
    )
    .unwrap_err();
    assert_eq!(err.field(), "max_body_bytes");
    let err = HttpCacheLayer::<(), Chunks>::new(
        CacheConfig::new().ttl(Duration::ZERO),
        HttpCachePolicy::new(),
    )
    .unwrap_err();
    assert_eq!(err.field(), "ttl");
    // max_entry_weight needs the byte weigher.
    let heavy = || {
        CacheConfig::new()
            .max_capacity(1 << 20)
            .max_entry_weight(100)
    };
    let err = HttpCacheLayer::<(), Chunks>::new(heavy(), HttpCachePolicy::new()).unwrap_err();
    assert_eq!(err.field(), "max_entry_weight");
    HttpCacheBuilder::new(heavy(), HttpCachePolicy::new())
        .weigh_bytes()
        .build::<(), Chunks>()
        .unwrap();
}

#[tokio::test(start_paused = true)]
async fn weighed_by_bytes_a_heavy_response_is_served_but_not_kept() {
    let (n, up) = upstream(|req, n| {
        let body = if req.uri().path() == "/heavy" {
            "x".repeat(200)
        } else {
            body_of(n).to_owned()
        };
        let mut res = response(&[("cache-control", "max-age=60")], Chunks::new(&[], true));
        res.body_mut().chunks.push_back(body.into());
        Ok(res)
    });
    let layer = HttpCacheBuilder::new(
        CacheConfig::new()
            .max_capacity(10_000)
            .max_entry_weight(100),
        HttpCachePolicy::new(),
    )
    .weigh_bytes()
    .build()
    .unwrap();
    let (handle, svc) = (layer.handle(), layer.layer(up));
    for _ in 0..2 {
        assert_eq!(send(&svc, get("/heavy")).await.1.len(), 200);
        send(&svc, get("/light")).await;
    }
    assert_eq!(calls(&n), 3, "the heavy one twice, the light one once");
    assert_eq!(handle.stats().oversized, 2);
}

#[tokio::test(start_paused = true)]
async fn a_second_process_reads_the_remote_tier_with_the_right_age() {
    let remote = FakeRemote::new();
    let layer = || {
        HttpCacheBuilder::new(CacheConfig::new(), HttpCachePolicy::new())
            .remote(remote.clone(), Codec::new(1), "web:")
            .build()
            .unwrap()
    };
    let (n, up) = answering(&[("cache-control", "max-age=60")]);
    let (a, b) = (layer(), layer());
    let (hb, a, b) = (b.handle(), a.layer(up.clone()), b.layer(up));
    send(&a, get("/")).await;
    settle().await;
    let (name, (_, ttl)) = {
        let data = remote.data.lock().unwrap();
        let (k, v) = data.iter().next().expect("filled the remote tier");
        (k.clone(), v.clone())
    };
    assert!(name.starts_with("web:"));
    assert_eq!(ttl, 60 * SEC);
    tokio::time::advance(20 * SEC).await;
    assert_eq!(send(&b, get("/")).await, (Some("20".into()), "v0".into()));
    assert_eq!(calls(&n), 1, "b answered from the remote tier");
    assert_eq!(hb.stats().remote_hits, 1);
    // b keeps it only for what is left of its freshness.
    tokio::time::advance(40 * SEC).await;
    remote.data.lock().unwrap().clear();
    assert_eq!(send(&b, get("/")).await.1, "v1");
    assert_eq!(calls(&n), 2);
}

#[tokio::test(start_paused = true)]
async fn invalidation_by_key_drops_the_entry() {
    let (n, up) = answering(&[("cache-control", "max-age=60")]);
    let policy = HttpCachePolicy::new();
    let key = policy.cache_key(&get("/a")).unwrap();
    let (handle, svc) = cache(CacheConfig::new(), policy, up);
    send(&svc, get("/a")).await;
    send(&svc, get("/a")).await;
    handle.invalidate(&key).await.unwrap();
    assert_eq!(send(&svc, get("/a")).await.1, "v1");
    assert_eq!(calls(&n), 2);
}

#[tokio::test(start_paused = true)]
async fn concurrent_requests_never_share_a_private_response() {
    let calls = Arc::new(AtomicUsize::new(0));
    let counted = Arc::clone(&calls);
    let up = service_fn(move |req: Request<()>| {
        let n = counted.fetch_add(1, Ordering::SeqCst);
        async move {
            tokio::time::sleep(SEC).await;
            let user = req.headers()["x-user"].to_str().unwrap().to_owned();
            let mut res = response(
                &[("cache-control", "private, max-age=60")],
                Chunks::new(&[], true),
            );
            res.body_mut()
                .chunks
                .push_back(format!("{user}:{n}").into());
            Ok::<_, BoxError>(res)
        }
    })
    .boxed_clone();
    let svc = local(up);
    let as_user = |u: &str| Request::get("/me").header("x-user", u).body(()).unwrap();
    let (a, b) = tokio::join!(send(&svc, as_user("ann")), send(&svc, as_user("bob")));
    assert!(a.1.starts_with(b"ann:"), "{:?}", a.1);
    assert!(b.1.starts_with(b"bob:"), "{:?}", b.1);
    assert_eq!(calls.load(Ordering::SeqCst), 2);
}
