//! The cluster's lease on work done once per cluster: a session advisory lock, held for as long
//! as the connection that took it lives. A node that dies lets go with its connection.

use sqlx::{Connection, PgConnection};

use super::Store;
use crate::error::Result;

/// The lock's key among the database's advisory locks (sqlx's migrations use another).
const KEY: i64 = 0x7761_7463_6872_6f6f; // "watchroo"

/// The lease, while held.
pub struct Lease {
    connection: PgConnection,
}

impl Store {
    /// Takes the lease if no other node holds it.
    pub async fn try_lease(&self) -> Result<Option<Lease>> {
        let mut connection = self.upkeep.acquire().await?.detach();
        let taken: bool = sqlx::query_scalar("SELECT pg_try_advisory_lock($1)")
            .bind(KEY)
            .fetch_one(&mut connection)
            .await?;
        Ok(taken.then_some(Lease { connection }))
    }
}

impl Lease {
    /// Whether the lease still stands: the connection holding it answers.
    pub async fn check(&mut self) -> Result<()> {
        Ok(self.connection.ping().await?)
    }

    /// Lets go at once, so another node takes over without waiting.
    pub async fn release(self) {
        let _ = self.connection.close().await;
    }
}
