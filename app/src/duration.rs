//! Durations as operators write them (`500ms`, `30s`, `5m`, `2h`, `30d`), for flags and for the
//! fields of alert rules alike.

use std::{fmt, time::Duration};

use serde::{Deserialize, Serialize};

/// Reads a duration as operators write one: a number and a unit (`ms`, `s`, `m`, `h`, `d`),
/// or a bare number of seconds. Fractions are allowed (`1.5s`); negative values are not.
pub fn parse(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    let split = text
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let scale = match unit.trim() {
        "ms" => 0.001,
        "" | "s" => 1.0,
        "m" => 60.0,
        "h" => 3600.0,
        "d" => 86_400.0,
        other => {
            return Err(format!(
                "unknown unit {other:?}: write a duration as e.g. 500ms, 15s, 5m, 2h or 30d"
            ));
        }
    };
    let value: f64 = number
        .parse()
        .map_err(|_| format!("{text:?} is not a duration such as 500ms, 15s, 5m, 2h or 30d"))?;
    Duration::try_from_secs_f64(value * scale).map_err(|_| format!("{text:?} is out of range"))
}

/// A duration that reads and writes itself as text (`"1m"`), so rules stay readable as JSON.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize,
)]
#[serde(try_from = "String", into = "String")]
pub struct Span(pub Duration);

impl Span {
    pub const fn secs(secs: u64) -> Self {
        Self(Duration::from_secs(secs))
    }

    pub fn is_zero(&self) -> bool {
        self.0.is_zero()
    }

    pub fn chrono(self) -> chrono::TimeDelta {
        chrono::TimeDelta::from_std(self.0).unwrap_or(chrono::TimeDelta::MAX)
    }
}

impl fmt::Display for Span {
    /// The largest unit that states the span exactly: `90s`, `5m`, `1500ms`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let ms = self.0.as_millis();
        for (unit, size) in [
            ("d", 86_400_000),
            ("h", 3_600_000),
            ("m", 60_000),
            ("s", 1000),
        ] {
            if ms > 0 && ms.is_multiple_of(size) {
                return write!(f, "{}{unit}", ms / size);
            }
        }
        match ms {
            0 => f.write_str("0s"),
            ms => write!(f, "{ms}ms"),
        }
    }
}

impl TryFrom<String> for Span {
    type Error = String;
    fn try_from(text: String) -> Result<Self, String> {
        parse(&text).map(Self)
    }
}

impl From<Span> for String {
    fn from(span: Span) -> String {
        span.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_read_as_operators_write_them() {
        for (text, expect) in [
            ("15", Duration::from_secs(15)),
            ("15s", Duration::from_secs(15)),
            ("500ms", Duration::from_millis(500)),
            ("1.5s", Duration::from_millis(1500)),
            ("5m", Duration::from_secs(300)),
            ("2h", Duration::from_secs(7200)),
            ("30d", Duration::from_secs(30 * 86_400)),
            ("0", Duration::ZERO),
        ] {
            assert_eq!(parse(text), Ok(expect), "{text}");
        }
        for bad in ["", "-1s", "fast", "10 parsecs", "1e400"] {
            assert!(parse(bad).is_err(), "{bad:?} should be refused");
        }
    }

    #[test]
    fn a_span_writes_itself_in_the_largest_exact_unit_and_reads_back() {
        for (span, text) in [
            (Span::secs(90), "90s"),
            (Span::secs(300), "5m"),
            (Span(Duration::from_millis(1500)), "1500ms"),
            (Span::secs(0), "0s"),
            (Span::secs(86_400), "1d"),
        ] {
            assert_eq!(span.to_string(), text);
            assert_eq!(Span::try_from(text.to_owned()), Ok(span));
        }
    }
}
