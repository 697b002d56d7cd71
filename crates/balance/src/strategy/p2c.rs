//! Power of two choices.

use rampart_core::error::ConfigError;
use serde::Deserialize;

use super::shared::random_below;
use super::{Endpoint, Pick, Strategy};

/// What [`PowerOfTwoChoices`] compares.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Load {
    /// Requests sent and not yet answered ([`Pick::pending`]).
    Pending,
    /// The peak-EWMA cost ([`Pick::cost`]: latency estimate with
    /// failure penalties, scaled by pending), as tower's
    /// `PeakEwma` and linkerd do.
    #[default]
    PeakEwma,
}

/// Settings of [`PowerOfTwoChoices`].
///
/// ```
/// use rampart_balance::strategy::{Load, PowerOfTwoChoicesConfig};
///
/// let cfg: PowerOfTwoChoicesConfig = toml::from_str(r#"load = "pending""#).unwrap();
/// assert_eq!(cfg, PowerOfTwoChoicesConfig::new().load(Load::Pending));
/// ```
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct PowerOfTwoChoicesConfig {
    pub(crate) load: Load,
}

impl PowerOfTwoChoicesConfig {
    /// The defaults: see each setter.
    pub fn new() -> Self {
        Self::default()
    }

    /// What to compare. Defaults to [`Load::PeakEwma`].
    pub fn load(mut self, load: Load) -> Self {
        self.load = load;
        self
    }

    /// Checks every field (every value is valid; kept for uniformity).
    pub fn validate(&self) -> Result<(), ConfigError> {
        Ok(())
    }

    /// The strategy.
    pub fn build(&self) -> Result<PowerOfTwoChoices, ConfigError> {
        self.validate()?;
        Ok(PowerOfTwoChoices::new(self.load))
    }
}

/// Picks two distinct routable endpoints at random (from [`Pick::rng`])
/// and sends the request to the less loaded, by [`Load`]; the first drawn
/// wins a tie. With one routable endpoint, that one.
///
/// It never picks the worse of the two, so the most loaded endpoint is
/// never picked while loads differ, yet it spreads requests over all the
/// good endpoints instead of herding onto one (Mitzenmacher's "power of
/// two choices"; tower's `p2c::Balance`). Stateless.
#[derive(Debug, Clone, Default)]
pub struct PowerOfTwoChoices {
    load: Load,
}

impl PowerOfTwoChoices {
    /// The strategy comparing `load`.
    pub fn new(load: Load) -> Self {
        Self { load }
    }

    /// What it compares.
    pub fn load_kind(&self) -> Load {
        self.load
    }

    fn load_of(&self, pick: &Pick<'_>, slot: usize) -> f64 {
        match self.load {
            Load::Pending => f64::from(pick.pending(slot)),
            Load::PeakEwma => pick.cost(slot),
        }
    }
}

impl Strategy for PowerOfTwoChoices {
    fn update(&mut self, _endpoints: &[Option<Endpoint>]) {}

    fn pick(&mut self, pick: &Pick<'_>) -> Option<usize> {
        let routable = pick.routable;
        match routable.len() {
            0 => None,
            1 => Some(routable[0]),
            n => {
                let i = random_below(pick.rng, n);
                // A second index among the other n − 1: distinct from i.
                let mut j = random_below(pick.rng, n - 1);
                if j >= i {
                    j += 1;
                }
                let (a, b) = (routable[i], routable[j]);
                let (la, lb) = (self.load_of(pick, a), self.load_of(pick, b));
                Some(if lb < la { b } else { a })
            }
        }
    }
}
