//! The HTTP API for agents and scripts, one router per area.

mod alerts;
mod events;
mod metrics;
mod rooms;

use axum::Router;

use crate::AppState;

pub fn router() -> Router<AppState> {
    Router::new()
        .merge(rooms::router())
        .merge(alerts::router())
        .merge(metrics::router())
        .merge(events::router())
}
