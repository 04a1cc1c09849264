//! Durations as Istio writes them (`2s`, `0.5s`, `100ms`, `1m30s`), stored
//! with millisecond precision (Istio rejects finer durations).

use serde::de::{self, Visitor};
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::fmt;

/// A non-negative duration in milliseconds.
///
/// JSON form: a Go/Istio duration string (`"1h"`, `"1m30s"`, `"2s"`,
/// `"0.5s"`, `"250ms"`; units `h`, `m`, `s`, `ms`, `us`/`µs`, `ns`, sub-millisecond
/// parts truncated) or a plain integer of milliseconds. Serialized as a
/// string: `"<n>s"` for whole seconds, otherwise `"<n>ms"`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Duration {
    millis: u64,
}

/// Why a duration string could not be parsed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DurationError(String);

impl fmt::Display for DurationError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "invalid duration {:?}: expected e.g. \"2s\", \"0.5s\", \"100ms\" or \"1m30s\"",
            self.0
        )
    }
}

impl std::error::Error for DurationError {}

impl Duration {
    /// Zero (Istio: "disabled" for timeouts).
    pub const ZERO: Duration = Duration { millis: 0 };

    /// A duration of `millis` milliseconds.
    pub const fn from_millis(millis: u64) -> Self {
        Duration { millis }
    }

    /// Milliseconds.
    pub const fn as_millis(self) -> u64 {
        self.millis
    }

    /// Milliseconds saturated to `u32` (the WIT contract's unit).
    pub fn as_millis_u32(self) -> u32 {
        u32::try_from(self.millis).unwrap_or(u32::MAX)
    }

    /// True for zero.
    pub const fn is_zero(self) -> bool {
        self.millis == 0
    }

    /// Parses a Go/Istio duration string (truncated to milliseconds).
    pub fn parse(s: &str) -> Result<Self, DurationError> {
        let nanos = Self::parse_nanos(s)?;
        let millis = u64::try_from(nanos / 1_000_000).map_err(|_| DurationError(s.to_owned()))?;
        Ok(Duration { millis })
    }

    /// Parses a Go duration string (`1h2m3.5s`, `500ms`, `10us`) into
    /// nanoseconds, exactly, refusing what Go's `time.ParseDuration`
    /// refuses (an unknown unit, more than `i64::MAX` nanoseconds) and, as
    /// Istio's minimum would, a negative duration.
    pub fn parse_nanos(s: &str) -> Result<u128, DurationError> {
        let err = || DurationError(s.to_owned());
        let mut rest = s.trim();
        if rest.is_empty() || rest.starts_with('-') {
            return Err(err());
        }
        rest = rest.strip_prefix('+').unwrap_or(rest);
        if rest == "0" {
            return Ok(0);
        }
        let mut total_nanos: u128 = 0;
        while !rest.is_empty() {
            let num_len = rest
                .find(|c: char| !(c.is_ascii_digit() || c == '.'))
                .ok_or_else(err)?;
            if num_len == 0 {
                return Err(err());
            }
            let (num, tail) = rest.split_at(num_len);
            let unit_len = tail
                .find(|c: char| c.is_ascii_digit() || c == '.')
                .unwrap_or(tail.len());
            let (unit, tail) = tail.split_at(unit_len);
            let unit_nanos: u128 = match unit {
                "h" => 3_600_000_000_000,
                "m" => 60_000_000_000,
                "s" => 1_000_000_000,
                "ms" => 1_000_000,
                "us" | "µs" | "μs" => 1_000,
                "ns" => 1,
                _ => return Err(err()),
            };
            let (int_part, frac_part) = num.split_once('.').unwrap_or((num, ""));
            if (int_part.is_empty() && frac_part.is_empty()) || frac_part.contains('.') {
                return Err(err());
            }
            let int: u128 = if int_part.is_empty() {
                0
            } else {
                int_part.parse().map_err(|_| err())?
            };
            let mut value = int.checked_mul(unit_nanos).ok_or_else(err)?;
            let mut scale = unit_nanos;
            for digit in frac_part.chars().take(18) {
                scale /= 10;
                let d = u128::from(digit.to_digit(10).ok_or_else(err)?);
                value += d * scale;
            }
            total_nanos = total_nanos.checked_add(value).ok_or_else(err)?;
            if total_nanos > i64::MAX as u128 {
                return Err(err());
            }
            rest = tail;
        }
        Ok(total_nanos)
    }
}

impl fmt::Display for Duration {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.millis.is_multiple_of(1000) {
            write!(f, "{}s", self.millis / 1000)
        } else {
            write!(f, "{}ms", self.millis)
        }
    }
}

impl Serialize for Duration {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Duration {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = Duration;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a duration string such as \"2s\" or an integer of milliseconds")
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Duration, E> {
                Ok(Duration::from_millis(v))
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Duration, E> {
                u64::try_from(v)
                    .map(Duration::from_millis)
                    .map_err(|_| E::custom(format!("negative duration {v}")))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Duration, E> {
                Duration::parse(v).map_err(E::custom)
            }
        }
        d.deserialize_any(V)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_istio_forms() {
        for (s, ms) in [
            ("2s", 2000),
            ("0.5s", 500),
            ("1.5s", 1500),
            ("100ms", 100),
            ("1m30s", 90_000),
            ("1h", 3_600_000),
            ("0", 0),
            ("1500us", 1),
            (".25s", 250),
        ] {
            assert_eq!(Duration::parse(s).unwrap().as_millis(), ms, "{s}");
        }
        for bad in ["", "s", "-1s", "10", "1x", "1..5s", "ms"] {
            assert!(Duration::parse(bad).is_err(), "{bad} should fail");
        }
    }

    #[test]
    fn json_round_trip() {
        let d: Duration = serde_json::from_str("\"2s\"").unwrap();
        assert_eq!(serde_json::to_string(&d).unwrap(), "\"2s\"");
        let d: Duration = serde_json::from_str("250").unwrap();
        assert_eq!(serde_json::to_string(&d).unwrap(), "\"250ms\"");
        assert!(serde_json::from_str::<Duration>("-3").is_err());
    }
}
