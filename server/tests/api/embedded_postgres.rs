//! The server's own Postgres: what it stored outlives a restart of either, and a database that
//! goes away fails requests clearly without losing or skipping anything.

use std::{os::unix::fs::PermissionsExt, path::PathBuf};

use crate::helpers::{Client, TestApp, post_notice, stored, unique_room};
use reqwest::StatusCode;
use serde_json::{Value, json};
use server::embedded_postgres::EmbeddedPostgres;

/// Under the system temp dir: as root the cluster runs as `postgres`, which must reach it. The
/// space and quote prove paths reach `pg_ctl` and the database URL escaped.
fn scratch_dir() -> PathBuf {
    std::env::temp_dir().join(format!("{} it's", unique_room("pg").as_str()))
}

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
