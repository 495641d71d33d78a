//! Persistence, in one place: the event log, metric samples and dashboards in Postgres. The log
//! is the truth that live delivery only hurries along.

mod accounts;
mod alerts;
mod block;
mod dashboards;
mod events;
mod history;
mod range;
mod samples;
pub mod tiers;

use std::time::Duration;

use sqlx::{
    PgPool,
    migrate::Migrator,
    postgres::{PgConnectOptions, PgPoolOptions},
};

pub use accounts::{Account, TokenGrant};
pub use alerts::{Notification, Outgoing};
pub use block::Damaged;
pub use events::{Appended, Head, Pending};
use samples::SeriesIds;
use tiers::Retention;

use crate::error::{Result, RunError};

static MIGRATIONS: Migrator = sqlx::migrate!("../migrations");

#[derive(Clone)]
pub struct Store {
    /// Everything but the writer: pages and API reads can queue here by the hundred.
    pool: PgPool,
    /// The single writer's own connection, so a burst of reads never delays a commit.
    writer: PgPool,
    series: SeriesIds,
    retention: Retention,
}

impl Store {
    /// Connects and brings the schema up to date (nodes starting together migrate one at a
    /// time: sqlx holds an advisory lock while it migrates).
    pub async fn connect(options: PgConnectOptions) -> Result<Self, RunError> {
        // While the database is away, requests fail after a few seconds instead of hanging.
        let pool = |connections| {
            PgPoolOptions::new()
                .max_connections(connections)
                .acquire_timeout(Duration::from_secs(5))
                .connect_lazy_with(options.clone())
        };
        let (reads, writer) = (pool(16), pool(1));
        MIGRATIONS.run(&reads).await?;
        Ok(Self {
            pool: reads,
            writer,
            series: SeriesIds::default(),
            retention: Retention::default(),
        })
    }

    /// The store keeping samples as long as `retention` says, and answering ranges within it.
    pub fn keeping(self, retention: Retention) -> Self {
        Self { retention, ..self }
    }

    pub fn retention(&self) -> Retention {
        self.retention
    }

    /// Connections of the read pool: open, and of them idle.
    pub fn pool_use(&self) -> (u32, usize) {
        (self.pool.size(), self.pool.num_idle())
    }

    /// The newest migration this server was built with.
    pub fn schema_wanted() -> i64 {
        MIGRATIONS.iter().map(|m| m.version).max().unwrap_or(0)
    }

    /// The newest migration the database has applied.
    pub async fn schema(&self) -> Result<i64> {
        Ok(sqlx::query_scalar(
            "SELECT coalesce(max(version), 0) FROM _sqlx_migrations WHERE success",
        )
        .fetch_one(&self.pool)
        .await?)
    }
}
