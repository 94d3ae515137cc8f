//! `landfall redrive` and `landfall backfill` against fake-gcs-server and local-bigquery,
//! run as the real binary: dead letters a fixed catalog accepts land once under their
//! original ids, a new empty dataset is backfilled exactly, tasks split the work.

use std::collections::BTreeMap;

use serde_json::{Value, json};

use crate::support::emulators::Google;
use crate::support::fault_proxy::{Call, FaultProxy};
use crate::support::{envelope, json_body, landfall, shipped_catalog_with, shipped_schema};

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
    shipped_catalog_with("order", order)
}

/// Runs `landfall COMMAND` over the emulators; its success and its JSON summary.
fn repair(command: &str, google: &Google, dataset: &str, flags: &[&str]) -> (bool, Value) {
    let mut args = vec![command.to_string(), "--output".into(), "json".into()];
    args.extend(google.sink_args_into(dataset));
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

async fn order_rows(google: &Google, dataset: &str) -> BTreeMap<String, Vec<Value>> {
    google
        .query(&format!(
            "SELECT message_id, status, FORMAT_TIMESTAMP('%FT%H:%M:%E*SZ', publish_time), \
             FORMAT_TIMESTAMP('%FT%H:%M:%E*SZ', received_at), attributes, landing_uri, raw \
             FROM `{dataset}`.`order` ORDER BY message_id"
        ))
        .await
        .into_iter()
        .map(|r| (r[0].as_str().unwrap().to_string(), r[1..].to_vec()))
        .collect()
}

async fn redrive_lands_them_once(layout: &[&str]) {
    let google = Google::new().await;
    let incident = catalog_without_delivered();
    let flags = [layout, &["--schemas", incident.path().to_str().unwrap()]].concat();
    let app = google.app(&flags).await;
    for i in 0..ORDERS {
        let mut body = envelope(&id(i), &order(i));
        body["message"]["attributes"] = json!({"n": i.to_string()});
        json_body(app.push_json(&body).await, "/push", 200).await;
    }
    app.stop().await;
    let delivered = ORDERS.div_ceil(2) as u64;
    let received: BTreeMap<String, Value> = google
        .query(&format!(
            "SELECT message_id, FORMAT_TIMESTAMP('%FT%H:%M:%E*SZ', received_at) FROM {}",
            google.table("dead_letter")
        ))
        .await
        .into_iter()
        .map(|r| (r[0].as_str().unwrap().to_string(), r[1].clone()))
        .collect();
    let objects_before = google.objects();

    let (ok, dry) = repair(
        "redrive",
        &google,
        &google.raw,
        &[layout, &["--dry-run"]].concat(),
    );
    assert!(ok, "{dry}");
    assert_eq!(
        (dry["examined"].as_u64(), dry["landed"].as_u64()),
        (Some(delivered), Some(delivered)),
        "{dry}"
    );
    assert_eq!(google.objects(), objects_before, "--dry-run writes nothing");
    assert_eq!(
        order_rows(&google, &google.raw).await.len() as u64,
        ORDERS as u64 - delivered
    );

    let (ok, first) = repair("redrive", &google, &google.raw, layout);
    assert!(ok, "{first}");
    assert_eq!(first["landed"], delivered, "{first}");
    assert_eq!(
        (first["still_dead"].as_u64(), first["failed"].as_u64()),
        (Some(0), Some(0))
    );
    let rows = order_rows(&google, &google.raw).await;
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
            .strip_prefix(&google.base_uri())
            .unwrap()
            .to_string();
        let body = google.object(&object);
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

    google
        .assert_no_row_without_its_object(&["order", "dead_letter"])
        .await;
    let objects_after = google.objects();
    let (ok, second) = repair("redrive", &google, &google.raw, layout);
    assert!(ok, "{second}");
    assert_eq!(
        (
            second["landed"].as_u64(),
            second["already_present"].as_u64()
        ),
        (Some(0), Some(delivered)),
        "{second}"
    );
    assert_eq!(
        google.objects(),
        objects_after,
        "a second run writes nothing"
    );
    assert_eq!(order_rows(&google, &google.raw).await, rows);
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
    let google = Google::new().await;
    let app = google.app(layout).await;
    for i in 0..ORDERS {
        json_body(
            app.push_json(&envelope(&id(i), &order(i))).await,
            "/push",
            200,
        )
        .await;
    }
    app.stop().await;
    let complete = order_rows(&google, &google.raw).await;
    assert_eq!(complete.len(), ORDERS);
    let again = google.name("again");
    let into_again = [layout, &["--types", "order"]].concat();
    google.apply_into(&again, &google.name("again_curated"), &[]);

    let mut objects = 0;
    for task in 0..3 {
        let index = task.to_string();
        let (ok, share) = repair(
            "backfill",
            &google,
            &again,
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
    let in_bucket = google
        .objects()
        .iter()
        .filter(|o| o.starts_with("output/order/"))
        .count();
    assert_eq!(
        objects, in_bucket as u64,
        "every object read by exactly one task"
    );
    assert_eq!(
        order_rows(&google, &again).await,
        complete,
        "one row per message, the same as the original, receipt time included"
    );

    let (ok, second) = repair("backfill", &google, &again, &into_again);
    assert!(ok, "{second}");
    assert_eq!(
        (
            second["landed"].as_u64(),
            second["already_present"].as_u64()
        ),
        (Some(0), Some(ORDERS as u64)),
        "{second}"
    );
    assert_eq!(order_rows(&google, &again).await.len(), ORDERS);
}

#[tokio::test]
async fn backfill_fills_a_new_dataset_with_exactly_the_landed_rows() {
    backfill_fills_a_new_dataset_exactly(&[]).await;
}

#[tokio::test]
async fn backfill_in_the_batch_layout_fills_it_too() {
    backfill_fills_a_new_dataset_exactly(&["--landing-layout", "batch"]).await;
}

/// A backfill with a bucket and no warehouse has nothing to write to: a configuration to
/// change (exit 2), said before anything is read.
#[tokio::test]
async fn a_backfill_without_a_warehouse_is_refused_as_a_configuration_to_change() {
    let google = Google::bare().await;
    let output = landfall(&[
        "backfill",
        "--gcs-bucket",
        &google.bucket,
        "--storage-emulator-host",
        &google.gcs.url(),
    ]);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("backfill writes warehouse rows: configure --bigquery-project"),
        "{stderr}"
    );
}

/// A repair reads the bucket only with the layout its record names: a record it cannot read
/// (Cloud Storage answering 503, not "no such object") stops it, naming what failed, instead
/// of reading the objects with a layout it never compared.
#[tokio::test]
async fn a_layout_record_that_cannot_be_read_stops_a_backfill() {
    let google = Google::new().await;
    let app = google.app(&[]).await;
    json_body(app.push_fixture("order.json").await, "/push", 200).await;
    app.stop().await;
    let proxy = FaultProxy::start(&google.gcs.url()).await;
    proxy.fail(Call::LayoutRead, 503);
    let google = google.through_gcs(&proxy.url);

    let mut args = vec![
        "backfill".to_string(),
        "--request-timeout-secs".into(),
        "2".into(),
    ];
    args.extend(google.sink_args());
    let args: Vec<&str> = args.iter().map(String::as_str).collect();

    let output = landfall(&args);

    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("layout.json"), "{stderr}");
    assert!(proxy.failed() >= 1, "the record's read reached the proxy");
}
