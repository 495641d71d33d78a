//! Rooms over HTTP: publish an event, read a room's stored events.

use app::protocol::{Event, MAX_EVENT_BODY_BYTES, NewEvent, RoomName};
use axum::{
    Json, Router,
    extract::{
        DefaultBodyLimit, Path, Query, State,
        rejection::{JsonRejection, QueryRejection},
    },
    http::StatusCode,
    routing::get,
};
use serde::Deserialize;

use crate::{
    AppState,
    auth::Credential,
    error::{Error, Result},
};
use app::auth::Identity;
use axum::Extension;
use axum::handler::Handler;

/// Most events one history request returns.
const MAX_PAGE: i64 = 1000;

pub fn router() -> Router<AppState> {
    Router::new().route(
        "/api/rooms/{room}/events",
        get(list_events).post(publish.layer(DefaultBodyLimit::max(MAX_EVENT_BODY_BYTES))),
    )
}

/// Stores an event and pushes it to the room's watchers once committed.
async fn publish(
    State(state): State<AppState>,
    Extension(identity): Extension<Identity>,
    Extension(credential): Extension<Credential>,
    Path(room): Path<String>,
    body: Result<Json<NewEvent>, JsonRejection>,
) -> Result<(StatusCode, Json<Event>)> {
    let room = RoomName::parse(room)?;
    let Json(event) = body?;
    if !identity.may_publish_event(room.as_str(), event.kind) {
        return Err(Error::Forbidden(format!("you may not publish to {room}")));
    }
    state.auth.take_publish(&credential)?;
    Ok((
        StatusCode::CREATED,
        Json(state.ingest.publish(room, event).await?),
    ))
}

#[derive(Deserialize)]
struct Page {
    #[serde(default)]
    since: i64,
    limit: Option<i64>,
}

/// Stored events after `since`, oldest first, at most `limit` (default and cap 1000) and at most
/// a page's bytes: a reader continues from the last seq until a page comes back empty.
async fn list_events(
    State(state): State<AppState>,
    Extension(identity): Extension<Identity>,
    Path(room): Path<String>,
    page: Result<Query<Page>, QueryRejection>,
) -> Result<Json<Vec<Event>>> {
    let room = RoomName::parse(room)?;
    if !identity.may_read(room.as_str()) {
        return Err(Error::Forbidden(format!("you may not read {room}")));
    }
    let Query(page) = page?;
    let limit = page.limit.unwrap_or(MAX_PAGE).clamp(1, MAX_PAGE);
    let (events, _) = state.store.since(&room, page.since, limit).await?;
    Ok(Json(events))
}
