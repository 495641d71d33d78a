//! The reconnecting WebSocket, run in the browser only.

use std::time::Duration;

use futures::channel::mpsc;
use futures::{FutureExt, SinkExt, StreamExt, select};
use gloo_net::websocket::{Message, futures::WebSocket};
use gloo_timers::future::sleep;
use leptos::prelude::*;
use wasm_bindgen::{JsCast, closure::Closure};

use super::{ConnState, LiveClient};
use crate::protocol::{ClientFrame, ServerFrame};

const FIRST_RETRY: Duration = Duration::from_millis(500);
const MAX_RETRY: Duration = Duration::from_secs(30);
/// Until the server's hello says otherwise.
const DEFAULT_HEARTBEAT: Duration = Duration::from_secs(15);

pub(super) fn spawn(client: LiveClient) {
    let (wake, woken) = mpsc::unbounded();
    // A network that comes back, or a tab shown again, is worth an immediate try.
    on_window_event("online", wake.clone(), client, ConnState::Connecting);
    on_window_event("offline", wake.clone(), client, ConnState::Offline);
    let visible = wake.clone();
    listen(&document(), "visibilitychange", move || {
        if document().visibility_state() == web_sys::VisibilityState::Visible {
            let _ = visible.unbounded_send(());
        }
    });
    leptos::task::spawn_local(run(client, woken));
}

fn on_window_event(
    name: &str,
    wake: mpsc::UnboundedSender<()>,
    client: LiveClient,
    state: ConnState,
) {
    listen(&window(), name, move || {
        if client.state.get_untracked() != ConnState::Live {
            client.state.set(state);
        }
        let _ = wake.unbounded_send(());
    });
}

fn listen(target: &web_sys::EventTarget, name: &str, handler: impl FnMut() + 'static) {
    let handler = Closure::<dyn FnMut()>::new(handler);
    let _ = target.add_event_listener_with_callback(name, handler.as_ref().unchecked_ref());
    // Listens for the page's lifetime.
    handler.forget();
}

/// Connects forever: exponential backoff with full jitter, reset after a connection went live.
async fn run(client: LiveClient, mut woken: mpsc::UnboundedReceiver<()>) {
    let mut failures = 0u32;
    // The server's heartbeat, as its last hello said.
    let mut heartbeat = DEFAULT_HEARTBEAT;
    loop {
        if connect(client, &mut heartbeat).await {
            failures = 0;
        } else {
            failures = failures.saturating_add(1);
        }
        let cap = FIRST_RETRY
            .saturating_mul(1 << failures.min(6))
            .min(MAX_RETRY);
        let wait = cap.mul_f64(js_sys::Math::random());
        if !window().navigator().on_line() {
            client.state.set(ConnState::Offline);
        } else {
            client.state.set(ConnState::Reconnecting {
                retry_at: js_sys::Date::now() + wait.as_millis() as f64,
            });
        }
        // Drop wake-ups that came while connected: only new ones cut the wait short.
        while woken.try_recv().is_ok() {}
        select! {
            _ = sleep(wait).fuse() => {}
            _ = woken.next() => {}
        }
    }
}

/// One connection, until it closes or falls silent. Returns whether it went live.
async fn connect(client: LiveClient, heartbeat: &mut Duration) -> bool {
    let Ok(socket) = WebSocket::open(&socket_url()) else {
        return false;
    };
    let (mut to_server, from_server) = socket.split();
    let mut from_server = from_server.fuse();
    let (outbox, mut pending) = mpsc::unbounded();
    let subscriptions = client.attach(outbox);
    // A server that accepts the connection but never answers (stopped, overloaded) must not
    // hold the page forever: opening gets the same two heartbeats as silence does.
    let opened = async {
        for frame in subscriptions {
            to_server.send(encode(&frame)).await?;
        }
        Ok::<_, gloo_net::websocket::WebSocketError>(())
    };
    let opened = select! {
        sent = opened.fuse() => sent.is_ok(),
        _ = sleep(*heartbeat * 2).fuse() => false,
    };
    if !opened {
        client.detach();
        return false;
    }
    let mut live = false;
    // Any frame from the server proves the link; two heartbeats of silence mean it is dead.
    let mut silence = sleep(*heartbeat * 2).fuse();
    loop {
        let mut heard = false;
        let outgoing = select! {
            incoming = from_server.next() => match incoming {
                Some(Ok(Message::Text(text))) => {
                    heard = true;
                    if !live {
                        live = true;
                        client.state.set(ConnState::Live);
                    }
                    match crate::json::read::<ServerFrame>(&text) {
                        Ok(ServerFrame::Hello { heartbeat_ms }) => {
                            *heartbeat = Duration::from_millis(heartbeat_ms);
                            None
                        }
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
            _ = silence => break,
        };
        if heard {
            silence = sleep(*heartbeat * 2).fuse();
        }
        if let Some(frame) = outgoing
            && to_server.send(encode(&frame)).await.is_err()
        {
            break;
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
    let scheme = if location.protocol().as_deref() == Ok("https:") {
        "wss"
    } else {
        "ws"
    };
    let host = location.host().unwrap_or_default();
    format!("{scheme}://{host}/ws")
}
