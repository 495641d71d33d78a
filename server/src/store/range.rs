//! Range queries over the tiers: the coarsest tier that gives the bucket width answers, and the
//! tiers meet at the rollup mark, each sample counted in exactly one of them.

use std::collections::{BTreeMap, HashMap};

use app::metrics::{Bucket, Labels, Series, snap_width};
use chrono::{DateTime, TimeDelta, Utc};
use sqlx::{PgConnection, types::Json};

use super::{
    Store, block,
    tiers::{NEWEST_OF_BUCKETS, NEWEST_SAMPLE, Newest, Retention, ceil, floor},
};
use crate::error::{Error, Result};

/// Where a range's buckets come from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Tier {
    Raw,
    Minutes,
    Hours,
}

impl Tier {
    fn width(self) -> TimeDelta {
        match self {
            Self::Raw => TimeDelta::zero(),
            Self::Minutes => TimeDelta::minutes(1),
            Self::Hours => TimeDelta::hours(1),
        }
    }

    fn coarser(self) -> Option<Self> {
        match self {
            Self::Raw => Some(Self::Minutes),
            Self::Minutes => Some(Self::Hours),
            Self::Hours => None,
        }
    }

    fn kept(self, retention: &Retention) -> TimeDelta {
        match self {
            Self::Raw => retention.raw,
            Self::Minutes => retention.minutes,
            Self::Hours => retention.hours,
        }
    }

    /// The tier answering buckets `width` wide from `from` on, and the width it answers with:
    /// the coarsest whose buckets divide the width, or, for a start older than that tier
    /// keeps, the finest that still holds it.
    pub fn choose(
        width: TimeDelta,
        from: DateTime<Utc>,
        now: DateTime<Utc>,
        retention: &Retention,
    ) -> Result<(Self, TimeDelta)> {
        let divides = |tier: Tier| {
            width.num_microseconds().unwrap_or(0)
                % tier.width().num_microseconds().unwrap_or(1).max(1)
                == 0
        };
        let mut tier = [Self::Hours, Self::Minutes]
            .into_iter()
            .find(|tier| width >= tier.width() && divides(*tier))
            .unwrap_or(Self::Raw);
        let mut width = width;
        // A retention longer than time can count keeps everything.
        let horizon = |tier: Tier| now.checked_sub_signed(tier.kept(retention));
        while horizon(tier).is_some_and(|horizon| from < horizon) {
            let Some(next) = tier.coarser() else {
                return Err(Error::bad_request(format!(
                    "samples are kept for {} days: a range may start at {} at the earliest",
                    retention.hours.num_days(),
                    horizon(tier)
                        .unwrap_or(now)
                        .to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
                )));
            };
            tier = next;
            let unit = tier.width().num_microseconds().unwrap_or(1);
            let micros = width.num_microseconds().unwrap_or(unit);
            width = TimeDelta::microseconds(((micros + unit - 1) / unit).max(1) * unit);
        }
        Ok((tier, width))
    }
}

/// Min, max, sum, count and the newest of the samples in a bucket.
#[derive(Clone, Copy)]
struct Agg {
    min: f64,
    max: f64,
    sum: f64,
    count: i64,
    /// None where only buckets rolled up before the newest sample was kept hold it.
    newest: Option<Newest>,
}

#[derive(Default)]
struct Buckets(BTreeMap<i64, Agg>);

impl Buckets {
    fn add(&mut self, t: i64, agg: Agg) {
        self.0
            .entry(t)
            .and_modify(|a| {
                a.min = a.min.min(agg.min);
                a.max = a.max.max(agg.max);
                a.sum += agg.sum;
                a.count += agg.count;
                a.newest = match (a.newest, agg.newest) {
                    (Some(x), Some(y)) => Some(x.max(y)),
                    (x, y) => x.or(y),
                };
            })
            .or_insert(agg);
    }

    fn to_vec(&self) -> Vec<Bucket> {
        self.0
            .iter()
            .filter_map(|(&t, a)| {
                Some(Bucket {
                    t: DateTime::from_timestamp_micros(t)?,
                    min: a.min,
                    max: a.max,
                    avg: a.sum / a.count as f64,
                    count: a.count,
                    last: a.newest.map(|Newest(_, v)| v),
                })
            })
            .collect()
    }
}

/// Most stored values one request may read over all its series (span ÷ the tier's interval ×
/// series, raw samples counted at one a second): a dashboard of 20 one-second series over a day
/// reads 1.7 M; far more is a mistake or an attack, and would hold a read connection for long.
pub const MAX_ROWS: i64 = 4_000_000;

impl Store {
    /// The samples of one series in `[from, to)`: see [`Store::ranges`].
    pub async fn range(
        &self,
        source: &str,
        series: &Series,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
        width_secs: f64,
    ) -> Result<Vec<Bucket>> {
        let mut ranges = self
            .ranges(&[(source.to_owned(), series.clone())], from, to, width_secs)
            .await?;
        Ok(ranges.pop().unwrap_or_default())
    }

    /// The samples of each of `series` (source and series) in `[from, to)` as min/max/avg per
    /// bucket of about `width_secs` (see [`snap_width`]), in the order asked. Buckets are
    /// aligned to multiples of the width since the epoch, so a chart that moves on keeps its
    /// buckets; empty buckets are left out. One statement per tier for all of them: a page of
    /// charts of many sources costs a few queries, not a few per source or per line.
    pub async fn ranges(
        &self,
        series: &[(String, Series)],
        from: DateTime<Utc>,
        to: DateTime<Utc>,
        width_secs: f64,
    ) -> Result<Vec<Vec<Bucket>>> {
        let width = TimeDelta::microseconds((snap_width(width_secs) * 1e6).round().max(1.0) as i64);
        let now = Utc::now();
        let (tier, width) = Tier::choose(width, from, now, &self.retention)?;
        // What the tier holds over the span, raw samples counted at one a second: the rows
        // read, whatever the width (buckets narrower than the samples only return the samples).
        let span = (to - from).num_seconds().max(0);
        let row = tier.width().num_seconds().max(1);
        let rows = (span / row + 1).saturating_mul(series.len() as i64);
        if rows > MAX_ROWS {
            return Err(Error::bad_request(format!(
                "{} series over this range come to about {rows} stored values, more than the \
                 {MAX_ROWS} one request may read: ask for fewer series or a shorter range",
                series.len()
            )));
        }
        let request = Request {
            series,
            from,
            to,
            tier,
            width,
            // Blocks only ever hold samples older than the packing age.
            blocks: now
                .checked_sub_signed(self.retention.compact_after)
                .is_none_or(|packed| from < packed),
        };
        if tier == Tier::Raw && !request.blocks {
            // One statement reads it all: its own snapshot is enough.
            return request.read(&mut *self.pool.acquire().await?).await;
        }
        // One snapshot: the rollup mark and the tiers on either side of it agree.
        let mut tx = self
            .pool
            .begin_with("BEGIN ISOLATION LEVEL REPEATABLE READ, READ ONLY")
            .await?;
        // A day of one-second samples then hashes in memory instead of spilling to disk,
        // whatever the planner estimates for a series it has no statistics on yet.
        sqlx::query("SET LOCAL work_mem = '64MB'")
            .execute(&mut *tx)
            .await?;
        let buckets = request.read(&mut tx).await?;
        tx.commit().await?;
        Ok(buckets)
    }
}

/// What [`Store::ranges`] was asked, settled on a tier.
struct Request<'a> {
    series: &'a [(String, Series)],
    from: DateTime<Utc>,
    to: DateTime<Utc>,
    tier: Tier,
    width: TimeDelta,
    /// Whether packed blocks may hold samples of the range.
    blocks: bool,
}

impl Request<'_> {
    async fn read(&self, db: &mut PgConnection) -> Result<Vec<Vec<Bucket>>> {
        let (sources, names): (Vec<&str>, Vec<&str>) = self
            .series
            .iter()
            .map(|(source, s)| (source.as_str(), s.name.as_str()))
            .unzip();
        // Each series found: id, source, name, labels, and the rollup mark.
        type Stored = (i32, String, String, Json<Labels>, DateTime<Utc>);
        let stored: Vec<Stored> = sqlx::query_as(
            "SELECT id, source, name, labels, (SELECT at FROM rollup_state WHERE name = 'rolled')
             FROM series WHERE (source, name) IN (SELECT * FROM UNNEST($1::text[], $2::text[]))",
        )
        .bind(&sources)
        .bind(&names)
        .fetch_all(&mut *db)
        .await?;
        let mut by_name: HashMap<(&str, &str), Vec<(&Labels, i32)>> = HashMap::new();
        for (id, source, name, labels, _) in &stored {
            by_name
                .entry((source, name))
                .or_default()
                .push((&labels.0, *id));
        }
        let ids: Vec<Option<i32>> = self
            .series
            .iter()
            .map(|(source, s)| {
                by_name
                    .get(&(source.as_str(), s.name.as_str()))?
                    .iter()
                    .find(|(labels, _)| **labels == s.labels)
                    .map(|(_, id)| *id)
            })
            .collect();
        let mut read = Read {
            db,
            series: ids.iter().flatten().copied().collect(),
            width: self.width,
            blocks: self.blocks,
            buckets: HashMap::new(),
        };
        if let Some((.., rolled)) = stored.first()
            && !read.series.is_empty()
        {
            read.tiers(self.tier, self.from, self.to, *rolled).await?;
        }
        // A series asked for twice (a gauge and a chart of it on one dashboard) is answered twice.
        Ok(ids
            .into_iter()
            .map(|id| {
                id.and_then(|id| read.buckets.get(&id))
                    .map(Buckets::to_vec)
                    .unwrap_or_default()
            })
            .collect())
    }
}

/// One range query's reads, gathered into buckets by series.
struct Read<'a> {
    db: &'a mut PgConnection,
    series: Vec<i32>,
    width: TimeDelta,
    blocks: bool,
    buckets: HashMap<i32, Buckets>,
}

/// A bucket of one series, as the database returns it: series, start, min, max, sum, count,
/// and the newest sample's time and value.
type Row = (
    i32,
    DateTime<Utc>,
    f64,
    f64,
    f64,
    i64,
    Option<DateTime<Utc>>,
    Option<f64>,
);

impl Read<'_> {
    fn width_secs(&self) -> f64 {
        self.width.num_microseconds().unwrap_or(1) as f64 / 1e6
    }

    /// Whole minutes (and hours) inside the range and before the rollup mark come from the
    /// rollups; the edges from the raw samples, so the range holds exactly its samples.
    async fn tiers(
        &mut self,
        tier: Tier,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
        rolled: DateTime<Utc>,
    ) -> Result<()> {
        let (minute, hour) = (TimeDelta::minutes(1), TimeDelta::hours(1));
        let (m0, m1) = (ceil(from, minute), floor(to.min(rolled), minute));
        if tier == Tier::Raw || m0 >= m1 {
            return self.raw(from, to).await;
        }
        self.raw(from, m0).await?;
        self.raw(m1, to).await?;
        self.rollups("rollup_pending", minute, m0, m1).await?;
        let (h0, h1) = (ceil(from, hour), floor(to.min(rolled), hour));
        if tier == Tier::Hours && h0 < h1 {
            self.rollups("rollups_1h", hour, h0, h1).await?;
            self.rollups("rollups_1m", minute, m0, h0).await?;
            self.rollups("rollups_1m", minute, h1, m1).await
        } else {
            self.rollups("rollups_1m", minute, m0, m1).await
        }
    }

    /// Buckets of a rollup table (or of the pending late samples) of buckets `width` wide with
    /// `t` in `[from, to)`.
    async fn rollups(
        &mut self,
        table: &str,
        width: TimeDelta,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
    ) -> Result<()> {
        if from >= to {
            return Ok(());
        }
        if width != self.width {
            let aggregates =
                format!("min(min), max(max), sum(sum), sum(count)::int8, {NEWEST_OF_BUCKETS}");
            return self.bucketed(table, "t", &aggregates, from, to).await;
        }
        // Its rows are the buckets asked for: read as they are, without sorting and grouping
        // (an hour of a page's 768 sparklines: 7 ms instead of 45).
        let rows: Vec<Row> = sqlx::query_as(&format!(
            "SELECT series, t, min, max, sum, count::int8, last_at, last FROM {table}
             WHERE series = ANY($1) AND t >= $2 AND t < $3"
        ))
        .bind(&self.series)
        .bind(from)
        .bind(to)
        .fetch_all(&mut *self.db)
        .await?;
        self.add(rows);
        Ok(())
    }

    /// Buckets of the raw samples in `[from, to)`: rows of the hot partitions, and blocks.
    async fn raw(&mut self, from: DateTime<Utc>, to: DateTime<Utc>) -> Result<()> {
        let aggregates = format!("min(value), max(value), sum(value), count(*), {NEWEST_SAMPLE}");
        self.bucketed("samples", "ts", &aggregates, from, to)
            .await?;
        if from >= to {
            return Ok(());
        }
        if !self.blocks {
            return Ok(());
        }
        let blocks: Vec<(i32, Vec<u8>)> = sqlx::query_as(
            "SELECT series, data FROM sample_blocks
             WHERE series = ANY($1) AND start > $2 AND start < $3",
        )
        .bind(&self.series)
        .bind(from - TimeDelta::hours(1))
        .bind(to)
        .fetch_all(&mut *self.db)
        .await?;
        let (from, to) = (from.timestamp_micros(), to.timestamp_micros());
        let width = self.width.num_microseconds().unwrap_or(1).max(1);
        for (series, data) in blocks {
            let buckets = self.buckets.entry(series).or_default();
            for (ts, value) in block::decode(&data)? {
                if ts >= from && ts < to {
                    let agg = Agg {
                        min: value,
                        max: value,
                        sum: value,
                        count: 1,
                        newest: Some(Newest(ts, value)),
                    };
                    buckets.add(ts - ts.rem_euclid(width), agg);
                }
            }
        }
        Ok(())
    }

    /// Rows of `table` with `time` in `[from, to)`, bucketed in the database by `aggregates`
    /// (min, max, sum, count, newest time and value).
    async fn bucketed(
        &mut self,
        table: &str,
        time: &str,
        aggregates: &str,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
    ) -> Result<()> {
        if from >= to {
            return Ok(());
        }
        let rows: Vec<Row> = sqlx::query_as(&format!(
            "SELECT series, date_bin(make_interval(secs => $4), {time}, 'epoch') AS b, {aggregates}
             FROM {table} WHERE series = ANY($1) AND {time} >= $2 AND {time} < $3
             GROUP BY series, b"
        ))
        .bind(&self.series)
        .bind(from)
        .bind(to)
        .bind(self.width_secs())
        .fetch_all(&mut *self.db)
        .await?;
        self.add(rows);
        Ok(())
    }

    fn add(&mut self, rows: Vec<Row>) {
        for (series, t, min, max, sum, count, last_at, last) in rows {
            let agg = Agg {
                min,
                max,
                sum,
                count,
                newest: last_at
                    .zip(last)
                    .map(|(at, v)| Newest(at.timestamp_micros(), v)),
            };
            self.buckets
                .entry(series)
                .or_default()
                .add(t.timestamp_micros(), agg);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn retention() -> Retention {
        Retention::default()
    }

    #[test]
    fn the_coarsest_tier_that_divides_the_width_answers() {
        let now = Utc::now();
        let from = now - TimeDelta::days(1);
        let choose = |width| Tier::choose(width, from, now, &retention()).unwrap();
        assert_eq!(choose(TimeDelta::seconds(6)).0, Tier::Raw);
        assert_eq!(choose(TimeDelta::seconds(90)).0, Tier::Raw);
        assert_eq!(choose(TimeDelta::minutes(2)).0, Tier::Minutes);
        assert_eq!(choose(TimeDelta::minutes(90)).0, Tier::Minutes);
        assert_eq!(choose(TimeDelta::hours(15)).0, Tier::Hours);
    }

    #[test]
    fn an_old_start_moves_to_a_tier_that_still_holds_it() {
        let now = Utc::now();
        let from = now - TimeDelta::days(20);
        let (tier, width) = Tier::choose(TimeDelta::seconds(10), from, now, &retention()).unwrap();
        assert_eq!((tier, width), (Tier::Minutes, TimeDelta::minutes(1)));
        let from = now - TimeDelta::days(100);
        let (tier, width) = Tier::choose(TimeDelta::minutes(90), from, now, &retention()).unwrap();
        assert_eq!((tier, width), (Tier::Hours, TimeDelta::hours(2)));
        let beyond = Tier::choose(
            TimeDelta::hours(1),
            now - TimeDelta::days(800),
            now,
            &retention(),
        );
        let message = beyond.unwrap_err().to_string();
        assert!(message.contains("kept for 730 days"), "{message}");
    }
}
