//! BigQuery failing in the ways the emulator cannot by itself, through the fault-injecting
//! proxy (a stand-in, see `tests/support/fault_proxy.rs`): an insertAll storm, a failing
//! lookup query, batches in flight at SIGTERM. Nothing is acknowledged that is not stored,
//! nothing is stored twice, and the failures are counted.

use std::time::Duration;

use serde_json::json;

use crate::emulators::{BUCKET, BigQuery, Gcs, PROJECT};
use crate::fault_proxy::{Call, FaultProxy};
use crate::helpers::{Binary, TestApp, envelope, parse_exposition, sample, spawn_app_with};
use crate::{SERIAL, apply_schema};

const EVENTS: usize = 40;

fn event(i: usize) -> Vec<u8> {
    json!({"event_type": "inventory", "inventory_id": format!("I{i}"), "product_id": "P", "warehouse_id": "W",
           "quantity_change": 1, "reason": "sale", "timestamp": "2026-11-25T10:00:00Z"})
    .to_string()
    .into_bytes()
}

fn id(i: usize) -> String {
    format!("4{i:05}")
}

fn flags(gcs: &Gcs, proxy: &FaultProxy) -> Vec<String> {
    [
        "--gcs-bucket",
        BUCKET,
        "--bigquery-project",
        PROJECT,
        "--auth",
        "none",
        "--storage-emulator-host",
        &gcs.url(),
        "--bigquery-emulator-host",
        &proxy.url,
        "--request-timeout-secs",
        "2",
    ]
    .map(String::from)
    .to_vec()
}

async fn through_proxy() -> (Gcs, BigQuery, FaultProxy, TestApp) {
    let (gcs, bigquery) = (Gcs::start().await, BigQuery::start().await);
    apply_schema(&bigquery);
    let proxy = FaultProxy::start(&bigquery.url()).await;
    let flags = flags(&gcs, &proxy);
    let flags: Vec<&str> = flags.iter().map(String::as_str).collect();
    let app = spawn_app_with(&flags).await;
    (gcs, bigquery, proxy, app)
}

/// Pushes every event at once; the status of each.
async fn push_all(app: &TestApp) -> Vec<u16> {
    let pushes = (0..EVENTS).map(|i| async move {
        app.push_json(&envelope(&id(i), &event(i)))
            .await
            .status()
            .as_u16()
    });
    futures::future::join_all(pushes).await
}

async fn rows(bigquery: &BigQuery) -> (i64, i64) {
    let row = &bigquery
        .query("SELECT COUNT(*), COUNT(DISTINCT message_id) FROM raw.inventory")
        .await[0];
    (
        row[0].as_str().unwrap().parse().unwrap(),
        row[1].as_str().unwrap().parse().unwrap(),
    )
}

/// BigQuery batches begun and failed so far. The first storm's pushes are first deliveries;
/// later ones find their objects and are redeliveries, written through the replay lane.
async fn bigquery_batches(app: &TestApp) -> (f64, f64) {
    let samples = app.scrape().await;
    let sum = |name: &str, labels: &[(&str, &str)]| -> f64 {
        ["bigquery", "bigquery_replays"]
            .iter()
            .map(|sink| {
                let mut labels = labels.to_vec();
                labels.push(("sink", sink));
                sample(&samples, name, &labels).unwrap_or(0.0)
            })
            .sum()
    };
    (
        sum("landfall_sink_batch_size_count", &[]),
        sum("landfall_sink_errors_total", &[("kind", "batch_failed")]),
    )
}

/// Waits until every batch begun since `before` has ended, failed: a push is answered at its
/// deadline and its batch gives up a moment later, and a retry must not meet a healed BigQuery.
async fn wait_until_every_new_batch_failed(app: &TestApp, before: (f64, f64)) {
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        let (begun, failed) = bigquery_batches(app).await;
        if begun > before.0 && failed - before.1 == begun - before.0 {
            return;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "every failed batch is counted: {begun} begun, {failed} failed, before {before:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn an_insert_all_storm_is_answered_503_counted_and_heals_without_a_duplicate() {
    let _turn = SERIAL.lock().await;
    let (_gcs, bigquery, proxy, app) = through_proxy().await;
    for status in [503, 500, 429] {
        let before = bigquery_batches(&app).await;
        proxy.fail(Call::InsertAll, status);
        let statuses = push_all(&app).await;
        assert!(
            statuses.iter().all(|s| *s == 503),
            "{status} storm: {statuses:?}"
        );
        wait_until_every_new_batch_failed(&app, before).await;
        proxy.heal();
    }
    assert!(proxy.failed() >= 3, "the storm reached the proxy");
    assert_eq!(
        rows(&bigquery).await,
        (0, 0),
        "nothing was stored while BigQuery failed"
    );

    // Redelivered: the objects exist already, so the rows are looked up, then written once.
    let statuses = push_all(&app).await;
    assert!(statuses.iter().all(|s| *s == 200), "{statuses:?}");
    assert_eq!(rows(&bigquery).await, (EVENTS as i64, EVENTS as i64));
    let again = push_all(&app).await;
    assert!(again.iter().all(|s| *s == 200));
    assert_eq!(
        rows(&bigquery).await,
        (EVENTS as i64, EVENTS as i64),
        "no duplicate"
    );
    app.stop().await;
}

#[tokio::test]
async fn a_failed_lookup_is_a_503_never_a_guess() {
    let _turn = SERIAL.lock().await;
    let (gcs, bigquery, proxy, first) = through_proxy().await;
    assert!(push_all(&first).await.iter().all(|s| *s == 200));
    assert!(proxy.queries().is_empty(), "first deliveries never query");
    first.stop().await;
    // A fresh instance, as on another replica or after a restart: it has not seen these rows
    // itself, so only BigQuery can say whether they exist.
    let flags = flags(&gcs, &proxy);
    let flags: Vec<&str> = flags.iter().map(String::as_str).collect();
    let app = spawn_app_with(&flags).await;
    let inserts = proxy.inserts();

    proxy.fail(Call::Query, 500);
    let statuses = push_all(&app).await;
    assert!(statuses.iter().all(|s| *s == 503), "{statuses:?}");
    assert_eq!(proxy.inserts(), inserts, "no row was written on a guess");
    proxy.heal();

    let responses = futures::future::join_all((0..EVENTS).map(|i| {
        let app = &app;
        async move {
            app.push_json(&envelope(&id(i), &event(i)))
                .await
                .json::<serde_json::Value>()
                .await
                .unwrap()
        }
    }))
    .await;
    assert!(
        responses.iter().all(|a| a["duplicate"] == true),
        "{responses:?}"
    );
    assert_eq!(
        proxy.inserts(),
        inserts,
        "the rows were found, not written again"
    );
    assert_eq!(rows(&bigquery).await, (EVENTS as i64, EVENTS as i64));
    app.stop().await;
}

/// The real binary over the proxy, with JSON logs.
fn binary(gcs: &Gcs, proxy: &FaultProxy, grace: &str) -> Binary {
    let mut args = flags(gcs, proxy);
    let timeout = args
        .iter()
        .position(|a| a == "--request-timeout-secs")
        .unwrap();
    args[timeout + 1] = "30".into();
    args.extend(["--shutdown-grace-secs".into(), grace.into()]);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    Binary::start(&args, &[("RUST_LOG", "info")])
}

async fn in_flight(landfall: &Binary) -> f64 {
    let text = reqwest::get(landfall.url("/metrics"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    sample(&parse_exposition(&text), "landfall_in_flight_pushes", &[]).unwrap()
}

#[tokio::test]
async fn sigterm_with_bigquery_batches_in_flight_drains_them_and_refuses_what_comes_after() {
    let _turn = SERIAL.lock().await;
    let (gcs, bigquery) = (Gcs::start().await, BigQuery::start().await);
    apply_schema(&bigquery);
    let proxy = FaultProxy::start(&bigquery.url()).await;
    let landfall = binary(&gcs, &proxy, "20");
    proxy.delay(Call::InsertAll, Duration::from_secs(2));
    let client = reqwest::Client::new();
    let pushes: Vec<_> = (0..10)
        .map(|i| {
            tokio::spawn(
                client
                    .post(landfall.url("/push"))
                    .body(envelope(&id(i), &event(i)).to_string())
                    .send(),
            )
        })
        .collect();
    while in_flight(&landfall).await < 10.0 {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    landfall.send("TERM");
    // A push after the signal finds the door shut.
    let late = client
        .post(landfall.url("/push"))
        .body(envelope("late", &event(99)).to_string())
        .send()
        .await;
    assert!(
        late.is_err() || late.unwrap().status() != 200,
        "nothing is acknowledged after SIGTERM"
    );
    for push in pushes {
        assert_eq!(
            push.await.unwrap().unwrap().status(),
            200,
            "in-flight pushes are answered"
        );
    }
    let mut landfall = landfall;
    assert!(landfall.wait().success());
    assert_eq!(
        rows(&bigquery).await,
        (10, 10),
        "every acknowledged push has its row"
    );
}

#[tokio::test]
async fn when_the_grace_period_runs_out_nothing_unfinished_is_acknowledged() {
    let _turn = SERIAL.lock().await;
    let (gcs, bigquery) = (Gcs::start().await, BigQuery::start().await);
    apply_schema(&bigquery);
    let proxy = FaultProxy::start(&bigquery.url()).await;
    let landfall = binary(&gcs, &proxy, "1");
    proxy.delay(Call::InsertAll, Duration::from_secs(20));
    let client = reqwest::Client::new();
    let pushes: Vec<_> = (0..5)
        .map(|i| {
            tokio::spawn(
                client
                    .post(landfall.url("/push"))
                    .body(envelope(&id(i), &event(i)).to_string())
                    .send(),
            )
        })
        .collect();
    while in_flight(&landfall).await < 5.0 {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    landfall.send("TERM");
    let mut landfall = landfall;
    assert!(
        landfall.wait().success(),
        "a stop that gives up still exits cleanly"
    );
    for push in pushes {
        let answer = push.await.unwrap();
        assert!(
            answer.is_err() || answer.unwrap().status() != 200,
            "an unfinished push is never acknowledged"
        );
    }
    let logs = landfall.logs();
    assert!(
        logs.iter().any(|l| l["message"]
            .as_str()
            .is_some_and(|m| m.starts_with("grace period over"))),
        "the give-up is logged: {logs:?}"
    );
}
