//! The single writer: validated events queue here, are committed in batches, and are handed to
//! the hub in commit order, so every room's live stream is in seq order.

use app::protocol::{Event, NewEvent, RoomName};
use tokio::sync::{mpsc, oneshot};

use crate::{
    error::{Error, Result},
    hub::Hub,
    store::Store,
};

/// Most events committed in one transaction.
const MAX_BATCH: usize = 1024;
/// Publishes waiting for the writer before publishers themselves wait.
const QUEUE: usize = 8192;

struct Request {
    room: RoomName,
    event: NewEvent,
    stored: oneshot::Sender<Result<Event>>,
}

#[derive(Clone)]
pub struct Ingest {
    queue: mpsc::Sender<Request>,
}

impl Ingest {
    pub fn spawn(store: Store, hub: Hub) -> Self {
        let (queue, requests) = mpsc::channel(QUEUE);
        tokio::spawn(write(requests, store, hub));
        Self { queue }
    }

    /// Validates, commits and fans out `event`; returns it as stored once committed.
    pub async fn publish(&self, room: RoomName, event: NewEvent) -> Result<Event> {
        self.enqueue(room, event).await?.await
    }

    /// Validates `event` and queues it for the writer, waiting only while the queue is full.
    /// Events are committed in the order they were enqueued, so one publisher's events keep
    /// their order; the returned future resolves to the stored event once it is committed.
    pub async fn enqueue(
        &self,
        room: RoomName,
        event: NewEvent,
    ) -> Result<impl Future<Output = Result<Event>> + use<>> {
        event.validate()?;
        let (stored, receipt) = oneshot::channel();
        self.queue
            .send(Request {
                room,
                event,
                stored,
            })
            .await
            .map_err(|_| Error::Unavailable)?;
        Ok(async move { receipt.await.map_err(|_| Error::Unavailable)? })
    }
}

async fn write(mut requests: mpsc::Receiver<Request>, store: Store, hub: Hub) {
    let mut batch = Vec::with_capacity(MAX_BATCH);
    while requests.recv_many(&mut batch, MAX_BATCH).await > 0 {
        let events: Vec<(RoomName, NewEvent)> = batch
            .iter()
            .map(|r: &Request| (r.room.clone(), r.event.clone()))
            .collect();
        match store.append(&events).await {
            Ok(stored) => {
                for (request, event) in batch.drain(..).zip(stored) {
                    hub.publish(event.clone());
                    // The publisher may have gone; the event is stored and pushed regardless.
                    let _ = request.stored.send(Ok(event));
                }
            }
            Err(e) => {
                tracing::error!(error = %e, events = batch.len(), "committing events failed");
                for request in batch.drain(..) {
                    let _ = request.stored.send(Err(Error::Unavailable));
                }
            }
        }
    }
}
