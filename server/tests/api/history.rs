//! The event history across rooms: filters, keyset pages, export, notices, retention, and a
//! resume from before what retention kept.

use std::{collections::HashSet, time::Duration};

use app::{
    auth::Role,
    history::EventPage,
    protocol::{ErrorCode, Event, EventKind, RoomName, ServerFrame},
};
use serde_json::{Value, json};

use crate::helpers::{
    Client, TestApp, database, event_seqs, events_url, http_with, start, start_with, unique_room,
};

/// Stores `data` as an event of `kind` in `room` and returns it.
async fn publish(app: &TestApp, room: &str, kind: &str, data: Value) -> Event {
    let response = app
        .http()
        .post(events_url(app, room))
        .json(&json!({"kind": kind, "data": data}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 201, "{}", response.text().await.unwrap());
    response.json().await.unwrap()
}

/// Stores notices `n<first>` to `n<last>` in `room`, in order, and returns them.
async fn notices(
    app: &TestApp,
    room: &RoomName,
    numbers: std::ops::RangeInclusive<i32>,
) -> Vec<Event> {
    let mut stored = Vec::new();
    for n in numbers {
        stored.push(
            publish(
                app,
                room.as_str(),
                "notice",
                json!({"text": format!("n{n}")}),
            )
            .await,
        );
    }
    stored
}

/// Moves an event's time back by `ago`, as if it had been stored then.
async fn backdate(db: &sqlx::PgPool, event: &Event, ago: &str) {
    sqlx::query("UPDATE events SET ts = ts - $3::interval WHERE room = $1 AND seq = $2")
        .bind(event.room.as_str())
        .bind(event.seq)
        .bind(ago)
        .execute(db)
        .await
        .unwrap();
}

async fn page(app: &TestApp, query: &str) -> EventPage {
    let response = app
        .get(format!("http://{}/api/events?{query}", app.addr))
        .await;
    assert_eq!(response.status(), 200, "{query}");
    response.json().await.unwrap()
}

/// The texts of the events `query` finds, newest first.
async fn texts(app: &TestApp, query: &str) -> Vec<String> {
    page(app, query)
        .await
        .events
        .iter()
        .map(|e| e.data["text"].as_str().unwrap_or("").to_owned())
        .collect()
}

#[tokio::test]
async fn each_filter_alone_and_combined_finds_exactly_the_matching_events() {
    let app = start().await;
    let db = database().await;
    let base = unique_room("hist");
    let (web, dbs) = (format!("{base}.web"), format!("{base}.db"));
    let old = publish(
        &app,
        &web,
        "notice",
        json!({"text": "nightly backup of web done"}),
    )
    .await;
    backdate(&db, &old, "3 hours").await;
    publish(&app, &dbs, "metric", json!({"series": "cpu", "value": 0.5})).await;
    publish(
        &app,
        &web,
        "notice",
        json!({"text": "api v1.4 rolled out", "title": "Deploy", "level": "info", "tags": ["release"]}),
    )
    .await;
    publish(&app, &web, "alert", json!({"text": "HighCpu firing on web-1", "type": "transition",
        "name": "HighCpu", "state": "firing", "severity": "critical", "summary": "processor saturated"})).await;
    publish(
        &app,
        &dbs,
        "alert",
        json!({"text": "DiskFull resolved on db-1", "type": "transition",
        "name": "DiskFull", "state": "resolved", "severity": "warning", "summary": "volume freed"}),
    )
    .await;
    publish(
        &app,
        &dbs,
        "notice",
        json!({"text": "failover drill, expect noise", "level": "warning"}),
    )
    .await;

    let all = format!("room={base}.*");
    for (query, expect) in [
        (
            all.clone(),
            vec![
                "failover drill, expect noise",
                "DiskFull resolved on db-1",
                "HighCpu firing on web-1",
                "api v1.4 rolled out",
                "nightly backup of web done",
            ],
        ),
        (format!("{all}&kind=metric"), vec![""]),
        (
            format!("{all}&kind=notice"),
            vec![
                "failover drill, expect noise",
                "api v1.4 rolled out",
                "nightly backup of web done",
            ],
        ),
        (
            format!("room={dbs}"),
            vec!["failover drill, expect noise", "DiskFull resolved on db-1"],
        ),
        (
            format!("{all}&severity=critical"),
            vec!["HighCpu firing on web-1"],
        ),
        (
            format!("{all}&state=resolved"),
            vec!["DiskFull resolved on db-1"],
        ),
        // Words of the text, the title, the tags, the rule's name and its summary.
        (
            format!("{all}&q=backup"),
            vec!["nightly backup of web done"],
        ),
        (format!("{all}&q=deploy"), vec!["api v1.4 rolled out"]),
        (format!("{all}&q=release"), vec!["api v1.4 rolled out"]),
        (format!("{all}&q=highcpu"), vec!["HighCpu firing on web-1"]),
        (
            format!("{all}&q=saturated"),
            vec!["HighCpu firing on web-1"],
        ),
        (
            format!("{all}&from=now-1h&kind=notice"),
            vec!["failover drill, expect noise", "api v1.4 rolled out"],
        ),
        (
            format!("{all}&to=now-1h"),
            vec!["nightly backup of web done"],
        ),
        (
            format!("{all}&kind=notice&q=drill"),
            vec!["failover drill, expect noise"],
        ),
        (
            format!("room={web}&kind=alert&severity=critical&q=saturated"),
            vec!["HighCpu firing on web-1"],
        ),
        (format!("{all}&severity=critical&q=drill"), vec![]),
        (format!("room={dbs}&kind=notice&state=firing"), vec![]),
    ] {
        assert_eq!(texts(&app, &query).await, expect, "{query}");
    }
    let from = (chrono::Utc::now() - chrono::TimeDelta::hours(1)).to_rfc3339();
    let absolute = format!("{all}&kind=notice&from={}", from.replace('+', "%2B"));
    assert_eq!(texts(&app, &absolute).await.len(), 2, "{absolute}");
    app.stop().await.unwrap();
}

#[tokio::test]
async fn pages_return_every_event_exactly_once_while_new_ones_are_stored() {
    let app = start().await;
    let base = unique_room("pages");
    let room = RoomName::parse(format!("{base}.one")).unwrap();
    notices(&app, &room, 1..=45).await;
    // Publishing goes on while the pages are read.
    let publisher = {
        let http = app.http().clone();
        let url = events_url(&app, room.as_str());
        tokio::spawn(async move {
            for n in 46..=65 {
                let body = json!({"kind": "notice", "data": {"text": format!("n{n}")}});
                let response = http.post(&url).json(&body).send().await.unwrap();
                assert_eq!(response.status(), 201);
            }
        })
    };
    let first = page(&app, &format!("room={room}&limit=7")).await;
    assert_eq!(
        first.prev, None,
        "the first page has nothing newer before it"
    );
    let top = first.events[0].clone();
    let mut seen: Vec<i64> = first.events.iter().map(|e| e.seq).collect();
    let mut next = first.next;
    while let Some(cursor) = next {
        let older = page(&app, &format!("room={room}&limit=7&cursor={cursor}")).await;
        assert!(older.prev.is_some(), "an older page has a way back");
        seen.extend(older.events.iter().map(|e| e.seq));
        next = older.next;
    }
    assert!(
        seen.windows(2).all(|w| w[0] > w[1]),
        "newest first, no repeats: {seen:?}"
    );
    assert_eq!(*seen.last().unwrap(), 1);
    assert_eq!(
        seen.len() as i64,
        top.seq,
        "every event up to the first page's top, once"
    );

    // What arrived since the top, page by page newer: every one once, none skipped.
    publisher.await.unwrap();
    let mut newer = Vec::new();
    let mut after = Some(app::history::Cursor::of(&top));
    while let Some(cursor) = after {
        let up = page(&app, &format!("room={room}&limit=4&after={cursor}")).await;
        newer.extend(up.events.iter().rev().map(|e| e.seq));
        after = up.prev;
    }
    assert_eq!(newer, (top.seq + 1..=65).collect::<Vec<_>>());

    // Across rooms too: the keyset includes the room.
    let other = RoomName::parse(format!("{base}.two")).unwrap();
    publish(&app, other.as_str(), "notice", json!({"text": "other"})).await;
    let both = format!("room={base}.*&limit=5");
    let mut all = HashSet::new();
    let mut next = Some(String::new());
    while let Some(cursor) = next {
        let query = match cursor.is_empty() {
            true => both.clone(),
            false => format!("{both}&cursor={cursor}"),
        };
        let got = page(&app, &query).await;
        for event in &got.events {
            assert!(
                all.insert((event.room.clone(), event.seq)),
                "{} {} twice",
                event.room,
                event.seq
            );
        }
        next = got.next.map(|c| c.to_string());
    }
    assert!(all.contains(&(other.clone(), 1)) && all.contains(&(room.clone(), 65)));
    app.stop().await.unwrap();
}

#[tokio::test]
async fn pages_of_metric_events_hold_at_most_twenty_whatever_the_limit_asked() {
    let app = start().await;
    let room = unique_room("metric-pages");
    for n in 0..25 {
        publish(
            &app,
            room.as_str(),
            "metric",
            json!({"series": "x", "value": n}),
        )
        .await;
    }
    let first = page(&app, &format!("room={room}&kind=metric&limit=500")).await;
    assert_eq!(first.events.len(), app::history::MAX_METRIC_PAGE);
    let cursor = first.next.expect("the rest is a page further");
    let rest = page(
        &app,
        &format!("room={room}&kind=metric&limit=500&cursor={cursor}"),
    )
    .await;
    assert_eq!(rest.events.len(), 5);
    assert_eq!(rest.next, None);
    // An export reads the same pages: every event, once.
    let url = format!(
        "http://{}/api/events/export?room={room}&kind=metric&format=ndjson",
        app.addr
    );
    assert_eq!(app.get(url).await.text().await.unwrap().lines().count(), 25);
    app.stop().await.unwrap();
}

#[tokio::test]
async fn bad_parameters_are_refused_naming_the_parameter() {
    let app = start().await;
    for (query, param) in [
        ("from=yesterday", "from"),
        ("to=2026-13-01T00:00:00Z", "to"),
        ("kind=photo", "kind"),
        ("severity=dire", "severity"),
        ("state=melting", "state"),
        ("limit=501", "limit"),
        ("limit=0", "limit"),
        ("cursor=not-a-cursor", "cursor"),
        ("cursor=12.x.room", "cursor"),
        ("after=1.1.a%20b", "after"),
        ("room=a%20b", "room"),
    ] {
        let response = app
            .get(format!("http://{}/api/events?{query}", app.addr))
            .await;
        assert_eq!(response.status(), 400, "{query}");
        let body: Value = response.json().await.unwrap();
        let message = body["message"].as_str().unwrap_or_default();
        assert!(
            message.contains(&format!("parameter {param}")),
            "{query}: {body}"
        );
    }
    let response = app
        .get(format!("http://{}/api/events/export?format=xlsx", app.addr))
        .await;
    assert_eq!(response.status(), 400);
    app.stop().await.unwrap();
}

#[tokio::test]
async fn history_holds_only_the_rooms_an_identity_may_read() {
    let app = start().await;
    let base = unique_room("seen");
    let (mine, theirs) = (format!("{base}.mine"), format!("{base}.theirs"));
    publish(&app, &mine, "notice", json!({"text": "for me"})).await;
    publish(&app, &theirs, "notice", json!({"text": "not for me"})).await;
    let url = format!("http://{}/api/events?room={base}.*", app.addr);
    let texts = |token: String| {
        let url = url.clone();
        async move {
            let page: EventPage = http_with(&token)
                .get(&url)
                .send()
                .await
                .unwrap()
                .json()
                .await
                .unwrap();
            page.events
                .iter()
                .map(|e| e.data["text"].clone())
                .collect::<Vec<_>>()
        }
    };
    let viewer = app.token_for(Role::Viewer, &[&mine], &["read:*"]).await;
    assert_eq!(texts(viewer).await, vec![json!("for me")]);
    let scoped = app
        .token_for(Role::Viewer, &["*"], &[&format!("read:{base}.m*")])
        .await;
    assert_eq!(texts(scoped).await, vec![json!("for me")]);
    let publisher = app.token_for(Role::Editor, &["*"], &["publish:*"]).await;
    assert_eq!(texts(publisher).await, Vec::<Value>::new());
    let anonymous = reqwest::get(&url).await.unwrap();
    assert_eq!(anonymous.status(), 401);
    app.stop().await.unwrap();
}

/// Splits RFC 4180 CSV into records of fields.
fn read_csv(text: &str) -> Vec<Vec<String>> {
    let (mut records, mut record, mut field) = (Vec::new(), Vec::new(), String::new());
    let mut chars = text.chars().peekable();
    let mut quoted = false;
    while let Some(c) = chars.next() {
        match (quoted, c) {
            (true, '"') if chars.peek() == Some(&'"') => {
                chars.next();
                field.push('"');
            }
            (true, '"') => quoted = false,
            (true, c) => field.push(c),
            (false, '"') => quoted = true,
            (false, ',') => record.push(std::mem::take(&mut field)),
            (false, '\r') => {}
            (false, '\n') => {
                record.push(std::mem::take(&mut field));
                records.push(std::mem::take(&mut record));
            }
            (false, c) => field.push(c),
        }
    }
    records
}

#[tokio::test]
async fn exports_stream_csv_and_ndjson_in_page_order_and_say_when_the_limit_cut_them() {
    let server = start_with(|config| config.export_limit = 4).await;
    let app = &server;
    let room = unique_room("export");
    let tricky = "a \"quoted\", comma\nand a second line";
    for text in ["one", tricky, "=HYPERLINK(\"http://x\")", "four", "five"] {
        publish(app, room.as_str(), "notice", json!({"text": text})).await;
    }
    let export = |format: &str| {
        let url = format!(
            "http://{}/api/events/export?room={room}&format={format}",
            app.addr
        );
        async move {
            let response = app.get(url).await;
            assert_eq!(response.status(), 200);
            let disposition = response.headers()["content-disposition"]
                .to_str()
                .unwrap()
                .to_owned();
            assert!(disposition.starts_with("attachment;"), "{disposition}");
            response.text().await.unwrap()
        }
    };
    let csv = read_csv(&export("csv").await);
    assert_eq!(csv[0], ["ts", "room", "seq", "kind", "text", "data"]);
    let seqs: Vec<&str> = csv[1..5].iter().map(|r| r[2].as_str()).collect();
    assert_eq!(seqs, ["5", "4", "3", "2"], "newest first, as the pages");
    assert_eq!(csv[4][4], tricky, "quotes, commas and line breaks survive");
    assert_eq!(
        csv[3][4], "'=HYPERLINK(\"http://x\")",
        "a formula stays text"
    );
    let data: Value = serde_json::from_str(&csv[4][5]).unwrap();
    assert_eq!(data["text"], tricky);
    assert_eq!(csv.len(), 6);
    assert!(
        csv[5][0].starts_with("# export stopped at 4 events"),
        "{:?}",
        csv[5]
    );

    let ndjson = export("ndjson").await;
    let lines: Vec<Value> = ndjson
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let seqs: Vec<&Value> = lines[..4].iter().map(|l| &l["seq"]).collect();
    assert_eq!(seqs, [&json!(5), &json!(4), &json!(3), &json!(2)]);
    assert_eq!(lines[4]["truncated"], true);
    assert_eq!(lines[4]["limit"], 4);

    // Under the limit, nothing is said.
    let short = format!(
        "http://{}/api/events/export?room={room}&format=ndjson&q=four",
        app.addr
    );
    let body = app.get(short).await.text().await.unwrap();
    assert_eq!(body.lines().count(), 1);
    server.stop().await.unwrap();
}

#[tokio::test]
async fn a_notice_posted_to_api_notices_lands_in_its_room_with_title_level_and_tags() {
    let app = start().await;
    let room = unique_room("ci");
    let url = format!("http://{}/api/notices", app.addr);
    let posted = app
        .http()
        .post(&url)
        .json(
            &json!({"room": room, "text": "v2.0 deployed", "title": "Deploy",
                      "level": "info", "tags": ["deploy", "v2.0"], "commit": "4f2a9c"}),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(posted.status(), 201);
    let event: Event = posted.json().await.unwrap();
    assert_eq!(event.room, room);
    let notice = app::protocol::Notice::of(&event).unwrap();
    assert_eq!(notice.title.as_deref(), Some("Deploy"));
    assert_eq!(notice.tags, ["deploy", "v2.0"]);
    assert_eq!(event.data["commit"], "4f2a9c", "other fields are kept");

    let default_room = app
        .http()
        .post(&url)
        .json(&json!({"text": "hello"}))
        .send()
        .await
        .unwrap();
    let event: Event = default_room.json().await.unwrap();
    assert_eq!(event.room.as_str(), "notices");

    for (body, status) in [
        (json!({"text": "x", "level": "fatal"}), 422),
        (json!({"text": ""}), 422),
        (json!({"text": "x", "room": "a b"}), 400),
        (json!({"text": "x", "room": 7}), 400),
    ] {
        let response = app.http().post(&url).json(&body).send().await.unwrap();
        assert_eq!(response.status(), status, "{body}");
    }
    let viewer = app.token_for(Role::Viewer, &["*"], &["admin"]).await;
    let refused = http_with(&viewer)
        .post(&url)
        .json(&json!({"text": "x"}))
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), 403);
    app.stop().await.unwrap();
}

#[tokio::test]
async fn retention_removes_exactly_what_is_past_its_policy_while_publishing_goes_on() {
    let app = start_with(|config| config.retention_every = Duration::from_millis(100)).await;
    let db = database().await;
    let room = unique_room("retain");
    let metrics = unique_room("retain");
    let stored = notices(&app, &room, 1..=10).await;
    let old_metric = publish(
        &app,
        metrics.as_str(),
        "metric",
        json!({"series": "x", "value": 1}),
    )
    .await;
    let young_metric = publish(
        &app,
        metrics.as_str(),
        "metric",
        json!({"series": "x", "value": 2}),
    )
    .await;
    for event in &stored[..4] {
        backdate(&db, event, "401 days").await;
    }
    backdate(&db, &stored[4], "399 days").await;
    backdate(&db, &old_metric, "49 hours").await;
    backdate(&db, &young_metric, "47 hours").await;
    // Publishing goes on while retention works.
    notices(&app, &room, 11..=30).await;
    let kept = |room: RoomName| {
        let db = db.clone();
        async move {
            sqlx::query_scalar::<_, i64>("SELECT seq FROM events WHERE room = $1 ORDER BY seq")
                .bind(room.as_str())
                .fetch_all(&db)
                .await
                .unwrap()
        }
    };
    let mut waited = Duration::ZERO;
    while kept(room.clone()).await.first() != Some(&5) || kept(metrics.clone()).await.len() != 1 {
        assert!(waited < Duration::from_secs(20), "retention never ran");
        tokio::time::sleep(Duration::from_millis(50)).await;
        waited += Duration::from_millis(50);
    }
    assert_eq!(kept(room.clone()).await, (5..=30).collect::<Vec<_>>());
    assert_eq!(kept(metrics.clone()).await, vec![young_metric.seq]);
    // The room's head stays: the next event goes on from 30.
    let next = publish(&app, room.as_str(), "notice", json!({"text": "n31"})).await;
    assert_eq!(next.seq, 31);
    app.stop().await.unwrap();
}

#[tokio::test]
async fn resuming_from_before_what_is_kept_is_told_history_truncated_then_gets_what_is_kept() {
    let app = start().await;
    let db = database().await;
    // A source's room keeps its notices longer than its metric events: retention leaves holes.
    let room = unique_room("truncated");
    let mut stored = Vec::new();
    for (kind, data) in [
        ("notice", json!({"text": "n1"})),
        ("metric", json!({"series": "x", "value": 1})),
        ("metric", json!({"series": "x", "value": 2})),
        ("notice", json!({"text": "n4"})),
        ("metric", json!({"series": "x", "value": 5})),
    ] {
        stored.push(publish(&app, room.as_str(), kind, data).await);
    }
    for event in &stored[1..3] {
        backdate(&db, event, "3 days").await;
    }
    let before = chrono::Utc::now() - chrono::TimeDelta::days(2);
    let mut removed = 0;
    while app
        .store
        .purge(EventKind::Metric, before, 1000)
        .await
        .unwrap()
        > 0
    {
        removed += 1;
    }
    assert!(removed > 0, "retention removed the old metric events");

    let mut client = Client::connect(&app).await;
    for (since, kept) in [(1, vec![4, 5]), (0, vec![1, 4, 5])] {
        let (frames, head) = client.subscribe(&room, Some(since)).await;
        assert_eq!(head, 5);
        match &frames[0] {
            ServerFrame::Error {
                code: ErrorCode::HistoryTruncated,
                since: Some(3),
                room: Some(r),
                message,
                ..
            } => {
                assert_eq!(r, &room);
                assert!(
                    message.contains(&format!("events {} to 3", since + 1)),
                    "{message}"
                );
            }
            other => panic!("expected history_truncated first, got {other:?}"),
        }
        assert_eq!(
            event_seqs(&frames[1..]),
            kept,
            "what is kept follows, from {since}"
        );
    }

    // From beyond what was removed, nothing is said.
    let mut again = Client::connect(&app).await;
    let (seqs, _) = again.resume(&room, 3).await;
    assert_eq!(seqs, vec![4, 5]);
    app.stop().await.unwrap();
}

#[tokio::test]
async fn the_history_page_renders_the_filtered_events_and_an_event_whole() {
    let app = start().await;
    let room = unique_room("page");
    publish(
        &app,
        room.as_str(),
        "notice",
        json!({"text": "cache flushed", "level": "warning"}),
    )
    .await;
    let deploy = publish(
        &app,
        room.as_str(),
        "notice",
        json!({"text": "v3 out", "title": "Deploy", "tags": ["ci"]}),
    )
    .await;
    let html = |path: String| {
        let app = &app;
        async move {
            let response = app.get(format!("http://{}{path}", app.addr)).await;
            (response.status().as_u16(), response.text().await.unwrap())
        }
    };
    let (status, page) = html(format!("/history?room={room}&q=deploy&tz=%2B02:00")).await;
    assert_eq!(status, 200);
    assert!(
        page.contains("Deploy: v3 out [ci]"),
        "the matching notice is listed"
    );
    assert!(!page.contains("cache flushed"), "the other is filtered out");
    assert!(
        page.contains("Time (+02:00)"),
        "times are shown in the page's zone"
    );
    assert!(
        page.contains(&format!("value=\"{room}\"")),
        "the form holds the filter"
    );

    let (_, refused) = html("/history?limit=9000".into()).await;
    assert!(
        refused.contains("parameter limit"),
        "a bad address says which parameter"
    );

    let (status, detail) = html(format!("/history/{room}/{}", deploy.seq)).await;
    assert_eq!(status, 200);
    assert!(
        detail.contains("&quot;title&quot;: &quot;Deploy&quot;")
            || detail.contains("\"title\": \"Deploy\"")
    );
    assert!(detail.contains("cache flushed"), "its neighbour is shown");

    let stranger = app
        .token_for(Role::Viewer, &["elsewhere"], &["admin"])
        .await;
    let hidden = http_with(&stranger)
        .get(format!("http://{}/history/{room}/{}", app.addr, deploy.seq))
        .send()
        .await
        .unwrap();
    assert!(hidden.text().await.unwrap().contains("no such event"));
    app.stop().await.unwrap();
}

/// Calls a page's server function as the page does, and reads its JSON answer.
async fn server_fn<T: serde::de::DeserializeOwned>(
    app: &TestApp,
    path: &str,
    args: Value,
) -> (u16, T) {
    let response = app
        .http()
        .post(format!("http://{}{path}", app.addr))
        .header("accept", "application/json")
        .json(&args)
        .send()
        .await
        .unwrap();
    (response.status().as_u16(), response.json().await.unwrap())
}

#[tokio::test]
async fn a_replay_at_a_moment_shows_what_the_live_dashboard_showed_then_with_its_markers() {
    use app::{
        alerts::{AlertEvent, Key, News, Severity, State, Transition},
        dashboards::{Dashboard, Panel, PanelKind, Unit},
        pages::{BoardPage, LoadBoard, ReadReplay, ReplayChunk},
    };
    use leptos::server_fn::ServerFn;

    let app = start().await;
    let source = unique_room("replay").as_str().replace('.', "-");
    // Unique in a database kept between runs, as the source is (`t-replay-<nanos>-<n>`).
    let name = source.trim_start_matches("t-").to_owned();
    app.store.create_dashboard(&name).await.unwrap();
    let updated = app
        .store
        .update_dashboard(&Dashboard {
            name: name.clone(),
            version: 1,
            variables: vec![],
            panels: vec![Panel {
                title: "CPU".into(),
                kind: PanelKind::Line,
                source: source.clone(),
                series: vec!["cpu".into()],
                unit: Unit::Percent,
                thresholds: None,
                width: None,
            }],
        })
        .await;
    assert!(updated.unwrap(), "the new dashboard is at version 1");
    let now = chrono::Utc::now();
    let samples: Vec<Value> = (1..=120)
        .map(|i| {
            json!({"source": source, "series": "cpu", "value": (i % 17) as f64,
                        "ts": now - chrono::TimeDelta::seconds(600 - 5 * i)})
        })
        .collect();
    let posted = app
        .http()
        .post(format!("http://{}/api/metrics", app.addr))
        .json(&samples)
        .send()
        .await
        .unwrap();
    assert_eq!(posted.status(), 200);
    let notice = app
        .http()
        .post(format!("http://{}/api/notices", app.addr))
        .json(&json!({"text": "replay test deploy", "room": format!("metrics:{source}")}))
        .send()
        .await
        .unwrap();
    assert_eq!(notice.status(), 201);
    let alert = AlertEvent {
        text: "CpuHigh firing".into(),
        news: News::Transition(Transition {
            key: Key {
                rule: 0,
                source: source.clone(),
                labels: Default::default(),
            },
            name: "CpuHigh".into(),
            state: State::Firing,
            previous: State::Pending,
            value: Some(16.0),
            threshold: 15.0,
            severity: Severity::Critical,
            summary: "cpu high".into(),
            since: now,
            began: None,
            rule_labels: Default::default(),
            silenced: false,
        }),
    };
    let alert = publish(
        &app,
        "alerts",
        "alert",
        serde_json::to_value(&alert).unwrap(),
    )
    .await;
    // The alert's page links to the dashboards showing its source, at that moment.
    let (status, view): (u16, app::pages::EventView) = server_fn(
        &app,
        app::pages::LoadEvent::PATH,
        json!({"room": "alerts", "seq": alert.seq}),
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(view.dashboards, vec![name.clone()]);

    let board = |at: Option<String>| {
        let args = json!({"name": name, "range": "15m", "at": at});
        let app = &app;
        async move {
            let (status, page): (u16, BoardPage) = server_fn(app, LoadBoard::PATH, args).await;
            assert_eq!(status, 200);
            page.board.expect("the dashboard is there")
        }
    };
    let live = board(None).await;
    let at = chrono::DateTime::from_timestamp_millis(live.now_ms).unwrap();
    let points = &live.panels[0][0].points;
    assert!(
        points.len() > 50,
        "the live dashboard shows the samples: {}",
        points.len()
    );
    // Room `notices` marks every dashboard; other tests post there too.
    let texts: Vec<&str> = live
        .markers
        .iter()
        .filter(|m| m.room.as_str() != app::history::NOTICES_ROOM)
        .map(|m| m.text.as_str())
        .collect();
    assert_eq!(
        texts,
        ["replay test deploy", "CpuHigh firing"],
        "a notice and the source's alert mark it"
    );
    assert!(!live.heads.is_empty() && live.at_ms.is_none());

    // Later samples change nothing about that moment.
    let later = json!([{"source": source, "series": "cpu", "value": 99.0}]);
    app.http()
        .post(format!("http://{}/api/metrics", app.addr))
        .json(&later)
        .send()
        .await
        .unwrap();
    let replay = board(Some(
        at.to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
    ))
    .await;
    assert_eq!(
        replay.panels, live.panels,
        "the replay shows what the live page showed then"
    );
    assert_eq!(replay.markers, live.markers);
    assert_eq!(replay.at_ms, Some(live.now_ms));
    assert!(replay.heads.is_empty(), "a replay follows nothing live");

    // Played forward: the chunks after the moment hold the later sample.
    let chunk = |from: i64, to: i64| {
        let args = json!({"name": name, "range": "15m", "from_ms": from, "to_ms": to,
            "markers_only": false});
        let app = &app;
        async move { server_fn::<Value>(app, ReadReplay::PATH, args).await }
    };
    let (status, ahead) = chunk(live.now_ms, chrono::Utc::now().timestamp_millis() + 1000).await;
    assert_eq!(status, 200);
    let ahead: ReplayChunk = serde_json::from_value(ahead).unwrap();
    assert_eq!(ahead.panels[0][0].last().map(|p| p.1), Some(99.0));
    let (status, _) = chunk(live.now_ms, live.now_ms).await;
    assert_eq!(status, 400, "an empty span is refused");
    let (status, _) = chunk(0, 3 * 86_400_000).await;
    assert_eq!(status, 400, "more than a day of buckets at once is refused");
    let (status, refused): (u16, Value) = server_fn(
        &app,
        LoadBoard::PATH,
        json!({"name": name, "range": "15m", "at": "last tuesday"}),
    )
    .await;
    assert_eq!(status, 400);
    assert!(refused.to_string().contains("at:"), "{refused}");
    app.stop().await.unwrap();
}
