//! Times as the page reads them from the server's JSON. The server reads and writes them with
//! chrono. In the browser, chrono's reader is a relaxed RFC 3339 parser with an RFC 2822 scanner
//! behind it, all in the first module for the times of events and samples; the page reads the
//! one shape chrono writes (`2026-11-28T17:52:54.123456Z`, or with an offset) itself, to the
//! nanosecond, and hands anything else to the browser's `Date.parse` (to the millisecond): a
//! client may have published a sample's time in any form chrono accepted.
//!
//! Used as `#[serde(deserialize_with = "crate::rfc3339::read")]` on the times the first module
//! reads.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Deserializer};

/// A time, read as chrono reads it on the server and as [`parse`] does in the browser.
pub fn read<'de, D: Deserializer<'de>>(d: D) -> Result<DateTime<Utc>, D::Error> {
    #[cfg(feature = "hydrate")]
    {
        let text = String::deserialize(d)?;
        parse(&text)
            .or_else(|| {
                let ms = js_sys::Date::parse(&text);
                ms.is_finite()
                    .then(|| DateTime::from_timestamp_millis(ms as i64))
                    .flatten()
            })
            .ok_or_else(|| serde::de::Error::custom(format!("{text:?} is not an RFC 3339 time")))
    }
    #[cfg(not(feature = "hydrate"))]
    DateTime::<Utc>::deserialize(d)
}

/// An optional time (`null` or absent for none), read as [`read`] does.
pub fn read_option<'de, D: Deserializer<'de>>(d: D) -> Result<Option<DateTime<Utc>>, D::Error> {
    #[derive(Deserialize)]
    struct Time(#[serde(deserialize_with = "read")] DateTime<Utc>);
    Ok(Option::<Time>::deserialize(d)?.map(|Time(t)| t))
}

/// `YYYY-MM-DDTHH:MM:SS[.fraction](Z|±HH:MM)`, the shape chrono writes; `None` for any other.
#[cfg(any(test, feature = "hydrate"))]
pub fn parse(text: &str) -> Option<DateTime<Utc>> {
    let b = text.as_bytes();
    let number = |from: usize, to: usize| -> Option<i64> {
        b.get(from..to)?.iter().try_fold(0i64, |n, &c| {
            c.is_ascii_digit().then(|| n * 10 + i64::from(c - b'0'))
        })
    };
    let (year, month, day) = (number(0, 4)?, number(5, 7)?, number(8, 10)?);
    let (hour, minute, second) = (number(11, 13)?, number(14, 16)?, number(17, 19)?);
    if b[4] != b'-' || b[7] != b'-' || b[10] != b'T' || b[13] != b':' || b[16] != b':' {
        return None;
    }
    let leap = year % 4 == 0 && (year % 100 != 0 || year % 400 == 0);
    let days_in_month = match month {
        2 if leap => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        1..=12 => 31,
        _ => return None,
    };
    if day == 0 || day > days_in_month || hour > 23 || minute > 59 || second > 59 {
        return None;
    }
    let mut at = 19;
    let mut nanos = 0i64;
    if b.get(at) == Some(&b'.') {
        at += 1;
        let digits = b[at..].iter().take_while(|c| c.is_ascii_digit()).count();
        if digits == 0 || digits > 9 {
            return None;
        }
        nanos = number(at, at + digits)? * 10i64.pow(9 - digits as u32);
        at += digits;
    }
    let offset = match &b[at..] {
        b"Z" => 0,
        [sign @ (b'+' | b'-'), _, _, b':', _, _] => {
            let (h, m) = (number(at + 1, at + 3)?, number(at + 4, at + 6)?);
            if h > 23 || m > 59 {
                return None;
            }
            (h * 3600 + m * 60) * if *sign == b'-' { -1 } else { 1 }
        }
        _ => return None,
    };
    let seconds = days_from_civil(year, month, day) * 86_400 + hour * 3600 + minute * 60 + second;
    DateTime::from_timestamp(seconds - offset, nanos as u32)
}

/// Days since 1970-01-01 of a date in the proleptic Gregorian calendar (Howard Hinnant's
/// `days_from_civil`).
#[cfg(any(test, feature = "hydrate"))]
fn days_from_civil(year: i64, month: i64, day: i64) -> i64 {
    let year = if month <= 2 { year - 1 } else { year };
    let era = year.div_euclid(400);
    let year_of_era = year - era * 400;
    let day_of_year = (153 * ((month + 9) % 12) + 2) / 5 + day - 1;
    let day_of_era = year_of_era * 365 + year_of_era / 4 - year_of_era / 100 + day_of_year;
    era * 146_097 + day_of_era - 719_468
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_every_time_chrono_writes_as_chrono_reads_it() {
        let mut t = DateTime::parse_from_rfc3339("1970-01-01T00:00:00Z")
            .unwrap()
            .to_utc();
        // Across leap years, century rules and every kind of fraction chrono writes.
        for step in 0..20_000i64 {
            t += chrono::Duration::seconds(7_919 * 79 + step)
                + chrono::Duration::nanoseconds(step * 37_501);
            for format in [
                chrono::SecondsFormat::Secs,
                chrono::SecondsFormat::Millis,
                chrono::SecondsFormat::Micros,
                chrono::SecondsFormat::Nanos,
                chrono::SecondsFormat::AutoSi,
            ] {
                let text = t.to_rfc3339_opts(format, true);
                let chrono = DateTime::parse_from_rfc3339(&text).unwrap().to_utc();
                assert_eq!(parse(&text), Some(chrono), "{text}");
            }
            let offset =
                chrono::FixedOffset::east_opt(((step % 48) as i32 - 24) * 1800 + 60).unwrap();
            let text = t.with_timezone(&offset).to_rfc3339();
            assert_eq!(parse(&text), Some(t), "{text}");
        }
        assert_eq!(
            serde_json::to_string(&parse("2026-11-28T17:52:54.123456Z")).unwrap(),
            "\"2026-11-28T17:52:54.123456Z\""
        );
    }

    #[test]
    fn leaves_other_shapes_and_impossible_times_to_the_browser() {
        for text in [
            "",
            "2026-11-28",
            "2026-11-28 17:52:54Z",
            "2026-11-28t17:52:54z",
            "2026-11-28T17:52:54",
            "2026-11-28T17:52:54+0100",
            "2026-11-28T17:52:54.Z",
            "2026-11-28T17:52:54.1234567890Z",
            "2026-02-29T00:00:00Z",
            "2026-13-01T00:00:00Z",
            "2026-11-28T24:00:00Z",
            "2026-11-28T17:60:00Z",
            "2026-11-28T17:52:60Z",
            "2026-11-28T17:52:54+24:00",
            "+2026-11-28T17:52:54Z",
            "2026-11-28T17:52:54Z ",
        ] {
            assert_eq!(parse(text), None, "{text:?}");
        }
        assert!(parse("2024-02-29T00:00:00Z").is_some());
        assert!(parse("2000-02-29T00:00:00Z").is_some());
        assert!(parse("1900-02-29T00:00:00Z").is_none());
    }
}
