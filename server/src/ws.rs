//! One WebSocket connection: the rooms it watches, replay from the store, live pushes, heartbeats.

use std::collections::HashMap;

use app::protocol::{ClientFrame, ErrorCode, RoomName, ServerFrame};
use axum::{
    extract::{
        State, WebSocketUpgrade,
        ws::{CloseFrame, Message, Utf8Bytes, WebSocket, close_code},
    },
    response::Response,
};
use futures::{SinkExt, StreamExt, stream::SplitSink};
use tokio::time::{Instant, MissedTickBehavior, interval_at};
use tokio_stream::{
    StreamMap,
    wrappers::{BroadcastStream, errors::BroadcastStreamRecvError},
};

use crate::{AppState, error::Result, hub::Delivery};

/// Largest frame a client may send.
pub const MAX_FRAME_BYTES: usize = 64 * 1024;
/// Events read from the store per query while replaying.
const REPLAY_PAGE: i64 = 500;

pub async fn upgrade(ws: WebSocketUpgrade, State(state): State<AppState>) -> Response {
    ws.max_message_size(MAX_FRAME_BYTES)
        .max_frame_size(MAX_FRAME_BYTES)
        .on_upgrade(move |socket| serve(socket, state))
}

/// Why a connection ended, when the server ends it.
enum Closing {
    PeerGone,
    Silent,
    ShuttingDown,
}

struct Connection {
    state: AppState,
    sink: SplitSink<WebSocket, Message>,
    rooms: StreamMap<RoomName, BroadcastStream<Delivery>>,
    /// Newest seq sent per room: anything at or below it is an overlap and is skipped.
    sent: HashMap<RoomName, i64>,
}

async fn serve(socket: WebSocket, state: AppState) {
    let (sink, mut stream) = socket.split();
    let heartbeat_every = state.heartbeat;
    let shutdown = state.shutdown.clone();
    let mut conn = Connection { state, sink, rooms: StreamMap::new(), sent: HashMap::new() };
    let mut heartbeat = interval_at(Instant::now() + heartbeat_every, heartbeat_every);
    heartbeat.set_missed_tick_behavior(MissedTickBehavior::Delay);
    let mut last_heard = Instant::now();

    let closing = loop {
        let step = tokio::select! {
            incoming = stream.next() => match incoming {
                Some(Ok(message)) => {
                    last_heard = Instant::now();
                    conn.receive(message).await
                }
                Some(Err(_)) | None => Err(Closing::PeerGone),
            },
            Some((room, delivery)) = conn.rooms.next() => conn.deliver(room, delivery).await,
            _ = heartbeat.tick() => {
                if last_heard.elapsed() > heartbeat_every * 2 {
                    Err(Closing::Silent)
                } else {
                    conn.send(&ServerFrame::Ping).await
                }
            }
            _ = shutdown.cancelled() => Err(Closing::ShuttingDown),
        };
        if let Err(closing) = step {
            break closing;
        }
    };
    let close = match closing {
        Closing::PeerGone => None,
        Closing::Silent => Some((close_code::POLICY, "no frame within two heartbeat intervals")),
        Closing::ShuttingDown => Some((close_code::RESTART, "server restarting; resume with since")),
    };
    if let Some((code, reason)) = close {
        let frame = CloseFrame { code, reason: Utf8Bytes::from_static(reason) };
        let _ = conn.sink.send(Message::Close(Some(frame))).await;
    }
    conn.leave_all();
}

type Step = std::result::Result<(), Closing>;

impl Connection {
    async fn receive(&mut self, message: Message) -> Step {
        match message {
            Message::Text(text) => match serde_json::from_str::<ClientFrame>(&text) {
                Ok(frame) => self.handle(frame).await,
                Err(e) => self.refuse(ErrorCode::BadFrame, format!("unreadable frame: {e}"), None).await,
            },
            Message::Binary(_) => {
                self.refuse(ErrorCode::BadFrame, "frames are JSON text; binary is not accepted".into(), None)
                    .await
            }
            Message::Close(_) => Err(Closing::PeerGone),
            Message::Ping(_) | Message::Pong(_) => Ok(()),
        }
    }

    async fn handle(&mut self, frame: ClientFrame) -> Step {
        match frame {
            ClientFrame::Subscribe { room, since } => match self.subscribe(room.clone(), since).await {
                Ok(head) => self.send(&ServerFrame::Subscribed { room, head }).await,
                Err(e) => {
                    tracing::error!(error = %e, %room, "subscribe failed");
                    self.unsubscribe(&room);
                    self.refuse(e.code(), e.public_message(), Some(room)).await
                }
            },
            ClientFrame::Unsubscribe { room } => {
                self.unsubscribe(&room);
                self.send(&ServerFrame::Unsubscribed { room }).await
            }
            ClientFrame::Ping => self.send(&ServerFrame::Pong).await,
            ClientFrame::Pong => Ok(()),
        }
    }

    /// Joins the hub before reading the store, so every event is either replayed or pushed live
    /// (overlaps are dropped by seq). Returns the newest seq sent or skipped.
    async fn subscribe(&mut self, room: RoomName, since: Option<i64>) -> Result<i64, crate::error::Error> {
        self.unsubscribe(&room);
        let live = self.state.hub.join(&room);
        self.rooms.insert(room.clone(), BroadcastStream::new(live));
        let from = match since {
            Some(since) => since.max(0),
            None => self.state.store.head(&room).await?,
        };
        self.sent.insert(room.clone(), from);
        self.replay(&room).await
    }

    /// Sends every stored event after the newest one sent, until the store has no more.
    async fn replay(&mut self, room: &RoomName) -> Result<i64, crate::error::Error> {
        let mut last = self.sent.get(room).copied().unwrap_or(0);
        loop {
            let page = self.state.store.since(room, last, REPLAY_PAGE).await?;
            let full = page.len() as i64 == REPLAY_PAGE;
            for event in page {
                last = event.seq;
                // A failed send shows up as a closed stream on the next read.
                let _ = self.send(&ServerFrame::Event(event)).await;
            }
            self.sent.insert(room.clone(), last);
            if !full {
                return Ok(last);
            }
        }
    }

    fn unsubscribe(&mut self, room: &RoomName) {
        if self.rooms.remove(room).is_some() {
            self.state.hub.leave(room);
        }
        self.sent.remove(room);
    }

    fn leave_all(&mut self) {
        let rooms: Vec<RoomName> = self.rooms.keys().cloned().collect();
        for room in rooms {
            self.unsubscribe(&room);
        }
    }

    async fn deliver(&mut self, room: RoomName, delivery: Result<Delivery, BroadcastStreamRecvError>) -> Step {
        match delivery {
            Ok(Delivery { seq, frame }) => {
                let sent = self.sent.entry(room).or_default();
                if seq <= *sent {
                    return Ok(());
                }
                *sent = seq;
                self.sink.send(Message::Text(frame)).await.map_err(|_| Closing::PeerGone)
            }
            // This socket fell more than a room buffer behind: catch up from the store.
            Err(BroadcastStreamRecvError::Lagged(missed)) => {
                tracing::debug!(%room, missed, "slow subscriber catching up from the store");
                match self.replay(&room).await {
                    Ok(_) => Ok(()),
                    Err(e) => {
                        let message = format!("fell behind and could not catch up: {}", e.public_message());
                        self.refuse(ErrorCode::Lagged, message, Some(room)).await
                    }
                }
            }
        }
    }

    async fn refuse(&mut self, code: ErrorCode, message: String, room: Option<RoomName>) -> Step {
        self.send(&ServerFrame::Error { code, message, room }).await
    }

    async fn send(&mut self, frame: &ServerFrame) -> Step {
        let text = serde_json::to_string(frame).expect("server frames always serialise");
        self.sink.send(Message::Text(text.into())).await.map_err(|_| Closing::PeerGone)
    }
}
