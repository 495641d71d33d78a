use clap::Parser;
use server::Config;
use tokio::signal::unix::{SignalKind, signal};
use tracing_subscriber::EnvFilter;

#[tokio::main]
async fn main() -> Result<(), server::Error> {
    let config = Config::parse();
    tracing_subscriber::fmt().with_env_filter(EnvFilter::new(&config.log)).init();

    let running = server::start(&config).await?;
    let mut terminate = signal(SignalKind::terminate())?;
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = terminate.recv() => {}
    }
    tracing::info!("shutting down");
    running.stop().await
}
