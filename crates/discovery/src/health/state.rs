//! What the health checker and the sidecar share: [`Thresholds`]
//! (consecutive results in, a status out) and their metrics.

use rampart_core::metrics::{InstanceLabels, labels, outcome};

use super::{CHECKS_TOTAL, TRANSITIONS_TOTAL};
use crate::registry::{HealthStatus, SERVICE_LABEL, ServiceName};

/// Turns a sequence of probe results into a status: `healthy` successes in
/// a row make it healthy, `unhealthy` failures in a row unhealthy; a result
/// of the other kind resets the run. It starts
/// [`Unknown`](HealthStatus::Unknown).
#[derive(Debug, Clone)]
pub(crate) struct Thresholds {
    healthy: u32,
    unhealthy: u32,
    status: HealthStatus,
    successes: u32,
    failures: u32,
}

impl Thresholds {
    pub(crate) fn new(healthy: u32, unhealthy: u32) -> Self {
        Self {
            healthy,
            unhealthy,
            status: HealthStatus::Unknown,
            successes: 0,
            failures: 0,
        }
    }

    /// Records one result; the new status if it changed.
    pub(crate) fn record(&mut self, success: bool) -> Option<HealthStatus> {
        let next = if success {
            self.failures = 0;
            self.successes = self.successes.saturating_add(1);
            (self.successes >= self.healthy).then_some(HealthStatus::Healthy)
        } else {
            self.successes = 0;
            self.failures = self.failures.saturating_add(1);
            (self.failures >= self.unhealthy).then_some(HealthStatus::Unhealthy)
        };
        match next {
            Some(s) if s != self.status => {
                self.status = s;
                Some(s)
            }
            _ => None,
        }
    }

    /// Back to [`Unknown`](HealthStatus::Unknown) with no run (a new target).
    pub(crate) fn reset(&mut self) {
        self.status = HealthStatus::Unknown;
        self.successes = 0;
        self.failures = 0;
    }

    pub(crate) fn status(&self) -> HealthStatus {
        self.status
    }

    pub(crate) fn successes(&self) -> u32 {
        self.successes
    }

    pub(crate) fn failures(&self) -> u32 {
        self.failures
    }
}

/// The metric handles of one checker or sidecar (labels `name`,
/// `service`), registered once.
#[derive(Debug, Clone)]
pub(crate) struct CheckMetrics {
    passed: metrics::Counter,
    failed: metrics::Counter,
    to_healthy: metrics::Counter,
    to_unhealthy: metrics::Counter,
}

impl CheckMetrics {
    pub(crate) fn new(name: &str, service: &ServiceName) -> Self {
        let mut base = InstanceLabels::new(name).to_vec();
        base.push(metrics::Label::new(SERVICE_LABEL, service.to_string()));
        let with = |label: &'static str, value: &'static str| {
            let mut l = base.clone();
            l.push(metrics::Label::new(label, value));
            l
        };
        Self {
            passed: metrics::counter!(CHECKS_TOTAL, with(labels::OUTCOME, outcome::SUCCESS)),
            failed: metrics::counter!(CHECKS_TOTAL, with(labels::OUTCOME, outcome::FAILURE)),
            to_healthy: metrics::counter!(TRANSITIONS_TOTAL, with(labels::STATE, "healthy")),
            to_unhealthy: metrics::counter!(TRANSITIONS_TOTAL, with(labels::STATE, "unhealthy")),
        }
    }

    pub(crate) fn check(&self, passed: bool) {
        if passed {
            self.passed.increment(1);
        } else {
            self.failed.increment(1);
        }
    }

    pub(crate) fn transition(&self, to: HealthStatus) {
        match to {
            HealthStatus::Healthy => self.to_healthy.increment(1),
            HealthStatus::Unhealthy => self.to_unhealthy.increment(1),
            HealthStatus::Unknown => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flips_after_n_in_a_row_and_resets_on_the_other_result() {
        let mut t = Thresholds::new(2, 3);
        assert_eq!(t.record(true), None);
        assert_eq!(t.record(true), Some(HealthStatus::Healthy));
        assert_eq!(t.record(true), None);
        assert_eq!(t.record(false), None);
        assert_eq!(t.record(false), None);
        assert_eq!(t.record(true), None); // resets the failures
        assert_eq!(t.record(false), None);
        assert_eq!(t.record(false), None);
        assert_eq!(t.record(false), Some(HealthStatus::Unhealthy));
        assert_eq!(t.record(false), None);
        assert_eq!(t.status(), HealthStatus::Unhealthy);
        t.reset();
        assert_eq!(t.status(), HealthStatus::Unknown);
        assert_eq!((t.successes(), t.failures()), (0, 0));
    }
}
