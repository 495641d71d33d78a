//! One WebSocket connection: the rooms it watches, replay from the store, publishes, heartbeats
//! and limits. Live pushes do not pass through it: the fan-out writes them to the socket
//! (`outbox`), and calls the connection only when a room's watch needs it (`watch`).

pub(crate) mod framing;
mod handshake;
mod outbox;
mod watch;

use std::{collections::HashMap, sync::Arc, time::Duration};

use app::auth::Identity;
use app::{
    metrics::{self, Series},
    protocol::{ClientFrame, Epoch, ErrorCode, Event, EventKind, NewEvent, RoomName, ServerFrame},
};
use axum::{
    Extension,
    extract::State,
    http::HeaderMap,
    response::{IntoResponse, Response},
};
use futures::{FutureExt, StreamExt, future::BoxFuture, stream::FuturesOrdered};
use serde_json::Value;
use tokio::{
    net::TcpStream,
    time::{Instant, MissedTickBehavior, interval_at},
};

use crate::{
    AppState,
    auth::{Credential, Hold},
    error::Error,
    fanout::Joined,
    hub::encode,
    listener::Places,
    rate::TokenBucket,
};
use framing::{Broken, Incoming, Reader, code};
use handshake::{Handshake, Socket};
use outbox::Outbox;
use watch::{Need, Watch};

/// How long a closing socket waits for the client's close frame: a browser answers at once;
/// past it the socket is dropped anyway.
const CLOSE_WAIT: Duration = Duration::from_millis(500);

/// Events read from the store per query while replaying.
const REPLAY_PAGE: i64 = 500;
/// Publishes awaiting their commit per connection; more wait for the first to finish.
const MAX_PENDING_PUBLISHES: usize = 256;

/// Accepts a socket from an identity the gate found, from a page of this site (a browser sends
/// its page's origin: a page elsewhere must not open a socket with the user's cookie), and
/// within the identity's share of sockets.
pub async fn upgrade(
    State(state): State<AppState>,
    Extension(identity): Extension<Identity>,
    Extension(credential): Extension<Credential>,
    headers: HeaderMap,
    handshake: Handshake,
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
    handshake.accept(move |socket| {
        let drain = state.connections.clone();
        drain.track_future(serve(socket, state, identity, credential, hold))
    })
}

/// Why a connection ended, when it did not simply go away.
enum Closing {
    PeerGone,
    /// The client sent its close frame.
    PeerClosed,
    Silent,
    TooLarge,
    /// The client broke the protocol, as the reason says.
    Broken(&'static str),
    InvalidText,
    Revoked,
    ShuttingDown,
    /// It stopped taking what is written to it.
    Stalled,
}

type Step = Result<(), Closing>;

struct Connection {
    state: AppState,
    tcp: Arc<TcpStream>,
    /// Reads the client's frames.
    reader: Reader,
    /// Its places under the listener's caps, held while it is open.
    _held: Places,
    /// Every frame to the client goes through it, the fan-out's and the connection's own.
    outbox: Arc<Outbox>,
    watches: HashMap<RoomName, (Arc<Watch>, Joined)>,
    identity: Identity,
    /// Whose publishes these are: its allowance is shared with its other sockets and requests.
    credential: Credential,
    /// Replies to publishes, in the order they were made.
    acks: FuturesOrdered<BoxFuture<'static, ServerFrame>>,
    /// Each subscribe costs queries: a client that cycles subscribe and unsubscribe is slowed.
    subscribes: TokenBucket,
}

/// Serves one socket until it closes. `hold`, its place under its credential, is kept (and so
/// counted) until then.
async fn serve(
    socket: Socket,
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
    let Socket {
        tcp,
        held,
        read_ahead,
    } = socket;
    // Copied, and the original dropped here: the bytes read ahead are a slice of the HTTP
    // connection's whole read buffer, which would otherwise stay as long as the socket is open.
    let copied = read_ahead.to_vec();
    drop(read_ahead);
    let tcp = Arc::new(tcp);
    let outbox = Arc::new(Outbox::new(tcp.clone()));
    let reader = Reader::new(copied, state.config.max_frame_bytes);
    let mut conn = Connection {
        identity,
        credential,
        state,
        tcp,
        reader,
        _held: held,
        outbox: outbox.clone(),
        watches: HashMap::new(),
        acks: FuturesOrdered::new(),
        subscribes,
    };
    let mut heartbeat = interval_at(Instant::now() + heartbeat_every, heartbeat_every);
    heartbeat.set_missed_tick_behavior(MissedTickBehavior::Delay);
    let mut last_heard = Instant::now();

    // Made once, and again only after they fire: a fresh one per turn would lock a waiter list.
    let stopped = stop.cancelled();
    tokio::pin!(stopped);
    let called = outbox.wake.notified();
    tokio::pin!(called);

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
            // Not read while its pushes are refused: the client must take what waits first.
            incoming = conn.reader.next(&conn.tcp), if conn.acks.len() < MAX_PENDING_PUBLISHES && !outbox.full() => match incoming {
                Ok(message) => {
                    last_heard = Instant::now();
                    // Boxed: handling a frame (a subscribe's replay, a publish) takes a large
                    // future, which would otherwise sit inline in every idle watcher's task.
                    Box::pin(conn.receive(message)).await
                }
                Err(Broken::Gone) => Err(Closing::PeerGone),
                Err(Broken::TooLarge) => Err(Closing::TooLarge),
                Err(Broken::InvalidText) => Err(Closing::InvalidText),
                Err(Broken::Protocol(why)) => Err(Closing::Broken(why)),
            },
            () = &mut called => {
                called.set(outbox.wake.notified());
                // Boxed, as a rare path: see above.
                Box::pin(conn.attend()).await
            }
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

impl Connection {
    /// Ends the connection as `step` says: answers what it took, leaves its rooms, and sends
    /// the close frame with its reason when there is one.
    async fn close(mut self, step: Step) {
        let close = match step {
            // Answered in kind (RFC 6455 §5.5.1).
            Err(Closing::PeerClosed) => Some((code::NORMAL, "")),
            Err(Closing::Silent) => Some((code::POLICY, "no frame within two heartbeat intervals")),
            Err(Closing::TooLarge) => {
                Some((code::TOO_LARGE, "frame larger than the server accepts"))
            }
            Err(Closing::Broken(why)) => Some((code::PROTOCOL, why)),
            Err(Closing::InvalidText) => Some((code::INVALID_TEXT, "text frames must be UTF-8")),
            Err(Closing::Revoked) => Some((
                code::POLICY,
                "the session or token is no longer valid; sign in again",
            )),
            Err(Closing::ShuttingDown) => {
                Some((code::RESTART, "server restarting; resume with since"))
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
            self.outbox.queue(framing::close(code, reason));
            let answered = matches!(step, Err(Closing::PeerClosed));
            if self.flush().await.is_ok() && !answered {
                // The closing handshake: read (and drop) what the client still sends until its own
                // close. Closing a socket with unread bytes resets it, and the reset can overtake
                // the last answers and the close frame on their way to the client.
                let drained = async {
                    loop {
                        match self.reader.next(&self.tcp).await {
                            Ok(Incoming::Close) | Err(Broken::Gone) => break,
                            Ok(_) => {}
                            // Past a broken frame nothing reads as frames: dropped as it comes.
                            Err(_) => self.reader.forget(),
                        }
                    }
                };
                let _ = tokio::time::timeout(CLOSE_WAIT, drained).await;
            }
        }
    }

    async fn receive(&mut self, message: Incoming) -> Step {
        match message {
            Incoming::Text(text) => match serde_json::from_str::<ClientFrame>(&text) {
                Ok(frame) => self.handle(frame).await,
                Err(e) => {
                    self.refuse(ErrorCode::BadFrame, format!("unreadable frame: {e}"), None)
                        .await
                }
            },
            Incoming::Binary => {
                let message = "frames are JSON text; binary is not accepted".to_owned();
                self.refuse(ErrorCode::BadFrame, message, None).await
            }
            Incoming::Ping(payload) => {
                self.outbox.queue(framing::pong(&payload));
                self.flush().await
            }
            Incoming::Close => Err(Closing::PeerClosed),
            Incoming::Pong => Ok(()),
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
                        let subscribed = ServerFrame::Subscribed {
                            room: room.clone(),
                            head,
                            epoch,
                        };
                        self.send(&subscribed).await?;
                        self.go_live(room).await
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
        if !self.watches.contains_key(room) && self.watches.len() >= config.max_rooms_per_connection
        {
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
    /// (overlaps are dropped by seq; pushes wait in the watch until the replay is written). A
    /// client resuming in an epoch the room no longer has is sent `reset` and the new log from
    /// the start. Returns the newest seq sent or skipped, and the room's epoch.
    async fn subscribe(
        &mut self,
        room: RoomName,
        since: Option<i64>,
        theirs: Option<Epoch>,
    ) -> Result<(i64, Epoch), Error> {
        self.unsubscribe(&room);
        let watch = Arc::new(Watch::holding(self.outbox.clone()));
        let joined = self.state.hub.join(&room, watch.clone());
        self.watches.insert(room.clone(), (watch.clone(), joined));
        let (head, epoch) = self.state.store.open(&room).await?;
        self.state.hub.opened(&room, head, &epoch);
        let seq = match (since, theirs) {
            (Some(_), Some(theirs)) if theirs != epoch => {
                self.announce_reset(&room, epoch.clone());
                0
            }
            (Some(since), _) => since.max(0),
            (None, _) => head,
        };
        if seq < head {
            self.announce_truncation(&room, seq, &epoch).await?;
        }
        watch.opened(seq, epoch.clone());
        Ok((self.replay(&room, &watch, false).await?, epoch))
    }

    /// Lets `room`'s pushes through once what the connection wrote of it from the store is out,
    /// seeing to the watch first when it fell behind or restarted meanwhile.
    async fn go_live(&mut self, room: RoomName) -> Step {
        match self.watches.get(&room).map(|(watch, _)| watch.go_live()) {
            Some(Need::CatchUp | Need::Recheck) => self.tend(room).await,
            Some(Need::Nothing) | None => Ok(()),
        }
    }

    /// Writes what waits for the socket, then sees to the watches that asked for it.
    async fn attend(&mut self) -> Step {
        self.flush().await?;
        if self.outbox.take_call() {
            let due: Vec<RoomName> = self
                .watches
                .iter()
                .filter(|(_, (watch, _))| watch.need() != Need::Nothing)
                .map(|(room, _)| room.clone())
                .collect();
            for room in due {
                self.tend(room).await?;
            }
        }
        Ok(())
    }

    /// Brings the client's copy of `room` up to date from the store and lets pushes through
    /// again: it fell behind (the socket stopped taking them, or events went missing on the way
    /// here: metrics are conflated), or the room's log may have started over.
    async fn tend(&mut self, room: RoomName) -> Step {
        let Some(watch) = self.watches.get(&room).map(|(watch, _)| watch.clone()) else {
            return Ok(());
        };
        let mut need = watch.need();
        while need != Need::Nothing {
            watch.hold();
            let conflate = need == Need::CatchUp;
            if conflate {
                tracing::debug!(%room, "subscriber behind; catching up from the store");
                self.state.telemetry.caught_up();
            }
            let caught_up = async {
                if need == Need::Recheck {
                    self.recheck(&room, &watch).await?;
                }
                self.replay(&room, &watch, conflate).await
            };
            if let Err(e) = caught_up.await {
                return self.lagged(room, &watch, e).await;
            }
            self.flush().await?;
            need = watch.go_live();
        }
        Ok(())
    }

    /// Asks the store for `room`'s epoch: a log that started over is sent anew, after `reset`.
    async fn recheck(&mut self, room: &RoomName, watch: &Watch) -> Result<(), Error> {
        let (_, epoch) = self.state.store.open(room).await?;
        if watch.position().1.as_ref() != Some(&epoch) {
            tracing::debug!(%room, "room's log started over; sending it anew");
            self.announce_reset(room, epoch.clone());
            watch.start_over(epoch);
        }
        Ok(())
    }

    /// Gives up on `room` after the store failed it: the client is told where it stands and
    /// subscribes again itself.
    async fn lagged(&mut self, room: RoomName, watch: &Watch, e: Error) -> Step {
        let since = Some(watch.position().0);
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
        self.send(&error).await
    }

    /// Queues a `reset` frame: the client drops what it holds of `room`. Written with the
    /// replay that follows it.
    fn announce_reset(&mut self, room: &RoomName, epoch: Epoch) {
        let reset = ServerFrame::Reset {
            room: room.clone(),
            epoch,
        };
        self.outbox.queue(encode(&reset).into_bytes());
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
        self.outbox.queue(encode(&truncated).into_bytes());
        Ok(())
    }

    /// Sends every stored event after the client's seq, until the store has no more. With
    /// `conflate`, a metric followed in the same page by a newer sample of its series is skipped:
    /// a reader that fell behind needs the latest values, not every one.
    async fn replay(
        &mut self,
        room: &RoomName,
        watch: &Watch,
        conflate: bool,
    ) -> Result<i64, Error> {
        let mut last = watch.position().0;
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
            let frames = page.len() as u64;
            for event in page {
                self.outbox
                    .queue(encode(&ServerFrame::Event(event)).into_bytes());
                if self.outbox.full() && self.flush().await.is_err() {
                    // The peer is gone or stopped reading: further pages would be wasted on it.
                    return Ok(last);
                }
            }
            if self.flush().await.is_err() {
                return Ok(last);
            }
            self.state.telemetry.delivered(frames);
            watch.advance(last);
            if !full {
                return Ok(last);
            }
        }
    }

    fn unsubscribe(&mut self, room: &RoomName) {
        if let Some((watch, joined)) = self.watches.remove(room) {
            watch.leave();
            self.state.hub.leave(room, joined);
        }
    }

    fn leave_all(&mut self) {
        let rooms: Vec<RoomName> = self.watches.keys().cloned().collect();
        for room in rooms {
            self.unsubscribe(&room);
        }
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
        self.outbox.queue(encode(frame).into_bytes());
        self.flush().await
    }

    /// Writes out what waits for the socket: a peer that takes none of it for the write
    /// timeout has stopped reading and is dropped.
    async fn flush(&mut self) -> Step {
        match self.outbox.flush(self.state.config.write_timeout).await {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::TimedOut => Err(Closing::Stalled),
            Err(_) => Err(Closing::PeerGone),
        }
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
