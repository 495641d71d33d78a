//! A strict reader of the Prometheus text exposition format (version 0.0.4), so existing
//! exporters' output can be forwarded as samples. Comments (`# HELP`, `# TYPE`) carry nothing a
//! sample needs and are skipped.

use app::metrics::{Labels, Point, parse_labels};
use chrono::{DateTime, TimeZone, Utc};

/// The samples of a payload, in order; NaN and ±Inf values (which exporters emit, e.g. for empty
/// summaries) are counted in `skipped` rather than stored.
#[derive(Debug, Default, PartialEq)]
pub struct Parsed {
    pub points: Vec<Point>,
    pub skipped: usize,
}

/// The first line that is not valid exposition text.
#[derive(Debug, PartialEq, thiserror::Error)]
#[error("line {line}: {reason}")]
pub struct ParseError {
    pub line: usize,
    pub reason: String,
}

/// Parses `text`; samples without a timestamp are stamped `now`.
pub fn parse(text: &str, now: DateTime<Utc>) -> Result<Parsed, ParseError> {
    let mut parsed = Parsed::default();
    for (index, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let fail = |reason: String| ParseError {
            line: index + 1,
            reason,
        };
        let point = parse_line(line, now).map_err(fail)?;
        if point.value.is_finite() {
            parsed.points.push(point);
        } else {
            parsed.skipped += 1;
        }
    }
    Ok(parsed)
}

fn parse_line(line: &str, now: DateTime<Utc>) -> Result<Point, String> {
    let name_end = line
        .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_' || c == ':'))
        .unwrap_or(line.len());
    let name = &line[..name_end];
    if name.is_empty() || name.starts_with(|c: char| c.is_ascii_digit()) {
        return Err("expected a metric name".into());
    }
    let mut rest = &line[name_end..];
    let mut labels = Labels::new();
    if let Some(inner) = rest.strip_prefix('{') {
        rest = parse_labels(inner, &mut labels)?;
    }
    // Else `node-1 5` would read as series `node` of value -1 at 5 ms past the epoch.
    if !rest.is_empty() && !rest.starts_with(|c: char| c.is_ascii_whitespace()) {
        return Err(format!("expected whitespace after {name:?}, not {rest:?}"));
    }
    let mut fields = rest.split_ascii_whitespace();
    let value = fields.next().ok_or("expected a value after the name")?;
    let value = parse_value(value)?;
    let ts = match fields.next() {
        None => now,
        Some(ms) => {
            let ms: i64 = ms
                .parse()
                .map_err(|_| format!("timestamp {ms:?} must be integer milliseconds"))?;
            Utc.timestamp_millis_opt(ms)
                .single()
                .ok_or_else(|| format!("timestamp {ms} is out of range"))?
        }
    };
    if let Some(extra) = fields.next() {
        return Err(format!("unexpected {extra:?} after the timestamp"));
    }
    Ok(Point {
        series: name.to_owned(),
        value,
        ts,
        labels,
    })
}

fn parse_value(value: &str) -> Result<f64, String> {
    match value {
        "+Inf" | "Inf" => Ok(f64::INFINITY),
        "-Inf" => Ok(f64::NEG_INFINITY),
        "NaN" => Ok(f64::NAN),
        _ => value
            .parse()
            .map_err(|_| format!("value {value:?} is not a number")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Found by fuzzing (`scripts/fuzz`): a name ran straight into a signed number.
    #[test]
    fn a_name_running_into_its_value_is_refused() {
        let now = Utc::now();
        for line in ["vtt-00\x0c-00", "node-1 5", "cpu-2", "up{job=\"a\"}1"] {
            let refused = parse(line, now).unwrap_err();
            assert!(
                refused.reason.contains("expected whitespace"),
                "{line:?}: {refused}"
            );
        }
        let spaced = parse("up{job=\"a\"}\t1", now).unwrap();
        assert_eq!(spaced.points[0].value, 1.0);
    }

    #[test]
    fn reads_names_labels_values_and_timestamps_and_skips_comments() {
        let now = Utc::now();
        let text = r#"
# HELP http_requests_total The total number of HTTP requests.
# TYPE http_requests_total counter
http_requests_total{method="post",code="200"} 1027 1395066363000
http_requests_total{method="post",code="400",} 3 1395066363000
msdos_file_access_time_seconds{path="C:\\DIR\\FILE.TXT",error="Cannot find file:\n\"FILE.TXT\""} 1.458255915e9
metric_without_timestamp_and_labels 12.47
rpc_duration_seconds{quantile="0.5"} NaN
something_weird{problem="division by zero"} +Inf -3982045
"#;
        let parsed = parse(text, now).unwrap();
        assert_eq!(parsed.skipped, 2);
        let p = &parsed.points;
        assert_eq!(p.len(), 4);
        assert_eq!(p[0].series, "http_requests_total");
        assert_eq!(p[0].labels["code"], "200");
        assert_eq!(p[0].value, 1027.0);
        assert_eq!(p[0].ts.timestamp_millis(), 1395066363000);
        assert_eq!(p[1].labels["code"], "400");
        assert_eq!(p[2].labels["path"], r"C:\DIR\FILE.TXT");
        assert_eq!(p[2].labels["error"], "Cannot find file:\n\"FILE.TXT\"");
        assert_eq!(p[2].value, 1.458255915e9);
        assert_eq!((p[3].value, p[3].ts), (12.47, now));
        assert!(p[3].labels.is_empty());
    }

    #[test]
    fn names_the_first_bad_line() {
        for (text, line, reason) in [
            ("ok 1\n9bad 1", 2, "metric name"),
            ("ok 1\n\nm{a=\"1\" 2", 3, "',' or '}'"),
            ("m{a=1} 2", 1, "quoted"),
            ("m{a=\"1} 2", 1, "not closed"),
            ("m{a=\"1\",a=\"2\"} 2", 1, "twice"),
            ("m high", 1, "not a number"),
            ("m", 1, "expected a value"),
            ("m 1 12.5", 1, "integer milliseconds"),
            ("m 1 2 3", 1, "unexpected"),
            ("m{a=\"\\x\"} 1", 1, "bad escape"),
        ] {
            let error = parse(text, Utc::now()).unwrap_err();
            assert_eq!(error.line, line, "{text:?}");
            assert!(error.reason.contains(reason), "{text:?}: {}", error.reason);
        }
    }
}
