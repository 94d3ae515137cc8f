//! The `batch` landing layout: the messages that arrive together become one newline-delimited
//! JSON object per type and minute folder, each message one complete line with its bytes; the
//! embedded warehouse still holds exactly one row per message.

use std::collections::{BTreeMap, BTreeSet};

use base64::Engine;
use serde_json::{Value, json};

use crate::support::*;

const BATCH: &[&str] = &["--landing-layout", "batch"];

/// Message `i` of a mixed load: its payload, and its type (`None` for poison).
fn message(i: usize) -> (Vec<u8>, Option<&'static str>) {
    let minute = i % 3;
    let stamp = format!("2026-11-25T10:0{minute}:{:02}Z", i % 60);
    match i % 10 {
        9 => (vec![0xff, b'{', i as u8], None),
        8 => (
            json!({"event_type": "inventory", "inventory_id": format!("I{i}"), "product_id": "P",
                "warehouse_id": "W", "quantity_change": 500, "reason": "sale", "timestamp": stamp})
            .to_string()
            .into_bytes(),
            None,
        ),
        n if n % 2 == 0 => (
            // Spacing and escapes kept as sent: the line must hold these exact bytes.
            format!(
                r#"{{"event_type":"inventory", "inventory_id":"I{i}","product_id":"P\u00e9","warehouse_id":"W","quantity_change":{},"reason":"sale","timestamp":"{stamp}"}}"#,
                i % 100
            )
            .into_bytes(),
            Some("inventory"),
        ),
        _ => (
            json!({"event_type": "user_activity", "user_id": format!("U{i}"), "activity_type": "login",
                "ip_address": "198.51.100.7", "user_agent": "batch", "timestamp": stamp,
                "metadata": {"session_id": format!("S{i}"), "platform": "web"}})
            .to_string()
            .into_bytes(),
            Some("user_activity"),
        ),
    }
}

/// The bytes a line holds: `data`, or `data_base64` decoded.
fn line_bytes(line: &Value) -> Vec<u8> {
    match (&line["data"], &line["data_base64"]) {
        (Value::String(text), Value::Null) => text.as_bytes().to_vec(),
        (Value::Null, Value::String(b64)) => b64decode(b64),
        other => panic!("a line holds exactly one of data and data_base64: {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn thousands_of_concurrent_pushes_land_in_a_few_objects_each_message_once_and_exact() {
    const MESSAGES: usize = 3000;
    // No idle cut: how many requests share an object then depends on the concurrency alone,
    // not on how evenly this test's client (a debug build) spaces them.
    let app = spawn_app_with(&[BATCH, &["--landing-batch-idle-ms", "1000"]].concat()).await;
    let messages: Vec<(String, Vec<u8>, Option<&str>)> = (0..MESSAGES)
        .map(|i| {
            let (data, event_type) = message(i);
            (format!("9{i:06}"), data, event_type)
        })
        .collect();

    let pushes = futures::stream::iter(messages.iter().map(|(id, data, _)| {
        let body = envelope(id, data).to_string();
        let app = &app;
        async move { json_body(app.post_push(body).await, "/push", 200).await }
    }));
    let acks: Vec<Value> =
        futures::StreamExt::collect(futures::StreamExt::buffer_unordered(pushes, 500)).await;

    let lines = app.landed_lines();
    let objects: BTreeSet<&str> = lines.iter().map(|(name, _)| name.as_str()).collect();
    assert!(
        objects.len() <= 60,
        "{} objects for {MESSAGES} messages: batches were not shared",
        objects.len()
    );
    assert_eq!(
        lines.len(),
        MESSAGES,
        "exactly one line per message on first delivery"
    );
    let by_id: BTreeMap<&str, &(String, Value)> = lines
        .iter()
        .map(|entry| (entry.1["message_id"].as_str().unwrap(), entry))
        .collect();
    assert_eq!(by_id.len(), MESSAGES, "no message in two lines");
    let ack_uris: BTreeMap<String, String> = acks
        .iter()
        .map(|a| {
            (
                a["message_id"].as_str().unwrap().to_string(),
                a["landing_uri"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    for (i, (id, data, event_type)) in messages.iter().enumerate() {
        let (object, line) = by_id[id.as_str()];
        assert_eq!(&line_bytes(line), data, "{id}: bytes differ");
        assert_eq!(line["publish_time"], "2026-11-25T10:00:00Z");
        assert_eq!(
            line["subscription"],
            "projects/test-proj/subscriptions/landfall"
        );
        assert_eq!(line["attributes"], json!({}));
        assert!(
            line["received_at"]
                .as_str()
                .is_some_and(|t| t.starts_with("20"))
        );
        let folder = match event_type {
            Some(t) => format!("output/{t}/2026/11/25/10/0{}/{t}_", i % 3),
            None => "output/_dead_letter/2026/11/25/10/00/dead_letter_".to_string(),
        };
        assert!(
            object.starts_with(&folder),
            "{id} is in {object}, not under {folder}"
        );
        assert!(object.ends_with(".jsonl"));
        assert_eq!(
            ack_uris[id],
            format!("file://{}/{object}", app.landing_root().display())
        );
        match event_type {
            Some(t) => {
                assert_eq!(line["event_type"], *t);
                assert!(line.get("reason").is_none(), "{line}");
            }
            None => assert!(
                line["reason"].as_str().is_some_and(|r| !r.is_empty()),
                "{line}"
            ),
        }
    }
    // Rows: exactly one per message, naming the object that holds its line.
    for table in ["inventory", "user_activity", "dead_letter"] {
        let rows = app.query(&format!("SELECT message_id, landing_uri FROM \"{table}\""));
        let want = messages
            .iter()
            .filter(|(_, _, t)| t.unwrap_or("dead_letter") == table)
            .count();
        assert_eq!(rows.len(), want, "{table}");
        for row in rows {
            let (SqlText(id), SqlText(uri)) = (SqlText::of(&row[0]), SqlText::of(&row[1]));
            assert_eq!(uri, ack_uris[&id], "{table} row of {id}");
        }
    }
    let samples = app.scrape().await;
    let objects_metric = sample(
        &samples,
        "landfall_landing_objects_total",
        &[("sink", "landing")],
    );
    assert_eq!(objects_metric, Some(objects.len() as f64));
    let per_object = sample(
        &samples,
        "landfall_landing_events_per_object_sum",
        &[("sink", "landing")],
    );
    assert_eq!(per_object, Some(MESSAGES as f64));
    app.stop().await;
}

/// A text cell, or a panic naming what it was.
struct SqlText(String);

impl SqlText {
    fn of(value: &rusqlite::types::Value) -> Self {
        match value {
            rusqlite::types::Value::Text(t) => SqlText(t.clone()),
            other => panic!("not text: {other:?}"),
        }
    }
}

#[tokio::test]
async fn a_redelivery_adds_a_line_but_never_a_second_row() {
    let app = spawn_app_with(BATCH).await;

    let first = json_body(app.push_fixture("order.json").await, "/push", 200).await;
    let second = json_body(app.push_fixture("order.json").await, "/push", 200).await;

    assert_eq!(first["duplicate"], false);
    assert_eq!(second["duplicate"], true, "SQLite knows it had the row");
    assert_eq!(app.count("order"), 1);
    let lines = app.landed_lines();
    assert_eq!(
        lines.len(),
        2,
        "the batch layout keeps no record to find a redelivery by"
    );
    assert!(lines.iter().all(|(_, l)| l["message_id"] == "1000001"));
    let row_uri = app.query("SELECT landing_uri FROM \"order\"");
    assert_eq!(row_uri[0][0], text(first["landing_uri"].as_str().unwrap()));
    app.stop().await;
}

#[tokio::test]
async fn a_dead_letter_line_carries_its_reason_and_base64_for_bytes_that_are_not_text() {
    let app = spawn_app_with(BATCH).await;
    let body = envelope("55", &[0xc3, 0x28, b'x']);

    let ack = json_body(app.push_json(&body).await, "/push", 200).await;

    assert_eq!(ack["outcome"], "dead_lettered");
    let lines = app.landed_lines();
    assert_eq!(lines.len(), 1);
    let (object, line) = &lines[0];
    assert!(
        object.starts_with("output/_dead_letter/2026/11/25/10/00/dead_letter_20261125100000_"),
        "{object}"
    );
    assert_eq!(
        line["data_base64"],
        base64::engine::general_purpose::STANDARD.encode([0xc3, 0x28, b'x'])
    );
    assert_eq!(line["event_type"], Value::Null);
    assert_eq!(line["reason"], ack["reason"]);
    assert_eq!(app.count("dead_letter"), 1);
    app.stop().await;
}
