//! The reconnecting WebSocket, run in the browser only.

use futures::channel::mpsc;
use futures::{SinkExt, StreamExt, select};
use gloo_net::websocket::{Message, futures::WebSocket};
use gloo_timers::future::sleep;
use leptos::prelude::*;
use std::time::Duration;

use super::{ConnState, LiveClient};
use crate::protocol::{ClientFrame, ServerFrame};

const FIRST_RETRY: Duration = Duration::from_millis(500);
const MAX_RETRY: Duration = Duration::from_secs(30);

pub(super) fn spawn(client: LiveClient) {
    leptos::task::spawn_local(run(client));
}

/// Connects forever: exponential backoff with full jitter, reset after a connection went live.
async fn run(client: LiveClient) {
    let mut failures = 0u32;
    loop {
        if connect(client).await {
            failures = 0;
        } else {
            failures = failures.saturating_add(1);
        }
        client.state.set(ConnState::Reconnecting);
        let cap = FIRST_RETRY.saturating_mul(1 << failures.min(6)).min(MAX_RETRY);
        sleep(cap.mul_f64(js_sys::Math::random())).await;
    }
}

/// One connection, until it closes. Returns whether it went live.
async fn connect(client: LiveClient) -> bool {
    let Ok(socket) = WebSocket::open(&socket_url()) else {
        return false;
    };
    let (mut to_server, from_server) = socket.split();
    let mut from_server = from_server.fuse();
    let (outbox, mut pending) = mpsc::unbounded();
    for frame in client.attach(outbox) {
        if to_server.send(encode(&frame)).await.is_err() {
            client.detach();
            return false;
        }
    }
    let mut live = false;
    loop {
        let outgoing = select! {
            incoming = from_server.next() => match incoming {
                Some(Ok(Message::Text(text))) => {
                    if !live {
                        live = true;
                        client.state.set(ConnState::Live);
                    }
                    match serde_json::from_str::<ServerFrame>(&text) {
                        Ok(frame) => client.apply(frame),
                        Err(e) => {
                            leptos::logging::warn!("unreadable frame from server: {e}");
                            None
                        }
                    }
                }
                Some(Ok(Message::Bytes(_))) => None,
                Some(Err(_)) | None => break,
            },
            frame = pending.next() => frame,
        };
        if let Some(frame) = outgoing {
            if to_server.send(encode(&frame)).await.is_err() {
                break;
            }
        }
    }
    client.detach();
    live
}

fn encode(frame: &ClientFrame) -> Message {
    Message::Text(serde_json::to_string(frame).expect("client frames always serialise"))
}

fn socket_url() -> String {
    let location = window().location();
    let scheme = if location.protocol().as_deref() == Ok("https:") { "wss" } else { "ws" };
    let host = location.host().unwrap_or_default();
    format!("{scheme}://{host}/ws")
}
