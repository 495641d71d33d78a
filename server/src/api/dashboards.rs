//! Dashboards as JSON, for provisioning them from a repository: list, read, replace.

use app::{auth::Identity, dashboards::Dashboard};
use axum::{
    Extension, Json, Router,
    body::Bytes,
    extract::{Path, State, rejection::BytesRejection},
    http::{HeaderMap, StatusCode},
    routing::get,
};

use super::require_content_type;
use crate::{
    AppState,
    error::{Error, Result},
};

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/api/dashboards", get(list))
        .route("/api/dashboards/{name}", get(read).put(replace))
}

async fn list(State(state): State<AppState>) -> Result<Json<Vec<String>>> {
    Ok(Json(state.store.dashboard_names().await?))
}

async fn read(State(state): State<AppState>, Path(name): Path<String>) -> Result<Json<Dashboard>> {
    // A name no dashboard can have names none: it is not worth a query.
    let found = match app::dashboards::check_name(&name) {
        Ok(()) => state.store.dashboard(&name).await?,
        Err(_) => None,
    };
    found
        .map(Json)
        .ok_or_else(|| Error::NotFound(format!("no dashboard named {name:?}")))
}

/// Stores the dashboard in the body under `name`: created if absent (201), else replaced (200).
/// A body with a `version` replaces only that version (409 when it has changed since, as an edit
/// in the page is refused); without one it replaces whatever is stored, as provisioning does.
async fn replace(
    State(state): State<AppState>,
    Extension(identity): Extension<Identity>,
    Path(name): Path<String>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<(StatusCode, Json<Dashboard>)> {
    if !identity.may_edit() {
        return Err(Error::Forbidden("you may not change dashboards".into()));
    }
    require_content_type(&headers, &["application/json"])?;
    let body = body?;
    let unprocessable = |message: String| Error::BadRequest {
        status: StatusCode::UNPROCESSABLE_ENTITY,
        message,
    };
    let mut dashboard = Dashboard::from_json(&body).map_err(unprocessable)?;
    if dashboard.name != name {
        return Err(unprocessable(format!(
            "name: the body names {:?}, the address {name:?}",
            dashboard.name
        )));
    }
    let existed = state.store.dashboard(&name).await?.is_some();
    dashboard.version = match dashboard.version {
        0 => state.store.put_dashboard(&dashboard).await?,
        _ if !existed => {
            return Err(Error::NotFound(format!(
                "no dashboard named {name:?} to replace; send it without a version to create it"
            )));
        }
        version if state.store.update_dashboard(&dashboard).await? => version + 1,
        _ => {
            return Err(Error::Conflict(format!(
                "dashboard {name:?} is no longer at version {}: read it again, then send your change",
                dashboard.version
            )));
        }
    };
    let status = if existed {
        StatusCode::OK
    } else {
        StatusCode::CREATED
    };
    Ok((status, Json(dashboard)))
}
