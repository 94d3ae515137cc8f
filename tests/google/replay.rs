//! Replays through the real Pub/Sub emulator: landfall killed with SIGKILL mid-stream and
//! restarted, then the subscription sought back to before the first publish, so every
//! message is delivered again.
//!
//! BigQuery's own `insertId` dedup would hide a second insert for about a minute; the fault
//! proxy takes the `insertId`s out, so what these tests see kept once, landfall kept once.
//! With a landing layer: exactly one object and one row per message id, poison once in the
//! dead letter, and every replayed push acknowledged as a duplicate. With BigQuery alone
//! (documented in the README): at least once — each replay adds a row. Within the window, a
//! redelivery that the landing layer cannot recognise is dropped by `insertId` = message id.

use std::collections::BTreeMap;
use std::time::Duration;

use chrono::Utc;
use serde_json::{Value, json};

use crate::support::emulators::{Google, PubSub, WriteApi, pubsub};
use crate::support::fault_proxy::FaultProxy;
use crate::support::metrics::total;
use crate::support::proxies::through_proxies;
use crate::support::{Binary, envelope, json_body, poll, sample, spawn_app_with};

/// The emulator pushes one message at a time (about 20 a second here).
const MESSAGES: usize = 120;

fn payload(i: usize) -> Vec<u8> {
    let stamp = format!("2026-11-{:02}T08:{:02}:00Z", 20 + i % 5, i % 60);
    let event = match i % 10 {
        7 => json!({"event_type": "inventory", "inventory_id": format!("I{i}"), "product_id": "P",
            "warehouse_id": "W", "quantity_change": 500, "reason": "sale", "timestamp": stamp}),
        _ if i.is_multiple_of(2) => {
            json!({"event_type": "inventory", "inventory_id": format!("I{i}"), "product_id": "P1",
            "warehouse_id": "W1", "quantity_change": 3, "reason": "restock", "timestamp": stamp})
        }
        _ => {
            json!({"event_type": "user_activity", "user_id": format!("U{i}"), "activity_type": "login",
            "ip_address": "198.51.100.7", "user_agent": "replay", "timestamp": stamp,
            "metadata": {"session_id": format!("S{i}"), "platform": "web"}})
        }
    };
    event.to_string().into_bytes()
}

/// Acknowledged pushes (2xx outcomes) counted by the running landfall, by outcome, and the
/// pushes in flight (under `in_flight`).
async fn acked(landfall: &Binary) -> BTreeMap<String, f64> {
    let samples = landfall.scrape().await;
    let mut counts: BTreeMap<String, f64> = ["landed", "duplicate", "dead_lettered"]
        .iter()
        .map(|o| {
            (
                o.to_string(),
                total(&samples, "landfall_pushes_total", "outcome", o),
            )
        })
        .collect();
    // Not acknowledgements: kept apart from their sum.
    counts.insert(
        "in_flight".into(),
        sample(&samples, "landfall_in_flight_pushes", &[]).unwrap(),
    );
    counts.insert(
        "replay_batches".into(),
        sample(
            &samples,
            "landfall_sink_batch_size_count",
            &[("sink", "bigquery_replays")],
        )
        .unwrap_or(0.0),
    );
    counts
}

fn acks(counts: &BTreeMap<String, f64>) -> f64 {
    ["landed", "duplicate", "dead_lettered"]
        .iter()
        .map(|o| counts[*o])
        .sum()
}

/// A replayable push subscription to landfall, and every message published to it; returns a
/// time just before the first publish, to seek back to.
async fn publish_all(pubsub: &PubSub, google: &Google, landfall: &Binary) -> chrono::DateTime<Utc> {
    let topic = google.name("events");
    pubsub
        .replayable_push_subscription(
            &topic,
            &google.name("landfall_push"),
            &landfall.url("/push"),
        )
        .await;
    let before_publish = Utc::now() - chrono::Duration::seconds(5);
    let payloads: Vec<Vec<u8>> = (0..MESSAGES).map(payload).collect();
    pubsub.publish(&topic, &payloads).await;
    before_publish
}

async fn wait_for_acks(landfall: &Binary, at_least: f64, what: &str) -> BTreeMap<String, f64> {
    poll::until(what, Duration::from_secs(240), || async {
        let acked = acked(landfall).await;
        if acks(&acked) >= at_least {
            Ok(acked)
        } else {
            Err(format!("{acked:?} of {at_least}"))
        }
    })
    .await
}

async fn rows(google: &Google, table: &str) -> (i64, i64) {
    let row = &google
        .query(&format!(
            "SELECT COUNT(*), COUNT(DISTINCT message_id) FROM {}",
            google.table(table)
        ))
        .await[0];
    let number = |v: &Value| v.as_str().unwrap().parse::<i64>().unwrap();
    (number(&row[0]), number(&row[1]))
}

fn expected() -> BTreeMap<&'static str, i64> {
    let mut counts = BTreeMap::new();
    for i in 0..MESSAGES {
        let table = match i % 10 {
            7 => "dead_letter",
            _ if i.is_multiple_of(2) => "inventory",
            _ => "user_activity",
        };
        *counts.entry(table).or_insert(0) += 1;
    }
    counts
}

/// Waits until landfall has nothing in flight and has acknowledged `acknowledged` pushes, so
/// no late redelivery is still to come.
async fn wait_until_settled(
    landfall: &Binary,
    acknowledged: f64,
    what: &str,
) -> BTreeMap<String, f64> {
    poll::until(what, Duration::from_secs(240), || async {
        let acked = acked(landfall).await;
        if acks(&acked) >= acknowledged && acked["in_flight"] == 0.0 {
            Ok(acked)
        } else {
            Err(format!("{acked:?}"))
        }
    })
    .await
}

/// The message ids each lookup query asked for.
fn asked(proxy: &FaultProxy) -> Vec<Vec<String>> {
    proxy
        .queries()
        .iter()
        .map(|q| {
            let ids: Vec<String> = q["queryParameters"]
                .as_array()
                .unwrap()
                .iter()
                .filter(|p| p["name"].as_str().is_some_and(|n| n.starts_with("ids")))
                .flat_map(|p| {
                    p["parameterValue"]["arrayValues"]
                        .as_array()
                        .unwrap()
                        .clone()
                })
                .map(|v| v["value"].as_str().unwrap().to_string())
                .collect();
            ids
        })
        .collect()
}

with_each_write_api!(
    with_a_landing_layer_a_crash_and_a_seek_back_leave_one_object_and_one_row_per_message
);

async fn with_a_landing_layer_a_crash_and_a_seek_back_leave_one_object_and_one_row_per_message(
    api: WriteApi,
) {
    // landfall's BigQuery calls go through counting proxies; insertAll's reach BigQuery
    // without an insertId to deduplicate by (the Storage Write API has none anyway).
    let (google, proxy) = through_proxies(api).await;
    proxy.rest.strip_insert_ids(true);
    let pubsub = pubsub().await;
    let quiet = [("RUST_LOG", "warn,landfall::startup=info")];
    let landfall = google.binary(&[], &quiet);
    let before_publish = publish_all(&pubsub, &google, &landfall).await;

    // Killed mid-stream, then restarted: Pub/Sub redelivers what was lost to the new one.
    let at_kill = wait_for_acks(&landfall, (MESSAGES / 3) as f64, "before the kill").await;
    assert!(
        acks(&at_kill) < MESSAGES as f64,
        "the kill came mid-stream: {at_kill:?}"
    );
    assert!(
        proxy.rest.queries().is_empty(),
        "first deliveries never query"
    );
    let mut killed = landfall;
    killed.send("KILL");
    killed.wait();
    let landfall = google.binary(&[], &quiet);
    pubsub
        .repoint(&google.name("landfall_push"), &landfall.url("/push"))
        .await;
    let expected = expected();
    poll::until("the stream completes", Duration::from_secs(240), || async {
        let objects = google.objects().len();
        let mut missing = Vec::new();
        for (table, count) in &expected {
            let (rows, _) = rows(&google, table).await;
            if rows < *count {
                missing.push(format!("{table}: {rows} of {count}"));
            }
        }
        if objects >= MESSAGES && missing.is_empty() {
            Ok(())
        } else {
            Err(format!("{objects} objects; {missing:?}"))
        }
    })
    .await;
    let before_seek = wait_until_settled(&landfall, 0.0, "before the seek").await;
    let queries_before_seek = proxy.rest.queries().len();
    let written_before_seek = proxy.rows_written();
    pubsub
        .seek(&google.name("landfall_push"), before_publish)
        .await;
    let target = acks(&before_seek) + MESSAGES as f64;
    let after_seek = wait_until_settled(&landfall, target, "after the seek").await;

    assert_eq!(google.objects().len(), MESSAGES, "one object per message");
    for (table, count) in &expected {
        assert_eq!(
            rows(&google, table).await,
            (*count, *count),
            "{table}: one row per message id"
        );
    }
    google
        .assert_no_row_without_its_object(&["inventory", "user_activity", "dead_letter"])
        .await;
    let replayed_as_duplicates = after_seek["duplicate"] - before_seek["duplicate"];
    assert!(
        replayed_as_duplicates >= MESSAGES as f64,
        "every replay is acknowledged as a duplicate: {after_seek:?}"
    );
    assert_eq!(
        (after_seek["landed"], after_seek["dead_lettered"]),
        (before_seek["landed"], before_seek["dead_lettered"]),
        "the replay stored nothing anew"
    );
    assert_eq!(
        proxy.rows_written(),
        written_before_seek,
        "the replay wrote nothing"
    );
    // The replay's lookups: one query per batch of redeliveries, for all its tables at once,
    // and no message id asked twice.
    let lookups = &asked(&proxy.rest)[queries_before_seek..];
    let batches = after_seek["replay_batches"] - before_seek["replay_batches"];
    assert!(!lookups.is_empty(), "the replays were looked up");
    assert!(
        lookups.len() as f64 <= batches,
        "{} queries for {batches} replay batches",
        lookups.len()
    );
    let mut seen = std::collections::BTreeSet::new();
    for ids in lookups {
        assert!(ids.len() <= 500);
        for id in ids {
            assert!(seen.insert(id.clone()), "message {id} was asked for twice");
        }
    }
    eprintln!(
        "replay of {MESSAGES} messages: {} lookup queries ({:.1} per 1,000 replayed)",
        lookups.len(),
        lookups.len() as f64 * 1000.0 / MESSAGES as f64
    );
}

#[tokio::test]
async fn with_bigquery_alone_a_seek_beyond_the_dedup_window_adds_a_row_per_replayed_message() {
    let google = Google::new().await;
    let proxy = FaultProxy::start(&google.bigquery.url()).await;
    let google = google.through(&proxy.url).writing_with(WriteApi::InsertAll);
    let pubsub = pubsub().await;
    let quiet = [("RUST_LOG", "warn,landfall::startup=info")];
    let args = google.bigquery_alone_args(&[]);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let landfall = Binary::start(&args, &quiet);
    let before_publish = publish_all(&pubsub, &google, &landfall).await;
    let first = wait_until_settled(&landfall, MESSAGES as f64, "first deliveries").await;

    // Past the window: BigQuery no longer knows the insertIds (the proxy takes them out).
    proxy.strip_insert_ids(true);
    pubsub
        .seek(&google.name("landfall_push"), before_publish)
        .await;
    wait_until_settled(&landfall, acks(&first) + MESSAGES as f64, "after the seek").await;

    // At least once: every message has its row, and the replay added at least one more each.
    for (table, count) in expected() {
        let (rows, distinct) = rows(&google, table).await;
        assert_eq!(distinct, count, "{table}: every message has a row");
        assert!(
            rows >= 2 * count,
            "{table}: {rows} rows for {count} messages replayed"
        );
        let once = google
            .count(&format!(
                "SELECT COUNT(*) FROM (SELECT message_id FROM {} GROUP BY message_id HAVING COUNT(*) < 2)",
                google.table(table)
            ))
            .await;
        assert_eq!(
            once, 0,
            "{table}: a replayed message without its second row"
        );
    }
}

/// Within BigQuery's dedup window, a redelivery that no landing layer can recognise (the batch
/// layout holds no record of earlier deliveries; BigQuery alone has no landing layer) is
/// inserted again with the same `insertId`, the message id, and BigQuery keeps one row.
#[tokio::test]
async fn a_redelivery_the_landing_layer_cannot_recognise_keeps_one_row_by_its_insert_id() {
    let google = Google::new().await;
    let proxy = FaultProxy::start(&google.bigquery.url()).await;
    let google = google.through(&proxy.url).writing_with(WriteApi::InsertAll);
    let batch = google.args(&["--landing-layout", "batch"]);
    let alone = google.bigquery_alone_args(&[]);
    for (id, flags) in [("71", batch), ("72", alone)] {
        let flags: Vec<&str> = flags.iter().map(String::as_str).collect();
        let app = spawn_app_with(&flags).await;
        let data = payload(0);
        for _ in 0..2 {
            let ack = json_body(app.push_json(&envelope(id, &data)).await, "/push", 200).await;
            assert_eq!(ack["duplicate"], false, "neither can tell: {ack}");
        }
        app.stop().await;
        let inserted: Vec<Value> = proxy
            .insert_bodies()
            .iter()
            .flat_map(|b| b["rows"].as_array().unwrap().clone())
            .filter(|row| row["json"]["message_id"] == id)
            .map(|row| row["insertId"].clone())
            .collect();
        assert_eq!(
            inserted,
            [json!(id), json!(id)],
            "both inserts carry the message id"
        );
        let count = google
            .count(&format!(
                "SELECT COUNT(*) FROM {} WHERE message_id = '{id}'",
                google.table("inventory")
            ))
            .await;
        assert_eq!(count, 1, "{id}: BigQuery dropped the second insert");
    }
}
