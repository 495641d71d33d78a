//! Numbers and times as an operator reads them across a room: few digits, binary prefixes for
//! bytes, times to the minute or the second. Times are written field by field: strftime's
//! pattern parser would be in the wasm only to write these three shapes.

use chrono::{DateTime, Datelike, TimeZone, Timelike};

use crate::dashboards::Unit;

/// `value` in `unit`, e.g. `42.5%`, `1.50 GiB`, `12.0 KiB/s`, `0.75`.
pub fn value(value: f64, unit: Unit) -> String {
    match unit {
        Unit::None => plain(value),
        Unit::Percent => format!("{value:.1}%"),
        Unit::Bytes => bytes(value),
        Unit::BytesPerSec => format!("{}/s", bytes(value)),
    }
}

/// A unit for a series known only by name: the collector's conventions, else none.
pub fn guess_unit(series: &str) -> Unit {
    if series.starts_with("cpu.") || series.ends_with("_pct") {
        Unit::Percent
    } else if series.starts_with("mem.") || series.starts_with("swap.") {
        Unit::Bytes
    } else if series.starts_with("net.") || series.starts_with("disk.") {
        Unit::BytesPerSec
    } else {
        Unit::None
    }
}

/// `2026-11-27 14:05`, in `t`'s own zone.
pub fn minute<Tz: TimeZone>(t: &DateTime<Tz>) -> String {
    format!(
        "{:04}-{:02}-{:02} {:02}:{:02}",
        t.year(),
        t.month(),
        t.day(),
        t.hour(),
        t.minute()
    )
}

/// `2026-11-27 14:05:09`, in `t`'s own zone.
pub fn second<Tz: TimeZone>(t: &DateTime<Tz>) -> String {
    format!("{}:{:02}", minute(t), t.second())
}

/// `14:05:09`, in `t`'s own zone.
pub fn clock<Tz: TimeZone>(t: &DateTime<Tz>) -> String {
    format!("{:02}:{:02}:{:02}", t.hour(), t.minute(), t.second())
}

fn plain(value: f64) -> String {
    let magnitude = value.abs();
    if magnitude >= 1e9 {
        format!("{:.2}G", value / 1e9)
    } else if magnitude >= 1e6 {
        format!("{:.2}M", value / 1e6)
    } else if magnitude >= 1e4 {
        format!("{:.1}k", value / 1e3)
    } else if magnitude >= 100.0 || value.fract() == 0.0 {
        format!("{value:.0}")
    } else {
        format!("{value:.2}")
    }
}

fn bytes(value: f64) -> String {
    const PREFIXES: [&str; 6] = ["B", "KiB", "MiB", "GiB", "TiB", "PiB"];
    let mut scaled = value;
    let mut prefix = 0;
    while scaled.abs() >= 1024.0 && prefix < PREFIXES.len() - 1 {
        scaled /= 1024.0;
        prefix += 1;
    }
    if prefix == 0 {
        format!("{scaled:.0} B")
    } else if scaled.abs() >= 100.0 {
        format!("{scaled:.0} {}", PREFIXES[prefix])
    } else {
        format!("{scaled:.1} {}", PREFIXES[prefix])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_read_with_their_units() {
        assert_eq!(value(42.46, Unit::Percent), "42.5%");
        assert_eq!(value(512.0, Unit::Bytes), "512 B");
        assert_eq!(value(1536.0, Unit::Bytes), "1.5 KiB");
        assert_eq!(value(3.0 * 1024f64.powi(3), Unit::Bytes), "3.0 GiB");
        assert_eq!(
            value(200.0 * 1024.0 * 1024.0, Unit::BytesPerSec),
            "200 MiB/s"
        );
        assert_eq!(value(0.75, Unit::None), "0.75");
        assert_eq!(value(3.0, Unit::None), "3");
        assert_eq!(value(12_345.0, Unit::None), "12.3k");
        assert_eq!(value(2_500_000.0, Unit::None), "2.50M");
    }

    #[test]
    fn times_read_as_strftime_would_write_them() {
        let t = DateTime::parse_from_rfc3339("2026-03-07T04:05:09.250+01:00").unwrap();
        for (written, pattern) in [
            (minute(&t), "%Y-%m-%d %H:%M"),
            (second(&t), "%Y-%m-%d %H:%M:%S"),
            (clock(&t), "%H:%M:%S"),
        ] {
            assert_eq!(written, t.format(pattern).to_string());
        }
        assert_eq!(second(&t.to_utc()), "2026-03-07 03:05:09");
    }
}
