//! The Google Cloud sinks against real local stand-ins (fake-gcs-server, local-bigquery, the
//! Pub/Sub emulator). `.ci/tools.sh` installs them on first use; each test starts its own.

mod batch_layout;
mod catalog;
mod curated;
mod emulators;
mod end_to_end;
#[path = "../support/fault_proxy.rs"]
mod fault_proxy;
mod faults;
#[allow(dead_code)]
#[path = "../api/helpers.rs"]
mod helpers;
mod repair;
mod replay;
mod schema;
mod sinks;
#[path = "../support/tools.rs"]
mod tools;
mod unwrapped;

use emulators::{BUCKET, BigQuery, Gcs, PROJECT};
use helpers::{TestApp, spawn_app_with};

/// The emulators are heavy (a JVM, DuckDB): tests that use them take turns on 2 cores.
pub static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// `landfall schema apply` against the BigQuery emulator; returns its stdout.
pub fn apply_schema(bigquery: &BigQuery) -> String {
    apply_schema_with(bigquery, &[])
}

/// `landfall schema apply ARGS` (e.g. `--schemas DIR`) against the BigQuery emulator.
pub fn apply_schema_with(bigquery: &BigQuery, args: &[&str]) -> String {
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_landfall"))
        .args(["schema", "apply", "--bigquery-project", PROJECT])
        .args(["--bigquery-emulator-host", &bigquery.url()])
        .args(args)
        .output()
        .unwrap();
    let stdout = String::from_utf8(output.stdout).unwrap();
    assert!(
        output.status.success(),
        "schema apply failed: {stdout}{}",
        String::from_utf8_lossy(&output.stderr)
    );
    stdout
}

/// This test's turn on the machine: both storage emulators, the schema applied, and landfall
/// writing to them.
pub struct GoogleStack {
    pub gcs: Gcs,
    pub bigquery: BigQuery,
    pub app: TestApp,
    /// Held for the whole test: bind it (`_turn`), never `..` it away.
    pub _turn: tokio::sync::MutexGuard<'static, ()>,
}

pub async fn google_stack() -> GoogleStack {
    let turn = SERIAL.lock().await;
    let (gcs, bigquery) = (Gcs::start().await, BigQuery::start().await);
    apply_schema(&bigquery);
    let app = spawn_google_app(&gcs, &bigquery).await;
    GoogleStack {
        gcs,
        bigquery,
        app,
        _turn: turn,
    }
}

/// landfall writing to both Google sinks (and nothing local), as in production.
pub async fn spawn_google_app(gcs: &Gcs, bigquery: &BigQuery) -> TestApp {
    spawn_google_app_with(gcs, bigquery, &[]).await
}

/// The same with more flags (e.g. `--schemas DIR`).
pub async fn spawn_google_app_with(gcs: &Gcs, bigquery: &BigQuery, extra: &[&str]) -> TestApp {
    let mut args = google_args(gcs, bigquery);
    args.extend(extra.iter().map(|s| s.to_string()));
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    spawn_app_with(&args).await
}

/// The flags that point landfall at both emulators, without authentication.
pub fn google_args(gcs: &Gcs, bigquery: &BigQuery) -> Vec<String> {
    let (gcs, bigquery) = (gcs.url(), bigquery.url());
    [
        "--gcs-bucket",
        BUCKET,
        "--bigquery-project",
        PROJECT,
        "--auth",
        "none",
        "--storage-emulator-host",
        &gcs,
        "--bigquery-emulator-host",
        &bigquery,
        "--request-timeout-secs",
        "3",
    ]
    .map(String::from)
    .to_vec()
}
