//! The rooms with members on this node. Events reach a room from this node's writer and from the
//! other nodes through the bus, in any order and possibly with some lost on the way; a room hands
//! them to the fan-out in seq order, each once, filling what is missing from the store.

use std::{
    collections::{BTreeMap, HashMap},
    sync::{Arc, Mutex, MutexGuard},
    time::{Duration, Instant},
};

use app::protocol::{Epoch, Event, RoomName, ServerFrame};
use tokio_util::sync::CancellationToken;

use crate::{
    bus::Bus,
    fanout::{Delivery, Fanout, Frame, Joined, Member},
    store::Store,
    telemetry::Telemetry,
};

/// How many events, and how many bytes of them, a room holds that came before their turn while
/// those in between are read from the store; past either its members read what they lack
/// themselves.
const EARLY_EVENTS: usize = 1024;
const EARLY_BYTES: usize = 1024 * 1024;
/// How long an event that came ahead of its turn waits for those before it before they are
/// read from the store: two nodes publishing to one room usually overtake each other by less.
const FILL_GRACE: Duration = Duration::from_millis(50);
/// Events read from the store per query while filling.
const FILL_PAGE: i64 = 500;
/// The wait before trying a fill again while the store does not answer.
const FILL_RETRY: Duration = Duration::from_secs(1);
/// How often a node tells the others every room's count (it tells changes at once), so a room
/// made on a node later learns them; a node silent for three of these has stopped.
const PRESENCE_REFRESH: Duration = Duration::from_secs(10);

/// A committed event as it reaches a room: encoded once, for the sockets and the bus alike.
#[derive(Clone, Debug)]
pub struct Arrival {
    pub seq: i64,
    pub epoch: Epoch,
    pub frame: Frame,
    pub published: Instant,
}

struct Room {
    name: RoomName,
    fanout: Fanout,
    /// Members on each of the fan-out's shards.
    members: Vec<usize>,
    /// Members joined or left since the last presence frame.
    presence_due: bool,
    /// The epoch of the last event pushed.
    epoch: Option<Epoch>,
    /// The newest seq pushed, or known to be in every member's replay; none until the first
    /// event or subscriber says where the log stands.
    last: Option<i64>,
    /// Events that came before their turn, waiting for those in between.
    early: Early,
    /// Whether a fill from the store is under way (one at a time per room).
    filling: bool,
}

impl Room {
    fn new(name: RoomName, fanout: Fanout) -> Self {
        Self {
            name,
            members: vec![0; fanout.shard_count()],
            fanout,
            presence_due: false,
            epoch: None,
            last: None,
            early: Early::default(),
            filling: false,
        }
    }

    /// Pushes `arrival` if it is next, holds it if events before it are missing (returning the
    /// seq a fill must reach when one should start), and drops it if it was pushed already.
    fn arrive(&mut self, arrival: Arrival) -> Option<i64> {
        if self.epoch.as_ref() != Some(&arrival.epoch) {
            // The log started over (or this is the room's first event here): its seqs count
            // from 1 again, and nothing held of the old log is due.
            if self.epoch.is_some() {
                self.last = Some(0);
                self.early.clear();
            }
            self.epoch = Some(arrival.epoch.clone());
            self.send(Delivery::Epoch(arrival.epoch.clone()));
        }
        match self.last {
            Some(last) if arrival.seq <= last => None,
            Some(last) if arrival.seq > last + 1 && self.early.full() => {
                // Held as many as a room holds while the store does not answer: the members take
                // it from here, each from where it is.
                self.early.clear();
                self.last = Some(arrival.seq);
                self.send(Delivery::Gap);
                None
            }
            Some(last) if arrival.seq > last + 1 => {
                let target = arrival.seq - 1;
                self.early.insert(arrival);
                (!self.filling).then(|| {
                    self.filling = true;
                    target
                })
            }
            _ => {
                self.push(arrival);
                while let Some(next) = self.early.first() {
                    let last = self.last.unwrap_or(0);
                    if next > last + 1 {
                        break;
                    }
                    let held = self.early.take_first().expect("it was just seen");
                    if next == last + 1 {
                        self.push(held);
                    }
                }
                None
            }
        }
    }

    fn push(&mut self, arrival: Arrival) {
        self.last = Some(arrival.seq);
        self.send(Delivery::Event {
            seq: arrival.seq,
            frame: arrival.frame,
            published: arrival.published,
        });
    }

    /// Hands `delivery` to each shard with members of this room.
    fn send(&self, delivery: Delivery) {
        for (shard, _) in self.members.iter().enumerate().filter(|(_, n)| **n > 0) {
            self.fanout.push(&self.name, shard, delivery.clone());
        }
    }

    fn watchers(&self) -> usize {
        self.members.iter().sum()
    }

    /// Gives up on the events before the first held one: the store no longer has them.
    fn skip_gap(&mut self) {
        if let Some(next) = self.early.take_first() {
            self.last = Some(next.seq - 1);
            self.arrive(next);
        }
    }
}

/// Events that came before their turn, by seq.
#[derive(Default)]
struct Early {
    events: BTreeMap<i64, Arrival>,
    /// Their frames' bytes.
    bytes: usize,
}

impl Early {
    fn first(&self) -> Option<i64> {
        self.events.keys().next().copied()
    }

    fn insert(&mut self, arrival: Arrival) {
        self.bytes += arrival.frame.bytes().len();
        if let Some(twice) = self.events.insert(arrival.seq, arrival) {
            self.bytes -= twice.frame.bytes().len();
        }
    }

    fn take_first(&mut self) -> Option<Arrival> {
        let (_, first) = self.events.pop_first()?;
        self.bytes -= first.frame.bytes().len();
        Some(first)
    }

    fn clear(&mut self) {
        *self = Self::default();
    }

    fn full(&self) -> bool {
        self.events.len() >= EARLY_EVENTS || self.bytes >= EARLY_BYTES
    }
}

/// Each room's watchers on the other nodes, by node, as last told and when.
type Elsewhere = HashMap<RoomName, HashMap<u64, (usize, Instant)>>;

#[derive(Clone)]
pub struct Hub {
    rooms: Arc<Mutex<HashMap<RoomName, Room>>>,
    elsewhere: Arc<Mutex<Elsewhere>>,
    /// Rooms the last member here left since the other nodes were last told.
    departed: Arc<Mutex<Vec<RoomName>>>,
    /// Where missing events are read from.
    store: Store,
    fanout: Fanout,
    /// The other nodes.
    bus: Bus,
    telemetry: Telemetry,
}

impl Hub {
    /// Starts the fan-out's threads.
    pub fn new(store: Store, bus: Bus, telemetry: Telemetry) -> Self {
        Self {
            rooms: Arc::default(),
            elsewhere: Arc::default(),
            departed: Arc::default(),
            store,
            fanout: Fanout::spawn(telemetry.clone()),
            bus,
            telemetry,
        }
    }

    fn rooms(&self) -> MutexGuard<'_, HashMap<RoomName, Room>> {
        lock(&self.rooms)
    }

    /// Makes `member` one of `room`'s, creating the room on first use. What the room pushes from
    /// here on reaches it.
    pub fn join(&self, room: &RoomName, member: Arc<dyn Member>) -> Joined {
        let mut rooms = self.rooms();
        let entry = rooms.entry(room.clone()).or_insert_with(|| {
            self.bus.watch(room);
            Room::new(room.clone(), self.fanout.clone())
        });
        entry.presence_due = true;
        let joined = self.fanout.join(room, member);
        entry.members[joined.shard()] += 1;
        joined
    }

    /// Tells `room` where its log stood when a member read it after joining: everything up to
    /// `head` is in that member's replay, so a room that knew nothing yet pushes from there on.
    pub fn opened(&self, room: &RoomName, head: i64, epoch: &Epoch) {
        if let Some(room) = self.rooms().get_mut(room)
            && room.last.is_none()
            && room.epoch.as_ref().is_none_or(|ours| ours == epoch)
        {
            room.last = Some(head);
            room.epoch = Some(epoch.clone());
        }
    }

    /// Takes a member out of `name`; frees the room once nobody is in it.
    pub fn leave(&self, name: &RoomName, joined: Joined) {
        let mut rooms = self.rooms();
        let Some(room) = rooms.get_mut(name) else {
            return;
        };
        room.members[joined.shard()] -= 1;
        self.fanout.leave(name, joined);
        if room.watchers() == 0 {
            rooms.remove(name);
            self.bus.unwatch(name);
            if self.bus.is_remote() {
                lock(&self.departed).push(name.clone());
            }
        } else {
            room.presence_due = true;
        }
    }

    /// Pushes an event this node committed to the room's members here, and to the other nodes.
    pub fn publish(&self, event: &Event, epoch: &Epoch, published: Instant) {
        // A bulk of samples nobody watches is not even encoded.
        if !self.bus.is_remote() && !self.is_open(&event.room) {
            return;
        }
        let arrival = Arrival {
            seq: event.seq,
            epoch: epoch.clone(),
            frame: encode(&ServerFrame::Event(event.clone())),
            published,
        };
        self.bus.send(&event.room, &arrival);
        self.arrive(&event.room, arrival);
    }

    /// Pushes an event committed here or on another node to the room's members in its turn.
    pub fn arrive(&self, name: &RoomName, arrival: Arrival) {
        let target = match self.rooms().get_mut(name) {
            Some(room) => room.arrive(arrival),
            None => return,
        };
        if let Some(target) = target {
            self.spawn_fill(name.clone(), target, FILL_GRACE);
        }
    }

    /// Reads from the store what `name` is missing up to `target` (and any later gap found on
    /// the way), after `grace` for it to arrive by itself.
    fn spawn_fill(&self, name: RoomName, mut target: i64, grace: Duration) {
        let hub = self.clone();
        tokio::spawn(async move {
            tokio::time::sleep(grace).await;
            loop {
                let (after, epoch) = {
                    let mut rooms = hub.rooms();
                    let Some(room) = rooms.get_mut(&name) else {
                        return;
                    };
                    let last = room.last.unwrap_or(0);
                    if let Some(first) = room.early.first() {
                        target = target.max(first - 1);
                    }
                    if last >= target {
                        room.filling = false;
                        return;
                    }
                    (last, room.epoch.clone())
                };
                match hub.fill(&name, after, epoch.as_ref()).await {
                    Ok(true) => {}
                    Ok(false) => {
                        tracing::warn!(room = %name, after, target, "events missing from the store; skipped");
                        let mut rooms = hub.rooms();
                        let Some(room) = rooms.get_mut(&name) else {
                            return;
                        };
                        room.skip_gap();
                        if room.last.unwrap_or(0) < target {
                            room.last = Some(target);
                        }
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, room = %name, "filling from the store failed; trying again");
                        tokio::time::sleep(FILL_RETRY).await;
                    }
                }
            }
        });
    }

    /// Pushes one page of `name`'s stored events after `after`; false when the store has none.
    async fn fill(
        &self,
        name: &RoomName,
        after: i64,
        epoch: Option<&Epoch>,
    ) -> crate::Result<bool> {
        let head = self.store.head(name).await?;
        // The log started over since: its first events are due, under the new epoch.
        let after = match (&head.epoch, epoch) {
            (Some(theirs), Some(ours)) if theirs != ours => 0,
            _ => after,
        };
        let (events, _) = self.store.since(name, after, FILL_PAGE).await?;
        let Some(epoch) = head.epoch.filter(|_| !events.is_empty()) else {
            return Ok(false);
        };
        self.telemetry.filled(events.len() as u64);
        let now = Instant::now();
        let first = events[0].seq;
        for event in events {
            let seq = event.seq;
            let arrival = Arrival {
                seq,
                epoch: epoch.clone(),
                frame: encode(&ServerFrame::Event(event)),
                published: now,
            };
            let mut rooms = self.rooms();
            let Some(room) = rooms.get_mut(name) else {
                return Ok(true);
            };
            // Retention took the events before the first one kept: there is nothing to wait for.
            if seq == first && first > after + 1 && room.epoch.as_ref() == Some(&epoch) {
                room.last = Some(room.last.unwrap_or(0).max(first - 1));
            }
            room.arrive(arrival);
        }
        Ok(true)
    }

    /// Compares every room here with its head in the store every `every`, and fills those
    /// behind: the last events before a quiet spell, lost on the way, have no later event to
    /// reveal the gap. Needed only when other nodes publish.
    pub fn spawn_sweep(&self, every: Duration, until: CancellationToken) {
        let hub = self.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(every);
            while until.run_until_cancelled(tick.tick()).await.is_some() {
                hub.sweep().await;
            }
        });
    }

    /// Fills every room here that is behind its head in the store.
    pub async fn sweep(&self) {
        let names: Vec<String> = self.rooms().keys().map(|r| r.to_string()).collect();
        if names.is_empty() {
            return;
        }
        let heads = match self.store.heads(&names).await {
            Ok(heads) => heads,
            Err(e) => {
                tracing::warn!(error = %e, "comparing rooms with the store failed");
                return;
            }
        };
        for (name, head) in heads {
            let behind = match self.rooms().get_mut(&name) {
                Some(room)
                    if !room.filling
                        && room.last.is_some_and(|last| last < head.seq)
                        && room.epoch == head.epoch =>
                {
                    room.filling = true;
                    true
                }
                _ => false,
            };
            if behind {
                self.spawn_fill(name, head.seq, Duration::ZERO);
            }
        }
    }

    /// Tells each room whose membership changed how many watch it now, here and on the other
    /// nodes, and tells the other nodes. Joins and leaves come in bursts (a node restarting, a
    /// page opened by a whole team); one frame per room and tick keeps a burst of n joins from
    /// costing n² frames.
    pub fn spawn_presence(&self, every: Duration, until: CancellationToken) {
        let hub = self.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(every);
            let mut refreshed = Instant::now();
            while until.run_until_cancelled(tick.tick()).await.is_some() {
                let refresh = refreshed.elapsed() >= PRESENCE_REFRESH;
                if refresh {
                    refreshed = Instant::now();
                    hub.forget_silent_nodes(refreshed);
                }
                let told = hub.tell_presence(refresh);
                hub.bus.present(&told);
            }
        });
    }

    /// Sends a presence frame to each room whose count changed; returns this node's counts of
    /// those rooms, or of every room.
    fn tell_presence(&self, every_room: bool) -> Vec<(RoomName, usize)> {
        let mut rooms = self.rooms();
        let elsewhere = lock(&self.elsewhere);
        let mut told: Vec<(RoomName, usize)> = std::mem::take(&mut *lock(&self.departed))
            .into_iter()
            .filter(|name| !rooms.contains_key(name))
            .map(|name| (name, 0))
            .collect();
        for (name, room) in rooms.iter_mut() {
            let here = room.watchers();
            if room.presence_due {
                room.presence_due = false;
                let there: usize = elsewhere
                    .get(name)
                    .map_or(0, |nodes| nodes.values().map(|(n, _)| n).sum());
                let frame = encode(&ServerFrame::Presence {
                    room: name.clone(),
                    watchers: here + there,
                });
                room.send(Delivery::Presence { frame });
            } else if !every_room {
                continue;
            }
            told.push((name.clone(), here));
        }
        told
    }

    /// Takes `node`'s counts of its rooms' watchers.
    pub fn present_elsewhere(&self, node: u64, counts: Vec<(RoomName, usize)>) {
        let now = Instant::now();
        let mut changed = Vec::new();
        {
            let mut elsewhere = lock(&self.elsewhere);
            for (room, count) in counts {
                let nodes = elsewhere.entry(room.clone()).or_default();
                let before = match count {
                    0 => nodes.remove(&node),
                    _ => nodes.insert(node, (count, now)),
                };
                if nodes.is_empty() {
                    elsewhere.remove(&room);
                }
                if before.map_or(0, |(n, _)| n) != count {
                    changed.push(room);
                }
            }
        }
        self.presence_changed(changed);
    }

    /// Drops the counts of nodes not heard from for three refreshes before `now`: stopped, or
    /// cut off.
    pub fn forget_silent_nodes(&self, now: Instant) {
        let mut changed = Vec::new();
        lock(&self.elsewhere).retain(|room, nodes| {
            let before = nodes.len();
            nodes
                .retain(|_, (_, told)| now.saturating_duration_since(*told) < 3 * PRESENCE_REFRESH);
            if nodes.len() != before {
                changed.push(room.clone());
            }
            !nodes.is_empty()
        });
        self.presence_changed(changed);
    }

    fn presence_changed(&self, changed: Vec<RoomName>) {
        let mut rooms = self.rooms();
        for name in changed {
            if let Some(room) = rooms.get_mut(&name) {
                room.presence_due = true;
            }
        }
    }

    pub fn room_count(&self) -> usize {
        self.rooms().len()
    }

    /// Whether `room` has a member on this node.
    pub fn is_open(&self, room: &RoomName) -> bool {
        self.rooms().contains_key(room)
    }

    /// How this node reaches the others.
    pub fn bus(&self) -> &Bus {
        &self.bus
    }

    /// The rooms with members here.
    pub fn open_rooms(&self) -> Vec<RoomName> {
        self.rooms().keys().cloned().collect()
    }
}

/// A frame as sent: encoded once, then shared by every socket it goes to.
pub fn encode(frame: &ServerFrame) -> Frame {
    Frame::text(&serde_json::to_string(frame).expect("server frames always serialise"))
}

/// Nothing under the hub's locks can panic halfway through an update, so a poisoned one is
/// intact.
fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fanout::tests::{Sent, fanout};

    /// A room with one member, and what it sends that member.
    fn room() -> (Room, Sent) {
        let (fanout, sent) = fanout();
        let mut room = Room::new(RoomName::parse("r").unwrap(), fanout);
        room.members[0] = 1;
        (room, sent)
    }

    fn arrival(seq: i64) -> Arrival {
        Arrival {
            seq,
            epoch: Epoch("e".into()),
            frame: Frame::text(&seq.to_string()),
            published: Instant::now(),
        }
    }

    fn pushed(sent: &mut Sent) -> Vec<i64> {
        sent.deliveries()
            .into_iter()
            .filter_map(|d| match d {
                Delivery::Event { seq, .. } => Some(seq),
                _ => None,
            })
            .collect()
    }

    #[test]
    fn events_ahead_of_their_turn_wait_and_duplicates_are_dropped() {
        let (mut room, mut sent) = room();
        room.last = Some(2);
        assert_eq!(room.arrive(arrival(2)), None, "already pushed");
        assert_eq!(
            room.arrive(arrival(5)),
            Some(4),
            "3 and 4 are missing: a fill starts"
        );
        assert_eq!(
            room.arrive(arrival(4)),
            None,
            "held; the fill is already under way"
        );
        assert_eq!(room.arrive(arrival(3)), None);
        assert_eq!(room.arrive(arrival(4)), None);
        assert_eq!(pushed(&mut sent), vec![3, 4, 5]);
        assert_eq!(room.last, Some(5));
        assert_eq!((room.early.events.len(), room.early.bytes), (0, 0));
    }

    #[test]
    fn a_room_holding_its_fill_of_early_events_sends_its_members_to_the_store() {
        let gaps = |sent: &mut Sent| {
            sent.deliveries()
                .into_iter()
                .filter(|d| matches!(d, Delivery::Gap))
                .count()
        };
        // By count.
        let (mut counted, mut sent) = room();
        counted.last = Some(1);
        let after = 3 + EARLY_EVENTS as i64;
        for seq in 3..after {
            counted.arrive(arrival(seq));
        }
        assert_eq!(counted.early.events.len(), EARLY_EVENTS);
        counted.arrive(arrival(after));
        assert_eq!((counted.early.events.len(), counted.early.bytes), (0, 0));
        assert_eq!(counted.last, Some(after));
        assert_eq!(gaps(&mut sent), 1);

        // By bytes: a few large events fill it as well.
        let (mut room, mut sent) = room();
        room.last = Some(1);
        let large = |seq| Arrival {
            frame: Frame::text(&"x".repeat(EARLY_BYTES / 4)),
            ..arrival(seq)
        };
        for seq in 3..7 {
            room.arrive(large(seq));
        }
        assert!(room.early.full());
        room.arrive(large(7));
        assert_eq!(room.last, Some(7));
        assert_eq!(gaps(&mut sent), 1);
    }

    #[test]
    fn a_gap_the_store_cannot_fill_is_skipped_to_the_next_held_event() {
        let (mut room, mut sent) = room();
        room.last = Some(1);
        room.arrive(arrival(4));
        room.arrive(arrival(6));
        room.skip_gap();
        assert_eq!(pushed(&mut sent), vec![4]);
        assert_eq!(
            room.early.events.keys().copied().collect::<Vec<_>>(),
            vec![6]
        );
    }

    #[test]
    fn a_new_epoch_counts_from_the_start() {
        let (mut room, mut sent) = room();
        room.arrive(arrival(7));
        let mut restarted = arrival(1);
        restarted.epoch = Epoch("f".into());
        room.arrive(restarted);
        let deliveries: Vec<String> = sent
            .deliveries()
            .into_iter()
            .map(|d| match d {
                Delivery::Event { seq, .. } => format!("event {seq}"),
                Delivery::Epoch(epoch) => format!("epoch {}", epoch.0),
                Delivery::Presence { .. } => "presence".into(),
                Delivery::Gap => "gap".into(),
            })
            .collect();
        assert_eq!(deliveries, vec!["epoch e", "event 7", "epoch f", "event 1"]);
    }

    #[test]
    fn a_room_sends_only_to_the_shards_holding_its_members() {
        let (fanout, mut sent) = crate::fanout::tests::fanout_of(3);
        let mut room = Room::new(RoomName::parse("r").unwrap(), fanout);
        room.members = vec![2, 0, 1];
        room.last = Some(0);
        room.arrive(arrival(1));
        let shards: Vec<usize> = sent.by_shard().iter().map(Vec::len).collect();
        assert_eq!(
            shards,
            vec![2, 0, 2],
            "the epoch and the event, on shards 0 and 2"
        );
    }
}
