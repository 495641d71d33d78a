//! Alerts as the API, the pages and the `alerts` room share them: rules, the state of each alert
//! instance, acknowledgements, silences and notification channels.

use std::{cmp::Ordering, fmt};

use chrono::{DateTime, Utc};
use serde::{Deserialize, Deserializer, Serialize, de::DeserializeOwned};
use serde_json::{Map, Value};

use crate::{
    auth::Pattern,
    duration::Span,
    metrics::{Labels, Series, check_labels},
};

/// The room every alert transition, acknowledgement and silence is stored in and pushed to.
pub const ROOM: &str = "alerts";
/// Longest rule or channel name, summary template and comment.
pub const MAX_NAME_LEN: usize = 128;
pub const MAX_TEXT_LEN: usize = 1024;
/// Longest window, pending and keep-firing period, and no-data period a rule may have.
pub const MAX_SPAN: Span = Span::secs(86_400);
/// Longest window: an instance holds at most an hour of one sample a second.
pub const MAX_WINDOW: Span = Span::secs(3600);

/// How a rule folds the samples in its window into one value.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Reducer {
    #[default]
    Last,
    Avg,
    Min,
    Max,
    /// Increase per second from the window's first sample to its last, counter resets allowed for.
    Rate,
}

impl Reducer {
    /// Folds `(ts, value)` samples in time order; none when there are too few.
    pub fn reduce(
        self,
        samples: impl ExactSizeIterator<Item = (DateTime<Utc>, f64)>,
    ) -> Option<f64> {
        let n = samples.len();
        let mut samples = samples.peekable();
        match self {
            Self::Last => samples.last().map(|(_, v)| v),
            Self::Avg => (n > 0).then(|| samples.map(|(_, v)| v).sum::<f64>() / n as f64),
            Self::Min => samples.map(|(_, v)| v).reduce(f64::min),
            Self::Max => samples.map(|(_, v)| v).reduce(f64::max),
            Self::Rate => {
                let (first_ts, first) = *samples.peek()?;
                let (mut last_ts, mut previous, mut increase) = (first_ts, first, 0.0);
                for (ts, value) in samples {
                    increase += Self::counter_increase(previous, value);
                    (previous, last_ts) = (value, ts);
                }
                let secs = (last_ts - first_ts).as_seconds_f64();
                (secs > 0.0).then(|| increase / secs)
            }
        }
    }
}

impl Reducer {
    /// How much a counter grew from `previous` to `value`: one that went down was reset, and
    /// counted up from zero since.
    pub fn counter_increase(previous: f64, value: f64) -> f64 {
        if value >= previous {
            value - previous
        } else {
            value
        }
    }
}

/// How a rule compares its value with the threshold.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Op {
    #[serde(rename = ">")]
    Above,
    #[serde(rename = ">=")]
    AtLeast,
    #[serde(rename = "<")]
    Below,
    #[serde(rename = "<=")]
    AtMost,
}

impl Op {
    pub fn holds(self, value: f64, threshold: f64) -> bool {
        match self {
            Self::Above => value > threshold,
            Self::AtLeast => value >= threshold,
            Self::Below => value < threshold,
            Self::AtMost => value <= threshold,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Above => ">",
            Self::AtLeast => ">=",
            Self::Below => "<",
            Self::AtMost => "<=",
        }
    }
}

#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize,
)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    Info,
    #[default]
    Warning,
    Critical,
}

impl Severity {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Info => "info",
            Self::Warning => "warning",
            Self::Critical => "critical",
        }
    }
}

/// The state of one alert instance, as Prometheus and Grafana name them.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum State {
    #[default]
    Normal,
    /// The condition holds, for less than the rule's `for` so far.
    Pending,
    Firing,
    /// Firing before, the condition no longer holds.
    Resolved,
    /// No samples for the rule's no-data period.
    NoData,
}

impl State {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Normal => "normal",
            Self::Pending => "pending",
            Self::Firing => "firing",
            Self::Resolved => "resolved",
            Self::NoData => "nodata",
        }
    }

    /// Whether operators are told of it: firing, or without data where the rule treats that so.
    pub fn is_trouble(self) -> bool {
        matches!(self, Self::Firing | Self::NoData)
    }
}

impl fmt::Display for State {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What a rule makes of a source that sent no samples of its series for `after`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NoData {
    #[serde(default = "NoData::default_after")]
    pub after: Span,
    #[serde(default)]
    pub means: NoDataMeans,
}

impl NoData {
    fn default_after() -> Span {
        Span::secs(300)
    }
}

impl Default for NoData {
    fn default() -> Self {
        Self {
            after: Self::default_after(),
            means: NoDataMeans::default(),
        }
    }
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum NoDataMeans {
    /// All is well: a firing alert resolves.
    Ok,
    /// The instance goes to `nodata`, and operators are told.
    #[default]
    NoData,
    /// As bad as the condition holding.
    Firing,
}

/// An alert rule: for every source matching `source`, and every label set of `series` among its
/// samples, one alert instance.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Rule {
    pub name: String,
    pub source: Pattern,
    /// A series name, with labels a sample must carry (`fs.used_pct{mount="/"}`).
    #[serde(with = "series_text")]
    pub series: Series,
    pub reducer: Reducer,
    pub window: Span,
    pub op: Op,
    pub threshold: f64,
    /// How long the condition must hold before the alert fires.
    #[serde(rename = "for")]
    pub pending_for: Span,
    /// How long a firing alert stays firing after the condition stops holding.
    pub keep_firing_for: Span,
    pub severity: Severity,
    /// `{{source}}`, `{{value}}`, `{{threshold}}`, `{{series}}`, `{{rule}}` and
    /// `{{labels.NAME}}` are filled in.
    pub summary: String,
    pub no_data: NoData,
    /// Added to every notification of the rule, for routing.
    pub labels: Labels,
    /// A paused rule is not evaluated; its instances keep their states.
    pub paused: bool,
}

/// A rule field that could not be read, named so the sender knows what to fix.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {reason}")]
pub struct InvalidField {
    pub field: String,
    pub reason: String,
}

impl InvalidField {
    pub fn new(field: &str, reason: impl Into<String>) -> Self {
        Self {
            field: field.to_owned(),
            reason: reason.into(),
        }
    }
}

/// Reads the fields of a JSON object one at a time, so an error names its field.
struct Fields<'a> {
    object: &'a Map<String, Value>,
}

impl<'a> Fields<'a> {
    fn of(value: &'a Value, known: &[&str]) -> Result<Self, InvalidField> {
        let object = value
            .as_object()
            .ok_or_else(|| InvalidField::new("body", "must be a JSON object"))?;
        if let Some(unknown) = object.keys().find(|key| !known.contains(&key.as_str())) {
            return Err(InvalidField::new(unknown, "unknown field"));
        }
        Ok(Self { object })
    }

    fn optional<T: DeserializeOwned>(&self, field: &str) -> Result<Option<T>, InvalidField> {
        match self.object.get(field) {
            None | Some(Value::Null) => Ok(None),
            Some(value) => T::deserialize(value)
                .map(Some)
                .map_err(|e| InvalidField::new(field, e.to_string())),
        }
    }

    fn required<T: DeserializeOwned>(&self, field: &str) -> Result<T, InvalidField> {
        self.optional(field)?
            .ok_or_else(|| InvalidField::new(field, "is required"))
    }
}

fn check_name(field: &str, name: &str) -> Result<(), InvalidField> {
    if name.trim().is_empty() || name.len() > MAX_NAME_LEN || name.chars().any(char::is_control) {
        return Err(InvalidField::new(
            field,
            format!("must be 1–{MAX_NAME_LEN} characters, none of them control characters"),
        ));
    }
    Ok(())
}

/// Checks a comment or summary: what people write, within what Postgres keeps (no NUL).
pub fn check_text(field: &str, text: &str) -> Result<(), InvalidField> {
    if text.len() > MAX_TEXT_LEN || text.contains('\0') {
        return Err(InvalidField::new(
            field,
            format!("must be at most {MAX_TEXT_LEN} bytes, without NUL"),
        ));
    }
    Ok(())
}

fn check_span(field: &str, span: Span, may_be_zero: bool) -> Result<(), InvalidField> {
    if span > MAX_SPAN || (span.is_zero() && !may_be_zero) {
        let least = if may_be_zero { "0s" } else { "above 0s" };
        return Err(InvalidField::new(
            field,
            format!("must be {least} and at most {MAX_SPAN}"),
        ));
    }
    Ok(())
}

impl Rule {
    pub const FIELDS: [&str; 14] = [
        "name",
        "source",
        "series",
        "reducer",
        "window",
        "op",
        "threshold",
        "for",
        "keep_firing_for",
        "severity",
        "summary",
        "no_data",
        "labels",
        "paused",
    ];

    /// Reads a rule as the API takes it (defaults filled in, `id` ignored), checking every field.
    pub fn read(value: &Value) -> Result<Self, InvalidField> {
        let known: Vec<&str> = Self::FIELDS.into_iter().chain(["id"]).collect();
        let fields = Fields::of(value, &known)?;
        let rule = Self {
            name: fields.required("name")?,
            source: fields.required("source")?,
            series: fields
                .required::<String>("series")?
                .parse()
                .map_err(|e| InvalidField::new("series", e))?,
            reducer: fields.optional("reducer")?.unwrap_or_default(),
            window: fields.optional("window")?.unwrap_or(Span::secs(60)),
            op: fields.required("op")?,
            threshold: fields.required("threshold")?,
            pending_for: fields.optional("for")?.unwrap_or_default(),
            keep_firing_for: fields.optional("keep_firing_for")?.unwrap_or_default(),
            severity: fields.optional("severity")?.unwrap_or_default(),
            summary: fields
                .optional("summary")?
                .unwrap_or_else(|| "{{rule}}: {{source}} {{series}} is {{value}}".into()),
            no_data: fields.optional("no_data")?.unwrap_or_default(),
            labels: fields.optional("labels")?.unwrap_or_default(),
            paused: fields.optional("paused")?.unwrap_or_default(),
        };
        rule.check()?;
        Ok(rule)
    }

    /// The checks beyond each field's type.
    pub fn check(&self) -> Result<(), InvalidField> {
        check_name("name", &self.name)?;
        self.series
            .check()
            .map_err(|e| InvalidField::new("series", e))?;
        check_span("window", self.window, false)?;
        if self.window > MAX_WINDOW {
            return Err(InvalidField::new(
                "window",
                format!("must be at most {MAX_WINDOW}"),
            ));
        }
        if !self.threshold.is_finite() {
            return Err(InvalidField::new("threshold", "must be a finite number"));
        }
        check_span("for", self.pending_for, true)?;
        check_span("keep_firing_for", self.keep_firing_for, true)?;
        check_span("no_data.after", self.no_data.after, false)?;
        check_text("summary", &self.summary)?;
        check_labels(&self.labels).map_err(|e| InvalidField::new("labels", e))
    }

    /// Whether a sample of the rule's series with `labels` carries the labels the rule names.
    pub fn watches_labels(&self, labels: &Labels) -> bool {
        self.series
            .labels
            .iter()
            .all(|(k, v)| labels.get(k) == Some(v))
    }

    /// The summary of one instance with its value.
    pub fn summarise(&self, source: &str, labels: &Labels, value: Option<f64>) -> String {
        let mut text = self
            .summary
            .replace("{{source}}", source)
            .replace("{{value}}", &value.map_or("no data".into(), format_value))
            .replace("{{threshold}}", &format_value(self.threshold))
            .replace("{{series}}", &self.series.to_string())
            .replace("{{rule}}", &self.name);
        for (key, value) in labels.iter().chain(&self.labels) {
            text = text.replace(&format!("{{{{labels.{key}}}}}"), value);
        }
        text
    }
}

/// A value as summaries and pages show it: at most two decimals, no trailing zeros.
pub fn format_value(value: f64) -> String {
    let text = format!("{value:.2}");
    let text = text.trim_end_matches('0').trim_end_matches('.');
    match text {
        "-0" => "0".into(),
        text => text.into(),
    }
}

mod series_text {
    use serde::{Deserialize, Deserializer, Serializer, de::Error};

    use crate::metrics::Series;

    pub fn serialize<S: Serializer>(series: &Series, to: S) -> Result<S::Ok, S::Error> {
        to.collect_str(series)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(from: D) -> Result<Series, D::Error> {
        String::deserialize(from)?.parse().map_err(D::Error::custom)
    }
}

/// A stored rule.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct StoredRule {
    pub id: i64,
    #[serde(flatten)]
    pub rule: Rule,
}

/// What one alert instance is: its rule, the source and the label set of its samples.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Key {
    pub rule: i64,
    pub source: String,
    #[serde(default)]
    pub labels: Labels,
}

/// A struct whose fields on the wire are its `key`'s and its own side by side, as
/// `#[serde(flatten)]` writes them. Read through a struct of all of them: serde's own reading of a
/// flattened field buffers the whole object first, code the browser would load for the alert
/// feed alone.
macro_rules! keyed {
    (
        $(#[$meta:meta])*
        pub struct $name:ident { $($(#[$field_meta:meta])* pub $field:ident: $ty:ty,)* }
    ) => {
        $(#[$meta])*
        #[derive(Clone, Debug, PartialEq, Serialize)]
        pub struct $name {
            #[serde(flatten)]
            pub key: Key,
            $($(#[$field_meta])* pub $field: $ty,)*
        }

        impl<'de> Deserialize<'de> for $name {
            fn deserialize<D: Deserializer<'de>>(from: D) -> Result<Self, D::Error> {
                #[derive(Deserialize)]
                struct Flat {
                    rule: i64,
                    source: String,
                    #[serde(default)]
                    labels: Labels,
                    $($(#[$field_meta])* $field: $ty,)*
                }
                let Flat { rule, source, labels, $($field),* } = Flat::deserialize(from)?;
                Ok(Self { key: Key { rule, source, labels }, $($field),* })
            }
        }
    };
}

keyed! {
    /// One alert instance as `GET /api/alerts` and the pages show it.
    pub struct Instance {
        pub name: String,
        pub state: State,
        pub value: Option<f64>,
        pub threshold: f64,
        /// When the instance entered its state.
        pub since: DateTime<Utc>,
        pub severity: Severity,
        pub summary: String,
        /// The rule's own labels, which silences and channels may match.
        #[serde(default, skip_serializing_if = "Labels::is_empty")]
        pub rule_labels: Labels,
        /// Who acknowledged the instance's current trouble, if anyone did.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pub ack: Option<Ack>,
        /// Whether a silence covers it now.
        #[serde(default)]
        pub silenced: bool,
    }
}

impl Instance {
    /// Most urgent first: firing critical before firing warning, before pending, then by name.
    pub fn urgency(&self, other: &Self) -> Ordering {
        let rank = |i: &Self| match i.state {
            State::Firing => 0,
            State::NoData => 1,
            State::Pending => 2,
            State::Resolved => 3,
            State::Normal => 4,
        };
        rank(self)
            .cmp(&rank(other))
            .then(other.severity.cmp(&self.severity))
            .then_with(|| self.name.cmp(&other.name))
            .then_with(|| self.key.cmp(&other.key))
    }
}

keyed! {
    /// A change of an instance's state, as stored in room `alerts`.
    pub struct Transition {
        pub name: String,
        pub state: State,
        pub previous: State,
        pub value: Option<f64>,
        pub threshold: f64,
        pub severity: Severity,
        pub summary: String,
        pub since: DateTime<Utc>,
        /// When the state left began: for a resolve, when the trouble it ends began.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pub began: Option<DateTime<Utc>>,
        /// The rule's own labels, for routing notifications.
        #[serde(default, skip_serializing_if = "Labels::is_empty")]
        pub rule_labels: Labels,
        /// A silence covered the instance when it changed: stored and shown, sent to no one.
        #[serde(default)]
        pub silenced: bool,
    }
}

keyed! {
    /// An operator taking on an instance's current trouble; it lasts until the instance next
    /// changes state.
    pub struct Ack {
        /// The `since` of the state acknowledged.
        pub since: DateTime<Utc>,
        pub by: String,
        pub at: DateTime<Utc>,
        #[serde(default)]
        pub comment: String,
    }
}

/// What a silence covers: every field given must match.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Matchers {
    /// A rule name pattern.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rule: Option<Pattern>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<Pattern>,
    /// Labels an instance (or its rule) must carry with these values.
    #[serde(default, skip_serializing_if = "Labels::is_empty")]
    pub labels: Labels,
}

impl Matchers {
    /// Label values are kept as jsonb, and shown: the rules of samples' labels hold.
    fn check(&self) -> Result<(), InvalidField> {
        check_labels(&self.labels).map_err(|e| InvalidField::new("matchers.labels", e))
    }

    pub fn is_empty(&self) -> bool {
        self.rule.is_none() && self.source.is_none() && self.labels.is_empty()
    }

    pub fn matches(&self, rule: &str, source: &str, labels: &Labels, rule_labels: &Labels) -> bool {
        self.rule.as_ref().is_none_or(|p| p.matches(rule))
            && self.source.as_ref().is_none_or(|p| p.matches(source))
            && self
                .labels
                .iter()
                .all(|(k, v)| labels.get(k).or(rule_labels.get(k)) == Some(v))
    }
}

/// Notifications held back for the alerts a silence matches, from `starts` to `ends`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Silence {
    pub id: i64,
    pub matchers: Matchers,
    pub starts: DateTime<Utc>,
    pub ends: DateTime<Utc>,
    pub comment: String,
    pub author: String,
}

impl Silence {
    pub fn covers(&self, t: &Transition, at: DateTime<Utc>) -> bool {
        self.starts <= at
            && at < self.ends
            && self
                .matchers
                .matches(&t.name, &t.key.source, &t.key.labels, &t.rule_labels)
    }
}

/// A silence as the API takes it: `starts` defaults to now; `ends` or `duration` is required.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewSilence {
    pub matchers: Matchers,
    #[serde(default)]
    pub starts: Option<DateTime<Utc>>,
    #[serde(default)]
    pub ends: Option<DateTime<Utc>>,
    #[serde(default)]
    pub duration: Option<Span>,
    #[serde(default)]
    pub comment: String,
}

impl NewSilence {
    /// The silence's start and end, or the field that is wrong.
    pub fn period(
        &self,
        now: DateTime<Utc>,
    ) -> Result<(DateTime<Utc>, DateTime<Utc>), InvalidField> {
        if self.matchers.is_empty() {
            return Err(InvalidField::new(
                "matchers",
                "must name a rule, a source or labels: a silence of everything hides every alert",
            ));
        }
        self.matchers.check()?;
        check_text("comment", &self.comment)?;
        let starts = self.starts.unwrap_or(now);
        let ends = match (self.ends, self.duration) {
            (Some(ends), None) => ends,
            (None, Some(span)) => starts + span.chrono(),
            _ => return Err(InvalidField::new("ends", "give either ends or duration")),
        };
        if ends <= starts.max(now) {
            return Err(InvalidField::new(
                "ends",
                "must be after starts and in the future",
            ));
        }
        Ok((starts, ends))
    }
}

/// What an event in room `alerts` carries besides its `text`.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum News {
    Transition(Transition),
    Ack(Ack),
    Silence(Silence),
    /// A silence ended before its time.
    Unsilence {
        id: i64,
        by: String,
    },
}

/// The data of an event in room `alerts`.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct AlertEvent {
    /// One line for people, and for pages that know no more than `text`.
    pub text: String,
    #[serde(flatten)]
    pub news: News,
}

/// Read as an object, its `type` taken out and the rest read as that news. The keys come in any
/// order (the server makes the data with `serde_json::to_value`, which sorts them), so `type`
/// cannot be read first as a frame's is; serde's own reading of a flattened, internally tagged
/// enum would bring its buffering code (`Content`) into the browser's first module.
impl<'de> Deserialize<'de> for AlertEvent {
    fn deserialize<D: Deserializer<'de>>(from: D) -> Result<Self, D::Error> {
        use serde::de::Error;
        let mut fields = Map::deserialize(from)?;
        let mut take = |name: &'static str| match fields.remove(name) {
            Some(Value::String(text)) => Ok(text),
            Some(_) => Err(D::Error::custom(format!("`{name}` must be a string"))),
            None => Err(D::Error::missing_field(name)),
        };
        let (text, kind) = (take("text")?, take("type")?);
        let rest = Value::Object(fields);
        let news = match kind.as_str() {
            "transition" => Transition::deserialize(rest).map(News::Transition),
            "ack" => Ack::deserialize(rest).map(News::Ack),
            "silence" => Silence::deserialize(rest).map(News::Silence),
            "unsilence" => {
                #[derive(Deserialize)]
                struct Unsilence {
                    id: i64,
                    by: String,
                }
                Unsilence::deserialize(rest).map(|u| News::Unsilence { id: u.id, by: u.by })
            }
            _ => {
                const KINDS: &[&str] = &["transition", "ack", "silence", "unsilence"];
                return Err(D::Error::unknown_variant(&kind, KINDS));
            }
        };
        Ok(Self {
            text,
            news: news.map_err(D::Error::custom)?,
        })
    }
}

/// Where notifications go.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "lowercase")]
pub enum Target {
    /// Prometheus Alertmanager's webhook JSON (version 4), for its many receivers and bridges.
    Webhook { url: String },
    /// A Slack-compatible incoming webhook: `{"text", "blocks"}`.
    Slack { url: String },
    /// Mail to these addresses, through the server's SMTP relay.
    Email { to: Vec<String> },
}

/// Most addresses one email channel sends to.
pub const MAX_RECIPIENTS: usize = 16;

impl Target {
    fn check(&self) -> Result<(), InvalidField> {
        match self {
            Self::Webhook { url } | Self::Slack { url } => {
                let web = url.starts_with("http://") || url.starts_with("https://");
                if !web || url.len() > 2048 || url.chars().any(char::is_control) {
                    return Err(InvalidField::new(
                        "url",
                        "must be an http:// or https:// address of at most 2048 bytes",
                    ));
                }
            }
            Self::Email { to } => {
                let plausible = |a: &String| {
                    a.len() <= 254
                        && a.split_once('@').is_some_and(|(local, domain)| {
                            !local.is_empty() && (domain.contains('.') || domain == "localhost")
                        })
                        && !a.chars().any(|c| c.is_whitespace() || c.is_control())
                };
                if to.is_empty() || to.len() > MAX_RECIPIENTS || !to.iter().all(plausible) {
                    return Err(InvalidField::new(
                        "to",
                        format!("must be 1–{MAX_RECIPIENTS} email addresses"),
                    ));
                }
            }
        }
        Ok(())
    }
}

/// A notification channel ("contact point") and which alerts it takes.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Channel {
    pub name: String,
    #[serde(flatten)]
    pub target: Target,
    /// Severities sent here; all when empty.
    #[serde(default)]
    pub severities: Vec<Severity>,
    /// Only alerts these match; all when empty.
    #[serde(default)]
    pub matchers: Matchers,
    /// Sent again while an alert keeps firing unacknowledged; never when absent.
    #[serde(default)]
    pub repeat: Option<Span>,
    #[serde(default = "yes")]
    pub send_resolved: bool,
}

fn yes() -> bool {
    true
}

impl Channel {
    pub fn read(value: &Value) -> Result<Self, InvalidField> {
        let channel: Self = serde_json::from_value(value.clone())
            .map_err(|e| InvalidField::new("channel", e.to_string()))?;
        check_name("name", &channel.name)?;
        channel.target.check()?;
        channel.matchers.check()?;
        if channel.repeat.is_some_and(|repeat| repeat < Span::secs(60)) {
            return Err(InvalidField::new("repeat", "must be at least 1m"));
        }
        Ok(channel)
    }

    /// Whether `t` goes to this channel.
    pub fn takes(&self, t: &Transition) -> bool {
        (self.severities.is_empty() || self.severities.contains(&t.severity))
            && self
                .matchers
                .matches(&t.name, &t.key.source, &t.key.labels, &t.rule_labels)
            && (t.state != State::Resolved || self.send_resolved)
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct StoredChannel {
    pub id: i64,
    #[serde(flatten)]
    pub channel: Channel,
}

/// One attempt to send a notification, as a channel's delivery log shows it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Delivery {
    pub id: i64,
    pub created: DateTime<Utc>,
    /// `queued`, `sent` or `failed`.
    pub status: String,
    pub attempts: i32,
    pub last_error: Option<String>,
    pub summary: String,
}

impl Instance {
    /// Whether operators should see it now: in trouble, or about to be.
    pub fn is_open(&self) -> bool {
        matches!(self.state, State::Firing | State::NoData | State::Pending)
    }
}

/// Folds one piece of news from room `alerts` into a list of open instances: their states,
/// values and acknowledgements as `GET /api/alerts` has them. Silences show from the instance's
/// next transition on.
pub fn apply(open: &mut Vec<Instance>, news: &News) {
    match news {
        News::Transition(t) => {
            open.retain(|i| i.key != t.key);
            let instance = Instance {
                key: t.key.clone(),
                name: t.name.clone(),
                state: t.state,
                value: t.value,
                threshold: t.threshold,
                since: t.since,
                severity: t.severity,
                summary: t.summary.clone(),
                rule_labels: t.rule_labels.clone(),
                ack: None,
                silenced: t.silenced,
            };
            if instance.is_open() {
                open.push(instance);
                open.sort_by(Instance::urgency);
            }
        }
        News::Ack(ack) => {
            for instance in open
                .iter_mut()
                .filter(|i| i.key == ack.key && i.since == ack.since)
            {
                instance.ack = Some(ack.clone());
            }
        }
        News::Silence(_) | News::Unsilence { .. } => {}
    }
}

/// Where a rule, as written, would have fired over the last day: for the rule editor, before the
/// rule is saved.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Backtest {
    pub from: DateTime<Utc>,
    pub to: DateTime<Utc>,
    pub threshold: f64,
    /// The first few matching sources that have the series.
    pub sources: Vec<BacktestSource>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct BacktestSource {
    pub source: String,
    /// The series in buckets, each with the value the rule's reducer would see.
    pub points: Vec<(DateTime<Utc>, f64)>,
    /// From each `firing` to the transition that ended it.
    pub firing: Vec<(DateTime<Utc>, DateTime<Utc>)>,
}

#[cfg(feature = "ssr")]
type Answer<T> = futures::future::BoxFuture<'static, Result<T, crate::error::AppError>>;

/// What the alert pages read on the server; the server provides it as context.
#[cfg(feature = "ssr")]
pub trait AlertBook: Send + Sync + 'static {
    /// Every instance the evaluator follows, most urgent first.
    fn instances(&self) -> Answer<Vec<Instance>>;
    fn rules(&self) -> Answer<Vec<StoredRule>>;
    fn silences(&self) -> Answer<Vec<Silence>>;
    fn channels(&self) -> Answer<Vec<StoredChannel>>;
    /// Runs `rule` over the last day of the first few sources it matches that `visible` may read.
    fn backtest(&self, rule: Rule, visible: crate::auth::Identity) -> Answer<Backtest>;
}

#[cfg(feature = "ssr")]
#[derive(Clone)]
pub struct SharedAlertBook(pub std::sync::Arc<dyn AlertBook>);

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn news_keeps_a_list_of_open_instances_as_the_server_has_it() {
        let key = Key {
            rule: 1,
            source: "web-1".into(),
            labels: Labels::new(),
        };
        let transition = |state, since| {
            News::Transition(Transition {
                key: key.clone(),
                name: "hot".into(),
                state,
                previous: State::Normal,
                value: Some(95.0),
                threshold: 90.0,
                severity: Severity::Critical,
                summary: "web-1 hot".into(),
                since,
                began: None,
                rule_labels: Labels::new(),
                silenced: false,
            })
        };
        let ack = |since| {
            News::Ack(Ack {
                key: key.clone(),
                since,
                by: "ann".into(),
                at: at(9),
                comment: String::new(),
            })
        };
        let mut open = Vec::new();
        apply(&mut open, &transition(State::Pending, at(1)));
        apply(&mut open, &transition(State::Firing, at(2)));
        assert_eq!(open.len(), 1);
        assert_eq!(open[0].state, State::Firing);
        // An acknowledgement of an earlier state is stale.
        apply(&mut open, &ack(at(1)));
        assert!(open[0].ack.is_none());
        apply(&mut open, &ack(at(2)));
        assert_eq!(open[0].ack.as_ref().unwrap().by, "ann");
        apply(&mut open, &transition(State::Resolved, at(3)));
        assert!(open.is_empty());
    }

    fn at(secs: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(secs, 0).unwrap()
    }

    #[test]
    fn each_reducer_folds_its_window() {
        let window = [(at(0), 4.0), (at(10), 1.0), (at(20), 7.0)];
        let fold = |r: Reducer| r.reduce(window.iter().copied());
        assert_eq!(fold(Reducer::Last), Some(7.0));
        assert_eq!(fold(Reducer::Avg), Some(4.0));
        assert_eq!(fold(Reducer::Min), Some(1.0));
        assert_eq!(fold(Reducer::Max), Some(7.0));
        // 4 → 1 is a reset (+1), 1 → 7 is +6: 7 over 20 s.
        assert_eq!(fold(Reducer::Rate), Some(0.35));
        for reducer in [
            Reducer::Last,
            Reducer::Avg,
            Reducer::Min,
            Reducer::Max,
            Reducer::Rate,
        ] {
            assert_eq!(reducer.reduce([].into_iter()), None, "{reducer:?}");
        }
        assert_eq!(Reducer::Rate.reduce([(at(5), 3.0)].into_iter()), None);
    }

    #[test]
    fn each_operator_compares_with_the_threshold() {
        for (op, below, equal, above) in [
            (Op::Above, false, false, true),
            (Op::AtLeast, false, true, true),
            (Op::Below, true, false, false),
            (Op::AtMost, true, true, false),
        ] {
            assert_eq!(
                [op.holds(1.0, 2.0), op.holds(2.0, 2.0), op.holds(3.0, 2.0)],
                [below, equal, above],
                "{}",
                op.as_str()
            );
        }
    }

    #[test]
    fn a_rule_reads_with_defaults_and_writes_back_the_same() {
        let rule = Rule::read(&json!({
            "name": "cpu hot", "source": "host:*", "series": "cpu.total", "reducer": "avg",
            "window": "1m", "op": ">", "threshold": 90, "for": "30s", "severity": "critical"
        }))
        .unwrap();
        assert_eq!(rule.pending_for, Span::secs(30));
        assert_eq!(rule.keep_firing_for, Span::secs(0));
        assert_eq!(rule.no_data, NoData::default());
        let written = serde_json::to_value(&rule).unwrap();
        assert_eq!(written["series"], "cpu.total");
        assert_eq!(written["for"], "30s");
        assert_eq!(Rule::read(&written).unwrap(), rule);

        let labelled = Rule::read(&json!({
            "name": "disk", "source": "web-1", "series": "fs.used_pct{mount=\"/\"}",
            "op": ">=", "threshold": 95
        }))
        .unwrap();
        assert_eq!(labelled.series.labels["mount"], "/");
        assert_eq!(labelled.window, Span::secs(60));
        assert_eq!(labelled.reducer, Reducer::Last);
    }

    #[test]
    fn a_bad_rule_is_refused_naming_its_field() {
        let good = json!({"name": "n", "source": "s", "series": "x", "op": ">", "threshold": 1});
        for (field, bad) in [
            ("name", json!("")),
            ("source", json!("no spaces")),
            ("series", json!("x{")),
            ("reducer", json!("median")),
            ("window", json!("0s")),
            ("window", json!("2d")),
            ("op", json!("=>")),
            ("threshold", json!("high")),
            ("for", json!("soon")),
            ("severity", json!("dire")),
            ("labels", json!({"bad key": "v"})),
            ("no_data", json!({"means": "panic"})),
            ("colour", json!("red")),
        ] {
            let mut rule = good.clone();
            rule[field] = bad.clone();
            let error = Rule::read(&rule).expect_err(&format!("{field}: {bad}"));
            assert_eq!(error.field, field, "{error}");
        }
        for missing in ["name", "source", "series", "op", "threshold"] {
            let mut rule = good.clone();
            rule.as_object_mut().unwrap().remove(missing);
            assert_eq!(Rule::read(&rule).unwrap_err().field, missing);
        }
    }

    #[test]
    fn a_summary_names_the_source_value_and_labels() {
        let mut rule = Rule::read(&json!({
            "name": "disk", "source": "*", "series": "fs.used_pct", "op": ">", "threshold": 90,
            "summary": "{{source}} {{labels.mount}} at {{value}}% (over {{threshold}}%)"
        }))
        .unwrap();
        let labels = Labels::from([("mount".into(), "/var".into())]);
        assert_eq!(
            rule.summarise("web-1", &labels, Some(93.456)),
            "web-1 /var at 93.46% (over 90%)"
        );
        rule.summary = "{{rule}} {{value}}".into();
        assert_eq!(rule.summarise("web-1", &labels, None), "disk no data");
    }

    #[test]
    fn a_rule_watches_samples_with_the_labels_it_names_from_matching_sources() {
        let rule = Rule::read(&json!({
            "name": "n", "source": "host:*", "series": "fs.used_pct{mount=\"/\"}",
            "op": ">", "threshold": 1
        }))
        .unwrap();
        let root = Labels::from([("mount".into(), "/".into()), ("dev".into(), "sda".into())]);
        assert!(rule.watches_labels(&root));
        assert!(!rule.watches_labels(&Labels::new()));
        assert!(rule.source.matches("host:web-1"));
        assert!(!rule.source.matches("web-1"));
    }

    #[test]
    fn a_channel_is_refused_naming_what_it_lacks() {
        let read = |v: Value| Channel::read(&v).map(|c| c.target);
        assert_eq!(
            read(json!({"name": "ops", "kind": "email", "to": ["ops@example.com"]})),
            Ok(Target::Email {
                to: vec!["ops@example.com".into()]
            })
        );
        for (bad, field) in [
            (json!({"name": "ops", "kind": "email", "to": []}), "to"),
            (
                json!({"name": "ops", "kind": "email", "to": ["@example.com"]}),
                "to",
            ),
            (
                json!({"name": "ops", "kind": "email", "to": ["ops at example.com"]}),
                "to",
            ),
            (
                json!({"name": "ops", "kind": "webhook", "url": "ftp://x"}),
                "url",
            ),
            (
                json!({"name": "", "kind": "slack", "url": "https://x"}),
                "name",
            ),
            (json!({"name": "ops", "kind": "pager"}), "channel"),
            (
                json!({"name": "ops", "kind": "webhook", "url": "http://x/\0"}),
                "url",
            ),
            (
                json!({"name": "ops", "kind": "slack", "url": "https://x",
                    "matchers": {"labels": {"a": "\0"}}}),
                "matchers.labels",
            ),
            (
                json!({"name": "ops", "kind": "slack", "url": "https://x", "repeat": "10s"}),
                "repeat",
            ),
        ] {
            assert_eq!(Channel::read(&bad).unwrap_err().field, field, "{bad}");
        }
    }

    #[test]
    fn a_silence_needs_matchers_and_an_end_after_now() {
        let now = at(1000);
        let silence = |v: Value| serde_json::from_value::<NewSilence>(v).unwrap().period(now);
        assert_eq!(
            silence(json!({"matchers": {"source": "web-1"}, "duration": "1h"})),
            Ok((now, at(4600)))
        );
        assert_eq!(
            silence(json!({"matchers": {"labels": {"team": "a\0"}}, "duration": "1h"}))
                .unwrap_err()
                .field,
            "matchers.labels"
        );
        assert_eq!(
            silence(json!({"matchers": {}, "duration": "1h"}))
                .unwrap_err()
                .field,
            "matchers"
        );
        assert_eq!(
            silence(json!({"matchers": {"rule": "x"}, "ends": at(999)}))
                .unwrap_err()
                .field,
            "ends"
        );
    }

    /// Host `web-1`'s disk filling up: the rule firing, then someone taking it on.
    pub(crate) fn disk_full() -> (Transition, Ack) {
        let key = Key {
            rule: 4,
            source: "host:web-1".into(),
            labels: [("disk".to_owned(), "/".to_owned())].into(),
        };
        let at = |s: i64| DateTime::from_timestamp(1_790_000_000 + s, 0).unwrap();
        let transition = Transition {
            key: key.clone(),
            name: "disk full".into(),
            state: State::Firing,
            previous: State::Pending,
            value: Some(97.5),
            threshold: 95.0,
            severity: Severity::Critical,
            summary: "disk at 97.5 %".into(),
            since: at(60),
            began: Some(at(0)),
            rule_labels: [("team".to_owned(), "ops".to_owned())].into(),
            silenced: false,
        };
        let ack = Ack {
            key,
            since: at(60),
            by: "alice".into(),
            at: at(90),
            comment: "on it".into(),
        };
        (transition, ack)
    }

    #[test]
    fn alert_news_reads_back_whatever_order_its_fields_are_stored_in() {
        let (transition, ack) = disk_full();
        for news in [News::Transition(transition), News::Ack(ack)] {
            let event = AlertEvent {
                text: "disk full".into(),
                news,
            };
            let value = serde_json::to_value(&event).unwrap();
            assert_eq!(
                value["source"], "host:web-1",
                "the key's fields lie flat: {value}"
            );
            // Keys sorted (as `Value` holds them) and as written (`type` after `text`) alike.
            assert_eq!(
                serde_json::from_value::<AlertEvent>(value.clone()).unwrap(),
                event
            );
            let written = serde_json::to_string(&event).unwrap();
            assert_eq!(serde_json::from_str::<AlertEvent>(&written).unwrap(), event);
        }
    }

    #[test]
    fn an_alert_event_without_text_or_with_an_unknown_type_is_refused_by_name() {
        for (data, expected) in [
            (
                json!({"type": "unsilence", "id": 1, "by": "a"}),
                "missing field `text`",
            ),
            (
                json!({"text": "x", "type": "shout"}),
                "unknown variant `shout`",
            ),
            (
                json!({"text": "x", "id": 1, "by": "a"}),
                "missing field `type`",
            ),
            (json!({"text": "x", "type": 3}), "`type` must be a string"),
            (
                json!({"text": "x", "type": "ack", "rule": 1}),
                "missing field `source`",
            ),
        ] {
            let err = serde_json::from_value::<AlertEvent>(data.clone()).unwrap_err();
            assert!(err.to_string().contains(expected), "{data}: {err}");
        }
    }

    #[test]
    fn an_instance_reads_its_key_from_beside_its_fields() {
        let instance: Instance = serde_json::from_value(json!({
            "summary": "cpu at 93", "severity": "warning", "since": "2026-11-28T01:00:00Z",
            "threshold": 90.0, "value": 93.0, "state": "firing", "name": "cpu high",
            "source": "host:web-2", "rule": 7
        }))
        .unwrap();
        assert_eq!(
            instance.key,
            Key {
                rule: 7,
                source: "host:web-2".into(),
                labels: Labels::new()
            }
        );
        assert_eq!((&instance.ack, instance.silenced), (&None, false));
        let back = serde_json::to_value(&instance).unwrap();
        assert_eq!(serde_json::from_value::<Instance>(back).unwrap(), instance);
    }

    #[test]
    fn alert_events_carry_text_and_a_type() {
        let event = AlertEvent {
            text: "alice acknowledged".into(),
            news: News::Unsilence {
                id: 3,
                by: "alice".into(),
            },
        };
        let value = serde_json::to_value(&event).unwrap();
        assert_eq!(
            value,
            json!({"text": "alice acknowledged", "type": "unsilence", "id": 3, "by": "alice"})
        );
        assert_eq!(serde_json::from_value::<AlertEvent>(value).unwrap(), event);
    }
}
