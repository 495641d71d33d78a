//! The tiers samples pass through as they age: raw rows in hour partitions, rolled up into
//! minute and hour buckets a few seconds after their minute ends, packed into blocks once cold,
//! and dropped a whole partition at a time when their tier's retention ends.

use std::collections::{BTreeMap, HashMap};

use app::metrics::{Series, Storage, TierUsage};
use chrono::{DateTime, TimeDelta, Utc};
use sqlx::{PgConnection, types::Json};

use super::{Store, block};
use crate::error::Result;

/// A table partitioned by time into spans of one length, aligned to the Unix epoch.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Partitioned {
    pub table: &'static str,
    pub span: TimeDelta,
}

pub const SAMPLES: Partitioned = Partitioned {
    table: "samples",
    span: TimeDelta::hours(1),
};
pub const BLOCKS: Partitioned = Partitioned {
    table: "sample_blocks",
    span: TimeDelta::days(1),
};
pub const MINUTES: Partitioned = Partitioned {
    table: "rollups_1m",
    span: TimeDelta::days(7),
};
pub const HOURS: Partitioned = Partitioned {
    table: "rollups_1h",
    span: TimeDelta::days(30),
};

/// How long each tier keeps samples, and when raw rows are packed into blocks.
#[derive(Clone, Copy, Debug)]
pub struct Retention {
    /// Raw samples, as rows and then as blocks.
    pub raw: TimeDelta,
    pub minutes: TimeDelta,
    pub hours: TimeDelta,
    /// Raw samples are rows this long; only samples older than this are ever in blocks.
    pub compact_after: TimeDelta,
}

impl Default for Retention {
    fn default() -> Self {
        Self {
            raw: TimeDelta::days(15),
            minutes: TimeDelta::days(90),
            hours: TimeDelta::days(730),
            compact_after: TimeDelta::hours(3),
        }
    }
}

/// The advisory lock of the storage work: one node at a time rolls up and compacts.
const JOB_LOCK: i64 = 0x7761_7463_6872_6f6d;
/// The advisory lock under which partitions are created.
const PARTITION_LOCK: i64 = JOB_LOCK + 1;
/// Most of the raw log one rollup transaction reads: catching up after a long stop goes in
/// steps a transaction can hold.
const MOST_ROLLED: TimeDelta = TimeDelta::hours(1);
/// A bucket's newest sample, time and value, from raw samples: the value of the greatest
/// `(time, value)` (the time to the microsecond as a double, which keeps microseconds apart).
pub(super) const NEWEST_SAMPLE: &str = "max(ts), (max(ARRAY[date_part('epoch', ts), value]))[2]";
/// The same from buckets, of which those rolled up before it was kept have none.
pub(super) const NEWEST_OF_BUCKETS: &str = "max(last_at),
    (max(ARRAY[date_part('epoch', last_at), last]) FILTER (WHERE last_at IS NOT NULL))[2]";
/// An hour's bucket from its minutes (`m`).
fn hour_of_minutes() -> String {
    format!(
        "SELECT m.series, sum(m.count)::int, date_bin('1 hour', m.t, 'epoch') AS hour,
            min(m.min), max(m.max), sum(m.sum), {NEWEST_OF_BUCKETS}
         FROM rollups_1m m"
    )
}
/// What replaces an hour already there.
const REBUILT: &str = "ON CONFLICT (series, t) DO UPDATE SET count = EXCLUDED.count,
    min = EXCLUDED.min, max = EXCLUDED.max, sum = EXCLUDED.sum, last_at = EXCLUDED.last_at,
    last = EXCLUDED.last";
/// Series packed per query while compacting an hour.
const SERIES_PER_READ: usize = 500;

/// `t` rounded down to a multiple of `span` since the epoch.
pub fn floor(t: DateTime<Utc>, span: TimeDelta) -> DateTime<Utc> {
    let span = span.num_microseconds().expect("spans are short");
    let micros = t.timestamp_micros();
    DateTime::from_timestamp_micros(micros - micros.rem_euclid(span)).expect("an earlier time")
}

/// `t` rounded up to a multiple of `span` since the epoch.
pub fn ceil(t: DateTime<Utc>, span: TimeDelta) -> DateTime<Utc> {
    let down = floor(t, span);
    if down == t { t } else { down + span }
}

impl Partitioned {
    fn name(self, start: DateTime<Utc>) -> String {
        format!("{}_p{}", self.table, start.format("%Y%m%d%H"))
    }

    fn start(self, name: &str) -> Option<DateTime<Utc>> {
        let stamp = name.strip_prefix(self.table)?.strip_prefix("_p")?;
        let hour = chrono::NaiveDateTime::parse_from_str(&format!("{stamp}0000"), "%Y%m%d%H%M%S");
        hour.ok().map(|t| t.and_utc())
    }
}

/// Takes the storage work's lock for the transaction, if no other node holds it.
async fn job_lock(tx: &mut PgConnection) -> Result<bool> {
    Ok(sqlx::query_scalar("SELECT pg_try_advisory_xact_lock($1)")
        .bind(JOB_LOCK)
        .fetch_one(tx)
        .await?)
}

/// The partitions of `table` by start, oldest first.
async fn partitions(db: &mut PgConnection, table: Partitioned) -> Result<Vec<DateTime<Utc>>> {
    let names: Vec<String> = sqlx::query_scalar(
        "SELECT c.relname::text FROM pg_inherits i
         JOIN pg_class c ON c.oid = i.inhrelid JOIN pg_class p ON p.oid = i.inhparent
         WHERE p.relname = $1",
    )
    .bind(table.table)
    .fetch_all(db)
    .await?;
    let mut starts: Vec<_> = names.iter().filter_map(|n| table.start(n)).collect();
    starts.sort();
    Ok(starts)
}

/// A timestamp as a SQL literal, for partition bounds (which take no parameters).
fn literal(t: DateTime<Utc>) -> String {
    format!("'{}'", t.to_rfc3339())
}

impl Store {
    /// Creates the partitions of `table` for `[from, to)` that do not exist yet. An hour of raw
    /// samples already holding late rows keeps them there: it gets no partition.
    pub async fn ensure_partitions(
        &self,
        table: Partitioned,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
    ) -> Result<()> {
        let existing = partitions(&mut *self.upkeep.acquire().await?, table).await?;
        let mut start = floor(from, table.span);
        while start < to {
            let end = start + table.span;
            let kept = existing.contains(&start)
                || (table == SAMPLES && self.has_late(start, end).await?);
            if !kept {
                let mut tx = self.upkeep.begin().await?;
                // Nodes starting together would race to create the same partition.
                sqlx::query("SELECT pg_advisory_xact_lock($1)")
                    .bind(PARTITION_LOCK)
                    .execute(&mut *tx)
                    .await?;
                // Creating a partition locks its parent: better to fail and come back than
                // to queue every writer behind a long read.
                sqlx::query("SET LOCAL lock_timeout = '2s'")
                    .execute(&mut *tx)
                    .await?;
                sqlx::query(&format!(
                    "CREATE TABLE IF NOT EXISTS {} PARTITION OF {} FOR VALUES FROM ({}) TO ({})",
                    table.name(start),
                    table.table,
                    literal(start),
                    literal(end),
                ))
                .execute(&mut *tx)
                .await?;
                tx.commit().await?;
            }
            start = end;
        }
        Ok(())
    }

    async fn has_late(&self, from: DateTime<Utc>, to: DateTime<Utc>) -> Result<bool> {
        Ok(sqlx::query_scalar(
            "SELECT EXISTS (SELECT FROM samples_late WHERE ts >= $1 AND ts < $2)",
        )
        .bind(from)
        .bind(to)
        .fetch_one(&self.upkeep)
        .await?)
    }

    /// Drops the partitions of `table` that end at or before `before`; returns how many.
    pub async fn drop_partitions(
        &self,
        table: Partitioned,
        before: DateTime<Utc>,
    ) -> Result<usize> {
        let expired: Vec<_> = partitions(&mut *self.upkeep.acquire().await?, table)
            .await?
            .into_iter()
            .filter(|start| *start + table.span <= before)
            .collect();
        for start in &expired {
            let mut tx = self.upkeep.begin().await?;
            sqlx::query("SET LOCAL lock_timeout = '2s'")
                .execute(&mut *tx)
                .await?;
            sqlx::query(&format!("DROP TABLE IF EXISTS {}", table.name(*start)))
                .execute(&mut *tx)
                .await?;
            tx.commit().await?;
        }
        Ok(expired.len())
    }

    /// Removes late raw samples stamped before `before`, whose partitions retention dropped.
    pub async fn drop_late(&self, before: DateTime<Utc>) -> Result<u64> {
        let done = sqlx::query("DELETE FROM samples_late WHERE ts < $1")
            .bind(before)
            .execute(&self.upkeep)
            .await?;
        Ok(done.rows_affected())
    }

    async fn rolled(&self) -> Result<DateTime<Utc>> {
        Ok(
            sqlx::query_scalar("SELECT at FROM rollup_state WHERE name = 'rolled'")
                .fetch_one(&self.upkeep)
                .await?,
        )
    }

    /// Rolls raw samples up into minute and hour buckets up to `until` (a whole minute, or
    /// an hour past the last rollup if that is sooner), folding in late samples. Returns how
    /// far the rollups reach, or None when there was nothing to do or another node did it.
    ///
    /// Two steps. The fence moves first, in its own transaction, which waits for every commit
    /// that read the old fence; from then on a sample stamped before it is written as late.
    /// Then one snapshot reads the raw samples up to the new fence and the late ones before the
    /// old rollup mark, so each sample is counted once, whether this step commits or not.
    pub async fn roll_up(&self, until: DateTime<Utc>) -> Result<Option<DateTime<Utc>>> {
        let until = floor(until, TimeDelta::minutes(1));
        let rolled = self.rolled().await?;
        let target = until.min(rolled + MOST_ROLLED);
        if target <= rolled {
            return Ok(None);
        }
        sqlx::query("UPDATE rollup_state SET at = greatest(at, $1) WHERE name = 'fence'")
            .bind(target)
            .execute(&self.upkeep)
            .await?;
        let oldest_late: Option<DateTime<Utc>> =
            sqlx::query_scalar("SELECT min(t) FROM rollup_pending")
                .fetch_one(&self.upkeep)
                .await?;
        let from = oldest_late.unwrap_or(rolled).min(rolled);
        self.ensure_partitions(MINUTES, from, target).await?;
        self.ensure_partitions(HOURS, from, target).await?;
        // Pages written since the block range index was last summarised all match any range:
        // unsummarised, the hour so far would be read again at every rollup.
        sqlx::query(
            "SELECT brin_summarize_new_values(inhrelid) FROM pg_inherits
             WHERE inhparent = 'samples_ts'::regclass",
        )
        .execute(&self.upkeep)
        .await?;

        let mut tx = self
            .pool
            .begin_with("BEGIN ISOLATION LEVEL REPEATABLE READ")
            .await?;
        if !job_lock(&mut tx).await? {
            return Ok(None);
        }
        // Seconds of a partition that may hold hours: whatever the statistics of a partition
        // still filling say, read them by index.
        sqlx::query("SET LOCAL enable_seqscan = off")
            .execute(&mut *tx)
            .await?;
        let rolled: DateTime<Utc> =
            sqlx::query_scalar("SELECT at FROM rollup_state WHERE name = 'rolled'")
                .fetch_one(&mut *tx)
                .await?;
        if target <= rolled {
            return Ok(None);
        }
        sqlx::query(&format!(
            "INSERT INTO rollups_1m (series, count, t, min, max, sum, last_at, last)
             SELECT series, count(*), date_bin('1 minute', ts, 'epoch'), min(value), max(value),
                    sum(value), {NEWEST_SAMPLE}
             FROM samples WHERE ts >= $1 AND ts < $2
             GROUP BY series, 3",
        ))
        .bind(rolled)
        .bind(target)
        .execute(&mut *tx)
        .await?;
        // Pending buckets at or after the old mark were counted from the raw samples above,
        // which were committed with them.
        let touched: Vec<(i32, DateTime<Utc>)> = sqlx::query_as(&format!(
            "WITH folded AS (DELETE FROM rollup_pending WHERE t < $2 RETURNING *),
             late AS (
                 SELECT series, sum(count)::int AS count, t, min(min) AS min, max(max) AS max,
                        sum(sum) AS sum, {NEWEST_OF_BUCKETS}
                 FROM folded WHERE t < $1 GROUP BY series, t
             )
             INSERT INTO rollups_1m AS r (series, count, t, min, max, sum, last_at, last)
             SELECT * FROM late
             ON CONFLICT (series, t) DO UPDATE SET
                 count = r.count + EXCLUDED.count, min = least(r.min, EXCLUDED.min),
                 max = greatest(r.max, EXCLUDED.max), sum = r.sum + EXCLUDED.sum,
                 last_at = greatest(r.last_at, EXCLUDED.last_at),
                 last = CASE WHEN r.last_at IS NULL
                             OR (EXCLUDED.last_at, EXCLUDED.last) > (r.last_at, r.last)
                        THEN EXCLUDED.last ELSE r.last END
             RETURNING series, date_bin('1 hour', t, 'epoch')",
        ))
        .bind(rolled)
        .bind(target)
        .fetch_all(&mut *tx)
        .await?;
        // Hours are rebuilt whole from their minutes once complete; hours the late samples
        // touched too.
        let (hour_from, hour_to) = (
            floor(rolled, TimeDelta::hours(1)),
            floor(target, TimeDelta::hours(1)),
        );
        let (series, hours): (Vec<i32>, Vec<DateTime<Utc>>) = touched
            .into_iter()
            .filter(|(_, hour)| *hour < hour_from)
            .collect::<std::collections::BTreeSet<_>>()
            .into_iter()
            .unzip();
        sqlx::query(&format!(
            "INSERT INTO rollups_1h (series, count, t, min, max, sum, last_at, last) {}
             WHERE m.t >= $1 AND m.t < $2 GROUP BY m.series, hour {REBUILT}",
            hour_of_minutes()
        ))
        .bind(hour_from)
        .bind(hour_to)
        .execute(&mut *tx)
        .await?;
        if !series.is_empty() {
            sqlx::query(&format!(
                "INSERT INTO rollups_1h (series, count, t, min, max, sum, last_at, last) {}
                 JOIN UNNEST($1::int[], $2::timestamptz[]) AS u (series, hour)
                   ON m.series = u.series AND m.t >= u.hour AND m.t < u.hour + interval '1 hour'
                 GROUP BY m.series, 3 {REBUILT}",
                hour_of_minutes()
            ))
            .bind(&series)
            .bind(&hours)
            .execute(&mut *tx)
            .await?;
        }
        sqlx::query("UPDATE rollup_state SET at = $1 WHERE name = 'rolled'")
            .bind(target)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(Some(target))
    }

    /// Packs the oldest hour of raw samples that is rolled up and ended before `before` into
    /// blocks and drops its partition, in one transaction. Returns whether there was one.
    pub async fn compact(&self, before: DateTime<Utc>) -> Result<bool> {
        let cutoff = before.min(self.rolled().await?);
        let Some(hour) = partitions(&mut *self.upkeep.acquire().await?, SAMPLES)
            .await?
            .into_iter()
            .find(|start| *start + SAMPLES.span <= cutoff)
        else {
            return Ok(false);
        };
        self.ensure_partitions(BLOCKS, hour, hour + SAMPLES.span)
            .await?;
        let partition = SAMPLES.name(hour);
        let mut tx = self.upkeep.begin().await?;
        if !job_lock(&mut tx).await? {
            return Ok(false);
        }
        let series: Vec<i32> =
            sqlx::query_scalar(&format!("SELECT DISTINCT series FROM {partition}"))
                .fetch_all(&mut *tx)
                .await?;
        for chunk in series.chunks(SERIES_PER_READ) {
            let rows: Vec<(i32, DateTime<Utc>, f64)> = sqlx::query_as(&format!(
                "SELECT series, ts, value FROM {partition} WHERE series = ANY($1)
                 ORDER BY series, ts"
            ))
            .bind(chunk)
            .fetch_all(&mut *tx)
            .await?;
            write_blocks(&mut tx, hour, by_series(rows)).await?;
        }
        sqlx::query("SET LOCAL lock_timeout = '2s'")
            .execute(&mut *tx)
            .await?;
        sqlx::query(&format!("DROP TABLE {partition}"))
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(true)
    }

    /// Moves late raw samples of the oldest hour that is rolled up and ended before `before`
    /// into that hour's blocks. Returns whether there were any.
    pub async fn sweep_late(&self, before: DateTime<Utc>) -> Result<bool> {
        let cutoff = before.min(self.rolled().await?);
        let oldest: Option<DateTime<Utc>> =
            sqlx::query_scalar("SELECT min(ts) FROM samples_late WHERE ts < $1")
                .bind(cutoff)
                .fetch_one(&self.upkeep)
                .await?;
        let Some(oldest) = oldest else {
            return Ok(false);
        };
        let hour = floor(oldest, SAMPLES.span);
        let end = (hour + SAMPLES.span).min(cutoff);
        self.ensure_partitions(BLOCKS, hour, end).await?;
        let mut tx = self.upkeep.begin().await?;
        if !job_lock(&mut tx).await? {
            return Ok(false);
        }
        // Exactly the rows returned go: one committed meanwhile stays for the next sweep.
        let rows: Vec<(i32, DateTime<Utc>, f64)> = sqlx::query_as(
            "DELETE FROM samples_late WHERE ts >= $1 AND ts < $2 RETURNING series, ts, value",
        )
        .bind(hour)
        .bind(end)
        .fetch_all(&mut *tx)
        .await?;
        let mut by_series = by_series(rows);
        let ids: Vec<i32> = by_series.keys().copied().collect();
        let stored: Vec<(i32, Vec<u8>)> = sqlx::query_as(
            "SELECT series, data FROM sample_blocks WHERE start = $1 AND series = ANY($2)",
        )
        .bind(hour)
        .bind(&ids)
        .fetch_all(&mut *tx)
        .await?;
        for (series, data) in stored {
            let kept = block::decode(&data)?;
            by_series.entry(series).or_default().extend(kept);
        }
        for samples in by_series.values_mut() {
            // Stable: of samples stamped alike, the earlier written stays first.
            samples.sort_by_key(|(ts, _)| *ts);
        }
        write_blocks(&mut tx, hour, by_series).await?;
        tx.commit().await?;
        Ok(true)
    }

    /// Deletes a source's series (all of them, or the one named) with their samples in every
    /// tier; returns how many series went.
    pub async fn delete_series(&self, source: &str, series: Option<&Series>) -> Result<usize> {
        let mut tx = self.upkeep.begin().await?;
        let ids: Vec<i32> = sqlx::query_scalar(
            "DELETE FROM series WHERE source = $1
               AND ($2::text IS NULL OR (name = $2 AND labels = $3))
             RETURNING id",
        )
        .bind(source)
        .bind(series.map(|s| s.name.as_str()))
        .bind(series.map(|s| Json(&s.labels)))
        .fetch_all(&mut *tx)
        .await?;
        for table in [
            "samples",
            "sample_blocks",
            "rollups_1m",
            "rollups_1h",
            "rollup_pending",
        ] {
            sqlx::query(&format!("DELETE FROM {table} WHERE series = ANY($1)"))
                .bind(&ids)
                .execute(&mut *tx)
                .await?;
        }
        tx.commit().await?;
        self.series.forget(source);
        Ok(ids.len())
    }

    /// Rows, bytes and time span of each tier, and when retention next drops a partition.
    pub async fn storage(&self) -> Result<Storage> {
        let mut db = self.upkeep.acquire().await?;
        let keep = self.retention;
        let mut tiers = Vec::new();
        let mut next_drop: Option<DateTime<Utc>> = None;
        let tables = [
            ("raw", SAMPLES, keep.raw),
            ("blocks", BLOCKS, keep.raw),
            ("1m", MINUTES, keep.minutes),
            ("1h", HOURS, keep.hours),
        ];
        for (tier, table, keep) in tables {
            let starts = partitions(&mut db, table).await?;
            let (rows, bytes): (f64, i64) = sqlx::query_as(
                "SELECT coalesce(sum(greatest(c.reltuples, 0)), 0)::float8,
                        coalesce(sum(pg_total_relation_size(c.oid)), 0)::int8
                 FROM pg_inherits i
                 JOIN pg_class c ON c.oid = i.inhrelid JOIN pg_class p ON p.oid = i.inhparent
                 WHERE p.relname = $1",
            )
            .bind(table.table)
            .fetch_one(&mut *db)
            .await?;
            let drop = starts
                .first()
                .and_then(|start| (*start + table.span).checked_add_signed(keep));
            next_drop = match (next_drop, drop) {
                (Some(a), Some(b)) => Some(a.min(b)),
                (a, b) => a.or(b),
            };
            tiers.push(TierUsage {
                tier: tier.to_owned(),
                rows: rows as i64,
                bytes,
                from: starts.first().copied(),
                to: starts.last().map(|start| *start + table.span),
                keep_secs: keep.num_seconds(),
            });
        }
        let rolled = self.rolled().await?;
        Ok(Storage {
            tiers,
            rolled,
            next_drop,
        })
    }
}

/// Raw rows `(series, ts, value)` as each series' samples, in the order given.
fn by_series(rows: Vec<(i32, DateTime<Utc>, f64)>) -> BTreeMap<i32, Vec<block::Sample>> {
    let mut by_series: BTreeMap<i32, Vec<block::Sample>> = BTreeMap::new();
    for (series, ts, value) in rows {
        by_series
            .entry(series)
            .or_default()
            .push((ts.timestamp_micros(), value));
    }
    by_series
}

/// Writes each series' samples of `hour` as its block, replacing one written before.
async fn write_blocks(
    tx: &mut PgConnection,
    hour: DateTime<Utc>,
    by_series: BTreeMap<i32, Vec<block::Sample>>,
) -> Result<()> {
    let mut ids = Vec::with_capacity(by_series.len());
    let mut counts = Vec::with_capacity(by_series.len());
    let mut data = Vec::with_capacity(by_series.len());
    for (series, samples) in by_series {
        ids.push(series);
        counts.push(i32::try_from(samples.len()).unwrap_or(i32::MAX));
        data.push(block::encode(&samples));
    }
    sqlx::query(
        "INSERT INTO sample_blocks (series, start, count, data)
         SELECT s, $1, c, d FROM UNNEST($2::int[], $3::int[], $4::bytea[]) AS u (s, c, d)
         ON CONFLICT (series, start) DO UPDATE SET count = EXCLUDED.count, data = EXCLUDED.data",
    )
    .bind(hour)
    .bind(&ids)
    .bind(&counts)
    .bind(&data)
    .execute(tx)
    .await?;
    Ok(())
}

/// Merges `late` samples into minute buckets by series, as the writer records them.
pub fn late_buckets(late: &[(i32, i64, f64)]) -> Vec<(i32, DateTime<Utc>, LateBucket)> {
    let mut buckets: HashMap<(i32, i64), LateBucket> = HashMap::new();
    for &(series, micros, value) in late {
        let minute = micros - micros.rem_euclid(60_000_000);
        let bucket = buckets.entry((series, minute)).or_insert(LateBucket {
            count: 0,
            min: value,
            max: value,
            sum: 0.0,
            newest: Newest(micros, value),
        });
        bucket.count += 1;
        bucket.min = bucket.min.min(value);
        bucket.max = bucket.max.max(value);
        bucket.sum += value;
        bucket.newest = bucket.newest.max(Newest(micros, value));
    }
    buckets
        .into_iter()
        .filter_map(|((series, minute), b)| {
            DateTime::from_timestamp_micros(minute).map(|t| (series, t, b))
        })
        .collect()
}

#[derive(Clone, Copy, Debug)]
pub struct LateBucket {
    pub count: i32,
    pub min: f64,
    pub max: f64,
    pub sum: f64,
    pub newest: Newest,
}

/// A sample as a bucket's `last` picks it: the newest, and of samples stamped alike, the
/// greatest value — the order the database's `max(ARRAY[epoch, value])` gives.
#[derive(Clone, Copy, Debug, PartialEq, PartialOrd)]
pub struct Newest(pub i64, pub f64);

impl Newest {
    pub fn at(self) -> Option<DateTime<Utc>> {
        DateTime::from_timestamp_micros(self.0)
    }

    pub fn max(self, other: Self) -> Self {
        if other > self { other } else { self }
    }
}
