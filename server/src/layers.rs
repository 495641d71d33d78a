//! What every request and response passes through, outside the routes: a time limit, a request
//! id, compression, the headers that keep pages from being framed or sniffed, and how long the
//! browser keeps the site's files.

use std::time::Duration;

use axum::{
    Router,
    extract::Request,
    http::{HeaderName, HeaderValue, StatusCode, header},
    middleware::Next,
    response::Response,
};
use tower_http::{
    compression::CompressionLayer,
    request_id::{MakeRequestUuid, PropagateRequestIdLayer, SetRequestIdLayer},
    set_header::SetResponseHeaderLayer,
    timeout::TimeoutLayer,
    trace::TraceLayer,
};

/// The header a request's id travels in, both ways: a proxy's id is kept, else one is made.
const REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// For what is not a page (pages set their own, with their scripts' nonce): nothing may frame
/// it (clickjacking), plugins never run, forms post only here.
const CSP: &str = "frame-ancestors 'none'; object-src 'none'; base-uri 'self'; form-action 'self'";

/// `router` with the layers; a request not answered within `limit` (a body trickled in, a
/// handler stuck) gets 408. A response that has begun (an export, a page streaming) runs on.
/// `hashed_assets`: the site's file names carry their content's hash.
pub fn around<S: Clone + Send + Sync + 'static>(
    router: Router<S>,
    limit: Duration,
    hashed_assets: bool,
) -> Router<S> {
    // Spans name the path only: a socket's `?token=` must never reach a log.
    let trace = TraceLayer::new_for_http().make_span_with(|request: &axum::extract::Request| {
        let id = request
            .headers()
            .get(&REQUEST_ID)
            .and_then(|id| id.to_str().ok())
            .unwrap_or_default();
        tracing::debug_span!("request", id, method = %request.method(), path = %request.uri().path())
    });
    let set = |name: HeaderName, value: &'static str| {
        SetResponseHeaderLayer::if_not_present(name, HeaderValue::from_static(value))
    };
    // The last layer added is the outermost: the id is set before the span that logs it.
    router
        .layer(axum::middleware::from_fn(move |request, next| {
            cache_assets(hashed_assets, request, next)
        }))
        .layer(TimeoutLayer::with_status_code(
            StatusCode::REQUEST_TIMEOUT,
            limit,
        ))
        .layer(CompressionLayer::new())
        .layer(set(header::CONTENT_SECURITY_POLICY, CSP))
        .layer(set(header::X_CONTENT_TYPE_OPTIONS, "nosniff"))
        .layer(set(header::REFERRER_POLICY, "same-origin"))
        .layer(set(header::X_FRAME_OPTIONS, "DENY"))
        .layer(PropagateRequestIdLayer::new(REQUEST_ID))
        .layer(trace)
        .layer(SetRequestIdLayer::new(REQUEST_ID, MakeRequestUuid))
}

/// How long a browser keeps the wasm, script and stylesheet: a year without asking again when
/// their names carry their content's hash (a new build has new names), else it asks each time;
/// and that their encoding depends on what the browser accepts.
async fn cache_assets(hashed: bool, request: Request, next: Next) -> Response {
    let asset = request.uri().path().starts_with("/pkg/");
    let mut response = next.run(request).await;
    if asset && response.status().is_success() {
        let keep = match hashed {
            true => "public, max-age=31536000, immutable",
            false => "no-cache",
        };
        let headers = response.headers_mut();
        headers.insert(header::CACHE_CONTROL, HeaderValue::from_static(keep));
        // A file sent as compressed at build time says so itself; a cache between must not hand
        // it to a browser that did not ask for that encoding.
        if !headers.contains_key(header::VARY) {
            headers.insert(header::VARY, HeaderValue::from_static("accept-encoding"));
        }
    }
    response
}
