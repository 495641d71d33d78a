use std::process::ExitCode;

use clap::Parser;
use server::Config;
use tokio::signal::unix::{SignalKind, signal};
use tracing_subscriber::EnvFilter;

#[tokio::main]
async fn main() -> ExitCode {
    let config = Config::parse();
    tracing_subscriber::fmt()
        .with_env_filter(EnvFilter::new(&config.log))
        // Standard output is for what a command makes (a new token).
        .with_writer(std::io::stderr)
        .init();
    let done = match &config.command {
        Some(command) => {
            let (mut input, mut output) = (std::io::stdin().lock(), std::io::stdout());
            server::cli::run(&config, command, &mut input, &mut output).await
        }
        None => serve(&config).await,
    };
    match done {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("watchroom: {e}");
            ExitCode::FAILURE
        }
    }
}

/// Runs until SIGINT or SIGTERM, then drains.
async fn serve(config: &Config) -> Result<(), server::RunError> {
    let running = server::start(config).await?;
    let mut terminate = signal(SignalKind::terminate())?;
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = terminate.recv() => {}
    }
    tracing::info!("shutting down");
    running.stop().await
}
