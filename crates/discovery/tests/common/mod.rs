//! Helpers shared by the registry tests.
#![allow(dead_code, unreachable_pub)]

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU32, Ordering};

use rampart_discovery::registry::{Event, EventKind, Instance, Watch};

/// An instance `id` of `service` on 10.0.0.1:8080.
pub fn instance(service: &str, id: &str) -> Instance {
    Instance::new(id, service, "10.0.0.1", 8080).unwrap()
}

/// Every event queued on `watch` now.
pub fn drain(watch: &mut Watch) -> Vec<Event> {
    std::iter::from_fn(|| watch.try_next().map(Result::unwrap)).collect()
}

/// Applies `events` to `state` as a watcher would, checking each is
/// consistent with it (no insert of a present id, no update or remove of an
/// absent one) and that revisions strictly increase.
pub fn apply(state: &mut BTreeMap<String, Instance>, last: &mut u64, events: &[Event]) {
    for e in events {
        assert!(e.revision > *last, "revision {} after {}", e.revision, last);
        *last = e.revision;
        let id = e.instance.id().to_owned();
        match e.kind {
            EventKind::Insert => assert!(state.insert(id, e.instance.clone()).is_none(), "{e:?}"),
            EventKind::Update => assert!(state.insert(id, e.instance.clone()).is_some(), "{e:?}"),
            EventKind::Remove => assert!(state.remove(&id).is_some(), "{e:?}"),
        }
    }
}

pub mod config_suite;
pub mod registry_suite;

#[cfg(feature = "etcd")]
pub mod etcd;

/// The next `n` events of `watch`, waiting up to 10 s for them (real or
/// paused time); fails the test if they do not come or one is an error.
pub async fn take(watch: &mut Watch, n: usize) -> Vec<Event> {
    let mut events = Vec::with_capacity(n);
    while events.len() < n {
        match tokio::time::timeout(std::time::Duration::from_secs(10), watch.next()).await {
            Ok(Some(Ok(e))) => events.push(e),
            Ok(Some(Err(e))) => panic!("watch error after {events:?}: {e}"),
            Ok(None) => panic!("watch ended after {events:?}"),
            Err(_) => panic!("only {} of {n} events came: {events:?}", events.len()),
        }
    }
    events
}

/// Fails if `watch` delivers anything within 300 ms.
pub async fn assert_quiet(watch: &mut Watch) {
    if let Ok(Some(e)) =
        tokio::time::timeout(std::time::Duration::from_millis(300), watch.next()).await
    {
        panic!("unexpected event {e:?}");
    }
}

/// A fresh directory under the system temp dir, removed on drop.
pub struct TempDir(pub PathBuf);

impl TempDir {
    /// A new empty directory whose name starts with `rampart-{name}`.
    pub fn new(name: &str) -> Self {
        static N: AtomicU32 = AtomicU32::new(0);
        let dir = std::env::temp_dir().join(format!(
            "rampart-{name}-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        Self(dir)
    }

    /// `file` in the directory.
    pub fn path(&self, file: &str) -> PathBuf {
        self.0.join(file)
    }

    /// The config store's file, `config.json`.
    pub fn file(&self) -> PathBuf {
        self.path("config.json")
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}
