//! Live fan-out on this node: one broadcast channel per room with members, each event serialised
//! once for all of them.

use std::{
    collections::HashMap,
    sync::{Arc, Mutex, MutexGuard},
};

use app::protocol::{Event, RoomName, ServerFrame};
use axum::extract::ws::Utf8Bytes;
use tokio::sync::broadcast;

/// How many events a room buffers for its slowest member before that member lags and must
/// catch up from the store.
const ROOM_BUFFER: usize = 1024;

/// An event ready to send: its seq (to drop overlaps with a replay) and its encoded frame.
#[derive(Clone, Debug)]
pub struct Delivery {
    pub seq: i64,
    pub frame: Utf8Bytes,
}

#[derive(Clone, Default)]
pub struct Hub {
    rooms: Arc<Mutex<HashMap<RoomName, broadcast::Sender<Delivery>>>>,
}

impl Hub {
    fn rooms(&self) -> MutexGuard<'_, HashMap<RoomName, broadcast::Sender<Delivery>>> {
        // Nothing under this lock can panic halfway through an update, so a poisoned map is intact.
        self.rooms.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Joins `room`, creating it on first use.
    pub fn join(&self, room: &RoomName) -> broadcast::Receiver<Delivery> {
        self.rooms()
            .entry(room.clone())
            .or_insert_with(|| broadcast::channel(ROOM_BUFFER).0)
            .subscribe()
    }

    /// Call after dropping a receiver from [`Hub::join`]: frees the room once nobody is in it.
    pub fn leave(&self, room: &RoomName) {
        let mut rooms = self.rooms();
        if rooms.get(room).is_some_and(|tx| tx.receiver_count() == 0) {
            rooms.remove(room);
        }
    }

    /// Pushes a committed event to the room's members, if it has any.
    pub fn publish(&self, event: Event) {
        let Some(tx) = self.rooms().get(&event.room).cloned() else { return };
        let seq = event.seq;
        let frame = serde_json::to_string(&ServerFrame::Event(event)).expect("events always serialise");
        // An error only means every member left since the lookup.
        let _ = tx.send(Delivery { seq, frame: frame.into() });
    }

    pub fn room_count(&self) -> usize {
        self.rooms().len()
    }
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
