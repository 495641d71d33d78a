//! The durable event log in Postgres: the truth that live delivery only hurries along.

use app::history::History;
use app::protocol::{Event, EventKind, NewEvent, RoomName, RoomSnapshot};
use chrono::{DateTime, Utc};
use futures::future::BoxFuture;
use sqlx::{
    PgPool,
    postgres::{PgConnectOptions, PgPoolOptions},
    types::Json,
};

use crate::error::{Error, Result};

#[derive(Clone)]
pub struct Store {
    pool: PgPool,
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
        let kind = EventKind::parse(&self.kind)
            .ok_or_else(|| sqlx::Error::Decode(format!("unknown event kind {:?}", self.kind).into()))?;
        Ok(Event { room: room.clone(), seq: self.seq, ts: self.ts, kind, data: self.data.0 })
    }
}

impl Store {
    /// Connects and brings the schema up to date.
    pub async fn connect(options: PgConnectOptions) -> Result<Self> {
        let pool = PgPoolOptions::new().max_connections(16).connect_with(options).await?;
        sqlx::migrate!("../migrations").run(&pool).await?;
        Ok(Self { pool })
    }

    /// Commits `event` as the room's next seq and returns it as stored.
    pub async fn append(&self, room: &RoomName, event: &NewEvent) -> Result<Event> {
        // The upsert takes the room's row lock until commit, so concurrent appends to one room
        // queue up here and seqs are handed out without gaps.
        let row: Row = sqlx::query_as(
            "WITH bumped AS (
                 INSERT INTO rooms (name, head) VALUES ($1, 1)
                 ON CONFLICT (name) DO UPDATE SET head = rooms.head + 1
                 RETURNING head
             )
             INSERT INTO events (room, seq, kind, data)
             SELECT $1, head, $2, $3 FROM bumped
             RETURNING seq, ts, kind, data",
        )
        .bind(room.as_str())
        .bind(event.kind.as_str())
        .bind(Json(&event.data))
        .fetch_one(&self.pool)
        .await?;
        row.into_event(room)
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
        Ok(RoomSnapshot { room: room.clone(), head, events })
    }
}

impl History for Store {
    fn snapshot(&self, room: RoomName, limit: i64) -> BoxFuture<'static, Result<RoomSnapshot, String>> {
        let store = self.clone();
        Box::pin(async move {
            store.snapshot(&room, limit).await.map_err(|e: Error| {
                tracing::error!(error = %e, %room, "loading room snapshot failed");
                e.public_message()
            })
        })
    }
}
