//! The HTTP API for agents and scripts, one router per area.

mod alerts;
mod dashboards;
mod events;
mod metrics;
mod rooms;

use axum::{
    Router,
    http::{HeaderMap, StatusCode, header},
};

use crate::{
    AppState,
    error::{Error, Result},
};

pub fn router() -> Router<AppState> {
    Router::new()
        .merge(rooms::router())
        .merge(alerts::router())
        .merge(metrics::router())
        .merge(events::router())
        .merge(dashboards::router())
}

/// Refuses a body not declared as one of `types`: a cross-site HTML form can only send form
/// encodings and plain text, so no such form can reach these routes.
fn require_content_type(headers: &HeaderMap, types: &[&str]) -> Result<()> {
    let declared = headers
        .get(header::CONTENT_TYPE)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.split(';').next())
        .map(|value| value.trim().to_ascii_lowercase());
    match declared {
        Some(declared) if types.contains(&declared.as_str()) => Ok(()),
        _ => Err(Error::BadRequest {
            status: StatusCode::UNSUPPORTED_MEDIA_TYPE,
            message: format!("the body must be sent as {}", types.join(" or ")),
        }),
    }
}
