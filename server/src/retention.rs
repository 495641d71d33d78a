//! Retention of events: each kind is kept as long as its policy says, then removed in small
//! batches, so neither a lock nor the work itself holds up ingest. Rooms keep their heads, so
//! seqs go on from where they were; a subscriber resuming from before what is kept is told so.

use std::time::Duration;

use app::protocol::EventKind;
use chrono::Utc;
use tokio_util::{sync::CancellationToken, task::TaskTracker};

use crate::{config::Config, jobs::Leadership, store::Store};

/// Events removed per statement: a few milliseconds of work each.
const BATCH: i64 = 2_000;
/// A breath between batches, for the writer's commits to go first.
const PAUSE: Duration = Duration::from_millis(20);

/// How long each kind of event is kept.
#[derive(Clone, Debug)]
pub struct Policy {
    pub keep: Vec<(EventKind, Duration)>,
    pub every: Duration,
}

impl Policy {
    pub fn of(config: &Config) -> Self {
        Self {
            keep: vec![
                (EventKind::Notice, config.retain_notices),
                (EventKind::Alert, config.retain_alerts),
                (EventKind::Metric, config.retain_metric_events),
            ],
            every: config.retention_every,
        }
    }
}

/// Applies `policy` every `policy.every` while this node leads the cluster's jobs, until
/// `shutdown`.
pub fn spawn(
    store: Store,
    policy: Policy,
    leader: Leadership,
    tracker: &TaskTracker,
    shutdown: CancellationToken,
) {
    tracker.spawn(async move {
        // The first round waits one period: a node starting has other work for its connections.
        let first = tokio::time::Instant::now() + policy.every;
        let mut tick = tokio::time::interval_at(first, policy.every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = tick.tick() => {}
            }
            if !leader.is_leading() {
                continue;
            }
            for (kind, keep) in &policy.keep {
                let removed = tokio::select! {
                    _ = shutdown.cancelled() => return,
                    removed = purge(&store, *kind, *keep) => removed,
                };
                match removed {
                    Ok(0) => {}
                    Ok(n) => tracing::info!(kind = kind.as_str(), removed = n, "retention removed events"),
                    Err(error) => tracing::warn!(%error, kind = kind.as_str(), "retention failed; trying again later"),
                }
            }
        }
    });
}

/// Removes every event of `kind` older than `keep`, batch by batch.
async fn purge(store: &Store, kind: EventKind, keep: Duration) -> crate::error::Result<u64> {
    let before = chrono::TimeDelta::from_std(keep)
        .ok()
        .and_then(|keep| Utc::now().checked_sub_signed(keep))
        .filter(|before| *before > app::history::EARLIEST);
    // Kept longer than anything stored has existed: nothing to remove.
    let Some(before) = before else {
        return Ok(0);
    };
    let mut removed = 0;
    loop {
        let n = store.purge(kind, before, BATCH).await?;
        removed += n;
        if n < BATCH as u64 {
            return Ok(removed);
        }
        tokio::time::sleep(PAUSE).await;
    }
}
