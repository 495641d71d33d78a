//! `GET /metrics`: what the server counts, as Prometheus reads it, for admins and scrape tokens.

use app::auth::Role;
use reqwest::StatusCode;
use serde_json::json;

use crate::helpers::{Client, TestApp, events_url, post_notice, scraped, start, unique_room};

/// A scrape with `token`: its status and text.
async fn scrape(app: &TestApp, token: &str) -> (StatusCode, String) {
    let response = reqwest::Client::new()
        .get(format!("http://{}/metrics", app.addr))
        .bearer_auth(token)
        .send()
        .await
        .unwrap();
    let status = response.status();
    if status == StatusCode::OK {
        assert!(
            response.headers()["content-type"]
                .to_str()
                .unwrap()
                .starts_with("application/openmetrics-text"),
        );
    }
    (status, response.text().await.unwrap())
}

/// The value of the sample `name` in a scrape; 0 when absent (a counter not yet touched).
fn value(text: &str, name: &str) -> f64 {
    scraped(text, name).unwrap_or(0.0)
}

#[tokio::test]
async fn metrics_count_commits_deliveries_and_refusals_for_admins_and_scrape_tokens() {
    let app = start().await;
    let room = unique_room("counted");
    let mut reader = Client::connect(&app).await;
    reader.subscribe(&room, None).await;
    let (_, before) = scrape(&app, app.token()).await;

    for text in ["one", "two", "three"] {
        post_notice(&app, &room, text).await;
    }
    assert_eq!(reader.events_until(&room, 3).await.len(), 3);
    let refused = app
        .http()
        .post(events_url(&app, room.as_str()))
        .json(&json!({"kind": "notice", "data": {"text": ""}}))
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), StatusCode::UNPROCESSABLE_ENTITY);

    // An admin's token narrowed to `metrics`: it scrapes, and can do nothing else.
    let scraper = app.token_for(Role::Admin, &["*"], &["metrics"]).await;
    let (status, after) = scrape(&app, &scraper).await;
    assert_eq!(status, StatusCode::OK, "{after}");
    let delta = |name: &str| value(&after, name) - value(&before, name);
    assert_eq!(
        delta(r#"watchroom_events_stored_total{kind="notice"}"#),
        3.0
    );
    assert_eq!(delta("watchroom_deliveries_total"), 3.0, "{after}");
    assert_eq!(
        delta(r#"watchroom_refusals_total{reason="invalid_event"}"#),
        1.0
    );
    let commits = delta("watchroom_writer_commit_seconds_count");
    assert!((1.0..=3.0).contains(&commits), "{commits} commits");
    // The reader's first delivery turn is timed, then one in sixteen: the three came in at most
    // three turns.
    let timed = delta("watchroom_publish_deliver_seconds_count");
    assert_eq!(timed, 1.0, "{after}");
    assert_eq!(value(&after, "watchroom_connections"), 1.0, "the reader");
    assert_eq!(value(&after, "watchroom_rooms"), 1.0, "the reader's room");
    assert!(after.ends_with("# EOF\n"), "{after}");

    let read_with_scraper = reqwest::Client::new()
        .get(events_url(&app, room.as_str()))
        .bearer_auth(&scraper)
        .send()
        .await
        .unwrap();
    assert_eq!(read_with_scraper.status(), StatusCode::FORBIDDEN);
    let editor = app.token_for(Role::Editor, &["*"], &["admin"]).await;
    assert_eq!(scrape(&app, &editor).await.0, StatusCode::FORBIDDEN);
    let anonymous = reqwest::get(format!("http://{}/metrics", app.addr))
        .await
        .unwrap();
    assert_eq!(anonymous.status(), StatusCode::UNAUTHORIZED);
    app.stop().await.unwrap();
}
