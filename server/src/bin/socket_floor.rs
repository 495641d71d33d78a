//! The floor under the fan-out latency figures: the same fan-out as `loadgen --rate`, done with
//! nothing but plain loopback TCP writes — no WebSocket framing, no runtime, no database. Sender
//! threads write each due frame to every connection (frames that fell due meanwhile go out
//! together, in one write); a receiver thread reads them with epoll and measures
//! due→receive latency. No server can fan out faster on the machine this runs on.
//!
//! With `--commit`, a frame is written only once committed to the database the way the server's
//! writer commits an event (its room's head bumped, the event inserted, the WAL flushed; frames
//! that fell due meanwhile in one transaction): the floor of a fan-out that loses nothing, which
//! a server persisting every event cannot beat. With `--connections 1` it is the commits' own
//! latency, with next to no fan-out beside them.

use std::{
    io::{ErrorKind, Read, Write},
    net::{TcpListener, TcpStream},
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

use clap::Parser;
use mio::{Events, Interest, Poll, Token, net::TcpStream as MioStream};
use sqlx::{Connection, PgConnection};

#[derive(Parser)]
struct Args {
    /// Connections every frame goes to.
    #[arg(long, default_value_t = 1000)]
    connections: usize,
    /// Frames per second.
    #[arg(long, default_value_t = 200.0)]
    rate: f64,
    /// Threads sharing the writes, as a multi-threaded server would.
    #[arg(long, default_value_t = 2)]
    senders: usize,
    /// Bytes per frame (an event frame of `loadgen` is 152).
    #[arg(long, default_value_t = 152)]
    frame_bytes: usize,
    /// Seconds measured, after one second of warm-up.
    #[arg(long, default_value_t = 10.0)]
    seconds: f64,
    /// Commit each frame to the database before writing it.
    #[arg(long, requires = "database_url")]
    commit: bool,
    /// The database `--commit` writes to, migrated by a server.
    #[arg(long, env = "DATABASE_URL")]
    database_url: Option<String>,
}

fn main() {
    let args = Args::parse();
    assert!(args.frame_bytes >= 8, "a frame carries its 8-byte due time");
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind loopback");
    let addr = listener.local_addr().unwrap();
    let mut writers = Vec::with_capacity(args.connections);
    let mut readers = Vec::with_capacity(args.connections);
    for _ in 0..args.connections {
        let reader = TcpStream::connect(addr).expect("connect");
        let (writer, _) = listener.accept().expect("accept");
        writer.set_nodelay(true).unwrap();
        reader.set_nonblocking(true).unwrap();
        writers.push(writer);
        readers.push(MioStream::from_std(reader));
    }

    let start = Instant::now();
    let warm_up = Duration::from_secs(1);
    let end = warm_up + Duration::from_secs_f64(args.seconds);
    let cpu_before = process_cpu_secs();
    let receiver =
        std::thread::spawn(move || receive(readers, args.frame_bytes, start, warm_up, end));
    // Frames committed so far, when they wait for the database; the schedule alone otherwise.
    let (committed, committer) = match args.commit {
        false => (None, None),
        true => {
            let url = args
                .database_url
                .clone()
                .expect("clap requires it with --commit");
            let committed = Arc::new(AtomicU64::new(0));
            let done = committed.clone();
            let committer = std::thread::spawn(move || {
                commit_in_turn(&url, args.rate, done, start, warm_up, end)
            });
            (Some(committed), Some(committer))
        }
    };
    let mut shares: Vec<Vec<TcpStream>> = (0..args.senders).map(|_| Vec::new()).collect();
    for (i, writer) in writers.into_iter().enumerate() {
        shares[i % args.senders].push(writer);
    }
    let senders: Vec<_> = shares
        .into_iter()
        .map(|share| {
            let committed = committed.clone();
            std::thread::spawn(move || {
                send(share, args.rate, args.frame_bytes, committed, start, end)
            })
        })
        .collect();
    for sender in senders {
        sender.join().unwrap();
    }
    let mut latencies = receiver.join().unwrap();
    let cpu = process_cpu_secs() - cpu_before;
    let commits = committer.map(|committer| committer.join().unwrap());

    latencies.sort_unstable();
    let pct = |p: f64| percentile(&latencies, p);
    let ms = |us: u64| us as f64 / 1000.0;
    print!(
        "connections={} rate={} senders={} deliveries={} latency_ms p50={:.2} p99={:.2} max={:.2} \
         cpu_us_per_delivery={:.2} (writer and reader together)",
        args.connections,
        args.rate,
        args.senders,
        latencies.len(),
        ms(pct(0.50)),
        ms(pct(0.99)),
        ms(*latencies.last().unwrap()),
        cpu * 1e6 / latencies.len() as f64,
    );
    match commits {
        None => println!(),
        Some(mut commits) => {
            commits.sort_unstable();
            println!(
                " commits={} commit_ms p50={:.2} p99={:.2}",
                commits.len(),
                ms(percentile(&commits, 0.50)),
                ms(percentile(&commits, 0.99)),
            );
        }
    }
}

fn percentile(sorted: &[u64], p: f64) -> u64 {
    sorted[((sorted.len() as f64 * p) as usize).min(sorted.len() - 1)]
}

/// Commits every frame as it falls due, those that fell due meanwhile together, and counts them
/// in `committed`; returns each commit's latency after the warm-up, in µs.
fn commit_in_turn(
    url: &str,
    rate: f64,
    committed: Arc<AtomicU64>,
    start: Instant,
    warm_up: Duration,
    end: Duration,
) -> Vec<u64> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a runtime");
    runtime.block_on(async {
        let mut db = PgConnection::connect(url)
            .await
            .expect("the database answers");
        let room = format!("bench.socket-floor.{}", std::process::id());
        let mut latencies = Vec::new();
        let mut done = 0;
        while start.elapsed() < end {
            let due = (start.elapsed().as_secs_f64() * rate) as u64 + 1;
            if due <= done {
                // As the senders wait: the runtime's timer would round up to a millisecond.
                std::thread::sleep(Duration::from_micros(100));
                continue;
            }
            let began = Instant::now();
            commit(&mut db, &room, (due - done) as i64)
                .await
                .expect("a commit");
            if start.elapsed() > warm_up {
                latencies.push(began.elapsed().as_micros() as u64);
            }
            done = due;
            committed.store(done, Ordering::Release);
        }
        latencies
    })
}

/// `frames` events of one room in one transaction, as the server's writer stores a batch.
async fn commit(db: &mut PgConnection, room: &str, frames: i64) -> sqlx::Result<()> {
    let mut tx = db.begin().await?;
    let head: i64 = sqlx::query_scalar(
        "INSERT INTO rooms (name, head) VALUES ($1, $2)
         ON CONFLICT (name) DO UPDATE SET head = rooms.head + EXCLUDED.head RETURNING head",
    )
    .bind(room)
    .bind(frames)
    .fetch_one(&mut *tx)
    .await?;
    sqlx::query(
        "INSERT INTO events (room, seq, ts, kind, data)
         SELECT $1, seq, now(), 'metric', '{\"series\": \"bench\", \"value\": 1.5}'
         FROM generate_series($2 - $3 + 1, $2) AS seq",
    )
    .bind(room)
    .bind(head)
    .bind(frames)
    .execute(&mut *tx)
    .await?;
    tx.commit().await
}

/// Writes every frame as it falls due (once `committed`, when given) to each of `writers`; each
/// frame carries its due time.
fn send(
    mut writers: Vec<TcpStream>,
    rate: f64,
    frame_bytes: usize,
    committed: Option<Arc<AtomicU64>>,
    start: Instant,
    end: Duration,
) {
    let mut next = 0u64;
    let mut batch = Vec::new();
    while start.elapsed() < end {
        let due = match &committed {
            Some(committed) => committed.load(Ordering::Acquire),
            None => (start.elapsed().as_secs_f64() * rate) as u64 + 1,
        };
        if due <= next {
            std::thread::sleep(Duration::from_micros(100));
            continue;
        }
        batch.clear();
        for frame in next..due {
            let due_us = (frame as f64 / rate * 1e6) as u64;
            batch.extend_from_slice(&due_us.to_le_bytes());
            batch.resize(batch.len() + frame_bytes - 8, b' ');
        }
        next = due;
        for writer in &mut writers {
            writer.write_all(&batch).expect("loopback write");
        }
    }
}

/// Reads every connection until `end` (plus a grace period) and returns the due→receive latency
/// of each frame that fell due after the warm-up, in µs.
fn receive(
    mut readers: Vec<MioStream>,
    frame_bytes: usize,
    start: Instant,
    warm_up: Duration,
    end: Duration,
) -> Vec<u64> {
    let mut poll = Poll::new().expect("epoll");
    for (i, reader) in readers.iter_mut().enumerate() {
        poll.registry()
            .register(reader, Token(i), Interest::READABLE)
            .unwrap();
    }
    let mut partial: Vec<Vec<u8>> = vec![Vec::new(); readers.len()];
    let mut events = Events::with_capacity(1024);
    let mut buf = vec![0; 64 * 1024];
    let mut latencies = Vec::new();
    let warm_up_us = warm_up.as_micros() as u64;
    while start.elapsed() < end + Duration::from_millis(500) {
        poll.poll(&mut events, Some(Duration::from_millis(50)))
            .expect("epoll wait");
        for event in &events {
            let i = event.token().0;
            loop {
                let read = match readers[i].read(&mut buf) {
                    Ok(0) => break,
                    Ok(read) => read,
                    Err(e) if e.kind() == ErrorKind::WouldBlock => break,
                    Err(e) => panic!("loopback read: {e}"),
                };
                let now_us = start.elapsed().as_micros() as u64;
                let pending = &mut partial[i];
                pending.extend_from_slice(&buf[..read]);
                let whole = pending.len() / frame_bytes * frame_bytes;
                for frame in pending[..whole].chunks_exact(frame_bytes) {
                    let due_us = u64::from_le_bytes(frame[..8].try_into().unwrap());
                    if due_us >= warm_up_us {
                        latencies.push(now_us.saturating_sub(due_us));
                    }
                }
                pending.drain(..whole);
            }
        }
    }
    latencies
}

/// utime + stime of this process, from /proc/self/stat.
fn process_cpu_secs() -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").expect("/proc/self/stat");
    let fields: Vec<&str> = stat[stat.rfind(')').unwrap() + 2..].split(' ').collect();
    let ticks: u64 = fields[11].parse::<u64>().unwrap() + fields[12].parse::<u64>().unwrap();
    ticks as f64 / 100.0 // USER_HZ
}
