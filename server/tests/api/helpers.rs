//! Starts real servers against a real Postgres and talks to them as clients do.

use std::{
    net::SocketAddr,
    process::Stdio,
    sync::atomic::{AtomicU32, Ordering},
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use app::auth::{Pattern, Role, Scope};
use app::protocol::{ClientFrame, Epoch, ErrorCode, Event, RoomName, ServerFrame};
use clap::Parser;
use futures::{SinkExt, StreamExt};
use serde_json::{Value, json};
use server::{Config, Running, store::Store};
use tokio::net::TcpStream;
use tokio_tungstenite::{
    MaybeTlsStream, WebSocketStream, connect_async,
    tungstenite::{
        Message,
        protocol::{CloseFrame, frame::coding::CloseCode},
    },
};

/// The database the tests use; `scripts/test` creates it.
pub const DEFAULT_TEST_DATABASE: &str = "postgres://postgres@127.0.0.1:5432/watchroom_test";
/// Upper bound for waiting on the server; only a broken server ever reaches it.
const PATIENCE: Duration = Duration::from_secs(20);

/// The server's defaults, on a free port, against the test database, without the host
/// collector's stream (its own test turns it on).
pub fn config() -> Config {
    let mut config = Config::parse_from([
        "server",
        "--listen",
        "127.0.0.1:0",
        "--host-metrics",
        "false",
    ]);
    config
        .database_url
        .get_or_insert_with(|| DEFAULT_TEST_DATABASE.into());
    config
}

/// A started server with an admin of its own, whose API token every helper sends.
pub struct TestApp {
    running: Running,
    token: String,
    http: reqwest::Client,
}

impl std::ops::Deref for TestApp {
    type Target = Running;
    fn deref(&self) -> &Running {
        &self.running
    }
}

/// Stands in for a password hash where the test signs in with a token only.
const NO_PASSWORD: &str =
    "$argon2id$v=19$m=19456,t=2,p=1$bm9wYXNzd29yZA$AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA";

impl TestApp {
    /// Gives `running` an admin of its own (in whatever database it uses) and a token.
    pub async fn new(running: Running) -> Self {
        let token = token_in(&running.store, Role::Admin, &["*"], &["admin"]).await;
        Self {
            http: http_with(&token),
            running,
            token,
        }
    }

    /// A token of a new user with `role` and `rooms`, scoped to `scopes`.
    pub async fn token_for(&self, role: Role, rooms: &[&str], scopes: &[&str]) -> String {
        token_in(&self.store, role, rooms, scopes).await
    }

    pub fn token(&self) -> &str {
        &self.token
    }

    /// An HTTP client that sends the admin's token.
    pub fn http(&self) -> &reqwest::Client {
        &self.http
    }

    pub async fn get(&self, url: impl reqwest::IntoUrl) -> reqwest::Response {
        self.http.get(url).send().await.unwrap()
    }

    pub async fn stop(self) -> Result<(), server::RunError> {
        self.running.stop().await
    }
}

/// A token of a new user of `store` with `role` and `rooms`, scoped to `scopes`.
pub async fn token_in(store: &Store, role: Role, rooms: &[&str], scopes: &[&str]) -> String {
    let name = unique_room("user").as_str().replace(':', "-");
    let rooms: Vec<Pattern> = rooms.iter().map(|p| Pattern::parse(p).unwrap()).collect();
    store
        .create_user(&name, NO_PASSWORD, role, &rooms, false)
        .await
        .expect("user created");
    let scopes: Vec<Scope> = scopes.iter().map(|s| Scope::parse(s).unwrap()).collect();
    server::auth::create_token(store, &name, "tests", &scopes, None)
        .await
        .expect("token created")
}

/// The body `http` is answered with for a GET of `url`, as text.
pub async fn text_of(http: &reqwest::Client, url: impl reqwest::IntoUrl) -> String {
    http.get(url).send().await.unwrap().text().await.unwrap()
}

/// An HTTP client sending `token` with every request.
pub fn http_with(token: &str) -> reqwest::Client {
    let mut headers = reqwest::header::HeaderMap::new();
    let bearer = format!("Bearer {token}").parse().unwrap();
    headers.insert(reqwest::header::AUTHORIZATION, bearer);
    // A server that stops answering fails the test that asked, rather than hanging the run.
    reqwest::Client::builder()
        .default_headers(headers)
        .timeout(PATIENCE)
        .build()
        .unwrap()
}

pub async fn start() -> TestApp {
    start_with(|_| {}).await
}

/// Starts a server with the defaults changed by `adjust`.
pub async fn start_with(adjust: impl FnOnce(&mut Config)) -> TestApp {
    TestApp::new(start_bare(adjust).await).await
}

/// Starts a server without making anyone who could use it.
pub async fn start_bare(adjust: impl FnOnce(&mut Config)) -> Running {
    let mut config = config();
    adjust(&mut config);
    server::start(&config).await.expect("server starts")
}

/// A directory for a private cluster, under the system temp dir: as root the cluster runs as
/// `postgres`, which must reach it. The space and quote prove paths reach `pg_ctl` and the
/// database URL escaped.
pub fn scratch_dir() -> std::path::PathBuf {
    std::env::temp_dir().join(format!("{} it's", unique_room("pg").as_str()))
}

/// A room name no other test (or earlier run) uses.
pub fn unique_room(label: &str) -> RoomName {
    static COUNTER: AtomicU32 = AtomicU32::new(0);
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    RoomName::parse(format!("t.{label}.{nanos}.{n}")).unwrap()
}

pub fn events_url(running: &TestApp, room: &str) -> String {
    format!("http://{}/api/rooms/{room}/events", running.addr)
}

pub async fn post_notice(running: &TestApp, room: &RoomName, text: &str) -> Value {
    let response = running
        .http()
        .post(events_url(running, room.as_str()))
        .json(&json!({"kind": "notice", "data": {"text": text}}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 201, "publish should succeed");
    response.json().await.unwrap()
}

pub async fn stored(running: &TestApp, room: &RoomName) -> Vec<Value> {
    running
        .get(events_url(running, room.as_str()))
        .await
        .json()
        .await
        .unwrap()
}

pub struct Client {
    socket: WebSocketStream<MaybeTlsStream<TcpStream>>,
}

impl Client {
    pub async fn connect(running: &TestApp) -> Self {
        Self::connect_with(running, running.token()).await
    }

    /// Opens a socket with `token` (in the query, as clients that cannot set headers do).
    pub async fn connect_with(running: &Running, token: &str) -> Self {
        Self::connect_to(running.addr, token).await
    }

    /// Opens a socket to whatever serves at `addr` (another process, a proxy) with `token`.
    pub async fn connect_to(addr: SocketAddr, token: &str) -> Self {
        let url = format!("ws://{addr}/ws?token={token}");
        let (socket, _) = connect_async(url).await.expect("socket opens");
        let mut client = Self { socket };
        match client.next().await {
            ServerFrame::Hello { heartbeat_ms } => assert!(heartbeat_ms > 0),
            other => panic!("expected hello first, got {other:?}"),
        }
        client
    }

    pub async fn send(&mut self, frame: &ClientFrame) {
        self.send_text(&serde_json::to_string(frame).unwrap()).await;
    }

    pub async fn send_text(&mut self, text: &str) {
        self.socket.send(Message::text(text)).await.expect("send");
    }

    /// Subscribes and waits for the confirmation, returning the frames that came before it
    /// (the replay) and the head it reported.
    pub async fn subscribe(
        &mut self,
        room: &RoomName,
        since: Option<i64>,
    ) -> (Vec<ServerFrame>, i64) {
        let (before, head, _) = self.subscribe_in(room, since, None).await;
        (before, head)
    }

    /// As [`Client::subscribe`], resuming in `epoch`; also returns the epoch reported.
    pub async fn subscribe_in(
        &mut self,
        room: &RoomName,
        since: Option<i64>,
        epoch: Option<Epoch>,
    ) -> (Vec<ServerFrame>, i64, Epoch) {
        self.send(&ClientFrame::Subscribe {
            room: room.clone(),
            since,
            epoch,
        })
        .await;
        let mut before = Vec::new();
        loop {
            match self.next().await {
                ServerFrame::Subscribed {
                    room: r,
                    head,
                    epoch,
                } if &r == room => return (before, head, epoch),
                frame => before.push(frame),
            }
        }
    }

    /// Subscribes to `room` expecting a refusal naming it; returns its code and message.
    pub async fn subscribe_refused(&mut self, room: &RoomName) -> (ErrorCode, String) {
        self.send(&ClientFrame::Subscribe {
            room: room.clone(),
            since: None,
            epoch: None,
        })
        .await;
        match self.next().await {
            ServerFrame::Error {
                code,
                room: Some(refused),
                message,
                ..
            } if &refused == room => (code, message),
            other => panic!("expected the subscribe to {room} refused, got {other:?}"),
        }
    }

    /// Subscribes with `since` and returns the seqs replayed before `subscribed`, and its head.
    pub async fn resume(&mut self, room: &RoomName, since: i64) -> (Vec<i64>, i64) {
        let (before, head) = self.subscribe(room, Some(since)).await;
        let replayed = before
            .into_iter()
            .map(|frame| match frame {
                ServerFrame::Event(event) => event.seq,
                other => panic!("expected only replayed events before subscribed, got {other:?}"),
            })
            .collect();
        (replayed, head)
    }

    /// The next frame other than a heartbeat ping or a presence update.
    pub async fn next(&mut self) -> ServerFrame {
        loop {
            match self.next_frame().await {
                ServerFrame::Ping | ServerFrame::Presence { .. } => continue,
                frame => return frame,
            }
        }
    }

    pub async fn next_frame(&mut self) -> ServerFrame {
        match self.next_message().await {
            Message::Text(text) => serde_json::from_str(&text).expect("server frames parse"),
            other => panic!("expected a text frame, got {other:?}"),
        }
    }

    pub async fn next_message(&mut self) -> Message {
        tokio::time::timeout(PATIENCE, self.socket.next())
            .await
            .expect("server answers in time")
            .expect("socket still open")
            .expect("socket reads")
    }

    /// Every event of `room` until (and including) seq `last`, skipping other frames.
    pub async fn events_until(&mut self, room: &RoomName, last: i64) -> Vec<Event> {
        let mut events = Vec::new();
        while events.last().is_none_or(|e: &Event| e.seq < last) {
            if let ServerFrame::Event(event) = self.next().await
                && &event.room == room
            {
                events.push(event);
            }
        }
        events
    }

    /// Reads past any text frames to the server's close frame and returns its code.
    pub async fn close_code(&mut self) -> CloseCode {
        self.close_frame().await.code
    }

    /// Reads past any text frames to the server's close frame.
    pub async fn close_frame(&mut self) -> CloseFrame {
        loop {
            match self.next_message().await {
                Message::Close(Some(frame)) => return frame,
                Message::Text(_) => continue,
                other => panic!("expected a close frame with a code, got {other:?}"),
            }
        }
    }

    /// Sends a WebSocket message of any kind (a ping, a close).
    pub async fn send_message(&mut self, message: Message) {
        self.socket.send(message).await.expect("send");
    }

    /// Writes `bytes` to the socket behind the WebSocket client's back: frames it would not send.
    pub async fn send_raw(&mut self, bytes: &[u8]) {
        use tokio::io::AsyncWriteExt;
        match self.socket.get_mut() {
            MaybeTlsStream::Plain(tcp) => tcp.write_all(bytes).await.expect("send"),
            _ => unreachable!("tests speak plain TCP"),
        }
    }

    /// Proves the connection (and the server behind it) still answers.
    pub async fn assert_answers_ping(&mut self) {
        self.send(&ClientFrame::Ping).await;
        assert_eq!(self.next().await, ServerFrame::Pong);
    }

    pub async fn close(mut self) {
        let _ = self.socket.close(None).await;
    }

    /// The seq of the next event frame; panics on anything else.
    pub async fn next_event_seq(&mut self, room: &RoomName) -> i64 {
        match self.next().await {
            ServerFrame::Event(event) if &event.room == room => event.seq,
            other => panic!("expected an event of {room}, got {other:?}"),
        }
    }
}

/// A pool on the test database, for what a test does behind the server's back.
pub async fn database() -> sqlx::PgPool {
    let url = config().database_url.expect("tests have a database");
    sqlx::PgPool::connect(&url).await.unwrap()
}

/// The seqs of the event frames among `frames`.
pub fn event_seqs(frames: &[ServerFrame]) -> Vec<i64> {
    frames
        .iter()
        .filter_map(|frame| match frame {
            ServerFrame::Event(event) => Some(event.seq),
            _ => None,
        })
        .collect()
}

/// A database of its own, empty until a server migrates it; dropped by [`EmptyDatabase::drop`].
pub struct EmptyDatabase {
    admin: sqlx::PgPool,
    name: String,
    pub url: String,
}

impl EmptyDatabase {
    pub async fn create(label: &str) -> Self {
        use sqlx::postgres::PgConnectOptions;

        let base = config().database_url.expect("tests have a database");
        let options: PgConnectOptions = base.parse().expect("a valid DATABASE_URL");
        let admin = sqlx::PgPool::connect_with(options.clone())
            .await
            .expect("the test database answers");
        let name = unique_room(label).as_str().replace(['.', '-'], "_");
        sqlx::query(&format!("CREATE DATABASE {name}"))
            .execute(&admin)
            .await
            .expect("may create databases");
        let url = match base.rsplit_once('/') {
            Some((server, rest)) => match rest.split_once('?') {
                Some((_, params)) => format!("{server}/{name}?{params}"),
                None => format!("{server}/{name}"),
            },
            None => panic!("DATABASE_URL {base} names no database"),
        };
        Self { admin, name, url }
    }

    /// `table` locked by another session, as a migration or an operator's forgotten
    /// transaction holds it, until the transaction is rolled back.
    pub async fn lock(&self, table: &str) -> sqlx::Transaction<'static, sqlx::Postgres> {
        let pool = sqlx::PgPool::connect(&self.url).await.unwrap();
        let mut session = pool.begin().await.unwrap();
        sqlx::query(&format!("LOCK TABLE {table} IN ACCESS EXCLUSIVE MODE"))
            .execute(&mut *session)
            .await
            .unwrap();
        session
    }

    pub async fn drop(self) {
        let drop = format!("DROP DATABASE {} WITH (FORCE)", self.name);
        sqlx::query(&drop).execute(&self.admin).await.unwrap();
    }
}

/// The value of the sample `name` (labels included, as written) in a `/metrics` scrape.
pub fn scraped(text: &str, name: &str) -> Option<f64> {
    text.lines()
        .find_map(|line| line.strip_prefix(name)?.strip_prefix(' '))
        .map(|v| v.trim().parse().unwrap())
}

/// One series of `source` over `[from, to)` in about `buckets` buckets, through the API.
pub async fn range(
    running: &TestApp,
    source: &str,
    series: &str,
    from: chrono::DateTime<chrono::Utc>,
    to: chrono::DateTime<chrono::Utc>,
    buckets: u32,
) -> Vec<app::metrics::Bucket> {
    let response = running
        .http()
        .get(format!("http://{}/api/metrics/range", running.addr))
        .query(&[
            ("source", source),
            ("series", series),
            ("from", &from.to_rfc3339()),
            ("to", &to.to_rfc3339()),
            ("buckets", &buckets.to_string()),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    response.json().await.unwrap()
}

/// A port free now, for a process to take a moment later.
fn free_port() -> SocketAddr {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
}

/// A server in a process of its own (`target/debug/server`), so it can be killed outright.
pub struct Process {
    pub child: tokio::process::Child,
    pub addr: SocketAddr,
}

impl Process {
    pub async fn start(database_url: &str, args: &[&str]) -> Self {
        let addr = free_port();
        let child = tokio::process::Command::new(env!("CARGO_BIN_EXE_server"))
            .args(["--listen", &addr.to_string()])
            .args(["--database-url", database_url])
            .args(args)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .unwrap();
        let healthz = format!("http://{addr}/healthz");
        for _ in 0..600 {
            if reqwest::get(&healthz)
                .await
                .is_ok_and(|r| r.status().is_success())
            {
                return Self { child, addr };
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("the server process did not come up on {addr}");
    }
}

/// A Redis of the test's own, on a port of its own, keeping nothing on disk; it can be stopped
/// and started again on the same port.
pub struct PrivateRedis {
    addr: SocketAddr,
    child: Option<tokio::process::Child>,
}

impl PrivateRedis {
    pub async fn start() -> Self {
        let mut redis = Self {
            addr: free_port(),
            child: None,
        };
        redis.restart().await;
        redis
    }

    pub fn url(&self) -> String {
        format!("redis://{}", self.addr)
    }

    /// Starts it (again) and waits until it answers.
    pub async fn restart(&mut self) {
        let child = tokio::process::Command::new("redis-server")
            .args([
                "--bind",
                "127.0.0.1",
                "--port",
                &self.addr.port().to_string(),
            ])
            .args(["--save", "", "--appendonly", "no"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .expect("redis-server is installed (scripts/test installs it)");
        self.child = Some(child);
        for _ in 0..200 {
            if self.answers().await {
                return;
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        panic!("redis-server did not come up on {}", self.addr);
    }

    async fn answers(&self) -> bool {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let Ok(mut stream) = TcpStream::connect(self.addr).await else {
            return false;
        };
        let mut reply = [0; 7];
        stream.write_all(b"PING\r\n").await.is_ok()
            && stream.read_exact(&mut reply).await.is_ok()
            && &reply == b"+PONG\r\n"
    }

    /// Kills it, as a crash or a restart would.
    pub async fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            child.kill().await.unwrap();
        }
    }
}
