//! The real binary, killed with SIGKILL in the middle of a load: whatever it acknowledged is
//! there, byte for byte, with its row; nothing partial is left in the landing folder; and
//! redelivering everything afterwards gives exactly one file and one row per message.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use chrono::{DateTime, TimeZone, Utc};
use serde_json::json;
use tokio::sync::Mutex;

use crate::support::app::{assert_no_row_without_its_object, batch_lines, landed_files};
use crate::support::*;

const MESSAGES: usize = 3000;
const CLIENTS: usize = 24;
const KILL_AFTER_ACKS: usize = 1100;

struct Message {
    id: String,
    event_type: &'static str,
    data: Vec<u8>,
    object: String,
}

fn messages() -> Vec<Message> {
    let start = Utc.with_ymd_and_hms(2026, 8, 20, 7, 30, 0).unwrap();
    (0..MESSAGES)
        .map(|i| {
            let time: DateTime<Utc> = start + chrono::Duration::seconds(i as i64 / 3);
            let stamp = time.to_rfc3339();
            let (event_type, data) = if i % 2 == 0 {
                ("inventory", json!({"event_type": "inventory", "inventory_id": format!("I{i}"), "product_id": "P1",
                    "warehouse_id": "W1", "quantity_change": (i % 200) as i64 - 99, "reason": "sale", "timestamp": stamp}))
            } else {
                ("user_activity", json!({"event_type": "user_activity", "user_id": format!("U{i}"), "activity_type": "login",
                    "ip_address": "198.51.100.7", "user_agent": "crash-test", "timestamp": stamp,
                    "metadata": {"session_id": format!("S{i}"), "platform": "web"}}))
            };
            let id = format!("7{i:07}");
            Message {
                object: event_object(event_type, &time, &id),
                id,
                event_type,
                data: data.to_string().into_bytes(),
            }
        })
        .collect()
}

/// Pushes every message with `CLIENTS` at once; returns the ids acknowledged with 200. With
/// `kill`, the server is killed with SIGKILL once that many acks are in.
async fn push_all(
    address: &str,
    messages: &Arc<Vec<Message>>,
    kill: Option<(usize, Binary)>,
) -> BTreeSet<String> {
    let next = Arc::new(AtomicUsize::new(0));
    let acked = Arc::new(Mutex::new(BTreeSet::new()));
    let kill = Arc::new(std::sync::Mutex::new(kill));
    let clients: Vec<_> = (0..CLIENTS)
        .map(|_| {
            let (next, acked, kill, messages) =
                (next.clone(), acked.clone(), kill.clone(), messages.clone());
            let url = format!("http://{address}/push");
            tokio::spawn(async move {
                let client = reqwest::Client::new();
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    let Some(message) = messages.get(i) else {
                        return;
                    };
                    let body = envelope(&message.id, &message.data).to_string();
                    let Ok(response) = client.post(&url).body(body).send().await else {
                        continue;
                    };
                    if response.status() != 200 {
                        continue;
                    }
                    let mut acked = acked.lock().await;
                    acked.insert(message.id.clone());
                    let mut kill = kill.lock().unwrap();
                    if kill
                        .as_ref()
                        .is_some_and(|(after, _)| acked.len() >= *after)
                    {
                        let (_, mut landfall) = kill.take().unwrap();
                        landfall.send("KILL");
                        landfall.wait();
                    }
                }
            })
        })
        .collect();
    for client in clients {
        client.await.unwrap();
    }
    Arc::try_unwrap(acked).unwrap().into_inner()
}

fn row_ids(data_dir: &Path, table: &str) -> Vec<String> {
    let db = rusqlite::Connection::open(data_dir.join("warehouse.db")).unwrap();
    let mut statement = db
        .prepare(&format!(
            "SELECT message_id FROM \"{table}\" ORDER BY message_id"
        ))
        .unwrap();
    statement
        .query_map([], |r| r.get(0))
        .unwrap()
        .map(Result::unwrap)
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_mid_load_loses_no_ack_leaves_nothing_partial_and_redelivery_is_exact() {
    let data_dir = tempfile::tempdir().unwrap();
    let landing = data_dir.path().join("landing");
    let messages = Arc::new(messages());
    let by_object: BTreeMap<&str, &Message> =
        messages.iter().map(|m| (m.object.as_str(), m)).collect();

    let data = data_dir.path().to_str().unwrap();
    let quiet = [("RUST_LOG", "warn,landfall::startup=info")];
    let landfall = Binary::start(&["--data-dir", data], &quiet);
    let address = landfall.address.clone();
    let acked = push_all(&address, &messages, Some((KILL_AFTER_ACKS, landfall))).await;

    assert!(
        acked.len() >= KILL_AFTER_ACKS && acked.len() < MESSAGES,
        "killed mid-load: {} acks",
        acked.len()
    );
    let landed = landed_files(&landing);
    for (name, bytes) in &landed {
        let message = by_object.get(name.as_str()).unwrap_or_else(|| {
            panic!("{name} is not a message's object: a partial or temporary file")
        });
        assert_eq!(bytes, &message.data, "{name} is not byte-exact");
    }
    let rows: BTreeSet<String> = ["inventory", "user_activity"]
        .iter()
        .flat_map(|t| row_ids(data_dir.path(), t))
        .collect();
    for message in messages.iter().filter(|m| acked.contains(&m.id)) {
        assert!(
            landed.contains_key(&message.object),
            "acked {} has no file",
            message.id
        );
        assert!(
            rows.contains(&message.id),
            "acked {} has no row",
            message.id
        );
    }
    assert_no_row_without_its_object(data_dir.path());

    let landfall = Binary::start(&["--data-dir", data], &quiet);
    let redelivered = push_all(&landfall.address, &messages, None).await;
    drop(landfall);

    assert_eq!(
        redelivered.len(),
        MESSAGES,
        "every redelivery is acknowledged"
    );
    let landed = landed_files(&landing);
    assert_eq!(
        landed.len(),
        MESSAGES,
        "exactly one file per message, nothing else"
    );
    for message in messages.iter() {
        assert_eq!(
            landed.get(&message.object),
            Some(&message.data),
            "{}",
            message.object
        );
    }
    for event_type in ["inventory", "user_activity"] {
        let want: Vec<String> = messages
            .iter()
            .filter(|m| m.event_type == event_type)
            .map(|m| m.id.clone())
            .collect();
        assert_eq!(
            row_ids(data_dir.path(), event_type),
            want,
            "{event_type}: one row per message"
        );
    }
    assert_no_row_without_its_object(data_dir.path());
}

/// Every line of every batch object: each object must be complete (only whole lines, the
/// last one ended), so a torn or temporary object fails here.
fn lines(files: &BTreeMap<String, Vec<u8>>) -> Vec<(String, serde_json::Value)> {
    let mut lines = Vec::new();
    for (name, body) in files {
        assert!(name.ends_with(".jsonl"), "{name} is not a batch object");
        for line in batch_lines(name, body) {
            lines.push((name.clone(), line));
        }
    }
    lines
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn in_the_batch_layout_sigkill_mid_load_loses_no_ack_and_leaves_only_complete_objects() {
    let data_dir = tempfile::tempdir().unwrap();
    let landing = data_dir.path().join("landing");
    let messages = Arc::new(messages());
    let by_id: BTreeMap<&str, &Message> = messages.iter().map(|m| (m.id.as_str(), m)).collect();
    let data = data_dir.path().to_str().unwrap();
    let flags = [
        "--data-dir",
        data,
        "--landing-layout",
        "batch",
        "--landing-batch-linger-ms",
        "20",
    ];
    let quiet = [("RUST_LOG", "warn,landfall::startup=info")];
    let landfall = Binary::start(&flags, &quiet);
    let address = landfall.address.clone();
    let acked = push_all(&address, &messages, Some((KILL_AFTER_ACKS, landfall))).await;

    assert!(
        acked.len() >= KILL_AFTER_ACKS && acked.len() < MESSAGES,
        "killed mid-load: {} acks",
        acked.len()
    );
    let landed = lines(&landed_files(&landing));
    let rows: BTreeSet<String> = ["inventory", "user_activity"]
        .iter()
        .flat_map(|t| row_ids(data_dir.path(), t))
        .collect();
    let mut lined = BTreeSet::new();
    for (object, line) in &landed {
        let id = line["message_id"].as_str().unwrap();
        let message = by_id
            .get(id)
            .unwrap_or_else(|| panic!("{object}: a line of no message"));
        assert_eq!(
            line["data"].as_str().unwrap().as_bytes(),
            message.data,
            "{id}"
        );
        assert!(
            object.starts_with(&format!("output/{}/", message.event_type)),
            "{object}"
        );
        lined.insert(id.to_string());
    }
    for id in &acked {
        assert!(lined.contains(id), "acked {id} has no line");
        assert!(rows.contains(id), "acked {id} has no row");
    }
    assert_no_row_without_its_object(data_dir.path());

    let landfall = Binary::start(&flags, &quiet);
    let redelivered = push_all(&landfall.address, &messages, None).await;
    drop(landfall);

    assert_eq!(
        redelivered.len(),
        MESSAGES,
        "every redelivery is acknowledged"
    );
    let landed = lines(&landed_files(&landing));
    let lined: BTreeSet<&str> = landed
        .iter()
        .map(|(_, l)| l["message_id"].as_str().unwrap())
        .collect();
    assert_eq!(lined.len(), MESSAGES, "every message has a line");
    for event_type in ["inventory", "user_activity"] {
        let want: Vec<String> = messages
            .iter()
            .filter(|m| m.event_type == event_type)
            .map(|m| m.id.clone())
            .collect();
        assert_eq!(
            row_ids(data_dir.path(), event_type),
            want,
            "{event_type}: one row per message, however many lines"
        );
    }
    assert_no_row_without_its_object(data_dir.path());
}
