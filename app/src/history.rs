//! The server-side source of the past: a room's recent events and metric history. The server
//! provides an implementation as context; server functions read it without knowing about Postgres.

use std::sync::Arc;

use chrono::{DateTime, Utc};
use futures::future::BoxFuture;

use crate::{
    auth::Identity,
    error::AppError,
    metrics::{Bucket, Series},
    protocol::{RoomName, RoomSnapshot},
};

pub trait History: Send + Sync + 'static {
    fn snapshot(
        &self,
        room: RoomName,
        limit: i64,
    ) -> BoxFuture<'static, Result<RoomSnapshot, AppError>>;

    /// One series of `source` over `[from, to)` in buckets `step_ms` wide, aligned to multiples
    /// of that width since the epoch (so pushes can fold into the same buckets).
    fn range(
        &self,
        source: String,
        series: Series,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
        step_ms: i64,
    ) -> BoxFuture<'static, Result<Vec<Bucket>, AppError>>;

    /// The first `limit` sources (by name) whose name contains `filter` and whose room `visible`
    /// may read, each with its first `series` series, and how many sources matched: the others
    /// do not exist for it, not even in the count.
    fn sources(
        &self,
        filter: String,
        limit: usize,
        series: usize,
        visible: Identity,
    ) -> BoxFuture<'static, Result<(usize, Sources), AppError>>;
}

/// Source names, each with its series.
pub type Sources = Vec<(String, Vec<Series>)>;

#[derive(Clone)]
pub struct SharedHistory(pub Arc<dyn History>);
