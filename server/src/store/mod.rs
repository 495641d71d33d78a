//! Persistence, in one place: the event log, metric samples and dashboards in Postgres. The log
//! is the truth that live delivery only hurries along.

mod accounts;
mod alerts;
mod block;
mod dashboards;
mod events;
mod history;
mod lease;
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
pub use lease::Lease;
use samples::SeriesIds;
pub use samples::{Reservation, SeriesLimits};
use tiers::Retention;

use crate::error::{Result, RunError};

static MIGRATIONS: Migrator = sqlx::migrate!("../migrations");

/// How long the store's statements may wait or run, so one stuck lock or slow query fails its
/// own requests instead of stalling everyone queued behind it.
#[derive(Clone, Copy, Debug)]
pub struct Timeouts {
    /// A page's or the API's read (`statement_timeout` of the read pool).
    pub query: Duration,
    /// The writer's wait for a row lock held by another session (`lock_timeout`).
    pub lock: Duration,
    /// The writer's wait for one batch, and each of its statements': a batch commits in
    /// milliseconds, so this only ends a stall.
    pub commit: Duration,
}

impl Default for Timeouts {
    fn default() -> Self {
        Self {
            query: Duration::from_secs(15),
            lock: Duration::from_secs(2),
            commit: Duration::from_secs(30),
        }
    }
}

#[derive(Clone)]
pub struct Store {
    /// Pages and API reads: they can queue here by the hundred, each bounded in time.
    pool: PgPool,
    /// The single writer's own connection, so a burst of reads never delays a commit.
    writer: PgPool,
    /// The writer's `application_name`, this process's alone: how a session it gave up on is
    /// found again to be ended.
    writer_name: String,
    timeouts: Timeouts,
    /// Rollups, packing, retention and deletes: long by nature, so not bounded like reads, and
    /// apart from them so a page never waits for an hour's rollup.
    upkeep: PgPool,
    series: SeriesIds,
    limits: SeriesLimits,
    retention: Retention,
}

impl Store {
    /// Connects and brings the schema up to date (nodes starting together migrate one at a
    /// time: sqlx holds an advisory lock while it migrates).
    pub async fn connect(options: PgConnectOptions, timeouts: Timeouts) -> Result<Self, RunError> {
        // While the database is away, requests fail after a few seconds instead of hanging.
        let pool = |connections, options: PgConnectOptions, settings: &[(&str, Duration)]| {
            let settings = settings
                .iter()
                .map(|(name, limit)| (*name, format!("{}ms", limit.as_millis())));
            PgPoolOptions::new()
                .max_connections(connections)
                .acquire_timeout(Duration::from_secs(5))
                .connect_lazy_with(options.options(settings))
        };
        let reads = pool(
            16,
            options.clone(),
            &[("statement_timeout", timeouts.query)],
        );
        let writer_name = format!("watchroom writer {:016x}", rand::random::<u64>());
        let writer = pool(
            1,
            options.clone().application_name(&writer_name),
            &[
                ("lock_timeout", timeouts.lock),
                ("statement_timeout", timeouts.commit),
            ],
        );
        let upkeep = pool(2, options, &[]);
        MIGRATIONS.run(&upkeep).await?;
        Ok(Self {
            pool: reads,
            writer,
            writer_name,
            timeouts,
            upkeep,
            series: SeriesIds::default(),
            limits: SeriesLimits::default(),
            retention: Retention::default(),
        })
    }

    /// The store keeping samples as long as `retention` says, and answering ranges within it.
    pub fn keeping(self, retention: Retention) -> Self {
        Self { retention, ..self }
    }

    /// The store holding at most `limits` series.
    pub fn limiting(self, limits: SeriesLimits) -> Self {
        Self { limits, ..self }
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
