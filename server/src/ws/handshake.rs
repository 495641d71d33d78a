//! The WebSocket opening handshake, done here rather than by axum so the connection keeps the
//! TCP socket itself: the fan-out writes frames straight to it.

use axum::{
    extract::FromRequestParts,
    http::{HeaderMap, HeaderValue, Method, StatusCode, header, request::Parts},
    response::{IntoResponse, Response},
};
use bytes::Bytes;
use hyper::upgrade::OnUpgrade;
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::handshake::derive_accept_key;

use crate::{
    error::Error,
    listener::{Counted, Places},
};

/// A request to open a WebSocket, checked.
pub struct Handshake {
    key: HeaderValue,
    upgrade: OnUpgrade,
}

/// The socket once the handshake is done.
pub struct Socket {
    pub tcp: TcpStream,
    /// Its places under the listener's caps, held while it is open.
    pub held: Places,
    /// What the client sent after its request, read with it.
    pub read_ahead: Bytes,
}

impl<S: Send + Sync> FromRequestParts<S> for Handshake {
    type Rejection = Error;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Error> {
        let refuse = |message: &str| Error::BadRequest {
            status: StatusCode::BAD_REQUEST,
            message: format!("not a WebSocket request: {message}"),
        };
        let headers = &parts.headers;
        if parts.method != Method::GET {
            return Err(refuse("the method must be GET"));
        }
        if !has_token(headers, header::CONNECTION, "upgrade") {
            return Err(refuse("`Connection` must include `upgrade`"));
        }
        if !has_token(headers, header::UPGRADE, "websocket") {
            return Err(refuse("`Upgrade` must be `websocket`"));
        }
        if headers.get(header::SEC_WEBSOCKET_VERSION) != Some(&HeaderValue::from_static("13")) {
            return Err(refuse("`Sec-WebSocket-Version` must be 13"));
        }
        let key = headers
            .get(header::SEC_WEBSOCKET_KEY)
            .ok_or_else(|| refuse("`Sec-WebSocket-Key` is missing"))?
            .clone();
        let upgrade = parts
            .extensions
            .remove::<OnUpgrade>()
            .ok_or_else(|| refuse("the connection cannot be upgraded (HTTP/1.1 only)"))?;
        Ok(Self { key, upgrade })
    }
}

impl Handshake {
    /// Answers 101 and hands the socket to `serve` once the client has the answer.
    pub fn accept<F, Fut>(self, serve: F) -> Response
    where
        F: FnOnce(Socket) -> Fut + Send + 'static,
        Fut: Future<Output = ()> + Send + 'static,
    {
        let accept = derive_accept_key(self.key.as_bytes());
        let upgrade = self.upgrade;
        tokio::spawn(async move {
            let upgraded = match upgrade.await {
                Ok(upgraded) => upgraded,
                Err(e) => {
                    tracing::debug!(error = %e, "WebSocket upgrade failed");
                    return;
                }
            };
            // The listener's own connection type: anything else is a server built wrongly.
            let Ok(parts) = upgraded.downcast::<TokioIo<Counted>>() else {
                tracing::error!("an upgraded connection is not the listener's own");
                return;
            };
            let (tcp, held) = parts.io.into_inner().into_parts();
            serve(Socket {
                tcp,
                held,
                read_ahead: parts.read_buf,
            })
            .await;
        });
        (
            StatusCode::SWITCHING_PROTOCOLS,
            [
                (header::CONNECTION, HeaderValue::from_static("upgrade")),
                (header::UPGRADE, HeaderValue::from_static("websocket")),
                (
                    header::SEC_WEBSOCKET_ACCEPT,
                    HeaderValue::from_str(&accept).expect("base64 is a header value"),
                ),
            ],
        )
            .into_response()
    }
}

/// Whether `name` lists `token` (comma-separated, any case).
fn has_token(headers: &HeaderMap, name: header::HeaderName, token: &str) -> bool {
    headers
        .get_all(name)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(','))
        .any(|t| t.trim().eq_ignore_ascii_case(token))
}
