//! The past of the event log: the query behind `/history` and `GET /api/events` (filters, pages,
//! cursors, read from and written to a URL's query), and the server-side seam pages read the past
//! through, so server functions need not know about Postgres.

use std::fmt;

use chrono::{DateTime, Utc};
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
/// Longest full-text query, in bytes.
pub const MAX_QUERY_LEN: usize = 200;

/// Which events: every filter given must hold.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Filter {
    /// A room name or pattern (`host:*`).
    pub room: Option<Pattern>,
    /// Empty: notices and alerts. Metric events only when asked for.
    pub kinds: Vec<EventKind>,
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
    /// `now`, `now-<duration>` (`now-15m`) or an RFC 3339 time (`2026-11-26T03:12:00+01:00`).
    pub fn parse(text: &str) -> Result<Self, String> {
        let text = text.trim();
        if text == "now" {
            return Ok(Self::Ago(Span::default()));
        }
        if let Some(ago) = text.strip_prefix("now-") {
            return crate::duration::parse(ago).map(|d| Self::Ago(Span(d)));
        }
        DateTime::parse_from_rfc3339(text)
            .map(|t| Self::At(t.to_utc()))
            .map_err(|_| {
                format!(
                    "{text:?} is not a time: write RFC 3339 (2026-11-26T03:12:00Z), now or now-1h"
                )
            })
    }

    pub fn resolve(self, now: DateTime<Utc>) -> DateTime<Utc> {
        match self {
            Self::At(at) => at,
            Self::Ago(span) => now
                .checked_sub_signed(span.chrono())
                .unwrap_or(DateTime::<Utc>::MIN_UTC),
        }
    }
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
}

impl Default for Query {
    fn default() -> Self {
        Self {
            filter: Filter::default(),
            page: Page::First,
            limit: DEFAULT_PAGE,
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
                "severity" => {
                    query.filter.severity =
                        Some(named(value, "severity").map_err(fail("severity"))?)
                }
                "state" => query.filter.state = Some(named(value, "state").map_err(fail("state"))?),
                "from" => query.filter.from = Some(Moment::parse(value).map_err(fail("from"))?),
                "to" => query.filter.to = Some(Moment::parse(value).map_err(fail("to"))?),
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
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct EventDetail {
    pub event: Event,
    /// Up to a few events before and after it in the room, oldest first.
    pub before: Vec<Event>,
    pub after: Vec<Event>,
}

/// How far back the log goes for an identity: the time of the oldest notice or alert kept.
pub type Oldest = Option<DateTime<Utc>>;

#[cfg(feature = "ssr")]
pub use seam::*;

#[cfg(feature = "ssr")]
mod seam {
    use std::sync::Arc;

    use chrono::{DateTime, Utc};
    use futures::future::BoxFuture;

    use super::{EventDetail, EventPage, Oldest, Query};
    use crate::{
        auth::Identity,
        error::AppError,
        metrics::{Bucket, Series},
        protocol::{RoomName, RoomSnapshot},
    };

    pub trait History: Send + Sync + 'static {
        fn snapshot(
            &self,
            room: RoomName,
            limit: i64,
        ) -> BoxFuture<'static, Result<RoomSnapshot, AppError>>;

        /// One series of `source` over `[from, to)` in buckets `step_ms` wide, aligned to multiples
        /// of that width since the epoch (so pushes can fold into the same buckets).
        fn range(
            &self,
            source: String,
            series: Series,
            from: DateTime<Utc>,
            to: DateTime<Utc>,
            step_ms: i64,
        ) -> BoxFuture<'static, Result<Vec<Bucket>, AppError>>;

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

        /// When the oldest notice or alert kept was stored.
        fn oldest(&self) -> BoxFuture<'static, Result<Oldest, AppError>>;
    }

    /// Source names, each with its series.
    pub type Sources = Vec<(String, Vec<Series>)>;

    #[derive(Clone)]
    pub struct SharedHistory(pub Arc<dyn History>);
}
