//! BigQuery failing in the ways the emulator cannot by itself, through the fault-injecting
//! proxies (stand-ins, see `tests/support/fault_proxy.rs` and `grpc_proxy.rs`): a storm of
//! failing writes, a failing lookup query, batches in flight at SIGTERM, each with both write
//! APIs. Nothing is acknowledged that is not stored, nothing is stored twice, and the
//! failures are counted.

use std::time::Duration;

use serde_json::{Value, json};

use crate::support::emulators::{Google, WriteApi};
use crate::support::fault_proxy::Call;
use crate::support::proxies::through_proxies;
use crate::support::{Binary, TestApp, envelope, poll, sample};

with_each_write_api!(
    a_write_storm_is_answered_503_counted_and_heals_without_a_duplicate,
    a_failed_lookup_is_a_503_never_a_guess,
    sigterm_with_bigquery_batches_in_flight_drains_them_and_answers_no_later_push_200,
    when_the_grace_period_runs_out_nothing_unfinished_is_acknowledged,
);

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

async fn rows(google: &Google) -> (i64, i64) {
    let row = &google
        .query(&format!(
            "SELECT COUNT(*), COUNT(DISTINCT message_id) FROM {}",
            google.table("inventory")
        ))
        .await[0];
    (
        row[0].as_str().unwrap().parse().unwrap(),
        row[1].as_str().unwrap().parse().unwrap(),
    )
}

/// Pushes every event, then again those not acknowledged, as Pub/Sub redelivers; the bodies
/// of the acknowledgements. The 2 s deadline that keeps a storm short can also end a push that
/// would land, on a loaded machine: it must be answered 503 (never a 4xx) and land later.
async fn redeliver_until_acknowledged(app: &TestApp) -> Vec<Value> {
    let mut pending: Vec<usize> = (0..EVENTS).collect();
    let mut acknowledged = Vec::new();
    for _round in 0..5 {
        let pushes = pending.iter().map(|&i| async move {
            let answer = app.push_json(&envelope(&id(i), &event(i))).await;
            let status = answer.status().as_u16();
            (i, status, answer.json::<Value>().await.unwrap())
        });
        let mut refused = Vec::new();
        for (i, status, body) in futures::future::join_all(pushes).await {
            match status {
                200 => acknowledged.push(body),
                503 => refused.push(i),
                other => panic!("{} answered {other}: {body}", id(i)),
            }
        }
        pending = refused;
        if pending.is_empty() {
            return acknowledged;
        }
    }
    panic!("not acknowledged after five deliveries: {pending:?}");
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
    poll::until(
        "every failed batch is counted",
        Duration::from_secs(30),
        || async {
            let (begun, failed) = bigquery_batches(app).await;
            if begun > before.0 && failed - before.1 == begun - before.0 {
                Ok(())
            } else {
                Err(format!("{begun} begun, {failed} failed, before {before:?}"))
            }
        },
    )
    .await
}

async fn a_write_storm_is_answered_503_counted_and_heals_without_a_duplicate(api: WriteApi) {
    let (google, proxy) = through_proxies(api).await;
    let app = google.app(&["--request-timeout-secs", "2"]).await;
    for status in [503, 500, 429] {
        let before = bigquery_batches(&app).await;
        proxy.fail_writes(status);
        let statuses = push_all(&app).await;
        assert!(
            statuses.iter().all(|s| *s == 503),
            "{status} storm: {statuses:?}"
        );
        wait_until_every_new_batch_failed(&app, before).await;
        proxy.heal();
    }
    assert!(proxy.failed_writes() >= 3, "the storm reached the proxy");
    assert_eq!(
        rows(&google).await,
        (0, 0),
        "nothing was stored while BigQuery failed"
    );

    // Redelivered: the objects exist already, so the rows are looked up, then written once.
    redeliver_until_acknowledged(&app).await;
    assert_eq!(rows(&google).await, (EVENTS as i64, EVENTS as i64));
    let written = proxy.rows_written();
    redeliver_until_acknowledged(&app).await;
    assert_eq!(
        rows(&google).await,
        (EVENTS as i64, EVENTS as i64),
        "no duplicate"
    );
    assert_eq!(
        proxy.rows_written(),
        written,
        "the redeliveries wrote nothing"
    );
    app.stop().await;
}

async fn a_failed_lookup_is_a_503_never_a_guess(api: WriteApi) {
    let (google, proxy) = through_proxies(api).await;
    let first = google.app(&[]).await;
    assert!(push_all(&first).await.iter().all(|s| *s == 200));
    assert!(
        proxy.rest.queries().is_empty(),
        "first deliveries never query"
    );
    assert_eq!(
        proxy.rows_written(),
        EVENTS,
        "the writes went through the proxy"
    );
    first.stop().await;
    // A fresh instance, as on another replica or after a restart: it has not seen these rows
    // itself, so only BigQuery can say whether they exist.
    let app = google.app(&["--request-timeout-secs", "2"]).await;
    let written = proxy.rows_written();

    proxy.rest.fail(Call::Query, 500);
    let statuses = push_all(&app).await;
    assert!(statuses.iter().all(|s| *s == 503), "{statuses:?}");
    assert_eq!(
        proxy.rows_written(),
        written,
        "no row was written on a guess"
    );
    proxy.heal();

    let responses = redeliver_until_acknowledged(&app).await;
    assert!(
        responses.iter().all(|a| a["duplicate"] == true),
        "{responses:?}"
    );
    assert_eq!(
        proxy.rows_written(),
        written,
        "the rows were found, not written again"
    );
    assert_eq!(rows(&google).await, (EVENTS as i64, EVENTS as i64));
    app.stop().await;
}

/// The real binary over the proxy, with JSON logs.
fn binary(google: &Google, grace: &str) -> Binary {
    google.binary(
        &[
            "--request-timeout-secs",
            "30",
            "--shutdown-grace-secs",
            grace,
        ],
        &[("RUST_LOG", "info")],
    )
}

/// Sends SIGTERM and waits until the process says it has begun to stop.
fn terminate(landfall: &Binary) {
    landfall.send("TERM");
    landfall.wait_for_log(|l| l["message"] == "stop signal received");
}

async fn sigterm_with_bigquery_batches_in_flight_drains_them_and_answers_no_later_push_200(
    api: WriteApi,
) {
    let (google, proxy) = through_proxies(api).await;
    let landfall = binary(&google, "20");
    proxy.delay_writes(Duration::from_secs(2));
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
    landfall.wait_for_in_flight(10.0).await;

    terminate(&landfall);
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
        rows(&google).await,
        (10, 10),
        "every acknowledged push has its row"
    );
}

async fn when_the_grace_period_runs_out_nothing_unfinished_is_acknowledged(api: WriteApi) {
    let (google, proxy) = through_proxies(api).await;
    let landfall = binary(&google, "1");
    proxy.delay_writes(Duration::from_secs(20));
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
    landfall.wait_for_in_flight(5.0).await;

    terminate(&landfall);
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
