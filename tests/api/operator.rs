//! The operator's surface, as someone runs it at 3 a.m.: a dry run writes nothing (every
//! file of the data folder byte for byte the same), exit codes say whether running again can
//! help, typos are named, a failure is said once in plain words, and a start with a bucket
//! that does not answer listens and answers its probes at once.

use std::time::{Duration, Instant};

use serde_json::json;

use crate::support::app::files_under;
use crate::support::*;

/// A data folder with two orders, one dead letter and the server stopped.
async fn landed_folder() -> tempfile::TempDir {
    let mut app = spawn_app().await;
    for fixture in ["order.json", "inventory.json", "invalid-order.json"] {
        json_body(app.push_fixture(fixture).await, "/push", 200).await;
    }
    app.stop_in_place().await;
    std::mem::replace(&mut app.data_dir, tempfile::tempdir().unwrap())
}

/// The shipped catalog with a column added to `order`.
fn wider_catalog() -> tempfile::TempDir {
    let mut order = shipped_schema("order");
    order["properties"]["coupon_code"] = json!({"type": "string"});
    shipped_catalog_with("order", order)
}

fn run(args: &[&str]) -> (i32, String, String) {
    let output = landfall(args);
    (
        output.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&output.stdout).to_string(),
        String::from_utf8_lossy(&output.stderr).to_string(),
    )
}

#[tokio::test]
async fn a_dry_run_writes_nothing_and_a_repair_never_reshapes_the_warehouse() {
    let data = landed_folder().await;
    let dir = data.path().to_str().unwrap();
    let wider = wider_catalog();
    let schemas = wider.path().to_str().unwrap();
    // A row lost from the warehouse: something a backfill would write.
    let db = rusqlite::Connection::open(data.path().join("warehouse.db")).unwrap();
    assert_eq!(db.execute("DELETE FROM \"order\"", []).unwrap(), 1);
    drop(db);
    let before = files_under(data.path());
    // What a crash leaves of a file staged under a temporary name: a start that writes sweeps
    // it, a dry run leaves it.
    let staged = data.path().join("landing/output/.staged-by-a-crash.tmp");
    std::fs::write(&staged, "half a file").unwrap();

    for (args, would_land) in [
        (vec!["redrive", "--dry-run", "--data-dir", dir], 0),
        (vec!["backfill", "--dry-run", "--data-dir", dir], 1),
    ] {
        let (code, stdout, stderr) = run(&args);
        assert_eq!(code, 0, "{args:?}: {stdout}{stderr}");
        assert!(stdout.contains("dry run, nothing was written"), "{stdout}");
        assert!(
            stdout.contains(&format!("would land:      {would_land}\n")),
            "{args:?}: {stdout}"
        );
        assert!(staged.exists(), "{args:?} swept a staged file");
    }
    std::fs::remove_file(&staged).unwrap();
    let (code, stdout, stderr) = run(&[
        "backfill",
        "--dry-run",
        "--data-dir",
        dir,
        "--schemas",
        schemas,
    ]);
    assert_eq!(
        code, 2,
        "a dry run of another catalog is refused: {stdout}{stderr}"
    );
    assert!(stderr.contains("are not the catalog's"), "{stderr}");
    let (code, _, stderr) = run(&["redrive", "--data-dir", dir, "--schemas", schemas]);
    assert_eq!(code, 2, "{stderr}");
    let after = files_under(data.path());
    let changed: Vec<&String> = before
        .keys()
        .chain(after.keys())
        .filter(|name| before.get(*name) != after.get(*name))
        .collect();
    assert!(changed.is_empty(), "files made or changed: {changed:?}");

    let missing = data.path().join("typo");
    let (code, _, stderr) = run(&[
        "redrive",
        "--dry-run",
        "--data-dir",
        missing.to_str().unwrap(),
    ]);
    assert_eq!(code, 2, "{stderr}");
    assert!(stderr.contains("there is no landing layer at"), "{stderr}");
    assert!(!missing.exists(), "nothing made where nothing was");
}

#[tokio::test]
async fn exit_codes_say_whether_running_again_can_help() {
    let data = landed_folder().await;
    let dir = data.path().to_str().unwrap();
    let broken = catalog_dir(&[("order.json", "{".into())]);
    let broken = broken.path().to_str().unwrap();

    let (code, stdout, _) = run(&["redrive", "--data-dir", dir]);
    assert_eq!(code, 0, "{stdout}");
    for args in [
        vec!["redrive", "--data-dir", dir, "--schemas", broken],
        vec!["--data-dir", dir, "--schemas", broken],
        vec!["redrive", "--data-dir", dir, "--landing-layout", "batch"],
        vec!["schema", "apply"],
        vec!["backfill", "--data-dir", dir, "--types", "nosuch"],
        vec![
            "backfill",
            "--data-dir",
            dir,
            "--since",
            "2026-11-26T00:00:00Z",
            "--until",
            "2026-11-25T00:00:00Z",
        ],
    ] {
        let (code, stdout, stderr) = run(&args);
        assert_eq!(code, 2, "{args:?}: {stdout}{stderr}");
    }
    let (_, _, stderr) = run(&["backfill", "--data-dir", dir, "--types", "nosuch"]);
    assert!(
        stderr.contains(
            r#"the catalog has no event type "nosuch" (it has inventory, order, user_activity)"#
        ),
        "{stderr}"
    );
    let (code, _, stderr) = run(&["--port", "abc"]);
    assert_eq!(code, 2);
    assert!(stderr.contains("environment variable PORT"), "{stderr}");

    // A failure that may pass: the warehouse held by another process.
    let lock = crate::support::app::WarehouseLock::take(data.path());
    let mut order = shipped_schema("order");
    order["properties"]["status"]["enum"] =
        json!(["pending", "processing", "shipped", "delivered"]);
    let (code, stdout, stderr) = run(&[
        "backfill",
        "--data-dir",
        dir,
        "--sqlite-busy-timeout-ms",
        "100",
    ]);
    lock.release();
    assert_eq!(code, 1, "{stdout}{stderr}");
    assert!(stderr.contains("run the same command again"), "{stderr}");

    let (_, help, _) = run(&["backfill", "--help"]);
    assert!(help.contains("Exit codes: 0 done; 1 "), "{help}");
}

#[tokio::test]
async fn schema_check_says_one_thing_about_a_warehouse_it_cannot_serve() {
    let data = landed_folder().await;
    let mut narrower = shipped_schema("order");
    narrower["properties"]
        .as_object_mut()
        .unwrap()
        .remove("shipping_address");
    narrower["required"] = json!([
        "event_type",
        "order_id",
        "customer_id",
        "order_date",
        "status",
        "total_amount"
    ]);
    let catalog = shipped_catalog_with("order", narrower);
    let (code, stdout, stderr) = run(&[
        "schema",
        "check",
        "--schemas",
        catalog.path().to_str().unwrap(),
        "--data-dir",
        data.path().to_str().unwrap(),
    ]);
    assert_eq!(code, 2, "{stdout}{stderr}");
    assert!(!stdout.contains("every table matches"), "{stdout}");
    assert!(stdout.contains("cannot be changed in place"), "{stdout}");
    assert!(stderr.contains("serve would refuse to start"), "{stderr}");
}

#[tokio::test]
async fn help_and_summaries_say_what_they_mean() {
    let (_, help, _) = run(&["backfill", "--help"]);
    let repair = help.split("Repair:").nth(1).expect("a Repair heading");
    assert!(
        repair.contains("--types"),
        "--types sits under Repair: {help}"
    );
    let (_, help, _) = run(&["--help"]);
    assert!(!help.contains("[possible values: true, false]"), "{help}");
    let (_, help, _) = run(&["schema", "check", "--help"]);
    assert!(!help.contains("--bigquery-location"), "{help}");
    assert!(!help.contains("turns the BigQuery sink on"), "{help}");

    let data = landed_folder().await;
    let (_, stdout, _) = run(&[
        "redrive",
        "--dry-run",
        "--data-dir",
        data.path().to_str().unwrap(),
    ]);
    assert_eq!(
        stdout.trim_end(),
        "redrive — dry run, nothing was written: 1 message in 1 object\n  would land:      0\n  already present: 0\n  still dead:      1 (minimum: 1)\n  failed:          0"
    );
}

/// A server that accepts connections and never answers: a bucket that does not respond.
fn silent_server() -> String {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let address = listener.local_addr().unwrap();
    std::thread::spawn(move || {
        let mut held = Vec::new();
        for stream in listener.incoming() {
            held.push(stream);
        }
    });
    format!("http://{address}")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bucket_that_does_not_answer_neither_delays_the_start_nor_the_probes() {
    let bucket = silent_server();
    let started = Instant::now();
    let landfall = Binary::start(
        &[
            "--gcs-bucket",
            "landing",
            "--storage-emulator-host",
            &bucket,
            "--auth",
            "none",
        ],
        &[],
    );
    let serving = started.elapsed();
    assert!(
        serving < Duration::from_secs(4),
        "serving after {serving:?}"
    );
    let client = reqwest::Client::new();
    for _ in 0..3 {
        let asked = Instant::now();
        let readyz = client.get(landfall.url("/readyz")).send().await.unwrap();
        assert!(
            asked.elapsed() < Duration::from_secs(3),
            "{:?}",
            asked.elapsed()
        );
        let body = json_body(readyz, "/readyz", 503).await;
        assert_eq!(body["checks"][0]["name"], "gcs", "{body}");
    }
    assert_eq!(
        client
            .get(landfall.url("/healthz"))
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
}

#[tokio::test]
async fn a_failure_is_said_once_in_plain_words() {
    // Nothing listens on port 1.
    let app = spawn_app_with(&[
        "--gcs-bucket",
        "landing",
        "--storage-emulator-host",
        "http://127.0.0.1:1",
        "--auth",
        "none",
    ])
    .await;
    let readyz = json_body(app.get("/readyz").await, "/readyz", 503).await;
    let gcs = readyz["checks"][0]["error"].as_str().unwrap().to_string();
    assert!(gcs.contains("the connection was refused"), "{gcs}");
    for phrase in [
        "error sending request",
        "cannot connect to endpoint",
        "Connection refused",
    ] {
        assert!(
            gcs.matches(phrase).count() <= 1,
            "said more than once: {gcs}"
        );
    }
    app.stop().await;
}
