//! The built-in collector: this host's CPU, load, memory, network, disk and filesystem figures,
//! and the server's own, as source `host:<hostname>` every second — so a fresh install shows
//! live data at once.

use std::time::{Duration, Instant};

use app::metrics::{Labels, Point, source_room};
use chrono::Utc;
use sysinfo::{Disks, Networks, System};
use tokio_util::{sync::CancellationToken, task::TaskTracker};

use crate::{hub::Hub, ingest::Ingest, store::Pending};

/// How often the host is sampled.
pub const EVERY: Duration = Duration::from_secs(1);

/// This host's source name: `host:` and the hostname, cut to what a room name allows.
pub fn host_source() -> String {
    let name = System::host_name().unwrap_or_else(|_| "localhost".into());
    let name: String = name
        .chars()
        .map(|c| match c {
            'a'..='z' | 'A'..='Z' | '0'..='9' | '-' | '_' | '.' => c,
            _ => '-',
        })
        .take(40)
        .collect();
    format!("host:{name}")
}

/// The server's own figures, read where they live.
#[derive(Clone)]
pub struct Own {
    pub hub: Hub,
    pub ingest: Ingest,
    pub connections: TaskTracker,
}

/// Samples the host every [`EVERY`] until `until` is cancelled.
pub fn spawn(own: Own, until: CancellationToken) {
    let room = source_room(&host_source()).expect("a sanitised host name makes a valid room");
    tokio::spawn(async move {
        let mut host = tokio::task::spawn_blocking(Host::new)
            .await
            .expect("reading the host does not panic");
        let mut tick = tokio::time::interval(EVERY);
        // The first reading only sets the baseline for CPU use and rates.
        tick.tick().await;
        let mut events = (own.ingest.committed(), Instant::now());
        while until.run_until_cancelled(tick.tick()).await.is_some() {
            let (sampled, mut points) = tokio::task::spawn_blocking(move || {
                let points = host.sample();
                (host, points)
            })
            .await
            .expect("reading the host does not panic");
            host = sampled;
            points.extend(own.sample(&mut events));
            if let Err(e) = own
                .ingest
                .commit(vec![Pending::samples(room.clone(), points)])
                .await
            {
                tracing::warn!(error = %e, "storing host metrics failed");
            }
        }
    });
}

impl Own {
    /// `events` holds the committed-event count and when it was read, for the rate.
    fn sample(&self, events: &mut (u64, Instant)) -> Vec<Point> {
        let now = Utc::now();
        let committed = self.ingest.committed();
        let rate = (committed - events.0) as f64 / events.1.elapsed().as_secs_f64().max(1e-3);
        *events = (committed, Instant::now());
        let bus_up = self
            .hub
            .bus()
            .status()
            .map(|bus| f64::from(u8::from(bus.is_up())));
        [
            ("watchroom.connections", self.connections.len() as f64),
            ("watchroom.rooms", self.hub.room_count() as f64),
            ("watchroom.events_per_s", rate),
            ("watchroom.ingest_queue", self.ingest.queued() as f64),
        ]
        .into_iter()
        // With other nodes: whether this one reaches them through Redis.
        .chain(bus_up.map(|up| ("watchroom.bus_up", up)))
        .map(|(series, value)| point(series, value, now, Labels::new()))
        .collect()
    }
}

fn point(series: &str, value: f64, ts: chrono::DateTime<Utc>, labels: Labels) -> Point {
    Point {
        series: series.to_owned(),
        value,
        ts,
        labels,
    }
}

/// sysinfo's handles, kept between readings: CPU use and byte rates are differences.
struct Host {
    system: System,
    networks: Networks,
    disks: Disks,
    last: Instant,
}

impl Host {
    fn new() -> Self {
        let mut system = System::new().expect("this platform is supported by sysinfo");
        system.refresh_cpu_usage();
        system.refresh_memory();
        Self {
            system,
            networks: Networks::new_with_refreshed_list().expect("networks can be listed"),
            disks: Disks::new_with_refreshed_list().expect("disks can be listed"),
            last: Instant::now(),
        }
    }

    fn sample(&mut self) -> Vec<Point> {
        let now = Utc::now();
        let secs = self.last.elapsed().as_secs_f64().max(1e-3);
        self.last = Instant::now();
        self.system.refresh_cpu_usage();
        self.system.refresh_memory();
        self.networks.refresh(true);
        self.disks.refresh(true);

        let mut points = Vec::new();
        let mut add =
            |series: &str, value: f64| points.push(point(series, value, now, Labels::new()));
        add("cpu.total", f64::from(self.system.global_cpu_usage()));
        for (i, cpu) in self.system.cpus().iter().enumerate() {
            add(&format!("cpu.core{i}"), f64::from(cpu.usage()));
        }
        if let Ok(load) = System::load_average() {
            add("load.1", load.one);
            add("load.5", load.five);
            add("load.15", load.fifteen);
        }
        add("mem.total", self.system.total_memory() as f64);
        add("mem.used", self.system.used_memory() as f64);
        add("mem.available", self.system.available_memory() as f64);
        add("swap.total", self.system.total_swap() as f64);
        add("swap.used", self.system.used_swap() as f64);
        // Loopback traffic is this host talking to itself, not load on its network.
        let external = self.networks.iter().filter(|(name, _)| *name != "lo");
        let (rx, tx) = external.fold((0, 0), |(rx, tx), (_, data)| {
            (rx + data.received(), tx + data.transmitted())
        });
        add("net.rx", rx as f64 / secs);
        add("net.tx", tx as f64 / secs);
        let (read, written) = self.disks.iter().fold((0, 0), |(r, w), disk| {
            let usage = disk.usage();
            (r + usage.read_bytes, w + usage.written_bytes)
        });
        add("disk.read", read as f64 / secs);
        add("disk.write", written as f64 / secs);
        for disk in self.disks.iter().filter(|d| d.total_space() > 0) {
            let total = disk.total_space() as f64;
            let used = total - disk.available_space() as f64;
            let labels = Labels::from([(
                "mount".to_owned(),
                disk.mount_point().to_string_lossy().into_owned(),
            )]);
            points.push(point("fs.used_pct", 100.0 * used / total, now, labels));
        }
        points
    }
}
