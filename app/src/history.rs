//! The server-side source of the past: a room's recent events and metric history. The server
//! provides an implementation as context; server functions read it without knowing about Postgres.

use std::sync::Arc;

use chrono::{DateTime, Utc};
use futures::future::BoxFuture;

use crate::{
    metrics::Bucket,
    protocol::{RoomName, RoomSnapshot},
};

pub trait History: Send + Sync + 'static {
    fn snapshot(
        &self,
        room: RoomName,
        limit: i64,
    ) -> BoxFuture<'static, Result<RoomSnapshot, String>>;

    /// One label-less series of `source` over `[from, to)` in `buckets` buckets.
    fn range(
        &self,
        source: String,
        series: String,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
        buckets: u32,
    ) -> BoxFuture<'static, Result<Vec<Bucket>, String>>;

    /// Every source with its label-less series, by name.
    fn sources(&self) -> BoxFuture<'static, Result<Sources, String>>;
}

/// Source names, each with the names of its label-less series.
pub type Sources = Vec<(String, Vec<String>)>;

#[derive(Clone)]
pub struct SharedHistory(pub Arc<dyn History>);
