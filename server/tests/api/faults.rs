//! Faults from outside the server: a database session holding a room's lock, a server killed
//! mid-ingest. Each is survived without losing what was acknowledged.

use std::time::Duration;

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::helpers::{database, events_url, post_notice, start_with, stored, unique_room};

#[tokio::test]
async fn a_room_locked_by_another_session_refuses_its_publishes_while_other_rooms_flow() {
    let app = start_with(|config| config.lock_timeout = Duration::from_millis(300)).await;
    let (held, free) = (unique_room("held"), unique_room("free"));
    post_notice(&app, &held, "before the lock").await;
    post_notice(&app, &free, "before the lock").await;

    // An operator's forgotten transaction.
    let mut session = database().await.begin().await.unwrap();
    sqlx::query("SELECT 1 FROM rooms WHERE name = $1 FOR UPDATE")
        .bind(held.as_str())
        .execute(&mut *session)
        .await
        .unwrap();

    let publish = |room: &app::protocol::RoomName, text: &str| {
        app.http()
            .post(events_url(&app, room.as_str()))
            .json(&json!({"kind": "notice", "data": {"text": text}}))
            .send()
    };
    // Together, so they are likely committed in one batch: the held room's request must not
    // take the free room's with it. Then each again, the held room now known to be held.
    for round in ["first", "again"] {
        let (to_held, to_free) = tokio::join!(publish(&held, round), publish(&free, round));
        let to_held = to_held.unwrap();
        assert_eq!(to_held.status(), StatusCode::SERVICE_UNAVAILABLE);
        let body: Value = to_held.json().await.unwrap();
        assert_eq!(body["error"], "unavailable");
        assert!(
            body["message"].as_str().unwrap().contains(held.as_str()),
            "the refusal names the locked room: {body}"
        );
        assert_eq!(to_free.unwrap().status(), StatusCode::CREATED, "{round}");
    }

    session.rollback().await.unwrap();
    // The refused publishes took no seqs: the held room goes on from where it stood.
    assert_eq!(post_notice(&app, &held, "after the lock").await["seq"], 2);
    let texts = |events: Vec<Value>| -> Vec<String> {
        events
            .iter()
            .map(|e| e["data"]["text"].as_str().unwrap().to_owned())
            .collect()
    };
    assert_eq!(
        texts(stored(&app, &free).await),
        ["before the lock", "first", "again"]
    );
    assert_eq!(
        texts(stored(&app, &held).await),
        ["before the lock", "after the lock"]
    );
    app.stop().await.unwrap();
}
