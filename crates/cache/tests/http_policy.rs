//! The HTTP caching policy, through its public API only.

use std::time::{Duration, SystemTime};

use http::{HeaderName, Method, Request, response};
use proptest::prelude::*;
use rampart_cache::http::{HttpCachePolicy, Reason, RequestFacts, Storability};

/// A fixed "now": Sun, 06 Nov 1994 08:49:37 GMT.
fn now() -> SystemTime {
    SystemTime::UNIX_EPOCH + Duration::from_secs(784_111_777)
}

fn date(offset_secs: i64) -> String {
    let at = if offset_secs >= 0 {
        now() + Duration::from_secs(offset_secs.unsigned_abs())
    } else {
        now() - Duration::from_secs(offset_secs.unsigned_abs())
    };
    httpdate::fmt_http_date(at)
}

fn res_status(status: u16, headers: &[(&str, &str)]) -> response::Parts {
    let mut b = http::Response::builder().status(status);
    for (k, v) in headers {
        b = b.header(*k, *v);
    }
    b.body(()).unwrap().into_parts().0
}

fn res(headers: &[(&str, &str)]) -> response::Parts {
    res_status(200, headers)
}

fn get() -> Request<()> {
    Request::get("http://example.com/a").body(()).unwrap()
}

fn with_auth() -> Request<()> {
    Request::get("http://example.com/a")
        .header("authorization", "Bearer x")
        .body(())
        .unwrap()
}

fn shared() -> HttpCachePolicy {
    HttpCachePolicy::new()
}

fn ttl(policy: &HttpCachePolicy, req: &Request<()>, headers: &[(&str, &str)]) -> Storability {
    policy.freshness(req, &res(headers), now())
}

fn stored(secs: u64) -> Option<Duration> {
    Some(Duration::from_secs(secs))
}

fn refused(reason: Reason) -> Storability {
    Storability::DoNotStore(reason)
}

// --- directives ---

#[test]
fn max_age_is_the_ttl() {
    assert_eq!(
        ttl(&shared(), &get(), &[("cache-control", "max-age=60")]).ttl(),
        stored(60)
    );
}

#[test]
fn no_store_is_not_stored() {
    let s = ttl(
        &shared(),
        &get(),
        &[("cache-control", "max-age=60, no-store")],
    );
    assert_eq!(s, refused(Reason::NoStore));
}

#[test]
fn private_is_not_stored_by_a_shared_cache_but_is_by_a_private_one() {
    for cc in ["private, max-age=60", "max-age=60, private=\"x-user\""] {
        assert_eq!(
            ttl(&shared(), &get(), &[("cache-control", cc)]),
            refused(Reason::Private)
        );
        let private = shared().cache_private(true);
        assert_eq!(
            ttl(&private, &get(), &[("cache-control", cc)]).ttl(),
            stored(60)
        );
    }
}

#[test]
fn no_cache_is_not_stored() {
    for cc in [
        "no-cache, max-age=60",
        "max-age=60, no-cache=\"set-cookie\"",
    ] {
        assert_eq!(
            ttl(&shared(), &get(), &[("cache-control", cc)]),
            refused(Reason::NoCache)
        );
    }
}

#[test]
fn must_revalidate_and_proxy_revalidate_keep_the_ttl() {
    for cc in [
        "max-age=60, must-revalidate",
        "max-age=60, proxy-revalidate",
    ] {
        let s = ttl(&shared(), &get(), &[("cache-control", cc)]);
        assert_eq!(s.ttl(), stored(60));
        assert!(
            matches!(s, Storability::Store { no_stale: true, .. }),
            "{cc}"
        );
    }
}

#[test]
fn zero_and_garbage_max_age_are_stale() {
    for cc in [
        "max-age=0",
        "max-age=soon",
        "max-age=-5",
        "max-age",
        "max-age=60, max-age=x",
    ] {
        assert_eq!(
            ttl(&shared(), &get(), &[("cache-control", cc)]),
            refused(Reason::Stale),
            "{cc}"
        );
    }
}

#[test]
fn nothing_said_means_not_stored_unless_default_ttl() {
    assert_eq!(ttl(&shared(), &get(), &[]), refused(Reason::NoFreshness));
    assert_eq!(
        ttl(&shared(), &get(), &[("cache-control", "public")]),
        refused(Reason::NoFreshness)
    );
    let heuristic = shared().default_ttl(Duration::from_secs(30));
    assert_eq!(ttl(&heuristic, &get(), &[]).ttl(), stored(30));
    // An explicit lifetime still wins over the default.
    assert_eq!(
        ttl(&heuristic, &get(), &[("cache-control", "max-age=5")]).ttl(),
        stored(5)
    );
}

// --- precedence ---

#[test]
fn s_maxage_beats_max_age_beats_expires() {
    let expires = date(1000);
    let all = [
        ("cache-control", "max-age=60, s-maxage=300"),
        ("expires", expires.as_str()),
        ("date", &date(0)),
    ];
    assert_eq!(ttl(&shared(), &get(), &all).ttl(), stored(300));
    // A private cache ignores s-maxage.
    assert_eq!(
        ttl(&shared().cache_private(true), &get(), &all).ttl(),
        stored(60)
    );
    let no_s = [
        ("cache-control", "max-age=60"),
        ("expires", expires.as_str()),
    ];
    assert_eq!(ttl(&shared(), &get(), &no_s).ttl(), stored(60));
    // max-age=0 still beats a far Expires.
    let zero = [
        ("cache-control", "max-age=0"),
        ("expires", expires.as_str()),
    ];
    assert_eq!(ttl(&shared(), &get(), &zero), refused(Reason::Stale));
    // Only s-maxage in a private cache: falls back to Expires.
    let s_only = [
        ("cache-control", "s-maxage=5"),
        ("expires", expires.as_str()),
    ];
    assert_eq!(
        ttl(&shared().cache_private(true), &get(), &s_only).ttl(),
        stored(1000)
    );
}

// --- Date / Expires arithmetic ---

#[test]
fn expires_is_measured_from_date() {
    // The upstream's clock is 100 s behind ours: Expires − Date is still 60.
    let h = [("date", date(-100)), ("expires", date(-40))];
    let h: Vec<(&str, &str)> = h.iter().map(|(k, v)| (*k, v.as_str())).collect();
    assert_eq!(ttl(&shared(), &get(), &h).ttl(), stored(60));
}

#[test]
fn expires_without_date_is_measured_from_now() {
    let e = date(90);
    assert_eq!(ttl(&shared(), &get(), &[("expires", &e)]).ttl(), stored(90));
    let bad_date = [("expires", e.as_str()), ("date", "yesterday")];
    assert_eq!(ttl(&shared(), &get(), &bad_date).ttl(), stored(90));
}

#[test]
fn expires_in_the_past_or_invalid_is_stale() {
    let past = date(-1);
    for e in [past.as_str(), "0", "-1", "never", ""] {
        assert_eq!(
            ttl(&shared(), &get(), &[("expires", e)]),
            refused(Reason::Stale),
            "{e:?}"
        );
    }
    // Expires equal to Date: zero lifetime.
    let d = date(0);
    assert_eq!(
        ttl(&shared(), &get(), &[("expires", &d), ("date", &d)]),
        refused(Reason::Stale)
    );
}

#[test]
fn expires_accepts_the_obsolete_date_formats() {
    // RFC 850 and asctime forms of 08:50:37, one minute after `now`.
    for e in ["Sunday, 06-Nov-94 08:50:37 GMT", "Sun Nov  6 08:50:37 1994"] {
        assert_eq!(
            ttl(&shared(), &get(), &[("expires", e)]).ttl(),
            stored(60),
            "{e}"
        );
    }
}

#[test]
fn upstream_age_is_taken_off() {
    let s = ttl(
        &shared(),
        &get(),
        &[("cache-control", "max-age=60"), ("age", "15")],
    );
    assert_eq!(s.ttl(), stored(45));
    assert!(
        matches!(s, Storability::Store { upstream_age, .. } if upstream_age == Duration::from_secs(15))
    );
    assert_eq!(
        ttl(
            &shared(),
            &get(),
            &[("cache-control", "max-age=60"), ("age", "60")]
        ),
        refused(Reason::Stale)
    );
    let e = date(60);
    assert_eq!(
        ttl(&shared(), &get(), &[("expires", &e), ("age", "20")]).ttl(),
        stored(40)
    );
    // An invalid Age is ignored.
    let s = ttl(
        &shared(),
        &get(),
        &[("cache-control", "max-age=60"), ("age", "soon")],
    );
    assert_eq!(s.ttl(), stored(60));
}

#[test]
fn ttl_is_capped_by_max_ttl() {
    let policy = shared().max_ttl(Duration::from_secs(100));
    assert_eq!(
        ttl(&policy, &get(), &[("cache-control", "max-age=99999")]).ttl(),
        stored(100)
    );
    let far = date(1_000_000);
    assert_eq!(
        ttl(&policy, &get(), &[("expires", &far)]).ttl(),
        stored(100)
    );
    assert_eq!(
        ttl(
            &policy,
            &get(),
            &[("cache-control", "max-age=99999999999999999999")]
        )
        .ttl(),
        stored(100)
    );
}

// --- statuses ---

#[test]
fn statuses_outside_the_set_are_not_stored() {
    let h = [("cache-control", "max-age=60")];
    for status in [200, 203, 204, 300, 301, 308, 404, 405, 410, 414, 501] {
        assert_eq!(
            shared()
                .freshness(&get(), &res_status(status, &h), now())
                .ttl(),
            stored(60)
        );
    }
    for status in [201, 206, 302, 304, 307, 400, 500, 503] {
        assert_eq!(
            shared().freshness(&get(), &res_status(status, &h), now()),
            refused(Reason::Status),
            "{status}"
        );
    }
    let with_302 = shared().cacheable_statuses([200, 302]);
    assert_eq!(
        with_302
            .freshness(&get(), &res_status(302, &h), now())
            .ttl(),
        stored(60)
    );
    assert_eq!(
        with_302.freshness(&get(), &res_status(404, &h), now()),
        refused(Reason::Status)
    );
}

// --- Set-Cookie ---

#[test]
fn set_cookie_is_not_stored_unless_allowed() {
    let h = [
        ("cache-control", "public, max-age=60"),
        ("set-cookie", "id=1"),
    ];
    assert_eq!(ttl(&shared(), &get(), &h), refused(Reason::SetCookie));
    assert_eq!(
        ttl(&shared().cache_set_cookie(true), &get(), &h).ttl(),
        stored(60)
    );
}

// --- Authorization ---

#[test]
fn authorized_requests_need_public_s_maxage_or_must_revalidate() {
    assert_eq!(
        ttl(&shared(), &with_auth(), &[("cache-control", "max-age=60")]),
        refused(Reason::Authorization)
    );
    for cc in [
        "public, max-age=60",
        "s-maxage=60",
        "max-age=60, must-revalidate",
    ] {
        assert_eq!(
            ttl(&shared(), &with_auth(), &[("cache-control", cc)]).ttl(),
            stored(60),
            "{cc}"
        );
    }
    // A private cache is the user's own: Authorization does not matter.
    let private = shared().cache_private(true);
    assert_eq!(
        ttl(&private, &with_auth(), &[("cache-control", "max-age=60")]).ttl(),
        stored(60)
    );
    // The facts can be taken from the request before it is sent.
    let facts = RequestFacts::from(&with_auth());
    assert_eq!(
        shared().freshness(facts, &res(&[("cache-control", "max-age=60")]), now()),
        refused(Reason::Authorization)
    );
}

// --- Vary ---

#[test]
fn vary_star_is_never_stored() {
    let policy = shared().vary([http::header::ACCEPT_ENCODING]);
    for v in ["*", "accept-encoding, *"] {
        assert_eq!(
            ttl(
                &policy,
                &get(),
                &[("cache-control", "max-age=60"), ("vary", v)]
            ),
            refused(Reason::VaryAny)
        );
    }
}

#[test]
fn vary_on_an_unkeyed_header_is_not_stored() {
    let policy = shared().vary([http::header::ACCEPT_ENCODING]);
    let h = |v: &'static str| [("cache-control", "max-age=60"), ("vary", v)];
    assert_eq!(
        ttl(&policy, &get(), &h("Accept-Encoding")).ttl(),
        stored(60)
    );
    assert_eq!(
        ttl(&policy, &get(), &h(" accept-encoding ,")).ttl(),
        stored(60)
    );
    assert_eq!(
        ttl(&policy, &get(), &h("Accept-Encoding, Cookie")),
        refused(Reason::VaryUnkeyed)
    );
    assert_eq!(
        ttl(&shared(), &get(), &h("accept-encoding")),
        refused(Reason::VaryUnkeyed)
    );
    // Several Vary lines are all read.
    let two = [
        ("cache-control", "max-age=60"),
        ("vary", "accept-encoding"),
        ("vary", "user-agent"),
    ];
    assert_eq!(ttl(&policy, &get(), &two), refused(Reason::VaryUnkeyed));
}

#[test]
fn vary_headers_split_the_key() {
    let policy = shared().vary([
        http::header::ACCEPT_ENCODING,
        HeaderName::from_static("x-tenant"),
    ]);
    let key = |enc: Option<&str>, tenant: Option<&str>| {
        let mut b = Request::get("/a");
        if let Some(e) = enc {
            b = b.header("accept-encoding", e);
        }
        if let Some(t) = tenant {
            b = b.header("x-tenant", t);
        }
        policy.cache_key(&b.body(()).unwrap()).unwrap()
    };
    assert_eq!(key(Some("gzip"), Some("t1")), key(Some("gzip"), Some("t1")));
    assert_ne!(key(Some("gzip"), Some("t1")), key(Some("br"), Some("t1")));
    assert_ne!(key(Some("gzip"), Some("t1")), key(Some("gzip"), Some("t2")));
    assert_ne!(key(None, Some("t1")), key(Some(""), Some("t1")));
    // Headers outside the list do not split it.
    let plain = policy.cache_key(
        &Request::get("/a")
            .header("user-agent", "x")
            .body(())
            .unwrap(),
    );
    assert_eq!(plain.unwrap(), key(None, None));
}

// --- keys ---

#[test]
fn get_and_head_have_their_own_keys() {
    let policy = shared();
    let g = policy
        .cache_key(&Request::get("/a").body(()).unwrap())
        .unwrap();
    let h = policy
        .cache_key(&Request::head("/a").body(()).unwrap())
        .unwrap();
    assert_ne!(g, h);
    assert_eq!((g.method(), h.method()), (Method::GET, Method::HEAD));
    assert_eq!(g.target(), h.target());
}

#[test]
fn other_methods_bypass() {
    for m in [
        "POST", "PUT", "DELETE", "PATCH", "OPTIONS", "TRACE", "CONNECT", "PURGE",
    ] {
        let req = Request::builder()
            .method(m)
            .uri("http://example.com/a")
            .body(())
            .unwrap();
        assert!(shared().cache_key(&req).is_none(), "{m}");
    }
}

#[test]
fn request_no_store_bypasses() {
    let req = Request::get("/a")
        .header("cache-control", "NO-STORE")
        .body(())
        .unwrap();
    assert!(shared().cache_key(&req).is_none());
}

#[test]
fn keys_of_different_uris_differ() {
    let k = |uri: &str| {
        shared()
            .cache_key(&Request::get(uri).body(()).unwrap())
            .unwrap()
    };
    assert_eq!(k("http://EXAMPLE.com/a"), k("http://example.com/a"));
    assert_ne!(k("http://example.com/a"), k("https://example.com/a"));
    assert_ne!(k("http://example.com/a"), k("http://example.org/a"));
    assert_ne!(k("http://example.com/a"), k("http://example.com/A"));
    assert_ne!(k("http://example.com/a?x=1"), k("http://example.com/a?x=2"));
    assert_ne!(k("http://example.com:81/a"), k("http://example.com/a"));
}

// --- properties ---

fn header_text() -> impl Strategy<Value = String> {
    prop_oneof![
        // Directive soup.
        proptest::collection::vec(
            prop_oneof![
                Just("no-store".to_owned()),
                Just("no-cache".to_owned()),
                Just("private".to_owned()),
                Just("public".to_owned()),
                Just("must-revalidate".to_owned()),
                "(max-age|s-maxage|MAX-AGE)=[0-9]{0,25}",
                "(max-age|s-maxage)=\"[0-9a-z ,]{0,6}\"?",
                "[ -~]{0,12}",
            ],
            0..6
        )
        .prop_map(|parts| parts.join(",")),
        // Anything visible.
        "[ -~]{0,40}",
    ]
}

fn date_text() -> impl Strategy<Value = String> {
    prop_oneof![(-2_000_000i64..2_000_000).prop_map(date), "[ -~]{0,30}",]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2_000))]

    /// Whatever the upstream says, the policy answers, and never with a
    /// TTL of zero or above max_ttl.
    #[test]
    fn never_panics_and_never_exceeds_max_ttl(
        cc in proptest::collection::vec(header_text(), 0..3),
        expires in proptest::option::of(date_text()),
        date_h in proptest::option::of(date_text()),
        age in proptest::option::of("[0-9]{0,22}|[ -~]{0,8}"),
        vary in proptest::option::of("[ -~]{0,20}"),
        status in 100u16..600,
        auth: bool,
        private: bool,
        max_ttl in 1u64..10_000_000,
        default_ttl in proptest::option::of(1u64..10_000_000),
        now_offset in 0u64..4_000_000_000,
    ) {
        let mut policy = HttpCachePolicy::new()
            .max_ttl(Duration::from_secs(max_ttl))
            .cache_private(private)
            .vary([http::header::ACCEPT_ENCODING]);
        if let Some(d) = default_ttl {
            policy = policy.default_ttl(Duration::from_secs(d.min(max_ttl)));
        }
        prop_assert!(policy.validate().is_ok());
        let mut b = http::Response::builder().status(status);
        for line in &cc {
            b = b.header("cache-control", line.as_str());
        }
        for (name, value) in [("expires", &expires), ("date", &date_h), ("age", &age), ("vary", &vary)] {
            if let Some(v) = value {
                b = b.header(name, v.as_str());
            }
        }
        let (parts, ()) = b.body(()).unwrap().into_parts();
        let mut req = Request::get("/");
        if auth {
            req = req.header("authorization", "x");
        }
        let req = req.body(()).unwrap();
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(now_offset);
        if let Some(ttl) = policy.freshness(&req, &parts, now).ttl() {
            prop_assert!(ttl > Duration::ZERO);
            prop_assert!(ttl <= Duration::from_secs(max_ttl), "{ttl:?} > {max_ttl}");
        }
    }

    /// Arbitrary bytes in any header the policy reads never panic.
    #[test]
    fn arbitrary_bytes_never_panic(
        values in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..40), 6),
    ) {
        let names = ["cache-control", "expires", "date", "age", "vary", "content-length"];
        let mut res = http::Response::new(());
        let mut req = Request::new(());
        for (name, value) in names.iter().zip(&values) {
            if let Ok(v) = http::HeaderValue::from_bytes(value) {
                res.headers_mut().insert(*name, v.clone());
                req.headers_mut().insert(*name, v);
            }
        }
        let (parts, ()) = res.into_parts();
        let policy = HttpCachePolicy::new().vary([http::header::VARY, http::header::AGE]);
        let _ = policy.freshness(&req, &parts, now());
        let _ = policy.body_plan(&req, &parts, 0);
        if let Some(key) = policy.cache_key(&req) {
            let _ = key.to_string();
        }
    }
}
