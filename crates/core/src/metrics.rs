//! One naming scheme for every metric Rampart emits.
//!
//! Names are `rampart_<crate>_<what>` (built with [`metric_name!`](crate::metric_name)),
//! labels use the constants in [`labels`]. Libraries only emit through the
//! `metrics` facade; installing an exporter is the application's job (the
//! mesh binary exposes Prometheus).
//!
//! Layers register their metric handles when an instance is built, so
//! install your recorder before building layers.
//!
//! ```
//! assert_eq!(rampart_core::metric_name!("breaker", "calls_total"), "rampart_breaker_calls_total");
//! ```

/// Builds a metric name `rampart_<crate>_<what>` at compile time.
#[macro_export]
macro_rules! metric_name {
    ($krate:literal, $what:literal) => {
        concat!("rampart_", $krate, "_", $what)
    };
}

/// Label names shared by every crate.
pub mod labels {
    /// The instance name a user gave a layer (`"payments"`).
    pub const NAME: &str = "name";
    /// The key of a keyed instance (an authority, route or user).
    pub const KEY: &str = "key";
    /// A call's outcome: see [`outcome`](super::outcome).
    pub const OUTCOME: &str = "outcome";
    /// A state (`"closed"`, `"open"`, ...).
    pub const STATE: &str = "state";
    /// Why something was rejected or shed.
    pub const REASON: &str = "reason";
}

/// Values of the [`labels::OUTCOME`] label.
pub mod outcome {
    /// The call succeeded.
    pub const SUCCESS: &str = "success";
    /// The call failed.
    pub const FAILURE: &str = "failure";
    /// The call was not recorded.
    pub const IGNORED: &str = "ignored";
    /// The call was rejected before reaching the inner service.
    pub const REJECTED: &str = "rejected";
}

/// The labels an instance puts on every metric: its name, and its key when
/// keyed. Keep a clone in the instance and pass [`InstanceLabels::to_vec`]
/// when registering handles.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct InstanceLabels {
    name: Option<String>,
    key: Option<String>,
}

impl InstanceLabels {
    /// Labels for an instance called `name` (may be empty: no label).
    pub fn new(name: impl Into<String>) -> Self {
        let name = name.into();
        Self {
            name: (!name.is_empty()).then_some(name),
            key: None,
        }
    }

    /// The same labels plus a `key` label.
    pub fn with_key(&self, key: impl Into<String>) -> Self {
        Self {
            name: self.name.clone(),
            key: Some(key.into()),
        }
    }

    /// As `metrics` labels.
    pub fn to_vec(&self) -> Vec<metrics::Label> {
        let mut v = Vec::with_capacity(2);
        if let Some(n) = &self.name {
            v.push(metrics::Label::new(labels::NAME, n.clone()));
        }
        if let Some(k) = &self.key {
            v.push(metrics::Label::new(labels::KEY, k.clone()));
        }
        v
    }

    /// As `metrics` labels plus one more.
    pub fn with(&self, label: &'static str, value: &'static str) -> Vec<metrics::Label> {
        let mut v = self.to_vec();
        v.push(metrics::Label::new(label, value));
        v
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_are_stable() {
        let l = InstanceLabels::new("payments").with_key("a.example:443");
        let v = l.with(labels::OUTCOME, outcome::FAILURE);
        let pairs: Vec<_> = v.iter().map(|l| (l.key(), l.value())).collect();
        assert_eq!(
            pairs,
            [
                ("name", "payments"),
                ("key", "a.example:443"),
                ("outcome", "failure")
            ]
        );
        assert!(InstanceLabels::new("").to_vec().is_empty());
    }
}
