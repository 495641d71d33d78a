//! The metrics store's tiers: hour partitions, rollups, packed blocks and retention. Each test
//! has a database of its own and drives the upkeep round by round, on a clock of its choosing.

use std::collections::BTreeMap;

use app::{
    auth::Role,
    metrics::{Bucket, Series, Storage, snap_width},
};
use chrono::{DateTime, DurationRound, TimeDelta, Utc};
use rand::{Rng, SeedableRng, rngs::StdRng};
use serde_json::{Value, json};
use server::{storage, store::tiers::SAMPLES};
use sqlx::PgPool;

use crate::helpers::{EmptyDatabase, TestApp, http_with, range, start, start_with, unique_room};

/// A server on a database of its own whose upkeep runs only when the test says.
struct Private {
    app: TestApp,
    database: EmptyDatabase,
    pool: PgPool,
}

impl Private {
    /// Keeps raw samples `raw` long and packs them after `compact_after`.
    async fn start(label: &str, compact_after: TimeDelta, raw: TimeDelta) -> Self {
        let database = EmptyDatabase::create(label).await;
        let url = database.url.clone();
        let app = start_with(move |config| {
            config.database_url = Some(url);
            config.rollup_every = std::time::Duration::from_secs(86_400);
            config.compact_after = compact_after.to_std().unwrap();
            config.retention_raw = raw.to_std().unwrap();
        })
        .await;
        let pool = PgPool::connect(&database.url).await.unwrap();
        Self {
            app,
            database,
            pool,
        }
    }

    async fn round(&self, now: DateTime<Utc>) {
        storage::round(&self.app.store, now)
            .await
            .expect("an upkeep round succeeds");
    }

    /// Puts the rollup mark (and the fence) back at `at`, as on a store whose rollups lag.
    async fn rolled_at(&self, at: DateTime<Utc>) {
        sqlx::query("UPDATE rollup_state SET at = $1")
            .bind(at)
            .execute(&self.pool)
            .await
            .unwrap();
    }

    async fn rolled(&self) -> DateTime<Utc> {
        sqlx::query_scalar("SELECT at FROM rollup_state WHERE name = 'rolled'")
            .fetch_one(&self.pool)
            .await
            .unwrap()
    }

    async fn partitions(&self) -> Vec<String> {
        sqlx::query_scalar(
            "SELECT c.relname::text FROM pg_inherits i
             JOIN pg_class c ON c.oid = i.inhrelid JOIN pg_class p ON p.oid = i.inhparent
             WHERE p.relname = 'samples' ORDER BY 1",
        )
        .fetch_all(&self.pool)
        .await
        .unwrap()
    }

    async fn stop(self) {
        self.pool.close().await;
        self.app.stop().await.unwrap();
        self.database.drop().await;
    }
}

/// Packs nothing, keeps raw samples for the default 15 days.
const NEVER: TimeDelta = TimeDelta::days(30);
const RAW: TimeDelta = TimeDelta::days(15);

fn hour(t: DateTime<Utc>) -> DateTime<Utc> {
    t.duration_trunc(TimeDelta::hours(1)).unwrap()
}

/// Whole microseconds, as the store keeps them.
fn micros(t: DateTime<Utc>) -> DateTime<Utc> {
    t.duration_trunc(TimeDelta::microseconds(1)).unwrap()
}

type Written = Vec<(DateTime<Utc>, f64)>;

/// Posts `samples` of `series` of `source`, in batches the API takes.
async fn post(app: &TestApp, source: &str, series: &str, samples: &[(DateTime<Utc>, f64)]) {
    for chunk in samples.chunks(app::metrics::MAX_BATCH_SAMPLES) {
        let body: Vec<Value> = chunk
            .iter()
            .map(
                |(ts, value)| json!({"source": source, "series": series, "value": value, "ts": ts}),
            )
            .collect();
        let response = app
            .http()
            .post(format!("http://{}/api/metrics", app.addr))
            .json(&body)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200, "{}", response.text().await.unwrap());
    }
}

/// Fails naming the first bucket that differs, rather than printing thousands.
fn assert_same(got: &[Bucket], want: &[Bucket], what: &str) {
    // The mean crosses JSON, whose float parsing may differ in the last place.
    let same = |g: &Bucket, w: &Bucket| {
        (g.t, g.min, g.max, g.count, g.last) == (w.t, w.min, w.max, w.count, w.last)
            && (g.avg - w.avg).abs() <= w.avg.abs() * 1e-12
    };
    let first = got.iter().zip(want).position(|(g, w)| !same(g, w));
    if let Some(i) = first {
        panic!(
            "{what}: bucket {i} differs: got {:?}, want {:?}",
            got[i], want[i]
        );
    }
    assert_eq!(got.len(), want.len(), "{what}: bucket counts differ");
}

/// The buckets `width_secs` wide that the samples in `[from, to)` make, computed here.
fn expected(
    written: &Written,
    from: DateTime<Utc>,
    to: DateTime<Utc>,
    width_secs: f64,
) -> Vec<Bucket> {
    let width = (width_secs * 1e6).round() as i64;
    /// Min, max, sum, count, and the newest sample (time, value).
    type Agg = (f64, f64, f64, i64, (i64, f64));
    let mut buckets: BTreeMap<i64, Agg> = BTreeMap::new();
    for (ts, value) in written.iter().filter(|(ts, _)| *ts >= from && *ts < to) {
        let micros = ts.timestamp_micros();
        let b = buckets.entry(micros - micros.rem_euclid(width)).or_insert((
            *value,
            *value,
            0.0,
            0,
            (micros, *value),
        ));
        b.0 = b.0.min(*value);
        b.1 = b.1.max(*value);
        b.2 += value;
        b.3 += 1;
        // The newest; of samples stamped alike, the greatest.
        if (micros, *value) > b.4 {
            b.4 = (micros, *value);
        }
    }
    buckets
        .into_iter()
        .map(|(t, (min, max, sum, count, (_, last)))| Bucket {
            t: DateTime::from_timestamp_micros(t).unwrap(),
            min,
            max,
            avg: sum / count as f64,
            count,
            last: Some(last),
        })
        .collect()
}

#[tokio::test]
async fn partitions_are_made_ahead_and_each_sample_lands_in_its_hour() {
    let private = Private::start("parts", TimeDelta::hours(1), RAW).await;
    let now = Utc::now();
    let names = private.partitions().await;
    for ahead in 0..3 {
        let name = format!(
            "samples_p{}",
            (hour(now) + TimeDelta::hours(ahead)).format("%Y%m%d%H")
        );
        assert!(names.contains(&name), "{name} made ahead: {names:?}");
    }
    // Midnight UTC: the last microsecond of a day and the first of the next part ways.
    let midnight = now.duration_trunc(TimeDelta::days(1)).unwrap();
    private
        .app
        .store
        .ensure_partitions(
            SAMPLES,
            midnight - TimeDelta::hours(1),
            midnight + TimeDelta::hours(1),
        )
        .await
        .unwrap();
    let source = unique_room("parts").as_str().to_owned();
    let before = midnight - TimeDelta::microseconds(1);
    let older_day = now - TimeDelta::days(3);
    post(
        &private.app,
        &source,
        "s",
        &[(before, 1.0), (midnight, 2.0), (micros(older_day), 3.0)],
    )
    .await;
    let placed: Vec<(String, f64)> =
        sqlx::query_as("SELECT tableoid::regclass::text, value FROM samples ORDER BY value")
            .fetch_all(&private.pool)
            .await
            .unwrap();
    let day = |t: DateTime<Utc>| format!("samples_p{}", t.format("%Y%m%d%H"));
    assert_eq!(
        placed,
        vec![
            (day(before), 1.0),
            (day(midnight), 2.0),
            // Its day has no partitions: it waits among the late samples.
            ("samples_late".to_owned(), 3.0),
        ]
    );

    // The late sample is swept into its hour's block, and a range still finds it.
    // Two minutes on: the rollups have at least a minute to roll, and make their partitions.
    let minute_on = Utc::now() + TimeDelta::minutes(2);
    private.round(minute_on).await;
    let late: i64 = sqlx::query_scalar("SELECT count(*) FROM samples_late")
        .fetch_one(&private.pool)
        .await
        .unwrap();
    assert_eq!(late, 0);
    let around = range(
        &private.app,
        &source,
        "s",
        older_day - TimeDelta::minutes(1),
        older_day + TimeDelta::minutes(1),
        120,
    )
    .await;
    assert_eq!(
        around.iter().map(|b| (b.count, b.min)).collect::<Vec<_>>(),
        vec![(1, 3.0)]
    );

    let storage: Storage = private
        .app
        .get(format!("http://{}/api/metrics/storage", private.app.addr))
        .await
        .json()
        .await
        .unwrap();
    let tiers: Vec<&str> = storage.tiers.iter().map(|t| t.tier.as_str()).collect();
    assert_eq!(tiers, ["raw", "blocks", "1m", "1h"]);
    assert!(storage.tiers.iter().all(|t| t.bytes > 0), "{storage:?}");
    assert_eq!(storage.tiers[0].keep_secs, 15 * 86_400);
    assert!(storage.next_drop.is_some());
    private.stop().await;
}

#[tokio::test]
async fn retention_drops_exactly_the_expired_partitions_while_ingest_runs() {
    let private = Private::start("retain", NEVER, TimeDelta::hours(4)).await;
    let now = Utc::now();
    let store = &private.app.store;
    store
        .ensure_partitions(SAMPLES, now - TimeDelta::hours(6), now)
        .await
        .unwrap();
    let source = unique_room("retain").as_str().to_owned();
    let old: Written = (1..=11)
        .map(|half_hours| {
            (
                micros(now - TimeDelta::minutes(30 * half_hours)),
                half_hours as f64,
            )
        })
        .collect();
    post(&private.app, &source, "old", &old).await;
    // A late sample of a day without partitions, past retention too.
    post(
        &private.app,
        &source,
        "old",
        &[(micros(now - TimeDelta::days(2)), 99.0)],
    )
    .await;

    // Samples keep arriving, stamped now, all through the round.
    let live_app = private.app.http().clone();
    let url = format!("http://{}/api/metrics", private.app.addr);
    let live_source = source.clone();
    let (stop, mut stopped) = tokio::sync::watch::channel(false);
    let ingest = tokio::spawn(async move {
        let mut posted = 0;
        while !*stopped.borrow_and_update() {
            let response = live_app
                .post(&url)
                .json(&json!([{"source": live_source, "series": "live", "value": 1}]))
                .send()
                .await
                .unwrap();
            assert_eq!(response.status(), 200);
            posted += 1;
        }
        posted
    });
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    let keep = TimeDelta::hours(4);
    private.round(now).await;
    stop.send(true).unwrap();
    let posted: i64 = ingest.await.unwrap();

    let kept: Vec<f64> = sqlx::query_scalar(
        "SELECT value FROM samples s JOIN series ON series.id = s.series
         WHERE series.name = 'old' ORDER BY value",
    )
    .fetch_all(&private.pool)
    .await
    .unwrap();
    let expired = |ts: DateTime<Utc>| hour(ts) + TimeDelta::hours(1) <= now - keep;
    let expected: Vec<f64> = old
        .iter()
        .filter(|(ts, _)| !expired(*ts))
        .map(|(_, v)| *v)
        .collect();
    assert!(expected.len() < old.len() && !expected.is_empty());
    assert_eq!(kept, expected);
    let names = private.partitions().await;
    assert!(names.iter().all(|name| {
        let start = chrono::NaiveDateTime::parse_from_str(
            &format!("{}0000", name.trim_start_matches("samples_p")),
            "%Y%m%d%H%M%S",
        );
        start.map_or(name == "samples_late", |start| !expired(start.and_utc()))
    }));
    let live: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM samples s JOIN series ON series.id = s.series
         WHERE series.name = 'live'",
    )
    .fetch_one(&private.pool)
    .await
    .unwrap();
    assert!(posted > 0);
    assert_eq!(
        live, posted,
        "every sample acknowledged during the round is kept"
    );
    private.stop().await;
}

#[tokio::test]
async fn rollups_equal_a_direct_aggregate_of_the_raw_samples_late_ones_and_a_restart_included() {
    let private = Private::start("rollups", NEVER, RAW).await;
    let real_now = Utc::now();
    let start = real_now - TimeDelta::hours(3);
    // Rollups three hours behind, as after a stop; half the hours have partitions.
    private
        .rolled_at(start.duration_trunc(TimeDelta::minutes(1)).unwrap())
        .await;
    private
        .app
        .store
        .ensure_partitions(SAMPLES, start, start + TimeDelta::minutes(90))
        .await
        .unwrap();
    let source = unique_room("rollups").as_str().to_owned();
    let mut rng = StdRng::seed_from_u64(0x5eed);
    let mut clock = start;
    for step in 0..8 {
        // Each step: samples of three series around the clock, some far behind it (late).
        for series in ["a", "b", "c"] {
            let samples: Written = (0..rng.random_range(50..300))
                .map(|_| {
                    let back = match rng.random_range(0..5) {
                        0 => TimeDelta::seconds(rng.random_range(0..10_000)),
                        _ => TimeDelta::seconds(rng.random_range(0..1_200)),
                    };
                    let ts = (clock - back).max(start).min(real_now);
                    (micros(ts), f64::from(rng.random_range(-1000..1000)))
                })
                .collect();
            post(&private.app, &source, series, &samples).await;
        }
        if step == 4 {
            // A node stopped between moving the fence and committing its rollup: the fence
            // is ahead of the mark, and samples between them arrive.
            let rolled = private.rolled().await;
            sqlx::query("UPDATE rollup_state SET at = $1 WHERE name = 'fence'")
                .bind(rolled + TimeDelta::minutes(20))
                .execute(&private.pool)
                .await
                .unwrap();
            let between: Written = (0..100)
                .map(|i| {
                    (
                        micros(rolled + TimeDelta::seconds(i * 11)),
                        f64::from(i as i32),
                    )
                })
                .collect();
            post(&private.app, &source, "a", &between).await;
        } else {
            private.round(clock).await;
        }
        clock += TimeDelta::minutes(25);
    }
    private.round(Utc::now() + TimeDelta::minutes(2)).await;

    let rolled = private.rolled().await;
    assert!(
        rolled > real_now,
        "rolled up to {rolled}, begun at {real_now}"
    );
    for (tier, width) in [("rollups_1m", "1 minute"), ("rollups_1h", "1 hour")] {
        let end = match tier {
            "rollups_1m" => rolled,
            _ => hour(rolled),
        };
        let query = |from: &str| {
            format!(
                "SELECT series, t, count::int8, min, max, sum, last_at, last FROM ({from}) x
                 WHERE t < $1 ORDER BY series, t"
            )
        };
        type Rolled = (i32, DateTime<Utc>, i64, f64, f64, f64, DateTime<Utc>, f64);
        let rolled_up: Vec<Rolled> = sqlx::query_as(&query(&format!("SELECT * FROM {tier}")))
            .bind(end)
            .fetch_all(&private.pool)
            .await
            .unwrap();
        let direct: Vec<Rolled> = sqlx::query_as(&query(&format!(
            "SELECT series, date_bin('{width}', ts, 'epoch') AS t, count(*) AS count,
                        min(value) AS min, max(value) AS max, sum(value) AS sum,
                        max(ts) AS last_at,
                        (array_agg(value ORDER BY ts DESC, value DESC))[1] AS last
                 FROM samples GROUP BY 1, 2"
        )))
        .bind(end)
        .fetch_all(&private.pool)
        .await
        .unwrap();
        assert!(!direct.is_empty());
        assert_eq!(
            rolled_up, direct,
            "{tier} equals the raw samples' aggregate"
        );
    }
    let pending: i64 = sqlx::query_scalar("SELECT count(*) FROM rollup_pending")
        .fetch_one(&private.pool)
        .await
        .unwrap();
    assert_eq!(pending, 0, "every late sample was folded in");
    private.stop().await;
}

#[tokio::test]
async fn compacted_blocks_return_exactly_the_samples_written() {
    let private = Private::start("blocks", TimeDelta::hours(1), RAW).await;
    let now = Utc::now();
    let store = &private.app.store;
    store
        .ensure_partitions(SAMPLES, now - TimeDelta::hours(5), now)
        .await
        .unwrap();
    let source = unique_room("blocks").as_str().to_owned();
    let mut rng = StdRng::seed_from_u64(7);
    let from = now - TimeDelta::hours(5);
    let mut written: Written = (0..5000)
        .map(|_| {
            let ts = from + TimeDelta::microseconds(rng.random_range(0..3 * 3_600_000_000));
            let value = match rng.random_range(0..3) {
                0 => f64::from(rng.random_range(0..100)),
                1 => rng.random_range(-1e12..1e12),
                _ => f64::from_bits(rng.random::<u64>() >> 2),
            };
            (ts, value)
        })
        .collect();
    // Two samples stamped alike are both kept.
    written.push(written[0]);
    post(&private.app, &source, "s", &written).await;

    private.round(now).await;
    private.round(now).await;
    let blocks: i64 = sqlx::query_scalar("SELECT count(*) FROM sample_blocks")
        .fetch_one(&private.pool)
        .await
        .unwrap();
    assert!(blocks >= 3, "three hours were packed: {blocks} blocks");
    let names = private.partitions().await;
    assert!(
        !names.contains(&format!("samples_p{}", from.format("%Y%m%d%H"))),
        "a packed hour's partition is dropped: {names:?}"
    );

    // A late sample for a packed hour joins its block.
    let late = (micros(from + TimeDelta::minutes(90)), 0.5);
    post(&private.app, &source, "s", &[late]).await;
    written.push(late);
    private.round(now).await;

    let to = from + TimeDelta::hours(3);
    let series = Series {
        name: "s".into(),
        labels: Default::default(),
    };
    let stored = store.range(&source, &series, from, to, 1e-6).await.unwrap();
    assert_same(
        &stored,
        &expected(&written, from, to, 1e-6),
        "one bucket per sample",
    );
    assert_eq!(
        stored.iter().map(|b| b.count).sum::<i64>(),
        written.len() as i64
    );
    private.stop().await;
}

#[tokio::test]
async fn a_range_across_blocks_rows_and_rollups_gives_the_buckets_of_the_raw_samples() {
    let private = Private::start("stitch", TimeDelta::hours(3), RAW).await;
    let now = Utc::now();
    let from = now - TimeDelta::hours(6);
    private
        .rolled_at(from.duration_trunc(TimeDelta::minutes(1)).unwrap())
        .await;
    private
        .app
        .store
        .ensure_partitions(SAMPLES, from, now)
        .await
        .unwrap();
    let source = unique_room("stitch").as_str().to_owned();
    let written: Written = (0..2160)
        .map(|i| {
            (
                micros(from + TimeDelta::seconds(i * 10)),
                f64::from((i * 37 % 101) as i32),
            )
        })
        .collect();
    post(&private.app, &source, "s", &written).await;
    // Packed after three hours: blocks, then rows, all rolled up.
    private.round(now).await;
    let blocks: i64 = sqlx::query_scalar("SELECT count(*) FROM sample_blocks")
        .fetch_one(&private.pool)
        .await
        .unwrap();
    assert!(blocks >= 2, "{blocks} blocks");

    // From a moment that is no whole minute, in buckets from each tier.
    let start = from + TimeDelta::seconds(7);
    for buckets in [2160, 360, 72, 6] {
        let got = range(&private.app, &source, "s", start, now, buckets).await;
        let width = snap_width((now - start).as_seconds_f64() / f64::from(buckets));
        let want = expected(&written, start, now, width);
        assert_same(&got, &want, &format!("{buckets} buckets"));
    }
    private.stop().await;
}

#[tokio::test]
async fn a_range_beyond_retention_says_how_far_back_samples_are_kept() {
    let app = start().await;
    let now = Utc::now();
    let response = app
        .http()
        .get(format!("http://{}/api/metrics/range", app.addr))
        .query(&[
            ("source", "any"),
            ("series", "s"),
            ("from", &(now - TimeDelta::days(800)).to_rfc3339()),
            ("to", &now.to_rfc3339()),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 400);
    let body: Value = response.json().await.unwrap();
    let message = body["message"].as_str().unwrap_or_default();
    assert!(message.contains("kept for 730 days"), "{body}");
    app.stop().await.unwrap();
}

#[tokio::test]
async fn an_editor_deletes_a_series_or_a_whole_source_and_it_can_start_over() {
    let app = start().await;
    let source = unique_room("junk").as_str().to_owned();
    let now = micros(Utc::now());
    for series in ["a", "b"] {
        post(&app, &source, series, &[(now, 1.0)]).await;
    }
    let base = format!("http://{}/api/metrics/sources/{source}", app.addr);
    let viewer = http_with(&app.token_for(Role::Viewer, &["*"], &["read:*"]).await);
    let refused = viewer
        .delete(format!("{base}/series"))
        .query(&[("series", "a")])
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), 403);

    let deleted = app
        .http()
        .delete(format!("{base}/series"))
        .query(&[("series", "a")])
        .send()
        .await
        .unwrap();
    assert_eq!(deleted.status(), 200);
    assert_eq!(deleted.json::<Value>().await.unwrap(), json!({"series": 1}));
    let listed: Vec<Series> = app
        .get(format!("{base}/series"))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(
        listed.iter().map(|s| s.name.as_str()).collect::<Vec<_>>(),
        ["b"]
    );
    let hour_ago = now - TimeDelta::hours(1);
    assert!(
        range(
            &app,
            &source,
            "a",
            hour_ago,
            now + TimeDelta::seconds(1),
            60
        )
        .await
        .is_empty()
    );
    let again = app
        .http()
        .delete(format!("{base}/series"))
        .query(&[("series", "a")])
        .send()
        .await
        .unwrap();
    assert_eq!(again.status(), 404);

    let whole = app.http().delete(&base).send().await.unwrap();
    assert_eq!(whole.json::<Value>().await.unwrap(), json!({"series": 1}));
    let sources: Vec<String> = app
        .get(format!("http://{}/api/metrics/sources", app.addr))
        .await
        .json()
        .await
        .unwrap();
    assert!(!sources.contains(&source));

    // The source starts over: its series are made anew.
    post(&app, &source, "a", &[(now, 2.0)]).await;
    let fresh = range(
        &app,
        &source,
        "a",
        hour_ago,
        now + TimeDelta::seconds(1),
        60,
    )
    .await;
    assert_eq!(
        fresh.iter().map(|b| (b.count, b.max)).collect::<Vec<_>>(),
        [(1, 2.0)]
    );
    app.stop().await.unwrap();
}

#[tokio::test]
async fn one_request_may_not_read_more_stored_values_than_the_cap_over_all_its_series() {
    let app = start().await;
    let source = unique_room("wide").as_str().replace('.', "-");
    let series: Vec<(String, Series)> = (0..100)
        .map(|i| (source.clone(), format!("s{i}").parse().unwrap()))
        .collect();
    let to = Utc::now();
    // 100 series over a week of one-minute rollups: 1,008,100 values, within the cap.
    let week = app
        .store
        .ranges(&series, to - TimeDelta::days(7), to, 60.0)
        .await;
    assert_eq!(week.unwrap().len(), 100);
    // A day of their raw samples (one-second buckets), counted at one a second: 8,640,100.
    let refused = app
        .store
        .ranges(&series, to - TimeDelta::days(1), to, 1.0)
        .await
        .expect_err("refused");
    let message = refused.to_string();
    assert!(message.contains("100 series over this range"), "{message}");
    assert_eq!(refused.status(), 400);
    app.stop().await.unwrap();
}
