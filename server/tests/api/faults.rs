//! Faults from outside the server: a database session holding a room's lock, a connection to the
//! database cut or silent mid-commit, a server killed mid-ingest. Each is survived without losing
//! what was acknowledged.

use std::{
    net::SocketAddr,
    process::Stdio,
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, Ordering},
    },
    time::Duration,
};

use app::{auth::Role, protocol::RoomName};
use reqwest::StatusCode;
use serde_json::{Value, json};
use server::store::Store;
use sqlx::postgres::PgConnectOptions;
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::{TcpListener, TcpStream},
};

use rand::{Rng, SeedableRng, rngs::StdRng};

use crate::helpers::{
    Client, EmptyDatabase, Process, database, events_url, http_with, post_notice, scraped,
    scratch_dir, start_with, stored, text_of, token_in, unique_room,
};

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

    let publish = |room: &RoomName, text: &str| {
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

/// How the path to the database fails the writer's next COMMIT.
#[derive(Clone, Copy, Debug)]
enum Fault {
    /// COMMIT never reaches the database, and nothing comes back: the transaction stays open,
    /// its rows locked, as long as the database does not notice (a dead path: for hours).
    Withheld,
    /// COMMIT reaches the database; its answer never comes back.
    Unanswered,
    /// COMMIT reaches the database; then the connection is cut.
    Cut,
}

/// A TCP path to the test database that fails the writer's next COMMIT as told, once; every
/// other connection and statement passes.
struct FaultyPath {
    url: String,
    armed: Arc<Mutex<Option<Fault>>>,
    carrying: tokio::task::JoinHandle<()>,
}

impl FaultyPath {
    async fn to(database_url: &str) -> Self {
        let options: PgConnectOptions = database_url.parse().unwrap();
        let upstream = format!("{}:{}", options.get_host(), options.get_port());
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let here = listener.local_addr().unwrap().to_string();
        let url = database_url.replacen(&upstream, &here, 1);
        assert_ne!(url, database_url, "the database URL names {upstream}");
        let armed = Arc::new(Mutex::new(None));
        let carrying = tokio::spawn({
            let armed = armed.clone();
            async move {
                let mut connections = tokio::task::JoinSet::new();
                while let Ok((client, _)) = listener.accept().await {
                    let server = TcpStream::connect(&upstream).await.unwrap();
                    connections.spawn(Self::carry(client, server, armed.clone()));
                }
            }
        });
        Self {
            url,
            armed,
            carrying,
        }
    }

    fn arm(&self, fault: Fault) {
        *self.armed.lock().unwrap() = Some(fault);
    }

    async fn carry(client: TcpStream, server: TcpStream, armed: Arc<Mutex<Option<Fault>>>) {
        let (mut from_client, mut to_client) = client.into_split();
        let (mut from_server, mut to_server) = server.into_split();
        let silent = Arc::new(AtomicBool::new(false));
        let answers = tokio::spawn({
            let silent = silent.clone();
            async move {
                let mut buffer = vec![0; 64 * 1024];
                while let Ok(read @ 1..) = from_server.read(&mut buffer).await {
                    if !silent.load(Ordering::SeqCst) {
                        let _ = to_client.write_all(&buffer[..read]).await;
                    }
                }
                // A dead path passes no end either: the client's side stays open.
                if silent.load(Ordering::SeqCst) {
                    std::future::pending::<()>().await;
                }
            }
        });
        let (mut writers, mut buffer) = (false, vec![0; 64 * 1024]);
        while let Ok(read @ 1..) = from_client.read(&mut buffer).await {
            let bytes = &buffer[..read];
            // The writer's connections name themselves (`application_name`) at startup.
            writers |= contains(bytes, b"watchroom writer");
            if silent.load(Ordering::SeqCst) {
                continue;
            }
            let fault = match writers && contains(bytes, b"COMMIT\0") {
                true => armed.lock().unwrap().take(),
                false => None,
            };
            if !matches!(fault, Some(Fault::Withheld)) {
                let _ = to_server.write_all(bytes).await;
            }
            match fault {
                None => {}
                Some(Fault::Withheld | Fault::Unanswered) => silent.store(true, Ordering::SeqCst),
                Some(Fault::Cut) => {
                    answers.abort();
                    return;
                }
            }
        }
        let _ = answers.await;
    }
}

impl Drop for FaultyPath {
    fn drop(&mut self) {
        self.carrying.abort();
    }
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack
        .windows(needle.len())
        .any(|window| window == needle)
}

/// Whichever way the answer to a COMMIT is lost, the writer asks the database what became of
/// the batch: acknowledged if it committed, refused if not, never stored twice, and the rooms a
/// silent session locked are freed for the next publishes.
#[tokio::test]
async fn a_batch_whose_commit_answer_is_lost_is_answered_as_the_database_says_and_never_stored_twice()
 {
    let path = FaultyPath::to(&crate::helpers::config().database_url.unwrap()).await;
    let app = start_with(|config| {
        config.database_url = Some(path.url.clone());
        config.commit_timeout = Duration::from_millis(500);
    })
    .await;
    let room = unique_room("faulty");
    let mut watcher = Client::connect(&app).await;
    watcher.subscribe(&room, None).await;
    assert_eq!(post_notice(&app, &room, "before").await["seq"], 1);
    assert_eq!(watcher.next_event_seq(&room).await, 1);

    let publish = |text: &str| {
        app.http()
            .post(events_url(&app, room.as_str()))
            .json(&json!({"kind": "notice", "data": {"text": text}}))
            .send()
    };
    let mut expected = vec!["before"];
    for (fault, text) in [
        (Fault::Unanswered, "unanswered"),
        (Fault::Cut, "cut"),
        (Fault::Withheld, "withheld"),
    ] {
        path.arm(fault);
        let response = publish(text).await.unwrap();
        if matches!(fault, Fault::Withheld) {
            assert_eq!(
                response.status(),
                StatusCode::SERVICE_UNAVAILABLE,
                "{fault:?}"
            );
            let body: Value = response.json().await.unwrap();
            assert_eq!(body["error"], "unavailable");
        } else {
            assert_eq!(response.status(), StatusCode::CREATED, "{fault:?}");
            let seq = expected.len() as i64 + 1;
            assert_eq!(response.json::<Value>().await.unwrap()["seq"], seq);
            assert_eq!(watcher.next_event_seq(&room).await, seq, "{fault:?}");
            expected.push(text);
        }
    }
    // The withheld batch's session held the room's row: it was ended, so this is not refused
    // as locked, and takes the seq the refused batch gave back.
    let after = post_notice(&app, &room, "after").await;
    assert_eq!(after["seq"], expected.len() as i64 + 1);
    expected.push("after");
    assert_eq!(
        watcher.next_event_seq(&room).await,
        after["seq"].as_i64().unwrap()
    );
    let texts: Vec<String> = stored(&app, &room)
        .await
        .iter()
        .map(|e| e["data"]["text"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(texts, expected);
    app.stop().await.unwrap();
}

#[tokio::test]
async fn a_read_past_the_query_timeout_is_refused_and_the_next_is_answered() {
    let database = EmptyDatabase::create("query_timeout").await;
    let app = start_with(|config| {
        config.database_url = Some(database.url.clone());
        config.query_timeout = Duration::from_millis(200);
    })
    .await;
    let room = unique_room("slow");
    post_notice(&app, &room, "one").await;

    // Every read of the log waits behind the lock.
    let session = database.lock("events").await;
    let refused = app.get(events_url(&app, room.as_str())).await;
    assert_eq!(refused.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(
        refused.json::<Value>().await.unwrap()["error"],
        "unavailable"
    );

    session.rollback().await.unwrap();
    assert_eq!(stored(&app, &room).await.len(), 1);
    app.stop().await.unwrap();
    database.drop().await;
}

/// A server in a process of its own, to be killed.
#[tokio::test]
async fn a_server_killed_during_heavy_ingest_keeps_every_acknowledged_event_and_sample() {
    const SAMPLES: usize = 2_000;
    let database = EmptyDatabase::create("kill9").await;
    let mut process = Process::start(&database.url, &["--host-metrics", "false"]).await;
    let store = Store::connect(database.url.parse().unwrap(), Default::default())
        .await
        .unwrap();
    let http = http_with(&token_in(&store, Role::Admin, &["*"], &["admin"]).await);
    let addr = process.addr;

    // Each worker goes on until its first failure and returns what was acknowledged.
    let sources: Vec<String> = (0..3).map(|w| format!("kill9-{w}")).collect();
    let ingest = sources.iter().map(|source| {
        let (http, source) = (http.clone(), source.clone());
        tokio::spawn(async move {
            let mut acknowledged = Vec::new();
            for k in 0.. {
                let batch: Vec<Value> = (0..SAMPLES)
                    .map(|_| json!({"source": source, "series": "s", "value": k}))
                    .collect();
                let sent = http
                    .post(format!("http://{addr}/api/metrics"))
                    .json(&batch)
                    .send()
                    .await;
                match sent {
                    Ok(response) if response.status().is_success() => acknowledged.push(k),
                    _ => break,
                }
            }
            acknowledged
        })
    });
    let ingest: Vec<_> = ingest.collect();
    let rooms: Vec<RoomName> = (0..2).map(|_| unique_room("kill9")).collect();
    let publish = rooms.iter().map(|room| {
        let (http, room) = (http.clone(), room.clone());
        tokio::spawn(async move {
            let mut acknowledged = Vec::new();
            for k in 0.. {
                let sent = http
                    .post(format!("http://{addr}/api/rooms/{room}/events"))
                    .json(&json!({"kind": "notice", "data": {"text": format!("{k}")}}))
                    .send()
                    .await;
                let Ok(response) = sent else { break };
                if response.status() != StatusCode::CREATED {
                    break;
                }
                let stored: Value = response.json().await.unwrap();
                acknowledged.push((stored["seq"].as_i64().unwrap(), format!("{k}")));
            }
            acknowledged
        })
    });
    let publish: Vec<_> = publish.collect();

    // Until a good share has been acknowledged, then without warning.
    let samples_of = |source: String| {
        let store_url = database.url.clone();
        async move {
            let db = sqlx::PgPool::connect(&store_url).await.unwrap();
            let rows: Vec<(f64, i64)> = sqlx::query_as(
                "SELECT value, count(*) FROM samples
                 WHERE series IN (SELECT id FROM series WHERE source = $1) GROUP BY value",
            )
            .bind(source)
            .fetch_all(&db)
            .await
            .unwrap();
            db.close().await;
            rows
        }
    };
    while samples_of(sources[0].clone()).await.len() < 5 {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    process.child.kill().await.unwrap();

    let mut acknowledged_samples = Vec::new();
    for worker in ingest {
        acknowledged_samples.push(worker.await.unwrap());
    }
    let mut acknowledged_events = Vec::new();
    for worker in publish {
        acknowledged_events.push(worker.await.unwrap());
    }

    // A new server on the same database starts and finds everything it was told was stored.
    let app = start_with(|config| config.database_url = Some(database.url.clone())).await;
    for (source, acknowledged) in sources.iter().zip(&acknowledged_samples) {
        assert!(
            !acknowledged.is_empty(),
            "{source} had batches acknowledged"
        );
        let counts: std::collections::HashMap<i64, i64> = samples_of(source.clone())
            .await
            .into_iter()
            .map(|(value, count)| (value as i64, count))
            .collect();
        for k in acknowledged {
            assert_eq!(counts.get(k), Some(&(SAMPLES as i64)), "{source} batch {k}");
        }
    }
    for (room, acknowledged) in rooms.iter().zip(&acknowledged_events) {
        assert!(!acknowledged.is_empty(), "{room} had events acknowledged");
        let events = stored(&app, room).await;
        let seqs: Vec<i64> = events.iter().map(|e| e["seq"].as_i64().unwrap()).collect();
        assert_eq!(seqs, (1..=seqs.len() as i64).collect::<Vec<_>>(), "gapless");
        for (seq, text) in acknowledged {
            assert_eq!(
                events[*seq as usize - 1]["data"]["text"],
                *text,
                "{room} {seq}"
            );
        }
    }
    app.stop().await.unwrap();
    database.drop().await;
}

/// A tmpfs of its own, unmounted when dropped (a failing test included).
struct SmallDisk(std::path::PathBuf);

impl SmallDisk {
    fn mount(path: std::path::PathBuf, megabytes: u32) -> Self {
        std::fs::create_dir_all(&path).unwrap();
        let mounted = std::process::Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={megabytes}m"), "tmpfs"])
            .arg(&path)
            .status()
            .unwrap();
        assert!(
            mounted.success(),
            "mounting a tmpfs (the tests run as root)"
        );
        // As root the cluster runs as `postgres`; its tablespace directory must be its own.
        std::process::Command::new("chown")
            .arg("postgres:")
            .arg(&path)
            .status()
            .unwrap();
        Self(path)
    }

    fn grow(&self, megabytes: u32) {
        let grown = std::process::Command::new("mount")
            .args(["-o", &format!("remount,size={megabytes}m")])
            .arg(&self.0)
            .status()
            .unwrap();
        assert!(grown.success());
    }
}

impl Drop for SmallDisk {
    fn drop(&mut self) {
        // Lazily: after a failure the cluster may still have the disk open.
        let _ = std::process::Command::new("umount")
            .arg("-l")
            .arg(&self.0)
            .status();
    }
}

#[tokio::test]
async fn a_full_disk_refuses_publishes_without_losing_any_and_they_resume_when_space_returns() {
    use rand::distr::Alphanumeric;
    use server::embedded_postgres::EmbeddedPostgres;

    let data_dir = scratch_dir();
    let pg = EmbeddedPostgres::start(&data_dir).await.unwrap();
    // The database lives on a disk of 14 MB, 8 of them its own tables' when new (the WAL stays
    // on the cluster's disk), at a path Postgres takes as a tablespace's (no quotes).
    let path = std::env::temp_dir().join(unique_room("disk").as_str());
    let disk = SmallDisk::mount(path.clone(), 14);
    let admin = sqlx::PgPool::connect(&pg.url()).await.unwrap();
    for statement in [
        format!("CREATE TABLESPACE small LOCATION '{}'", disk.0.display()),
        "CREATE DATABASE small TABLESPACE small".into(),
    ] {
        sqlx::query(&statement).execute(&admin).await.unwrap();
    }
    let url = pg.url().replace("/postgres?", "/small?");
    let app = start_with(|config| {
        config.database_url = Some(url.clone());
        (config.publish_rate, config.publish_burst) = (1e6, 1e6);
    })
    .await;
    let room = unique_room("full");
    // Incompressible, so each takes its 12 KiB on disk.
    let publish = |rng: &mut StdRng, text: String| {
        let pad: String = rng
            .sample_iter(Alphanumeric)
            .take(12 * 1024)
            .map(char::from)
            .collect();
        app.http()
            .post(events_url(&app, room.as_str()))
            .json(&json!({"kind": "notice", "data": {"text": text, "pad": pad}}))
            .send()
    };

    // Sixteen publishers until the disk is full (more than it holds, so that comes), each
    // keeping what was acknowledged and the answer that stopped it.
    let publishers = (0..16).map(|p| async move {
        let mut rng = StdRng::seed_from_u64(p);
        let mut acknowledged = Vec::new();
        for i in 0..1_000 {
            let text = format!("{p}.{i}");
            let response = publish(&mut rng, text.clone()).await.unwrap();
            if response.status() != StatusCode::CREATED {
                return (
                    acknowledged,
                    response.status(),
                    response.json::<Value>().await,
                );
            }
            let stored: Value = response.json().await.unwrap();
            acknowledged.push((stored["seq"].as_i64().unwrap(), text));
        }
        panic!("14 MB should have filled");
    });
    let mut acknowledged = Vec::new();
    for (mine, status, body) in futures::future::join_all(publishers).await {
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(body.unwrap()["error"], "unavailable");
        acknowledged.extend(mine);
    }
    acknowledged.sort();
    assert!(
        acknowledged.len() > 10,
        "some went in before the disk filled"
    );
    let alive = reqwest::get(format!("http://{}/healthz", app.addr)).await;
    assert!(alive.unwrap().status().is_success(), "the server stays up");

    disk.grow(64);
    let resumed = publish(&mut StdRng::seed_from_u64(99), "resumed".into()).await;
    let resumed = resumed.unwrap();
    assert_eq!(resumed.status(), StatusCode::CREATED, "space came back");
    let seq = resumed.json::<Value>().await.unwrap()["seq"].as_i64();
    assert_eq!(seq, Some(acknowledged.len() as i64 + 1), "no seq lost");

    let db = sqlx::PgPool::connect(&url).await.unwrap();
    let logged: Vec<(i64, String)> =
        sqlx::query_as("SELECT seq, data->>'text' FROM events WHERE room = $1 ORDER BY seq")
            .bind(room.as_str())
            .fetch_all(&db)
            .await
            .unwrap();
    assert_eq!(logged[..acknowledged.len()], acknowledged[..]);
    db.close().await;
    admin.close().await;
    app.stop().await.unwrap();
    pg.stop().await.unwrap();
    drop(disk);
    std::fs::remove_dir_all(&data_dir).unwrap();
    std::fs::remove_dir(&path).unwrap();
}

/// The figures of a scrape of `/metrics` a leak would show in.
#[derive(Debug)]
struct Footprint {
    connections: f64,
    rooms: f64,
    tasks: f64,
    resident_bytes: f64,
}

impl Footprint {
    async fn of(http: &reqwest::Client, addr: SocketAddr) -> Self {
        let text = text_of(http, format!("http://{addr}/metrics")).await;
        let read = |name| scraped(&text, name).unwrap_or_else(|| panic!("{name} in {text}"));
        Self {
            connections: read("watchroom_connections"),
            rooms: read("watchroom_rooms"),
            tasks: read("watchroom_tasks"),
            resident_bytes: read("watchroom_resident_memory_bytes"),
        }
    }
}

/// One chaotic client's life, chosen by `rng`: it may behave, vanish mid-conversation, send
/// garbage, stop reading, or drop a frame halfway.
async fn chaotic_client(addr: SocketAddr, token: &str, rooms: &[RoomName], rng: &mut StdRng) {
    use futures::{SinkExt, StreamExt};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio_tungstenite::tungstenite::Message;

    let room = &rooms[rng.random_range(0..rooms.len())];
    let subscribe = json!({"type": "subscribe", "room": room}).to_string();
    let publish = json!({"type": "publish", "room": room, "kind": "notice",
                         "data": {"text": "chaos"}})
    .to_string();
    let linger = Duration::from_millis(rng.random_range(0..1_500));
    let url = format!("ws://{addr}/ws?token={token}");
    match rng.random_range(0..5) {
        // Behaves: subscribes, publishes, reads a while, says goodbye.
        0 => {
            let Ok((mut socket, _)) = tokio_tungstenite::connect_async(&url).await else {
                return;
            };
            let _ = socket.send(Message::text(subscribe)).await;
            for _ in 0..rng.random_range(1..5) {
                let _ = socket.send(Message::text(publish.clone())).await;
            }
            let _ = tokio::time::timeout(linger, async {
                while socket.next().await.is_some_and(|m| m.is_ok()) {}
            })
            .await;
            let _ = socket.close(None).await;
        }
        // Vanishes: the connection dropped with publishes in flight, no close.
        1 => {
            let Ok((mut socket, _)) = tokio_tungstenite::connect_async(&url).await else {
                return;
            };
            let _ = socket.send(Message::text(subscribe)).await;
            let _ = socket.send(Message::text(publish)).await;
            drop(socket);
        }
        // Garbage: not JSON, a binary frame, a frame past the limit.
        2 => {
            let Ok((mut socket, _)) = tokio_tungstenite::connect_async(&url).await else {
                return;
            };
            let garbage = match rng.random_range(0..3) {
                0 => Message::text("{not json"),
                1 => Message::binary(vec![0u8; 64]),
                _ => Message::text("x".repeat(256 * 1024)),
            };
            let _ = socket.send(garbage).await;
            let _ = tokio::time::timeout(linger, socket.next()).await;
        }
        // Never reads: subscribed to a busy room, it lets its window fill.
        3 => {
            let Ok((mut socket, _)) = tokio_tungstenite::connect_async(&url).await else {
                return;
            };
            let _ = socket.send(Message::text(subscribe)).await;
            tokio::time::sleep(linger * 2).await;
            drop(socket);
        }
        // Halfway: an upgrade, then half a frame header, then gone; or half a request.
        _ => {
            let Ok(mut tcp) = tokio::net::TcpStream::connect(addr).await else {
                return;
            };
            let upgrade = format!(
                "GET /ws?token={token} HTTP/1.1\r\nHost: {addr}\r\nUpgrade: websocket\r\n\
                 Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\
                 Sec-WebSocket-Version: 13\r\n\r\n"
            );
            if rng.random_bool(0.5) {
                let _ = tcp
                    .write_all(&upgrade.as_bytes()[..upgrade.len() / 2])
                    .await;
                tokio::time::sleep(linger).await;
                return;
            }
            let _ = tcp.write_all(upgrade.as_bytes()).await;
            let mut answer = [0u8; 1024];
            let _ = tokio::time::timeout(linger, tcp.read(&mut answer)).await;
            // A masked text frame of 300 bytes, cut inside its header.
            let _ = tcp.write_all(&[0x81, 0xFE, 0x01]).await;
        }
    }
}

#[tokio::test]
async fn thirty_seconds_of_client_chaos_leave_no_connection_room_or_task_behind() {
    let database = EmptyDatabase::create("chaos").await;
    let process = Process::start(
        &database.url,
        &[
            "--write-timeout",
            "1s",
            "--publish-rate",
            "1000000",
            "--publish-burst",
            "1000000",
            "--max-sockets-per-identity",
            "1000",
        ],
    )
    .await;
    let store = Store::connect(database.url.parse().unwrap(), Default::default())
        .await
        .unwrap();
    let token = token_in(&store, Role::Admin, &["*"], &["admin"]).await;
    let http = http_with(&token);
    let addr = process.addr;
    let before = Footprint::of(&http, addr).await;

    let rooms: Vec<RoomName> = (0..20).map(|_| unique_room("chaos")).collect();
    let until = tokio::time::Instant::now() + Duration::from_secs(30);
    let clients = (0..500).map(|c| {
        let (token, rooms) = (token.clone(), rooms.clone());
        tokio::spawn(async move {
            let mut rng = StdRng::seed_from_u64(c);
            let mut lives = 0;
            while tokio::time::Instant::now() < until {
                chaotic_client(addr, &token, &rooms, &mut rng).await;
                lives += 1;
                tokio::time::sleep(Duration::from_millis(rng.random_range(0..500))).await;
            }
            lives
        })
    });
    let mut lives = 0;
    for client in clients.collect::<Vec<_>>() {
        lives += client.await.unwrap();
    }

    // Everything the chaos opened goes, by itself; bounded only so a leak fails here.
    let mut after = Footprint::of(&http, addr).await;
    for _ in 0..300 {
        if after.connections == 0.0 && after.rooms == 0.0 && after.tasks <= before.tasks {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
        after = Footprint::of(&http, addr).await;
    }
    eprintln!("chaos: {lives} client lives; before {before:?}, after {after:?}");
    assert_eq!(after.connections, 0.0, "sockets leaked");
    assert_eq!(after.rooms, 0.0, "rooms leaked");
    assert!(
        after.tasks <= before.tasks,
        "tasks leaked: {before:?} → {after:?}"
    );
    // The allocator keeps some of what the peak took; a leak of 500 clients' buffers per
    // second would be far more.
    assert!(
        after.resident_bytes < before.resident_bytes + 64.0 * 1024.0 * 1024.0,
        "memory grew: {before:?} → {after:?}"
    );
    // And it still serves.
    post_notice_to(&http, addr, &rooms[0]).await;
    drop(process);
    drop(store);
    database.drop().await;
}

async fn post_notice_to(http: &reqwest::Client, addr: SocketAddr, room: &RoomName) {
    let response = http
        .post(format!("http://{addr}/api/rooms/{room}/events"))
        .json(&json!({"kind": "notice", "data": {"text": "after"}}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::CREATED);
}

#[tokio::test]
async fn a_minute_at_an_everyday_mix_keeps_every_socket_and_request_and_memory_flat() {
    let database = EmptyDatabase::create("soak").await;
    // With the host collector, as operators run it; one token stands for 500 people and 200
    // agents.
    let one_for_all = [
        "--max-sockets-per-identity",
        "500",
        "--publish-rate",
        "1000",
        "--publish-burst",
        "2000",
    ];
    let process = Process::start(&database.url, &one_for_all).await;
    let store = Store::connect(database.url.parse().unwrap(), Default::default())
        .await
        .unwrap();
    let token = token_in(&store, Role::Admin, &["*"], &["admin"]).await;
    let pid = process.child.id().unwrap().to_string();
    let soak = tokio::process::Command::new(env!("CARGO_BIN_EXE_loadgen"))
        .args(["--addr", &process.addr.to_string(), "--server-pid", &pid])
        .args([
            "--token",
            &token,
            "--subscribers",
            "500",
            "--sources",
            "200",
        ])
        .args(["--soak-rounds", "6", "--soak-every", "10"])
        .stderr(Stdio::inherit())
        .output()
        .await
        .unwrap();
    assert!(soak.status.success());
    let report = String::from_utf8(soak.stdout).unwrap();
    eprintln!("{report}");
    let field = |line: &str, name: &str| -> f64 {
        let value = line
            .split_whitespace()
            .find_map(|pair| pair.strip_prefix(&format!("{name}=")))
            .unwrap_or_else(|| panic!("{name} in {line}"));
        value.parse().unwrap()
    };
    let rounds: Vec<&str> = report.lines().filter(|l| l.starts_with("round=")).collect();
    assert_eq!(rounds.len(), 6);
    for round in &rounds {
        assert_eq!(field(round, "failures"), 0.0, "{round}");
        assert_eq!(field(round, "sockets"), 500.0, "{round}");
        // 500 sockets each see their source's sample event and the notice every second.
        assert!(field(round, "deliveries") > 500.0 * 2.0 * 5.0, "{round}");
    }
    // Flat: after the first round has warmed the caches, memory does not keep growing.
    let rss = |round: &str| field(round, "rss_kib");
    let (first, last) = (rss(rounds[1]), rss(rounds[5]));
    assert!(
        last < first * 1.25 + 16_384.0,
        "memory crept: {first} KiB → {last} KiB"
    );
    drop(process);
    drop(store);
    database.drop().await;
}
