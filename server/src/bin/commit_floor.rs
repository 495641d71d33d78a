//! The floor under the publish latency figures that no fan-out can lower: one event committed the
//! way the writer commits it (its room's head bumped, the event inserted, the transaction
//! committed and its WAL flushed to disk), at `--rate` a second, alone on the database. An event
//! reaches its subscribers only once committed, so a publish takes at least this and the
//! fan-out's floor (`socket_floor`) together.

use std::time::{Duration, Instant};

use clap::Parser;
use sqlx::{Connection, PgConnection};

#[derive(Parser)]
struct Args {
    /// The database, migrated by a server: the commits go to its log.
    #[arg(long, env = "DATABASE_URL")]
    database_url: String,
    /// Commits per second.
    #[arg(long, default_value_t = 200.0)]
    rate: f64,
    /// Seconds measured, after one second of warm-up.
    #[arg(long, default_value_t = 10.0)]
    seconds: f64,
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let args = Args::parse();
    let mut db = PgConnection::connect(&args.database_url)
        .await
        .expect("the database answers");
    let room = format!("bench.commit-floor.{}", std::process::id());
    let mut tick = tokio::time::interval(Duration::from_secs_f64(1.0 / args.rate));
    let start = Instant::now();
    let warm_up = Duration::from_secs(1);
    let end = warm_up + Duration::from_secs_f64(args.seconds);
    let mut latencies = Vec::new();
    while start.elapsed() < end {
        tick.tick().await;
        let began = Instant::now();
        commit(&mut db, &room).await.expect("a commit");
        if start.elapsed() > warm_up {
            latencies.push(began.elapsed().as_micros() as u64);
        }
    }
    latencies.sort_unstable();
    let pct = |p: f64| latencies[((latencies.len() as f64 * p) as usize).min(latencies.len() - 1)];
    let ms = |us: u64| us as f64 / 1000.0;
    println!(
        "commits={} rate={} latency_ms p50={:.2} p99={:.2} max={:.2} (one event a transaction)",
        latencies.len(),
        args.rate,
        ms(pct(0.50)),
        ms(pct(0.99)),
        ms(*latencies.last().unwrap()),
    );
}

async fn commit(db: &mut PgConnection, room: &str) -> sqlx::Result<()> {
    let mut tx = db.begin().await?;
    let head: i64 = sqlx::query_scalar(
        "INSERT INTO rooms (name, head) VALUES ($1, 1)
         ON CONFLICT (name) DO UPDATE SET head = rooms.head + 1 RETURNING head",
    )
    .bind(room)
    .fetch_one(&mut *tx)
    .await?;
    sqlx::query(
        "INSERT INTO events (room, seq, ts, kind, data)
         VALUES ($1, $2, now(), 'metric', '{\"series\": \"bench\", \"value\": 1.5}')",
    )
    .bind(room)
    .bind(head)
    .execute(&mut *tx)
    .await?;
    tx.commit().await
}
