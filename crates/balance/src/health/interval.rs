//! The statistics of one interval: which endpoints are outliers by success
//! rate or by failure percentage. Pure functions over samples, so the
//! arithmetic is tested apart from the detector's bookkeeping.

/// Slack, in percentage points, below which two rates count as equal: a
/// pool of identical rates must not eject anyone because the float mean
/// rounded one unit above them.
const EPSILON: f64 = 1e-9;

/// One endpoint's answers in the interval just ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Sample {
    pub(crate) slot: usize,
    pub(crate) successes: u64,
    pub(crate) failures: u64,
}

impl Sample {
    pub(crate) fn requests(&self) -> u64 {
        self.successes.saturating_add(self.failures)
    }

    /// Successes as a percentage of requests; `None` without requests.
    pub(crate) fn success_rate(&self) -> Option<f64> {
        let requests = self.requests();
        (requests > 0).then(|| self.successes as f64 * 100.0 / requests as f64)
    }
}

/// The judged endpoints (at least `volume` requests) with their success
/// rates, or nothing when fewer than `min_hosts` qualify.
fn judged(samples: &[Sample], volume: u64, min_hosts: usize) -> Vec<(usize, f64)> {
    let judged: Vec<(usize, f64)> = samples
        .iter()
        .filter(|s| s.requests() >= volume.max(1))
        .filter_map(|s| Some((s.slot, s.success_rate()?)))
        .collect();
    if judged.len() < min_hosts.max(1) {
        Vec::new()
    } else {
        judged
    }
}

/// Envoy's success-rate rule: among the endpoints with at least `volume`
/// requests, when there are at least `min_hosts` of them, the slots whose
/// success rate is below `mean − factor × stdev` (population standard
/// deviation), worst first.
pub(crate) fn success_rate_outliers(
    samples: &[Sample],
    volume: u64,
    min_hosts: usize,
    factor: f64,
) -> Vec<usize> {
    let judged = judged(samples, volume, min_hosts);
    if judged.is_empty() {
        return Vec::new();
    }
    let n = judged.len() as f64;
    let mean = judged.iter().map(|(_, r)| r).sum::<f64>() / n;
    let variance = judged.iter().map(|(_, r)| (r - mean).powi(2)).sum::<f64>() / n;
    let threshold = mean - factor * variance.sqrt();
    worst_first(judged, |rate| rate + EPSILON < threshold)
}

/// Envoy's failure-percentage rule: among the endpoints with at least
/// `volume` requests, when there are at least `min_hosts` of them, the
/// slots whose failures are at least `threshold` percent of their requests,
/// worst first.
pub(crate) fn failure_percentage_outliers(
    samples: &[Sample],
    volume: u64,
    min_hosts: usize,
    threshold: f64,
) -> Vec<usize> {
    let judged = judged(samples, volume, min_hosts);
    worst_first(judged, |rate| 100.0 - rate + EPSILON >= threshold)
}

fn worst_first(mut judged: Vec<(usize, f64)>, outlier: impl Fn(f64) -> bool) -> Vec<usize> {
    judged.retain(|&(_, rate)| outlier(rate));
    judged.sort_by(|a, b| a.1.total_cmp(&b.1).then(a.0.cmp(&b.0)));
    judged.into_iter().map(|(slot, _)| slot).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(slot: usize, successes: u64, failures: u64) -> Sample {
        Sample {
            slot,
            successes,
            failures,
        }
    }

    #[test]
    fn one_bad_host_of_ten_is_below_the_band() {
        let mut samples: Vec<_> = (0..9).map(|i| sample(i, 99 + i as u64 % 2, 1)).collect();
        samples.push(sample(9, 50, 50));
        assert_eq!(success_rate_outliers(&samples, 100, 5, 1.9), [9]);
    }

    #[test]
    fn identical_rates_eject_nobody_even_with_factor_zero() {
        // 1/3 and 2/3 do not add up exactly in binary.
        let samples: Vec<_> = (0..7).map(|i| sample(i, 200, 100)).collect();
        assert!(success_rate_outliers(&samples, 1, 1, 0.0).is_empty());
    }

    #[test]
    fn volume_and_minimum_hosts_gate_the_judgement() {
        let mut samples: Vec<_> = (0..4).map(|i| sample(i, 100, 0)).collect();
        samples.push(sample(4, 0, 100));
        assert_eq!(success_rate_outliers(&samples, 100, 5, 1.0), [4]);
        assert!(success_rate_outliers(&samples, 101, 5, 1.0).is_empty());
        assert!(success_rate_outliers(&samples[..4], 100, 5, 1.0).is_empty());
        assert!(success_rate_outliers(&[], 1, 1, 1.0).is_empty());
        // No requests at all is no rate, even with a volume of 0.
        assert!(success_rate_outliers(&[sample(0, 0, 0)], 0, 0, 0.0).is_empty());
    }

    #[test]
    fn failure_percentage_is_inclusive_and_worst_first() {
        let samples = [
            sample(0, 15, 85),
            sample(1, 16, 84),
            sample(2, 0, 100),
            sample(3, 100, 0),
        ];
        assert_eq!(failure_percentage_outliers(&samples, 50, 4, 85.0), [2, 0]);
        assert!(failure_percentage_outliers(&samples, 50, 5, 85.0).is_empty());
        assert_eq!(
            failure_percentage_outliers(&samples, 50, 1, 0.0),
            [2, 0, 1, 3]
        );
    }
}
