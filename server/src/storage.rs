//! Upkeep of the metrics store, every few seconds: partitions made ahead of the samples, the
//! newest minutes rolled up, cold hours packed into blocks, expired partitions dropped.

use std::time::Duration;

use app::history::EARLIEST;
use chrono::{DateTime, TimeDelta, Utc};
use tokio_util::{sync::CancellationToken, task::TaskTracker};

use crate::{
    config::Config,
    error::Result,
    jobs::Leadership,
    store::{
        Store,
        tiers::{BLOCKS, HOURS, MINUTES, Retention, SAMPLES},
    },
};

/// Hour partitions made ahead of the clock.
const AHEAD: TimeDelta = TimeDelta::hours(3);
/// How far rollups trail the clock: a sample stamped on receipt is committed well before.
const SETTLE: TimeDelta = TimeDelta::seconds(10);
/// Hours packed (and hours of late samples swept) per round at most, so a round stays short.
const HOURS_PER_ROUND: usize = 4;

/// The tiers' retention and packing as configured.
pub fn retention(config: &Config) -> Retention {
    let delta = |d: Duration| TimeDelta::from_std(d).unwrap_or(TimeDelta::MAX);
    Retention {
        raw: delta(config.retention_raw),
        minutes: delta(config.retention_minutes),
        hours: delta(config.retention_hours),
        compact_after: delta(config.compact_after),
    }
}

/// Makes the partitions of the coming hours, before the first sample is written.
pub async fn prepare(store: &Store) -> Result<()> {
    let now = Utc::now();
    store.ensure_partitions(SAMPLES, now, now + AHEAD).await
}

/// Runs a round of upkeep `every` so often while this node leads the cluster's jobs, until
/// `shutdown`, by the store's retention.
pub fn spawn(
    store: Store,
    every: Duration,
    leader: Leadership,
    tracker: &TaskTracker,
    shutdown: CancellationToken,
) {
    tracker.spawn(async move {
        // The first round waits one period: a node starting has other work for its connections.
        let first = tokio::time::Instant::now() + every;
        let mut tick = tokio::time::interval_at(first, every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = tick.tick() => {}
            }
            if !leader.is_leading() {
                continue;
            }
            let round = tokio::select! {
                _ = shutdown.cancelled() => return,
                round = round(&store, Utc::now()) => round,
            };
            if let Err(error) = round {
                tracing::warn!(%error, "metrics storage upkeep failed; trying again next round");
            }
        }
    });
}

/// One round of upkeep as of `now`.
pub async fn round(store: &Store, now: DateTime<Utc>) -> Result<()> {
    let keep = store.retention();
    store.ensure_partitions(SAMPLES, now, now + AHEAD).await?;
    let until = now - SETTLE;
    // After a long stop, rolling up catches up an hour per step.
    while let Some(reached) = store.roll_up(until).await? {
        if reached + TimeDelta::minutes(1) > until {
            break;
        }
    }
    let cold = now
        .checked_sub_signed(keep.compact_after)
        .unwrap_or(EARLIEST);
    for _ in 0..HOURS_PER_ROUND {
        if !store.compact(cold).await? {
            break;
        }
    }
    for _ in 0..HOURS_PER_ROUND {
        if !store.sweep_late(cold).await? {
            break;
        }
    }
    let mut dropped = 0;
    for (table, keep) in [
        (SAMPLES, keep.raw),
        (BLOCKS, keep.raw),
        (MINUTES, keep.minutes),
        (HOURS, keep.hours),
    ] {
        if let Some(before) = now.checked_sub_signed(keep) {
            dropped += store.drop_partitions(table, before).await?;
        }
    }
    if let Some(before) = now.checked_sub_signed(keep.raw) {
        store.drop_late(before).await?;
    }
    if dropped > 0 {
        tracing::info!(partitions = dropped, "retention dropped expired samples");
    }
    Ok(())
}
