//! Where a chart's gridlines fall and what their labels say: time ticks at round instants
//! labelled to suit the range (`14:05`, `Mon 14:00`, `24 Nov`), value ticks at round numbers in
//! the panel's unit. Times are UTC, as the readout says, so a page renders the same on the
//! server and in any browser.

use chrono::{DateTime, Datelike, NaiveDate, TimeZone, Timelike, Utc};

use crate::{dashboards::Unit, format};

/// A gridline: its place (a time in milliseconds or a value) and its label.
#[derive(Clone, Debug, PartialEq)]
pub struct Tick<T> {
    pub at: T,
    pub label: String,
}

const SECOND: i64 = 1000;
const MINUTE: i64 = 60 * SECOND;
const HOUR: i64 = 60 * MINUTE;
const DAY: i64 = 24 * HOUR;

/// Round steps between time ticks, shortest first; past the last, ticks fall on months.
const TIME_STEPS: [i64; 20] = [
    SECOND,
    2 * SECOND,
    5 * SECOND,
    10 * SECOND,
    15 * SECOND,
    30 * SECOND,
    MINUTE,
    2 * MINUTE,
    5 * MINUTE,
    10 * MINUTE,
    15 * MINUTE,
    30 * MINUTE,
    HOUR,
    2 * HOUR,
    3 * HOUR,
    6 * HOUR,
    12 * HOUR,
    DAY,
    2 * DAY,
    7 * DAY,
];

const MONTHS: [&str; 12] = [
    "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
];

/// The epoch was a Thursday: weeks are counted from the Monday after it.
const FIRST_MONDAY: i64 = 4 * DAY;

/// Ticks at round instants in `[start, end]`, at most `most` of them.
pub fn time_ticks(start: i64, end: i64, most: usize) -> Vec<Tick<i64>> {
    let span = (end - start).max(1);
    let most = most.max(1) as i64;
    let Some(step) = TIME_STEPS.into_iter().find(|step| span / step < most) else {
        return month_ticks(start, end, most);
    };
    let offset = if step == 7 * DAY { FIRST_MONDAY } else { 0 };
    let first = start + (offset - start).rem_euclid(step);
    let label = |t: i64| {
        let time = DateTime::from_timestamp_millis(t).unwrap_or_default();
        let hours = || format!("{:02}:{:02}", time.hour(), time.minute());
        if step >= DAY {
            format!("{} {}", time.day(), MONTHS[time.month0() as usize])
        } else if step < MINUTE {
            format::clock(&time)
        } else if span > DAY {
            format!("{} {}", time.weekday(), hours())
        } else {
            hours()
        }
    };
    (0..)
        .map(|i| first + i * step)
        .take_while(|t| *t <= end)
        .map(|at| Tick {
            at,
            label: label(at),
        })
        .collect()
}

/// Ticks on the first of every month (or every few months) in `[start, end]`: `Mar`, and the
/// year where January would be.
fn month_ticks(start: i64, end: i64, most: i64) -> Vec<Tick<i64>> {
    let to_date = |t: i64| DateTime::from_timestamp_millis(t).unwrap_or_default();
    let (first, last) = (to_date(start), to_date(end));
    let months = |d: DateTime<Utc>| i64::from(d.year()) * 12 + i64::from(d.month0());
    let span = months(last) - months(first) + 1;
    let every = [1, 2, 3, 6, 12]
        .into_iter()
        .find(|n| span / n < most)
        .unwrap_or(12);
    let mut ticks = Vec::new();
    let mut month = months(first);
    month += (every - month.rem_euclid(every)) % every;
    loop {
        let (year, month0) = (month.div_euclid(12), month.rem_euclid(12));
        let Some(at) = NaiveDate::from_ymd_opt(year as i32, month0 as u32 + 1, 1)
            .and_then(|d| d.and_hms_opt(0, 0, 0))
            .map(|d| Utc.from_utc_datetime(&d).timestamp_millis())
        else {
            break;
        };
        if at > end {
            break;
        }
        if at >= start {
            let label = match month0 {
                0 => year.to_string(),
                _ => MONTHS[month0 as usize].to_owned(),
            };
            ticks.push(Tick { at, label });
        }
        month += every;
    }
    ticks
}

/// Round values from `lo` up to at least `hi`, about `most` of them, labelled in `unit`; bytes
/// step in powers of 1024 so labels read `512 MiB`, not `476.8 MiB`. The last tick is the top
/// of the chart.
pub fn value_ticks(lo: f64, hi: f64, unit: Unit, most: usize) -> Vec<Tick<f64>> {
    let span = hi - lo;
    if !(span.is_finite() && span > 0.0) {
        return Vec::new();
    }
    let binary = matches!(unit, Unit::Bytes | Unit::BytesPerSec);
    let step = nice_step(span / most.max(1) as f64, binary);
    let first = (lo / step).floor() * step;
    let mut ticks = Vec::new();
    let mut i = 0.0;
    loop {
        let at = first + i * step;
        ticks.push(Tick {
            at,
            label: format::value(at, unit),
        });
        if at >= hi - step * 1e-9 || ticks.len() > 4 * most {
            return ticks;
        }
        i += 1.0;
    }
}

/// The smallest round step of at least `raw`: 1, 2, 2.5 or 5 times a power of ten, or for
/// bytes a power of two times a power of 1024.
fn nice_step(raw: f64, binary: bool) -> f64 {
    if binary && raw >= 1.0 {
        let scale = 1024f64.powi((raw.log2() / 10.0).floor() as i32);
        let within = raw / scale;
        return 2f64.powi(within.log2().ceil() as i32) * scale;
    }
    let scale = 10f64.powi(raw.log10().floor() as i32);
    let within = raw / scale;
    let nice = [1.0, 2.0, 2.5, 5.0, 10.0]
        .into_iter()
        .find(|n| *n >= within - 1e-9)
        .unwrap_or(10.0);
    nice * scale
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(text: &str) -> i64 {
        DateTime::parse_from_rfc3339(text)
            .unwrap()
            .timestamp_millis()
    }

    fn labels<T>(ticks: &[Tick<T>]) -> Vec<&str> {
        ticks.iter().map(|t| t.label.as_str()).collect()
    }

    #[test]
    fn a_quarter_hour_ticks_on_round_minutes() {
        let ticks = time_ticks(at("2026-11-23T14:01:30Z"), at("2026-11-23T14:16:30Z"), 6);
        assert_eq!(labels(&ticks), ["14:05", "14:10", "14:15"]);
        assert_eq!(ticks[0].at, at("2026-11-23T14:05:00Z"));
    }

    #[test]
    fn a_few_minutes_tick_on_seconds_and_say_them() {
        let ticks = time_ticks(at("2026-11-23T14:00:05Z"), at("2026-11-23T14:00:50Z"), 6);
        assert_eq!(
            labels(&ticks),
            ["14:00:10", "14:00:20", "14:00:30", "14:00:40", "14:00:50"]
        );
    }

    #[test]
    fn a_week_ticks_on_days_and_more_than_a_day_names_the_weekday() {
        let week = time_ticks(at("2026-11-20T10:00:00Z"), at("2026-11-27T10:00:00Z"), 8);
        assert_eq!(labels(&week)[..2], ["21 Nov", "22 Nov"]);
        assert_eq!(week.len(), 7);
        let two_days = time_ticks(at("2026-11-22T10:00:00Z"), at("2026-11-24T10:00:00Z"), 6);
        assert_eq!(labels(&two_days)[..2], ["Sun 12:00", "Mon 00:00"]);
    }

    #[test]
    fn ninety_days_tick_on_mondays_and_a_year_on_months() {
        let quarter = time_ticks(at("2026-08-29T00:00:00Z"), at("2026-11-27T00:00:00Z"), 14);
        assert!(quarter.iter().all(|t| {
            DateTime::from_timestamp_millis(t.at).unwrap().weekday() == chrono::Weekday::Mon
        }));
        assert_eq!(quarter[0].label, "31 Aug");
        let year = time_ticks(at("2025-11-27T00:00:00Z"), at("2026-11-27T00:00:00Z"), 6);
        assert_eq!(labels(&year), ["2026", "Apr", "Jul", "Oct"]);
        let years = time_ticks(at("2024-06-01T00:00:00Z"), at("2026-11-27T00:00:00Z"), 6);
        assert_eq!(labels(&years), ["Jul", "2025", "Jul", "2026", "Jul"]);
    }

    #[test]
    fn value_ticks_are_round_and_reach_the_top() {
        let ticks = value_ticks(0.0, 100.0, Unit::Percent, 4);
        assert_eq!(
            labels(&ticks),
            ["0.0%", "25.0%", "50.0%", "75.0%", "100.0%"]
        );
        let ticks = value_ticks(0.0, 7.3, Unit::None, 4);
        assert_eq!(labels(&ticks), ["0", "2", "4", "6", "8"]);
        let ticks = value_ticks(-3.0, 3.0, Unit::None, 4);
        assert_eq!(labels(&ticks), ["-4", "-2", "0", "2", "4"]);
        let gib = 1024f64.powi(3);
        let ticks = value_ticks(0.0, 1.7 * gib, Unit::Bytes, 4);
        assert_eq!(
            labels(&ticks),
            ["0 B", "512 MiB", "1.0 GiB", "1.5 GiB", "2.0 GiB"]
        );
        assert!(value_ticks(1.0, 1.0, Unit::None, 4).is_empty());
    }
}
