//! Metric samples in Postgres: one narrow row per sample, written in the same transaction as the
//! `metric` event that carries them, and read back by series and time, downsampled.

use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
};

use app::metrics::{Bucket, Labels, Point};
use chrono::{DateTime, Utc};
use sqlx::{PgConnection, types::Json};

use crate::{error::Result, store::Store};

type SeriesKey = (String, String, Labels);

/// Series ids already in the database, so a steady stream of known series costs no lookup.
#[derive(Clone, Default)]
pub struct SeriesIds {
    known: Arc<Mutex<HashMap<SeriesKey, i32>>>,
}

/// Samples resolved to their series, ready to insert; `commit` caches ids created for them.
pub struct Prepared {
    ids: Vec<i32>,
    ts: Vec<DateTime<Utc>>,
    values: Vec<f64>,
    created: Vec<(SeriesKey, i32)>,
}

impl SeriesIds {
    fn known(&self) -> std::sync::MutexGuard<'_, HashMap<SeriesKey, i32>> {
        // Only whole inserts happen under this lock, so a poisoned map is intact.
        self.known.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Inserts `points` of each source inside the caller's transaction.
    pub async fn insert(
        &self,
        tx: &mut PgConnection,
        sources: &[(&str, Vec<Point>)],
    ) -> Result<Prepared> {
        let count = sources.iter().map(|(_, points)| points.len()).sum();
        let mut keys = Vec::with_capacity(count);
        let mut missing: Vec<SeriesKey> = Vec::new();
        {
            let known = self.known();
            for (source, points) in sources {
                for point in points {
                    let key = (
                        source.to_string(),
                        point.series.clone(),
                        point.labels.clone(),
                    );
                    if !known.contains_key(&key) && !missing.contains(&key) {
                        missing.push(key.clone());
                    }
                    keys.push(key);
                }
            }
        }
        let created = if missing.is_empty() {
            Vec::new()
        } else {
            create_series(tx, &missing).await?
        };
        let ids: Vec<i32> = {
            let known = self.known();
            let fresh: HashMap<&SeriesKey, i32> = created.iter().map(|(k, id)| (k, *id)).collect();
            keys.iter()
                .map(|key| known.get(key).or_else(|| fresh.get(key)).copied())
                .collect::<Option<_>>()
                .expect("every series was known or has just been created")
        };
        let points = sources.iter().flat_map(|(_, points)| points);
        let prepared = Prepared {
            ids,
            ts: points.clone().map(|p| p.ts).collect(),
            values: points.map(|p| p.value).collect(),
            created,
        };
        sqlx::query(
            "INSERT INTO samples (series, ts, value)
             SELECT * FROM UNNEST($1::integer[], $2::timestamptz[], $3::float8[])",
        )
        .bind(&prepared.ids)
        .bind(&prepared.ts)
        .bind(&prepared.values)
        .execute(&mut *tx)
        .await?;
        Ok(prepared)
    }

    /// Remembers the series the committed transaction created; a rolled-back one forgets them.
    pub fn committed(&self, prepared: Prepared) {
        self.known().extend(prepared.created);
    }
}

/// Creates the `missing` series (or finds them, had another writer made them) and returns ids.
async fn create_series(
    tx: &mut PgConnection,
    missing: &[SeriesKey],
) -> Result<Vec<(SeriesKey, i32)>> {
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
    .fetch_all(tx)
    .await?;
    Ok(rows
        .into_iter()
        .map(|(id, source, name, labels)| ((source, name, labels.0), id))
        .collect())
}

/// A series as listed for a source.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct SeriesInfo {
    pub name: String,
    #[serde(default, skip_serializing_if = "Labels::is_empty")]
    pub labels: Labels,
}

impl Store {
    /// Every source that has sent a sample, by name.
    pub async fn sources(&self) -> Result<Vec<String>> {
        Ok(
            sqlx::query_scalar("SELECT DISTINCT source FROM series ORDER BY source")
                .fetch_all(&self.pool)
                .await?,
        )
    }

    /// The series of `source`, by name.
    pub async fn series(&self, source: &str) -> Result<Vec<SeriesInfo>> {
        let rows: Vec<(String, Json<Labels>)> = sqlx::query_as(
            "SELECT name, labels FROM series WHERE source = $1 ORDER BY name, labels",
        )
        .bind(source)
        .fetch_all(&self.pool)
        .await?;
        Ok(rows
            .into_iter()
            .map(|(name, labels)| SeriesInfo {
                name,
                labels: labels.0,
            })
            .collect())
    }

    /// The samples of one series in `[from, to)`, as min/max/avg per bucket of `width_secs`. Buckets
    /// are aligned to multiples of the width since the epoch, so a chart that moves on keeps its
    /// buckets; empty buckets are left out.
    pub async fn range(
        &self,
        source: &str,
        series: &str,
        labels: &Labels,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
        width_secs: f64,
    ) -> Result<Vec<Bucket>> {
        let rows: Vec<(DateTime<Utc>, f64, f64, f64, i64)> = sqlx::query_as(
            "SELECT to_timestamp(b * $6), min(value), max(value), avg(value), count(*)
         FROM (
             SELECT floor(extract(epoch FROM s.ts) / $6) AS b, s.value
             FROM series JOIN samples s ON s.series = series.id
             WHERE series.source = $1 AND series.name = $2 AND series.labels = $3
               AND s.ts >= $4 AND s.ts < $5
         ) AS points
         GROUP BY b ORDER BY b",
        )
        .bind(source)
        .bind(series)
        .bind(Json(labels))
        .bind(from)
        .bind(to)
        .bind(width_secs)
        .fetch_all(&self.pool)
        .await?;
        Ok(rows
            .into_iter()
            .map(|(t, min, max, avg, count)| Bucket {
                t,
                min,
                max,
                avg,
                count,
            })
            .collect())
    }
}
