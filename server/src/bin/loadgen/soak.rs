//! A soak at an operator's everyday mix, for as long as asked: sources pushing samples every
//! second over HTTP, sockets watching their rooms and a notice room, one notice a second. Each
//! round prints the server's memory and CPU, the latencies seen and any failure, so a slow leak
//! or a creeping latency shows as a trend.

use std::{
    sync::{
        Arc, Mutex,
        atomic::{AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

use app::{
    metrics::source_room,
    protocol::{ClientFrame, RoomName},
};
use futures::{SinkExt, future::join_all};
use serde_json::json;
use tokio_tungstenite::{connect_async, tungstenite::Message};

use crate::{proc_cpu_ticks, proc_rss_kib, read_events, stamp};

/// Series each source sends every second.
const SERIES: usize = 10;

pub struct Plan {
    pub sources: usize,
    pub sockets: usize,
    pub every: Duration,
    pub rounds: usize,
}

/// What the round so far has seen; taken and reset at each report.
#[derive(Default)]
struct Round {
    ingest_us: Mutex<Vec<u32>>,
    notice_us: Mutex<Vec<u32>>,
    deliveries: AtomicU64,
    failures: AtomicU64,
    /// Sockets open now (not reset).
    open: AtomicU64,
}

pub async fn run(addr: std::net::SocketAddr, token: &str, server_pid: u32, plan: Plan) {
    let start = Instant::now();
    let round = Arc::new(Round::default());
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .expect("an HTTP client");
    let base = format!("http://{addr}");
    let notices = RoomName::parse(format!("soak.{}", std::process::id())).unwrap();

    let url = format!("ws://{addr}/ws?token={token}");
    let watchers = (0..plan.sockets).map(|i| {
        let source = source_room(&format!("soak-{}", i % plan.sources)).unwrap();
        watch(url.clone(), [source, notices.clone()], start, round.clone())
    });
    join_all(watchers).await;

    for i in 0..plan.sources {
        let (http, base, token, round) =
            (http.clone(), base.clone(), token.to_owned(), round.clone());
        tokio::spawn(async move {
            let source = format!("soak-{i}");
            // Spread over the second, as independent agents would be.
            tokio::time::sleep(Duration::from_millis((i * 1000 / plan.sources) as u64)).await;
            let mut tick = tokio::time::interval(Duration::from_secs(1));
            let mut value = 0.0;
            loop {
                tick.tick().await;
                value += 1.0;
                let batch: Vec<_> = (0..SERIES)
                    .map(|s| json!({"source": source, "series": format!("s{s}"), "value": value}))
                    .collect();
                let sent = Instant::now();
                let answer = http
                    .post(format!("{base}/api/metrics"))
                    .bearer_auth(&token)
                    .json(&batch)
                    .send()
                    .await;
                note(&round, Some((&round.ingest_us, sent.elapsed())), answer);
            }
        });
    }
    {
        let (http, token, round) = (http.clone(), token.to_owned(), round.clone());
        let url = format!("{base}/api/rooms/{notices}/events");
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_secs(1));
            loop {
                tick.tick().await;
                let t = start.elapsed().as_micros() as u64;
                let answer = http
                    .post(&url)
                    .bearer_auth(&token)
                    .json(&json!({"kind": "notice", "data": {"text": "soak", "t": t}}))
                    .send()
                    .await;
                note(&round, None, answer);
            }
        });
    }

    let ticks_per_sec = 100.0; // Linux USER_HZ
    let mut cpu = proc_cpu_ticks(&[server_pid]);
    let mut at = Instant::now();
    for n in 1..=plan.rounds {
        tokio::time::sleep(plan.every).await;
        let (cpu_now, now) = (proc_cpu_ticks(&[server_pid]), Instant::now());
        let cpu_pct = (cpu_now - cpu) as f64 / ticks_per_sec / (now - at).as_secs_f64() * 100.0;
        (cpu, at) = (cpu_now, now);
        let ingest = percentiles(&round.ingest_us);
        let notice = percentiles(&round.notice_us);
        println!(
            "round={n} at_s={:.0} rss_kib={} cpu_pct={cpu_pct:.1} sockets={} deliveries={} \
             failures={} ingest_ms p50={:.2} p99={:.2} notice_ms p50={:.2} p99={:.2}",
            start.elapsed().as_secs_f64(),
            proc_rss_kib(&[server_pid]),
            round.open.load(Ordering::Relaxed),
            round.deliveries.swap(0, Ordering::Relaxed),
            round.failures.swap(0, Ordering::Relaxed),
            ingest.0,
            ingest.1,
            notice.0,
            notice.1,
        );
    }
}

/// Counts a request's failure, or keeps the time it took in `timed`'s list.
fn note(
    round: &Round,
    timed: Option<(&Mutex<Vec<u32>>, Duration)>,
    answer: reqwest::Result<reqwest::Response>,
) {
    match answer {
        Ok(response) if response.status().is_success() => {
            if let Some((times, took)) = timed {
                times.lock().unwrap().push(took.as_micros() as u32);
            }
        }
        Ok(response) => {
            eprintln!("refused: {}", response.status());
            round.failures.fetch_add(1, Ordering::Relaxed);
        }
        Err(e) => {
            eprintln!("failed: {e}");
            round.failures.fetch_add(1, Ordering::Relaxed);
        }
    }
}

/// p50 and p99 in milliseconds of what `times` gathered, which starts over.
fn percentiles(times: &Mutex<Vec<u32>>) -> (f64, f64) {
    let mut times = std::mem::take(&mut *times.lock().unwrap());
    times.sort_unstable();
    let at = |p: f64| {
        let i = ((times.len() as f64 * p) as usize).min(times.len().saturating_sub(1));
        times.get(i).copied().unwrap_or(0) as f64 / 1000.0
    };
    (at(0.5), at(0.99))
}

/// A socket watching `rooms`, counting what arrives and timing the stamped notices; one that
/// fails to open, or that the server closes, counts as a failure.
async fn watch(url: String, rooms: [RoomName; 2], start: Instant, round: Arc<Round>) {
    let Ok((mut socket, _)) = connect_async(&url).await else {
        round.failures.fetch_add(1, Ordering::Relaxed);
        return;
    };
    for room in rooms {
        let frame = ClientFrame::Subscribe {
            room,
            since: None,
            epoch: None,
        };
        let text = serde_json::to_string(&frame).expect("frames serialise");
        if socket.send(Message::text(text)).await.is_err() {
            round.failures.fetch_add(1, Ordering::Relaxed);
            return;
        }
    }
    round.open.fetch_add(1, Ordering::Relaxed);
    tokio::spawn(async move {
        read_events(socket, |text| {
            round.deliveries.fetch_add(1, Ordering::Relaxed);
            if let Some(t) = stamp(text) {
                let now = start.elapsed().as_micros() as u64;
                let took = now.saturating_sub(t) as u32;
                round.notice_us.lock().unwrap().push(took);
            }
        })
        .await;
        round.open.fetch_sub(1, Ordering::Relaxed);
        round.failures.fetch_add(1, Ordering::Relaxed);
    });
}
