//! The past of the event log: the query behind `/history` and `GET /api/events` (filters, pages,
//! cursors, read from and written to a URL's query), and the server-side seam pages read the past
//! through, so server functions need not know about Postgres.

use std::fmt;

use chrono::{DateTime, FixedOffset, TimeZone, Utc};
use serde::{Deserialize, Serialize, de::DeserializeOwned};

use crate::{
    alerts::{Severity, State},
    auth::Pattern,
    duration::Span,
    protocol::{Event, EventKind, RoomName},
};

/// Events in a page unless asked otherwise, and the most one page may hold.
pub const DEFAULT_PAGE: usize = 50;
pub const MAX_PAGE: usize = 500;
/// Most events a page holds when it holds metric events: one batch of samples can be most of a
/// megabyte, and a page is read whole.
pub const MAX_METRIC_PAGE: usize = 20;
/// Longest full-text query, in bytes.
pub const MAX_QUERY_LEN: usize = 200;

/// Which events: every filter given must hold.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Filter {
    /// A room name or pattern (`host:*`).
    pub room: Option<Pattern>,
    /// Empty: notices and alerts. Metric events only when asked for.
    pub kinds: Vec<EventKind>,
    /// Alert events of a source matching this pattern.
    pub source: Option<Pattern>,
    /// Alert events of this severity.
    pub severity: Option<Severity>,
    /// Alert transitions into this state.
    pub state: Option<State>,
    pub from: Option<Moment>,
    pub to: Option<Moment>,
    /// Words to find in notice titles, texts and tags, alert texts, names and summaries
    /// (web search syntax: `"disk full" -test`).
    pub text: Option<String>,
}

impl Filter {
    /// The kinds read: the ones asked for, or notices and alerts.
    pub fn kinds(&self) -> Vec<EventKind> {
        match self.kinds.is_empty() {
            true => vec![EventKind::Notice, EventKind::Alert],
            false => self.kinds.clone(),
        }
    }
}

/// A point in time as a filter holds it: fixed, or a span before now (kept relative in a shared
/// link, so `now-1h` stays the last hour).
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub enum Moment {
    At(DateTime<Utc>),
    Ago(Span),
}

impl Moment {
    /// `now`, `now-<duration>` (`now-15m`), an RFC 3339 time (`2026-11-26T03:12:00+01:00`), or
    /// a time without offset (`2026-11-26T03:12`, as a browser's date picker gives) read in `zone`.
    pub fn parse(text: &str, zone: Zone) -> Result<Self, String> {
        let text = text.trim();
        if text == "now" {
            return Ok(Self::Ago(Span::default()));
        }
        if let Some(ago) = text.strip_prefix("now-") {
            return crate::duration::parse(ago).map(|d| Self::Ago(Span(d)));
        }
        let local = || {
            // A date picker leaves out the seconds, which chrono's own reading wants.
            let seconds = match text.matches(':').count() {
                1 => format!("{text}:00"),
                _ => text.to_owned(),
            };
            seconds
                .parse::<chrono::NaiveDateTime>()
                .ok()
                .and_then(|naive| zone.offset().from_local_datetime(&naive).single())
                .map(|t| Self::At(t.to_utc()))
        };
        DateTime::parse_from_rfc3339(text)
            .map(|t| Self::At(t.to_utc()))
            .ok()
            .or_else(local)
            .ok_or_else(|| {
                format!(
                    "{text:?} is not a time: write RFC 3339 (2026-11-26T03:12:00Z), now or now-1h"
                )
            })
    }

    /// The instant meant, within the times the store keeps (see [`within_bounds`]).
    pub fn resolve(self, now: DateTime<Utc>) -> DateTime<Utc> {
        let t = match self {
            Self::At(at) => at,
            Self::Ago(span) => now.checked_sub_signed(span.chrono()).unwrap_or(EARLIEST),
        };
        t.clamp(EARLIEST, LATEST)
    }
}

/// The span of times history deals in: the Unix epoch to the end of year 9999. Postgres keeps
/// far more, but nothing stored is older than the epoch, and times beyond these are mistakes
/// that must not reach a query (nor overflow the arithmetic around one).
pub const EARLIEST: DateTime<Utc> = DateTime::UNIX_EPOCH;
pub const LATEST: DateTime<Utc> = match DateTime::from_timestamp(253_402_300_799, 0) {
    Some(t) => t,
    None => DateTime::UNIX_EPOCH,
};

/// `ms` since the epoch as a time, when it lies within [`EARLIEST`] and [`LATEST`].
pub fn within_bounds(ms: i64) -> Option<DateTime<Utc>> {
    DateTime::from_timestamp_millis(ms).filter(|t| (EARLIEST..=LATEST).contains(t))
}

impl fmt::Display for Moment {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::At(at) => f.write_str(&at.to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true)),
            Self::Ago(span) if span.is_zero() => f.write_str("now"),
            Self::Ago(span) => write!(f, "now-{span}"),
        }
    }
}

/// The time zone a history URL reads times without offset in and shows times in, as a fixed
/// offset from UTC: a link means the same instants wherever it is opened. Written `Z` or `+01:00`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Zone {
    /// Minutes east of UTC.
    pub minutes: i32,
}

impl Zone {
    pub fn parse(text: &str) -> Result<Self, String> {
        let bad = || format!("{text:?} is not a UTC offset such as Z, +01:00 or -05:30");
        if matches!(text, "Z" | "UTC") {
            return Ok(Self::default());
        }
        // A `+` typed into an address arrives as a space, trimmed away: no sign is east.
        let (sign, rest) = match text.split_at_checked(1) {
            Some(("+", rest)) => (1, rest),
            Some(("-", rest)) => (-1, rest),
            Some((digit, _)) if digit.starts_with(|c: char| c.is_ascii_digit()) => (1, text),
            _ => return Err(bad()),
        };
        let (hours, minutes) = rest.split_once(':').ok_or_else(bad)?;
        match (hours.parse::<i32>(), minutes.parse::<i32>()) {
            (Ok(hours @ 0..=14), Ok(minutes @ 0..=59)) => Ok(Self {
                minutes: sign * (hours * 60 + minutes),
            }),
            _ => Err(bad()),
        }
    }

    pub fn offset(self) -> FixedOffset {
        FixedOffset::east_opt(self.minutes * 60).unwrap_or(FixedOffset::east_opt(0).expect("UTC"))
    }

    /// `t` as a wall clock in this zone, to the second.
    pub fn show(self, t: DateTime<Utc>) -> String {
        crate::format::second(&t.with_timezone(&self.offset()))
    }

    /// `t` as a browser's date picker holds it in this zone.
    pub fn picker(self, t: DateTime<Utc>) -> String {
        crate::format::minute(&t.with_timezone(&self.offset())).replacen(' ', "T", 1)
    }
}

impl fmt::Display for Zone {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.minutes {
            0 => f.write_str("Z"),
            m => write!(
                f,
                "{}{:02}:{:02}",
                if m < 0 { '-' } else { '+' },
                m.abs() / 60,
                m.abs() % 60
            ),
        }
    }
}

/// Where a page starts: just past an event, in the order pages run (newest first). It names the
/// event by `(ts, room, seq)`, the order itself, so a page is an index range and page 1,000
/// costs what page 1 does. Written `<µs since the epoch>.<seq>.<room>`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Cursor {
    pub ts: DateTime<Utc>,
    pub room: RoomName,
    pub seq: i64,
}

impl Cursor {
    pub fn of(event: &Event) -> Self {
        Self {
            ts: event.ts,
            room: event.room.clone(),
            seq: event.seq,
        }
    }

    pub fn parse(text: &str) -> Result<Self, String> {
        let bad = || format!("{text:?} is not a cursor this server gave out");
        let mut parts = text.splitn(3, '.');
        let (Some(micros), Some(seq), Some(room)) = (parts.next(), parts.next(), parts.next())
        else {
            return Err(bad());
        };
        let ts = micros
            .parse()
            .ok()
            .and_then(DateTime::from_timestamp_micros)
            .filter(|t| (EARLIEST..=LATEST).contains(t))
            .ok_or_else(bad)?;
        let seq = seq.parse().ok().filter(|seq| *seq > 0).ok_or_else(bad)?;
        let room = RoomName::parse(room).map_err(|_| bad())?;
        Ok(Self { ts, room, seq })
    }
}

impl fmt::Display for Cursor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}.{}.{}",
            self.ts.timestamp_micros(),
            self.seq,
            self.room
        )
    }
}

impl TryFrom<String> for Cursor {
    type Error = String;
    fn try_from(text: String) -> Result<Self, String> {
        Self::parse(&text)
    }
}

impl From<Cursor> for String {
    fn from(cursor: Cursor) -> String {
        cursor.to_string()
    }
}

/// Which page of a filter's events.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub enum Page {
    /// The newest.
    #[default]
    First,
    /// The next older than the cursor's event.
    Older(Cursor),
    /// The next newer than the cursor's event (a page back, or what arrived since).
    Newer(Cursor),
}

/// A filter, a page of it and the page's size: what a history URL or API request asks.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Query {
    pub filter: Filter,
    pub page: Page,
    pub limit: usize,
    pub zone: Zone,
}

impl Default for Query {
    fn default() -> Self {
        Self {
            filter: Filter::default(),
            page: Page::First,
            limit: DEFAULT_PAGE,
            zone: Zone::default(),
        }
    }
}

/// A query parameter that could not be read, and why.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("parameter {param}: {reason}")]
pub struct BadParam {
    pub param: &'static str,
    pub reason: String,
}

/// Reads one of the closed sets of names (kinds, severities, states) by its wire name.
fn named<T: DeserializeOwned>(text: &str, what: &str) -> Result<T, String> {
    serde_json::from_value(serde_json::Value::String(text.to_owned()))
        .map_err(|_| format!("unknown {what} {text:?}"))
}

impl Query {
    /// Reads the parameters of a history URL or `GET /api/events`; others (a `token`, say) are
    /// left to whoever reads them. Empty values count as absent, as an empty form field sends.
    pub fn from_params<'a>(
        params: impl IntoIterator<Item = (&'a str, &'a str)>,
    ) -> Result<Self, BadParam> {
        let mut query = Self::default();
        // Times are read once the zone they may be written in is known.
        let (mut from, mut to) = (None, None);
        for (param, value) in params {
            let value = value.trim();
            if value.is_empty() {
                continue;
            }
            let fail = |param: &'static str| move |reason: String| BadParam { param, reason };
            match param {
                "room" => query.filter.room = Some(Pattern::parse(value).map_err(fail("room"))?),
                "kind" => {
                    query.filter.kinds = value
                        .split(',')
                        .map(|kind| named(kind.trim(), "kind"))
                        .collect::<Result<_, _>>()
                        .map_err(fail("kind"))?
                }
                "source" => {
                    query.filter.source = Some(Pattern::parse(value).map_err(fail("source"))?)
                }
                "severity" => {
                    query.filter.severity =
                        Some(named(value, "severity").map_err(fail("severity"))?)
                }
                "state" => query.filter.state = Some(named(value, "state").map_err(fail("state"))?),
                "from" => from = Some(value),
                "to" => to = Some(value),
                "tz" => query.zone = Zone::parse(value).map_err(fail("tz"))?,
                "q" if value.len() > MAX_QUERY_LEN => {
                    return Err(fail("q")(format!("at most {MAX_QUERY_LEN} bytes")));
                }
                "q" => query.filter.text = Some(value.to_owned()),
                "cursor" => query.page = Page::Older(Cursor::parse(value).map_err(fail("cursor"))?),
                "after" => query.page = Page::Newer(Cursor::parse(value).map_err(fail("after"))?),
                "limit" => {
                    query.limit = match value.parse::<usize>() {
                        Ok(n @ 1..=MAX_PAGE) => n,
                        _ => return Err(fail("limit")(format!("must be 1 to {MAX_PAGE}"))),
                    }
                }
                _ => {}
            }
        }
        let zone = query.zone;
        let read = |text: Option<&str>, param| {
            text.map(|text| Moment::parse(text, zone).map_err(|reason| BadParam { param, reason }))
                .transpose()
        };
        query.filter.from = read(from, "from")?;
        query.filter.to = read(to, "to")?;
        Ok(query)
    }

    /// The parameters that ask for this query, defaults left out: `from_params` reads them back.
    pub fn to_params(&self) -> Vec<(&'static str, String)> {
        let filter = &self.filter;
        let mut params = Vec::new();
        let mut put = |param, value: Option<String>| {
            if let Some(value) = value {
                params.push((param, value));
            }
        };
        put("room", filter.room.as_ref().map(ToString::to_string));
        put(
            "kind",
            (!filter.kinds.is_empty()).then(|| {
                let kinds: Vec<&str> = filter.kinds.iter().map(|k| k.as_str()).collect();
                kinds.join(",")
            }),
        );
        put("source", filter.source.as_ref().map(ToString::to_string));
        put("severity", filter.severity.map(|s| s.as_str().to_owned()));
        put("state", filter.state.map(|s| s.as_str().to_owned()));
        put("from", filter.from.map(|m| m.to_string()));
        put("to", filter.to.map(|m| m.to_string()));
        put("q", filter.text.clone());
        match &self.page {
            Page::First => {}
            Page::Older(cursor) => put("cursor", Some(cursor.to_string())),
            Page::Newer(cursor) => put("after", Some(cursor.to_string())),
        }
        put(
            "limit",
            (self.limit != DEFAULT_PAGE).then(|| self.limit.to_string()),
        );
        put(
            "tz",
            (self.zone != Zone::default()).then(|| self.zone.to_string()),
        );
        params
    }

    /// The query as a URL query string (without `?`).
    pub fn to_query_string(&self) -> String {
        self.to_params()
            .into_iter()
            .map(|(param, value)| format!("{param}={}", encode(&value)))
            .collect::<Vec<_>>()
            .join("&")
    }

    /// The events a page holds: `limit`, or fewer when metric events are among them.
    pub fn page_size(&self) -> usize {
        match self.filter.kinds.contains(&EventKind::Metric) {
            true => self.limit.min(MAX_METRIC_PAGE),
            false => self.limit,
        }
    }

    /// `[from, to)` as instants, `now` standing for the present.
    pub fn span(&self, now: DateTime<Utc>) -> (Option<DateTime<Utc>>, Option<DateTime<Utc>>) {
        (
            self.filter.from.map(|m| m.resolve(now)),
            self.filter.to.map(|m| m.resolve(now)),
        )
    }
}

/// Percent-encodes a query value: everything but unreserved characters.
fn encode(value: &str) -> String {
    value
        .bytes()
        .map(|b| match b {
            b'A'..=b'Z'
            | b'a'..=b'z'
            | b'0'..=b'9'
            | b'-'
            | b'.'
            | b'_'
            | b'~'
            | b':'
            | b'*'
            | b',' => (b as char).to_string(),
            b => format!("%{b:02X}"),
        })
        .collect()
}

/// One page of events, newest first, with the cursors to the pages beside it.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct EventPage {
    pub events: Vec<Event>,
    /// The next older page; none when this one reaches the oldest match.
    pub next: Option<Cursor>,
    /// The next newer page; none when this one starts at the newest match.
    pub prev: Option<Cursor>,
}

/// An event with its neighbours in its room, for the detail page.
/// A room as the list of rooms shows it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RoomSummary {
    pub room: RoomName,
    /// Its newest seq: how many events it has had since its log last started.
    pub head: i64,
    /// When its newest event was stored; none before its first, or once retention dropped it.
    pub newest: Option<DateTime<Utc>>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct EventDetail {
    pub event: Event,
    /// Up to a few events before and after it in the room, oldest first.
    pub before: Vec<Event>,
    pub after: Vec<Event>,
}

/// The room a notice goes to when its sender names none; its notices mark every dashboard.
pub const NOTICES_ROOM: &str = "notices";

/// A moment drawn across charts: a notice (a deploy, a maintenance), or an alert of a source the
/// chart shows changing state.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Marker {
    pub t_ms: i64,
    /// A notice's level (`info`, `warning`, `error`), or for an alert the severity it fired at,
    /// `resolved` or `nodata`.
    pub level: String,
    pub text: String,
    pub room: RoomName,
    pub seq: i64,
    /// The source an alert is of; none for a notice.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<String>,
}

impl Marker {
    pub fn is_alert(&self) -> bool {
        self.source.is_some()
    }

    /// The marker `event` makes on a dashboard showing `sources`: every notice, and the alert
    /// transitions of those sources into firing, resolved or no data.
    pub fn of(event: &Event, sources: &[String]) -> Option<Self> {
        let (level, text, source) = match event.kind {
            EventKind::Notice => {
                let notice = crate::protocol::Notice::of(event)?;
                let text = match notice.title {
                    Some(title) => format!("{title}: {}", notice.text),
                    None => notice.text,
                };
                (
                    notice.level.unwrap_or_default().as_str().to_owned(),
                    text,
                    None,
                )
            }
            // Read field by field, not as a whole `AlertEvent`: the dashboards mark their live
            // charts with this, and every kind of alert news' decoders would come with it into
            // the browser's first module.
            EventKind::Alert => {
                let field = |name: &str| event.data.get(name);
                if field("type")?.as_str()? != "transition" {
                    return None;
                }
                let source = field("source")?.as_str()?;
                if !sources.iter().any(|s| s == source) {
                    return None;
                }
                let level = match State::deserialize(field("state")?).ok()? {
                    State::Firing => Severity::deserialize(field("severity")?).ok()?.as_str(),
                    State::Resolved => "resolved",
                    State::NoData => "nodata",
                    State::Normal | State::Pending => return None,
                };
                let text = field("text")?.as_str()?;
                (level.to_owned(), text.to_owned(), Some(source.to_owned()))
            }
            EventKind::Metric => return None,
        };
        Some(Self {
            t_ms: event.ts.timestamp_millis(),
            level,
            text,
            room: event.room.clone(),
            seq: event.seq,
            source,
        })
    }
}

/// How far back the history goes for an identity: the time of the oldest notice or alert it may
/// read.
pub type Oldest = Option<DateTime<Utc>>;

#[cfg(feature = "ssr")]
pub use seam::*;

#[cfg(feature = "ssr")]
mod seam {
    use std::sync::Arc;

    use chrono::{DateTime, Utc};
    use futures::future::BoxFuture;

    use super::{EventDetail, EventPage, Oldest, Query, RoomSummary};
    use crate::{
        auth::Identity,
        error::AppError,
        metrics::{Bucket, Series, Storage},
        protocol::{RoomName, RoomSnapshot},
    };

    pub trait History: Send + Sync + 'static {
        fn snapshot(
            &self,
            room: RoomName,
            limit: i64,
        ) -> BoxFuture<'static, Result<RoomSnapshot, AppError>>;

        /// Each of `series` (source and series) over `[from, to)` in buckets `step_ms` wide,
        /// aligned to multiples of that width since the epoch (so pushes can fold into the same
        /// buckets). One call for a whole page: it costs a few queries however many sources.
        fn ranges(
            &self,
            series: Vec<(String, Series)>,
            from: DateTime<Utc>,
            to: DateTime<Utc>,
            step_ms: i64,
        ) -> BoxFuture<'static, Result<Vec<Vec<Bucket>>, AppError>>;

        /// The first `limit` sources (by name) whose name contains `filter` and whose room `visible`
        /// may read, each with its first `series` series, and how many sources matched: the others
        /// do not exist for it, not even in the count.
        fn sources(
            &self,
            filter: String,
            limit: usize,
            series: usize,
            visible: Identity,
        ) -> BoxFuture<'static, Result<(usize, Sources), AppError>>;

        /// The first `limit` rooms (by name) whose name contains `filter` and which `visible`
        /// may read, and how many matched: the others do not exist for it, not even in the count.
        fn rooms(
            &self,
            filter: String,
            limit: usize,
            visible: Identity,
        ) -> BoxFuture<'static, Result<(usize, Vec<RoomSummary>), AppError>>;

        /// One page of the events `query` asks for, among the rooms `visible` may read.
        fn events(
            &self,
            query: Query,
            visible: Identity,
        ) -> BoxFuture<'static, Result<EventPage, AppError>>;

        /// The event `seq` of `room` with its neighbours; none when it is not (or no longer) kept.
        fn event(
            &self,
            room: RoomName,
            seq: i64,
        ) -> BoxFuture<'static, Result<Option<EventDetail>, AppError>>;

        /// When the oldest notice or alert `visible` may read was stored.
        fn oldest(&self, visible: Identity) -> BoxFuture<'static, Result<Oldest, AppError>>;

        /// What the metrics store holds, tier by tier.
        fn storage(&self) -> BoxFuture<'static, Result<Storage, AppError>>;
    }

    /// Source names, each with its series.
    pub type Sources = Vec<(String, Vec<Series>)>;

    #[derive(Clone)]
    pub struct SharedHistory(pub Arc<dyn History>);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read(url: &str) -> Result<Query, BadParam> {
        Query::from_params(url.split('&').filter_map(|pair| pair.split_once('=')))
    }

    #[test]
    fn an_alert_marks_the_dashboards_of_its_source_when_it_fires_resolves_or_loses_data() {
        use crate::alerts::{AlertEvent, News, Transition, tests::disk_full};

        let (transition, ack) = disk_full();
        let event = |news: News| Event {
            room: RoomName::parse(crate::alerts::ROOM).unwrap(),
            seq: 7,
            ts: transition.since,
            kind: EventKind::Alert,
            data: serde_json::to_value(AlertEvent {
                text: "disk full".into(),
                news,
            })
            .unwrap(),
        };
        let mark = |news: News, sources: &[&str]| {
            let sources: Vec<String> = sources.iter().map(|s| s.to_string()).collect();
            Marker::of(&event(news), &sources).map(|m| (m.level, m.text, m.source))
        };
        let web = ["host:db-1", "host:web-1"];
        let changed = |state| {
            News::Transition(Transition {
                state,
                ..transition.clone()
            })
        };
        assert_eq!(
            mark(changed(State::Firing), &web),
            Some((
                "critical".into(),
                "disk full".into(),
                Some("host:web-1".into())
            ))
        );
        assert_eq!(mark(changed(State::Resolved), &web).unwrap().0, "resolved");
        assert_eq!(mark(changed(State::NoData), &web).unwrap().0, "nodata");
        assert_eq!(mark(changed(State::Pending), &web), None);
        assert_eq!(mark(changed(State::Firing), &["host:db-1"]), None);
        assert_eq!(mark(News::Ack(ack), &web), None);
    }

    #[test]
    fn a_query_round_trips_through_its_url() {
        let cursor = Cursor {
            ts: DateTime::from_timestamp_micros(1_764_130_000_123_456).unwrap(),
            room: RoomName::parse("host:web-1.x").unwrap(),
            seq: 42,
        };
        let query = Query {
            filter: Filter {
                room: Some(Pattern::parse("host:*").unwrap()),
                kinds: vec![EventKind::Alert, EventKind::Metric],
                source: Some(Pattern::parse("web-*").unwrap()),
                severity: Some(Severity::Critical),
                state: Some(State::Firing),
                from: Some(Moment::Ago(Span::secs(3600))),
                to: Some(Moment::At(cursor.ts)),
                text: Some("disk \"full\" & more".into()),
            },
            page: Page::Older(cursor),
            limit: 20,
            zone: Zone::parse("-05:30").unwrap(),
        };
        let text = query.to_query_string();
        let decoded: Vec<(String, String)> = text
            .split('&')
            .map(|pair| {
                let (k, v) = pair.split_once('=').unwrap();
                (k.to_owned(), percent_decode(v))
            })
            .collect();
        let back = Query::from_params(decoded.iter().map(|(k, v)| (k.as_str(), v.as_str())));
        assert_eq!(back, Ok(query), "{text}");
        assert_eq!(Query::default().to_query_string(), "");
    }

    fn percent_decode(text: &str) -> String {
        let bytes = text.as_bytes();
        let mut out = Vec::new();
        let mut i = 0;
        while i < bytes.len() {
            if bytes[i] == b'%' {
                out.push(u8::from_str_radix(&text[i + 1..i + 3], 16).unwrap());
                i += 3;
            } else {
                out.push(bytes[i]);
                i += 1;
            }
        }
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn times_read_relative_absolute_or_in_the_page_zone() {
        let at = |text| DateTime::parse_from_rfc3339(text).unwrap().to_utc();
        let q = read("from=now-15m&to=2026-11-26T03:12:00+01:00").unwrap();
        assert_eq!(q.filter.from, Some(Moment::Ago(Span::secs(900))));
        // Read before the zone is known: `tz` may come last in a URL.
        let q = read("from=2026-11-26T03:12&tz=+01:00").unwrap();
        assert_eq!(q.filter.from, Some(Moment::At(at("2026-11-26T02:12:00Z"))));
        assert_eq!(read("tz=01:00").unwrap().zone, q.zone);
        let q = read("to=2026-11-26T03:12:30.25&tz=Z").unwrap();
        assert_eq!(q.filter.to, Some(Moment::At(at("2026-11-26T03:12:30.25Z"))));
        assert_eq!(
            Zone::default().picker(at("2026-11-26T03:12:30Z")),
            "2026-11-26T03:12"
        );
        let now = at("2026-11-26T12:00:00Z");
        assert_eq!(
            Moment::Ago(Span::secs(3600)).resolve(now),
            at("2026-11-26T11:00:00Z")
        );
        assert_eq!(
            Zone::parse("+05:45").unwrap().show(now),
            "2026-11-26 17:45:00"
        );
        // Far beyond what is kept: the bounds, not an overflow or a database error.
        let ancient = read("from=now-100000000d").unwrap().span(now).0;
        assert_eq!(ancient, Some(EARLIEST));
        assert!(read("cursor=-9000000000000000000.1.room").is_err());
        for bad in [
            "tz=+25:00",
            "tz=CET",
            "from=yesterday",
            "to=2026-02-30T00:00",
        ] {
            assert!(read(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn alert_filters_and_empty_fields_read_as_a_form_sends_them() {
        let q = read("room=&kind=notice,alert&severity=warning&q=&limit=").unwrap();
        assert_eq!(q.filter.room, None);
        assert_eq!(q.filter.kinds, vec![EventKind::Notice, EventKind::Alert]);
        assert_eq!(q.filter.severity, Some(Severity::Warning));
        assert_eq!(q.filter.text, None);
        assert_eq!(q.limit, DEFAULT_PAGE);
        let err = read("limit=501").unwrap_err();
        assert_eq!(err.param, "limit");
        assert_eq!(read("cursor=1.0.room").unwrap_err().param, "cursor");
    }
}
