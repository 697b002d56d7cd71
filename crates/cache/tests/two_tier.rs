//! Two tiers over an in-memory fake of `RemoteCache`: local → remote →
//! upstream, fills, invalidation and its broadcast, and remote failures
//! (errors, undecodable bytes) served as misses.

mod common;

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use common::{FakeRemote, settle, upstream};
use rampart_cache::remote::{Codec, RemoteErrorKind};
use rampart_cache::{CacheConfig, CacheLayer};
use tower::{Layer, ServiceExt};

type Layer2 = CacheLayer<String, Option<String>, String, Option<String>>;

fn two_tier(remote: &Arc<FakeRemote>) -> Layer2 {
    CacheConfig::new()
        .ttl(Duration::from_secs(60))
        .ttl_jitter(0.0)
        .builder(|k: &String| Some(k.clone()))
        .remote(
            remote.clone(),
            Codec::new(1),
            |k: &String| format!("users:{k}"),
            |name: &str| name.strip_prefix("users:").map(str::to_string),
        )
        .build()
        .unwrap()
}

#[tokio::test(start_paused = true)]
async fn a_load_fills_both_tiers_and_another_process_reads_the_remote_one() {
    let remote = FakeRemote::new();
    let (up, svc) = upstream(Duration::ZERO);
    let a = two_tier(&remote);
    let b = two_tier(&remote);
    let (ha, hb) = (a.handle(), b.handle());
    let (a, b) = (a.layer(svc.clone()), b.layer(svc));

    assert_eq!(a.clone().oneshot("1".into()).await.unwrap().unwrap(), "1@0");
    settle().await;
    let (bytes, ttl) = remote.stored("users:1").expect("filled the remote tier");
    assert_eq!(ttl, Duration::from_secs(60));
    assert_eq!(
        Codec::new(1).decode::<Option<String>>(&bytes).unwrap(),
        Some("1@0".into())
    );
    assert_eq!(ha.stats().remote_misses, 1);

    // process b: local miss, remote hit, no upstream call
    assert_eq!(b.clone().oneshot("1".into()).await.unwrap().unwrap(), "1@0");
    assert_eq!(up.calls(), 1);
    assert_eq!((hb.stats().remote_hits, hb.stats().loads), (1, 0));
    // and now a local hit
    b.clone().oneshot("1".into()).await.unwrap();
    assert_eq!((hb.stats().hits, hb.stats().remote_hits), (1, 1));
}

#[tokio::test(start_paused = true)]
async fn invalidation_reaches_every_process() {
    let remote = FakeRemote::new();
    let (up, svc) = upstream(Duration::ZERO);
    let a = two_tier(&remote);
    let b = two_tier(&remote);
    let (ha, hb) = (a.handle(), b.handle());
    let (a, b) = (a.layer(svc.clone()), b.layer(svc));
    a.clone().oneshot("1".into()).await.unwrap();
    settle().await;
    b.clone().oneshot("1".into()).await.unwrap();
    assert_eq!(up.calls(), 1);

    up.bump();
    ha.invalidate(&"1".to_string()).await.unwrap();
    settle().await;
    assert!(remote.stored("users:1").is_none(), "deleted remotely");
    assert!(hb.stats().invalidations >= 1, "b heard the broadcast");
    assert_eq!(b.clone().oneshot("1".into()).await.unwrap().unwrap(), "1@1");
    assert_eq!(up.calls(), 2);
    settle().await;
    assert_eq!(a.clone().oneshot("1".into()).await.unwrap().unwrap(), "1@1");
    assert_eq!(up.calls(), 2, "a read b's reload from the remote tier");
}

#[tokio::test(start_paused = true)]
async fn a_failing_remote_is_a_miss_never_the_callers_error() {
    let remote = FakeRemote::new();
    remote.down.store(true, Ordering::SeqCst);
    let (up, svc) = upstream(Duration::ZERO);
    let layer = two_tier(&remote);
    let h = layer.handle();
    let svc = layer.layer(svc);
    assert_eq!(
        svc.clone().oneshot("1".into()).await.unwrap().unwrap(),
        "1@0"
    );
    settle().await;
    assert_eq!(
        svc.clone().oneshot("1".into()).await.unwrap().unwrap(),
        "1@0"
    );
    assert_eq!(up.calls(), 1, "the local tier still works");
    let s = h.stats();
    // one failed get, one failed set
    assert_eq!((s.remote_errors, s.remote_hits, s.hits), (2, 0, 1));
    let err = h.invalidate(&"1".to_string()).await.unwrap_err();
    assert_eq!(err.kind(), RemoteErrorKind::Unavailable);
    svc.clone().oneshot("1".into()).await.unwrap();
    assert_eq!(
        up.calls(),
        2,
        "dropped locally even though the remote failed"
    );
}

#[tokio::test(start_paused = true)]
async fn undecodable_remote_bytes_are_a_miss() {
    let remote = FakeRemote::new();
    remote.put_raw("users:1", b"written by someone else".to_vec());
    remote.put_raw(
        "users:2",
        Codec::new(7).encode(&Some("old schema")).unwrap(),
    );
    let (up, svc) = upstream(Duration::ZERO);
    let layer = two_tier(&remote);
    let h = layer.handle();
    let svc = layer.layer(svc);
    assert_eq!(
        svc.clone().oneshot("1".into()).await.unwrap().unwrap(),
        "1@0"
    );
    assert_eq!(
        svc.clone().oneshot("2".into()).await.unwrap().unwrap(),
        "2@0"
    );
    assert_eq!(up.calls(), 2);
    assert_eq!(h.stats().remote_decode_errors, 2);
    settle().await;
    let (bytes, _) = remote.stored("users:1").unwrap();
    assert_eq!(
        Codec::new(1).decode::<Option<String>>(&bytes).unwrap(),
        Some("1@0".into()),
        "overwritten with a readable value"
    );
}
