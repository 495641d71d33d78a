//! What the other nodes commit, as the leading node's evaluator hears it through Redis: at most
//! once, in any order. Each metrics room's last seq heard is kept; a seq past the next one reveals
//! what was missed, which is read from the store and evaluated before it.

use std::collections::HashMap;

use app::{
    metrics::{event_points, room_source},
    protocol::{Epoch, Event, EventKind, RoomName, ServerFrame},
};
use tokio::sync::mpsc;

use super::{Committed, Feed};
use crate::{hub::Arrival, store::Store};

/// Most events read from the store for one gap: past it (a long outage) the oldest are left
/// unevaluated, their windows long gone.
const MOST_FILLED: i64 = 10_000;
/// Arrivals waiting for the reader; past it they are dropped, and the next one reveals them.
const QUEUE: usize = 4096;

pub struct Remote {
    store: Store,
    feed: Feed,
    /// This node: its own samples reach the evaluator from its writer, not from here.
    node: u64,
    last: HashMap<RoomName, (Epoch, i64)>,
}

/// What the bus hands the reader: an arrival from a node, or `None` to forget every room.
pub type Heard = Option<(RoomName, u64, Arrival)>;

impl Remote {
    pub fn new(store: Store, feed: Feed, node: u64) -> Self {
        Self {
            store,
            feed,
            node,
            last: HashMap::new(),
        }
    }

    /// Runs on its own task, so reading the store never holds up the bus.
    pub fn spawn(mut self) -> mpsc::Sender<Heard> {
        let (tx, mut rx) = mpsc::channel::<Heard>(QUEUE);
        tokio::spawn(async move {
            while let Some(heard) = rx.recv().await {
                match heard {
                    Some((room, from, arrival)) => self.heard(room, from, arrival).await,
                    None => self.last.clear(),
                }
            }
        });
        tx
    }

    /// Evaluates `arrival`, published by node `from`, after what it reveals was missed; each
    /// event once. A room's first arrival starts its count: what came before it is not this
    /// evaluator's (another node led then), nor is a tail lost with nothing after it.
    pub async fn heard(&mut self, room: RoomName, from: u64, arrival: Arrival) {
        let last = self
            .last
            .get(&room)
            .filter(|(epoch, _)| *epoch == arrival.epoch)
            .map(|(_, seq)| *seq);
        match last {
            Some(last) if arrival.seq <= last => return,
            Some(last) if arrival.seq > last + 1 => self.fill(&room, last, arrival.seq).await,
            _ => {}
        }
        self.last.insert(room, (arrival.epoch, arrival.seq));
        if from == self.node {
            return;
        }
        if let Ok(ServerFrame::Event(event)) = serde_json::from_str(arrival.frame.payload()) {
            self.feed.send(samples(&[event]));
        }
    }

    /// Evaluates the events of `room` after seq `after` and before seq `before`, as stored. Those
    /// this node published come again (the store does not say who published what); windows
    /// take a sample given twice once.
    async fn fill(&self, room: &RoomName, after: i64, before: i64) {
        let mut after = after.max(before - 1 - MOST_FILLED);
        while after + 1 < before {
            let events = match self.store.since(room, after, before - 1 - after).await {
                Ok((events, _)) => events,
                Err(e) => {
                    tracing::warn!(%room, error = %e, "missed samples could not be read; not evaluated");
                    return;
                }
            };
            let Some(newest) = events.last() else {
                return;
            };
            after = newest.seq;
            self.feed.send(samples(&events));
        }
    }
}

/// The samples of `events` that are metric events of a source's room.
fn samples(events: &[Event]) -> Committed {
    events
        .iter()
        .filter(|event| event.kind == EventKind::Metric)
        .filter_map(|event| {
            let source = room_source(&event.room)?;
            Some((source.to_owned(), event_points(&event.data, event.ts)))
        })
        .collect()
}
