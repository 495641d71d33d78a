//! The live path end to end: HTTP publish → Postgres → hub → WebSocket subscribers.

use crate::helpers::{Client, post_notice, start, stored, unique_room};
use app::protocol::{ErrorCode, ServerFrame};
use reqwest::StatusCode;
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;

#[tokio::test]
async fn published_events_get_consecutive_seqs_per_room() {
    let server = start().await;
    let (a, b) = (unique_room("seq-a"), unique_room("seq-b"));
    let mut seqs = Vec::new();
    for (room, text) in [(&a, "a1"), (&b, "b1"), (&a, "a2"), (&a, "a3"), (&b, "b2")] {
        let event = post_notice(&server, room, text).await;
        seqs.push((
            event["room"].as_str().unwrap().to_owned(),
            event["seq"].as_i64().unwrap(),
        ));
    }
    let expect = |room: &app::protocol::RoomName, seq| (room.to_string(), seq);
    assert_eq!(
        seqs,
        vec![
            expect(&a, 1),
            expect(&b, 1),
            expect(&a, 2),
            expect(&a, 3),
            expect(&b, 2)
        ]
    );

    let texts: Vec<Value> = stored(&server, &a)
        .await
        .iter()
        .map(|e| e["data"]["text"].clone())
        .collect();
    assert_eq!(texts, vec![json!("a1"), json!("a2"), json!("a3")]);
    server.stop().await.unwrap();
}

#[tokio::test]
async fn concurrent_publishes_get_gapless_seqs_and_reach_subscribers_in_order() {
    let server = start().await;
    let room = unique_room("concurrent");
    let mut watcher = Client::connect(&server).await;
    watcher.subscribe(&room, None).await;

    let posts =
        (0..40).map(|i| post_notice(&server, &room, if i % 2 == 0 { "even" } else { "odd" }));
    let mut seqs: Vec<i64> = futures::future::join_all(posts)
        .await
        .iter()
        .map(|e| e["seq"].as_i64().unwrap())
        .collect();
    seqs.sort();
    assert_eq!(seqs, (1..=40).collect::<Vec<_>>());
    for expected in 1..=40 {
        assert_eq!(watcher.next_event_seq(&room).await, expected);
    }
    server.stop().await.unwrap();
}

#[tokio::test]
async fn subscriber_receives_its_rooms_events_and_no_others() {
    let server = start().await;
    let (watched, other) = (unique_room("watched"), unique_room("other"));
    let mut watcher = Client::connect(&server).await;
    let mut bystander = Client::connect(&server).await;
    assert_eq!(watcher.subscribe(&watched, None).await, (vec![], 0));
    assert_eq!(bystander.subscribe(&other, None).await, (vec![], 0));

    post_notice(&server, &watched, "disk almost full").await;
    match watcher.next().await {
        ServerFrame::Event(event) => {
            assert_eq!((event.room, event.seq), (watched.clone(), 1));
            assert_eq!(event.data, json!({"text": "disk almost full"}));
        }
        other => panic!("expected the event, got {other:?}"),
    }
    // Had the bystander been sent the first event, it would arrive before this one.
    post_notice(&server, &other, "unrelated").await;
    assert_eq!(bystander.next_event_seq(&other).await, 1);
    server.stop().await.unwrap();
}

#[tokio::test]
async fn subscribe_with_since_replays_the_missing_events_then_continues_live() {
    let server = start().await;
    let room = unique_room("since");
    for text in ["1", "2", "3", "4", "5"] {
        post_notice(&server, &room, text).await;
    }
    let mut client = Client::connect(&server).await;
    let (replayed, head) = client.resume(&room, 2).await;
    assert_eq!((replayed, head), (vec![3, 4, 5], 5));
    post_notice(&server, &room, "6").await;
    assert_eq!(client.next_event_seq(&room).await, 6);
    server.stop().await.unwrap();
}

#[tokio::test]
async fn malformed_json_is_refused_with_a_clear_message_and_stores_nothing() {
    let server = start().await;
    let room = unique_room("malformed");
    let response = server
        .http()
        .post(crate::helpers::events_url(&server, room.as_str()))
        .header("content-type", "application/json")
        .body(r#"{"kind": "notice", "data": "#)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["error"], "bad_frame");
    assert!(body["message"].as_str().unwrap().contains("JSON"), "{body}");
    assert!(stored(&server, &room).await.is_empty());
    server.stop().await.unwrap();
}

#[tokio::test]
async fn invalid_room_names_are_refused_and_store_nothing() {
    let server = start().await;
    let client = server.http();
    for bad in ["has%20space", "-dash-first", &"x".repeat(65)] {
        let response = client
            .post(crate::helpers::events_url(&server, bad))
            .json(&json!({"kind": "notice", "data": {"text": "x"}}))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::BAD_REQUEST, "{bad}");
        let body: Value = response.json().await.unwrap();
        assert_eq!(body["error"], "invalid_room", "{bad}");
        assert!(
            body["message"]
                .as_str()
                .unwrap()
                .contains("invalid room name"),
            "{body}"
        );
    }
    server.stop().await.unwrap();
}

#[tokio::test]
async fn events_that_break_their_kinds_rules_are_refused_and_store_nothing() {
    let server = start().await;
    let room = unique_room("invalid-event");
    let client = server.http();
    for body in [
        json!({"kind": "notice", "data": {}}),
        json!({"kind": "metric", "data": {"series": "cpu", "value": "high"}}),
        json!({"kind": "presence", "data": {"watchers": 3}}),
        json!({"kind": "shout", "data": {"text": "x"}}),
    ] {
        let response = client
            .post(crate::helpers::events_url(&server, room.as_str()))
            .json(&body)
            .send()
            .await
            .unwrap();
        assert!(
            response.status().is_client_error(),
            "{body} gave {}",
            response.status()
        );
    }
    assert!(stored(&server, &room).await.is_empty());
    server.stop().await.unwrap();
}

#[tokio::test]
async fn unreadable_frames_get_an_error_and_the_connection_stays_open() {
    let server = start().await;
    let mut client = Client::connect(&server).await;
    for bad in [
        "not json",
        r#"{"type":"dance"}"#,
        r#"{"type":"subscribe","room":"no spaces"}"#,
    ] {
        client.send_text(bad).await;
        match client.next().await {
            ServerFrame::Error {
                code: ErrorCode::BadFrame,
                message,
                ..
            } => assert!(!message.is_empty()),
            other => panic!("expected bad_frame for {bad}, got {other:?}"),
        }
    }
    client.assert_answers_ping().await;
    server.stop().await.unwrap();
}

#[tokio::test]
async fn silent_client_is_dropped_after_two_heartbeats_and_its_room_freed() {
    let server = crate::helpers::start_with(|config| {
        config.heartbeat = std::time::Duration::from_millis(200)
    })
    .await;
    let room = unique_room("silent");
    let mut client = Client::connect(&server).await;
    client.subscribe(&room, None).await;
    assert_eq!(server.hub.room_count(), 1);
    // The client reads pings but never answers.
    assert_eq!(client.close_code().await, CloseCode::Policy);
    assert_eq!(server.hub.room_count(), 0);
    server.stop().await.unwrap();
}

#[tokio::test]
async fn shutdown_closes_sockets_with_1012_so_clients_reconnect_elsewhere() {
    let server = start().await;
    let mut client = Client::connect(&server).await;
    client.subscribe(&unique_room("drain"), None).await;
    let stopping = tokio::spawn(server.stop());
    assert_eq!(client.close_code().await, CloseCode::Restart);
    drop(client);
    stopping.await.unwrap().unwrap();
}

#[tokio::test]
async fn history_requests_with_bad_parameters_get_a_json_error() {
    let server = start().await;
    let room = unique_room("history");
    post_notice(&server, &room, "kept").await;
    for (url, code) in [
        (
            format!(
                "{}?since=soon",
                crate::helpers::events_url(&server, room.as_str())
            ),
            "bad_frame",
        ),
        (
            crate::helpers::events_url(&server, "no%20spaces"),
            "invalid_room",
        ),
    ] {
        let response = server.get(&url).await;
        assert_eq!(response.status(), StatusCode::BAD_REQUEST, "{url}");
        let body: Value = response.json().await.unwrap();
        assert_eq!(body["error"], code, "{url}");
        assert!(!body["message"].as_str().unwrap().is_empty());
    }
    let page = format!(
        "{}?since=0&limit=5000",
        crate::helpers::events_url(&server, room.as_str())
    );
    let events: Vec<Value> = server.get(page).await.json().await.unwrap();
    assert_eq!(
        events.len(),
        1,
        "an over-large limit is capped, not refused"
    );
    server.stop().await.unwrap();
}

#[tokio::test]
async fn an_event_body_larger_than_an_event_may_be_is_refused_with_413() {
    let server = start().await;
    let room = unique_room("body-limit");
    let padding = " ".repeat(app::protocol::MAX_EVENT_BODY_BYTES);
    let body = format!(r#"{{"kind": "notice", "data": {{"text": "padded"}}}}{padding}"#);
    let response = server
        .http()
        .post(crate::helpers::events_url(&server, room.as_str()))
        .header("content-type", "application/json")
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::PAYLOAD_TOO_LARGE);
    assert!(stored(&server, &room).await.is_empty());
    // Within the limit, whitespace and all, it is taken.
    let spaced = format!(
        r#"{{"kind": "notice", "data": {{"text": "fits"}}}}{}"#,
        " ".repeat(1000)
    );
    let response = server
        .http()
        .post(crate::helpers::events_url(&server, room.as_str()))
        .header("content-type", "application/json")
        .body(spaced)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::CREATED);
    server.stop().await.unwrap();
}
