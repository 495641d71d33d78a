//! Metric samples in Postgres: one narrow row per sample, written in the same transaction as the
//! `metric` event that carries them (samples that come after their minute's rollup with a note
//! for it), and the series they belong to. `tiers` ages them; `range` reads them back.

use std::{
    collections::{BTreeSet, HashMap, HashSet},
    sync::{Arc, Mutex},
};

use app::{
    history::Sources,
    metrics::{Labels, Point, Series, room_source},
};
use bytes::{BufMut, BytesMut};
use chrono::{DateTime, Utc};
use sqlx::{PgConnection, PgPool, types::Json};

use super::{Pending, Store, tiers};
use crate::error::{Error, Result};

type SeriesKey = (String, String, Labels);

/// Series ids by source, name and labels, looked up by reference: a known series costs no
/// allocation on the writer's path.
#[derive(Default)]
struct Known {
    ids: HashMap<String, HashMap<String, HashMap<Labels, i32>>>,
    /// Sources whose every stored series is in `ids`, so their count is known.
    complete: HashSet<String>,
    /// Series admitted but not yet committed, by source: counted against the limits so that
    /// requests admitted together cannot pass them by what they add together.
    reserved: HashMap<String, HashSet<(String, Labels)>>,
    /// Series stored in all, once counted (forgotten when a delete makes it stale).
    total: Option<usize>,
}

impl Known {
    fn get(&self, source: &str, point: &Point) -> Option<i32> {
        let by_name = self.ids.get(source)?;
        by_name
            .get(point.series.as_str())?
            .get(&point.labels)
            .copied()
    }

    fn insert(&mut self, (source, name, labels): SeriesKey, id: i32) {
        let by_name = self.ids.entry(source).or_default();
        by_name.entry(name).or_default().insert(labels, id);
    }

    fn count(&self, source: &str) -> usize {
        let reserved = self.reserved.get(source).map_or(0, HashSet::len);
        let stored = self
            .ids
            .get(source)
            .map_or(0, |by_name| by_name.values().map(HashMap::len).sum());
        stored + reserved
    }

    fn is_reserved(&self, source: &str, point: &Point) -> bool {
        self.reserved
            .get(source)
            .is_some_and(|series| series.contains(&(point.series.clone(), point.labels.clone())))
    }
}

/// How many series may be stored: per source, and in all.
#[derive(Clone, Copy, Debug)]
pub struct SeriesLimits {
    pub per_source: usize,
    pub total: usize,
}

/// A store opened by a tool rather than a server limits nothing.
impl Default for SeriesLimits {
    fn default() -> Self {
        Self {
            per_source: usize::MAX,
            total: usize::MAX,
        }
    }
}

/// Series a request was admitted with, counted against the limits until it is committed (then
/// they are stored) or fails; dropping it gives them back.
pub struct Reservation {
    ids: SeriesIds,
    source: String,
    series: Vec<(String, Labels)>,
}

impl Reservation {
    /// How many series it adds to `source`.
    pub fn adds_to(&self, source: &str) -> usize {
        match self.source == source {
            true => self.series.len(),
            false => 0,
        }
    }
}

impl Drop for Reservation {
    fn drop(&mut self) {
        let mut known = self.ids.known();
        if let Some(reserved) = known.reserved.get_mut(&self.source) {
            for series in &self.series {
                reserved.remove(series);
            }
            if reserved.is_empty() {
                known.reserved.remove(&self.source);
            }
        }
    }
}

/// Series ids already in the database, so a steady stream of known series costs no lookup.
#[derive(Clone, Default)]
pub struct SeriesIds {
    known: Arc<Mutex<Known>>,
}

/// Series created by an uncommitted transaction: known only once it commits.
pub struct Created(Vec<(SeriesKey, i32)>);

impl SeriesIds {
    fn known(&self) -> std::sync::MutexGuard<'_, Known> {
        // Only whole inserts happen under this lock, so a poisoned map is intact.
        self.known.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Reserves the new series of `points` of `source`, or refuses them when they would take it
    /// past its limit or the store past its total, naming the first series too many.
    pub async fn admit(
        &self,
        pool: &PgPool,
        source: &str,
        points: &[Point],
        limits: SeriesLimits,
    ) -> Result<Reservation> {
        if self.known().total.is_none() {
            let total: i64 = sqlx::query_scalar("SELECT count(*) FROM series")
                .fetch_one(pool)
                .await?;
            self.known().total = Some(total as usize);
        }
        if !self.known().complete.contains(source) {
            let stored: Vec<(i32, String, Json<Labels>)> =
                sqlx::query_as("SELECT id, name, labels FROM series WHERE source = $1")
                    .bind(source)
                    .fetch_all(pool)
                    .await?;
            let mut known = self.known();
            for (id, name, labels) in stored {
                known.insert((source.to_owned(), name, labels.0), id);
            }
            known.complete.insert(source.to_owned());
        }
        let mut known = self.known();
        let reserved: usize = known.reserved.values().map(HashSet::len).sum();
        let in_all = known.total.unwrap_or_default() + reserved;
        let mut room = limits.per_source.saturating_sub(known.count(source));
        let mut room_in_all = limits.total.saturating_sub(in_all);
        let mut new = HashSet::new();
        for point in points
            .iter()
            .filter(|p| known.get(source, p).is_none() && !known.is_reserved(source, p))
        {
            if new.insert((point.series.as_str(), &point.labels)) {
                let series = || Series {
                    name: point.series.clone(),
                    labels: point.labels.clone(),
                };
                if room == 0 {
                    return Err(Error::TooManySeries {
                        source_name: source.to_owned(),
                        series: series(),
                        limit: limits.per_source,
                    });
                }
                if room_in_all == 0 {
                    return Err(Error::SeriesFull {
                        series: series(),
                        limit: limits.total,
                    });
                }
                room -= 1;
                room_in_all -= 1;
            }
        }
        let series: Vec<(String, Labels)> = new
            .into_iter()
            .map(|(name, labels)| (name.to_owned(), labels.clone()))
            .collect();
        let reserved = known.reserved.entry(source.to_owned()).or_default();
        reserved.extend(series.iter().cloned());
        Ok(Reservation {
            ids: self.clone(),
            source: source.to_owned(),
            series,
        })
    }

    /// Inserts `points` of each source inside the caller's transaction, creating series first
    /// seen. Binary COPY: the cheapest way into Postgres for thousands of narrow rows.
    pub async fn insert(
        &self,
        tx: &mut PgConnection,
        sources: &[(&str, &[Point])],
        per_source: usize,
    ) -> Result<Created> {
        let missing: Vec<SeriesKey> = {
            let known = self.known();
            let mut missing = BTreeSet::new();
            for (source, points) in sources {
                for point in points.iter().filter(|p| known.get(source, p).is_none()) {
                    missing.insert((
                        source.to_string(),
                        point.series.clone(),
                        point.labels.clone(),
                    ));
                }
            }
            // In order: writers on several nodes then take the new series' locks in the same
            // order, and cannot deadlock each other.
            missing.into_iter().collect()
        };
        let created = if missing.is_empty() {
            Vec::new()
        } else {
            create_series(tx, &missing, per_source).await?
        };
        let mut fresh = Known::default();
        for (key, id) in &created {
            fresh.insert(key.clone(), *id);
        }

        // Held shared until commit: the rollup job moves the fence only between commits.
        let fence: DateTime<Utc> =
            sqlx::query_scalar("SELECT at FROM rollup_state WHERE name = 'fence' FOR SHARE")
                .fetch_one(&mut *tx)
                .await?;
        let fence = fence.timestamp_micros();
        let mut late = Vec::new();
        let mut copy = BytesMut::from(&COPY_HEADER[..]);
        {
            let known = self.known();
            for (source, points) in sources {
                for point in points.iter() {
                    let id = known
                        .get(source, point)
                        .or_else(|| fresh.get(source, point));
                    let id = id.expect("every series was known or has just been created");
                    let micros = point.ts.timestamp_micros();
                    copy_row(&mut copy, id, micros, point.value);
                    if micros < fence {
                        late.push((id, micros, point.value));
                    }
                }
            }
        }
        copy.put_i16(-1);
        let mut sink = tx
            .copy_in_raw("COPY samples (series, ts, value) FROM STDIN (FORMAT binary)")
            .await?;
        sink.send(copy.freeze()).await?;
        sink.finish().await?;
        if !late.is_empty() {
            record_late(tx, &late).await?;
        }
        Ok(Created(created))
    }

    /// Forgets `source`'s series, deleted: the next sample of it looks them up again.
    pub fn forget(&self, source: &str) {
        let mut known = self.known();
        known.ids.remove(source);
        known.complete.remove(source);
        known.total = None;
    }

    /// Remembers the series the committed transaction created; a rolled-back one forgets them.
    pub fn committed(&self, created: Created) {
        let mut known = self.known();
        if let Some(total) = &mut known.total {
            *total += created.0.len();
        }
        for (key, id) in created.0 {
            known.insert(key, id);
        }
    }
}

/// The signature, flags and header extension length of Postgres' binary COPY format.
const COPY_HEADER: [u8; 19] = *b"PGCOPY\n\xff\r\n\0\0\0\0\0\0\0\0\0";

/// Microseconds from the Unix epoch to Postgres' epoch, 2000-01-01 UTC.
const POSTGRES_EPOCH_MICROS: i64 = 946_684_800_000_000;

/// One `(series, ts, value)` tuple: a field count, then each field's length and big-endian bytes.
fn copy_row(buf: &mut BytesMut, series: i32, micros: i64, value: f64) {
    buf.put_i16(3);
    buf.put_i32(4);
    buf.put_i32(series);
    buf.put_i32(8);
    buf.put_i64(micros - POSTGRES_EPOCH_MICROS);
    buf.put_i32(8);
    buf.put_f64(value);
}

/// Notes samples stamped before the rollup fence as minute buckets for the rollup job to fold
/// in: their minutes may already be rolled up.
async fn record_late(tx: &mut PgConnection, late: &[(i32, i64, f64)]) -> Result<()> {
    let buckets = tiers::late_buckets(late);
    sqlx::query(
        "INSERT INTO rollup_pending (series, count, t, min, max, sum, last_at, last)
         SELECT * FROM UNNEST($1::int[], $2::int[], $3::timestamptz[], $4::float8[],
                              $5::float8[], $6::float8[], $7::timestamptz[], $8::float8[])",
    )
    .bind(buckets.iter().map(|(s, ..)| *s).collect::<Vec<_>>())
    .bind(buckets.iter().map(|(.., b)| b.count).collect::<Vec<_>>())
    .bind(buckets.iter().map(|(_, t, _)| *t).collect::<Vec<_>>())
    .bind(buckets.iter().map(|(.., b)| b.min).collect::<Vec<_>>())
    .bind(buckets.iter().map(|(.., b)| b.max).collect::<Vec<_>>())
    .bind(buckets.iter().map(|(.., b)| b.sum).collect::<Vec<_>>())
    .bind(
        buckets
            .iter()
            .map(|(.., b)| b.newest.at())
            .collect::<Vec<_>>(),
    )
    .bind(buckets.iter().map(|(.., b)| b.newest.1).collect::<Vec<_>>())
    .execute(tx)
    .await?;
    Ok(())
}

/// Creates the `missing` series (or finds them, had another writer made them) and returns ids.
/// Creates the series of `missing` that are new, and refuses them (rolling back) if that takes
/// a source past `per_source`: counted in the database, whichever node created its series.
async fn create_series(
    tx: &mut PgConnection,
    missing: &[SeriesKey],
    per_source: usize,
) -> Result<Vec<(SeriesKey, i32)>> {
    let sources: BTreeSet<&str> = missing.iter().map(|(s, ..)| s.as_str()).collect();
    let sources: Vec<&str> = sources.into_iter().collect();
    // Writers of several nodes creating one source's series take turns, in name order (no
    // deadlock), each counting what the one before committed.
    sqlx::query(
        "SELECT pg_advisory_xact_lock(hashtextextended('watchroom.series:' || s, 0))
         FROM (SELECT unnest($1::text[]) AS s ORDER BY 1) AS sources",
    )
    .bind(&sources)
    .execute(&mut *tx)
    .await?;
    let rows: Vec<(i32, String, String, Json<Labels>)> = sqlx::query_as(
        "INSERT INTO series (source, name, labels)
         SELECT * FROM UNNEST($1::text[], $2::text[], $3::jsonb[])
         ON CONFLICT (source, name, labels) DO UPDATE SET source = EXCLUDED.source
         RETURNING id, source, name, labels",
    )
    .bind(
        missing
            .iter()
            .map(|(s, _, _)| s.as_str())
            .collect::<Vec<_>>(),
    )
    .bind(
        missing
            .iter()
            .map(|(_, n, _)| n.as_str())
            .collect::<Vec<_>>(),
    )
    .bind(missing.iter().map(|(_, _, l)| Json(l)).collect::<Vec<_>>())
    .fetch_all(&mut *tx)
    .await?;
    let counts: Vec<(String, i64)> = sqlx::query_as(
        "SELECT source, count(*) FROM series WHERE source = ANY($1) GROUP BY source",
    )
    .bind(&sources)
    .fetch_all(&mut *tx)
    .await?;
    if let Some((source, _)) = counts
        .into_iter()
        .find(|(_, count)| *count as u64 > per_source as u64)
    {
        let (_, name, labels) = missing
            .iter()
            .find(|(s, ..)| *s == source)
            .expect("only sources of `missing` are counted");
        return Err(Error::TooManySeries {
            source_name: source,
            series: Series {
                name: name.clone(),
                labels: labels.clone(),
            },
            limit: per_source,
        });
    }
    Ok(rows
        .into_iter()
        .map(|(id, source, name, labels)| ((source, name, labels.0), id))
        .collect())
}

impl Store {
    /// Reserves the series a request's samples would add, or refuses it when they would take a
    /// source or the store past its limit.
    pub async fn admit(&self, batch: &[Pending]) -> Result<Vec<Reservation>> {
        let mut reservations = Vec::new();
        for pending in batch {
            if let Some(source) = room_source(&pending.room)
                && !pending.points.is_empty()
            {
                let reserved = self
                    .series
                    .admit(&self.pool, source, &pending.points, self.limits)
                    .await?;
                reservations.push(reserved);
            }
        }
        Ok(reservations)
    }

    /// How many series `source` has stored.
    pub async fn series_count(&self, source: &str) -> Result<usize> {
        let count: i64 = sqlx::query_scalar("SELECT count(*) FROM series WHERE source = $1")
            .bind(source)
            .fetch_one(&self.pool)
            .await?;
        Ok(count as usize)
    }

    /// Every source that has sent a sample, by name.
    pub async fn sources(&self) -> Result<Vec<String>> {
        Ok(
            sqlx::query_scalar("SELECT DISTINCT source FROM series ORDER BY source")
                .fetch_all(&self.pool)
                .await?,
        )
    }

    /// The first `limit` sources (by name) whose name contains `filter` and which are
    /// `visible`, each with its first `series` series, and how many sources matched: two
    /// queries, however many sources there are.
    pub async fn source_page(
        &self,
        filter: &str,
        limit: usize,
        series: usize,
        visible: impl Fn(&str) -> bool,
    ) -> Result<(usize, Sources)> {
        // No name holds a NUL (and Postgres text cannot): such a filter matches nothing.
        if filter.contains('\0') {
            return Ok((0, Sources::new()));
        }
        let mut matched: Vec<String> = sqlx::query_scalar(
            "SELECT DISTINCT source FROM series WHERE strpos(source, $1) > 0 ORDER BY source",
        )
        .bind(filter)
        .fetch_all(&self.pool)
        .await?;
        matched.retain(|source| visible(source));
        let shown = &matched[..matched.len().min(limit)];
        if series == 0 {
            let names = shown.iter().map(|source| (source.clone(), Vec::new()));
            return Ok((matched.len(), names.collect()));
        }
        let rows: Vec<(String, String, Json<Labels>)> = sqlx::query_as(
            "SELECT source, name, labels FROM (
                 SELECT source, name, labels,
                        row_number() OVER (PARTITION BY source ORDER BY name, labels) AS n
                 FROM series WHERE source = ANY($1)
             ) s
             WHERE n <= $2 ORDER BY source, name, labels",
        )
        .bind(shown)
        .bind(i64::try_from(series).unwrap_or(i64::MAX))
        .fetch_all(&self.pool)
        .await?;
        let mut page: HashMap<String, Vec<Series>> = HashMap::new();
        for (source, name, labels) in rows {
            let labels = labels.0;
            page.entry(source)
                .or_default()
                .push(Series { name, labels });
        }
        let page = shown
            .iter()
            .map(|source| (source.clone(), page.remove(source).unwrap_or_default()))
            .collect();
        Ok((matched.len(), page))
    }

    /// The series of `source`, by name.
    pub async fn series(&self, source: &str) -> Result<Vec<Series>> {
        let rows: Vec<(String, Json<Labels>)> = sqlx::query_as(
            "SELECT name, labels FROM series WHERE source = $1 ORDER BY name, labels",
        )
        .bind(source)
        .fetch_all(&self.pool)
        .await?;
        Ok(rows
            .into_iter()
            .map(|(name, labels)| Series {
                name,
                labels: labels.0,
            })
            .collect())
    }
}
