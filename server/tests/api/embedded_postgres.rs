//! The server's own Postgres: what it stored outlives a restart of either, and a database that
//! goes away fails requests clearly without losing or skipping anything.

use std::os::unix::fs::PermissionsExt;

use crate::helpers::{Client, TestApp, post_notice, scratch_dir, stored, unique_room};
use reqwest::StatusCode;
use serde_json::{Value, json};
use server::embedded_postgres::EmbeddedPostgres;

#[tokio::test]
async fn events_survive_a_restart_on_the_private_cluster() {
    let data_dir = scratch_dir();
    let mut config = crate::helpers::config();
    config.database_url = None;
    config.data_dir = data_dir.clone();
    let room = unique_room("durable");

    let first = server::start(&config)
        .await
        .expect("starts its own postgres");
    // No other local account reaches the cluster: its socket's directory is its owner's alone.
    let sockets = std::fs::metadata(data_dir.join("run")).unwrap();
    assert_eq!(sockets.permissions().mode() & 0o777, 0o700);
    let first = TestApp::new(first).await;
    assert_eq!(post_notice(&first, &room, "before restart").await["seq"], 1);
    first.stop().await.unwrap();

    let second = server::start(&config)
        .await
        .expect("restarts on the same cluster");
    let second = TestApp::new(second).await;
    let events = stored(&second, &room).await;
    assert_eq!(events.len(), 1);
    assert_eq!(events[0]["data"]["text"], "before restart");
    assert_eq!(post_notice(&second, &room, "after restart").await["seq"], 2);
    second.stop().await.unwrap();

    std::fs::remove_dir_all(&data_dir).unwrap();
}

/// `/readyz` as a probe sees it, without credentials: its status and its checks.
async fn readiness(app: &TestApp) -> (StatusCode, Value) {
    let response = reqwest::get(format!("http://{}/readyz", app.addr))
        .await
        .unwrap();
    (response.status(), response.json().await.unwrap())
}

#[tokio::test]
async fn while_the_database_is_down_publishes_fail_with_503_and_resume_without_gaps() {
    let data_dir = scratch_dir();
    let pg = EmbeddedPostgres::start(&data_dir).await.unwrap();
    let url = pg.url();
    let server = crate::helpers::start_with(|config| config.database_url = Some(url)).await;
    let room = unique_room("db-restart");
    let mut watcher = Client::connect(&server).await;
    watcher.subscribe(&room, None).await;
    post_notice(&server, &room, "before").await;
    assert_eq!(watcher.next_event_seq(&room).await, 1);
    let ready =
        json!({"status": "ok", "checks": {"database": "ok", "schema": "ok", "writer": "ok"}});
    assert_eq!(readiness(&server).await, (StatusCode::OK, ready.clone()));

    pg.stop().await.unwrap();
    let (status, report) = readiness(&server).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{report}");
    assert_eq!(report["status"], "unready");
    assert_eq!(report["checks"]["database"], "unreachable");
    assert_eq!(
        report["checks"]["writer"], "ok",
        "nothing waits to be written"
    );
    let response = server
        .http()
        .post(crate::helpers::events_url(&server, room.as_str()))
        .json(&json!({"kind": "alert", "data": {"text": "lost?"}}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(
        response.json::<Value>().await.unwrap()["error"],
        "unavailable"
    );
    watcher.assert_answers_ping().await;

    let pg = EmbeddedPostgres::start(&data_dir).await.unwrap();
    assert_eq!(
        readiness(&server).await,
        (StatusCode::OK, ready),
        "ready again by itself"
    );
    // The refused event took no seq: the next one follows straight on.
    assert_eq!(post_notice(&server, &room, "after").await["seq"], 2);
    assert_eq!(watcher.next_event_seq(&room).await, 2);
    server.stop().await.unwrap();
    pg.stop().await.unwrap();
    std::fs::remove_dir_all(&data_dir).unwrap();
}

#[tokio::test]
async fn readiness_names_a_database_behind_the_schema_this_server_needs() {
    let database = crate::helpers::EmptyDatabase::create("schema").await;
    let server =
        crate::helpers::start_with(|config| config.database_url = Some(database.url.clone())).await;
    let pool = sqlx::PgPool::connect(&database.url).await.unwrap();
    // As if another node of an older build had the database: its newest migration not applied.
    let newest: i64 = sqlx::query_scalar(
        "UPDATE _sqlx_migrations SET success = false
         WHERE version = (SELECT max(version) FROM _sqlx_migrations) RETURNING version",
    )
    .fetch_one(&pool)
    .await
    .unwrap();
    let (status, report) = readiness(&server).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{report}");
    assert_eq!(report["checks"]["database"], "ok");
    let schema = report["checks"]["schema"].as_str().unwrap();
    assert!(
        schema.starts_with("at migration ") && schema.ends_with(&format!("needs {newest}")),
        "{schema}"
    );
    pool.close().await;
    server.stop().await.unwrap();
    database.drop().await;
}

#[tokio::test]
async fn a_database_restart_under_steady_publishing_loses_nothing_acknowledged() {
    use std::sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    };
    let data_dir = scratch_dir();
    let pg = EmbeddedPostgres::start(&data_dir).await.unwrap();
    let url = pg.url();
    let server = crate::helpers::start_with(|config| {
        config.database_url = Some(url);
        (config.publish_rate, config.publish_burst) = (1e6, 1e6);
    })
    .await;
    let room = unique_room("flowing");
    let mut watcher = Client::connect(&server).await;
    watcher.subscribe(&room, None).await;

    // A publisher that keeps going through the outage, noting each answer.
    let publishing = Arc::new(AtomicBool::new(true));
    let publisher = {
        let (http, url) = (
            server.http().clone(),
            crate::helpers::events_url(&server, room.as_str()),
        );
        let publishing = publishing.clone();
        tokio::spawn(async move {
            let mut answers = Vec::new();
            let mut i = 0;
            while publishing.load(Ordering::Relaxed) {
                i += 1;
                let text = format!("n{i}");
                let response = http
                    .post(&url)
                    .json(&json!({"kind": "notice", "data": {"text": text}}))
                    .send()
                    .await
                    .unwrap();
                let status = response.status();
                let body: Value = response.json().await.unwrap();
                answers.push((text, status, body));
                tokio::time::sleep(std::time::Duration::from_millis(5)).await;
            }
            answers
        })
    };
    // A moment of steady publishing on either side of the outage.
    let steady = || tokio::time::sleep(std::time::Duration::from_millis(300));
    steady().await;
    pg.stop().await.unwrap();
    let (status, _) = readiness(&server).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    tokio::time::sleep(std::time::Duration::from_secs(1)).await;
    let pg = EmbeddedPostgres::start(&data_dir).await.unwrap();
    // Back by itself; bounded only so a server that never recovers fails here.
    let mut waited = 0;
    while readiness(&server).await.0 != StatusCode::OK {
        assert!(waited < 300, "not ready again after the database came back");
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        waited += 1;
    }
    steady().await;
    publishing.store(false, Ordering::Relaxed);
    let answers = publisher.await.unwrap();

    let acknowledged: Vec<(i64, &str)> = answers
        .iter()
        .filter(|(_, status, _)| *status == StatusCode::CREATED)
        .map(|(text, _, body)| (body["seq"].as_i64().unwrap(), text.as_str()))
        .collect();
    let refused: Vec<&Value> = answers
        .iter()
        .filter(|(_, status, _)| *status != StatusCode::CREATED)
        .map(|(_, status, body)| {
            assert_eq!(*status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
            body
        })
        .collect();
    assert!(!refused.is_empty(), "some publishes fell in the outage");
    assert!(refused.iter().all(|body| body["error"] == "unavailable"));
    assert!(
        acknowledged.len() > 2,
        "publishes went through on both sides of the outage"
    );

    let log = stored(&server, &room).await;
    let logged: Vec<(i64, &str)> = log
        .iter()
        .map(|e| {
            (
                e["seq"].as_i64().unwrap(),
                e["data"]["text"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        logged, acknowledged,
        "every acknowledged event is stored at its seq, and the seqs have no gap"
    );
    let head = acknowledged.last().unwrap().0;
    assert_eq!(
        seqs(&watcher.events_until(&room, head).await),
        (1..=head).collect::<Vec<_>>(),
        "the watcher saw every stored event once, in order"
    );
    server.stop().await.unwrap();
    pg.stop().await.unwrap();
    std::fs::remove_dir_all(&data_dir).unwrap();
}

fn seqs(events: &[app::protocol::Event]) -> Vec<i64> {
    events.iter().map(|e| e.seq).collect()
}

#[tokio::test]
async fn a_backup_restored_into_a_new_private_cluster_has_every_event() {
    use server::config::Command;
    let (old_dir, new_dir) = (scratch_dir(), scratch_dir());
    let backup = std::env::temp_dir().join(format!("{}.dump", unique_room("backup").as_str()));
    let mut config = crate::helpers::config();
    config.database_url = None;
    config.data_dir = old_dir.clone();
    let room = unique_room("kept");

    let old = TestApp::new(server::start(&config).await.unwrap()).await;
    for text in ["one", "two"] {
        post_notice(&old, &room, text).await;
    }
    // As an operator would, beside the running server.
    let cli = |config: server::Config, command: Command| async move {
        let (mut input, mut output) = (&b""[..], Vec::new());
        server::cli::run(&config, &command, &mut input, &mut output).await
    };
    let file = backup.clone();
    cli(config.clone(), Command::Backup { file }).await.unwrap();
    old.stop().await.unwrap();

    config.data_dir = new_dir.clone();
    let file = backup.clone();
    cli(config.clone(), Command::Restore { file })
        .await
        .unwrap();
    let new = TestApp::new(server::start(&config).await.unwrap()).await;
    let texts: Vec<Value> = stored(&new, &room)
        .await
        .iter()
        .map(|e| e["data"]["text"].clone())
        .collect();
    assert_eq!(texts, [json!("one"), json!("two")]);
    assert_eq!(post_notice(&new, &room, "three").await["seq"], 3);
    new.stop().await.unwrap();

    let missing = std::env::temp_dir().join("no-such-backup.dump");
    let refused = cli(config.clone(), Command::Restore { file: missing }).await;
    assert!(
        refused.is_err_and(|e| e.to_string().contains("pg_restore failed")),
        "a restore that cannot read its file says so"
    );
    // The private cluster of `new_dir` was stopped by the server; its data stays until now.
    for dir in [old_dir, new_dir] {
        std::fs::remove_dir_all(dir).unwrap();
    }
    std::fs::remove_file(backup).unwrap();
}
