//! Serving HTTP: axum's accept loop, with hyper's timer on so a client that trickles its request
//! headers (a slow loris) is closed after `header_timeout` instead of holding its connection.
//! HTTP/1.1 only (browsers speak HTTP/2 only over TLS, which a proxy in front ends): its upgrades
//! hand the WebSocket the listener's own connection, and so the TCP socket itself.

use std::{net::SocketAddr, pin::pin, time::Duration};

use axum::{Router, body::Body, extract::ConnectInfo, serve::Listener};
use hyper::server::conn::http1::Builder;
use hyper_util::{
    rt::{TokioIo, TokioTimer},
    service::TowerToHyperService,
};
use tokio_util::{sync::CancellationToken, task::TaskTracker};
use tower::ServiceExt;

/// Serves `router` on `listener` until `stopping`; then stops accepting, lets each connection
/// finish the request it is in, and returns when all have closed.
pub async fn serve<L>(
    mut listener: L,
    router: Router,
    header_timeout: Duration,
    stopping: CancellationToken,
) -> std::io::Result<()>
where
    L: Listener<Addr = SocketAddr>,
{
    let mut builder = Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(header_timeout);
    let open = TaskTracker::new();
    loop {
        let (io, peer) = tokio::select! {
            accepted = listener.accept() => accepted,
            _ = stopping.cancelled() => break,
        };
        let service = router.clone().map_request(
            move |request: axum::http::Request<hyper::body::Incoming>| {
                let mut request = request.map(Body::new);
                request.extensions_mut().insert(ConnectInfo(peer));
                request
            },
        );
        let service = TowerToHyperService::new(service);
        let (builder, stopping) = (builder.clone(), stopping.clone());
        open.spawn(async move {
            let mut connection = pin!(
                builder
                    .serve_connection(TokioIo::new(io), service)
                    .with_upgrades()
            );
            tokio::select! {
                served = connection.as_mut() => {
                    if let Err(e) = served {
                        tracing::trace!(error = %e, %peer, "connection ended with an error");
                    }
                    return;
                }
                _ = stopping.cancelled() => connection.as_mut().graceful_shutdown(),
            }
            let _ = connection.await;
        });
    }
    drop(listener);
    open.close();
    open.wait().await;
    Ok(())
}
