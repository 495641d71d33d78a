use std::{net::SocketAddr, path::PathBuf, time::Duration};

use clap::Parser;

/// Watchroom: a live monitoring dashboard.
#[derive(Clone, Debug, Parser)]
#[command(version, about)]
pub struct Config {
    /// Address to listen on.
    #[arg(long, env = "WATCHROOM_LISTEN", default_value = "127.0.0.1:3000")]
    pub listen: SocketAddr,

    /// Postgres to use. When unset, a private cluster is run under `data_dir`.
    #[arg(long, env = "DATABASE_URL")]
    pub database_url: Option<String>,

    /// Where the private Postgres cluster lives when no `database_url` is given.
    #[arg(long, env = "WATCHROOM_DATA_DIR", default_value = ".watchroom")]
    pub data_dir: PathBuf,

    /// Log filter, in `tracing_subscriber::EnvFilter` syntax.
    #[arg(long, env = "RUST_LOG", default_value = "info,sqlx=warn")]
    pub log: String,

    /// Seconds between heartbeats on each socket; a peer silent for two is dropped.
    #[arg(long, env = "WATCHROOM_HEARTBEAT_SECS", default_value_t = 15.0)]
    pub heartbeat_secs: f64,

    /// Largest WebSocket frame a client may send, in bytes; larger closes the socket with 1009.
    #[arg(long, env = "WATCHROOM_MAX_FRAME_BYTES", default_value_t = 64 * 1024)]
    pub max_frame_bytes: usize,

    /// Rooms one connection may watch at once.
    #[arg(long, env = "WATCHROOM_MAX_ROOMS_PER_CONNECTION", default_value_t = 64)]
    pub max_rooms_per_connection: usize,

    /// Sustained publishes per second one connection may make.
    #[arg(long, env = "WATCHROOM_PUBLISH_RATE", default_value_t = 200.0)]
    pub publish_rate: f64,

    /// Publishes one connection may make in a burst above the sustained rate.
    #[arg(long, env = "WATCHROOM_PUBLISH_BURST", default_value_t = 400.0)]
    pub publish_burst: f64,

    /// Seconds a shutdown waits for sockets to drain before exiting anyway.
    #[arg(long, env = "WATCHROOM_SHUTDOWN_GRACE_SECS", default_value_t = 10.0)]
    pub shutdown_grace_secs: f64,

    /// Distinct series (name and labels) one metrics source may have; samples that would add
    /// more are refused, so a label carrying e.g. a request id cannot grow storage without bound.
    #[arg(
        long,
        env = "WATCHROOM_MAX_SERIES_PER_SOURCE",
        default_value_t = 10_000
    )]
    pub max_series_per_source: usize,

    /// Collect this host's metrics (and the server's own) every second as source `host:<name>`.
    #[arg(long, env = "WATCHROOM_HOST_METRICS", default_value_t = true, action = clap::ArgAction::Set)]
    pub host_metrics: bool,

    /// Directory holding the built site (`pkg/` with the wasm, js and css).
    #[arg(long, env = "LEPTOS_SITE_ROOT", default_value = "target/site")]
    pub site_root: PathBuf,
}

impl Config {
    pub fn heartbeat(&self) -> Duration {
        Duration::from_secs_f64(self.heartbeat_secs)
    }

    pub fn shutdown_grace(&self) -> Duration {
        Duration::from_secs_f64(self.shutdown_grace_secs)
    }
}
