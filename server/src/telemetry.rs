//! The server's own figures for the operators' monitoring, in the OpenMetrics text Prometheus
//! scrapes at `GET /metrics`: counters kept where things happen, gauges read from the live
//! state at each scrape. The built-in collector's `watchroom.*` series read the same.

use std::{sync::Arc, time::Duration};

use app::protocol::{ErrorCode, EventKind};
use axum::{
    Extension, Router,
    extract::{Request, State},
    http::header,
    middleware::Next,
    response::{IntoResponse, Response},
    routing::get,
};
use prometheus_client::{
    encoding::{EncodeLabelSet, text::encode},
    metrics::{
        counter::Counter,
        family::Family,
        gauge::Gauge,
        histogram::{Histogram, exponential_buckets},
    },
    registry::Registry,
};

use crate::{
    AppState,
    error::{Error, Result},
};
use app::auth::Identity;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct Kind {
    kind: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct Reason {
    reason: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct PoolState {
    state: String,
}

/// What the server counts, shared by everything that counts.
#[derive(Clone)]
pub struct Telemetry(Arc<Inner>);

struct Inner {
    registry: Registry,
    events: Family<Kind, Counter>,
    samples: Counter,
    deliveries: Counter,
    catch_ups: Counter,
    conflated: Counter,
    refusals: Family<Reason, Counter>,
    commit_seconds: Histogram,
    deliver_seconds: Histogram,
    connections: Gauge,
    rooms: Gauge,
    ingest_queue: Gauge,
    ingest_queue_bytes: Gauge,
    database_connections: Family<PoolState, Gauge>,
    tasks: Gauge,
    resident_bytes: Gauge,
    filled: Counter,
    bus_dropped: Counter,
    bus_up: Gauge,
}

/// The live state a scrape reads.
pub struct Live {
    pub connections: usize,
    pub rooms: usize,
    pub ingest_queue: usize,
    pub ingest_queue_bytes: usize,
    /// Read connections open, and of them idle.
    pub database: (u32, usize),
    /// Whether the bus to the other nodes is up; none on a single node.
    pub bus_up: Option<bool>,
}

impl Live {
    /// Tasks alive in the runtime: a leak of them (a socket's tasks outliving it) shows here.
    fn tasks() -> usize {
        tokio::runtime::Handle::current()
            .metrics()
            .num_alive_tasks()
    }

    /// The process's resident memory, in bytes.
    fn resident_bytes() -> u64 {
        use sysinfo::{ProcessRefreshKind, ProcessesToUpdate, System};
        let (Ok(pid), Ok(mut system)) = (sysinfo::get_current_pid(), System::new()) else {
            return 0;
        };
        let only = ProcessRefreshKind::nothing().with_memory();
        system.refresh_processes_specifics(ProcessesToUpdate::Some(&[pid]), false, only);
        system.process(pid).map_or(0, |p| p.memory())
    }
}

impl Default for Telemetry {
    fn default() -> Self {
        let mut inner = Inner {
            registry: Registry::with_prefix("watchroom"),
            events: Family::default(),
            samples: Counter::default(),
            deliveries: Counter::default(),
            catch_ups: Counter::default(),
            conflated: Counter::default(),
            refusals: Family::default(),
            // 0.5 ms to 4 s.
            commit_seconds: Histogram::new(exponential_buckets(0.0005, 2.0, 14)),
            deliver_seconds: Histogram::new(exponential_buckets(0.0005, 2.0, 14)),
            connections: Gauge::default(),
            rooms: Gauge::default(),
            ingest_queue: Gauge::default(),
            ingest_queue_bytes: Gauge::default(),
            database_connections: Family::default(),
            tasks: Gauge::default(),
            resident_bytes: Gauge::default(),
            filled: Counter::default(),
            bus_dropped: Counter::default(),
            bus_up: Gauge::default(),
        };
        let r = &mut inner.registry;
        r.register(
            "events_stored",
            "Events committed to the log, by kind",
            inner.events.clone(),
        );
        r.register(
            "samples_stored",
            "Metric samples committed",
            inner.samples.clone(),
        );
        r.register(
            "deliveries",
            "Event frames written to sockets, live and replayed",
            inner.deliveries.clone(),
        );
        r.register(
            "catch_ups",
            "Sockets that fell a room's buffer behind and were caught up from the store",
            inner.catch_ups.clone(),
        );
        r.register(
            "conflated_frames",
            "Metric frames a catching-up socket skipped for a newer one of the same series",
            inner.conflated.clone(),
        );
        r.register(
            "refusals",
            "Requests and frames refused, by error code",
            inner.refusals.clone(),
        );
        r.register(
            "writer_commit_seconds",
            "Time the writer took to commit one batch",
            inner.commit_seconds.clone(),
        );
        r.register(
            "publish_deliver_seconds",
            "Time from a publish reaching the server to its event written to every member's \
             socket (the oldest of a fan-out turn; one turn in 16 of each shard)",
            inner.deliver_seconds.clone(),
        );
        r.register(
            "connections",
            "Open WebSocket connections",
            inner.connections.clone(),
        );
        r.register(
            "rooms",
            "Rooms with a subscriber on this node",
            inner.rooms.clone(),
        );
        r.register(
            "ingest_queue",
            "Publish and ingest requests waiting for the writer",
            inner.ingest_queue.clone(),
        );
        r.register(
            "ingest_queue_bytes",
            "Bytes those requests hold, about",
            inner.ingest_queue_bytes.clone(),
        );
        r.register(
            "database_connections",
            "Connections of the read pool, by state",
            inner.database_connections.clone(),
        );
        r.register(
            "tasks",
            "Tasks alive in the server's runtime",
            inner.tasks.clone(),
        );
        r.register(
            "resident_memory_bytes",
            "Resident memory of the server process",
            inner.resident_bytes.clone(),
        );
        r.register(
            "filled_events",
            "Events a room read from the store because they had not come from the bus in their turn",
            inner.filled.clone(),
        );
        r.register(
            "bus_dropped",
            "Events not sent to the other nodes while the bus was down (they read them from the store)",
            inner.bus_dropped.clone(),
        );
        r.register(
            "bus_up",
            "1 while this node is connected to the bus to the other nodes (Redis), 0 while not",
            inner.bus_up.clone(),
        );
        Self(Arc::new(inner))
    }
}

impl Telemetry {
    pub fn committed(&self, kind: EventKind, events: u64) {
        self.0
            .events
            .get_or_create(&Kind { kind: name(kind) })
            .inc_by(events);
    }

    pub fn samples(&self, samples: u64) {
        self.0.samples.inc_by(samples);
    }

    pub fn commit_took(&self, took: Duration) {
        self.0.commit_seconds.observe(took.as_secs_f64());
    }

    pub fn publish_delivered(&self, took: Duration) {
        self.0.deliver_seconds.observe(took.as_secs_f64());
    }

    pub fn filled(&self, events: u64) {
        self.0.filled.inc_by(events);
    }

    pub fn bus_dropped(&self, events: u64) {
        self.0.bus_dropped.inc_by(events);
    }

    pub fn delivered(&self, frames: u64) {
        self.0.deliveries.inc_by(frames);
    }

    pub fn caught_up(&self) {
        self.0.catch_ups.inc();
    }

    pub fn conflated(&self, frames: u64) {
        self.0.conflated.inc_by(frames);
    }

    pub fn refused(&self, code: ErrorCode) {
        self.0
            .refusals
            .get_or_create(&Reason { reason: name(code) })
            .inc();
    }

    /// Events committed since the start, of every kind.
    pub fn events_stored(&self) -> u64 {
        EventKind::ALL
            .into_iter()
            .map(|kind| {
                self.0
                    .events
                    .get_or_create(&Kind { kind: name(kind) })
                    .get()
            })
            .sum()
    }

    /// The text of a scrape, the gauges read from `live`.
    pub fn render(&self, live: Live) -> String {
        let inner = &self.0;
        inner.connections.set(live.connections as i64);
        inner.rooms.set(live.rooms as i64);
        inner.ingest_queue.set(live.ingest_queue as i64);
        inner.ingest_queue_bytes.set(live.ingest_queue_bytes as i64);
        let (open, idle) = live.database;
        let pool = |state: &str| PoolState {
            state: state.into(),
        };
        inner
            .database_connections
            .get_or_create(&pool("idle"))
            .set(idle as i64);
        inner
            .database_connections
            .get_or_create(&pool("busy"))
            .set(i64::from(open) - idle as i64);
        inner.tasks.set(Live::tasks() as i64);
        inner.resident_bytes.set(Live::resident_bytes() as i64);
        if let Some(up) = live.bus_up {
            inner.bus_up.set(i64::from(up));
        }
        let mut text = String::new();
        // Writing to a String cannot fail.
        let _ = encode(&mut text, &inner.registry);
        text
    }
}

/// A kind or code by the name the protocol gives it.
fn name(value: impl serde::Serialize) -> String {
    serde_json::to_value(value)
        .ok()
        .and_then(|v| v.as_str().map(str::to_owned))
        .unwrap_or_default()
}

pub fn router() -> Router<AppState> {
    Router::new().route("/metrics", get(scrape))
}

async fn scrape(
    State(state): State<AppState>,
    Extension(identity): Extension<Identity>,
) -> Result<Response> {
    if !identity.may_scrape() {
        return Err(Error::Forbidden(
            "metrics are for admins, or an admin's token with the metrics scope".into(),
        ));
    }
    let live = Live {
        connections: state.connections.len(),
        rooms: state.hub.room_count(),
        ingest_queue: state.ingest.queued(),
        ingest_queue_bytes: state.ingest.queued_bytes(),
        database: state.store.pool_use(),
        bus_up: state.hub.bus().status().map(|status| status.is_up()),
    };
    let text = state.telemetry.render(live);
    let kind = "application/openmetrics-text; version=1.0.0; charset=utf-8";
    Ok(([(header::CONTENT_TYPE, kind)], text).into_response())
}

/// Counts every error answer by its code: errors leave their code on the response.
pub async fn count_refusals(
    State(telemetry): State<Telemetry>,
    request: Request,
    next: Next,
) -> Response {
    let response = next.run(request).await;
    if let Some(code) = response.extensions().get::<ErrorCode>() {
        telemetry.refused(*code);
    }
    response
}
