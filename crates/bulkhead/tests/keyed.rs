//! Per-key bulkheads: one key's load does not touch another's permits.

use std::time::Duration;

use rampart_bulkhead::{BulkheadConfig, BulkheadFull};
use rampart_core::keyed::KeyedConfig;
use tokio_test::{assert_pending, assert_ready_err, assert_ready_ok, task};
use tower_test::{assert_request_eq, mock};

/// A request: (tenant, payload).
type Req = (&'static str, u32);

fn tenant(req: &Req) -> &'static str {
    req.0
}

#[tokio::test(start_paused = true)]
async fn a_full_key_does_not_block_another() {
    let layer = BulkheadConfig::default()
        .name("tenants")
        .max_concurrent(1)
        .build_keyed(tenant, KeyedConfig::default())
        .unwrap();
    let keys = layer.handle();
    let (mut svc, mut inner) = mock::spawn_layer::<Req, &'static str, _>(layer);

    assert_ready_ok!(svc.poll_ready());
    let mut a1 = task::spawn(svc.call(("a", 1)));
    assert_ready_ok!(svc.poll_ready());
    let mut a2 = task::spawn(svc.call(("a", 2)));
    let err = assert_ready_err!(a2.poll());
    assert!(err.is::<BulkheadFull>());

    // key "a" is full, key "b" is not
    assert_ready_ok!(svc.poll_ready());
    let mut b1 = task::spawn(svc.call(("b", 1)));
    assert_request_eq!(inner, ("a", 1)).send_response("A");
    assert_request_eq!(inner, ("b", 1)).send_response("B");
    assert_pending!(inner.poll_request());
    assert_eq!(assert_ready_ok!(b1.poll()), "B");

    let a = keys.get(&"a").expect("key a has a bulkhead");
    let b = keys.get(&"b").expect("key b has a bulkhead");
    assert_eq!((a.in_flight(), a.rejected()), (1, 1));
    assert_eq!((b.in_flight(), b.rejected()), (0, 0));
    assert_eq!(keys.len(), 2);
    assert!(keys.get(&"c").is_none());
    let mut names: Vec<_> = keys.entries().into_iter().map(|(k, _)| *k).collect();
    names.sort();
    assert_eq!(names, ["a", "b"]);

    assert_eq!(assert_ready_ok!(a1.poll()), "A");
    assert_eq!(a.in_flight(), 0);
}

#[tokio::test(start_paused = true)]
async fn keys_wait_in_their_own_queues() {
    let layer = BulkheadConfig::default()
        .max_concurrent(1)
        .max_wait(Duration::from_millis(100))
        .max_queued(1)
        .build_keyed(tenant, KeyedConfig::default())
        .unwrap();
    let (mut svc, mut inner) = mock::spawn_layer::<Req, &'static str, _>(layer);

    assert_ready_ok!(svc.poll_ready());
    let _a1 = task::spawn(svc.call(("a", 1)));
    assert_ready_ok!(svc.poll_ready());
    let mut a2 = task::spawn(svc.call(("a", 2)));
    assert_pending!(a2.poll());
    // a's queue is full; b has its own
    assert_ready_ok!(svc.poll_ready());
    let _b1 = task::spawn(svc.call(("b", 1)));
    assert_ready_ok!(svc.poll_ready());
    let mut b2 = task::spawn(svc.call(("b", 2)));
    assert_pending!(b2.poll());

    tokio::time::advance(Duration::from_millis(100)).await;
    assert!(assert_ready_err!(a2.poll()).is::<BulkheadFull>());
    assert!(assert_ready_err!(b2.poll()).is::<BulkheadFull>());
    assert_request_eq!(inner, ("a", 1));
    assert_request_eq!(inner, ("b", 1));
}

#[tokio::test(start_paused = true)]
async fn resizing_a_keyed_bulkhead_applies_to_every_key() {
    let layer = BulkheadConfig::default()
        .max_concurrent(1)
        .build_keyed(tenant, KeyedConfig::default())
        .unwrap();
    let keys = layer.handle();
    let (mut svc, _inner) = mock::spawn_layer::<Req, &'static str, _>(layer);
    assert_ready_ok!(svc.poll_ready());
    let _a1 = task::spawn(svc.call(("a", 1)));

    keys.set_max_concurrent(2).unwrap();
    assert!(keys.set_max_concurrent(0).is_err());
    assert_eq!(keys.max_concurrent(), 2);
    assert_eq!(keys.get(&"a").unwrap().max_concurrent(), 2);
    // the live key grew
    assert_ready_ok!(svc.poll_ready());
    let mut a2 = task::spawn(svc.call(("a", 2)));
    assert_pending!(a2.poll());
    // and a new key starts at the new limit
    assert_ready_ok!(svc.poll_ready());
    let _c1 = task::spawn(svc.call(("c", 1)));
    assert_eq!(keys.get(&"c").unwrap().max_concurrent(), 2);
}

#[test]
fn bad_key_bounds_are_refused() {
    let err = BulkheadConfig::default()
        .build_keyed(
            tenant,
            KeyedConfig {
                max_keys: 0,
                idle_timeout: None,
            },
        )
        .unwrap_err();
    assert_eq!(err.field(), "max_keys");
    let err = BulkheadConfig::default()
        .max_concurrent(0)
        .build_keyed(tenant, KeyedConfig::default())
        .unwrap_err();
    assert_eq!(err.field(), "max_concurrent");
}
