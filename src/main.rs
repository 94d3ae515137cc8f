use std::process::ExitCode;

use anyhow::Context;

use landfall::config::{self, Command, ConfigErrors, Given, ServeArgs};
use landfall::startup::Application;
use landfall::{commands, telemetry};

/// Many small, short-lived allocations on several threads: mimalloc measured 7–29% more
/// acked events/s than the system allocator in paired runs of `benches/load.rs`.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[tokio::main]
async fn main() -> ExitCode {
    landfall::process::tune_allocator();
    landfall::process::install_crypto_provider();
    let (cli, given) = config::parse(std::env::args_os()).unwrap_or_else(|e| e.exit());
    let result = match cli.command {
        None => serve(cli.serve, &given).await,
        Some(Command::Serve(args)) => serve(*args, &given).await,
        Some(Command::Schema { command }) => commands::schema(command).await,
        Some(Command::Redrive(args)) => {
            let config = args.resolve(&given).unwrap_or_else(|e| refuse(&e));
            commands::redrive(config).await
        }
        Some(Command::Backfill(args)) => {
            let config = args.resolve(&given).unwrap_or_else(|e| refuse(&e));
            commands::backfill(config).await
        }
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            // Said once, no backtrace: this is read by whoever deploys landfall.
            eprintln!("landfall: {}", landfall::telemetry::said::said(&error));
            ExitCode::from(exit_code(&error))
        }
    }
}

/// 2 when the configuration or the input must change first (running again cannot help: a
/// Cloud Run job should not retry), 1 when running again may finish the work.
fn exit_code(error: &anyhow::Error) -> u8 {
    let must_change = error.chain().any(|cause| {
        cause.is::<landfall::sink::Unusable>()
            || cause.is::<landfall::schema::CatalogError>()
            || cause.is::<ConfigErrors>()
    });
    if must_change { 2 } else { 1 }
}

/// A configuration that cannot run: every problem, then exit 2.
fn refuse(problems: &ConfigErrors) -> ! {
    eprintln!("landfall: invalid configuration:");
    for problem in &problems.0 {
        eprintln!("  - {problem}");
    }
    std::process::exit(2);
}

async fn serve(args: ServeArgs, given: &Given) -> anyhow::Result<()> {
    let config = args.resolve(given).unwrap_or_else(|e| refuse(&e));
    telemetry::init(
        config.log_format,
        config.trace_project.clone(),
        telemetry::LogTo::Stdout,
    );
    landfall::process::raise_open_file_limit();
    // Before anything can answer: a SIGTERM from then on drains instead of killing.
    let shutdown = shutdown_signal()?;
    let app = Application::build(config).await?;
    app.run_until_stopped(shutdown).await
}

/// Listens for SIGINT (Ctrl-C) and SIGTERM (what Cloud Run sends before stopping an
/// instance) from the moment it is called; the future resolves on the first of them.
fn shutdown_signal() -> anyhow::Result<impl std::future::Future<Output = ()> + Send + 'static> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut interrupt = signal(SignalKind::interrupt()).context("cannot listen for SIGINT")?;
    let mut terminate = signal(SignalKind::terminate()).context("cannot listen for SIGTERM")?;
    Ok(async move {
        tokio::select! {
            _ = interrupt.recv() => {}
            _ = terminate.recv() => {}
        }
        tracing::info!("stop signal received");
    })
}
