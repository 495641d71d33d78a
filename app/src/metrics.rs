//! Metric samples: what agents send, how they travel in `metric` events, and the downsampled
//! points range queries return. Shared by the server and the browser.

use std::collections::BTreeMap;

use chrono::{DateTime, Duration, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::room::RoomName;

/// Samples one ingest request may carry.
pub const MAX_BATCH_SAMPLES: usize = 10_000;
/// Bytes one ingest request body may have.
pub const MAX_BATCH_BYTES: usize = 1024 * 1024;
/// Longest series or label name, in bytes (names are ASCII).
pub const MAX_NAME_LEN: usize = 128;
/// Longest label value, in bytes.
pub const MAX_LABEL_VALUE_LEN: usize = 256;
/// Most labels on one sample.
pub const MAX_LABELS: usize = 16;
/// The prefix of the room each source publishes to.
pub const ROOM_PREFIX: &str = "metrics:";

/// How far in the past a sample may be stamped: older data is a backfill, not monitoring.
pub fn max_age() -> Duration {
    Duration::days(30)
}

/// How far ahead of the server's clock a sample may be stamped (agents' clocks drift).
pub fn max_skew() -> Duration {
    Duration::minutes(5)
}

pub type Labels = BTreeMap<String, String>;

/// One sample as an agent sends it to `POST /api/metrics`; `ts` defaults to the time of receipt.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Sample {
    pub source: String,
    pub series: String,
    pub value: f64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ts: Option<DateTime<Utc>>,
    #[serde(default, skip_serializing_if = "Labels::is_empty")]
    pub labels: Labels,
}

/// One sample inside a `metric` event: its room names the source.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Point {
    pub series: String,
    pub value: f64,
    #[serde(deserialize_with = "crate::rfc3339::read")]
    pub ts: DateTime<Utc>,
    #[serde(default, skip_serializing_if = "Labels::is_empty")]
    pub labels: Labels,
}

/// The first sample of a batch that broke a rule, so the sender knows what to fix.
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
#[error("sample {index}: {reason}")]
pub struct InvalidSample {
    pub index: usize,
    pub reason: String,
}

/// The room a source's samples are pushed to.
pub fn source_room(source: &str) -> Result<RoomName, String> {
    RoomName::parse(format!("{ROOM_PREFIX}{source}")).map_err(|e| format!("source {e}"))
}

/// The source a metrics room belongs to.
pub fn room_source(room: &RoomName) -> Option<&str> {
    room.as_str().strip_prefix(ROOM_PREFIX)
}

fn name_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | ':' | '-')
}

/// Series and label names: a letter or `_`, then letters, digits, `_`, `.`, `:` or `-`.
fn check_name(what: &str, name: &str) -> Result<(), String> {
    let ok = !name.is_empty()
        && name.len() <= MAX_NAME_LEN
        && name.starts_with(|c: char| c.is_ascii_alphabetic() || c == '_')
        && name.chars().all(name_char);
    if ok {
        Ok(())
    } else {
        Err(format!(
            "{what} {name:?} must be 1–{MAX_NAME_LEN} letters, digits, '_', '.', ':' or '-', \
             starting with a letter or '_'"
        ))
    }
}

/// Checks a label set: how many, their names, their values' length and content.
pub fn check_labels(labels: &Labels) -> Result<(), String> {
    if labels.len() > MAX_LABELS {
        return Err(format!("at most {MAX_LABELS} labels"));
    }
    for (key, value) in labels {
        check_name("label", key)?;
        if value.len() > MAX_LABEL_VALUE_LEN {
            return Err(format!(
                "label {key} is longer than {MAX_LABEL_VALUE_LEN} bytes"
            ));
        }
        // Labels are stored as jsonb, which cannot hold NUL.
        if value.contains('\0') {
            return Err(format!("label {key} contains a NUL character"));
        }
    }
    Ok(())
}

/// Checks one sample's series, value, labels and time; `now` anchors the accepted window.
pub fn check_point(point: &Point, now: DateTime<Utc>) -> Result<(), String> {
    check_name("series", &point.series)?;
    if !point.value.is_finite() {
        return Err(format!("value {} must be a finite number", point.value));
    }
    check_labels(&point.labels)?;
    if point.ts < now - max_age() || point.ts > now + max_skew() {
        return Err(format!(
            "ts {} is outside the accepted window ({} days back, {} minutes ahead)",
            point.ts.to_rfc3339(),
            max_age().num_days(),
            max_skew().num_minutes()
        ));
    }
    Ok(())
}

/// Validates a whole batch and groups it by source room, in arrival order. Any bad sample
/// rejects the batch, so nothing of it is stored.
pub fn group_batch(
    samples: Vec<Sample>,
    now: DateTime<Utc>,
) -> Result<Vec<(RoomName, Vec<Point>)>, InvalidSample> {
    if samples.len() > MAX_BATCH_SAMPLES {
        return Err(InvalidSample {
            index: MAX_BATCH_SAMPLES,
            reason: format!("a batch holds at most {MAX_BATCH_SAMPLES} samples"),
        });
    }
    let mut rooms: Vec<(RoomName, Vec<Point>)> = Vec::new();
    // Where each room is in `rooms`: a batch may name thousands of sources.
    let mut at: std::collections::HashMap<RoomName, usize> = std::collections::HashMap::new();
    for (index, sample) in samples.into_iter().enumerate() {
        let fail = |reason| InvalidSample { index, reason };
        let room = source_room(&sample.source).map_err(fail)?;
        let point = Point {
            series: sample.series,
            value: sample.value,
            ts: sample.ts.unwrap_or(now),
            labels: sample.labels,
        };
        check_point(&point, now).map_err(fail)?;
        match at.get(&room) {
            Some(&i) => rooms[i].1.push(point),
            None => {
                at.insert(room.clone(), rooms.len());
                rooms.push((room, vec![point]));
            }
        }
    }
    Ok(rooms)
}

/// The data of a `metric` event holding `points`.
pub fn event_data(points: &[Point]) -> Value {
    serde_json::json!({ "samples": points })
}

/// One sample as a `metric` event written by a client carries it.
#[derive(Deserialize)]
struct OneSample {
    series: String,
    value: f64,
    #[serde(default, deserialize_with = "crate::rfc3339::read_option")]
    ts: Option<DateTime<Utc>>,
    #[serde(default)]
    labels: Labels,
}

/// The samples a `metric` event carries, or why its data is not one: either a batch
/// (`{"samples": [...]}`) or a single sample (`{"series", "value", "ts"?, "labels"?}`) stamped
/// `default_ts` when it has no `ts`.
pub fn read_points(data: &Value, default_ts: DateTime<Utc>) -> Result<Vec<Point>, String> {
    if let Some(samples) = data.get("samples") {
        return Vec::<Point>::deserialize(samples).map_err(|e| format!("data.samples: {e}"));
    }
    let one = OneSample::deserialize(data).map_err(|e| {
        format!(
            "data must be one sample {{series, value, ts?, labels?}} or {{samples: [...]}}: {e}"
        )
    })?;
    Ok(vec![Point {
        series: one.series,
        value: one.value,
        ts: one.ts.unwrap_or(default_ts),
        labels: one.labels,
    }])
}

/// The samples of a stored `metric` event (checked when it was published); none for other data.
pub fn event_points(data: &Value, default_ts: DateTime<Utc>) -> Vec<Point> {
    read_points(data, default_ts).unwrap_or_default()
}

/// One bucket of a downsampled range: the samples with `t <= ts < t + width`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Bucket {
    pub t: DateTime<Utc>,
    pub min: f64,
    pub max: f64,
    pub avg: f64,
    pub count: i64,
    /// The value of the bucket's newest sample; unknown (absent) for buckets rolled up before
    /// it was kept.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last: Option<f64>,
}

/// The bucket width range queries answer a request for `secs` with: from a minute up whole
/// minutes, from an hour up whole hours, so the rollup tiers answer exactly.
pub fn snap_width(secs: f64) -> f64 {
    let whole = |unit: f64| (secs / unit).round().max(1.0) * unit;
    if secs >= 3600.0 {
        whole(3600.0)
    } else if secs >= 60.0 {
        whole(60.0)
    } else {
        secs
    }
}

/// What the metrics store holds, tier by tier (`GET /api/metrics/storage`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Storage {
    pub tiers: Vec<TierUsage>,
    /// Every minute bucket before this is in the rollups.
    pub rolled: DateTime<Utc>,
    /// When retention next drops a partition.
    pub next_drop: Option<DateTime<Utc>>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TierUsage {
    /// `raw` (hot rows), `blocks` (packed raw samples), `1m` or `1h` (rollups).
    pub tier: String,
    /// Rows, as the planner's statistics count them.
    pub rows: i64,
    /// On disk, indexes and TOAST included.
    pub bytes: i64,
    /// The time its partitions span.
    pub from: Option<DateTime<Utc>>,
    pub to: Option<DateTime<Utc>>,
    pub keep_secs: i64,
}

/// The answer to an accepted ingest request: what the batch became, one event per source room.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Stored {
    pub samples: usize,
    /// Prometheus NaN/±Inf samples left out.
    #[serde(default)]
    pub skipped: usize,
    pub events: Vec<StoredEvent>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct StoredEvent {
    pub room: RoomName,
    pub seq: i64,
}

/// A series of a source: its name and labels. Written as Prometheus writes it, `name` or
/// `name{key="value",...}`, wherever a person names one (panels, the overview).
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Series {
    pub name: String,
    #[serde(default, skip_serializing_if = "Labels::is_empty")]
    pub labels: Labels,
}

impl std::fmt::Display for Series {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.name)?;
        if self.labels.is_empty() {
            return Ok(());
        }
        f.write_str("{")?;
        for (i, (key, value)) in self.labels.iter().enumerate() {
            let value = value
                .replace('\\', r"\\")
                .replace('"', r#"\""#)
                .replace('\n', r"\n");
            let comma = if i > 0 { "," } else { "" };
            write!(f, r#"{comma}{key}="{value}""#)?;
        }
        f.write_str("}")
    }
}

impl std::str::FromStr for Series {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, String> {
        let (series, rest) = Series::read(text)?;
        match rest.trim() {
            "" => Ok(series),
            extra => Err(format!("unexpected {extra:?} after series {series}")),
        }
    }
}

impl Series {
    /// Checks the name and labels by the rules samples follow.
    pub fn check(&self) -> Result<(), String> {
        check_name("series", &self.name)?;
        check_labels(&self.labels)
    }

    /// Whether `point` is a sample of this series.
    pub fn is(&self, point: &Point) -> bool {
        self.name == point.series && self.labels == point.labels
    }

    /// Reads a comma-separated list of series, as a person types it.
    pub fn parse_list(mut text: &str) -> Result<Vec<Series>, String> {
        let mut list = Vec::new();
        while !text.trim().is_empty() {
            let (series, rest) = Series::read(text)?;
            let rest = rest.trim_start();
            text = match rest.strip_prefix(',') {
                Some(next) => next,
                None if rest.is_empty() => rest,
                None => return Err(format!("expected ',' after series {series}")),
            };
            list.push(series);
        }
        Ok(list)
    }

    /// Reads one series from the start of `text` and returns what follows it.
    fn read(text: &str) -> Result<(Series, &str), String> {
        let text = text.trim_start();
        let end = text.find(|c| !name_char(c)).unwrap_or(text.len());
        let name = text[..end].to_owned();
        check_name("series", &name)?;
        let mut rest = text[end..].trim_start();
        let mut labels = Labels::new();
        if let Some(inner) = rest.strip_prefix('{') {
            rest = parse_labels(inner, &mut labels)?;
        }
        let series = Series { name, labels };
        series.check()?;
        Ok((series, rest))
    }
}

/// Reads a Prometheus label set after its opening brace, `name="value",...}`, into `labels`
/// and returns what follows the closing brace.
pub fn parse_labels<'a>(mut rest: &'a str, labels: &mut Labels) -> Result<&'a str, String> {
    loop {
        rest = rest.trim_start();
        if let Some(after) = rest.strip_prefix('}') {
            return Ok(after);
        }
        // Label names as this project allows them, a superset of Prometheus's.
        let name_end = rest
            .find(|c| !name_char(c))
            .ok_or("unterminated label set")?;
        let name = &rest[..name_end];
        if name.is_empty() {
            return Err("expected a label name".into());
        }
        rest = rest[name_end..]
            .trim_start()
            .strip_prefix('=')
            .ok_or_else(|| format!("expected '=' after label {name}"))?
            .trim_start()
            .strip_prefix('"')
            .ok_or_else(|| format!("label {name}'s value must be quoted"))?;
        let mut value = String::new();
        let mut chars = rest.char_indices();
        let end = loop {
            match chars.next() {
                None => return Err(format!("label {name}'s value is not closed")),
                Some((i, '"')) => break i,
                Some((_, '\\')) => match chars.next() {
                    Some((_, '\\')) => value.push('\\'),
                    Some((_, '"')) => value.push('"'),
                    Some((_, 'n')) => value.push('\n'),
                    _ => return Err(format!("bad escape in label {name}'s value")),
                },
                Some((_, c)) => value.push(c),
            }
        };
        if labels.insert(name.to_owned(), value).is_some() {
            return Err(format!("label {name} appears twice"));
        }
        rest = rest[end + 1..].trim_start();
        if let Some(after) = rest.strip_prefix(',') {
            rest = after;
        } else if !rest.starts_with('}') {
            return Err("expected ',' or '}' after a label".into());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn sample(source: &str, series: &str, value: f64) -> Sample {
        Sample {
            source: source.into(),
            series: series.into(),
            value,
            ts: None,
            labels: Labels::new(),
        }
    }

    #[test]
    fn a_batch_is_grouped_by_source_in_arrival_order() {
        let now = Utc::now();
        let rooms = group_batch(
            vec![
                sample("web-1", "cpu", 1.0),
                sample("db", "cpu", 2.0),
                sample("web-1", "mem", 3.0),
            ],
            now,
        )
        .unwrap();
        let summary: Vec<(&str, Vec<f64>)> = rooms
            .iter()
            .map(|(room, points)| (room.as_str(), points.iter().map(|p| p.value).collect()))
            .collect();
        assert_eq!(
            summary,
            vec![("metrics:web-1", vec![1.0, 3.0]), ("metrics:db", vec![2.0])]
        );
        assert!(rooms[0].1.iter().all(|p| p.ts == now));
    }

    #[test]
    fn each_broken_rule_names_the_first_bad_sample() {
        let now = Utc::now();
        let long_label = Labels::from([("k".into(), "v".repeat(MAX_LABEL_VALUE_LEN + 1))]);
        let cases: Vec<(Sample, &str)> = vec![
            (sample("bad source!", "cpu", 1.0), "source"),
            (sample("a", "", 1.0), "series"),
            (sample("a", "9cpu", 1.0), "series"),
            (sample("a", &"x".repeat(MAX_NAME_LEN + 1), 1.0), "series"),
            (sample("a", "cpu", f64::NAN), "finite"),
            (sample("a", "cpu", f64::INFINITY), "finite"),
            (
                Sample {
                    ts: Some(now - max_age() - Duration::seconds(1)),
                    ..sample("a", "cpu", 1.0)
                },
                "window",
            ),
            (
                Sample {
                    ts: Some(now + max_skew() + Duration::seconds(1)),
                    ..sample("a", "cpu", 1.0)
                },
                "window",
            ),
            (
                Sample {
                    labels: Labels::from([("bad key".into(), "v".into())]),
                    ..sample("a", "cpu", 1.0)
                },
                "label",
            ),
            (
                Sample {
                    labels: long_label,
                    ..sample("a", "cpu", 1.0)
                },
                "longer",
            ),
            (
                Sample {
                    labels: Labels::from([("k".into(), "a\0b".into())]),
                    ..sample("a", "cpu", 1.0)
                },
                "NUL",
            ),
        ];
        for (bad, reason) in cases {
            let batch = vec![sample("a", "ok", 1.0), bad.clone(), sample("a", "ok", 2.0)];
            let error = group_batch(batch, now).unwrap_err();
            assert_eq!(error.index, 1, "{bad:?}");
            assert!(error.reason.contains(reason), "{bad:?}: {}", error.reason);
        }
        let too_many = vec![sample("a", "cpu", 1.0); MAX_BATCH_SAMPLES + 1];
        assert!(group_batch(too_many, now).is_err());
    }

    #[test]
    fn metric_events_carry_a_batch_or_a_single_sample() {
        let now = Utc::now();
        let points = vec![Point {
            series: "cpu".into(),
            value: 0.5,
            ts: now,
            labels: Labels::from([("core".into(), "0".into())]),
        }];
        assert_eq!(event_points(&event_data(&points), now), points);
        let single = event_points(&json!({"series": "cpu", "value": 2}), now);
        assert_eq!(single.len(), 1);
        assert_eq!((single[0].value, single[0].ts), (2.0, now));
        assert!(event_points(&json!({"text": "not a metric"}), now).is_empty());
        for (bad, field) in [
            (
                json!({"series": "cpu", "value": 1, "ts": "yesterday"}),
                "input contains invalid characters",
            ),
            (
                json!({"series": "cpu", "value": 1, "labels": {"core": 0}}),
                "expected a string",
            ),
            (json!({"series": "cpu", "value": "high"}), "expected f64"),
            (
                json!({"samples": [{"series": "cpu", "value": 1}]}),
                "missing field `ts`",
            ),
        ] {
            let error = read_points(&bad, now).unwrap_err();
            assert!(error.contains(field), "{bad}: {error}");
        }
    }

    #[test]
    fn a_series_reads_back_what_it_writes() {
        let plain: Series = "cpu.total".parse().unwrap();
        assert_eq!((plain.name.as_str(), plain.labels.len()), ("cpu.total", 0));
        assert_eq!(plain.to_string(), "cpu.total");
        let odd = Series {
            name: "fs.used_pct".into(),
            labels: Labels::from([
                ("mount".into(), "/mnt/a \"b\", c}".into()),
                ("dev.id".into(), "x\\y\nz".into()),
            ]),
        };
        let text = odd.to_string();
        assert_eq!(text.parse::<Series>(), Ok(odd.clone()));
        assert_eq!(
            Series::parse_list(&format!("{text}, cpu.total ,")),
            Ok(vec![odd, plain])
        );
        assert_eq!(Series::parse_list(" "), Ok(vec![]));
    }

    #[test]
    fn a_badly_written_series_says_why() {
        for (text, reason) in [
            ("9cpu", "series"),
            ("cpu{mount=/}", "quoted"),
            ("cpu{mount=\"/\"", "',' or '}'"),
            ("cpu{mount=\"/\"} extra", "unexpected"),
            ("cpu mem", "unexpected"),
        ] {
            let error = text.parse::<Series>().unwrap_err();
            assert!(error.contains(reason), "{text:?}: {error}");
        }
        let error = Series::parse_list("cpu mem").unwrap_err();
        assert!(error.contains("expected ','"), "{error}");
    }
}
