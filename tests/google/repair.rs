//! `landfall redrive` and `landfall backfill` against fake-gcs-server and local-bigquery,
//! run as the real binary: dead letters a fixed catalog accepts land once under their
//! original ids, a new empty dataset is backfilled exactly, tasks split the work.

use std::collections::BTreeMap;

use serde_json::{Value, json};

use crate::emulators::{BUCKET, BigQuery, Gcs, PROJECT};
use crate::helpers::{catalog_dir, envelope, json_body, landfall, shipped_schema};
use crate::{SERIAL, apply_schema, apply_schema_with, spawn_google_app_with};

const ORDERS: usize = 30;

fn id(i: usize) -> String {
    format!("6{i:05}")
}

/// `delivered` for even `i` (a dead letter under the incident's catalog), else `shipped`.
fn order(i: usize) -> Vec<u8> {
    let status = if i.is_multiple_of(2) {
        "delivered"
    } else {
        "shipped"
    };
    format!(
        r#"{{"event_type":"order","order_id":"O{i}","customer_id":"C{i}","order_date":"2026-11-2{}T10:00:00Z","status":"{status}","items":[{{"product_id":"P","product_name":"Kettle","quantity":1,"price":24.5}}],"shipping_address":{{"street":"1 Quay","city":"Bergen","country":"NO"}},"total_amount":24.5}}"#,
        i % 3
    )
    .into_bytes()
}

fn catalog_without_delivered() -> tempfile::TempDir {
    let mut order = shipped_schema("order");
    order["properties"]["status"]["enum"] = json!(["pending", "processing", "shipped"]);
    catalog_dir(&[
        ("order.json", order.to_string()),
        ("inventory.json", shipped_schema("inventory").to_string()),
        (
            "user_activity.json",
            shipped_schema("user_activity").to_string(),
        ),
    ])
}

fn sink_flags(gcs: &Gcs, bigquery: &BigQuery) -> Vec<String> {
    [
        "--gcs-bucket",
        BUCKET,
        "--storage-emulator-host",
        &gcs.url(),
        "--bigquery-project",
        PROJECT,
        "--bigquery-emulator-host",
        &bigquery.url(),
    ]
    .map(String::from)
    .to_vec()
}

/// Runs `landfall COMMAND` over the emulators; its success and its JSON summary.
fn repair(command: &str, gcs: &Gcs, bigquery: &BigQuery, flags: &[&str]) -> (bool, Value) {
    let mut args = vec![command.to_string(), "--output".into(), "json".into()];
    args.extend(sink_flags(gcs, bigquery));
    args.extend(flags.iter().map(|s| s.to_string()));
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let output = landfall(&args);
    let stdout = String::from_utf8(output.stdout).unwrap();
    let last = stdout
        .lines()
        .last()
        .unwrap_or_else(|| panic!("no summary: {}", String::from_utf8_lossy(&output.stderr)));
    (output.status.success(), serde_json::from_str(last).unwrap())
}

async fn order_rows(bigquery: &BigQuery, dataset: &str) -> BTreeMap<String, Vec<Value>> {
    bigquery
        .query(&format!(
            "SELECT message_id, status, FORMAT_TIMESTAMP('%FT%H:%M:%E*SZ', publish_time), \
             FORMAT_TIMESTAMP('%FT%H:%M:%E*SZ', received_at), attributes, landing_uri, raw \
             FROM {dataset}.`order` ORDER BY message_id"
        ))
        .await
        .into_iter()
        .map(|r| (r[0].as_str().unwrap().to_string(), r[1..].to_vec()))
        .collect()
}

async fn redrive_lands_them_once(layout: &[&str]) {
    let _turn = SERIAL.lock().await;
    let (gcs, bigquery) = (Gcs::start().await, BigQuery::start().await);
    apply_schema(&bigquery);
    let incident = catalog_without_delivered();
    let flags = [layout, &["--schemas", incident.path().to_str().unwrap()]].concat();
    let app = spawn_google_app_with(&gcs, &bigquery, &flags).await;
    for i in 0..ORDERS {
        let mut body = envelope(&id(i), &order(i));
        body["message"]["attributes"] = json!({"n": i.to_string()});
        json_body(app.push_json(&body).await, "/push", 200).await;
    }
    app.stop().await;
    let delivered = ORDERS.div_ceil(2) as u64;
    let received: BTreeMap<String, Value> = bigquery
        .query("SELECT message_id, FORMAT_TIMESTAMP('%FT%H:%M:%E*SZ', received_at) FROM raw.dead_letter")
        .await
        .into_iter()
        .map(|r| (r[0].as_str().unwrap().to_string(), r[1].clone()))
        .collect();
    let objects_before = gcs.objects();

    let (ok, dry) = repair(
        "redrive",
        &gcs,
        &bigquery,
        &[layout, &["--dry-run"]].concat(),
    );
    assert!(ok, "{dry}");
    assert_eq!(
        (dry["examined"].as_u64(), dry["landed"].as_u64()),
        (Some(delivered), Some(delivered)),
        "{dry}"
    );
    assert_eq!(gcs.objects(), objects_before, "--dry-run writes nothing");
    assert_eq!(
        order_rows(&bigquery, "raw").await.len() as u64,
        ORDERS as u64 - delivered
    );

    let (ok, first) = repair("redrive", &gcs, &bigquery, layout);
    assert!(ok, "{first}");
    assert_eq!(first["landed"], delivered, "{first}");
    assert_eq!(
        (first["still_dead"].as_u64(), first["failed"].as_u64()),
        (Some(0), Some(0))
    );
    let rows = order_rows(&bigquery, "raw").await;
    assert_eq!(rows.len(), ORDERS, "every order has its row, once");
    for i in (0..ORDERS).step_by(2) {
        let row = &rows[&id(i)];
        assert_eq!(row[0], "delivered");
        assert_eq!(
            row[1], "2026-11-25T10:00:00.000000Z",
            "the original publish time"
        );
        assert_eq!(row[2], received[&id(i)], "the original receipt time");
        assert_eq!(row[3], json!({"n": i.to_string()}).to_string());
        assert_eq!(
            row[5].as_str().unwrap().as_bytes(),
            order(i),
            "raw is the original payload"
        );
        let object = row[4]
            .as_str()
            .unwrap()
            .strip_prefix("gs://landing/")
            .unwrap()
            .to_string();
        let body = gcs.object(&object);
        if layout.is_empty() {
            assert_eq!(body, order(i), "the original bytes at the event's own path");
        } else {
            let text = String::from_utf8(body).unwrap();
            assert!(
                text.lines().any(|l| {
                    let line: Value = serde_json::from_str(l).unwrap();
                    line["message_id"] == id(i).as_str()
                        && line["data"].as_str().unwrap().as_bytes() == order(i)
                }),
                "{object} holds no line of {}",
                id(i)
            );
        }
    }

    let objects_after = gcs.objects();
    let (ok, second) = repair("redrive", &gcs, &bigquery, layout);
    assert!(ok, "{second}");
    assert_eq!(
        (
            second["landed"].as_u64(),
            second["already_present"].as_u64()
        ),
        (Some(0), Some(delivered)),
        "{second}"
    );
    assert_eq!(gcs.objects(), objects_after, "a second run writes nothing");
    assert_eq!(order_rows(&bigquery, "raw").await, rows);
}

#[tokio::test]
async fn redrive_lands_fixed_dead_letters_once_in_the_bucket_and_bigquery() {
    redrive_lands_them_once(&[]).await;
}

#[tokio::test]
async fn redrive_in_the_batch_layout_lands_them_once_in_bigquery() {
    redrive_lands_them_once(&["--landing-layout", "batch"]).await;
}

async fn backfill_fills_a_new_dataset_exactly(layout: &[&str]) {
    let _turn = SERIAL.lock().await;
    let (gcs, bigquery) = (Gcs::start().await, BigQuery::start().await);
    apply_schema(&bigquery);
    let app = spawn_google_app_with(&gcs, &bigquery, layout).await;
    for i in 0..ORDERS {
        json_body(
            app.push_json(&envelope(&id(i), &order(i))).await,
            "/push",
            200,
        )
        .await;
    }
    app.stop().await;
    let complete = order_rows(&bigquery, "raw").await;
    assert_eq!(complete.len(), ORDERS);
    apply_schema_with(&bigquery, &["--bigquery-dataset", "again"]);
    let into_again = [layout, &["--bigquery-dataset", "again", "--types", "order"]].concat();

    let mut objects = 0;
    for task in 0..3 {
        let index = task.to_string();
        let (ok, share) = repair(
            "backfill",
            &gcs,
            &bigquery,
            &[
                &into_again[..],
                &["--task-index", &index, "--task-count", "3"],
            ]
            .concat(),
        );
        assert!(ok, "{share}");
        assert_eq!(
            share["already_present"], 0,
            "no task did another's share: {share}"
        );
        objects += share["objects"].as_u64().unwrap();
    }
    let in_bucket = gcs
        .objects()
        .iter()
        .filter(|o| o.starts_with("output/order/"))
        .count();
    assert_eq!(
        objects, in_bucket as u64,
        "every object read by exactly one task"
    );
    assert_eq!(
        order_rows(&bigquery, "again").await,
        complete,
        "one row per message, the same as the original, receipt time included"
    );

    let (ok, second) = repair("backfill", &gcs, &bigquery, &into_again);
    assert!(ok, "{second}");
    assert_eq!(
        (
            second["landed"].as_u64(),
            second["already_present"].as_u64()
        ),
        (Some(0), Some(ORDERS as u64)),
        "{second}"
    );
    assert_eq!(order_rows(&bigquery, "again").await.len(), ORDERS);
}

#[tokio::test]
async fn backfill_fills_a_new_dataset_with_exactly_the_landed_rows() {
    backfill_fills_a_new_dataset_exactly(&[]).await;
}

#[tokio::test]
async fn backfill_in_the_batch_layout_fills_it_too() {
    backfill_fills_a_new_dataset_exactly(&["--landing-layout", "batch"]).await;
}
