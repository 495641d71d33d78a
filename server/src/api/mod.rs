//! The HTTP API for agents and scripts, one router per area.

mod metrics;
mod rooms;

use axum::Router;

use crate::AppState;

pub fn router() -> Router<AppState> {
    Router::new()
        .merge(rooms::router())
        .merge(metrics::router())
}
