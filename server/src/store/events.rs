//! The durable event log in Postgres: the truth that live delivery only hurries along.

use std::{collections::HashMap, time::Duration};

use app::history::{History, Sources};
use app::{
    metrics::{self, Bucket, Point, Series, room_source},
    protocol::{Event, EventKind, NewEvent, RoomName, RoomSnapshot},
};
use chrono::{DateTime, Utc};
use futures::future::BoxFuture;
use sqlx::{
    PgPool,
    postgres::{PgConnectOptions, PgPoolOptions},
    types::Json,
};

use crate::{
    error::{Result, for_page},
    samples::SeriesIds,
};

#[derive(Clone)]
pub struct Store {
    /// Everything but the writer: pages and API reads can queue here by the hundred.
    pub(crate) pool: PgPool,
    /// The single writer's own connection, so a burst of reads never delays a commit.
    writer: PgPool,
    pub(crate) series: SeriesIds,
}

/// An event on its way into the log, with the samples it carries when its room is a source's.
pub struct Pending {
    pub(crate) room: RoomName,
    event: NewEvent,
    /// `event.data` as stored, serialised by the publisher's task rather than the single writer.
    text: String,
    pub(crate) points: Vec<Point>,
}

impl Pending {
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

#[derive(sqlx::FromRow)]
struct Row {
    seq: i64,
    ts: DateTime<Utc>,
    kind: String,
    data: Json<serde_json::Value>,
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
    /// Connects and brings the schema up to date.
    pub async fn connect(options: PgConnectOptions) -> Result<Self> {
        // While the database is away, requests fail after a few seconds instead of hanging.
        let pool = |connections| {
            PgPoolOptions::new()
                .max_connections(connections)
                .acquire_timeout(Duration::from_secs(5))
                .connect_lazy_with(options.clone())
        };
        let (reads, writer) = (pool(16), pool(1));
        sqlx::migrate!("../migrations").run(&reads).await?;
        Ok(Self {
            pool: reads,
            writer,
            series: SeriesIds::default(),
        })
    }

    /// Commits `batch` in one transaction, giving each event its room's next seq in batch order,
    /// and returns the events as stored, in the same order. The samples of `metric` events in a
    /// source's room are committed with them, so history and the live stream never disagree.
    pub async fn append(&self, batch: Vec<Pending>) -> Result<Vec<Event>> {
        let mut counts: HashMap<&str, i64> = HashMap::new();
        for pending in &batch {
            *counts.entry(pending.room.as_str()).or_default() += 1;
        }
        let (rooms, added): (Vec<&str>, Vec<i64>) = counts.iter().map(|(r, n)| (*r, *n)).unzip();

        let mut tx = self.writer.begin().await?;
        // Bumping each head takes the room's row lock until commit: seqs are gapless and a
        // rolled-back batch gives its seqs back.
        let heads: Vec<(String, i64, DateTime<Utc>)> = sqlx::query_as(
            "INSERT INTO rooms (name, head) SELECT * FROM UNNEST($1::text[], $2::bigint[])
             ON CONFLICT (name) DO UPDATE SET head = rooms.head + EXCLUDED.head
             RETURNING name, head, now()",
        )
        .bind(&rooms)
        .bind(&added)
        .fetch_all(&mut *tx)
        .await?;
        let ts = heads.first().map(|(_, _, ts)| *ts).unwrap_or_else(Utc::now);
        // The first seq of each room in this batch.
        let mut next: HashMap<&str, i64> = heads
            .iter()
            .map(|(name, head, _)| (name.as_str(), head - counts[name.as_str()] + 1))
            .collect();

        let mut texts = Vec::with_capacity(batch.len());
        let mut samples: Vec<(String, Vec<Point>)> = Vec::new();
        let mut stored = Vec::with_capacity(batch.len());
        for pending in batch {
            let next = next
                .get_mut(pending.room.as_str())
                .expect("every room of the batch got a head");
            if let Some(source) = room_source(&pending.room).filter(|_| !pending.points.is_empty())
            {
                samples.push((source.to_owned(), pending.points));
            }
            texts.push(pending.text);
            stored.push(Event {
                room: pending.room,
                seq: *next,
                ts,
                kind: pending.event.kind,
                data: pending.event.data,
            });
            *next += 1;
        }
        sqlx::query(
            "INSERT INTO events (room, seq, ts, kind, data)
             SELECT r, s, $3, k, d::json
             FROM UNNEST($1::text[], $2::bigint[], $4::text[], $5::text[]) AS u (r, s, k, d)",
        )
        .bind(stored.iter().map(|e| e.room.as_str()).collect::<Vec<_>>())
        .bind(stored.iter().map(|e| e.seq).collect::<Vec<_>>())
        .bind(ts)
        .bind(stored.iter().map(|e| e.kind.as_str()).collect::<Vec<_>>())
        .bind(&texts)
        .execute(&mut *tx)
        .await?;
        let created = match samples.is_empty() {
            true => None,
            false => Some(self.series.insert(&mut tx, &samples).await?),
        };
        tx.commit().await?;
        if let Some(created) = created {
            self.series.committed(created);
        }
        Ok(stored)
    }

    /// Up to `limit` events with `seq > after`, oldest first.
    pub async fn since(&self, room: &RoomName, after: i64, limit: i64) -> Result<Vec<Event>> {
        let rows: Vec<Row> = sqlx::query_as(
            "SELECT seq, ts, kind, data FROM events
             WHERE room = $1 AND seq > $2 ORDER BY seq LIMIT $3",
        )
        .bind(room.as_str())
        .bind(after)
        .bind(limit)
        .fetch_all(&self.pool)
        .await?;
        rows.into_iter().map(|row| row.into_event(room)).collect()
    }

    /// The room's newest seq; 0 for a room that never had an event.
    pub async fn head(&self, room: &RoomName) -> Result<i64> {
        let head: Option<i64> = sqlx::query_scalar("SELECT head FROM rooms WHERE name = $1")
            .bind(room.as_str())
            .fetch_optional(&self.pool)
            .await?;
        Ok(head.unwrap_or(0))
    }

    /// The newest `limit` events (oldest first) and the head they lead up to.
    pub async fn snapshot(&self, room: &RoomName, limit: i64) -> Result<RoomSnapshot> {
        let head = self.head(room).await?;
        let events = self.since(room, (head - limit).max(0), limit).await?;
        Ok(RoomSnapshot {
            room: room.clone(),
            head,
            events,
        })
    }
}

impl Store {
    /// Runs `query` for a page: the page gets only the public message of a failure, the log
    /// gets all of it.
    pub(crate) fn serve_page<T, F>(
        &self,
        what: &'static str,
        query: impl FnOnce(Store) -> F,
    ) -> BoxFuture<'static, Result<T, String>>
    where
        F: Future<Output = Result<T>> + Send + 'static,
    {
        let query = query(self.clone());
        Box::pin(async move { query.await.map_err(for_page(what)) })
    }
}

impl History for Store {
    fn snapshot(
        &self,
        room: RoomName,
        limit: i64,
    ) -> BoxFuture<'static, Result<RoomSnapshot, String>> {
        self.serve_page("loading a room snapshot", |store| async move {
            store.snapshot(&room, limit).await
        })
    }

    fn range(
        &self,
        source: String,
        series: Series,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
        step_ms: i64,
    ) -> BoxFuture<'static, Result<Vec<Bucket>, String>> {
        let width = step_ms.max(1) as f64 / 1000.0;
        self.serve_page("reading a metric range", |store| async move {
            store
                .range(&source, &series.name, &series.labels, from, to, width)
                .await
        })
    }

    fn sources(
        &self,
        filter: String,
        limit: usize,
        series: usize,
    ) -> BoxFuture<'static, Result<(usize, Sources), String>> {
        self.serve_page("listing sources", move |store| async move {
            store.source_page(&filter, limit, series).await
        })
    }
}
