//! Probes for supervisors and load balancers: `/healthz` answers while the process serves,
//! `/readyz` whether it can do its work, naming what stops it. Both answer without credentials.

use std::{collections::BTreeMap, time::Duration};

use axum::{Json, Router, extract::State, http::StatusCode, routing::get};
use serde::Serialize;

use crate::{AppState, store::Store};

/// How long the database may take to answer a probe before it counts as unreachable: probes
/// come every few seconds and must not pile up behind a stalled pool.
const PROBE_TIMEOUT: Duration = Duration::from_secs(2);

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/healthz", get(alive))
        .route("/readyz", get(ready))
}

/// Probes that do not need credentials.
pub fn is_probe(path: &str) -> bool {
    matches!(path, "/healthz" | "/readyz")
}

#[derive(Serialize)]
struct Report {
    /// `ok`; `unready` (503) when a check other than the bus is not `ok`; `degraded` (200) when
    /// only the bus is down.
    status: &'static str,
    /// Each check and what it found: `ok`, or what is wrong.
    checks: BTreeMap<&'static str, String>,
}

async fn alive() -> Json<Report> {
    Json(Report {
        status: "ok",
        checks: BTreeMap::new(),
    })
}

async fn ready(State(state): State<AppState>) -> (StatusCode, Json<Report>) {
    let mut checks = BTreeMap::new();
    let (database, schema) = match tokio::time::timeout(PROBE_TIMEOUT, state.store.schema()).await {
        // Ahead is an older build's view of a newer schema: that build's problem to know, not
        // this probe's; behind is a migration that failed.
        Ok(Ok(at)) if at >= Store::schema_wanted() => ("ok".into(), "ok".into()),
        Ok(Ok(at)) => (
            "ok".into(),
            format!(
                "at migration {at}, this server needs {}",
                Store::schema_wanted()
            ),
        ),
        Ok(Err(e)) => {
            tracing::warn!(error = %e, "readiness: the database failed");
            ("unreachable".into(), "unknown".into())
        }
        Err(_) => (
            format!("no answer within {} s", PROBE_TIMEOUT.as_secs()),
            "unknown".into(),
        ),
    };
    checks.insert("database", database);
    checks.insert("schema", schema);
    let writer = match state.ingest.is_full() {
        false => "ok".into(),
        true => format!(
            "behind: its queue is full ({} requests waiting)",
            state.ingest.queued()
        ),
    };
    checks.insert("writer", writer);
    let (code, mut status) = match checks.values().all(|c| c == "ok") {
        true => (StatusCode::OK, "ok"),
        false => (StatusCode::SERVICE_UNAVAILABLE, "unready"),
    };
    // Without Redis a node still serves its own clients (and the others' events from the
    // store): it stays in the load balancer, saying what it lacks.
    if let Some(bus) = state.hub.bus().status() {
        let described = bus.describe();
        if described != "ok" && status == "ok" {
            status = "degraded";
        }
        checks.insert("bus", described);
    }
    (code, Json(Report { status, checks }))
}
