//! The `batch` landing layout against fake-gcs-server and local-bigquery: concurrent pushes
//! share objects, each message one complete line with its bytes and one row; a bucket outage
//! acknowledges nothing whose object is not there, and redelivery lands everything.

use std::collections::{BTreeMap, BTreeSet};

use serde_json::{Value, json};

use crate::support::emulators::Google;
use crate::support::{TestApp, envelope};

const BATCH: &[&str] = &["--landing-layout", "batch"];

fn payload(i: usize) -> (Vec<u8>, &'static str) {
    let stamp = format!("2026-11-25T11:0{}:{:02}Z", i % 2, i % 60);
    match i % 3 {
        0 => (
            json!({"event_type": "inventory", "inventory_id": format!("I{i}"), "product_id": "P",
                "warehouse_id": "W", "quantity_change": (i % 100) as i64, "reason": "sale", "timestamp": stamp})
            .to_string()
            .into_bytes(),
            "inventory",
        ),
        1 => (
            json!({"event_type": "user_activity", "user_id": format!("U{i}"), "activity_type": "login",
                "ip_address": "198.51.100.7", "user_agent": "batch", "timestamp": stamp,
                "metadata": {"session_id": format!("S{i}"), "platform": "web"}})
            .to_string()
            .into_bytes(),
            "user_activity",
        ),
        _ => (b"{\"event_type\": \"refund\"}".to_vec(), "dead_letter"),
    }
}

fn id(i: usize) -> String {
    format!("8{i:06}")
}

/// Every line in the bucket, by message id, with the objects holding it. Each object must be
/// complete: only whole lines, the last one ended.
fn lines(google: &Google) -> BTreeMap<String, Vec<(String, Value)>> {
    let mut by_id: BTreeMap<String, Vec<(String, Value)>> = BTreeMap::new();
    for name in google.objects() {
        assert!(name.ends_with(".jsonl"), "{name}");
        for value in crate::support::app::batch_lines(&name, &google.object(&name)) {
            let id = value["message_id"].as_str().unwrap().to_string();
            by_id.entry(id).or_default().push((name.clone(), value));
        }
    }
    by_id
}

/// Pushes these messages with `concurrency` at once; the acks of those answered 200.
async fn push(
    app: &TestApp,
    messages: impl IntoIterator<Item = usize>,
    concurrency: usize,
) -> BTreeMap<String, Value> {
    let pushes = futures::stream::iter(messages.into_iter().map(|i| {
        let body = envelope(&id(i), &payload(i).0).to_string();
        let app = &app;
        async move {
            let response = app.post_push(body).await;
            match response.status().as_u16() {
                200 => Some(response.json::<Value>().await.unwrap()),
                503 => None,
                other => panic!("push {i}: {other}"),
            }
        }
    }));
    let acks: Vec<Option<Value>> =
        futures::StreamExt::collect(futures::StreamExt::buffer_unordered(pushes, concurrency))
            .await;
    acks.into_iter()
        .flatten()
        .map(|a| (a["message_id"].as_str().unwrap().to_string(), a))
        .collect()
}

async fn rows(google: &Google, table: &str) -> BTreeMap<String, (i64, String)> {
    google
        .query(&format!(
            "SELECT message_id, COUNT(*), ANY_VALUE(landing_uri) FROM {} GROUP BY message_id",
            google.table(table)
        ))
        .await
        .into_iter()
        .map(|r| {
            let id = r[0].as_str().unwrap().to_string();
            (
                id,
                (
                    r[1].as_str().unwrap().parse().unwrap(),
                    r[2].as_str().unwrap().to_string(),
                ),
            )
        })
        .collect()
}

/// Every message in exactly the lines and rows it should be: its bytes, its folder, one row
/// naming an object that holds it.
async fn assert_landed(google: &Google, messages: usize) {
    let lines = lines(google);
    assert_eq!(lines.len(), messages, "every message has a line");
    let mut rows_by_table = BTreeMap::new();
    for table in ["inventory", "user_activity", "dead_letter"] {
        rows_by_table.insert(table, rows(google, table).await);
    }
    for i in 0..messages {
        let (data, table) = payload(i);
        let held = &lines[&id(i)];
        for (object, line) in held {
            assert_eq!(line["data"].as_str().unwrap().as_bytes(), data, "{}", id(i));
            let folder = if table == "dead_letter" {
                "_dead_letter"
            } else {
                table
            };
            assert!(
                object.starts_with(&format!("output/{folder}/2026/11/25/")),
                "{object}"
            );
        }
        let (count, uri) = &rows_by_table[table][&id(i)];
        assert_eq!(*count, 1, "{}: one row", id(i));
        let named = uri.strip_prefix(&google.base_uri()).unwrap();
        assert!(
            held.iter().any(|(o, _)| o == named),
            "{}: its row names an object without its line",
            id(i)
        );
    }
}

#[tokio::test]
async fn thousands_of_concurrent_pushes_land_in_a_few_objects_and_one_row_each() {
    const MESSAGES: usize = 1000;
    let google = Google::new().await;
    let app = google.app(BATCH).await;

    let acked = push(&app, 0..MESSAGES, 500).await;

    assert_eq!(acked.len(), MESSAGES);
    let objects = google.objects().len();
    assert!(objects <= 40, "{objects} objects for {MESSAGES} messages");
    let lines = lines(&google);
    assert!(
        lines.values().all(|held| held.len() == 1),
        "one line per message on first delivery"
    );
    for (id, ack) in &acked {
        let (object, _) = &lines[id][0];
        assert_eq!(
            ack["landing_uri"],
            format!("{}{object}", google.base_uri()),
            "{id}"
        );
        assert_eq!(
            ack["duplicate"], false,
            "BigQuery cannot tell, so never a duplicate"
        );
    }
    assert_landed(&google, MESSAGES).await;
    app.stop().await;
}

#[tokio::test]
async fn a_bucket_outage_mid_load_acknowledges_nothing_without_its_object() {
    const MESSAGES: usize = 300;
    let google = Google::private().await;
    let flags = [BATCH, &["--landing-batch-linger-ms", "100"]].concat();
    let app = google.app(&flags).await;

    let before = push(&app, 0..MESSAGES / 3, 200).await;
    google.gcs.stop();
    let during = push(&app, MESSAGES / 3..MESSAGES, 200).await;
    let refused = MESSAGES - MESSAGES / 3 - during.len();
    assert!(refused > 0, "pushes during the outage were answered 503");
    google.gcs.restart().await;

    // Redelivery, as Pub/Sub would: everything not acknowledged, until all are.
    let mut acked: BTreeSet<String> = before.keys().chain(during.keys()).cloned().collect();
    for _ in 0..20 {
        if acked.len() == MESSAGES {
            break;
        }
        let missing: Vec<usize> = (0..MESSAGES).filter(|i| !acked.contains(&id(*i))).collect();
        acked.extend(push(&app, missing, 200).await.into_keys());
    }
    assert_eq!(acked.len(), MESSAGES, "everything lands after redelivery");
    // Every ack before the outage still holds: its object is there with its line.
    let lines = lines(&google);
    for (id, ack) in &before {
        let object = google.object_of(ack);
        assert!(
            lines[id].iter().any(|(o, _)| *o == object),
            "acked {id} without its object"
        );
    }
    assert_landed(&google, MESSAGES).await;
}
