//! Metric ingest and range queries against a real server and Postgres.

use crate::helpers::TestApp;
use crate::helpers::{Client, range, start, start_with, unique_room};
use app::{
    metrics::{Bucket, MAX_BATCH_BYTES, MAX_BATCH_SAMPLES, Stored, event_points, source_room},
    protocol::{ClientFrame, ErrorCode, EventKind, ServerFrame},
};
use chrono::{Duration, DurationRound, Utc};
use serde_json::{Value, json};

fn unique_source(label: &str) -> String {
    unique_room(label).as_str().to_owned()
}

async fn post_samples(running: &TestApp, body: &Value) -> reqwest::Response {
    running
        .http()
        .post(format!("http://{}/api/metrics", running.addr))
        .json(body)
        .send()
        .await
        .unwrap()
}

/// Everything stored for `series` in the last minute, merged into one bucket (buckets are
/// aligned to the epoch, so even one a minute wide may split the minute in two).
async fn last_minute(running: &TestApp, source: &str, series: &str) -> Bucket {
    let now = Utc::now();
    let from = now - Duration::minutes(1);
    let buckets = range(running, source, series, from, now + Duration::seconds(1), 1).await;
    let count: i64 = buckets.iter().map(|b| b.count).sum();
    Bucket {
        t: buckets.first().expect("samples in the last minute").t,
        min: buckets.iter().map(|b| b.min).fold(f64::MAX, f64::min),
        max: buckets.iter().map(|b| b.max).fold(f64::MIN, f64::max),
        avg: buckets.iter().map(|b| b.avg * b.count as f64).sum::<f64>() / count as f64,
        count,
        last: buckets.last().and_then(|b| b.last),
    }
}

async fn sources(running: &TestApp) -> Vec<String> {
    running
        .get(format!("http://{}/api/metrics/sources", running.addr))
        .await
        .json()
        .await
        .unwrap()
}

#[tokio::test]
async fn posted_samples_are_stored_queryable_and_pushed_to_the_source_room() {
    let running = start().await;
    let source = unique_source("ingest");
    let room = source_room(&source).unwrap();
    let mut watcher = Client::connect(&running).await;
    watcher.subscribe(&room, None).await;

    let ts = Utc::now() - Duration::seconds(10);
    let response = post_samples(
        &running,
        &json!([
            {"source": source, "series": "cpu", "value": 12.5, "ts": ts},
            {"source": source, "series": "mem", "value": 1024, "labels": {"kind": "used"}},
            {"source": source, "series": "cpu", "value": 13.5},
        ]),
    )
    .await;
    assert_eq!(response.status(), 200);
    let stored: Stored = response.json().await.unwrap();
    assert_eq!(stored.samples, 3);
    assert_eq!(stored.events.len(), 1, "one event per source room");
    assert_eq!(stored.events[0].room, room);

    let ServerFrame::Event(event) = watcher.next().await else {
        panic!("expected the batch pushed live");
    };
    assert_eq!(
        (event.kind, event.seq),
        (EventKind::Metric, stored.events[0].seq)
    );
    let pushed: Vec<(String, f64)> = event_points(&event.data, event.ts)
        .into_iter()
        .map(|p| (p.series, p.value))
        .collect();
    assert_eq!(
        pushed,
        vec![
            ("cpu".into(), 12.5),
            ("mem".into(), 1024.0),
            ("cpu".into(), 13.5)
        ]
    );

    let cpu = last_minute(&running, &source, "cpu").await;
    assert_eq!((cpu.min, cpu.max, cpu.count), (12.5, 13.5, 2));
    assert_eq!(
        cpu.last,
        Some(13.5),
        "the newest sample, sent without a time: now"
    );
    assert!(sources(&running).await.contains(&source));
    running.stop().await.unwrap();
}

#[tokio::test]
async fn a_bad_sample_rejects_the_whole_batch_naming_its_index() {
    let running = start().await;
    let source = unique_source("reject");
    let room = source_room(&source).unwrap();
    let far_future = Utc::now() + Duration::hours(1);
    for (bad, reason) in [
        (
            json!({"source": source, "series": "9lives", "value": 1}),
            "series",
        ),
        (
            json!({"source": "no spaces", "series": "cpu", "value": 1}),
            "source",
        ),
        (
            json!({"source": source, "series": "cpu", "value": 1, "ts": far_future}),
            "window",
        ),
        (
            json!({"source": source, "series": "cpu", "value": 1, "labels": {"a b": "c"}}),
            "label",
        ),
    ] {
        let batch = json!([
            {"source": source, "series": "cpu", "value": 1},
            {"source": source, "series": "cpu", "value": 2},
            bad,
        ]);
        let response = post_samples(&running, &batch).await;
        assert_eq!(response.status(), 400, "{batch}");
        let body: Value = response.json().await.unwrap();
        assert_eq!(body["error"], "invalid_sample");
        let message = body["message"].as_str().unwrap();
        assert!(message.starts_with("sample 2:"), "{message}");
        assert!(message.contains(reason), "{message}");
    }
    // A value that is not a number is not JSON of the documented shape.
    let response = post_samples(
        &running,
        &json!([{"source": source, "series": "cpu", "value": "high"}]),
    )
    .await;
    assert_eq!(response.status(), 422);

    assert!(
        !sources(&running).await.contains(&source),
        "nothing of a rejected batch is stored"
    );
    let events: Vec<Value> = running
        .get(crate::helpers::events_url(&running, room.as_str()))
        .await
        .json()
        .await
        .unwrap();
    assert!(events.is_empty());
    running.stop().await.unwrap();
}

#[tokio::test]
async fn oversized_batches_are_refused() {
    let running = start().await;
    let source = unique_source("big");
    let sample = json!({"source": source, "series": "cpu", "value": 1});
    let too_many = Value::Array(vec![sample; app::metrics::MAX_BATCH_SAMPLES + 1]);
    let response = post_samples(&running, &too_many).await;
    assert_eq!(response.status(), 400);

    let padding = "x".repeat(MAX_BATCH_BYTES);
    let too_big =
        json!([{"source": source, "series": "cpu", "value": 1, "labels": {"pad": padding}}]);
    let response = post_samples(&running, &too_big).await;
    assert_eq!(response.status(), 413);
    assert!(!sources(&running).await.contains(&source));
    running.stop().await.unwrap();
}

#[tokio::test]
async fn range_queries_downsample_to_min_max_avg_per_bucket() {
    let running = start().await;
    let source = unique_source("range");
    // One sample a second for an hour, value = second, starting on a whole hour so that the
    // minute-wide buckets line up with the data.
    let start_at = (Utc::now() - Duration::hours(2))
        .duration_trunc(Duration::hours(1))
        .unwrap();
    let batch: Vec<Value> = (0..3600)
        .map(|i| {
            json!({"source": source, "series": "s", "value": i,
                   "ts": start_at + Duration::seconds(i)})
        })
        .collect();
    assert_eq!(
        post_samples(&running, &Value::Array(batch)).await.status(),
        200
    );

    let buckets = range(
        &running,
        &source,
        "s",
        start_at,
        start_at + Duration::hours(1),
        60,
    )
    .await;
    assert_eq!(buckets.len(), 60);
    for (k, bucket) in buckets.iter().enumerate() {
        let first = 60.0 * k as f64;
        assert_eq!(bucket.t, start_at + Duration::minutes(k as i64));
        assert_eq!(
            (bucket.min, bucket.max, bucket.count),
            (first, first + 59.0, 60)
        );
        assert_eq!(bucket.avg, first + 29.5);
    }
    // A narrower window only sees its own samples.
    let tail = range(
        &running,
        &source,
        "s",
        start_at + Duration::minutes(59),
        start_at + Duration::hours(3),
        1,
    )
    .await;
    assert_eq!(tail.iter().map(|b| b.count).sum::<i64>(), 60);
    assert_eq!(tail.iter().map(|b| b.min).fold(f64::MAX, f64::min), 3540.0);

    // A series asked for twice in one query (a gauge and a chart of it on one dashboard) is
    // answered twice, in full.
    let series: app::metrics::Series = "s".parse().unwrap();
    let twice = [(source.clone(), series.clone()), (source.clone(), series)];
    let end = start_at + Duration::hours(1);
    let answered = running
        .store
        .ranges(&twice, start_at, end, 60.0)
        .await
        .unwrap();
    assert_eq!(answered[0].len(), 60);
    assert_eq!(answered[0], answered[1]);
    running.stop().await.unwrap();
}

#[tokio::test]
async fn prometheus_text_is_stored_as_samples_of_the_named_source() {
    let running = start().await;
    let source = unique_source("prom");
    let url = format!("http://{}/api/metrics/prometheus", running.addr);
    let text =
        "# TYPE up gauge\nup{job=\"node\"} 1\nload1 0.75\nrpc_seconds{quantile=\"0.5\"} NaN\n";
    let response = running
        .http()
        .post(&url)
        .query(&[("source", &source)])
        .header("content-type", "text/plain; version=0.0.4")
        .body(text)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let stored: Stored = response.json().await.unwrap();
    assert_eq!((stored.samples, stored.skipped), (2, 1));
    assert_eq!(last_minute(&running, &source, "load1").await.max, 0.75);

    // Each refusal says why and stores nothing of the payload.
    let too_many: String = (0..=MAX_BATCH_SAMPLES)
        .map(|i| format!("m{i} 1\n"))
        .collect();
    for (to, text, reason) in [
        (source.as_str(), "ok 1\nbroken{ 2\n".to_owned(), "line 2:"),
        ("no such source!", "ok 1\n".to_owned(), "source"),
        (source.as_str(), too_many, "at most 10000 samples"),
        (
            source.as_str(),
            "ok 1\nold 1 1000\n".to_owned(),
            "outside the accepted window",
        ),
    ] {
        let response = running
            .http()
            .post(&url)
            .query(&[("source", to)])
            .header("content-type", "text/plain")
            .body(text)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 400, "{reason}");
        let body: Value = response.json().await.unwrap();
        let message = body["message"].as_str().unwrap();
        assert!(message.contains(reason), "{reason}: {body}");
    }
    let from = Utc::now() - Duration::minutes(1);
    assert!(
        range(&running, &source, "ok", from, Utc::now(), 1)
            .await
            .is_empty()
    );
    running.stop().await.unwrap();
}

#[tokio::test]
async fn metrics_published_over_the_socket_are_stored_as_samples() {
    let running = start().await;
    let source = unique_source("socket");
    let room = source_room(&source).unwrap();
    let mut client = Client::connect(&running).await;
    client
        .send(&ClientFrame::Publish {
            room: room.clone(),
            kind: EventKind::Metric,
            data: json!({"series": "temp", "value": 21.5}),
            reference: None,
        })
        .await;
    assert!(matches!(client.next().await, ServerFrame::Published { .. }));
    let temp = last_minute(&running, &source, "temp").await;
    assert_eq!((temp.avg, temp.count), (21.5, 1));
    running.stop().await.unwrap();
}

#[tokio::test]
async fn the_host_collector_pushes_sane_figures_every_second() {
    let running = start_with(|config| config.host_metrics = true).await;
    let room = source_room(&server::collector::host_source()).unwrap();
    let mut watcher = Client::connect(&running).await;
    watcher.subscribe(&room, None).await;
    let ServerFrame::Event(event) = watcher.next().await else {
        panic!("expected host metrics");
    };
    let points = event_points(&event.data, event.ts);
    let value = |series: &str| {
        points
            .iter()
            .find(|p| p.series == series)
            .unwrap_or_else(|| panic!("{series} collected"))
            .value
    };
    for series in ["cpu.total", "cpu.core0"] {
        assert!(
            (0.0..=100.0).contains(&value(series)),
            "{series} = {}",
            value(series)
        );
    }
    assert!(value("mem.total") > 0.0);
    assert!(value("mem.used") <= value("mem.total"));
    assert!(value("mem.available") <= value("mem.total"));
    assert!(value("swap.used") <= value("swap.total"));
    for series in ["load.1", "net.rx", "net.tx", "disk.read", "disk.write"] {
        assert!(value(series) >= 0.0, "{series} = {}", value(series));
    }
    assert!(
        points
            .iter()
            .filter(|p| p.series == "fs.used_pct")
            .all(|p| (0.0..=100.0).contains(&p.value))
    );
    assert!(
        value("watchroom.connections") >= 1.0,
        "this test's own socket counts"
    );
    assert!(value("watchroom.rooms") >= 1.0);
    running.stop().await.unwrap();
}

#[tokio::test]
async fn range_queries_with_bad_parameters_get_a_json_error() {
    let running = start().await;
    let url = format!("http://{}/api/metrics/range", running.addr);
    let now = Utc::now().to_rfc3339();
    let earlier = (Utc::now() - Duration::hours(1)).to_rfc3339();
    let just_before = (Utc::now() - Duration::milliseconds(5)).to_rfc3339();
    for (query, reason) in [
        (vec![("source", "a"), ("series", "s")], "from"),
        (
            vec![("source", "a"), ("series", "s"), ("from", "yesterday")],
            "from",
        ),
        (
            vec![
                ("source", "a"),
                ("series", "s"),
                ("from", &now),
                ("to", &earlier),
            ],
            "before",
        ),
        (
            vec![
                ("source", "a"),
                ("series", "s"),
                ("from", &earlier),
                ("labels", "[1]"),
            ],
            "labels",
        ),
        (
            vec![
                ("source", "a"),
                ("series", "s"),
                ("from", &earlier),
                ("labels", r#"{"mount": "a\u0000b"}"#),
            ],
            "NUL",
        ),
        (
            vec![("source", "a\0b"), ("series", "s"), ("from", &earlier)],
            "source",
        ),
        (
            vec![("source", "a"), ("series", "9lives"), ("from", &earlier)],
            "series",
        ),
        (
            vec![
                ("source", "a"),
                ("series", "s"),
                ("from", &earlier),
                ("buckets", "-1"),
            ],
            "buckets",
        ),
        (
            vec![
                ("source", "a"),
                ("series", "s"),
                ("from", &just_before),
                ("to", &now),
                ("buckets", "600"),
            ],
            "1 ms wide",
        ),
    ] {
        let response = running.http().get(&url).query(&query).send().await.unwrap();
        assert_eq!(response.status(), 400, "{query:?}");
        let body: Value = response.json().await.unwrap();
        assert_eq!(body["error"], "bad_frame", "{query:?}");
        assert!(
            body["message"].as_str().unwrap().contains(reason),
            "{query:?}: {body}"
        );
    }
    let nul_source = format!("http://{}/api/metrics/sources/a%00b/series", running.addr);
    let response = running.get(nul_source).await;
    assert_eq!(response.status(), 400, "a source no room can have");
    // A series nobody sent is simply empty.
    let unknown = range(
        &running,
        "nobody",
        "nothing",
        Utc::now() - Duration::hours(1),
        Utc::now(),
        10,
    )
    .await;
    assert!(unknown.is_empty());
    running.stop().await.unwrap();
}

#[tokio::test]
async fn a_source_at_its_series_limit_takes_samples_of_its_series_but_no_new_one() {
    let limited = |c: &mut server::Config| c.max_series_per_source = 3;
    let running = start_with(limited).await;
    let source = unique_source("limit");
    let sample = |series: &str, labels: Value| json!({"source": source, "series": series, "value": 1, "labels": labels});
    let three = json!([
        sample("a", json!({})),
        sample("a", json!({"core": "0"})),
        sample("b", json!({})),
    ]);
    assert_eq!(post_samples(&running, &three).await.status(), 200);

    // One sample of a fourth series refuses the whole batch, known series included.
    let refused = json!([sample("b", json!({})), sample("a", json!({"core": "1"}))]);
    let response = post_samples(&running, &refused).await;
    assert_eq!(response.status(), 400);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["error"], "too_many_series");
    let message = body["message"].as_str().unwrap();
    assert!(
        message.contains(r#"a{core="1"} would be one more"#),
        "{message}"
    );
    assert_eq!(last_minute(&running, &source, "b").await.count, 1);
    assert_eq!(post_samples(&running, &three).await.status(), 200);
    running.stop().await.unwrap();

    // A restarted server counts what is stored, and the socket is held to the same limit.
    let running = start_with(limited).await;
    let mut client = Client::connect(&running).await;
    client
        .send(&ClientFrame::Publish {
            room: source_room(&source).unwrap(),
            kind: EventKind::Metric,
            data: json!({"series": "c", "value": 1}),
            reference: None,
        })
        .await;
    match client.next().await {
        ServerFrame::Error { code, .. } => assert_eq!(code, ErrorCode::TooManySeries),
        other => panic!("expected a refusal, got {other:?}"),
    }
    assert_eq!(post_samples(&running, &three).await.status(), 200);
    assert_eq!(last_minute(&running, &source, "b").await.count, 3);
    running.stop().await.unwrap();
}

#[tokio::test]
async fn requests_admitted_together_cannot_pass_a_series_limit_by_what_they_add_together() {
    let database = crate::helpers::EmptyDatabase::create("series_cap").await;
    let app = start_with(|config| {
        config.database_url = Some(database.url.clone());
        config.max_series_per_source = 10;
        config.max_series = 14;
        (config.publish_rate, config.publish_burst) = (1e6, 1e6);
    })
    .await;
    // Twenty requests at once, each with a new series of one source: ten fit.
    let source = unique_source("burst");
    let one_new = |i: usize| json!([{"source": source, "series": format!("s{i}"), "value": 1}]);
    let bodies: Vec<Value> = (0..20).map(one_new).collect();
    let answers = futures::future::join_all(bodies.iter().map(|b| post_samples(&app, b))).await;
    let taken = answers.iter().filter(|r| r.status() == 200).count();
    assert_eq!(taken, 10, "exactly the source's limit");
    assert!(
        answers
            .iter()
            .all(|r| [200, 400].contains(&r.status().as_u16()))
    );

    // Other sources, each within its own limit, fill the store's: 14 in all.
    let other = unique_source("other");
    let five: Vec<Value> = (0..5)
        .map(|i| json!({"source": other, "series": format!("s{i}"), "value": 1}))
        .collect();
    let response = post_samples(&app, &json!(five)).await;
    assert_eq!(response.status(), 400);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["error"], "too_many_series");
    let message = body["message"].as_str().unwrap();
    assert!(message.contains("the server holds 14 series"), "{message}");
    assert_eq!(post_samples(&app, &json!(five[..4])).await.status(), 200);
    let known = answers.iter().position(|r| r.status() == 200).unwrap();
    let again = post_samples(&app, &one_new(known)).await;
    assert_eq!(again.status(), 200, "a stored series still comes in");
    app.stop().await.unwrap();
    database.drop().await;
}

#[tokio::test]
async fn a_tight_ingest_queue_holds_no_more_than_its_bytes_and_every_request_goes_through() {
    use std::sync::atomic::{AtomicBool, Ordering};
    const BUDGET: usize = 64 * 1024;
    let app = start_with(|config| {
        config.ingest_queue_bytes = BUDGET;
        (config.publish_rate, config.publish_burst) = (1e6, 1e6);
    })
    .await;
    let source = unique_source("tight");
    // Each batch alone is larger than the whole allowance: it waits for all of it.
    let batch: Vec<Value> = (0..5000)
        .map(|i| json!({"source": source, "series": format!("s{}", i % 10), "value": i}))
        .collect();
    let batch = json!(batch);
    let room = unique_room("tight");
    let url = crate::helpers::events_url(&app, room.as_str());
    let pad = "p".repeat(8 * 1024);
    let done = AtomicBool::new(false);
    let work = async {
        let batches = futures::future::join_all((0..6).map(|_| post_samples(&app, &batch)));
        let notices = futures::future::join_all((0..40).map(|i| {
            app.http()
                .post(&url)
                .json(&json!({"kind": "notice", "data": {"text": format!("n{i}"), "pad": pad}}))
                .send()
        }));
        let (batches, notices) = futures::join!(batches, notices);
        done.store(true, Ordering::Relaxed);
        (batches, notices)
    };
    // Meanwhile, what the queue holds, as `/metrics` reports it.
    let watch = async {
        let mut seen = Vec::new();
        while !done.load(Ordering::Relaxed) {
            let text =
                crate::helpers::text_of(app.http(), format!("http://{}/metrics", app.addr)).await;
            let held = crate::helpers::scraped(&text, "watchroom_ingest_queue_bytes")
                .expect("the gauge is reported");
            seen.push(held as usize);
        }
        seen
    };
    let ((batches, notices), seen) = futures::join!(work, watch);
    for response in batches {
        assert_eq!(response.status(), 200);
    }
    for response in notices {
        assert_eq!(response.unwrap().status(), 201);
    }
    assert!(!seen.is_empty());
    assert!(
        seen.iter().all(|held| *held <= BUDGET),
        "held at most {BUDGET} bytes: {seen:?}"
    );
    let stored: i64 = range(
        &app,
        &source,
        "s0",
        Utc::now() - Duration::minutes(1),
        Utc::now() + Duration::seconds(1),
        1,
    )
    .await
    .iter()
    .map(|b| b.count)
    .sum();
    assert_eq!(stored, 6 * 500, "every sample of every batch");
    app.stop().await.unwrap();
}
