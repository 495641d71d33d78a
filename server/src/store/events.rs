//! The durable event log: rooms, their heads and their events, each with a gapless per-room seq.

use std::{
    collections::{BTreeMap, HashMap},
    time::Duration,
};

use app::{
    metrics::{self, Point, room_source},
    protocol::{Epoch, Event, EventKind, NewEvent, RoomName, RoomSnapshot},
};
use chrono::{DateTime, Utc};
use sqlx::{Connection, PgConnection, types::Json};

use super::{Store, samples::Created};
use crate::error::{Error, Result};

/// Most event data one page of the log holds, as stored (JSONB, compressed where large): a page
/// of 1,000 metric batches would otherwise be a gigabyte to decode and hold.
pub const PAGE_BYTES: i64 = 4 * 1024 * 1024;

/// An event on its way into the log, with the samples it carries when its room is a source's.
pub struct Pending {
    pub(crate) room: RoomName,
    event: NewEvent,
    /// `event.data` as stored, serialised by the publisher's task rather than the single writer.
    text: String,
    pub(crate) points: Vec<Point>,
}

impl Pending {
    /// About the memory it holds until it is committed: its data parsed and as text, and its
    /// samples.
    pub fn bytes(&self) -> usize {
        2 * self.text.len() + self.points.len() * std::mem::size_of::<Point>()
    }

    /// One `metric` event carrying `points` of `room`'s source. They were validated as a batch,
    /// which may exceed the size of a publisher's event.
    pub fn samples(room: RoomName, points: Vec<Point>) -> Self {
        let data = metrics::event_data(&points);
        let event = NewEvent {
            kind: EventKind::Metric,
            data,
        };
        Self::new(room, event, points)
    }

    pub fn new(room: RoomName, event: NewEvent, points: Vec<Point>) -> Self {
        let text = event.data.to_string();
        Self {
            room,
            event,
            text,
            points,
        }
    }
}

/// What a committed batch became: its events in batch order, the epoch of each room, and the
/// samples committed with them, by source.
#[derive(Default)]
pub struct Appended {
    pub events: Vec<Event>,
    pub epochs: HashMap<String, Epoch>,
    pub samples: Vec<(String, Vec<Point>)>,
}

/// How far a batch's transaction got, kept outside it: what the writer learns the batch's fate
/// from if the database falls silent.
#[derive(Default)]
struct Attempt {
    /// The transaction's id, once its first statement answered.
    xid: Option<i64>,
    /// What the batch becomes (and the series it creates), once COMMIT is sent.
    sealed: Option<(Written, Option<Created>)>,
}

/// What the database gave a batch it committed.
struct Written {
    seqs: Vec<i64>,
    ts: DateTime<Utc>,
    epochs: HashMap<String, Epoch>,
}

impl Written {
    fn apply(self, batch: Vec<Pending>) -> Appended {
        let mut samples = Vec::new();
        let events = batch
            .into_iter()
            .zip(self.seqs)
            .map(|(pending, seq)| {
                if let Some(source) = room_source(&pending.room)
                    && !pending.points.is_empty()
                {
                    samples.push((source.to_owned(), pending.points));
                }
                Event {
                    room: pending.room,
                    seq,
                    ts: self.ts,
                    kind: pending.event.kind,
                    data: pending.event.data,
                }
            })
            .collect();
        Appended {
            events,
            epochs: self.epochs,
            samples,
        }
    }
}

/// Where a room's log stands.
#[derive(Clone, Debug, PartialEq)]
pub struct Head {
    pub seq: i64,
    /// None while the room has no log.
    pub epoch: Option<Epoch>,
}

#[derive(sqlx::FromRow)]
struct Row {
    seq: i64,
    ts: DateTime<Utc>,
    kind: String,
    data: Json<serde_json::Value>,
}

/// A row of a page bounded by bytes: the event, its stored size and that of those before it.
#[derive(sqlx::FromRow)]
struct PageRow {
    #[sqlx(flatten)]
    row: Row,
    before: i64,
    size: i64,
}

impl Row {
    fn into_event(self, room: &RoomName) -> Result<Event> {
        let kind = EventKind::parse(&self.kind).ok_or_else(|| {
            sqlx::Error::Decode(format!("unknown event kind {:?}", self.kind).into())
        })?;
        Ok(Event {
            room: room.clone(),
            seq: self.seq,
            ts: self.ts,
            kind,
            data: self.data.0,
        })
    }
}

impl Store {
    /// Commits `batch` in one transaction, giving each event its room's next seq in batch order,
    /// and returns the events as stored, in the same order, with their rooms' epochs. The
    /// samples of `metric` events in a source's room are committed with them, so history and the
    /// live stream never disagree. A batch that fails comes back whole, to be tried again.
    pub async fn append(&self, batch: Vec<Pending>) -> Result<Appended, (Vec<Pending>, Error)> {
        match self.write(&batch).await {
            Ok(written) => Ok(written.apply(batch)),
            Err(e) => Err((batch, e)),
        }
    }

    /// Writes `batch` on the writer's connection, within the commit timeout. If the answer to
    /// COMMIT is lost (the connection cut, or the database silent past the timeout), the
    /// database is asked, once it answers again, whether the batch committed: the publishers'
    /// answer is then true either way, and nothing is written twice.
    async fn write(&self, batch: &[Pending]) -> Result<Written> {
        let mut connection = self.writer.acquire().await?;
        let mut attempt = Attempt::default();
        let transaction = self.transact(&mut connection, batch, &mut attempt);
        let lost = match tokio::time::timeout(self.timeouts.commit, transaction).await {
            Ok(Ok(())) => None,
            // Refused by the database, or failed before COMMIT was sent: nothing of it stays.
            Ok(Err(e)) if attempt.sealed.is_none() || e.is_database_answer() => return Err(e),
            Ok(Err(e)) => Some(e.to_string()),
            Err(_) => Some(format!("no answer within {:?}", self.timeouts.commit)),
        };
        if let Some(why) = lost {
            // The socket may hold half a statement or an answer never read: it must not go back
            // to the pool, whose check on return would wait on a silent one for ever.
            drop(connection.detach());
            tracing::warn!(
                %why,
                committing = attempt.sealed.is_some(),
                "the database's answer to a batch was lost; asking it what became of the batch"
            );
            self.settle(&attempt).await?;
        }
        let (written, created) = attempt.sealed.expect("a committed batch was sealed");
        if let Some(created) = created {
            self.series.committed(created);
        }
        Ok(written)
    }

    /// The batch's transaction, telling `attempt` how far it got.
    async fn transact(
        &self,
        connection: &mut PgConnection,
        batch: &[Pending],
        attempt: &mut Attempt,
    ) -> Result<()> {
        let mut counts: BTreeMap<&str, i64> = BTreeMap::new();
        for pending in batch {
            *counts.entry(pending.room.as_str()).or_default() += 1;
        }
        // In name order: writers on several nodes lock shared rooms in the same order, and
        // cannot deadlock each other.
        let (rooms, added): (Vec<&str>, Vec<i64>) = counts.iter().map(|(r, n)| (*r, *n)).unzip();

        let mut tx = connection.begin().await?;
        // Bumping each head takes the room's row lock until commit: seqs are gapless and a
        // rolled-back batch gives its seqs back.
        let heads: Vec<(String, i64, String, DateTime<Utc>, i64)> = sqlx::query_as(
            "INSERT INTO rooms (name, head) SELECT * FROM UNNEST($1::text[], $2::bigint[])
             ON CONFLICT (name) DO UPDATE SET head = rooms.head + EXCLUDED.head
             RETURNING name, head, epoch, now(), pg_current_xact_id()::text::int8",
        )
        .bind(&rooms)
        .bind(&added)
        .fetch_all(&mut *tx)
        .await?;
        attempt.xid = heads.first().map(|(.., xid)| *xid);
        let ts = heads
            .first()
            .map(|(_, _, _, ts, _)| *ts)
            .unwrap_or_else(Utc::now);
        // The first seq of each room in this batch.
        let mut next: HashMap<&str, i64> = heads
            .iter()
            .map(|(name, head, ..)| (name.as_str(), head - counts[name.as_str()] + 1))
            .collect();
        let seqs: Vec<i64> = batch
            .iter()
            .map(|pending| {
                let next = next
                    .get_mut(pending.room.as_str())
                    .expect("every room of the batch got a head");
                *next += 1;
                *next - 1
            })
            .collect();
        sqlx::query(
            "INSERT INTO events (room, seq, ts, kind, data)
             SELECT r, s, $3, k, d::json
             FROM UNNEST($1::text[], $2::bigint[], $4::text[], $5::text[]) AS u (r, s, k, d)",
        )
        .bind(batch.iter().map(|e| e.room.as_str()).collect::<Vec<_>>())
        .bind(&seqs)
        .bind(ts)
        .bind(
            batch
                .iter()
                .map(|e| e.event.kind.as_str())
                .collect::<Vec<_>>(),
        )
        .bind(batch.iter().map(|e| e.text.as_str()).collect::<Vec<_>>())
        .execute(&mut *tx)
        .await?;
        let samples: Vec<(&str, &[Point])> = batch
            .iter()
            .filter(|pending| !pending.points.is_empty())
            .filter_map(|pending| Some((room_source(&pending.room)?, pending.points.as_slice())))
            .collect();
        let created = match samples.is_empty() {
            true => None,
            false => Some(
                self.series
                    .insert(&mut tx, &samples, self.limits.per_source)
                    .await?,
            ),
        };
        let epochs = heads
            .into_iter()
            .map(|(name, _, epoch, ..)| (name, Epoch(epoch)))
            .collect();
        attempt.sealed = Some((Written { seqs, ts, epochs }, created));
        tx.commit().await?;
        Ok(())
    }

    /// Learns whether the batch of a session the writer gave up on committed, and ends that
    /// session, which the database may never notice is gone and whose row locks would stall
    /// every later publish to its rooms. Asks until the database answers.
    async fn settle(&self, attempt: &Attempt) -> Result<()> {
        let mut pause = Duration::from_millis(50);
        loop {
            let asked = tokio::time::timeout(self.timeouts.commit, self.end_given_up(attempt));
            match asked.await {
                Ok(Ok(Some(true))) => return Ok(()),
                Ok(Ok(Some(false))) => return Err(Error::Uncommitted),
                // Still running: it was told to end just now.
                Ok(Ok(None)) => {}
                Ok(Err(e)) => tracing::warn!(error = %e, "the database does not answer yet"),
                Err(_) => tracing::warn!("the database is still silent"),
            }
            tokio::time::sleep(pause).await;
            pause = (pause * 2).min(Duration::from_secs(5));
        }
    }

    /// Ends this writer's other sessions, and says whether the attempt's transaction committed:
    /// none while it still runs. On a connection of its own, outside the pool, so one that falls
    /// silent too is simply dropped.
    async fn end_given_up(&self, attempt: &Attempt) -> Result<Option<bool>> {
        let mut connection = PgConnection::connect_with(&self.writer.connect_options()).await?;
        sqlx::query(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity
             WHERE application_name = $1 AND pid <> pg_backend_pid()",
        )
        .bind(&self.writer_name)
        .execute(&mut connection)
        .await?;
        // COMMIT was never sent: the transaction cannot have committed.
        let (Some(xid), Some(_)) = (attempt.xid, &attempt.sealed) else {
            return Ok(Some(false));
        };
        let status: Option<String> =
            sqlx::query_scalar("SELECT pg_xact_status($1::int8::text::xid8)")
                .bind(xid)
                .fetch_one(&mut connection)
                .await?;
        Ok(match status.as_deref() {
            Some("in progress") => None,
            status => Some(status == Some("committed")),
        })
    }

    /// Those of `rooms` whose row another session holds locked now (asked without waiting).
    pub async fn locked(&self, rooms: &[&str]) -> Result<Vec<String>> {
        let mut tx = self.writer.begin().await?;
        let existing: Vec<String> =
            sqlx::query_scalar("SELECT name FROM rooms WHERE name = ANY($1)")
                .bind(rooms)
                .fetch_all(&mut *tx)
                .await?;
        let free: Vec<String> = sqlx::query_scalar(
            "SELECT name FROM rooms WHERE name = ANY($1) FOR UPDATE SKIP LOCKED",
        )
        .bind(rooms)
        .fetch_all(&mut *tx)
        .await?;
        tx.rollback().await?;
        Ok(existing
            .into_iter()
            .filter(|room| !free.contains(room))
            .collect())
    }

    /// Events with `seq > after`, oldest first: up to `limit`, and no more once they hold
    /// [`PAGE_BYTES`] (the first always comes, however large). The flag says whether the page
    /// stopped at either bound, so events after it may remain.
    pub async fn since(
        &self,
        room: &RoomName,
        after: i64,
        limit: i64,
    ) -> Result<(Vec<Event>, bool)> {
        // Sizes as stored, read without decompressing: the events past the budget are neither
        // sent by the database nor parsed here.
        let rows: Vec<PageRow> = sqlx::query_as(
            "SELECT * FROM (
                 SELECT seq, ts, kind, data, pg_column_size(data)::int8 AS size,
                        (sum(pg_column_size(data)) OVER (ORDER BY seq))::int8
                            - pg_column_size(data) AS before
                 FROM events WHERE room = $1 AND seq > $2 ORDER BY seq LIMIT $3
             ) page WHERE before < $4",
        )
        .bind(room.as_str())
        .bind(after)
        .bind(limit)
        .bind(PAGE_BYTES)
        .fetch_all(&self.pool)
        .await?;
        let bounded = rows.len() as i64 == limit
            || rows
                .last()
                .is_some_and(|last| last.before + last.size >= PAGE_BYTES);
        let events = rows
            .into_iter()
            .map(|page| page.row.into_event(room))
            .collect::<Result<_>>()?;
        Ok((events, bounded))
    }

    /// The room's newest seq and its epoch; 0 and none for a room that never had an event.
    pub async fn head(&self, room: &RoomName) -> Result<Head> {
        let row: Option<(i64, String)> =
            sqlx::query_as("SELECT head, epoch FROM rooms WHERE name = $1")
                .bind(room.as_str())
                .fetch_optional(&self.pool)
                .await?;
        Ok(row.map_or(
            Head {
                seq: 0,
                epoch: None,
            },
            |(seq, epoch)| Head {
                seq,
                epoch: Some(Epoch(epoch)),
            },
        ))
    }

    /// Where each of `rooms` that has a log stands, in one query.
    pub async fn heads(&self, rooms: &[String]) -> Result<Vec<(RoomName, Head)>> {
        let rows: Vec<(String, i64, String)> =
            sqlx::query_as("SELECT name, head, epoch FROM rooms WHERE name = ANY($1)")
                .bind(rooms)
                .fetch_all(&self.pool)
                .await?;
        Ok(rows
            .into_iter()
            .filter_map(|(name, seq, epoch)| {
                let head = Head {
                    seq,
                    epoch: Some(Epoch(epoch)),
                };
                Some((RoomName::parse(&name).ok()?, head))
            })
            .collect())
    }

    /// The room's newest seq and its epoch, making the room (empty, with a new epoch) if it has
    /// no log yet: a subscriber always knows which life of the log its seqs count in.
    pub async fn open(&self, room: &RoomName) -> Result<(i64, Epoch)> {
        let existing = || {
            sqlx::query_as::<_, (i64, String)>("SELECT head, epoch FROM rooms WHERE name = $1")
                .bind(room.as_str())
                .fetch_optional(&self.pool)
        };
        // Read first: nearly always the room is there, and reading writes nothing.
        if let Some((head, epoch)) = existing().await? {
            return Ok((head, Epoch(epoch)));
        }
        let made: Option<(i64, String)> = sqlx::query_as(
            "INSERT INTO rooms (name, head) VALUES ($1, 0)
             ON CONFLICT (name) DO NOTHING RETURNING head, epoch",
        )
        .bind(room.as_str())
        .fetch_optional(&self.pool)
        .await?;
        // Nothing made: another subscriber or the writer made it meanwhile, and committed (the
        // insert waited for that), so a fresh read sees it.
        let (head, epoch) = match made {
            Some(made) => made,
            None => existing().await?.ok_or_else(|| {
                sqlx::Error::Protocol(format!("room {room} neither made nor found"))
            })?,
        };
        Ok((head, Epoch(epoch)))
    }

    /// The newest `limit` events (oldest first) and the head they lead up to.
    pub async fn snapshot(&self, room: &RoomName, limit: i64) -> Result<RoomSnapshot> {
        let head = self.head(room).await?;
        let (events, _) = self.since(room, (head.seq - limit).max(0), limit).await?;
        Ok(RoomSnapshot {
            room: room.clone(),
            head: head.seq,
            epoch: head.epoch,
            events,
        })
    }
}
