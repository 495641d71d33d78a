//! Several nodes on one database, joined by a Redis of the test's own: events published on any
//! node reach every node's sockets in order, once; Redis losing messages, going away or coming
//! back, and a node killed outright lose nothing; the cluster's jobs run on one node at a time.

use std::{net::SocketAddr, sync::Arc, time::Duration};

use app::{
    alerts::State,
    auth::Role,
    protocol::{ClientFrame, RoomName, ServerFrame},
};
use futures::{SinkExt, StreamExt};
use serde_json::Value;
use server::{
    alerts::remote::Remote,
    bus::Bus,
    fanout::{Delivery, Member},
    hub::{Arrival, Hub, encode},
    telemetry::Telemetry,
};
use tokio::{
    net::{TcpListener, TcpStream},
    sync::mpsc,
};
use tokio_tungstenite::{connect_async, tungstenite::Message};

use crate::{
    alerts::{
        create_rule, next_transition, sample, stored_transitions, unique_source, watch_alerts,
    },
    helpers::{
        Client, EmptyDatabase, PrivateRedis, Process, TestApp, config, post_notice, scraped, start,
        start_with, token_in, unique_room,
    },
};

const PATIENCE: Duration = Duration::from_secs(20);

/// A node of a cluster on `database` joined through `redis`.
async fn node(database: &EmptyDatabase, redis: &PrivateRedis) -> TestApp {
    start_with(|config| {
        config.database_url = Some(database.url.clone());
        config.redis_url = Some(redis.url());
    })
    .await
}

/// `watchroom_bus_up` in `node`'s `/metrics`.
async fn bus_up(node: &TestApp) -> f64 {
    let text = crate::helpers::text_of(node.http(), format!("http://{}/metrics", node.addr)).await;
    scraped(&text, "watchroom_bus_up").expect("a node with a bus reports it")
}

/// What `/readyz` says of the bus, polled until `expected` is in it.
async fn readiness_until(node: &TestApp, expected: &str) -> Value {
    let url = format!("http://{}/readyz", node.addr);
    tokio::time::timeout(PATIENCE, async {
        loop {
            let report: Value = node.get(&url).await.json().await.unwrap();
            if report["checks"]["bus"]
                .as_str()
                .is_some_and(|bus| bus.contains(expected))
            {
                return report;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await
    .unwrap_or_else(|_| panic!("/readyz never said {expected:?} of the bus"))
}

/// `event` as a bus delivers it.
fn arrival(event: &app::protocol::Event, epoch: &app::protocol::Epoch) -> Arrival {
    Arrival {
        seq: event.seq,
        epoch: epoch.clone(),
        frame: encode(&ServerFrame::Event(event.clone())),
        published: std::time::Instant::now(),
    }
}

/// A member of a hub's room that hands the test what the room sends it.
struct Listening(mpsc::UnboundedSender<Delivery>);

impl Member for Listening {
    fn deliver(&self, deliveries: &[Delivery]) -> usize {
        deliveries
            .iter()
            .filter(|d| self.0.send((*d).clone()).is_ok())
            .count()
    }
}

/// What `hub` sends a member of `room` from now on.
fn listen(hub: &Hub, room: &RoomName) -> mpsc::UnboundedReceiver<Delivery> {
    let (tx, rx) = mpsc::unbounded_channel();
    // Left with the hub, at the test's end.
    let _member = hub.join(room, Arc::new(Listening(tx)));
    rx
}

/// `events` as a bad bus delivers them: neighbours swapped, every third lost, every fifth twice.
fn mangled(events: &[app::protocol::Event]) -> Vec<&app::protocol::Event> {
    events
        .chunks(2)
        .flat_map(|pair| pair.iter().rev())
        .filter(|e| e.seq % 3 != 0)
        .flat_map(|e| std::iter::repeat_n(e, if e.seq % 5 == 0 { 2 } else { 1 }))
        .collect()
}

fn seqs(events: &[app::protocol::Event]) -> Vec<i64> {
    events.iter().map(|e| e.seq).collect()
}

#[tokio::test]
async fn events_published_on_any_node_reach_every_node_in_order_once() {
    let database = EmptyDatabase::create("cluster").await;
    let redis = PrivateRedis::start().await;
    let nodes = [
        node(&database, &redis).await,
        node(&database, &redis).await,
        node(&database, &redis).await,
    ];
    let room = unique_room("spread");
    let mut watchers = Vec::new();
    for node in &nodes {
        let mut client = Client::connect(node).await;
        client.subscribe(&room, None).await;
        watchers.push(client);
    }

    // Two publishers on two nodes at once: their events interleave in the log, and each node
    // hears the other's by Redis, sometimes after its own later ones.
    const EACH: usize = 60;
    async fn publish(node: &TestApp, room: &RoomName, label: &str) {
        for i in 0..EACH {
            post_notice(node, room, &format!("{label} {i}")).await;
        }
    }
    tokio::join!(
        publish(&nodes[1], &room, "b"),
        publish(&nodes[2], &room, "c")
    );
    let last = (2 * EACH) as i64;
    for (i, watcher) in watchers.iter_mut().enumerate() {
        let events = watcher.events_until(&room, last).await;
        assert_eq!(seqs(&events), (1..=last).collect::<Vec<_>>(), "node {i}");
    }
    // Nothing was pushed twice: the next event on each socket is the next one published.
    post_notice(&nodes[0], &room, "after").await;
    for watcher in &mut watchers {
        assert_eq!(watcher.next_event_seq(&room).await, last + 1);
    }
    // The node without a publisher had them through Redis, not (all) from the store.
    let text =
        crate::helpers::text_of(nodes[0].http(), format!("http://{}/metrics", nodes[0].addr)).await;
    let filled = scraped(&text, "watchroom_filled_events_total").expect("counted");
    assert!(
        filled < last as f64,
        "{filled} of {last} read from the store"
    );
    assert_eq!(
        readiness_until(&nodes[0], "ok").await["status"],
        "ok",
        "a node with its bus up is ready"
    );
    for node in nodes {
        node.stop().await.unwrap();
    }
    database.drop().await;
}

#[tokio::test]
async fn a_bus_that_loses_repeats_and_reorders_events_is_healed_from_the_store() {
    let app = start().await;
    let room = unique_room("mangled");
    for i in 0..40 {
        post_notice(&app, &room, &format!("n{i}")).await;
    }
    let (stored, _) = app.store.since(&room, 0, 100).await.unwrap();
    let epoch = app.store.head(&room).await.unwrap().epoch.unwrap();

    // A node of its own on the same store, fed by a bus double instead of Redis.
    let hub = Hub::new(app.store.clone(), Bus::Local, Telemetry::default());
    let mut live = listen(&hub, &room);
    hub.opened(&room, 0, &epoch);
    // The last two never sent.
    for event in mangled(&stored[..38]) {
        hub.arrive(&room, arrival(event, &epoch));
    }
    // The lost tail has no later event to reveal it: the sweep compares with the store.
    hub.sweep().await;

    let mut pushed = Vec::new();
    while pushed.len() < stored.len() {
        let delivery = tokio::time::timeout(PATIENCE, live.recv())
            .await
            .expect("the hub pushes every event in time")
            .unwrap();
        if let Delivery::Event { frame, .. } = delivery {
            match serde_json::from_str(frame.payload()).unwrap() {
                ServerFrame::Event(event) => pushed.push(event),
                other => panic!("expected an event, got {other:?}"),
            }
        }
    }
    assert_eq!(pushed, stored, "every event once, in order, as stored");
    assert!(live.try_recv().is_err(), "and nothing after");
    app.stop().await.unwrap();
}

#[tokio::test]
async fn with_redis_away_each_node_serves_its_own_clients_and_no_event_is_missed_once_it_is_back() {
    let database = EmptyDatabase::create("redis_away").await;
    let mut redis = PrivateRedis::start().await;
    let (a, b) = (node(&database, &redis).await, node(&database, &redis).await);
    let room = unique_room("outage");
    let mut on_a = Client::connect(&a).await;
    on_a.subscribe(&room, None).await;
    let mut on_b = Client::connect(&b).await;
    on_b.subscribe(&room, None).await;

    // B publishes throughout; A now and then.
    let steady = {
        let (http, url) = (
            b.http().clone(),
            crate::helpers::events_url(&b, room.as_str()),
        );
        tokio::spawn(async move {
            for i in 0..150 {
                let body =
                    serde_json::json!({"kind": "notice", "data": {"text": format!("b {i}")}});
                let sent = http.post(&url).json(&body).send().await.unwrap();
                assert_eq!(sent.status(), 201);
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        })
    };
    let first = post_notice(&a, &room, "a before").await["seq"]
        .as_i64()
        .unwrap();
    let mut seen = on_a.events_until(&room, first).await;

    redis.stop().await;
    let report = readiness_until(&a, "redis unreachable").await;
    assert_eq!(report["status"], "degraded", "{report}");
    assert_eq!(bus_up(&a).await, 0.0);
    readiness_until(&b, "redis unreachable").await;
    // A's own publish reaches A's socket with Redis away (B's before it come from the store).
    let during = post_notice(&a, &room, "a during").await["seq"]
        .as_i64()
        .unwrap();
    seen.extend(on_a.events_until(&room, during).await);
    assert_eq!(seen.last().unwrap().seq, during);
    tokio::time::sleep(Duration::from_secs(2)).await;

    redis.restart().await;
    readiness_until(&a, "ok").await;
    readiness_until(&b, "ok").await;
    assert_eq!(bus_up(&a).await, 1.0);
    let after = post_notice(&a, &room, "a after").await["seq"]
        .as_i64()
        .unwrap();
    steady.await.unwrap();
    let last = post_notice(&b, &room, "b last").await["seq"]
        .as_i64()
        .unwrap();
    assert!(after < last);

    seen.extend(on_a.events_until(&room, last).await);
    assert_eq!(seqs(&seen), (1..=last).collect::<Vec<_>>(), "on A");
    let on_b_all = on_b.events_until(&room, last).await;
    assert_eq!(seqs(&on_b_all), (1..=last).collect::<Vec<_>>(), "on B");
    a.stop().await.unwrap();
    b.stop().await.unwrap();
    database.drop().await;
}

/// A load balancer on `listener` in front of `backends`: each connection goes to the first
/// that accepts it.
fn balance(listener: TcpListener, backends: Vec<SocketAddr>) {
    tokio::spawn(async move {
        while let Ok((mut inbound, _)) = listener.accept().await {
            let backends = backends.clone();
            tokio::spawn(async move {
                for backend in backends {
                    if let Ok(mut outbound) = TcpStream::connect(backend).await {
                        let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
                        return;
                    }
                }
            });
        }
    });
}

#[tokio::test]
async fn clients_of_a_node_killed_under_publishing_resume_on_another_with_every_event_once() {
    let database = EmptyDatabase::create("node_killed").await;
    let redis = PrivateRedis::start().await;
    let front = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let front_addr = front.local_addr().unwrap();
    let (redis_url, public_url) = (redis.url(), format!("http://{front_addr}"));
    // Behind a load balancer, the name clients use is the balancer's.
    let args = [
        "--redis-url",
        &redis_url,
        "--host-metrics",
        "false",
        "--public-url",
        &public_url,
    ];
    let mut a = Process::start(&database.url, &args).await;
    let b = Process::start(&database.url, &args).await;
    let c = Process::start(&database.url, &args).await;
    let store = server::store::Store::connect(database.url.parse().unwrap(), Default::default())
        .await
        .unwrap();
    let token = token_in(&store, Role::Admin, &["*"], &["admin"]).await;
    balance(front, vec![a.addr, b.addr]);
    let room = unique_room("failover");

    // Clients as the browser's: on a lost socket, connect again and resume after the last seq.
    const LAST: i64 = 300;
    let watchers: Vec<_> = (0..4)
        .map(|_| {
            let (token, room) = (token.clone(), room.clone());
            tokio::spawn(async move {
                let mut seen: Vec<i64> = Vec::new();
                let mut connects = 0;
                while seen.last() != Some(&LAST) {
                    connects += 1;
                    assert!(connects < 10, "reconnected over and over; saw {seen:?}");
                    let url = format!("ws://{front_addr}/ws?token={token}");
                    let Ok((mut socket, _)) = connect_async(url).await else {
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    };
                    let subscribe = ClientFrame::Subscribe {
                        room: room.clone(),
                        since: Some(seen.last().copied().unwrap_or(0)),
                        epoch: None,
                    };
                    let text = serde_json::to_string(&subscribe).unwrap();
                    if socket.send(Message::text(text)).await.is_err() {
                        continue;
                    }
                    while let Ok(Some(Ok(Message::Text(text)))) =
                        tokio::time::timeout(PATIENCE, socket.next()).await
                    {
                        if let Ok(ServerFrame::Event(event)) = serde_json::from_str(&text) {
                            seen.push(event.seq);
                            if event.seq == LAST {
                                break;
                            }
                        }
                    }
                }
                (seen, connects)
            })
        })
        .collect();

    let publisher = crate::helpers::http_with(&token);
    let url = format!("http://{}/api/rooms/{room}/events", c.addr);
    for i in 1..=LAST {
        if i == 100 {
            a.child.start_kill().unwrap();
        }
        let body = serde_json::json!({"kind": "notice", "data": {"text": format!("n{i}")}});
        let sent = publisher.post(&url).json(&body).send().await.unwrap();
        assert_eq!(sent.status(), 201);
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    for watcher in watchers {
        let (seen, connects) = watcher.await.unwrap();
        assert_eq!(seen, (1..=LAST).collect::<Vec<_>>());
        assert!(connects >= 2, "the client's first node was killed under it");
    }
    drop((b, c));
    database.drop().await;
}

/// Sends `value` to every one of `nodes` until `watcher` hears of a transition of `rule`: the
/// rule reaches the leader by the bus, and a new leader takes the lease within a second or two.
async fn sample_until_news(
    nodes: &[TestApp],
    source: &str,
    value: f64,
    watcher: &mut Client,
    rule: i64,
) -> app::alerts::Transition {
    loop {
        for node in nodes {
            sample(node, source, value).await;
        }
        let next = tokio::time::timeout(Duration::from_millis(300), next_transition(watcher, rule));
        if let Ok(transition) = next.await {
            return transition;
        }
    }
}

/// Reads `client`'s frames until one says `watchers` watch `room`.
async fn watchers_until(client: &mut Client, room: &RoomName, watchers: usize) {
    tokio::time::timeout(PATIENCE, async {
        loop {
            if let ServerFrame::Presence {
                room: r,
                watchers: n,
            } = client.next_frame().await
                && r == *room
                && n == watchers
            {
                return;
            }
        }
    })
    .await
    .unwrap_or_else(|_| panic!("never told {watchers} watch {room}"));
}

#[tokio::test]
async fn a_rooms_watchers_are_counted_on_every_node() {
    let database = EmptyDatabase::create("presence").await;
    let redis = PrivateRedis::start().await;
    let (a, b) = (node(&database, &redis).await, node(&database, &redis).await);
    let room = unique_room("watched");
    let mut on_a = Client::connect(&a).await;
    on_a.subscribe(&room, None).await;
    let mut on_b = Client::connect(&b).await;
    on_b.subscribe(&room, None).await;
    let mut again_on_b = Client::connect(&b).await;
    again_on_b.subscribe(&room, None).await;
    watchers_until(&mut on_a, &room, 3).await;
    watchers_until(&mut on_b, &room, 3).await;

    on_b.close().await;
    watchers_until(&mut on_a, &room, 2).await;
    // The last watcher on B leaving takes B's count with it.
    again_on_b.close().await;
    watchers_until(&mut on_a, &room, 1).await;
    for node in [a, b] {
        node.stop().await.unwrap();
    }
    database.drop().await;
}

#[tokio::test]
async fn a_node_silent_for_half_a_minute_no_longer_counts_among_a_rooms_watchers() {
    let app = start().await;
    let room = unique_room("silent");
    // A node of its own, told of other nodes' watchers by a bus double.
    let hub = Hub::new(app.store.clone(), Bus::Local, Telemetry::default());
    let mut member = listen(&hub, &room);
    let until = tokio_util::sync::CancellationToken::new();
    hub.spawn_presence(Duration::from_millis(10), until.clone());
    let mut watchers_told = async || loop {
        let delivery = tokio::time::timeout(PATIENCE, member.recv()).await.unwrap();
        if let Some(Delivery::Presence { frame }) = delivery {
            match serde_json::from_str(frame.payload()).unwrap() {
                ServerFrame::Presence { watchers, .. } => return watchers,
                other => panic!("expected presence, got {other:?}"),
            }
        }
    };
    assert_eq!(watchers_told().await, 1);
    hub.present_elsewhere(7, vec![(room.clone(), 2)]);
    assert_eq!(watchers_told().await, 3);
    // 29 s later node 7 still counts; 31 s later it no longer does.
    hub.forget_silent_nodes(std::time::Instant::now() + Duration::from_secs(29));
    hub.present_elsewhere(8, vec![(room.clone(), 4)]);
    assert_eq!(watchers_told().await, 7);
    hub.forget_silent_nodes(std::time::Instant::now() + Duration::from_secs(31));
    assert_eq!(watchers_told().await, 1);
    until.cancel();
    app.stop().await.unwrap();
}

#[tokio::test]
async fn samples_the_bus_loses_or_reorders_reach_the_leaders_evaluator_from_the_store_once() {
    let app = start().await;
    let source = unique_source("heard");
    for value in 1..=30 {
        sample(&app, &source, f64::from(value)).await;
    }
    let room = app::metrics::source_room(&source).unwrap();
    let (stored, _) = app.store.since(&room, 0, 100).await.unwrap();
    let epoch = app.store.head(&room).await.unwrap().epoch.unwrap();
    let value = |event: &app::protocol::Event| {
        app::metrics::event_points(&event.data, event.ts)
            .iter()
            .map(|p| p.value)
            .collect::<Vec<_>>()
    };

    // The evaluator of node 1, fed by a bus double: node 2 published every event but seqs 1 and
    // 10, which node 1 published itself (and its writer evaluated). Heard, its own are not handed
    // on; read from the store (10 comes after 11), they are, and windows take them once.
    let (feed, mut evaluated) = server::alerts::Feed::new();
    let mut remote = Remote::new(app.store.clone(), feed, 1);
    let from = |event: &app::protocol::Event| if [1, 10].contains(&event.seq) { 1 } else { 2 };
    // The first and the last as sent (what comes before a room's first arrival is not counted,
    // nor a tail lost with nothing after it), the rest mangled.
    let (first, last) = (&stored[0], &stored[stored.len() - 1]);
    let middle = mangled(&stored[1..stored.len() - 1]);
    for event in std::iter::once(first).chain(middle).chain([last]) {
        let arrival = arrival(event, &epoch);
        remote.heard(room.clone(), from(event), arrival).await;
    }

    let mut values = Vec::new();
    while let Ok(committed) = evaluated.try_recv() {
        for (evaluated_source, points) in committed {
            assert_eq!(evaluated_source, source);
            values.extend(points.iter().map(|p| p.value));
        }
    }
    let expected: Vec<f64> = stored
        .iter()
        .filter(|e| e.seq != 1)
        .flat_map(value)
        .collect();
    assert_eq!(
        values, expected,
        "every sample once, in order, but node 1's own as heard"
    );
    app.stop().await.unwrap();
}

#[tokio::test]
async fn of_three_nodes_one_evaluates_alerts_and_another_takes_over_when_it_stops() {
    let database = EmptyDatabase::create("alerts_once").await;
    let redis = PrivateRedis::start().await;
    let mut nodes = vec![
        node(&database, &redis).await,
        node(&database, &redis).await,
        node(&database, &redis).await,
    ];
    let source = unique_source("clustered");
    // Made on one node; the others hear of it by the bus.
    let rule = create_rule(&nodes[1], &source, serde_json::json!({})).await;
    let mut watcher = watch_alerts(&nodes[0]).await;

    // Every node takes the same samples: a node evaluating on its own would fire again.
    let fired = sample_until_news(&nodes, &source, 95.0, &mut watcher, rule).await;
    assert_eq!(fired.state, State::Firing);
    for node in &nodes {
        sample(node, &source, 10.0).await;
    }
    assert_eq!(
        next_transition(&mut watcher, rule).await.state,
        State::Resolved
    );
    let states: Vec<State> = stored_transitions(&nodes[2], rule)
        .await
        .into_iter()
        .map(|t| t.state)
        .collect();
    assert_eq!(states, [State::Firing, State::Resolved]);

    // Two nodes stop, whichever led: the third takes the lease and evaluates.
    let last = nodes.pop().unwrap();
    for node in nodes {
        node.stop().await.unwrap();
    }
    let mut watcher = watch_alerts(&last).await;
    let fired = sample_until_news(
        std::slice::from_ref(&last),
        &source,
        97.0,
        &mut watcher,
        rule,
    )
    .await;
    assert_eq!(fired.state, State::Firing);
    last.stop().await.unwrap();
    database.drop().await;
}

#[tokio::test]
async fn a_source_series_limit_holds_across_nodes_creating_its_series_at_once() {
    let database = EmptyDatabase::create("series_cluster").await;
    let limited = |config: &mut server::Config| {
        config.database_url = Some(database.url.clone());
        config.max_series_per_source = 10;
        (config.publish_rate, config.publish_burst) = (1e6, 1e6);
    };
    let nodes = [start_with(limited).await, start_with(limited).await];
    // Each node alone would let ten in; twenty requests at once, alternating between them.
    let source = unique_source("spread");
    let bodies: Vec<Value> = (0..20)
        .map(|i| serde_json::json!([{"source": source, "series": format!("s{i}"), "value": 1}]))
        .collect();
    let answers = futures::future::join_all(bodies.iter().enumerate().map(|(i, body)| {
        let node = &nodes[i % 2];
        node.http()
            .post(format!("http://{}/api/metrics", node.addr))
            .json(body)
            .send()
    }))
    .await;
    let statuses: Vec<u16> = answers
        .iter()
        .map(|r| r.as_ref().unwrap().status().as_u16())
        .collect();
    assert_eq!(
        statuses.iter().filter(|s| **s == 200).count(),
        10,
        "{statuses:?}"
    );
    assert!(
        statuses.iter().all(|s| [200, 400].contains(s)),
        "{statuses:?}"
    );
    let stored: i64 = sqlx::query_scalar("SELECT count(*) FROM series WHERE source = $1")
        .bind(&source)
        .fetch_one(&sqlx::PgPool::connect(&database.url).await.unwrap())
        .await
        .unwrap();
    assert_eq!(stored, 10);
    for node in nodes {
        node.stop().await.unwrap();
    }
    database.drop().await;
}

#[tokio::test]
async fn an_unreadable_redis_url_is_refused_at_start_naming_the_flag() {
    let mut config = config();
    config.redis_url = Some("tcp://nowhere".into());
    let refused = server::start(&config).await.err().expect("refused");
    let message = refused.to_string();
    assert!(
        message.contains("--redis-url \"tcp://nowhere\""),
        "{message}"
    );
}

#[tokio::test]
async fn a_redis_url_without_a_database_url_is_refused_at_start() {
    let mut config = config();
    config.database_url = None;
    config.redis_url = Some("redis://127.0.0.1:6379".into());
    let refused = server::start(&config).await.err().expect("refused");
    let message = refused.to_string();
    assert!(message.contains("DATABASE_URL"), "{message}");
}
