//! The event history over HTTP: pages of a filter's events across rooms, their export as CSV or
//! NDJSON, and the short way to post a notice.

use app::{
    auth::Identity,
    history::{Filter, Moment, Page, Query as EventQuery},
    protocol::{Event, EventKind, MAX_EVENT_BODY_BYTES, NewEvent, RoomName},
};
use axum::{
    Extension, Json, Router,
    body::{Body, Bytes},
    extract::{
        DefaultBodyLimit, Query, State, rejection::JsonRejection, rejection::QueryRejection,
    },
    handler::Handler,
    http::{StatusCode, header},
    response::{IntoResponse, Response},
    routing::{get, post},
};
use chrono::Utc;
use serde_json::{Map, Value};

use crate::{
    AppState,
    auth::Credential,
    error::{Error, Result},
    store::Store,
};

/// Events read per statement while exporting.
const EXPORT_CHUNK: usize = 2_000;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/api/events", get(list))
        .route("/api/events/export", get(export))
        .route(
            "/api/notices",
            post(notice.layer(DefaultBodyLimit::max(MAX_EVENT_BODY_BYTES))),
        )
}

type Params = Vec<(String, String)>;

fn read(params: &Params) -> Result<EventQuery> {
    Ok(EventQuery::from_params(
        params.iter().map(|(k, v)| (k.as_str(), v.as_str())),
    )?)
}

/// One page of events, newest first: `{"events": [...], "next": cursor|null, "prev": …}`.
async fn list(
    State(state): State<AppState>,
    Extension(identity): Extension<Identity>,
    params: Result<Query<Params>, QueryRejection>,
) -> Result<Json<app::history::EventPage>> {
    let Query(params) = params?;
    let query = read(&params)?;
    Ok(Json(
        state.store.events(&query, &identity, Utc::now()).await?,
    ))
}

/// The shape of an export.
#[derive(Clone, Copy)]
enum Format {
    Csv,
    Ndjson,
}

impl Format {
    fn parse(params: &Params) -> Result<Self> {
        match params
            .iter()
            .find(|(k, _)| k == "format")
            .map(|(_, v)| v.as_str())
        {
            None | Some("csv") => Ok(Self::Csv),
            Some("ndjson") => Ok(Self::Ndjson),
            Some(other) => Err(Error::bad_request(format!(
                "parameter format: unknown format {other:?}: csv or ndjson"
            ))),
        }
    }

    fn content_type(self) -> &'static str {
        match self {
            Self::Csv => "text/csv; charset=utf-8",
            Self::Ndjson => "application/x-ndjson",
        }
    }

    fn extension(self) -> &'static str {
        match self {
            Self::Csv => "csv",
            Self::Ndjson => "ndjson",
        }
    }

    fn header(self) -> &'static str {
        match self {
            Self::Csv => "ts,room,seq,kind,text,data\r\n",
            Self::Ndjson => "",
        }
    }

    fn write(self, event: &Event, out: &mut String) {
        match self {
            Self::Csv => {
                let text = event.data.get("text").and_then(Value::as_str).unwrap_or("");
                let fields = [
                    event
                        .ts
                        .to_rfc3339_opts(chrono::SecondsFormat::Micros, true),
                    event.room.to_string(),
                    event.seq.to_string(),
                    event.kind.as_str().to_owned(),
                ];
                for field in &fields {
                    out.push_str(field);
                    out.push(',');
                }
                // A text a spreadsheet would run as a formula is kept as text.
                if text.starts_with(['=', '+', '-', '@', '\t', '\r']) {
                    csv_field(&format!("'{text}"), out);
                } else {
                    csv_field(text, out);
                }
                out.push(',');
                csv_field(&event.data.to_string(), out);
                out.push_str("\r\n");
            }
            Self::Ndjson => {
                out.push_str(&serde_json::to_string(event).unwrap_or_default());
                out.push('\n');
            }
        }
    }

    /// The last line of an export cut short by the limit: it says so in the file itself.
    fn limit_reached(self, limit: usize) -> String {
        let message = format!(
            "export stopped at {limit} events, the most one export holds (WATCHROOM_EXPORT_LIMIT); narrow the filter or export in parts"
        );
        match self {
            Self::Csv => {
                let mut line = String::new();
                csv_field(&format!("# {message}"), &mut line);
                line + "\r\n"
            }
            Self::Ndjson => format!(
                "{}\n",
                serde_json::json!({"truncated": true, "limit": limit, "message": message})
            ),
        }
    }
}

/// A CSV field (RFC 4180): quoted when it holds a comma, a quote or a line break.
fn csv_field(text: &str, out: &mut String) {
    if text.contains([',', '"', '\n', '\r']) {
        out.push('"');
        out.push_str(&text.replace('"', "\"\""));
        out.push('"');
    } else {
        out.push_str(text);
    }
}

/// Where an export stands between chunks.
struct Exporting {
    store: Store,
    identity: Identity,
    query: EventQuery,
    format: Format,
    limit: usize,
    sent: usize,
    done: bool,
}

impl Exporting {
    /// The next chunk of the body: a page of events, then the limit's message if it was reached.
    async fn next(mut self) -> Option<(std::io::Result<Bytes>, Self)> {
        if self.done {
            return None;
        }
        self.query.limit = EXPORT_CHUNK.min(self.limit - self.sent).max(1);
        let page = match self
            .store
            .events(&self.query, &self.identity, Utc::now())
            .await
        {
            Ok(page) => page,
            Err(error) => {
                // Ending the body without its last chunk tells the client the file is not whole.
                tracing::error!(%error, "export failed");
                self.done = true;
                return Some((Err(std::io::Error::other("export failed")), self));
            }
        };
        let mut out = String::with_capacity(page.events.len() * 256);
        if self.sent == 0 {
            out.push_str(self.format.header());
        }
        for event in page.events.iter().take(self.limit - self.sent) {
            self.format.write(event, &mut out);
        }
        self.sent += page.events.len().min(self.limit - self.sent);
        match page.next {
            Some(_) if self.sent >= self.limit => {
                out.push_str(&self.format.limit_reached(self.limit));
                self.done = true;
            }
            Some(next) => self.query.page = Page::Older(next),
            None => self.done = true,
        }
        Some((Ok(Bytes::from(out)), self))
    }
}

/// Every event of a filter, newest first, as CSV (`format=csv`, the default) or NDJSON,
/// streamed page by page: memory stays that of one page however long the export.
async fn export(
    State(state): State<AppState>,
    Extension(identity): Extension<Identity>,
    params: Result<Query<Params>, QueryRejection>,
) -> Result<Response> {
    let Query(params) = params?;
    let format = Format::parse(&params)?;
    let mut query = read(&params)?;
    // Relative times are fixed once, so every page reads the same span.
    let now = Utc::now();
    let fixed = |moment: Option<Moment>| moment.map(|m| Moment::At(m.resolve(now)));
    query.filter = Filter {
        from: fixed(query.filter.from),
        to: fixed(query.filter.to),
        ..query.filter
    };
    query.page = Page::First;
    let exporting = Exporting {
        store: state.store.clone(),
        identity,
        query,
        format,
        limit: state.config.export_limit,
        sent: 0,
        done: false,
    };
    let body = Body::from_stream(futures::stream::unfold(exporting, Exporting::next));
    let disposition = format!(
        "attachment; filename=\"watchroom-events-{}.{}\"",
        now.format("%Y%m%dT%H%M%SZ"),
        format.extension()
    );
    Ok((
        [
            (header::CONTENT_TYPE, format.content_type().to_owned()),
            (header::CONTENT_DISPOSITION, disposition),
        ],
        body,
    )
        .into_response())
}

/// Posts a notice: `{"text": …, "title"?, "level"?, "tags"?, "room"? (default "notices")}`,
/// other fields kept as sent. For a CI job announcing a deploy in one `curl`.
async fn notice(
    State(state): State<AppState>,
    Extension(identity): Extension<Identity>,
    Extension(credential): Extension<Credential>,
    body: Result<Json<Map<String, Value>>, JsonRejection>,
) -> Result<(StatusCode, Json<Event>)> {
    let Json(mut data) = body?;
    let room = match data.remove("room") {
        None => app::history::NOTICES_ROOM.to_owned(),
        Some(Value::String(room)) => room,
        Some(_) => return Err(Error::bad_request("room must be a string")),
    };
    let room = RoomName::parse(room)?;
    if !identity.may_publish_event(room.as_str(), EventKind::Notice) {
        return Err(Error::Forbidden(format!("you may not publish to {room}")));
    }
    state.auth.take_publish(&credential)?;
    let event = NewEvent {
        kind: EventKind::Notice,
        data: Value::Object(data),
    };
    Ok((
        StatusCode::CREATED,
        Json(state.ingest.publish(room, event).await?),
    ))
}
