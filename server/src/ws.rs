//! One WebSocket connection: the rooms it watches, replay from the store, live pushes, publishes,
//! heartbeats and limits.

use std::{collections::HashMap, time::Duration};

use app::auth::Identity;
use app::{
    metrics::{self, Series},
    protocol::{ClientFrame, Epoch, ErrorCode, Event, EventKind, NewEvent, RoomName, ServerFrame},
};
use axum::{
    Extension,
    extract::{
        State, WebSocketUpgrade,
        ws::{CloseFrame, Message, Utf8Bytes, WebSocket, close_code},
    },
    http::HeaderMap,
    response::IntoResponse,
    response::Response,
};
use futures::{FutureExt, SinkExt, StreamExt, future::BoxFuture, stream::FuturesOrdered};
use serde_json::Value;
use tokio::time::{Instant, MissedTickBehavior, interval_at};
use tokio_stream::{
    StreamMap,
    wrappers::{BroadcastStream, errors::BroadcastStreamRecvError},
};
use tokio_tungstenite::tungstenite;

use crate::{
    AppState,
    auth::{Credential, Hold},
    error::Error,
    hub::{Delivery, encode},
    rate::TokenBucket,
};

/// How long a closing socket waits for the client's close frame: a browser answers at once;
/// past it the socket is dropped anyway.
const CLOSE_WAIT: Duration = Duration::from_millis(500);

/// Events read from the store per query while replaying.
const REPLAY_PAGE: i64 = 500;
/// Live frames written per flush when several are queued: one syscall carries them all.
const WRITE_BATCH: usize = 64;
/// One delivery turn in so many has its publish→deliver latency observed: the histogram takes
/// a lock, and a thousand sockets each taking it per push would cost the fan-out.
const TIMED_TURNS: u32 = 16;
/// Publishes awaiting their commit per connection; more wait for the first to finish.
const MAX_PENDING_PUBLISHES: usize = 256;

/// Accepts a socket from an identity the gate found, from a page of this site (a browser sends
/// its page's origin: a page elsewhere must not open a socket with the user's cookie), and
/// within the identity's share of sockets.
pub async fn upgrade(
    ws: WebSocketUpgrade,
    State(state): State<AppState>,
    Extension(identity): Extension<Identity>,
    Extension(credential): Extension<Credential>,
    headers: HeaderMap,
) -> Response {
    if !state.auth.origin_allowed(&headers) {
        let refused = Error::Forbidden("sockets open only from this site's pages".into());
        return refused.into_response();
    }
    let config = &state.config;
    let Some(hold) = state
        .auth
        .live
        .hold(&credential, config.max_sockets_per_identity)
    else {
        let message = format!(
            "at most {} sockets at once per session or token",
            config.max_sockets_per_identity
        );
        return Error::Limited(message).into_response();
    };
    let max = state.config.max_frame_bytes;
    // Small buffers: most connections are idle watchers, and memory per connection is what
    // limits how many one node holds; they grow while a burst needs them. tungstenite also zeroes
    // the whole read buffer on every read attempt, so a small one is cheaper per push.
    ws.read_buffer_size(512)
        .write_buffer_size(16 * 1024)
        .max_message_size(max)
        .max_frame_size(max)
        .on_upgrade(move |socket| {
            let drain = state.connections.clone();
            drain.track_future(serve(socket, state, identity, credential, hold))
        })
}

/// The newest seq a client has of a room, and the epoch it counts in.
struct Position {
    seq: i64,
    epoch: Epoch,
}

/// Why a connection ended, when it did not simply go away.
enum Closing {
    PeerGone,
    Silent,
    TooLarge,
    Revoked,
    ShuttingDown,
    /// It stopped taking what is written to it.
    Stalled,
}

type Step = Result<(), Closing>;

struct Connection {
    state: AppState,
    /// Not split into halves: reads and writes take turns in one task, and a split's lock
    /// would cost on every push.
    socket: WebSocket,
    rooms: StreamMap<RoomName, BroadcastStream<Delivery>>,
    /// Where each room stands for this client: anything at or below `seq` is an overlap and
    /// is skipped.
    sent: HashMap<RoomName, Position>,
    identity: Identity,
    /// Whose publishes these are: its allowance is shared with its other sockets and requests.
    credential: Credential,
    /// Replies to publishes, in the order they were made.
    acks: FuturesOrdered<BoxFuture<'static, ServerFrame>>,
    /// Each subscribe costs queries: a client that cycles subscribe and unsubscribe is slowed.
    subscribes: TokenBucket,
    /// Delivery turns so far, for timing one in [`TIMED_TURNS`].
    turns: u32,
}

/// Serves one socket until it closes. `hold`, its place under its credential, is kept (and so
/// counted) until then.
async fn serve(
    socket: WebSocket,
    state: AppState,
    identity: Identity,
    credential: Credential,
    hold: Hold,
) {
    let heartbeat_every = state.config.heartbeat;
    let shutdown = state.shutdown.clone();
    // A child of the shutdown token: one wait covers both.
    let stop = hold.revoked.clone();
    let subscribes = TokenBucket::new(
        state.config.subscribe_rate,
        2.0 * state.config.max_rooms_per_connection as f64,
    );
    let mut conn = Connection {
        identity,
        credential,
        state,
        socket,
        rooms: StreamMap::new(),
        sent: HashMap::new(),
        acks: FuturesOrdered::new(),
        subscribes,
        turns: 0,
    };
    let mut heartbeat = interval_at(Instant::now() + heartbeat_every, heartbeat_every);
    heartbeat.set_missed_tick_behavior(MissedTickBehavior::Delay);
    let mut last_heard = Instant::now();

    // Made once: a fresh one per turn would lock the token's waiter list on every push.
    let stopped = stop.cancelled();
    tokio::pin!(stopped);

    let hello = ServerFrame::Hello {
        heartbeat_ms: heartbeat_every.as_millis() as u64,
    };
    let mut step = conn.send(&hello).await;
    while step.is_ok() {
        step = tokio::select! {
            _ = &mut stopped => Err(match shutdown.is_cancelled() {
                true => Closing::ShuttingDown,
                false => Closing::Revoked,
            }),
            incoming = conn.socket.recv(), if conn.acks.len() < MAX_PENDING_PUBLISHES => match incoming {
                Some(Ok(message)) => {
                    last_heard = Instant::now();
                    // Boxed: handling a frame (a subscribe's replay, a publish) takes a large
                    // future, which would otherwise sit inline in every idle watcher's task.
                    Box::pin(conn.receive(message)).await
                }
                Some(Err(e)) if is_too_large(&e) => Err(Closing::TooLarge),
                Some(Err(_)) | None => Err(Closing::PeerGone),
            },
            Some((room, delivery)) = conn.rooms.next() => conn.deliver(room, delivery).await,
            Some(ack) = conn.acks.next() => conn.send(&ack).await,
            _ = heartbeat.tick() => {
                if last_heard.elapsed() > heartbeat_every * 2 {
                    Err(Closing::Silent)
                } else {
                    conn.send(&ServerFrame::Ping).await
                }
            }
        };
    }
    // Boxed: the closing runs once, and would otherwise sit inline in every watcher's task.
    Box::pin(conn.close(step)).await;
}

fn is_too_large(error: &axum::Error) -> bool {
    std::error::Error::source(error)
        .and_then(|source| source.downcast_ref::<tungstenite::Error>())
        .is_some_and(|e| matches!(e, tungstenite::Error::Capacity(_)))
}

impl Connection {
    /// Ends the connection as `step` says: answers what it took, leaves its rooms, and sends
    /// the close frame with its reason when there is one.
    async fn close(mut self, step: Step) {
        let close = match step {
            Err(Closing::Silent) => Some((
                close_code::POLICY,
                "no frame within two heartbeat intervals",
            )),
            Err(Closing::TooLarge) => {
                Some((close_code::SIZE, "frame larger than the server accepts"))
            }
            Err(Closing::Revoked) => Some((
                close_code::POLICY,
                "the session or token is no longer valid; sign in again",
            )),
            Err(Closing::ShuttingDown) => {
                Some((close_code::RESTART, "server restarting; resume with since"))
            }
            Err(Closing::PeerGone | Closing::Stalled) | Ok(()) => None,
        };
        if matches!(step, Err(Closing::ShuttingDown | Closing::Revoked)) {
            // Publishes it has taken are answered before it goes: each was (or will be) committed
            // or refused, and the client must not be left guessing which.
            while let Some(ack) = self.acks.next().await {
                if self.send(&ack).await.is_err() {
                    break;
                }
            }
        }
        // Nothing more is delivered, and the rooms are free for others to count, from here.
        self.leave_all();
        if let Some((code, reason)) = close {
            let frame = CloseFrame {
                code,
                reason: Utf8Bytes::from_static(reason),
            };
            let limit = self.state.config.write_timeout;
            if within(limit, self.socket.send(Message::Close(Some(frame))))
                .await
                .is_ok()
            {
                // The closing handshake: read (and drop) what the client still sends until its own
                // close. Closing a socket with unread bytes resets it, and the reset can overtake
                // the last answers and the close frame on their way to the client.
                let drained = async { while let Some(Ok(_)) = self.socket.recv().await {} };
                let _ = tokio::time::timeout(CLOSE_WAIT, drained).await;
            }
        }
    }

    async fn receive(&mut self, message: Message) -> Step {
        match message {
            Message::Text(text) => match serde_json::from_str::<ClientFrame>(&text) {
                Ok(frame) => self.handle(frame).await,
                Err(e) => {
                    self.refuse(ErrorCode::BadFrame, format!("unreadable frame: {e}"), None)
                        .await
                }
            },
            Message::Binary(_) => {
                let message = "frames are JSON text; binary is not accepted".to_owned();
                self.refuse(ErrorCode::BadFrame, message, None).await
            }
            Message::Close(_) => Err(Closing::PeerGone),
            Message::Ping(_) | Message::Pong(_) => Ok(()),
        }
    }

    async fn handle(&mut self, frame: ClientFrame) -> Step {
        match frame {
            ClientFrame::Subscribe { room, since, epoch } => {
                if let Err((code, message)) = self.may_subscribe(&room) {
                    return self.refuse(code, message, Some(room)).await;
                }
                match self.subscribe(room.clone(), since, epoch).await {
                    Ok((head, epoch)) => {
                        self.send(&ServerFrame::Subscribed { room, head, epoch })
                            .await
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, %room, "subscribe failed");
                        self.unsubscribe(&room);
                        self.refuse(e.code(), e.public_message(), Some(room)).await
                    }
                }
            }
            ClientFrame::Unsubscribe { room } => {
                self.unsubscribe(&room);
                self.send(&ServerFrame::Unsubscribed { room }).await
            }
            ClientFrame::Publish {
                room,
                kind,
                data,
                reference,
            } => self.publish(room, NewEvent { kind, data }, reference).await,
            ClientFrame::Ping => self.send(&ServerFrame::Pong).await,
            ClientFrame::Pong => Ok(()),
        }
    }

    /// Whether this connection may subscribe to `room` now, or the refusal: its own room limit,
    /// the server's, the identity's rooms, and its allowance of subscribes (each costs queries).
    fn may_subscribe(&mut self, room: &RoomName) -> Result<(), (ErrorCode, String)> {
        let config = &self.state.config;
        let hub = &self.state.hub;
        if !self.rooms.contains_key(room) && self.rooms.len() >= config.max_rooms_per_connection {
            let most = config.max_rooms_per_connection;
            let message = format!("a connection may watch at most {most} rooms");
            return Err((ErrorCode::TooManyRooms, message));
        }
        if !hub.is_open(room) && hub.room_count() >= config.max_rooms {
            let message = format!(
                "this server has watchers in as many rooms as it allows ({}); try again later",
                config.max_rooms
            );
            return Err((ErrorCode::TooManyRooms, message));
        }
        if !self.identity.may_read(room.as_str()) {
            return Err((ErrorCode::Forbidden, format!("you may not watch {room}")));
        }
        if !self.subscribes.take() {
            let message = format!(
                "subscribing faster than {} a second; wait and subscribe again",
                config.subscribe_rate
            );
            return Err((ErrorCode::RateLimited, message));
        }
        Ok(())
    }

    /// Queues the event for the writer; its `published` reply follows once it is committed, while
    /// this connection goes on reading.
    async fn publish(&mut self, room: RoomName, event: NewEvent, reference: Option<Value>) -> Step {
        if !self.identity.may_publish_event(room.as_str(), event.kind) {
            let message = format!("you may not publish to {room}");
            let refused = publish_refused(ErrorCode::Forbidden, message, room, reference);
            return self.send(&refused).await;
        }
        if let Err(limited) = self.state.auth.take_publish(&self.credential) {
            let refused =
                publish_refused(limited.code(), limited.public_message(), room, reference);
            return self.send(&refused).await;
        }
        let receipt = match self.state.ingest.enqueue(room.clone(), event).await {
            Ok(receipt) => receipt,
            Err(e) => {
                let refused = publish_refused(e.code(), e.public_message(), room, reference);
                return self.send(&refused).await;
            }
        };
        self.acks.push_back(
            async move {
                match receipt.await {
                    Ok(stored) => ServerFrame::Published {
                        room,
                        seq: stored.seq,
                        reference,
                    },
                    Err(e) => publish_refused(e.code(), e.public_message(), room, reference),
                }
            }
            .boxed(),
        );
        Ok(())
    }

    /// Joins the hub before reading the store, so every event is either replayed or pushed live
    /// (overlaps are dropped by seq). A client resuming in an epoch the room no longer has is
    /// sent `reset` and the new log from the start. Returns the newest seq sent or skipped, and
    /// the room's epoch.
    async fn subscribe(
        &mut self,
        room: RoomName,
        since: Option<i64>,
        theirs: Option<Epoch>,
    ) -> Result<(i64, Epoch), Error> {
        self.unsubscribe(&room);
        let live = self.state.hub.join(&room);
        self.rooms.insert(room.clone(), BroadcastStream::new(live));
        let (head, epoch) = self.state.store.open(&room).await?;
        self.state.hub.opened(&room, head, &epoch);
        let seq = match (since, theirs) {
            (Some(_), Some(theirs)) if theirs != epoch => {
                self.announce_reset(&room, epoch.clone()).await;
                0
            }
            (Some(since), _) => since.max(0),
            (None, _) => head,
        };
        if seq < head {
            self.announce_truncation(&room, seq, &epoch).await?;
        }
        let position = Position {
            seq,
            epoch: epoch.clone(),
        };
        self.sent.insert(room.clone(), position);
        Ok((self.replay(&room, false).await?, epoch))
    }

    /// Queues a `reset` frame: the client drops what it holds of `room`. Written with the
    /// replay that follows it; a peer already gone is noticed there.
    async fn announce_reset(&mut self, room: &RoomName, epoch: Epoch) {
        let reset = ServerFrame::Reset {
            room: room.clone(),
            epoch,
        };
        let _ = self.socket.feed(Message::Text(encode(&reset))).await;
    }

    /// Queues a `history_truncated` error when retention may have removed events after
    /// `since`: the client learns what it may not get, and what is kept follows.
    async fn announce_truncation(
        &mut self,
        room: &RoomName,
        since: i64,
        epoch: &Epoch,
    ) -> Result<(), Error> {
        let purged = self.state.store.purged(room, epoch).await?;
        if purged <= since {
            return Ok(());
        }
        let truncated = ServerFrame::Error {
            code: ErrorCode::HistoryTruncated,
            message: format!(
                "events {} to {purged} of {room} are past retention (some or all of them gone); what is kept follows",
                since + 1,
            ),
            room: Some(room.clone()),
            since: Some(purged),
            reference: None,
        };
        let limit = self.state.config.write_timeout;
        let _ = within(limit, self.socket.feed(Message::Text(encode(&truncated)))).await;
        Ok(())
    }

    /// Sends every stored event after the newest one sent, until the store has no more. With
    /// `conflate`, a metric followed in the same page by a newer sample of its series is skipped:
    /// a reader that fell behind needs the latest values, not every one.
    async fn replay(&mut self, room: &RoomName, conflate: bool) -> Result<i64, Error> {
        let mut last = self.sent.get(room).map_or(0, |position| position.seq);
        loop {
            let (page, full) = self.state.store.since(room, last, REPLAY_PAGE).await?;
            last = page.last().map_or(last, |event| event.seq);
            let read = page.len();
            let page = if conflate {
                conflate_metrics(page)
            } else {
                page
            };
            self.state.telemetry.conflated((read - page.len()) as u64);
            let (limit, frames) = (self.state.config.write_timeout, page.len() as u64);
            for event in page {
                let frame = Message::Text(encode(&ServerFrame::Event(event)));
                if within(limit, self.socket.feed(frame)).await.is_err() {
                    // The peer is gone or stopped reading: further pages would be wasted on it.
                    return Ok(last);
                }
            }
            if within(limit, self.socket.flush()).await.is_err() {
                return Ok(last);
            }
            self.state.telemetry.delivered(frames);
            if let Some(position) = self.sent.get_mut(room) {
                position.seq = last;
            }
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

    /// Writes this delivery and whatever else is already queued for the socket, then flushes once.
    async fn deliver(
        &mut self,
        room: RoomName,
        delivery: Result<Delivery, BroadcastStreamRecvError>,
    ) -> Step {
        let mut next = Some((room, delivery));
        let (mut written, mut delivered) = (0, 0);
        let mut oldest: Option<std::time::Instant> = None;
        while let Some((room, delivery)) = next.take() {
            let frame = match delivery {
                Ok(Delivery::Event {
                    seq,
                    frame,
                    published,
                }) => {
                    oldest = oldest.or(Some(published));
                    // Absent only after an unsubscribe raced this delivery: then nothing is due.
                    let due = self.sent.get_mut(&room).and_then(|sent| {
                        (seq > sent.seq).then(|| {
                            sent.seq = seq;
                            frame
                        })
                    });
                    delivered += u64::from(due.is_some());
                    due
                }
                Ok(Delivery::Presence { frame }) => Some(frame),
                Ok(Delivery::Epoch(epoch)) => {
                    let started_over = self.sent.get(&room).is_some_and(|sent| sent.epoch != epoch);
                    if started_over {
                        tracing::debug!(%room, "room's log started over; sending it anew");
                        self.announce_reset(&room, epoch.clone()).await;
                        self.sent.insert(room.clone(), Position { seq: 0, epoch });
                        Box::pin(self.resync(room, false)).await?;
                    }
                    None
                }
                Ok(Delivery::Gap) => {
                    tracing::debug!(%room, "events missing on the way here; reading them from the store");
                    Box::pin(self.resync(room, true)).await?;
                    None
                }
                Err(BroadcastStreamRecvError::Lagged(missed)) => {
                    tracing::debug!(%room, missed, "slow subscriber catching up from the store");
                    self.state.telemetry.caught_up();
                    // Boxed, as a rare path: see `serve`.
                    Box::pin(self.resync(room, true)).await?;
                    None
                }
            };
            if let Some(frame) = frame {
                let limit = self.state.config.write_timeout;
                within(limit, self.socket.feed(Message::Text(frame))).await?;
                written += 1;
            }
            if written < WRITE_BATCH {
                next = self.rooms.next().now_or_never().flatten();
            }
        }
        within(self.state.config.write_timeout, self.socket.flush()).await?;
        // Counted once a turn, and the turn's oldest publish timed in one turn of
        // `TIMED_TURNS`: shared figures touched per frame would cost the fan-out.
        self.state.telemetry.delivered(delivered);
        if let Some(published) = oldest.filter(|_| delivered > 0) {
            if self.turns.is_multiple_of(TIMED_TURNS) {
                self.state.telemetry.publish_delivered(published.elapsed());
            }
            self.turns = self.turns.wrapping_add(1);
        }
        Ok(())
    }

    /// Sends what this socket has not had of `room` from the store: it fell a whole room
    /// buffer behind or events went missing on their way to this node (then metrics are
    /// conflated), or the room's log started over.
    async fn resync(&mut self, room: RoomName, conflate: bool) -> Step {
        if let Err(e) = self.replay(&room, conflate).await {
            let since = self.sent.get(&room).map(|position| position.seq);
            self.unsubscribe(&room);
            let message = format!(
                "fell behind and could not catch up ({}); resubscribe with since",
                e.public_message()
            );
            let error = ServerFrame::Error {
                code: ErrorCode::Lagged,
                message,
                room: Some(room),
                since,
                reference: None,
            };
            return self.send(&error).await;
        }
        Ok(())
    }

    async fn refuse(&mut self, code: ErrorCode, message: String, room: Option<RoomName>) -> Step {
        self.send(&ServerFrame::Error {
            code,
            message,
            room,
            since: None,
            reference: None,
        })
        .await
    }

    async fn send(&mut self, frame: &ServerFrame) -> Step {
        if let ServerFrame::Error { code, .. } = frame {
            self.state.telemetry.refused(*code);
        }
        let limit = self.state.config.write_timeout;
        within(limit, self.socket.send(Message::Text(encode(frame)))).await
    }
}

/// Waits for a write to the socket for at most `limit`: a peer that takes none of it in that
/// time has stopped reading and is dropped. No timer is armed when the write completes at once.
async fn within(limit: Duration, write: impl Future<Output = Result<(), axum::Error>>) -> Step {
    match tokio::time::timeout(limit, write).await {
        Ok(Ok(())) => Ok(()),
        Ok(Err(_)) => Err(Closing::PeerGone),
        Err(_) => Err(Closing::Stalled),
    }
}

/// The reply to a publish that was not stored.
fn publish_refused(
    code: ErrorCode,
    message: String,
    room: RoomName,
    reference: Option<Value>,
) -> ServerFrame {
    ServerFrame::Error {
        code,
        message,
        room: Some(room),
        since: None,
        reference,
    }
}

/// Drops each metric event that a later one in `events` supersedes: one carrying samples of the
/// same series, labels included (a source's every-second batch is superseded by the next).
fn conflate_metrics(events: Vec<Event>) -> Vec<Event> {
    let series = |event: &Event| {
        (event.kind == EventKind::Metric).then(|| {
            let mut series: Vec<Series> = metrics::event_points(&event.data, event.ts)
                .into_iter()
                .map(|p| Series {
                    name: p.series,
                    labels: p.labels,
                })
                .collect();
            series.sort_unstable();
            series.dedup();
            series
        })
    };
    let mut seen = std::collections::HashSet::new();
    let mut kept: Vec<Event> = events
        .into_iter()
        .rev()
        .filter(|event| series(event).is_none_or(|s| seen.insert(s)))
        .collect();
    kept.reverse();
    kept
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn event(seq: i64, kind: EventKind, data: Value) -> Event {
        Event {
            room: RoomName::parse("r").unwrap(),
            seq,
            ts: chrono::Utc::now(),
            kind,
            data,
        }
    }

    #[test]
    fn conflation_keeps_the_newest_sample_per_series_and_every_other_event() {
        let batch = |series: &[&str]| {
            let samples: Vec<Value> = series
                .iter()
                .map(|s| json!({"series": s, "value": 1, "ts": chrono::Utc::now()}))
                .collect();
            json!({ "samples": samples })
        };
        let events = vec![
            event(1, EventKind::Metric, json!({"series": "cpu", "value": 1})),
            event(2, EventKind::Alert, json!({"text": "hot"})),
            event(3, EventKind::Metric, json!({"series": "mem", "value": 5})),
            event(4, EventKind::Metric, json!({"series": "cpu", "value": 2})),
            event(5, EventKind::Notice, json!({"text": "note"})),
            event(6, EventKind::Metric, batch(&["load", "disk"])),
            event(7, EventKind::Metric, batch(&["net"])),
            event(8, EventKind::Metric, batch(&["disk", "load"])),
            // One series name, two series: neither supersedes the other.
            event(
                9,
                EventKind::Metric,
                json!({"series": "fs", "value": 1, "labels": {"mount": "/"}}),
            ),
            event(
                10,
                EventKind::Metric,
                json!({"series": "fs", "value": 1, "labels": {"mount": "/boot"}}),
            ),
        ];
        let seqs: Vec<i64> = conflate_metrics(events).iter().map(|e| e.seq).collect();
        assert_eq!(seqs, vec![2, 3, 4, 5, 7, 8, 9, 10]);
    }
}
