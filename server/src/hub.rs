//! Live fan-out on this node: one broadcast channel per room with members, each frame serialised
//! once for all of them.

use std::{
    collections::HashMap,
    sync::{Arc, Mutex, MutexGuard},
    time::{Duration, Instant},
};

use app::protocol::{Epoch, Event, RoomName, ServerFrame};
use axum::extract::ws::Utf8Bytes;
use tokio::sync::broadcast;
use tokio_util::sync::CancellationToken;

/// How many frames a room buffers for its slowest member before that member lags and must
/// catch up from the store.
const ROOM_BUFFER: usize = 1024;

/// A frame ready to send to every member of a room.
#[derive(Clone, Debug)]
pub enum Delivery {
    /// A stored event; its seq lets a member drop what a replay already sent, and `published`
    /// (when its publish reached the server) times its way to each socket.
    Event {
        seq: i64,
        frame: Utf8Bytes,
        published: Instant,
    },
    /// A watcher count: state, not history, so it is never replayed.
    Presence { frame: Utf8Bytes },
    /// The epoch of the events that follow; sent when it differs from the one before (and once
    /// after the room is made here), so a member can tell that the room's log started over.
    Epoch(Epoch),
}

struct Room {
    tx: broadcast::Sender<Delivery>,
    /// Members joined or left since the last presence frame.
    presence_due: bool,
    /// The epoch of the last event pushed.
    epoch: Option<Epoch>,
}

#[derive(Clone, Default)]
pub struct Hub {
    rooms: Arc<Mutex<HashMap<RoomName, Room>>>,
}

impl Hub {
    fn rooms(&self) -> MutexGuard<'_, HashMap<RoomName, Room>> {
        // Nothing under this lock can panic halfway through an update, so a poisoned map is intact.
        self.rooms
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Joins `room`, creating it on first use.
    pub fn join(&self, room: &RoomName) -> broadcast::Receiver<Delivery> {
        let mut rooms = self.rooms();
        let room = rooms.entry(room.clone()).or_insert_with(|| Room {
            tx: broadcast::channel(ROOM_BUFFER).0,
            presence_due: false,
            epoch: None,
        });
        room.presence_due = true;
        room.tx.subscribe()
    }

    /// Call after dropping a receiver from [`Hub::join`]: frees the room once nobody is in it.
    pub fn leave(&self, name: &RoomName) {
        let mut rooms = self.rooms();
        let Some(room) = rooms.get_mut(name) else {
            return;
        };
        if room.tx.receiver_count() == 0 {
            rooms.remove(name);
        } else {
            room.presence_due = true;
        }
    }

    /// Pushes a committed event of `epoch`, published at `published`, to the room's members, if
    /// it has any (a bulk of samples nobody watches is not even encoded).
    pub fn publish(&self, event: &Event, epoch: &Epoch, published: Instant) {
        let tx = {
            let mut rooms = self.rooms();
            let Some(room) = rooms.get_mut(&event.room) else {
                return;
            };
            if room.epoch.as_ref() != Some(epoch) {
                room.epoch = Some(epoch.clone());
                let _ = room.tx.send(Delivery::Epoch(epoch.clone()));
            }
            room.tx.clone()
        };
        let seq = event.seq;
        let frame = encode(&ServerFrame::Event(event.clone()));
        // An error only means every member left since the lookup.
        let _ = tx.send(Delivery::Event {
            seq,
            frame,
            published,
        });
    }

    /// Tells each room whose membership changed how many watch it now. Joins and leaves come in
    /// bursts (a node restarting, a page opened by a whole team); one frame per room and tick
    /// keeps a burst of n joins from costing n² frames.
    pub fn spawn_presence(&self, every: Duration, until: CancellationToken) {
        let hub = self.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(every);
            while until.run_until_cancelled(tick.tick()).await.is_some() {
                for (name, room) in hub.rooms().iter_mut().filter(|(_, room)| room.presence_due) {
                    room.presence_due = false;
                    let watchers = room.tx.receiver_count();
                    let frame = encode(&ServerFrame::Presence {
                        room: name.clone(),
                        watchers,
                    });
                    let _ = room.tx.send(Delivery::Presence { frame });
                }
            }
        });
    }

    pub fn room_count(&self) -> usize {
        self.rooms().len()
    }

    /// Whether `room` has a member on this node.
    pub fn is_open(&self, room: &RoomName) -> bool {
        self.rooms().contains_key(room)
    }
}

/// A frame as sent: encoded once, then shared by every socket it goes to.
pub(crate) fn encode(frame: &ServerFrame) -> Utf8Bytes {
    serde_json::to_string(frame)
        .expect("server frames always serialise")
        .into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_room_is_freed_when_its_last_member_leaves() {
        let hub = Hub::default();
        let room = RoomName::parse("r").unwrap();
        let first = hub.join(&room);
        let second = hub.join(&room);
        drop(first);
        hub.leave(&room);
        assert_eq!(hub.room_count(), 1);
        drop(second);
        hub.leave(&room);
        assert_eq!(hub.room_count(), 0);
    }
}
