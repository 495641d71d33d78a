//! The single writer: validated events queue here, are committed in batches, and are handed to
//! the hub in commit order, so every room's live stream is in seq order.

use std::{collections::HashSet, sync::Arc, time::Instant};

use app::{
    metrics::room_source,
    protocol::{Event, EventKind, NewEvent, Payload, RoomName},
};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc, oneshot};

use crate::{
    alerts::Feed,
    error::{Error, Result},
    hub::Hub,
    store::{Appended, Pending, Reservation, Store},
    telemetry::Telemetry,
};

/// Most publish requests committed in one transaction.
const MAX_BATCH: usize = 1024;
/// Samples after which a transaction takes no more requests: without it, a backlog of metric
/// batches (10,000 samples each) would make one transaction of millions of rows.
const MAX_BATCH_SAMPLES: usize = 50_000;
/// Publishes waiting for the writer before publishers themselves wait.
const QUEUE: usize = 8192;

/// Events committed together or not at all.
struct Request {
    events: Vec<Pending>,
    stored: oneshot::Sender<Result<Vec<Event>>>,
    /// Its share of the queue's bytes, given back once it is committed.
    held: OwnedSemaphorePermit,
    /// The new series it adds, counted against the limits until it is committed.
    reserved: Vec<Reservation>,
    /// When it reached the server, for the publish→deliver latency.
    since: Instant,
}

impl Request {
    fn samples(&self) -> usize {
        self.events.iter().map(|e| e.points.len()).sum()
    }
}

#[derive(Clone)]
pub struct Ingest {
    queue: mpsc::Sender<Request>,
    /// The bytes the queue may hold (see [`Pending::bytes`]): a few large batches wait as many
    /// small publishes would.
    bytes: Arc<Semaphore>,
    max_bytes: u32,
    store: Store,
    telemetry: Telemetry,
}

impl Ingest {
    /// Starts the writer; what it commits goes to `hub`'s rooms, and its samples to `feed`.
    /// The queue holds about `queue_bytes` (see [`Pending::bytes`]) before publishers wait.
    pub fn spawn(
        store: Store,
        hub: Hub,
        feed: Feed,
        queue_bytes: usize,
        telemetry: Telemetry,
    ) -> Self {
        let (queue, requests) = mpsc::channel(QUEUE);
        let max_bytes = u32::try_from(queue_bytes).unwrap_or(u32::MAX).max(1);
        tokio::spawn(write(requests, store.clone(), hub, feed, telemetry.clone()));
        Self {
            queue,
            bytes: Arc::new(Semaphore::new(max_bytes as usize)),
            max_bytes,
            store,
            telemetry,
        }
    }

    /// Events committed since the start.
    pub fn committed(&self) -> u64 {
        self.telemetry.events_stored()
    }

    /// Publish requests waiting for the writer.
    pub fn queued(&self) -> usize {
        self.queue.max_capacity() - self.queue.capacity()
    }

    /// The bytes they hold.
    pub fn queued_bytes(&self) -> usize {
        self.max_bytes as usize - self.bytes.available_permits()
    }

    /// Whether the writer is behind: publishers now wait for room in its queue.
    pub fn is_full(&self) -> bool {
        self.queue.capacity() == 0 || self.bytes.available_permits() == 0
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
        // A metric published to a source's room is a sample of that source like any other.
        let points = match (event.validate()?, room_source(&room)) {
            (Payload::Samples(points), Some(_)) => points,
            _ => Vec::new(),
        };
        let stored = self.submit(vec![Pending::new(room, event, points)]).await?;
        Ok(async move { Ok(stored.await?.remove(0)) })
    }

    /// Commits `events` in one transaction and fans them out; they are not validated here.
    pub async fn commit(&self, events: Vec<Pending>) -> Result<Vec<Event>> {
        self.submit(events).await?.await
    }

    /// Queues `events` to be committed in one transaction, waiting only while the queue is
    /// full; the returned future resolves to them as stored.
    pub async fn submit(
        &self,
        events: Vec<Pending>,
    ) -> Result<impl Future<Output = Result<Vec<Event>>> + use<>> {
        // Here, not in the writer: a refused request must not fail the others committed with it.
        let reserved = self.store.admit(&events).await?;
        // One request larger than the whole allowance waits for all of it, and then goes alone.
        let size = events.iter().map(Pending::bytes).sum::<usize>();
        let size = u32::try_from(size)
            .unwrap_or(u32::MAX)
            .clamp(1, self.max_bytes);
        let held = self
            .bytes
            .clone()
            .acquire_many_owned(size)
            .await
            .map_err(|_| Error::Unavailable)?;
        let (stored, receipt) = oneshot::channel();
        self.queue
            .send(Request {
                events,
                stored,
                held,
                reserved,
                since: Instant::now(),
            })
            .await
            .map_err(|_| Error::Unavailable)?;
        Ok(async move { receipt.await.map_err(|_| Error::Unavailable)? })
    }
}

async fn write(
    mut requests: mpsc::Receiver<Request>,
    store: Store,
    hub: Hub,
    feed: Feed,
    telemetry: Telemetry,
) {
    // Rooms found locked by another database session: while they stay locked their publishes
    // are refused at once instead of each batch waiting out the lock timeout again.
    let mut locked_rooms: HashSet<String> = HashSet::new();
    while let Some(first) = requests.recv().await {
        let mut samples = first.samples();
        let mut batch = vec![first];
        while batch.len() < MAX_BATCH && samples < MAX_BATCH_SAMPLES {
            let Ok(next) = requests.try_recv() else { break };
            samples += next.samples();
            batch.push(next);
        }
        if !locked_rooms.is_empty() {
            let suspects: Vec<&str> = rooms(&batch)
                .into_iter()
                .filter(|room| locked_rooms.contains(*room))
                .collect();
            if !suspects.is_empty() {
                // Unknown when the database does not answer: then the commit fails anyway.
                let still = store.locked(&suspects).await.unwrap_or_default();
                locked_rooms
                    .retain(|room| !suspects.contains(&room.as_str()) || still.contains(room));
                batch = refuse(batch, |request| locked_room(request, &still));
            }
        }
        let began = Instant::now();
        let mut outcome = match append(&store, batch).await {
            Err((batch, e)) if e.is_lock_timeout() => {
                let locked = store.locked(&rooms(&batch)).await.unwrap_or_default();
                tracing::warn!(
                    rooms = ?locked,
                    "rooms locked by another database session: their publishes are refused"
                );
                locked_rooms.extend(locked.iter().cloned());
                // The rest once more; if the lock was let go meanwhile, all of it.
                append(
                    &store,
                    refuse(batch, |request| locked_room(request, &locked)),
                )
                .await
            }
            outcome => outcome,
        };
        // Other nodes' writers created series of a source meanwhile, taking it past its limit
        // with this batch: the requests adding to it that no longer fit are refused, in batch
        // order, and the rest tried again.
        let outcome = loop {
            outcome = match outcome {
                Err((
                    batch,
                    Error::TooManySeries {
                        source_name,
                        series,
                        limit,
                    },
                )) if batch.iter().any(|r| adds_series_to(r, &source_name) > 0) => {
                    let stored = store.series_count(&source_name).await.unwrap_or(limit);
                    let mut room = limit.saturating_sub(stored);
                    // If the count says all fit, it is already stale: the last request adding
                    // to it goes anyway, so each try has fewer.
                    let last = batch
                        .iter()
                        .rposition(|r| adds_series_to(r, &source_name) > 0)
                        .expect("one adds to it");
                    let (mut index, mut refused) = (0, false);
                    let kept = refuse(batch, |request| {
                        let adds = adds_series_to(request, &source_name);
                        let fits = adds <= room && (index != last || refused);
                        index += 1;
                        if fits {
                            room -= adds;
                            return None;
                        }
                        refused = true;
                        Some(Error::TooManySeries {
                            source_name: source_name.clone(),
                            series: series.clone(),
                            limit,
                        })
                    });
                    append(&store, kept).await
                }
                outcome => break outcome,
            };
        };
        match outcome {
            Ok((appended, replies)) => {
                telemetry.commit_took(began.elapsed());
                deliver(appended, replies, &hub, &feed, &telemetry);
            }
            Err((batch, e)) => {
                tracing::error!(error = %e, requests = batch.len(), "committing events failed");
                for request in batch {
                    let _ = request.stored.send(Err(Error::Unavailable));
                }
            }
        }
    }
}

/// A committed request's way back: its sender, how many events it had, when it came, and what
/// it held until now (queue bytes, series reserved).
struct Reply {
    stored: oneshot::Sender<Result<Vec<Event>>>,
    size: usize,
    since: Instant,
    held: (OwnedSemaphorePermit, Vec<Reservation>),
}

/// Commits `batch`'s requests in one transaction; a batch that fails comes back whole.
async fn append(
    store: &Store,
    batch: Vec<Request>,
) -> Result<(Appended, Vec<Reply>), (Vec<Request>, Error)> {
    // Every request of it refused: nothing to commit.
    if batch.is_empty() {
        return Ok((Appended::default(), Vec::new()));
    }
    let mut events = Vec::new();
    let mut replies = Vec::with_capacity(batch.len());
    for request in batch {
        replies.push(Reply {
            stored: request.stored,
            size: request.events.len(),
            since: request.since,
            held: (request.held, request.reserved),
        });
        events.extend(request.events);
    }
    match store.append(events).await {
        Ok(appended) => Ok((appended, replies)),
        Err((events, e)) => {
            let mut events = events.into_iter();
            let batch = replies
                .into_iter()
                .map(|reply| Request {
                    events: events.by_ref().take(reply.size).collect(),
                    stored: reply.stored,
                    held: reply.held.0,
                    reserved: reply.held.1,
                    since: reply.since,
                })
                .collect();
            Err((batch, e))
        }
    }
}

/// Hands committed events to their publishers, the rooms and the alert evaluator.
fn deliver(appended: Appended, replies: Vec<Reply>, hub: &Hub, feed: &Feed, telemetry: &Telemetry) {
    let Appended {
        events,
        epochs,
        samples,
    } = appended;
    for kind in EventKind::ALL {
        let of_kind = events.iter().filter(|e| e.kind == kind).count();
        telemetry.committed(kind, of_kind as u64);
    }
    telemetry.samples(samples.iter().map(|(_, points)| points.len() as u64).sum());
    let mut stored = events.into_iter();
    // Each request's bytes and series are freed as it is answered (the series now stored).
    for reply in replies {
        let events: Vec<Event> = stored.by_ref().take(reply.size).collect();
        for event in &events {
            hub.publish(event, &epochs[event.room.as_str()], reply.since);
        }
        // The publisher may have gone; the events are stored and pushed regardless.
        let _ = reply.stored.send(Ok(events));
    }
    feed.send(samples);
}

/// How many series `request` adds to `source`.
fn adds_series_to(request: &Request, source: &str) -> usize {
    request.reserved.iter().map(|r| r.adds_to(source)).sum()
}

/// The rooms `batch` writes to, each once.
fn rooms(batch: &[Request]) -> Vec<&str> {
    let rooms: HashSet<&str> = batch
        .iter()
        .flat_map(|request| &request.events)
        .map(|pending| pending.room.as_str())
        .collect();
    rooms.into_iter().collect()
}

/// Answers the requests of `batch` that `refusal` refuses with its error, and keeps the others.
fn refuse(batch: Vec<Request>, mut refusal: impl FnMut(&Request) -> Option<Error>) -> Vec<Request> {
    let mut kept = Vec::with_capacity(batch.len());
    for request in batch {
        match refusal(&request) {
            Some(error) => {
                let _ = request.stored.send(Err(error));
            }
            None => kept.push(request),
        }
    }
    kept
}

/// The refusal of a request writing to a room of `locked`.
fn locked_room(request: &Request, locked: &[String]) -> Option<Error> {
    let pending = request
        .events
        .iter()
        .find(|pending| locked.iter().any(|room| room == pending.room.as_str()))?;
    Some(Error::Locked(pending.room.to_string()))
}
