//! Human-friendly durations in scenario files: `"250ms"`, `"20s"`, `"2m"`, `"1h"`.

use std::{fmt, str::FromStr, time::Duration};

use serde::{de, Deserialize, Deserializer, Serialize, Serializer};

/// A duration written as a number and a unit (`ms`, `s`, `m`, `h`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Default)]
pub struct Span(pub Duration);

impl Span {
    /// Milliseconds.
    pub fn ms(self) -> u64 {
        self.0.as_millis() as u64
    }
}

impl FromStr for Span {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let text = text.trim();
        let split = text
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .ok_or_else(|| {
                format!("{text:?} has no unit: write e.g. \"250ms\", \"20s\", \"2m\"")
            })?;
        let (number, unit) = text.split_at(split);
        let value: f64 = number
            .parse()
            .map_err(|_| format!("{text:?} does not start with a number"))?;
        let ms_per_unit = match unit.trim() {
            "ms" => 1.0,
            "s" => 1_000.0,
            "m" | "min" => 60_000.0,
            "h" => 3_600_000.0,
            other => {
                return Err(format!(
                    "unknown unit {other:?} in {text:?}: use ms, s, m or h"
                ))
            }
        };
        Ok(Span(Duration::from_micros(
            (value * ms_per_unit * 1_000.0) as u64,
        )))
    }
}

impl fmt::Display for Span {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let ms = self.0.as_millis();
        if ms.is_multiple_of(1_000) {
            write!(f, "{}s", ms / 1_000)
        } else {
            write!(f, "{ms}ms")
        }
    }
}

impl<'de> Deserialize<'de> for Span {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        text.parse().map_err(de::Error::custom)
    }
}

impl Serialize for Span {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_units() {
        assert_eq!("250ms".parse::<Span>().unwrap().ms(), 250);
        assert_eq!("1.5s".parse::<Span>().unwrap().ms(), 1_500);
        assert_eq!("2m".parse::<Span>().unwrap().ms(), 120_000);
    }

    #[test]
    fn rejects_missing_or_unknown_units() {
        assert!("20".parse::<Span>().unwrap_err().contains("no unit"));
        assert!("3 weeks"
            .parse::<Span>()
            .unwrap_err()
            .contains("unknown unit"));
        assert!("s".parse::<Span>().is_err());
    }
}
