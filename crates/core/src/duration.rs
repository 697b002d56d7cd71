//! Durations in configuration files, written the way Envoy and humans do.
//!
//! A duration is a string with a unit, `"250ms"`, `"10s"`, `"2m"`, `"1h"`
//! (also `"us"` and `"ns"`, and decimals such as `"1.5s"`), or a bare
//! integer meaning milliseconds. Use it with serde's `with` attribute:
//!
//! ```
//! use std::time::Duration;
//!
//! #[derive(serde::Deserialize)]
//! struct Cfg {
//!     #[serde(with = "rampart_core::duration")]
//!     timeout: Duration,
//!     #[serde(with = "rampart_core::duration::option", default)]
//!     idle: Option<Duration>,
//! }
//!
//! let cfg: Cfg = toml::from_str("timeout = \"1.5s\"\nidle = 250").unwrap();
//! assert_eq!(cfg.timeout, Duration::from_millis(1500));
//! assert_eq!(cfg.idle, Some(Duration::from_millis(250)));
//! assert!(rampart_core::duration::parse("10 parsecs").is_err());
//! ```

use std::fmt;
use std::time::Duration;

use serde::de::{self, Deserializer, Visitor};

/// Parses `"250ms"`, `"10s"`, `"1.5s"`, `"2m"`, `"1h"`, `"100us"`, `"10ns"`.
pub fn parse(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    let split = s
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .ok_or_else(|| format!("duration {s:?} has no unit (use ms, s, m, h, us or ns)"))?;
    let (num, unit) = s.split_at(split);
    let value: f64 = num
        .parse()
        .map_err(|_| format!("duration {s:?} does not start with a number"))?;
    let nanos_per = match unit.trim() {
        "ns" => 1.0,
        "us" | "µs" => 1e3,
        "ms" => 1e6,
        "s" => 1e9,
        "m" => 60e9,
        "h" => 3600e9,
        other => return Err(format!("duration {s:?} has an unknown unit {other:?}")),
    };
    let nanos = value * nanos_per;
    if !nanos.is_finite() || nanos > u64::MAX as f64 {
        return Err(format!("duration {s:?} is too long"));
    }
    Ok(Duration::from_nanos(nanos as u64))
}

struct DurationVisitor;

impl Visitor<'_> for DurationVisitor {
    type Value = Duration;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a duration such as \"250ms\" or \"10s\", or an integer of milliseconds")
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Duration, E> {
        Ok(Duration::from_millis(v))
    }

    fn visit_i64<E: de::Error>(self, v: i64) -> Result<Duration, E> {
        u64::try_from(v)
            .map(Duration::from_millis)
            .map_err(|_| E::custom(format!("duration {v} is negative")))
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<Duration, E> {
        parse(v).map_err(E::custom)
    }
}

/// Deserializes a [`Duration`] (for `#[serde(with = "rampart_core::duration")]`).
pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
    d.deserialize_any(DurationVisitor)
}

/// Optional durations (for `#[serde(with = "rampart_core::duration::option")]`).
pub mod option {
    use super::*;

    /// Deserializes an `Option<Duration>`.
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Duration>, D::Error> {
        super::deserialize(d).map(Some)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn units() {
        assert_eq!(parse("10ns").unwrap(), Duration::from_nanos(10));
        assert_eq!(parse("7us").unwrap(), Duration::from_micros(7));
        assert_eq!(parse("250ms").unwrap(), Duration::from_millis(250));
        assert_eq!(parse("1.5s").unwrap(), Duration::from_millis(1500));
        assert_eq!(parse("2m").unwrap(), Duration::from_secs(120));
        assert_eq!(parse("1h").unwrap(), Duration::from_secs(3600));
        assert!(parse("10").unwrap_err().contains("no unit"));
        assert!(parse("10d").unwrap_err().contains("unknown unit"));
        assert!(parse("ms").is_err());
        assert!(parse("1e400s").is_err());
    }
}
