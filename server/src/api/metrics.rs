//! Metrics over HTTP: ingest (JSON and Prometheus text), sources, series and range queries.

use app::auth::Identity;
use app::{
    metrics::{
        self, Bucket, InvalidSample, Labels, MAX_BATCH_BYTES, Point, Sample, Series, Storage,
        Stored, StoredEvent, check_point, room_source, source_room,
    },
    protocol::RoomName,
};
use axum::{
    Extension, Json, Router,
    body::Bytes,
    extract::{
        DefaultBodyLimit, Path, Query, State,
        rejection::{BytesRejection, PathRejection, QueryRejection, StringRejection},
    },
    http::{HeaderMap, StatusCode},
    routing::{delete, get, post},
};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::error::Category;

use crate::{
    AppState,
    auth::Credential,
    error::{Error, Result},
    prometheus,
    store::Pending,
};

use super::require_content_type;

/// Most buckets one range query returns: more than any chart is wide.
const MAX_BUCKETS: u32 = 10_000;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/api/metrics", post(ingest))
        .route("/api/metrics/prometheus", post(ingest_prometheus))
        .route("/api/metrics/sources", get(list_sources))
        .route("/api/metrics/sources/{source}", delete(delete_source))
        .route(
            "/api/metrics/sources/{source}/series",
            get(list_series).delete(delete_series),
        )
        .route("/api/metrics/range", get(range))
        .route("/api/metrics/storage", get(storage))
        .layer(DefaultBodyLimit::max(MAX_BATCH_BYTES))
}

/// Stores a batch of samples, all or nothing, and pushes each source's share to its room.
async fn ingest(
    State(state): State<AppState>,
    Extension(identity): Extension<Identity>,
    Extension(credential): Extension<Credential>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<Stored>> {
    require_content_type(&headers, &["application/json"])?;
    state.auth.take_publish(&credential)?;
    let body = body?;
    let (events, samples) = off_runtime(move || {
        let samples: Vec<Sample> = serde_json::from_slice(&body).map_err(|e| {
            let status = match e.classify() {
                Category::Data => StatusCode::UNPROCESSABLE_ENTITY,
                _ => StatusCode::BAD_REQUEST,
            };
            let message = format!("the body is not a JSON array of samples: {e}");
            Error::BadRequest { status, message }
        })?;
        let count = samples.len();
        let rooms = metrics::group_batch(samples, Utc::now())?;
        for (room, _) in &rooms {
            may_ingest(&identity, room_source(room).unwrap_or_default())?;
        }
        Ok((pending(rooms), count))
    })
    .await?;
    store(&state, events, samples, 0).await
}

/// Refuses samples of a source the identity may not send.
fn may_ingest(identity: &Identity, source: &str) -> Result<()> {
    if identity.may_ingest(source) {
        Ok(())
    } else {
        Err(Error::Forbidden(format!(
            "you may not send samples of source {source}"
        )))
    }
}

#[derive(Deserialize)]
struct PrometheusSource {
    source: String,
}

/// Stores a Prometheus text payload as samples of `?source=`.
async fn ingest_prometheus(
    State(state): State<AppState>,
    Extension(identity): Extension<Identity>,
    Extension(credential): Extension<Credential>,
    headers: HeaderMap,
    query: Result<Query<PrometheusSource>, QueryRejection>,
    body: Result<String, StringRejection>,
) -> Result<Json<Stored>> {
    require_content_type(&headers, &["text/plain", "application/openmetrics-text"])?;
    state.auth.take_publish(&credential)?;
    let Query(PrometheusSource { source }) = query?;
    let body = body?;
    let room = source_room(&source).map_err(Error::bad_request)?;
    may_ingest(&identity, &source)?;
    let (events, samples, skipped) = off_runtime(move || {
        let now = Utc::now();
        let parsed =
            prometheus::parse(&body, now).map_err(|e| Error::bad_request(e.to_string()))?;
        if parsed.points.len() > metrics::MAX_BATCH_SAMPLES {
            return Err(Error::bad_request(format!(
                "a payload holds at most {} samples",
                metrics::MAX_BATCH_SAMPLES
            )));
        }
        for (index, point) in parsed.points.iter().enumerate() {
            check_point(point, now).map_err(|reason| InvalidSample { index, reason })?;
        }
        let count = parsed.points.len();
        Ok((pending(vec![(room, parsed.points)]), count, parsed.skipped))
    })
    .await?;
    store(&state, events, samples, skipped).await
}

/// Parsing and checking a batch takes milliseconds of CPU: it runs on the blocking pool so the
/// runtime's workers, the single writer among them, stay responsive.
async fn off_runtime<T: Send + 'static>(
    work: impl FnOnce() -> Result<T> + Send + 'static,
) -> Result<T> {
    tokio::task::spawn_blocking(work)
        .await
        .map_err(|_| Error::Unavailable)?
}

/// One event per source room; rooms without samples (an empty batch) make none.
fn pending(rooms: Vec<(RoomName, Vec<Point>)>) -> Vec<Pending> {
    rooms
        .into_iter()
        .filter(|(_, points)| !points.is_empty())
        .map(|(room, points)| Pending::samples(room, points))
        .collect()
}

async fn store(
    state: &AppState,
    events: Vec<Pending>,
    samples: usize,
    skipped: usize,
) -> Result<Json<Stored>> {
    let events = if events.is_empty() {
        Vec::new()
    } else {
        state.ingest.commit(events).await?
    };
    Ok(Json(Stored {
        samples,
        skipped,
        events: events
            .into_iter()
            .map(|e| StoredEvent {
                room: e.room,
                seq: e.seq,
            })
            .collect(),
    }))
}

/// The sources whose rooms the identity may read: the others do not exist for it.
async fn list_sources(
    State(state): State<AppState>,
    Extension(identity): Extension<Identity>,
) -> Result<Json<Vec<String>>> {
    let mut sources = state.store.sources().await?;
    sources.retain(|source| may_read_source(&identity, source).is_ok());
    Ok(Json(sources))
}

async fn list_series(
    State(state): State<AppState>,
    Extension(identity): Extension<Identity>,
    source: Result<Path<String>, PathRejection>,
) -> Result<Json<Vec<Series>>> {
    let Path(source) = source?;
    may_read_source(&identity, &source)?;
    Ok(Json(state.store.series(&source).await?))
}

#[derive(Deserialize)]
struct NamedSeries {
    /// As a person writes it: `name` or `name{key="value",...}`.
    series: String,
}

#[derive(Serialize)]
struct Deleted {
    series: usize,
}

/// Deletes a source: its series and their samples in every tier.
async fn delete_source(
    State(state): State<AppState>,
    Extension(identity): Extension<Identity>,
    source: Result<Path<String>, PathRejection>,
) -> Result<Json<Deleted>> {
    let Path(source) = source?;
    remove(&state, &identity, &source, None).await
}

/// Deletes one series of a source (`?series=`) with its samples in every tier.
async fn delete_series(
    State(state): State<AppState>,
    Extension(identity): Extension<Identity>,
    source: Result<Path<String>, PathRejection>,
    query: Result<Query<NamedSeries>, QueryRejection>,
) -> Result<Json<Deleted>> {
    let Path(source) = source?;
    let Query(NamedSeries { series }) = query?;
    let series: Series = series.parse().map_err(Error::bad_request)?;
    remove(&state, &identity, &source, Some(&series)).await
}

async fn remove(
    state: &AppState,
    identity: &Identity,
    source: &str,
    series: Option<&Series>,
) -> Result<Json<Deleted>> {
    may_read_source(identity, source)?;
    if !identity.may_edit() || !identity.may_ingest(source) {
        return Err(Error::Forbidden(format!(
            "deleting series of {source} takes an editor"
        )));
    }
    match state.store.delete_series(source, series).await? {
        0 => Err(Error::NotFound(match series {
            Some(series) => format!("source {source} has no series {series}"),
            None => format!("no source {source} has sent samples"),
        })),
        deleted => Ok(Json(Deleted { series: deleted })),
    }
}

/// What the metrics store holds, tier by tier.
async fn storage(State(state): State<AppState>) -> Result<Json<Storage>> {
    Ok(Json(state.store.storage().await?))
}

/// Checks the source names a room (400 if not) and the identity may read it (403 if not).
fn may_read_source(identity: &Identity, source: &str) -> Result<()> {
    let room = source_room(source).map_err(Error::bad_request)?;
    if identity.may_read(room.as_str()) {
        Ok(())
    } else {
        Err(Error::Forbidden(format!(
            "you may not read source {source}"
        )))
    }
}

#[derive(Deserialize)]
struct RangeQuery {
    source: String,
    series: String,
    /// The series' labels as a JSON object; none by default.
    labels: Option<String>,
    from: DateTime<Utc>,
    /// Defaults to now.
    to: Option<DateTime<Utc>>,
    /// Defaults to 600.
    buckets: Option<u32>,
}

/// One series over `[from, to)` as min/max/avg buckets about `(to - from) / buckets` wide
/// (whole minutes or hours from a minute up, so the rollups answer them).
async fn range(
    State(state): State<AppState>,
    Extension(identity): Extension<Identity>,
    query: Result<Query<RangeQuery>, QueryRejection>,
) -> Result<Json<Vec<Bucket>>> {
    let Query(query) = query?;
    may_read_source(&identity, &query.source)?;
    let labels: Labels = match &query.labels {
        Some(labels) => serde_json::from_str(labels).map_err(|e| {
            Error::bad_request(format!("labels must be a JSON object of strings: {e}"))
        })?,
        None => Labels::new(),
    };
    let series = Series {
        name: query.series,
        labels,
    };
    series.check().map_err(Error::bad_request)?;
    let to = query.to.unwrap_or_else(Utc::now);
    if query.from >= to {
        return Err(Error::bad_request("from must be before to"));
    }
    let buckets = query.buckets.unwrap_or(600).clamp(1, MAX_BUCKETS);
    let width = (to - query.from).as_seconds_f64() / f64::from(buckets);
    if width < 0.001 {
        return Err(Error::bad_request(format!(
            "buckets must be at least 1 ms wide: ask for fewer than {buckets} over this range"
        )));
    }
    let range = state
        .store
        .range(&query.source, &series, query.from, to, width)
        .await?;
    Ok(Json(range))
}
