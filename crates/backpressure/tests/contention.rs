//! The lock-free limiters stay exact under contention from many threads.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use rampart_backpressure::{AdaptiveLimitConfig, Overloaded, RateLimitConfig};
use tower::{Layer, Service, ServiceExt, service_fn};

#[test]
fn gcra_admits_exactly_the_burst_across_threads() {
    // One token a day and a burst of 100: exactly 100 of 8 × 1000 calls
    // get through, however the threads interleave.
    let layer = RateLimitConfig::new()
        .rate(1, Duration::from_secs(86_400))
        .burst(100)
        .build()
        .unwrap();
    let handle = layer.handle();
    let svc = layer.layer(service_fn(|()| async { Ok::<_, std::io::Error>(()) }));
    let threads: Vec<_> = (0..8)
        .map(|_| {
            let svc = svc.clone();
            std::thread::spawn(move || {
                let mut admitted = 0;
                for _ in 0..1000 {
                    let result = tokio_test::block_on(svc.clone().oneshot(()));
                    match result {
                        Ok(()) => admitted += 1,
                        Err(e) => assert!(e.is::<Overloaded>()),
                    }
                }
                admitted
            })
        })
        .collect();
    let admitted: usize = threads.into_iter().map(|t| t.join().unwrap()).sum();
    assert_eq!(admitted, 100);
    assert_eq!(handle.admitted(), 100);
    assert_eq!(handle.rejected(), 7900);
}

#[test]
fn adaptive_limit_never_exceeded_across_threads() {
    let in_flight = Arc::new(AtomicUsize::new(0));
    let peak = Arc::new(AtomicUsize::new(0));
    let layer = AdaptiveLimitConfig::new()
        .initial_limit(4)
        .max_limit(4)
        .build()
        .unwrap();
    let handle = layer.handle();
    let inner = {
        let peak = peak.clone();
        service_fn(move |()| {
            let n = in_flight.fetch_add(1, Ordering::SeqCst) + 1;
            peak.fetch_max(n, Ordering::SeqCst);
            std::thread::yield_now();
            in_flight.fetch_sub(1, Ordering::SeqCst);
            async { Ok::<_, std::io::Error>(()) }
        })
    };
    let svc = layer.layer(inner);
    let threads: Vec<_> = (0..8)
        .map(|_| {
            let mut svc = svc.clone();
            std::thread::spawn(move || {
                for _ in 0..1000 {
                    tokio_test::block_on(async {
                        svc.ready().await.unwrap();
                        let _ = svc.call(()).await;
                    });
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    assert!(peak.load(Ordering::SeqCst) <= 4);
    assert_eq!(handle.in_flight(), 0);
}
