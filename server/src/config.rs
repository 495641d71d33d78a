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

    /// Directory holding the built site (`pkg/` with the wasm, js and css).
    #[arg(long, env = "LEPTOS_SITE_ROOT", default_value = "target/site")]
    pub site_root: PathBuf,
}

impl Config {
    pub fn heartbeat(&self) -> Duration {
        Duration::from_secs_f64(self.heartbeat_secs)
    }
}
