//! Gradient2's state between samples: the long-term latency average, the
//! round trip being measured and the estimated limit.

use std::time::Duration;

use crate::adaptive::config::{Params, QueueSize};

/// Samples averaged plainly before the long-term average turns into an
/// exponential one, so that the first few do not weigh too much.
const WARM_UP: u32 = 10;

/// When the long-term average is more than this many times the short-term
/// latency, the load that inflated it is gone: shrink it faster.
const STALE_RATIO: f64 = 2.0;

/// How much faster: the factor applied per sample while it is stale.
const STALE_DECAY: f64 = 0.95;

/// Gradient2's state, behind the limiter's algorithm lock.
#[derive(Debug)]
pub(crate) struct Gradient2 {
    /// The limit as a real number (the core keeps it in fixed point).
    estimate: f64,
    /// The long-term average latency, in seconds (`None` before the first
    /// sample).
    long: Option<f64>,
    /// Samples in `long` so far, up to [`WARM_UP`].
    warm: u32,
    /// The round trip being measured.
    window: Window,
}

/// The calls completed in the current round trip.
#[derive(Debug, Default)]
struct Window {
    /// Total latency of the calls that were not drops, in seconds.
    latency: f64,
    /// Calls that were not drops.
    calls: u32,
    /// The most calls in flight when any of them started.
    max_in_flight: usize,
    /// A call of this round trip failed or was too slow.
    dropped: bool,
}

impl Gradient2 {
    pub(crate) fn new(initial_limit: usize) -> Self {
        Self {
            estimate: initial_limit as f64,
            long: None,
            warm: 0,
            window: Window::default(),
        }
    }

    /// Adds one completed call to the round trip being measured. When
    /// `closes` (the call started after the last step, so a round trip has
    /// passed), takes one step and returns the new limit estimate.
    pub(crate) fn sample(
        &mut self,
        p: &Params,
        latency: Duration,
        dropped: bool,
        in_flight: usize,
        closes: bool,
    ) -> Option<f64> {
        let w = &mut self.window;
        w.max_in_flight = w.max_in_flight.max(in_flight);
        if dropped {
            w.dropped = true;
        } else {
            w.latency += latency.as_secs_f64();
            w.calls += 1;
        }
        if !closes {
            return None;
        }
        let window = std::mem::take(&mut self.window);
        let short = (window.calls > 0).then(|| window.latency / f64::from(window.calls));
        let long = short.map(|short| self.learn(p, short));
        let gradient = match (short, long) {
            _ if window.dropped => 0.5,
            // Too little load to learn anything about the limit.
            _ if (window.max_in_flight as f64) < self.estimate / 2.0 => return None,
            // Latency up to `rtt_tolerance` × the long-term average is no
            // queueing; above it the limit shrinks in proportion, at most
            // by half.
            (Some(short), Some(long)) => {
                (p.rtt_tolerance * long / short.max(f64::MIN_POSITIVE)).clamp(0.5, 1.0)
            }
            _ => return None,
        };
        let queue = match p.queue_size {
            QueueSize::Fixed(n) => f64::from(n),
            QueueSize::Sqrt => self.estimate.sqrt().max(1.0),
        };
        let target = self.estimate * gradient + queue;
        let next = self.estimate * (1.0 - p.smoothing) + target * p.smoothing;
        self.estimate = next.clamp(p.min_limit as f64, p.max_limit as f64);
        Some(self.estimate)
    }

    /// Feeds one round trip's mean latency to the long-term average and
    /// returns the average.
    fn learn(&mut self, p: &Params, short: f64) -> f64 {
        let long = match self.long {
            None => short,
            Some(long) if self.warm < WARM_UP.min(p.long_window) => {
                (long * f64::from(self.warm) + short) / f64::from(self.warm + 1)
            }
            Some(long) => {
                let factor = 2.0 / (f64::from(p.long_window) + 1.0);
                long * (1.0 - factor) + short * factor
            }
        };
        self.warm = self.warm.saturating_add(1);
        // Re-learn a lower base latency quickly once the load that raised
        // the average is gone.
        let long = if long > STALE_RATIO * short {
            long * STALE_DECAY
        } else {
            long
        };
        self.long = Some(long);
        long
    }

    /// The long-term average latency, once known.
    pub(crate) fn long_rtt(&self) -> Option<Duration> {
        self.long.map(Duration::from_secs_f64)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::adaptive::config::AdaptiveLimitConfig;
    use crate::adaptive::config::Algorithm;

    const MS: Duration = Duration::from_millis(1);

    fn params() -> Params {
        AdaptiveLimitConfig::new()
            .algorithm(Algorithm::Gradient2)
            .initial_limit(20)
            .max_limit(100)
            .params()
    }

    /// One round trip of `calls` calls at `latency`, all with `in_flight`
    /// in flight; the last one closes it.
    fn round(g: &mut Gradient2, p: &Params, latency: Duration, in_flight: usize) -> Option<f64> {
        g.sample(p, latency, false, in_flight, false);
        g.sample(p, latency, false, in_flight, true)
    }

    #[test]
    fn steady_latency_grows_the_limit_by_the_smoothed_queue() {
        let p = params();
        let mut g = Gradient2::new(20);
        // No queueing: gradient 1, so 20 × 0.8 + (20 + 4) × 0.2 = 20.8.
        let next = round(&mut g, &p, 10 * MS, 20).unwrap();
        assert!((next - 20.8).abs() < 1e-9, "{next}");
        assert_eq!(g.long_rtt(), Some(10 * MS));
    }

    #[test]
    fn latency_beyond_the_tolerance_shrinks_the_limit() {
        let p = params();
        let mut g = Gradient2::new(20);
        for _ in 0..WARM_UP {
            round(&mut g, &p, 10 * MS, 20);
        }
        let before = g.estimate;
        // 30 ms against a long average of about 10 ms: 1.5 × 10 / 30 ≈ 0.5.
        let next = round(&mut g, &p, 30 * MS, 20).unwrap();
        assert!(next < before, "{next} < {before}");
        // At most halved, then smoothed: never below 0.9 × + 0.8.
        assert!(next >= before * 0.9 + 0.8 - 1e-9, "{next}");
    }

    #[test]
    fn an_idle_round_trip_only_feeds_the_average() {
        let p = params();
        let mut g = Gradient2::new(20);
        assert_eq!(round(&mut g, &p, 10 * MS, 9), None);
        assert_eq!(g.long_rtt(), Some(10 * MS));
        assert_eq!(g.estimate, 20.0);
    }

    #[test]
    fn a_drop_shrinks_the_limit_even_when_idle() {
        let p = params();
        let mut g = Gradient2::new(20);
        g.sample(&p, 10 * MS, true, 1, false);
        let next = g.sample(&p, 10 * MS, false, 1, true).unwrap();
        // Gradient 0.5: 20 × 0.8 + (10 + 4) × 0.2 = 18.8.
        assert!((next - 18.8).abs() < 1e-9, "{next}");
    }

    #[test]
    fn a_stale_long_average_decays_toward_the_short_one() {
        let p = params();
        let mut g = Gradient2::new(20);
        for _ in 0..20 {
            round(&mut g, &p, 100 * MS, 20);
        }
        let before = g.long_rtt().unwrap();
        round(&mut g, &p, 10 * MS, 20);
        let after = g.long_rtt().unwrap();
        // The EWMA alone moves it by 2/601 of the gap; the decay by 5 %.
        assert!(after < before.mul_f64(0.951), "{after:?} vs {before:?}");
    }

    #[test]
    fn sqrt_queue_size() {
        let p = AdaptiveLimitConfig::new()
            .algorithm(Algorithm::Gradient2)
            .initial_limit(16)
            .queue_size(QueueSize::Sqrt)
            .params();
        let mut g = Gradient2::new(16);
        // 16 × 0.8 + (16 + 4) × 0.2 = 16.8.
        let next = round(&mut g, &p, 10 * MS, 16).unwrap();
        assert!((next - 16.8).abs() < 1e-9, "{next}");
    }
}
