//! The panic threshold: when too few endpoints are healthy, balance across
//! all of them.

use rampart_core::error::ConfigError;
use serde::Deserialize;

/// Envoy's healthy panic threshold, a percentage of the endpoints.
///
/// When the healthy (in rotation: ready, not ejected) endpoints are fewer
/// than `percent` of all of them, the balancer is *in panic* and picks among
/// every endpoint, ejected or not: sending some traffic to endpoints that
/// may be bad beats piling all of it on the few that are left (or failing
/// everything when none is left).
///
/// | case | in panic |
/// |---|---|
/// | `healthy × 100 < percent × total` | yes |
/// | exactly at the threshold (5 of 10 at 50 %) | no |
/// | `percent` = 0 (disabled) | never: with no healthy endpoint the balancer has nothing to route to |
/// | `percent` = 100 | whenever one endpoint is not healthy |
/// | no endpoints at all (`total` = 0) | no: there is nothing to balance across, the balancer reports its empty-pool error |
/// | `healthy > total` (caller's slip) | no (treated as all healthy) |
///
/// It deserializes from a number and refuses a value outside `0..=100`:
///
/// ```
/// use rampart_balance::health::PanicThreshold;
///
/// let p = PanicThreshold::default(); // 50 %
/// assert!(!p.in_panic(5, 10));
/// assert!(p.in_panic(4, 10));
/// assert!(p.in_panic(0, 1));
/// assert!(!p.in_panic(0, 0));
/// assert!(!PanicThreshold::DISABLED.in_panic(0, 3));
///
/// #[derive(serde::Deserialize)]
/// struct Cfg { panic_threshold: PanicThreshold }
/// let cfg: Cfg = toml::from_str("panic_threshold = 30.0").unwrap();
/// assert_eq!(cfg.panic_threshold.percent(), 30.0);
/// assert!(toml::from_str::<Cfg>("panic_threshold = 130.0").is_err());
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Deserialize)]
#[serde(try_from = "f64")]
pub struct PanicThreshold {
    percent: f64,
}

impl Default for PanicThreshold {
    /// 50 %, Envoy's default.
    fn default() -> Self {
        Self { percent: 50.0 }
    }
}

impl PanicThreshold {
    /// Never panic.
    pub const DISABLED: PanicThreshold = PanicThreshold { percent: 0.0 };

    /// A threshold of `percent` (`0.0..=100.0`; 0 disables).
    pub fn new(percent: f64) -> Result<Self, ConfigError> {
        if (0.0..=100.0).contains(&percent) {
            Ok(Self { percent })
        } else {
            Err(ConfigError::new(
                "panic_threshold",
                format!("must be within 0.0..=100.0, got {percent}"),
            ))
        }
    }

    /// The threshold in percent.
    pub fn percent(&self) -> f64 {
        self.percent
    }

    /// Whether to balance across all `total` endpoints because only
    /// `healthy` of them are healthy (see the table in the type's docs).
    pub fn in_panic(&self, healthy: usize, total: usize) -> bool {
        total > 0 && (healthy as f64) * 100.0 < self.percent * total as f64
    }
}

impl TryFrom<f64> for PanicThreshold {
    type Error = ConfigError;

    fn try_from(percent: f64) -> Result<Self, ConfigError> {
        Self::new(percent)
    }
}
