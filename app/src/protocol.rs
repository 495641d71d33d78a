//! Wire types shared by the server and the browser client. `docs/protocol.md` describes the same
//! frames for people; change both together.

use std::fmt;

use chrono::{DateTime, Utc};
use serde::{
    Deserialize, Deserializer, Serialize,
    de::{self, IgnoredAny, MapAccess, Visitor, value::MapAccessDeserializer},
};
use serde_json::Value;

use crate::metrics::{self, Point};
pub use crate::room::{InvalidRoom, MAX_ROOM_LEN, RoomName};

/// Largest accepted `data` object of one event, serialised, in bytes.
pub const MAX_EVENT_DATA_BYTES: usize = 16 * 1024;
/// Largest request body publishing one event over HTTP: its data, with as much again for the
/// envelope and whatever whitespace the sender's JSON has.
pub const MAX_EVENT_BODY_BYTES: usize = 2 * MAX_EVENT_DATA_BYTES;

/// One life of a room's log. Seqs count within an epoch: if the log starts over (its database was
/// reset, or restored from an older backup), the room gets a new epoch, and a client holding
/// seqs of the old one starts over instead of waiting for seqs that will never come.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Epoch(pub String);

/// The closed set of event kinds.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum EventKind {
    /// `data`: one sample `{"series", "value", "ts"?, "labels"?}` or a batch
    /// `{"samples": [...]}` of them (see [`crate::metrics`]).
    Metric,
    /// `data`: a [`Notice`]: `{"text": non-empty string, "title"?, "level"?, "tags"?, ...}`
    Notice,
    /// `data`: `{"text": non-empty string, ...}`
    Alert,
}

impl EventKind {
    pub const ALL: [EventKind; 3] = [Self::Metric, Self::Notice, Self::Alert];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Metric => "metric",
            Self::Notice => "notice",
            Self::Alert => "alert",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|k| k.as_str() == s)
    }
}

/// One stored event. `seq` is assigned by the store, per room, from 1 without gaps.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Event {
    pub room: RoomName,
    pub seq: i64,
    #[serde(deserialize_with = "crate::rfc3339::read")]
    pub ts: DateTime<Utc>,
    pub kind: EventKind,
    pub data: Value,
}

/// What a publisher sends: the store adds room, seq and ts.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewEvent {
    pub kind: EventKind,
    pub data: Value,
}

#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("invalid {kind} event: {reason}")]
pub struct InvalidEvent {
    pub kind: &'static str,
    pub reason: String,
}

/// An event's data as its kind reads it: parsed once, when the event is validated.
#[derive(Clone, Debug, PartialEq)]
pub enum Payload {
    /// The samples a `metric` event carries.
    Samples(Vec<Point>),
    /// The text of a `notice` or an `alert`.
    Text(String),
}

impl NewEvent {
    /// Checks `data` against the rules of its kind (see [`EventKind`]) and returns what it holds.
    pub fn validate(&self) -> Result<Payload, InvalidEvent> {
        let fail = |reason: &str| {
            Err(InvalidEvent {
                kind: self.kind.as_str(),
                reason: reason.to_owned(),
            })
        };
        let Some(data) = self.data.as_object() else {
            return fail("data must be a JSON object");
        };
        if serde_json::to_vec(&self.data).map_or(true, |v| v.len() > MAX_EVENT_DATA_BYTES) {
            return fail("data must serialise to at most 16384 bytes");
        }
        match self.kind {
            EventKind::Metric => {
                let now = Utc::now();
                let points = match metrics::read_points(&self.data, now) {
                    Ok(points) if !points.is_empty() => points,
                    Ok(_) => return fail("data.samples must not be empty"),
                    Err(reason) => return fail(&reason),
                };
                for point in &points {
                    if let Err(reason) = metrics::check_point(point, now) {
                        return fail(&reason);
                    }
                }
                Ok(Payload::Samples(points))
            }
            EventKind::Notice => {
                let text = Notice::read(data).map_err(|reason| InvalidEvent {
                    kind: self.kind.as_str(),
                    reason,
                })?;
                Ok(Payload::Text(text))
            }
            EventKind::Alert => {
                match data
                    .get("text")
                    .and_then(Value::as_str)
                    .filter(|s| !s.trim().is_empty())
                {
                    Some(text) => Ok(Payload::Text(text.to_owned())),
                    None => fail("data.text must be a non-empty string"),
                }
            }
        }
    }
}

/// How much a notice matters.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Level {
    #[default]
    Info,
    Warning,
    Error,
}

impl Level {
    pub const ALL: [Level; 3] = [Self::Info, Self::Warning, Self::Error];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Info => "info",
            Self::Warning => "warning",
            Self::Error => "error",
        }
    }
}

/// Longest notice title, and most tags a notice may carry and the longest of them, in bytes.
pub const MAX_TITLE_LEN: usize = 200;
pub const MAX_TAGS: usize = 16;
pub const MAX_TAG_LEN: usize = 64;

/// The data of a `notice` event, as pages read it: a deploy, an incident note, a maintenance
/// window. Fields besides these are kept as sent.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Notice {
    pub text: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub title: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub level: Option<Level>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tags: Vec<String>,
}

impl Notice {
    /// Checks a notice's fields, returning its text.
    fn read(data: &serde_json::Map<String, Value>) -> Result<String, String> {
        let text = data
            .get("text")
            .and_then(Value::as_str)
            .filter(|s| !s.trim().is_empty())
            .ok_or("data.text must be a non-empty string")?;
        match data.get("title") {
            None | Some(Value::Null) => {}
            Some(Value::String(title))
                if !title.trim().is_empty() && title.len() <= MAX_TITLE_LEN => {}
            Some(_) => {
                return Err(format!(
                    "data.title must be a non-empty string of at most {MAX_TITLE_LEN} bytes"
                ));
            }
        }
        match data.get("level") {
            None | Some(Value::Null) => {}
            Some(Value::String(level)) if Level::ALL.iter().any(|l| l.as_str() == level) => {}
            Some(_) => return Err("data.level must be info, warning or error".into()),
        }
        match data.get("tags") {
            None | Some(Value::Null) => {}
            Some(Value::Array(tags))
                if tags.len() <= MAX_TAGS
                    && tags.iter().all(|tag| {
                        tag.as_str()
                            .is_some_and(|tag| !tag.trim().is_empty() && tag.len() <= MAX_TAG_LEN)
                    }) => {}
            Some(_) => {
                return Err(format!(
                    "data.tags must be a list of at most {MAX_TAGS} non-empty strings of at most {MAX_TAG_LEN} bytes"
                ));
            }
        }
        Ok(text.to_owned())
    }

    /// The notice an event holds, when it is one, field by field: a notice stored before its
    /// fields were checked keeps what of it reads.
    pub fn of(event: &Event) -> Option<Self> {
        if event.kind != EventKind::Notice {
            return None;
        }
        let data = &event.data;
        let text = |name: &str| data.get(name).and_then(Value::as_str).map(str::to_owned);
        Some(Self {
            text: text("text").unwrap_or_default(),
            title: text("title"),
            level: data
                .get("level")
                .and_then(|level| serde_json::from_value(level.clone()).ok()),
            tags: data
                .get("tags")
                .and_then(Value::as_array)
                .map(|tags| {
                    tags.iter()
                        .filter_map(Value::as_str)
                        .map(str::to_owned)
                        .collect()
                })
                .unwrap_or_default(),
        })
    }
}

/// Frames a client sends over the WebSocket.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ClientFrame {
    /// Join a room; with `since`, first receive every stored event with `seq > since`. With
    /// `epoch` too (the one `since` counts in), a room whose log started over since is sent
    /// `reset` and then its new log from the start.
    Subscribe {
        room: RoomName,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        since: Option<i64>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        epoch: Option<Epoch>,
    },
    Unsubscribe {
        room: RoomName,
    },
    /// Store an event and fan it out; answered with `published` (or `error`) carrying `ref`.
    Publish {
        room: RoomName,
        kind: EventKind,
        data: Value,
        #[serde(rename = "ref", default, skip_serializing_if = "Option::is_none")]
        reference: Option<Value>,
    },
    Ping,
    Pong,
}

/// Frames the server sends over the WebSocket. `type` comes first in each, so a frame is read in
/// one pass (see its `Deserialize`).
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ServerFrame {
    /// First frame on every connection.
    Hello {
        /// The server pings this often; silence for two intervals means the link is dead.
        heartbeat_ms: u64,
    },
    Event(Event),
    /// The room's newest `seq` when the subscription (and any replay) took effect, and the
    /// epoch it counts in.
    Subscribed {
        room: RoomName,
        head: i64,
        epoch: Epoch,
    },
    /// The room's log is `epoch` now, counted from seq 1: drop what is held of the room; its
    /// events follow from the start.
    Reset {
        room: RoomName,
        epoch: Epoch,
    },
    Unsubscribed {
        room: RoomName,
    },
    /// A `publish` was committed as `seq`.
    Published {
        room: RoomName,
        seq: i64,
        #[serde(rename = "ref", default, skip_serializing_if = "Option::is_none")]
        reference: Option<Value>,
    },
    /// How many connections watch the room; sent at most once a second per room while it changes.
    Presence {
        room: RoomName,
        watchers: usize,
    },
    Ping,
    Pong,
    Error {
        code: ErrorCode,
        message: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        room: Option<RoomName>,
        /// The newest seq of `room` this connection was sent, when it must resubscribe from there.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        since: Option<i64>,
        #[serde(rename = "ref", default, skip_serializing_if = "Option::is_none")]
        reference: Option<Value>,
    },
}

/// A server frame's `type`.
#[derive(Deserialize)]
#[serde(rename_all = "snake_case")]
enum FrameType {
    Hello,
    Event,
    Subscribed,
    Reset,
    Unsubscribed,
    Published,
    Presence,
    Ping,
    Pong,
    Error,
}

/// The one field a frame may start with.
#[derive(Deserialize)]
#[serde(field_identifier, rename_all = "lowercase")]
enum TypeField {
    Type,
}

/// Reads a frame's fields after its `type`, straight into the variant. Serde's own reading of an
/// internally tagged enum, which must allow the tag anywhere, buffers every frame whole and reads
/// it a second time; in the browser that is twice the work per pushed event, and the buffering's
/// code in the first module.
impl<'de> Deserialize<'de> for ServerFrame {
    fn deserialize<D: Deserializer<'de>>(from: D) -> Result<Self, D::Error> {
        from.deserialize_map(TypeFirst)
    }
}

struct TypeFirst;

/// One variant's fields, read by a struct of the same fields.
macro_rules! fields {
    ($map:expr, $variant:ident { $($(#[$attr:meta])* $field:ident: $ty:ty),* $(,)? }) => {{
        #[derive(Deserialize)]
        struct Fields {
            $($(#[$attr])* $field: $ty),*
        }
        let Fields { $($field),* } = Fields::deserialize(MapAccessDeserializer::new($map))?;
        ServerFrame::$variant { $($field),* }
    }};
}

impl<'de> Visitor<'de> for TypeFirst {
    type Value = ServerFrame;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a frame: an object whose first field is `type`")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<ServerFrame, A::Error> {
        let Some(TypeField::Type) = map.next_key()? else {
            return Err(de::Error::missing_field("type"));
        };
        Ok(match map.next_value()? {
            FrameType::Hello => fields!(map, Hello { heartbeat_ms: u64 }),
            FrameType::Event => {
                ServerFrame::Event(Event::deserialize(MapAccessDeserializer::new(map))?)
            }
            FrameType::Subscribed => fields!(
                map,
                Subscribed {
                    room: RoomName,
                    head: i64,
                    epoch: Epoch
                }
            ),
            FrameType::Reset => fields!(
                map,
                Reset {
                    room: RoomName,
                    epoch: Epoch
                }
            ),
            FrameType::Unsubscribed => fields!(map, Unsubscribed { room: RoomName }),
            FrameType::Published => fields!(map, Published {
                room: RoomName,
                seq: i64,
                #[serde(rename = "ref", default)]
                reference: Option<Value>,
            }),
            FrameType::Presence => fields!(
                map,
                Presence {
                    room: RoomName,
                    watchers: usize
                }
            ),
            FrameType::Ping => {
                IgnoredAny::deserialize(MapAccessDeserializer::new(map))?;
                ServerFrame::Ping
            }
            FrameType::Pong => {
                IgnoredAny::deserialize(MapAccessDeserializer::new(map))?;
                ServerFrame::Pong
            }
            FrameType::Error => fields!(map, Error {
                code: ErrorCode,
                message: String,
                #[serde(default)]
                room: Option<RoomName>,
                #[serde(default)]
                since: Option<i64>,
                #[serde(rename = "ref", default)]
                reference: Option<Value>,
            }),
        })
    }
}

/// Machine-readable reasons in `error` frames and HTTP error bodies.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorCode {
    /// The frame or body was not valid JSON of a known shape.
    BadFrame,
    InvalidRoom,
    InvalidEvent,
    /// A metric sample broke a rule; the message names the first bad one by index.
    InvalidSample,
    /// A metrics source already has as many series as allowed; the message names the series
    /// that would have been one more. Samples of its existing series are still taken.
    TooManySeries,
    /// The client fell behind and must resubscribe with the `since` the frame names.
    Lagged,
    /// Publishing faster than the connection's allowance; wait and retry.
    RateLimited,
    /// The connection already watches as many rooms as allowed.
    TooManyRooms,
    /// The server could not complete the request; retrying later may succeed.
    Unavailable,
    /// No identity came with the request: log in, or send an API token.
    Unauthenticated,
    /// The identity may not do this (its role, rooms or token scopes do not allow it).
    Forbidden,
    /// No such thing (an alert rule, silence or channel by that id).
    NotFound,
    /// Someone else changed it since the version the request names: read it again.
    Conflict,
    /// Retention removed events the subscription asked for: `since` names the newest seq
    /// removed, and what is kept follows.
    HistoryTruncated,
}

/// The recent past of a room, as the page renders it before the socket is open.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RoomSnapshot {
    pub room: RoomName,
    /// Newest `seq` in the room (0 when empty); the client resumes from here.
    pub head: i64,
    /// The epoch `head` counts in; none while the room has no log.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub epoch: Option<Epoch>,
    /// The newest events, oldest first.
    pub events: Vec<Event>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn frames_use_the_documented_json_shapes() {
        let sub: ClientFrame =
            serde_json::from_str(r#"{"type":"subscribe","room":"demo","since":4}"#).unwrap();
        assert_eq!(
            sub,
            ClientFrame::Subscribe {
                room: RoomName::parse("demo").unwrap(),
                since: Some(4),
                epoch: None,
            }
        );
        let resume: ClientFrame = serde_json::from_str(
            r#"{"type":"subscribe","room":"demo","since":4,"epoch":"9f2c41d07ab35e68"}"#,
        )
        .unwrap();
        assert!(
            matches!(resume, ClientFrame::Subscribe { epoch: Some(Epoch(e)), .. } if e == "9f2c41d07ab35e68")
        );
        let reset = ServerFrame::Reset {
            room: RoomName::parse("demo").unwrap(),
            epoch: Epoch("9f2c41d07ab35e68".into()),
        };
        assert_eq!(
            serde_json::to_value(&reset).unwrap(),
            json!({"type":"reset","room":"demo","epoch":"9f2c41d07ab35e68"})
        );
        let event = ServerFrame::Event(Event {
            room: RoomName::parse("demo").unwrap(),
            seq: 7,
            ts: DateTime::parse_from_rfc3339("2026-01-02T03:04:05Z")
                .unwrap()
                .into(),
            kind: EventKind::Notice,
            data: json!({"text": "hi"}),
        });
        assert_eq!(
            serde_json::to_value(&event).unwrap(),
            json!({"type":"event","room":"demo","seq":7,"ts":"2026-01-02T03:04:05Z",
                   "kind":"notice","data":{"text":"hi"}})
        );
    }

    #[test]
    fn every_server_frame_reads_back_as_written() {
        let room = || RoomName::parse("demo").unwrap();
        let epoch = || Epoch("9f2c41d07ab35e68".into());
        let frames = [
            ServerFrame::Hello {
                heartbeat_ms: 15_000,
            },
            ServerFrame::Event(Event {
                room: room(),
                seq: 7,
                ts: DateTime::parse_from_rfc3339("2026-01-02T03:04:05.123Z")
                    .unwrap()
                    .into(),
                kind: EventKind::Metric,
                data: json!({"series": "cpu", "value": 0.5, "type": "not the frame's"}),
            }),
            ServerFrame::Subscribed {
                room: room(),
                head: 41,
                epoch: epoch(),
            },
            ServerFrame::Reset {
                room: room(),
                epoch: epoch(),
            },
            ServerFrame::Unsubscribed { room: room() },
            ServerFrame::Published {
                room: room(),
                seq: 3,
                reference: Some(json!({"n": [1, 2]})),
            },
            ServerFrame::Published {
                room: room(),
                seq: 4,
                reference: None,
            },
            ServerFrame::Presence {
                room: room(),
                watchers: 12,
            },
            ServerFrame::Ping,
            ServerFrame::Pong,
            ServerFrame::Error {
                code: ErrorCode::Lagged,
                message: "resubscribe".into(),
                room: Some(room()),
                since: Some(40),
                reference: Some(json!("r1")),
            },
            ServerFrame::Error {
                code: ErrorCode::BadFrame,
                message: "not JSON".into(),
                room: None,
                since: None,
                reference: None,
            },
        ];
        for frame in frames {
            let text = serde_json::to_string(&frame).unwrap();
            assert!(text.starts_with(r#"{"type":""#), "{text}");
            assert_eq!(
                serde_json::from_str::<ServerFrame>(&text).unwrap(),
                frame,
                "{text}"
            );
        }
    }

    #[test]
    fn server_frames_read_past_fields_they_do_not_know() {
        let frame: ServerFrame = serde_json::from_str(
            r#"{"type":"presence","node":"b","room":"demo","watchers":2,"extra":{"a":[1]}}"#,
        )
        .unwrap();
        assert_eq!(
            frame,
            ServerFrame::Presence {
                room: RoomName::parse("demo").unwrap(),
                watchers: 2
            }
        );
        let ping: ServerFrame = serde_json::from_str(r#"{"type":"ping","at":1}"#).unwrap();
        assert_eq!(ping, ServerFrame::Ping);
    }

    #[test]
    fn a_server_frame_that_does_not_start_with_its_type_is_refused_by_name() {
        for (text, expected) in [
            (
                r#"{"room":"demo","type":"unsubscribed"}"#,
                "unknown field `room`, expected `type`",
            ),
            (r#"{}"#, "missing field `type`"),
            (
                r#"{"type":"shout","room":"demo"}"#,
                "unknown variant `shout`",
            ),
            (
                r#"{"type":"presence","room":"demo"}"#,
                "missing field `watchers`",
            ),
            (r#"[1]"#, "invalid type: sequence, expected a frame"),
        ] {
            let err = serde_json::from_str::<ServerFrame>(text).unwrap_err();
            assert!(err.to_string().contains(expected), "{text}: {err}");
        }
    }

    #[test]
    fn frames_with_invalid_room_names_do_not_parse() {
        let err = serde_json::from_str::<ClientFrame>(r#"{"type":"subscribe","room":"a b"}"#)
            .unwrap_err();
        assert!(err.to_string().contains("invalid room name"), "{err}");
    }

    #[test]
    fn event_data_is_validated_per_kind() {
        let ev = |kind, data| NewEvent { kind, data };
        assert!(
            ev(EventKind::Notice, json!({"text": "deploy done"}))
                .validate()
                .is_ok()
        );
        let deploy = json!({"text": "v1.4 rolled out", "title": "Deploy", "level": "warning",
                            "tags": ["deploy", "api"], "commit": "4f2a"});
        assert!(ev(EventKind::Notice, deploy.clone()).validate().is_ok());
        assert!(
            ev(EventKind::Metric, json!({"series": "cpu", "value": 0.5}))
                .validate()
                .is_ok()
        );
        for (kind, data) in [
            (EventKind::Notice, json!({"text": "  "})),
            (EventKind::Notice, json!({"text": "x", "title": ""})),
            (EventKind::Notice, json!({"text": "x", "level": "fatal"})),
            (EventKind::Notice, json!({"text": "x", "tags": "deploy"})),
            (EventKind::Notice, json!({"text": "x", "tags": [1]})),
            (
                EventKind::Notice,
                json!({"text": "x", "tags": vec!["t"; MAX_TAGS + 1]}),
            ),
            (EventKind::Alert, json!({"msg": "x"})),
            (EventKind::Metric, json!({"series": "cpu", "value": "high"})),
            (EventKind::Metric, json!({"value": 1})),
            (EventKind::Notice, json!("text")),
            (EventKind::Alert, json!({"text": 1})),
            (
                EventKind::Notice,
                json!({"text": "x".repeat(MAX_EVENT_DATA_BYTES)}),
            ),
        ] {
            assert!(
                ev(kind, data.clone()).validate().is_err(),
                "{kind:?} {data} should fail"
            );
        }
    }
}
