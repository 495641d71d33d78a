//! The server-side source of a room's recent past. The server provides an implementation as
//! context; server functions read it without knowing about Postgres.

use std::sync::Arc;

use futures::future::BoxFuture;

use crate::protocol::{RoomName, RoomSnapshot};

pub trait History: Send + Sync + 'static {
    fn snapshot(
        &self,
        room: RoomName,
        limit: i64,
    ) -> BoxFuture<'static, Result<RoomSnapshot, String>>;
}

#[derive(Clone)]
pub struct SharedHistory(pub Arc<dyn History>);
