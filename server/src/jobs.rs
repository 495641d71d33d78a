//! Work done once per cluster (rollups, retention, alert evaluation): the node holding the
//! store's lease does it, the others stand by and take over within a few seconds of its end.
//! A node alone (no bus to other nodes) leads from the start.

use std::time::Duration;

use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use crate::store::Store;

/// How often a leader checks that it still holds the lease, and a follower tries to take it.
const CHECK_EVERY: Duration = Duration::from_secs(1);

/// Whether this node leads the cluster's jobs now.
#[derive(Clone)]
pub struct Leadership(watch::Receiver<bool>);

impl Leadership {
    /// A node that does the jobs without asking anyone.
    pub fn alone() -> Self {
        Self(watch::channel(true).1)
    }

    /// Contends for the lease in `store` until `until`, letting it go then.
    pub fn contend(store: Store, until: CancellationToken) -> Self {
        let (leading, watched) = watch::channel(false);
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(CHECK_EVERY);
            while until.run_until_cancelled(tick.tick()).await.is_some() {
                let mut lease = match store.try_lease().await {
                    Ok(Some(lease)) => lease,
                    Ok(None) => continue,
                    Err(e) => {
                        tracing::debug!(error = %e, "could not contend for the cluster's jobs");
                        continue;
                    }
                };
                tracing::info!("this node now runs the cluster's jobs");
                leading.send_replace(true);
                let lost = loop {
                    if until.run_until_cancelled(tick.tick()).await.is_none() {
                        break None;
                    }
                    if let Err(e) = lease.check().await {
                        break Some(e);
                    }
                };
                leading.send_replace(false);
                match lost {
                    None => return lease.release().await,
                    Some(e) => tracing::warn!(error = %e, "lost the lease on the cluster's jobs"),
                }
            }
        });
        Self(watched)
    }

    pub fn is_leading(&self) -> bool {
        *self.0.borrow()
    }

    /// Waits until whether this node leads changes; returns whether it leads now.
    pub async fn changed(&mut self) -> bool {
        if self.0.changed().await.is_err() {
            // The contender stopped with the server: nothing leads here any more.
            std::future::pending::<()>().await;
        }
        *self.0.borrow_and_update()
    }
}
