//! Load generator for a running Watchroom server: N WebSocket subscribers in one room and one
//! publisher, reporting deliveries per second, publish→receive latency, and the server's RSS and
//! CPU time per delivery (read from /proc, so it must run on the server's machine); or alert
//! latency; or a soak at an everyday mix (`soak`).
//!
//! Loopback only: it refuses any address that is not on this machine.

use std::{
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

use app::{
    alerts::{AlertEvent, News, State},
    protocol::{ClientFrame, EventKind, RoomName, ServerFrame},
};
use clap::Parser;
use futures::{SinkExt, StreamExt};
use serde_json::json;
use tokio_tungstenite::{
    MaybeTlsStream, WebSocketStream, connect_async_with_config, tungstenite::Message,
};

mod raw;
mod soak;

#[derive(Parser)]
struct Args {
    /// Server address (loopback); the publisher's node.
    #[arg(long, default_value = "127.0.0.1:3000")]
    addr: std::net::SocketAddr,
    /// Another node of the same cluster (loopback): subscribers alternate between the two, so
    /// half of them get each event through the bus.
    #[arg(long)]
    also: Option<std::net::SocketAddr>,
    /// An API token that may read and publish the benchmark's room (`server token create`).
    #[arg(long, env = "WATCHROOM_TOKEN")]
    token: String,
    /// PID of the server process, for its CPU time and RSS; once per node of a cluster (their
    /// sums are reported).
    #[arg(long, required = true)]
    server_pid: Vec<u32>,
    /// Subscribed connections.
    #[arg(long, default_value_t = 1000)]
    subscribers: usize,
    /// Publishes per second; 0 publishes closed-loop, keeping `window` unacknowledged.
    #[arg(long, default_value_t = 0.0)]
    rate: f64,
    /// Unacknowledged publishes in flight in closed-loop mode.
    #[arg(long, default_value_t = 32)]
    window: usize,
    /// Seconds measured, after one second of warm-up.
    #[arg(long, default_value_t = 10.0)]
    seconds: f64,
    /// Only connect and subscribe, then report the server's memory per connection.
    #[arg(long)]
    idle: bool,
    /// Instead of fan-out: time this many alerts from sample to `firing` on a socket.
    #[arg(long)]
    alert_rounds: Option<usize>,
    /// Instead of fan-out: a soak of this many rounds, `--subscribers` sockets watching
    /// `--sources` sources that push samples every second.
    #[arg(long)]
    soak_rounds: Option<usize>,
    /// Seconds per soak round (one report each).
    #[arg(long, default_value_t = 60.0)]
    soak_every: f64,
    /// Sources pushing samples in a soak.
    #[arg(long, default_value_t = 200)]
    sources: usize,
}

struct Shared {
    start: Instant,
    measuring: AtomicBool,
    /// The subscribers' reader ends.
    stopped: AtomicBool,
    deliveries: AtomicU64,
    latencies: Latencies,
}

/// Publish→receive latencies, counted without a lock: every subscriber's task records into it at
/// once, and a shared lock would time the generator's own contention.
struct Latencies {
    /// How many fell in each bucket of [`BUCKET_US`].
    buckets: Box<[AtomicU32]>,
    max_us: AtomicU64,
}

const BUCKET_US: u64 = 10;

impl Latencies {
    fn new() -> Self {
        // Up to 20 s; anything longer counts in the last bucket (and as the max).
        let buckets = (0..2_000_000).map(|_| AtomicU32::new(0)).collect();
        Self {
            buckets,
            max_us: AtomicU64::new(0),
        }
    }

    fn record(&self, us: u64) {
        let bucket = ((us / BUCKET_US) as usize).min(self.buckets.len() - 1);
        self.buckets[bucket].fetch_add(1, Ordering::Relaxed);
        self.max_us.fetch_max(us, Ordering::Relaxed);
    }

    /// The latency, in ms, that a share `p` of the recorded ones did not exceed.
    fn percentile(&self, p: f64) -> f64 {
        let counts: Vec<u64> = self
            .buckets
            .iter()
            .map(|b| u64::from(b.load(Ordering::Relaxed)))
            .collect();
        let wanted = ((counts.iter().sum::<u64>() as f64 * p) as u64).max(1);
        let mut seen = 0;
        let bucket = counts
            .iter()
            .position(|&n| {
                seen += n;
                seen >= wanted
            })
            .unwrap_or(0);
        ((bucket as u64 + 1) * BUCKET_US) as f64 / 1000.0
    }

    fn max_ms(&self) -> f64 {
        self.max_us.load(Ordering::Relaxed) as f64 / 1000.0
    }
}

/// CPU ticks of every process of `pids`.
fn proc_cpu_ticks(pids: &[u32]) -> u64 {
    pids.iter().copied().map(cpu_ticks).sum()
}

/// Resident KiB of every process of `pids`.
fn proc_rss_kib(pids: &[u32]) -> u64 {
    pids.iter().copied().map(rss_kib).sum()
}

fn cpu_ticks(pid: u32) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).expect("server pid readable");
    // Fields after the parenthesised command name; utime and stime are the 12th and 13th.
    let rest = &stat[stat.rfind(')').expect("stat format") + 2..];
    let fields: Vec<&str> = rest.split(' ').collect();
    fields[11].parse::<u64>().unwrap() + fields[12].parse::<u64>().unwrap()
}

fn rss_kib(pid: u32) -> u64 {
    let status =
        std::fs::read_to_string(format!("/proc/{pid}/status")).expect("server pid readable");
    let line = status
        .lines()
        .find(|l| l.starts_with("VmRSS:"))
        .expect("VmRSS present");
    line.split_whitespace().nth(1).unwrap().parse().unwrap()
}

#[tokio::main]
async fn main() {
    let args = Args::parse();
    assert!(
        args.addr.ip().is_loopback() && args.also.is_none_or(|also| also.ip().is_loopback()),
        "load is only ever sent to a loopback address"
    );
    let urls: Vec<String> = std::iter::once(args.addr)
        .chain(args.also)
        .map(|addr| format!("ws://{addr}/ws?token={}", args.token))
        .collect();
    let pids = &args.server_pid;
    if let Some(rounds) = args.alert_rounds {
        return alert_latency(&args, &urls[0], rounds).await;
    }
    if let Some(rounds) = args.soak_rounds {
        let plan = soak::Plan {
            sources: args.sources,
            sockets: args.subscribers,
            every: Duration::from_secs_f64(args.soak_every),
            rounds,
        };
        return soak::run(args.addr, &args.token, args.server_pid[0], plan).await;
    }
    let room = RoomName::parse(format!("bench.{}", std::process::id())).unwrap();
    let shared = Arc::new(Shared {
        start: Instant::now(),
        measuring: AtomicBool::new(false),
        stopped: AtomicBool::new(false),
        deliveries: AtomicU64::new(0),
        latencies: Latencies::new(),
    });

    let rss_before = proc_rss_kib(pids);
    let addrs: Vec<std::net::SocketAddr> = std::iter::once(args.addr).chain(args.also).collect();
    let (token, subscribed) = (args.token.clone(), room.clone());
    let count = args.subscribers;
    let sockets =
        tokio::task::spawn_blocking(move || raw::connect(&addrs, &token, &subscribed, count))
            .await
            .expect("subscribers connect");
    let reader = raw::read(sockets, shared.clone());
    eprintln!("{} subscribers connected", args.subscribers);
    if args.idle {
        tokio::time::sleep(Duration::from_secs(2)).await;
        let rss_after = proc_rss_kib(pids);
        let per = (rss_after.saturating_sub(rss_before)) as f64 / args.subscribers as f64;
        println!(
            "idle connections={} server_rss_before={}KiB after={}KiB per_connection={:.1}KiB",
            args.subscribers, rss_before, rss_after, per
        );
        return;
    }

    let publisher = tokio::spawn(publish(
        urls[0].clone(),
        room.clone(),
        args.rate,
        args.window,
        shared.clone(),
    ));
    tokio::time::sleep(Duration::from_secs(1)).await;
    let commits_before = commit_histogram(&args).await;
    let cpu_before = proc_cpu_ticks(pids);
    let delivered_before = shared.deliveries.load(Ordering::Relaxed);
    shared.measuring.store(true, Ordering::Relaxed);
    let began = Instant::now();
    tokio::time::sleep(Duration::from_secs_f64(args.seconds)).await;
    shared.measuring.store(false, Ordering::Relaxed);
    let elapsed = began.elapsed().as_secs_f64();
    let cpu_after = proc_cpu_ticks(pids);
    let commits = commit_histogram(&args).await.since(&commits_before);
    let delivered = shared.deliveries.load(Ordering::Relaxed) - delivered_before;
    publisher.abort();
    shared.stopped.store(true, Ordering::Relaxed);
    reader.join().expect("the reader ends");

    let clock_ticks_per_sec = 100.0; // Linux USER_HZ
    let cpu_secs = (cpu_after - cpu_before) as f64 / clock_ticks_per_sec;
    let latencies = &shared.latencies;
    println!(
        "nodes={} subscribers={} rate={} window={} seconds={:.1} deliveries={} deliveries_per_s={:.0} \
         latency_ms p50={:.2} p99={:.2} max={:.2} server_cpu_s={:.2} cpu_us_per_delivery={:.3} server_rss={}KiB \
         commits={} commit_ms p50<={} p99<={}",
        urls.len(),
        args.subscribers,
        if args.rate > 0.0 {
            format!("{}", args.rate)
        } else {
            "closed-loop".into()
        },
        args.window,
        elapsed,
        delivered,
        delivered as f64 / elapsed,
        latencies.percentile(0.50),
        latencies.percentile(0.99),
        latencies.max_ms(),
        cpu_secs,
        cpu_secs * 1e6 / delivered.max(1) as f64,
        proc_rss_kib(pids),
        commits.total(),
        commits.bound_ms(0.50),
        commits.bound_ms(0.99),
    );
}

/// The first node's commits, from its `/metrics` histogram: how much of the publish → receive
/// latency goes to committing (every delivery waits for its event's commit), which no fan-out
/// can save. Counts by bucket upper bound (seconds), cumulative.
struct Commits(Vec<(f64, u64)>);

async fn commit_histogram(args: &Args) -> Commits {
    const BUCKET: &str = "watchroom_writer_commit_seconds_bucket{le=\"";
    let scrape = reqwest::Client::new()
        .get(format!("http://{}/metrics", args.addr))
        .bearer_auth(&args.token)
        .send()
        .await;
    let text = match scrape {
        Ok(response) => response.text().await.unwrap_or_default(),
        Err(_) => String::new(),
    };
    Commits(
        text.lines()
            .filter_map(|line| {
                let (le, count) = line.strip_prefix(BUCKET)?.split_once("\"} ")?;
                let le = match le {
                    "+Inf" => f64::INFINITY,
                    le => le.parse().ok()?,
                };
                Some((le, count.trim().parse().ok()?))
            })
            .collect(),
    )
}

impl Commits {
    /// Those made since `before` was read.
    fn since(self, before: &Commits) -> Commits {
        let earlier = |le: f64| {
            before
                .0
                .iter()
                .find(|(b, _)| *b == le)
                .map_or(0, |(_, n)| *n)
        };
        Commits(
            self.0
                .into_iter()
                .map(|(le, n)| (le, n.saturating_sub(earlier(le))))
                .collect(),
        )
    }

    fn total(&self) -> u64 {
        self.0.last().map_or(0, |(_, n)| *n)
    }

    /// The upper bound of the bucket holding quantile `q`, in milliseconds.
    fn bound_ms(&self, q: f64) -> String {
        let wanted = (q * self.total() as f64).ceil() as u64;
        match self.0.iter().find(|(_, n)| *n >= wanted.max(1)) {
            Some((le, _)) if le.is_finite() => format!("{}", le * 1000.0),
            Some(_) => "inf".into(),
            None => "?".into(),
        }
    }
}

/// Reads `socket` until it ends, answering pings and handing each event frame to `on_event`.
/// Server frames are told apart by their leading `type` rather than parsed: the generator shares
/// the cores with the server it measures.
async fn read_events(
    mut socket: WebSocketStream<MaybeTlsStream<tokio::net::TcpStream>>,
    mut on_event: impl FnMut(&str),
) {
    while let Some(Ok(message)) = socket.next().await {
        let Message::Text(text) = message else {
            continue;
        };
        if text.starts_with(r#"{"type":"ping""#) {
            let pong = serde_json::to_string(&ClientFrame::Pong).expect("frames serialise");
            let _ = socket.send(Message::text(pong)).await;
        } else if text.starts_with(r#"{"type":"event""#) {
            on_event(&text);
        }
    }
}

/// The publisher's `"t":` microsecond stamp in an event frame.
fn stamp(frame: &str) -> Option<u64> {
    let from = frame.find(r#""t":"#)? + 4;
    let digits = frame[from..]
        .find(|c: char| !c.is_ascii_digit())
        .map_or(&frame[from..], |end| &frame[from..from + end]);
    digits.parse().ok()
}

async fn publish(url: String, room: RoomName, rate: f64, window: usize, shared: Arc<Shared>) {
    let (socket, _) = connect_async_with_config(&url, None, true)
        .await
        .expect("connect publisher");
    let (mut tx, mut rx) = socket.split();
    let frame = |shared: &Shared| {
        let t = shared.start.elapsed().as_micros() as u64;
        let data = json!({"series": "bench", "value": 1.5, "t": t});
        let frame = ClientFrame::Publish {
            room: room.clone(),
            kind: EventKind::Metric,
            data,
            reference: None,
        };
        Message::text(serde_json::to_string(&frame).unwrap())
    };
    if rate > 0.0 {
        let mut tick = tokio::time::interval(Duration::from_secs_f64(1.0 / rate));
        tokio::spawn(async move { while rx.next().await.is_some() {} });
        loop {
            tick.tick().await;
            if tx.send(frame(&shared)).await.is_err() {
                return;
            }
        }
    }
    for _ in 0..window {
        tx.feed(frame(&shared)).await.expect("publish");
    }
    tx.flush().await.expect("publish");
    while let Some(Ok(Message::Text(text))) = rx.next().await {
        let answered = text.contains(r#""type":"published""#) || text.contains(r#""type":"error""#);
        if answered && tx.send(frame(&shared)).await.is_err() {
            return;
        }
    }
}

/// Sample → `firing` delivered, for a rule with no pending period: each round sends one sample
/// over the threshold and times the transition's arrival on a socket watching room `alerts`,
/// from before the request (an upper bound) and from the server's answer (the sample committed);
/// then sends one under it and waits for the resolve.
async fn alert_latency(args: &Args, url: &str, rounds: usize) {
    let base = format!("http://{}", args.addr);
    let http = reqwest::Client::new();
    let bearer = format!("Bearer {}", args.token);
    let source = format!("bench-alert-{}", std::process::id());
    let rule: serde_json::Value = http
        .post(format!("{base}/api/alerts/rules"))
        .header("authorization", &bearer)
        .json(&json!({"name": "bench latency", "source": source, "series": "lat", "op": ">", "threshold": 0.5}))
        .send()
        .await
        .expect("rule created")
        .json()
        .await
        .unwrap();
    let id = rule["id"].as_i64().expect("a rule id");
    let (mut socket, _) = connect_async_with_config(url, None, true)
        .await
        .expect("socket");
    let subscribe = ClientFrame::Subscribe {
        room: RoomName::parse("alerts").unwrap(),
        since: None,
        epoch: None,
    };
    let text = serde_json::to_string(&subscribe).unwrap();
    socket.send(Message::text(text)).await.unwrap();
    let (mut from_send, mut from_commit) = (Vec::new(), Vec::new());
    for round in 0..=rounds {
        for (value, state) in [(1.0, State::Firing), (0.0, State::Resolved)] {
            let sent = Instant::now();
            let samples = json!([{"source": source, "series": "lat", "value": value}]);
            let post = http
                .post(format!("{base}/api/metrics"))
                .header("authorization", &bearer)
                .json(&samples)
                .send();
            let arrival = async {
                while let Some(Ok(message)) = socket.next().await {
                    let Message::Text(text) = message else {
                        continue;
                    };
                    let Ok(ServerFrame::Event(event)) = serde_json::from_str(&text) else {
                        continue;
                    };
                    let news = serde_json::from_value::<AlertEvent>(event.data).map(|e| e.news);
                    if let Ok(News::Transition(t)) = news
                        && t.key.rule == id
                        && t.state == state
                    {
                        return Instant::now();
                    }
                }
                panic!("the socket closed");
            };
            let (answered, arrived) = tokio::join!(
                async {
                    post.await.expect("sample sent");
                    Instant::now()
                },
                arrival
            );
            // Round 0 warms up connections and caches.
            if state == State::Firing && round > 0 {
                from_send.push(arrived - sent);
                from_commit.push(arrived.saturating_duration_since(answered));
            }
        }
    }
    http.delete(format!("{base}/api/alerts/rules/{id}"))
        .header("authorization", &bearer)
        .send()
        .await
        .expect("rule deleted");
    for (what, mut times) in [("sent", from_send), ("committed", from_commit)] {
        times.sort_unstable();
        let ms = |p: f64| {
            times[((times.len() as f64 * p) as usize).min(times.len() - 1)].as_secs_f64() * 1000.0
        };
        println!(
            "alert rounds={rounds} from={what} to=firing-delivered latency_ms p50={:.2} p99={:.2} max={:.2}",
            ms(0.5),
            ms(0.99),
            ms(1.0)
        );
    }
}
