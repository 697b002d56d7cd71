//! The caller's tracing span is carried into the worker and entered around
//! the inner service's `call`.

use std::cell::RefCell;
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use rampart_backpressure::QueueConfig;
use rampart_core::BoxError;
use tower::{Layer, Service, ServiceExt, service_fn};
use tracing::span::{Attributes, Id, Record};
use tracing::{Event, Metadata, Subscriber};
use tracing_core::span::Current;

/// A minimal subscriber: tracks the entered span per thread and records,
/// for each event, which span was entered.
#[derive(Default)]
struct Tracker {
    next: AtomicU64,
    meta: Mutex<HashMap<u64, &'static Metadata<'static>>>,
    events: Arc<Mutex<Vec<Option<u64>>>>,
}

thread_local! {
    static STACK: RefCell<Vec<u64>> = const { RefCell::new(Vec::new()) };
}

impl Subscriber for Tracker {
    fn enabled(&self, _: &Metadata<'_>) -> bool {
        true
    }
    fn new_span(&self, attrs: &Attributes<'_>) -> Id {
        let id = self.next.fetch_add(1, Ordering::Relaxed) + 1;
        self.meta.lock().unwrap().insert(id, attrs.metadata());
        Id::from_u64(id)
    }
    fn current_span(&self) -> Current {
        match STACK.with(|s| s.borrow().last().copied()) {
            Some(id) => Current::new(Id::from_u64(id), self.meta.lock().unwrap()[&id]),
            None => Current::none(),
        }
    }
    fn record(&self, _: &Id, _: &Record<'_>) {}
    fn record_follows_from(&self, _: &Id, _: &Id) {}
    fn event(&self, _: &Event<'_>) {
        let top = STACK.with(|s| s.borrow().last().copied());
        self.events.lock().unwrap().push(top);
    }
    fn enter(&self, span: &Id) {
        STACK.with(|s| s.borrow_mut().push(span.into_u64()));
    }
    fn exit(&self, _: &Id) {
        STACK.with(|s| s.borrow_mut().pop());
    }
}

#[test]
fn caller_span_is_entered_in_the_worker() {
    let tracker = Tracker::default();
    let events = tracker.events.clone();
    let _guard = tracing::subscriber::set_default(tracker);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .unwrap();
    let id = rt.block_on(async {
        let layer = QueueConfig::new().capacity(4).build().unwrap();
        let svc = layer.layer(service_fn(|_: ()| {
            // Runs in the worker task.
            tracing::info!("inner call");
            async { Ok::<_, BoxError>(()) }
        }));

        let span = tracing::info_span!("caller");
        let id = span.id().unwrap().into_u64();
        let mut ready = svc.clone();
        ready.ready().await.unwrap();
        let response = {
            // The request is queued inside the span; the worker calls the
            // inner service later, from its own task.
            let _entered = span.enter();
            ready.call(())
        };
        response.await.unwrap();

        // Outside any span, none is entered in the worker either.
        svc.oneshot(()).await.unwrap();
        id
    });
    let events: Vec<_> = events.lock().unwrap().clone();
    assert_eq!(events, [Some(id), None], "the caller's span, then none");
}
