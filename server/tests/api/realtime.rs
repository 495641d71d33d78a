//! The realtime core under stress: resume, restarts, limits, presence and slow readers.

use crate::helpers::{Client, post_notice, start, stored, unique_room};
use app::protocol::{ClientFrame, ErrorCode, EventKind, RoomName, ServerFrame};
use futures::future::join_all;
use serde_json::json;
use tokio_tungstenite::tungstenite::{
    Message,
    protocol::{CloseFrame, frame::coding::CloseCode},
};

fn seqs(events: &[app::protocol::Event]) -> Vec<i64> {
    events.iter().map(|e| e.seq).collect()
}

async fn post_many(server: &crate::helpers::TestApp, room: &RoomName, n: usize) {
    for i in 0..n {
        post_notice(server, room, &format!("n{i}")).await;
    }
}

#[tokio::test]
async fn reconnecting_with_since_delivers_exactly_the_missed_events() {
    let server = start().await;
    let room = unique_room("resume");
    let mut client = Client::connect(&server).await;
    client.subscribe(&room, None).await;
    post_many(&server, &room, 50).await;
    assert_eq!(
        seqs(&client.events_until(&room, 50).await),
        (1..=50).collect::<Vec<_>>()
    );
    client.close().await;

    post_many(&server, &room, 50).await;
    let mut client = Client::connect(&server).await;
    let (replayed, head) = client.resume(&room, 50).await;
    assert_eq!((replayed, head), ((51..=100).collect(), 100));
    server.stop().await.unwrap();
}

#[tokio::test]
async fn replay_racing_concurrent_publishes_has_no_gap_and_no_duplicate() {
    // 900 publishes from one token as fast as they go.
    let server = crate::helpers::start_with(|config| {
        (config.publish_rate, config.publish_burst) = (1e6, 1e6)
    })
    .await;
    let room = unique_room("race");
    post_many(&server, &room, 600).await;
    let publishing = {
        let room = room.clone();
        let addr = server.addr;
        let client = server.http().clone();
        tokio::spawn(async move {
            for i in 0..300 {
                let url = format!("http://{addr}/api/rooms/{room}/events");
                let body = json!({"kind": "notice", "data": {"text": format!("live {i}")}});
                assert_eq!(
                    client.post(url).json(&body).send().await.unwrap().status(),
                    201
                );
            }
        })
    };
    // The replay spans two pages while new events commit.
    let mut client = Client::connect(&server).await;
    client
        .send(&ClientFrame::Subscribe {
            room: room.clone(),
            since: Some(0),
            epoch: None,
        })
        .await;
    let events = client.events_until(&room, 900).await;
    assert_eq!(seqs(&events), (1..=900).collect::<Vec<_>>());
    publishing.await.unwrap();
    server.stop().await.unwrap();
}

#[tokio::test]
async fn events_published_while_the_server_was_down_arrive_after_reconnecting() {
    let first = start().await;
    let room = unique_room("restart");
    let mut client = Client::connect(&first).await;
    client.subscribe(&room, None).await;
    post_many(&first, &room, 10).await;
    assert_eq!(client.events_until(&room, 10).await.len(), 10);
    let stopping = tokio::spawn(first.stop());
    assert_eq!(client.close_code().await, CloseCode::Restart);
    drop(client);
    stopping.await.unwrap().unwrap();

    // A new process on the same database takes publishes before the client is back.
    let second = start().await;
    post_many(&second, &room, 10).await;
    let mut client = Client::connect(&second).await;
    let (replayed, head) = client.resume(&room, 10).await;
    assert_eq!((replayed, head), ((11..=20).collect(), 20));
    post_notice(&second, &room, "live again").await;
    assert_eq!(client.next_event_seq(&room).await, 21);
    second.stop().await.unwrap();
}

#[tokio::test]
async fn socket_publishes_are_acknowledged_with_their_ref_after_commit() {
    let server = start().await;
    let room = unique_room("publish");
    let mut watcher = Client::connect(&server).await;
    watcher.subscribe(&room, None).await;
    let mut publisher = Client::connect(&server).await;
    for (i, text) in ["first", "second"].into_iter().enumerate() {
        publisher
            .send(&ClientFrame::Publish {
                room: room.clone(),
                kind: EventKind::Alert,
                data: json!({"text": text}),
                reference: Some(json!(i)),
            })
            .await;
    }
    for i in 0..2 {
        let expected = ServerFrame::Published {
            room: room.clone(),
            seq: i + 1,
            reference: Some(json!(i)),
        };
        assert_eq!(publisher.next().await, expected);
    }
    assert_eq!(stored(&server, &room).await.len(), 2);
    assert_eq!(seqs(&watcher.events_until(&room, 2).await), vec![1, 2]);

    publisher
        .send(&ClientFrame::Publish {
            room: room.clone(),
            kind: EventKind::Alert,
            data: json!({}),
            reference: Some(json!("bad")),
        })
        .await;
    match publisher.next().await {
        ServerFrame::Error {
            code: ErrorCode::InvalidEvent,
            reference,
            ..
        } => assert_eq!(reference, Some(json!("bad"))),
        other => panic!("expected invalid_event, got {other:?}"),
    }
    server.stop().await.unwrap();
}

#[tokio::test]
async fn oversized_frames_close_the_socket_with_1009_and_the_server_carries_on() {
    let server = start().await;
    let mut client = Client::connect(&server).await;
    client
        .send_text(&format!(
            r#"{{"type":"ping","pad":"{}"}}"#,
            "x".repeat(70 * 1024)
        ))
        .await;
    assert_eq!(client.close_code().await, CloseCode::Size);
    Client::connect(&server).await.assert_answers_ping().await;
    server.stop().await.unwrap();
}

#[tokio::test]
async fn the_socket_answers_the_clients_pings_and_its_close_in_kind() {
    let server = start().await;
    let mut client = Client::connect(&server).await;
    client
        .send_message(Message::Ping(b"are you there".to_vec().into()))
        .await;
    loop {
        match client.next_message().await {
            Message::Pong(payload) => break assert_eq!(&payload[..], b"are you there"),
            Message::Text(_) => continue,
            other => panic!("expected the pong, got {other:?}"),
        }
    }
    let bye = CloseFrame {
        code: CloseCode::Normal,
        reason: "done".into(),
    };
    client.send_message(Message::Close(Some(bye))).await;
    assert_eq!(client.close_code().await, CloseCode::Normal);
    server.stop().await.unwrap();
}

#[tokio::test]
async fn frames_outside_the_protocol_close_the_socket_saying_why_and_the_server_carries_on() {
    let server = start().await;
    let refusals: [(&[u8], CloseCode, &str); 3] = [
        (b"\x81\x02hi", CloseCode::Protocol, "must be masked"),
        // Masked with zeros, so the bytes are as sent.
        (b"\x81\x82\0\0\0\0\xff\xfe", CloseCode::Invalid, "UTF-8"),
        (b"\xc1\x82\0\0\0\0hi", CloseCode::Protocol, "reserved bits"),
    ];
    for (bytes, code, why) in refusals {
        let mut client = Client::connect(&server).await;
        client.send_raw(bytes).await;
        let closed = client.close_frame().await;
        assert_eq!(closed.code, code, "{why}");
        assert!(closed.reason.contains(why), "{why}: {}", closed.reason);
    }
    Client::connect(&server).await.assert_answers_ping().await;
    server.stop().await.unwrap();
}

#[tokio::test]
async fn watching_more_rooms_than_allowed_is_refused() {
    let server = crate::helpers::start_with(|config| config.max_rooms_per_connection = 2).await;
    let mut client = Client::connect(&server).await;
    client.subscribe(&unique_room("one"), None).await;
    client.subscribe(&unique_room("two"), None).await;
    let (code, _) = client.subscribe_refused(&unique_room("three")).await;
    assert_eq!(code, ErrorCode::TooManyRooms);
    assert_eq!(server.hub.room_count(), 2);
    server.stop().await.unwrap();
}

#[tokio::test]
async fn subscribing_over_and_over_is_rate_limited_per_connection() {
    // A burst of twice the 2 rooms a connection may watch, then one subscribe in 1,000 s.
    let server = crate::helpers::start_with(|config| {
        config.max_rooms_per_connection = 2;
        config.subscribe_rate = 0.001;
    })
    .await;
    let room = unique_room("churn");
    let mut client = Client::connect(&server).await;
    let (mut subscribed, mut limited) = (0, 0);
    for _ in 0..10 {
        client
            .send(&ClientFrame::Subscribe {
                room: room.clone(),
                since: None,
                epoch: None,
            })
            .await;
        match client.next().await {
            ServerFrame::Subscribed { .. } => subscribed += 1,
            ServerFrame::Error {
                code: ErrorCode::RateLimited,
                room: Some(r),
                ..
            } if r == room => limited += 1,
            other => panic!("expected subscribed or rate_limited, got {other:?}"),
        }
        client
            .send(&ClientFrame::Unsubscribe { room: room.clone() })
            .await;
        assert!(matches!(
            client.next().await,
            ServerFrame::Unsubscribed { .. }
        ));
    }
    assert_eq!((subscribed, limited), (4, 6), "the burst, then refusals");
    client.assert_answers_ping().await;
    // Another connection has an allowance of its own.
    let mut other = Client::connect(&server).await;
    other.subscribe(&room, None).await;
    server.stop().await.unwrap();
}

#[tokio::test]
async fn rooms_beyond_the_servers_limit_are_refused_while_open_ones_stay_open_to_all() {
    let server = crate::helpers::start_with(|config| config.max_rooms = 2).await;
    let (first, second) = (unique_room("open-1"), unique_room("open-2"));
    let mut one = Client::connect(&server).await;
    one.subscribe(&first, None).await;
    one.subscribe(&second, None).await;
    let mut other = Client::connect(&server).await;
    let (code, message) = other.subscribe_refused(&unique_room("open-3")).await;
    assert_eq!(code, ErrorCode::TooManyRooms);
    assert!(
        message.contains("as many rooms as it allows (2)"),
        "{message}"
    );
    other.subscribe(&first, None).await;
    assert_eq!(server.hub.room_count(), 2);
    server.stop().await.unwrap();
}

#[tokio::test]
async fn publishing_faster_than_the_allowance_is_rate_limited() {
    let server = crate::helpers::start_with(|config| {
        (config.publish_rate, config.publish_burst) = (0.5, 3.0)
    })
    .await;
    let room = unique_room("rate");
    let mut client = Client::connect(&server).await;
    for i in 0..5 {
        let data = json!({"series": "load", "value": i});
        client
            .send(&ClientFrame::Publish {
                room: room.clone(),
                kind: EventKind::Metric,
                data,
                reference: Some(json!(i)),
            })
            .await;
    }
    let (mut published, mut limited) = (0, 0);
    for _ in 0..5 {
        match client.next().await {
            ServerFrame::Published { .. } => published += 1,
            ServerFrame::Error {
                code: ErrorCode::RateLimited,
                ..
            } => limited += 1,
            other => panic!("unexpected {other:?}"),
        }
    }
    assert_eq!((published, limited), (3, 2));
    assert_eq!(stored(&server, &room).await.len(), 3);
    server.stop().await.unwrap();
}

#[tokio::test]
async fn one_tokens_sockets_and_requests_share_one_publish_allowance() {
    let server = crate::helpers::start_with(|config| {
        (config.publish_rate, config.publish_burst) = (0.5, 3.0)
    })
    .await;
    let room = unique_room("shared-rate");
    let mut first = Client::connect(&server).await;
    let mut second = Client::connect(&server).await;
    for (i, client) in [&mut first, &mut second].into_iter().enumerate() {
        let publish = ClientFrame::Publish {
            room: room.clone(),
            kind: EventKind::Notice,
            data: json!({"text": "from a socket"}),
            reference: Some(json!(i)),
        };
        client.send(&publish).await;
        assert!(matches!(client.next().await, ServerFrame::Published { .. }));
    }
    post_notice(&server, &room, "third and last of the burst").await;
    let over = server
        .http()
        .post(crate::helpers::events_url(&server, room.as_str()))
        .json(&json!({"kind": "notice", "data": {"text": "one too many"}}))
        .send()
        .await
        .unwrap();
    assert_eq!(
        over.status(),
        429,
        "another socket or a request buys no more"
    );
    assert_eq!(stored(&server, &room).await.len(), 3);
    server.stop().await.unwrap();
}

#[tokio::test]
async fn watchers_are_told_how_many_watch_their_room() {
    let server = start().await;
    let room = unique_room("presence");
    let mut first = Client::connect(&server).await;
    first.subscribe(&room, None).await;
    let mut second = Client::connect(&server).await;
    second.subscribe(&room, None).await;
    loop {
        if let ServerFrame::Presence { room: r, watchers } = first.next_frame().await {
            assert_eq!(r, room);
            if watchers == 2 {
                break;
            }
        }
    }
    second.close().await;
    loop {
        if let ServerFrame::Presence { watchers: 1, .. } = first.next_frame().await {
            break;
        }
    }
    server.stop().await.unwrap();
}

#[tokio::test]
async fn a_paused_reader_delays_nobody_and_ends_consistent_without_losing_alerts() {
    let server = crate::helpers::start_with(|config| {
        (config.publish_rate, config.publish_burst) = (1e6, 1e6);
        // Paused, not gone: however slowly this machine publishes, the reader is kept.
        config.write_timeout = std::time::Duration::from_secs(600);
    })
    .await;
    let room = unique_room("slow");
    let mut paused = Client::connect(&server).await;
    paused.subscribe(&room, None).await;
    let mut fast = Client::connect(&server).await;
    fast.subscribe(&room, None).await;

    // 3000 events of 8 KiB: far more than socket buffers and the room's buffer hold, so the
    // paused reader's connection falls behind and must catch up from the store.
    const N: i64 = 3000;
    let pad = "x".repeat(8 * 1024);
    let fast_reader = {
        let room = room.clone();
        tokio::spawn(async move { (fast.events_until(&room, N).await, fast) })
    };
    let mut publisher = Client::connect(&server).await;
    // Paced like a real publisher: a window of 100 unacknowledged publishes.
    for chunk in (1..=N).collect::<Vec<_>>().chunks(100) {
        for &i in chunk {
            let (kind, data) = if i % 10 == 0 {
                (
                    EventKind::Alert,
                    json!({"text": format!("alert {i}"), "pad": pad}),
                )
            } else {
                (
                    EventKind::Metric,
                    json!({"series": format!("s{}", i % 3), "value": i, "pad": pad}),
                )
            };
            publisher
                .send(&ClientFrame::Publish {
                    room: room.clone(),
                    kind,
                    data,
                    reference: None,
                })
                .await;
        }
        // One publisher's events are stored in the order it sent them.
        for &i in chunk {
            assert!(
                matches!(publisher.next().await, ServerFrame::Published { seq, .. } if seq == i)
            );
        }
    }
    let (fast_events, fast) = fast_reader.await.unwrap();
    assert_eq!(seqs(&fast_events), (1..=N).collect::<Vec<_>>());

    let slow_events = paused.events_until(&room, N).await;
    let slow_seqs = seqs(&slow_events);
    assert!(
        slow_seqs.windows(2).all(|w| w[0] < w[1]),
        "seqs strictly increase"
    );
    let alerts = |events: &[app::protocol::Event]| -> Vec<i64> {
        events
            .iter()
            .filter(|e| e.kind == EventKind::Alert)
            .map(|e| e.seq)
            .collect()
    };
    assert_eq!(
        alerts(&slow_events),
        (1..=N).filter(|i| i % 10 == 0).collect::<Vec<_>>()
    );
    for last_of_series in [N - 1, N - 2, N - 3] {
        assert!(
            slow_seqs.contains(&last_of_series),
            "newest sample of each series arrives"
        );
    }
    drop(join_all([paused.close(), fast.close(), publisher.close()]).await);
    server.stop().await.unwrap();
}

#[tokio::test]
async fn a_reader_that_never_reads_is_dropped_after_the_write_timeout() {
    // A database of its own: 24 MiB of events the shared one would keep from run to run.
    let database = crate::helpers::EmptyDatabase::create("stalled").await;
    let server = crate::helpers::start_with(|config| {
        (config.publish_rate, config.publish_burst) = (1e6, 1e6);
        config.write_timeout = std::time::Duration::from_secs(1);
        config.database_url = Some(database.url.clone());
    })
    .await;
    let room = unique_room("stalled");
    let mut stalled = Client::connect(&server).await;
    stalled.subscribe(&room, None).await;
    assert_eq!(server.hub.room_count(), 1, "the stalled reader's room");
    // 24 MiB of events: more than the socket buffers on both ends hold, so the server's write
    // to the reader that takes nothing waits.
    let pad = "x".repeat(8 * 1024);
    let mut publisher = Client::connect(&server).await;
    for chunk in (1..=3000).collect::<Vec<i64>>().chunks(100) {
        for &i in chunk {
            let data = json!({"text": format!("n{i}"), "pad": pad});
            publisher
                .send(&ClientFrame::Publish {
                    room: room.clone(),
                    kind: EventKind::Notice,
                    data,
                    reference: None,
                })
                .await;
        }
        for _ in chunk {
            assert!(matches!(
                publisher.next().await,
                ServerFrame::Published { .. }
            ));
        }
    }
    // The server lets go of the reader, and so of its room, by itself. Bounded only so a
    // server that never does fails here instead of hanging.
    let mut waited = 0;
    while server.hub.room_count() > 0 {
        assert!(waited < 600, "still holding the reader that never reads");
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        waited += 1;
    }
    drop(stalled);
    server.stop().await.unwrap();
    database.drop().await;
}

#[tokio::test]
async fn pages_of_large_events_stop_at_their_bytes_and_readers_still_get_every_one() {
    use rand::{Rng, SeedableRng, distr::Alphanumeric, rngs::StdRng};
    let database = crate::helpers::EmptyDatabase::create("bulky").await;
    let server = crate::helpers::start_with(|config| {
        (config.publish_rate, config.publish_burst) = (1e6, 1e6);
        config.database_url = Some(database.url.clone());
    })
    .await;
    let room = unique_room("bulky");
    // 400 events of 12 KiB that do not compress: 4.8 MiB stored, more than a page holds.
    const N: i64 = 400;
    let mut rng = StdRng::seed_from_u64(7);
    for i in 1..=N {
        let pad: String = (&mut rng)
            .sample_iter(Alphanumeric)
            .take(12 * 1024)
            .map(char::from)
            .collect();
        let response = server
            .http()
            .post(crate::helpers::events_url(&server, room.as_str()))
            .json(&json!({"kind": "notice", "data": {"text": format!("n{i}"), "pad": pad}}))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 201);
    }

    let mut read = Vec::new();
    let mut pages = 0;
    loop {
        let since = read.last().copied().unwrap_or(0);
        let url = crate::helpers::events_url(&server, room.as_str());
        let page: Vec<serde_json::Value> = server
            .get(format!("{url}?since={since}&limit=1000"))
            .await
            .json()
            .await
            .unwrap();
        if page.is_empty() {
            break;
        }
        pages += 1;
        read.extend(page.iter().map(|e| e["seq"].as_i64().unwrap()));
    }
    assert_eq!(
        read,
        (1..=N).collect::<Vec<_>>(),
        "every event, once, in order"
    );
    assert!(pages > 1, "one page held all {N}: not bounded by bytes");

    // The history API's pages too: newest first, cut by bytes, every one reached by its cursor.
    let mut seen = Vec::new();
    let mut pages = 0;
    let mut cursor: Option<app::history::Cursor> = None;
    loop {
        let mut url = format!("http://{}/api/events?room={room}&limit=500", server.addr);
        url.extend(cursor.map(|c| format!("&cursor={c}")));
        let page: app::history::EventPage = server.get(url).await.json().await.unwrap();
        pages += 1;
        seen.extend(page.events.iter().map(|e| e.seq));
        match page.next {
            Some(next) => cursor = Some(next),
            None => break,
        }
    }
    assert_eq!(seen, (1..=N).rev().collect::<Vec<_>>(), "every event, once");
    assert!(
        pages > 1,
        "one history page held all {N}: not bounded by bytes"
    );

    let mut reader = Client::connect(&server).await;
    let (replayed, head) = reader.resume(&room, 0).await;
    assert_eq!(head, N);
    assert_eq!(
        replayed,
        (1..=N).collect::<Vec<_>>(),
        "a replay goes on past pages cut short by their bytes"
    );
    server.stop().await.unwrap();
    database.drop().await;
}

/// A liveness probe over a fresh connection from the address `from`: the answer's first bytes,
/// or none if the server closed it.
async fn probe_from(to: std::net::SocketAddr, from: [u8; 4]) -> String {
    use tokio::{
        io::{AsyncReadExt, AsyncWriteExt},
        net::TcpSocket,
    };
    let socket = TcpSocket::new_v4().unwrap();
    socket.bind((from, 0).into()).unwrap();
    let mut tcp = socket.connect(to).await.unwrap();
    let request = b"GET /healthz HTTP/1.1\r\nhost: probe\r\nconnection: close\r\n\r\n";
    // A closed connection may refuse the write or the read: either way, no answer.
    let _ = tcp.write_all(request).await;
    let mut answer = Vec::new();
    let _ = tcp.read_to_end(&mut answer).await;
    String::from_utf8_lossy(&answer).into_owned()
}

#[tokio::test]
async fn connections_beyond_the_cap_are_closed_as_they_arrive_until_one_leaves() {
    use tokio::net::TcpStream;
    let server = crate::helpers::start_with(|config| config.max_connections = 3).await;
    let probe = |addr| probe_from(addr, [127, 0, 0, 1]);
    assert!(probe(server.addr).await.starts_with("HTTP/1.1 200"));
    // Three peers that never send a request, as a slow client's connections: they hold every
    // place (connections are accepted in the order they arrive).
    let mut idle = Vec::new();
    for _ in 0..3 {
        idle.push(TcpStream::connect(server.addr).await.unwrap());
    }
    assert_eq!(probe(server.addr).await, "", "closed without an answer");
    drop(idle.pop());
    // Its place is free once the server has seen it go. Bounded only so a place that is never
    // given back fails here.
    let mut tries = 0;
    while !probe(server.addr).await.starts_with("HTTP/1.1 200") {
        assert!(tries < 200, "no place came free");
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        tries += 1;
    }
    server.stop().await.unwrap();
}

#[tokio::test]
async fn a_request_whose_body_trickles_in_is_answered_408_when_its_time_is_up() {
    use tokio::{
        io::{AsyncReadExt, AsyncWriteExt},
        net::TcpStream,
    };
    let server = crate::helpers::start_with(|config| {
        config.request_timeout = std::time::Duration::from_secs(1);
    })
    .await;
    let room = unique_room("trickle");
    let mut tcp = TcpStream::connect(server.addr).await.unwrap();
    let head = format!(
        "POST /api/rooms/{room}/events HTTP/1.1\r\nhost: {}\r\nauthorization: Bearer {}\r\n\
         content-type: application/json\r\ncontent-length: 100\r\n\r\n{{\"kind\":",
        server.addr,
        server.token()
    );
    tcp.write_all(head.as_bytes()).await.unwrap();
    // The rest of the body never comes; the answer does, by itself.
    let mut answer = Vec::new();
    let _ = tcp.read_to_end(&mut answer).await;
    let answer = String::from_utf8_lossy(&answer);
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    assert_eq!(
        stored(&server, &room).await.len(),
        0,
        "nothing half-sent was stored"
    );
    server.stop().await.unwrap();
}

#[tokio::test]
async fn one_address_holds_at_most_its_share_of_connections_and_others_still_get_in() {
    use tokio::net::TcpStream;
    let server = crate::helpers::start_with(|config| {
        config.max_connections_per_address = 2;
    })
    .await;
    let idle = [
        TcpStream::connect(server.addr).await.unwrap(),
        TcpStream::connect(server.addr).await.unwrap(),
    ];
    assert_eq!(
        probe_from(server.addr, [127, 0, 0, 1]).await,
        "",
        "a third from 127.0.0.1"
    );
    assert!(
        probe_from(server.addr, [127, 0, 0, 2])
            .await
            .starts_with("HTTP/1.1 200"),
        "another address has its own share"
    );
    drop(idle);
    let mut tries = 0;
    while !probe_from(server.addr, [127, 0, 0, 1])
        .await
        .starts_with("HTTP/1.1 200")
    {
        assert!(tries < 200, "the address's places never came free");
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        tries += 1;
    }
    server.stop().await.unwrap();
}

#[tokio::test]
async fn a_client_trickling_its_request_headers_is_closed_when_their_time_is_up() {
    use tokio::{
        io::{AsyncReadExt, AsyncWriteExt},
        net::TcpStream,
    };
    let server = crate::helpers::start_with(|config| {
        config.header_timeout = std::time::Duration::from_millis(500);
    })
    .await;
    let mut tcp = TcpStream::connect(server.addr).await.unwrap();
    // A slow loris: headers begun, never ended.
    let head = format!("GET /healthz HTTP/1.1\r\nhost: {}\r\nx-slow: ", server.addr);
    tcp.write_all(head.as_bytes()).await.unwrap();
    let mut answer = Vec::new();
    let closed = tokio::time::timeout(
        std::time::Duration::from_secs(20),
        tcp.read_to_end(&mut answer),
    )
    .await;
    assert!(closed.is_ok(), "the server closed the connection by itself");
    // hyper answers 408 if it can; a connection closed without one is as good.
    let answer = String::from_utf8_lossy(&answer);
    assert!(
        answer.is_empty() || answer.starts_with("HTTP/1.1 408"),
        "{answer}"
    );

    server.stop().await.unwrap();
}

#[tokio::test]
async fn a_server_shutting_down_answers_every_publish_it_took_before_it_closes() {
    use tokio_tungstenite::tungstenite::Message;
    let server = crate::helpers::start_with(|config| {
        (config.publish_rate, config.publish_burst) = (1e6, 1e6)
    })
    .await;
    let room = unique_room("draining");
    let mut client = Client::connect(&server).await;
    for i in 0..300 {
        client
            .send(&ClientFrame::Publish {
                room: room.clone(),
                kind: EventKind::Notice,
                data: json!({"text": format!("n{i}")}),
                reference: None,
            })
            .await;
    }
    // Once the first is answered, the server stops while the rest are in flight.
    let mut acked = match client.next().await {
        ServerFrame::Published { seq, .. } => vec![seq],
        other => panic!("expected published, got {other:?}"),
    };
    let store = server.store.clone();
    let stopping = tokio::spawn(server.stop());
    let code = loop {
        match client.next_message().await {
            Message::Text(text) => match serde_json::from_str(&text).unwrap() {
                ServerFrame::Published { seq, .. } => acked.push(seq),
                ServerFrame::Error { code, .. } => panic!("refused: {code:?}"),
                _ => {}
            },
            Message::Close(Some(frame)) => break frame.code,
            other => panic!("expected frames, then a close, got {other:?}"),
        }
    };
    assert_eq!(code, CloseCode::Restart);
    stopping.await.unwrap().unwrap();
    let (stored, _) = store.since(&room, 0, 1000).await.unwrap();
    assert_eq!(
        seqs(&stored),
        acked,
        "every publish the server stored was answered before the socket closed"
    );
}

#[tokio::test]
async fn a_request_to_the_socket_that_is_not_a_websocket_upgrade_is_refused_with_400() {
    let server = start().await;
    let url = format!("http://{}/ws", server.addr);
    let plain = server.get(&url).await;
    assert_eq!(plain.status(), 400);
    let body: serde_json::Value = plain.json().await.unwrap();
    assert!(
        body["message"].as_str().unwrap().contains("`Connection`"),
        "{body}"
    );
    let old_version = server
        .http()
        .get(&url)
        .header("connection", "Upgrade")
        .header("upgrade", "websocket")
        .header("sec-websocket-key", "dGhlIHNhbXBsZSBub25jZQ==")
        .header("sec-websocket-version", "8")
        .send()
        .await
        .unwrap();
    assert_eq!(old_version.status(), 400);
    let body: serde_json::Value = old_version.json().await.unwrap();
    assert!(
        body["message"]
            .as_str()
            .unwrap()
            .contains("Version` must be 13"),
        "{body}"
    );
    server.stop().await.unwrap();
}
