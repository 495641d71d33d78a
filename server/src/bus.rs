//! How committed events reach the other nodes: nowhere on a single node (its hub is the whole
//! fan-out), or through Redis pub/sub, one channel per room, each node subscribed to the rooms
//! its sockets watch. Redis delivers at most once and a node may miss messages while it
//! reconnects; each hub puts what arrives back in seq order and reads the rest from the store
//! (see [`crate::hub`]), so nothing here needs to be reliable. The node leading the cluster's
//! jobs also hears every metrics room, for the alert evaluator (which reads what it missed from
//! the store in the same way, see [`crate::alerts::remote`]); changes to alert rules,
//! acknowledgements and silences go to every node on a channel of their own.

use std::{
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, Ordering},
    },
    time::{Duration, Instant, SystemTime, UNIX_EPOCH},
};

use app::{
    metrics::ROOM_PREFIX,
    protocol::{Epoch, RoomName},
};
use futures::StreamExt;
use redis::{AsyncConnectionConfig, Client, Msg, aio::PubSubSink};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::{
    alerts::{
        Alerts, Change, Feed,
        remote::{Heard, Remote},
    },
    error::RunError,
    fanout::Frame,
    hub::{Arrival, Hub},
    jobs::Leadership,
    store::Store,
    telemetry::Telemetry,
};

/// Every room's channel begins so, keeping Watchroom's apart from others on the same Redis.
const PREFIX: &str = "watchroom:";
/// Changes to what the alert evaluator follows; not a room's channel (no room name has `/`).
const ALERT_CHANGES: &str = "watchroom:/alerts";
/// Each node's counts of its rooms' watchers: `node`, then a line `room count` per room.
const PRESENCE: &str = "watchroom:/presence";
/// Rooms per presence message.
const PRESENCE_PART: usize = 1000;
/// Events waiting to be sent to Redis; past it (Redis slow or away) they are dropped and the
/// other nodes read them from the store.
const OUTBOX: usize = 16 * 1024;
/// Events sent to Redis in one round trip.
const PIPELINE: usize = 256;
/// Longest a connection attempt or a command may take before Redis counts as away.
const REDIS_TIMEOUT: Duration = Duration::from_secs(3);
/// The longest wait between attempts to reconnect.
const MAX_BACKOFF: Duration = Duration::from_secs(5);

/// The bus this node's hub sends on.
#[derive(Clone, Default)]
pub enum Bus {
    /// A single node.
    #[default]
    Local,
    /// Several nodes sharing one Redis.
    Redis(Arc<Redis>),
}

pub struct Redis {
    /// This node, so it skips its own messages (its hub has them already).
    node: u64,
    outbox: mpsc::Sender<Outgoing>,
    interest: mpsc::UnboundedSender<Interest>,
    status: Arc<Status>,
    telemetry: Telemetry,
}

/// What this node sends to the others.
enum Outgoing {
    Event(RoomName, Arrival),
    Change(String),
    Presence(String),
}

/// A room this node's sockets began or stopped watching.
enum Interest {
    Watch(RoomName),
    Unwatch(RoomName),
}

/// Whether Redis can be reached, for `/readyz` and `/metrics`.
#[derive(Default)]
pub struct Status {
    subscribed: AtomicBool,
    publishing: AtomicBool,
    fault: Mutex<Option<String>>,
}

impl Status {
    pub fn is_up(&self) -> bool {
        self.subscribed.load(Ordering::Relaxed) && self.publishing.load(Ordering::Relaxed)
    }

    /// `ok`, or what is wrong and what it means for this node.
    pub fn describe(&self) -> String {
        if self.is_up() {
            return "ok".into();
        }
        let fault = self.fault.lock().unwrap_or_else(|p| p.into_inner()).clone();
        format!(
            "redis unreachable ({}); serving this node's clients, other nodes' events come late from the store",
            fault.as_deref().unwrap_or("connecting")
        )
    }

    fn set(&self, flag: &AtomicBool, outcome: Result<(), String>) {
        let was = flag.swap(outcome.is_ok(), Ordering::Relaxed);
        match outcome {
            Ok(()) if !was => tracing::info!("connected to redis"),
            Ok(()) => {}
            Err(fault) => {
                if was {
                    tracing::warn!(%fault, "lost redis; reconnecting");
                }
                *self.fault.lock().unwrap_or_else(|p| p.into_inner()) = Some(fault);
            }
        }
    }
}

/// The Redis bus's tasks, started once the hub they deliver to exists.
pub struct Links {
    client: Client,
    node: u64,
    outbox: mpsc::Receiver<Outgoing>,
    interest: mpsc::UnboundedReceiver<Interest>,
    status: Arc<Status>,
    telemetry: Telemetry,
}

impl Bus {
    /// A bus through the Redis at `url`; nothing is connected until [`Links::spawn`].
    pub fn redis(url: &str, telemetry: Telemetry) -> Result<(Self, Links), RunError> {
        let client = Client::open(url)
            .map_err(|e| RunError::Refused(format!("--redis-url {url:?}: {e}")))?;
        let node = rand::random();
        let (outbox, outgoing) = mpsc::channel(OUTBOX);
        let (interest, changes) = mpsc::unbounded_channel();
        let status = Arc::new(Status::default());
        let redis = Redis {
            node,
            outbox,
            interest,
            status: status.clone(),
            telemetry: telemetry.clone(),
        };
        let links = Links {
            client,
            node,
            outbox: outgoing,
            interest: changes,
            status,
            telemetry,
        };
        Ok((Self::Redis(Arc::new(redis)), links))
    }

    /// Whether other nodes may publish and subscribe too.
    pub fn is_remote(&self) -> bool {
        matches!(self, Self::Redis(_))
    }

    /// Sends an event committed here to the other nodes, never waiting.
    pub fn send(&self, room: &RoomName, arrival: &Arrival) {
        if let Self::Redis(redis) = self
            && let Err(_) = redis
                .outbox
                .try_send(Outgoing::Event(room.clone(), arrival.clone()))
        {
            redis.telemetry.bus_dropped(1);
        }
    }

    /// Sends a change made here to the alert evaluators of the other nodes. One lost with
    /// Redis away is lost to them until they next load the store (as a new leader does).
    pub fn share(&self, change: &Change) {
        if let Self::Redis(redis) = self {
            let json = serde_json::to_string(change).expect("alert changes serialise");
            let message = format!("{:x}\n{json}", redis.node);
            if redis.outbox.try_send(Outgoing::Change(message)).is_err() {
                tracing::warn!(
                    ?change,
                    "the bus is behind; an alert change did not reach the other nodes"
                );
            }
        }
    }

    /// Tells the other nodes how many watch these rooms here; lost with Redis away, until the
    /// next refresh.
    pub fn present(&self, counts: &[(RoomName, usize)]) {
        if let Self::Redis(redis) = self
            && !counts.is_empty()
        {
            // In parts, each a modest message however many rooms a node has.
            for part in counts.chunks(PRESENCE_PART) {
                let mut message = format!("{:x}", redis.node);
                for (room, count) in part {
                    message.push_str(&format!("\n{room} {count}"));
                }
                let _ = redis.outbox.try_send(Outgoing::Presence(message));
            }
        }
    }

    /// This node's sockets began watching `room`.
    pub fn watch(&self, room: &RoomName) {
        if let Self::Redis(redis) = self {
            let _ = redis.interest.send(Interest::Watch(room.clone()));
        }
    }

    /// Nobody here watches `room` any more.
    pub fn unwatch(&self, room: &RoomName) {
        if let Self::Redis(redis) = self {
            let _ = redis.interest.send(Interest::Unwatch(room.clone()));
        }
    }

    /// How the link to the other nodes is; none on a single node.
    pub fn status(&self) -> Option<&Status> {
        match self {
            Self::Local => None,
            Self::Redis(redis) => Some(&redis.status),
        }
    }
}

/// Where what comes from the other nodes goes.
pub struct Receivers {
    pub hub: Hub,
    pub alerts: Alerts,
    /// The alert evaluator's samples, while this node leads, and where it reads those missed.
    pub feed: Feed,
    pub store: Store,
    pub leader: Leadership,
}

impl Links {
    /// Publishes this node's events and hands the other nodes' to `receivers`, reconnecting to
    /// Redis whenever it goes away, until `until`.
    pub fn spawn(self, receivers: Receivers, until: CancellationToken) {
        let config = AsyncConnectionConfig::new()
            .set_connection_timeout(REDIS_TIMEOUT)
            .set_response_timeout(REDIS_TIMEOUT);
        tokio::spawn(publish(
            self.client.clone(),
            config,
            self.node,
            self.outbox,
            self.status.clone(),
            self.telemetry,
            until.clone(),
        ));
        tokio::spawn(subscribe(
            self.client,
            self.node,
            self.interest,
            self.status,
            receivers,
            until,
        ));
    }
}

async fn publish(
    client: Client,
    config: AsyncConnectionConfig,
    node: u64,
    mut outbox: mpsc::Receiver<Outgoing>,
    status: Arc<Status>,
    telemetry: Telemetry,
    until: CancellationToken,
) {
    let mut backoff = Backoff::default();
    while !until.is_cancelled() {
        let connected = tokio::select! {
            connected = client.get_multiplexed_async_connection_with_config(&config) => connected,
            _ = until.cancelled() => return,
        };
        match connected {
            Ok(mut connection) => {
                status.set(&status.publishing, Ok(()));
                backoff.reset();
                loop {
                    let first = tokio::select! {
                        first = outbox.recv() => first,
                        _ = until.cancelled() => None,
                    };
                    let Some(first) = first else { return };
                    let mut pipe = redis::pipe();
                    let mut sent = 0;
                    for outgoing in std::iter::once(first)
                        .chain(std::iter::from_fn(|| outbox.try_recv().ok()))
                        .take(PIPELINE)
                    {
                        match outgoing {
                            Outgoing::Event(room, arrival) => {
                                pipe.publish(channel(&room), encode(node, &arrival))
                            }
                            Outgoing::Change(message) => pipe.publish(ALERT_CHANGES, message),
                            Outgoing::Presence(message) => pipe.publish(PRESENCE, message),
                        }
                        .ignore();
                        sent += 1;
                    }
                    if let Err(e) = pipe.query_async::<()>(&mut connection).await {
                        telemetry.bus_dropped(sent);
                        status.set(&status.publishing, Err(e.to_string()));
                        break;
                    }
                }
            }
            Err(e) => status.set(&status.publishing, Err(e.to_string())),
        }
        // What waits now would reach the other nodes late; they read it from the store instead.
        let mut dropped = 0;
        while outbox.try_recv().is_ok() {
            dropped += 1;
        }
        telemetry.bus_dropped(dropped);
        let _ = until.run_until_cancelled(backoff.wait()).await;
    }
}

async fn subscribe(
    client: Client,
    node: u64,
    mut interest: mpsc::UnboundedReceiver<Interest>,
    status: Arc<Status>,
    receivers: Receivers,
    until: CancellationToken,
) {
    let Receivers {
        hub,
        alerts,
        feed,
        store,
        mut leader,
    } = receivers;
    let heard = Remote::new(store, feed, node).spawn();
    let mut backoff = Backoff::default();
    while !until.is_cancelled() {
        // Joins and leaves while away are in what the hub watches when the subscription is made
        // anew: the queue need not keep them (churn during a long outage would pile up).
        while interest.try_recv().is_ok() {}
        let connected = tokio::select! {
            connected = tokio::time::timeout(REDIS_TIMEOUT, client.get_async_pubsub()) => {
                connected.unwrap_or_else(|_| Err(timed_out()))
            }
            _ = until.cancelled() => return,
        };
        let fault = match connected {
            Ok(pubsub) => {
                let (mut sink, mut stream) = pubsub.split();
                let listening = async {
                    // Changes queued before this are applied again after it: in their order,
                    // they end where the hub stands.
                    let mut channels: Vec<String> = hub.open_rooms().iter().map(channel).collect();
                    channels.extend([ALERT_CHANGES.into(), PRESENCE.into()]);
                    sink.subscribe(channels).await?;
                    if leader.is_leading() {
                        sink.psubscribe(metrics_rooms()).await?;
                    }
                    status.set(&status.subscribed, Ok(()));
                    backoff.reset();
                    // Whatever was published while this node was not listening.
                    let sweep = hub.clone();
                    tokio::spawn(async move { sweep.sweep().await });
                    loop {
                        tokio::select! {
                            message = stream.next() => match message {
                                Some(message) if message.from_pattern() => sampled(&heard, &message),
                                Some(message) if message.get_channel_name() == ALERT_CHANGES => {
                                    changed(&alerts, node, &message).await
                                }
                                Some(message) if message.get_channel_name() == PRESENCE => {
                                    present(&hub, node, &message)
                                }
                                Some(message) => receive(&hub, node, &message),
                                None => return Err(redis::RedisError::from(std::io::Error::from(
                                    std::io::ErrorKind::ConnectionReset,
                                ))),
                            },
                            change = interest.recv() => match change {
                                Some(change) => follow(&mut sink, change).await?,
                                None => return Ok(()),
                            },
                            leading = leader.changed() => match leading {
                                true => {
                                    // What was published while another node led is not ours.
                                    let _ = heard.send(None).await;
                                    sink.psubscribe(metrics_rooms()).await?
                                }
                                false => sink.punsubscribe(metrics_rooms()).await?,
                            },
                            _ = until.cancelled() => return Ok(()),
                        }
                    }
                };
                match listening.await {
                    Ok(()) => return,
                    Err(e) => e.to_string(),
                }
            }
            Err(e) => e.to_string(),
        };
        status.set(&status.subscribed, Err(fault));
        let _ = until.run_until_cancelled(backoff.wait()).await;
    }
}

async fn follow(sink: &mut PubSubSink, change: Interest) -> redis::RedisResult<()> {
    match change {
        Interest::Watch(room) => sink.subscribe(channel(&room)).await,
        Interest::Unwatch(room) => sink.unsubscribe(channel(&room)).await,
    }
}

fn receive(hub: &Hub, node: u64, message: &Msg) {
    let room = message
        .get_channel_name()
        .strip_prefix(PREFIX)
        .and_then(|name| RoomName::parse(name).ok());
    match (room, decode(message.get_payload_bytes())) {
        (Some(room), Some((from, arrival))) if from != node => hub.arrive(&room, arrival),
        (Some(_), Some(_)) => {}
        _ => tracing::debug!(
            channel = message.get_channel_name(),
            "unreadable message on the bus; dropped"
        ),
    }
}

/// Every metrics room's events, for the alert evaluator of the node leading (its own too: they
/// count seqs).
fn sampled(heard: &mpsc::Sender<Heard>, message: &Msg) {
    let room = message
        .get_channel_name()
        .strip_prefix(PREFIX)
        .and_then(|name| RoomName::parse(name).ok());
    if let (Some(room), Some((from, arrival))) = (room, decode(message.get_payload_bytes())) {
        // Full: dropped, and read from the store when the room's next event reveals it.
        let _ = heard.try_send(Some((room, from, arrival)));
    }
}

/// Another node's counts of watchers.
fn present(hub: &Hub, node: u64, message: &Msg) {
    let text = std::str::from_utf8(message.get_payload_bytes()).unwrap_or_default();
    match presence(text) {
        Some((from, counts)) if from != node => hub.present_elsewhere(from, counts),
        Some(_) => {}
        None => tracing::debug!("unreadable presence on the bus; dropped"),
    }
}

/// The node a presence message is from and its counts; lines that are not `room count` are
/// skipped.
fn presence(text: &str) -> Option<(u64, Vec<(RoomName, usize)>)> {
    let mut lines = text.lines();
    let from = u64::from_str_radix(lines.next()?, 16).ok()?;
    let counts = lines
        .filter_map(|line| {
            let (room, count) = line.rsplit_once(' ')?;
            Some((RoomName::parse(room).ok()?, count.parse().ok()?))
        })
        .collect();
    Some((from, counts))
}

async fn changed(alerts: &Alerts, node: u64, message: &Msg) {
    let text = std::str::from_utf8(message.get_payload_bytes()).unwrap_or_default();
    let Some((from, json)) = text.split_once('\n') else {
        return;
    };
    if u64::from_str_radix(from, 16).is_ok_and(|from| from == node) {
        return;
    }
    match serde_json::from_str::<Change>(json) {
        Ok(change) => {
            let _ = alerts.apply(change).await;
        }
        Err(e) => tracing::warn!(error = %e, "unreadable alert change on the bus; dropped"),
    }
}

fn timed_out() -> redis::RedisError {
    std::io::Error::from(std::io::ErrorKind::TimedOut).into()
}

/// Every metrics room's channel, for the leader's alert evaluator.
fn metrics_rooms() -> String {
    format!("{PREFIX}{ROOM_PREFIX}*")
}

fn channel(room: &RoomName) -> String {
    format!("{PREFIX}{room}")
}

/// `node seq published-µs epoch`, a newline, then the frame as sockets get it: a node reads the
/// line and passes the frame on without parsing it.
fn encode(node: u64, arrival: &Arrival) -> String {
    let published = SystemTime::now()
        .checked_sub(arrival.published.elapsed())
        .and_then(|at| at.duration_since(UNIX_EPOCH).ok())
        .map_or(0, |since| since.as_micros());
    format!(
        "{node:x} {} {published} {}\n{}",
        arrival.seq,
        arrival.epoch.0,
        arrival.frame.payload()
    )
}

fn decode(payload: &[u8]) -> Option<(u64, Arrival)> {
    let text = std::str::from_utf8(payload).ok()?;
    let (line, frame) = text.split_once('\n')?;
    let mut fields = line.split(' ');
    let node = u64::from_str_radix(fields.next()?, 16).ok()?;
    let seq = fields.next()?.parse().ok()?;
    let published: u128 = fields.next()?.parse().ok()?;
    let epoch = Epoch(fields.next()?.to_owned());
    // When it reached the node it was published on, as far as the two clocks agree.
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .ok()?
        .as_micros();
    let ago = Duration::from_micros(now.saturating_sub(published) as u64);
    let published = Instant::now().checked_sub(ago).unwrap_or_else(Instant::now);
    let arrival = Arrival {
        seq,
        epoch,
        frame: Frame::text(frame),
        published,
    };
    Some((node, arrival))
}

/// Waits between reconnects: from 100 ms, doubling to [`MAX_BACKOFF`].
#[derive(Default)]
struct Backoff(u32);

impl Backoff {
    async fn wait(&mut self) {
        let wait = Duration::from_millis(100) * 2u32.pow(self.0.min(6));
        self.0 += 1;
        tokio::time::sleep(wait.min(MAX_BACKOFF)).await;
    }

    fn reset(&mut self) {
        self.0 = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn presence_reads_its_node_and_counts_and_skips_what_is_not_a_count() {
        let room = |name: &str| RoomName::parse(name).unwrap();
        assert_eq!(
            presence("2a\nops 3\nnot-a-count\nbad room! 2\nwall.main -1\nwall.main 0"),
            Some((42, vec![(room("ops"), 3), (room("wall.main"), 0)]))
        );
        assert_eq!(presence("not hex\nops 3"), None);
        assert_eq!(presence(""), None);
    }

    #[test]
    fn a_message_carries_the_frame_unchanged_with_its_seq_epoch_and_node() {
        let arrival = Arrival {
            seq: 42,
            epoch: Epoch("0a1b2c".into()),
            frame: Frame::text("{\"type\":\"event\",\"data\":\"line\\nbreak\"}"),
            published: Instant::now(),
        };
        let (node, read) = decode(encode(0xfeed, &arrival).as_bytes()).unwrap();
        assert_eq!(node, 0xfeed);
        assert_eq!(read.seq, 42);
        assert_eq!(read.epoch, arrival.epoch);
        assert_eq!(read.frame, arrival.frame);
        assert!(read.published.elapsed() < Duration::from_secs(1));
    }

    #[test]
    fn an_unreadable_message_is_refused() {
        for payload in ["", "no line", "zz 1 2 e\n{}", "1 x 2 e\n{}", "1 2\n{}"] {
            assert!(decode(payload.as_bytes()).is_none(), "{payload:?}");
        }
    }
}
