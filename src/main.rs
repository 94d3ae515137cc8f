use anyhow::Context;
use clap::Parser;

use landfall::config::{Cli, Command, SchemaAction};
use landfall::startup::Application;
use landfall::telemetry;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let config = cli.settings.resolve().context("invalid configuration")?;
    telemetry::init(config.log_format);
    match cli.command.unwrap_or(Command::Serve) {
        Command::Serve => {
            let app = Application::build(config).await?;
            app.run_until_stopped(shutdown_signal()).await
        }
        Command::Schema { action } => schema(action, &config).await,
    }
}

async fn schema(action: SchemaAction, config: &landfall::config::Config) -> anyhow::Result<()> {
    let dataset = match &config.bigquery {
        Some(target) => format!("{}.{}", target.project, target.dataset),
        None => "raw".to_string(),
    };
    match action {
        SchemaAction::Print => {
            print!("{}", landfall::schema::bigquery::ddl(&dataset));
            Ok(())
        }
        SchemaAction::Apply => anyhow::bail!("schema apply is not available yet"),
    }
}

/// Resolves on SIGINT (Ctrl-C) or SIGTERM (what Cloud Run sends before stopping an instance).
async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    tokio::select! {
        _ = ctrl_c => {}
        _ = terminate => {}
    }
    tracing::info!("stop signal received");
}
