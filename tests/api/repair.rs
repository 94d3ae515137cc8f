//! `landfall redrive` and `landfall backfill` on the embedded sinks, run as the real binary
//! over a data folder that a server filled: each message lands once under its original id,
//! a second run writes nothing, `--dry-run` writes nothing, tasks split the work.

use std::collections::BTreeMap;

use rusqlite::types::Value as SqlValue;
use serde_json::{Value, json};

use crate::support::*;

/// The order catalog as it was before `delivered` became a status: the incident's catalog.
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

/// Order `i`: `delivered` (a dead letter until the catalog is fixed) for even `i`, an order
/// with a negative quantity (refused by every catalog) for `i % 5 == 1`, else `shipped`.
fn order(i: usize) -> Vec<u8> {
    let (status, quantity) = match i {
        _ if i % 5 == 1 => ("shipped", -1),
        _ if i.is_multiple_of(2) => ("delivered", 1),
        _ => ("shipped", 1),
    };
    format!(
        r#"{{"event_type":"order","order_id":"O{i}", "customer_id":"C{i}","order_date":"2026-11-2{}T1{}:0{}:00Z","status":"{status}","items":[{{"product_id":"P","product_name":"Kettle","quantity":{quantity},"price":24.5}}],"shipping_address":{{"street":"1 Quay","city":"Bergen","country":"NO"}},"total_amount":24.5}}"#,
        i % 3,
        i % 4,
        i % 6
    )
    .into_bytes()
}

const ORDERS: usize = 40;

fn id(i: usize) -> String {
    format!("5{i:05}")
}

/// Serves over `data` with these flags, pushes every order, stops.
async fn land_orders(layout: &[&str], catalog: Option<&tempfile::TempDir>) -> TestApp {
    let mut flags: Vec<&str> = layout.to_vec();
    if let Some(catalog) = catalog {
        flags.extend(["--schemas", catalog.path().to_str().unwrap()]);
    }
    let app = spawn_app_with(&flags).await;
    push_orders(&app).await;
    app
}

async fn push_orders(app: &TestApp) {
    let pushes = (0..ORDERS).map(|i| {
        let mut body = envelope(&id(i), &order(i));
        body["message"]["attributes"] = json!({"source": "checkout", "n": i.to_string()});
        let app = &app;
        async move { json_body(app.push_json(&body).await, "/push", 200).await }
    });
    futures::future::join_all(pushes).await;
}

/// `landfall COMMAND --data-dir … FLAGS --output json`: exit success and the summary line.
fn repair(command: &str, app: &TestApp, flags: &[&str]) -> (bool, Value) {
    let data = app.data_dir.path().to_str().unwrap();
    let mut args = vec![command, "--data-dir", data, "--output", "json"];
    args.extend_from_slice(flags);
    let output = landfall(&args);
    let stdout = String::from_utf8(output.stdout).unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    let last = stdout
        .lines()
        .last()
        .unwrap_or_else(|| panic!("no summary: {stderr}"));
    let summary: Value = serde_json::from_str(last).unwrap_or_else(|e| {
        panic!("the last line is not the JSON summary ({e}): {last}\n{stderr}")
    });
    (output.status.success(), summary)
}

fn counts(summary: &Value) -> [u64; 5] {
    [
        "examined",
        "landed",
        "already_present",
        "still_dead",
        "failed",
    ]
    .map(|k| {
        summary[k]
            .as_u64()
            .unwrap_or_else(|| panic!("no {k} in {summary}"))
    })
}

/// Every row of `order` by message id: the columns a repair must restore exactly.
fn order_rows(app: &TestApp) -> BTreeMap<String, Vec<SqlValue>> {
    app.query(
        "SELECT message_id, order_id, status, items, publish_time, received_at, subscription, \
         attributes, landing_uri, raw FROM \"order\"",
    )
    .into_iter()
    .map(|row| match &row[0] {
        SqlValue::Text(id) => (id.clone(), row[1..].to_vec()),
        other => panic!("{other:?}"),
    })
    .collect()
}

async fn redrive_lands_fixed_dead_letters_once(layout: &[&str]) {
    let incident = catalog_without_delivered();
    let app = land_orders(layout, Some(&incident)).await;
    let delivered: Vec<usize> = (0..ORDERS).filter(|i| i % 2 == 0 && i % 5 != 1).collect();
    let broken = (0..ORDERS).filter(|i| i % 5 == 1).count();
    assert_eq!(app.count("dead_letter") as usize, delivered.len() + broken);
    let before_rows = app.count("order");
    let dead_letters_before = app.query("SELECT message_id, received_at FROM dead_letter");
    let objects_before = app.landed_objects();
    let mut app = app.restart(layout).await;
    app.stop_in_place().await;

    let (ok, dry) = repair("redrive", &app, &[layout, &["--dry-run"]].concat());
    assert!(ok, "{dry}");
    let examined = (delivered.len() + broken) as u64;
    assert_eq!(
        counts(&dry),
        [examined, delivered.len() as u64, 0, broken as u64, 0],
        "{dry}"
    );
    assert_eq!(dry["by_rule"], json!({"minimum": broken}));
    assert_eq!(
        app.landed_objects(),
        objects_before,
        "--dry-run writes nothing"
    );
    assert_eq!(app.count("order"), before_rows);

    let (ok, first) = repair("redrive", &app, layout);
    assert!(ok, "{first}");
    assert_eq!(
        counts(&first),
        [examined, delivered.len() as u64, 0, broken as u64, 0],
        "{first}"
    );

    let rows = order_rows(&app);
    let received: BTreeMap<String, SqlValue> = dead_letters_before
        .into_iter()
        .map(|r| match &r[0] {
            SqlValue::Text(id) => (id.clone(), r[1].clone()),
            other => panic!("{other:?}"),
        })
        .collect();
    for &i in &delivered {
        let row = rows
            .get(&id(i))
            .unwrap_or_else(|| panic!("{} was not redriven", id(i)));
        assert_eq!(row[1], text("delivered"));
        assert_eq!(
            row[3],
            text("2026-11-25T10:00:00Z"),
            "the original publish time"
        );
        assert_eq!(row[4], received[&id(i)], "the original receipt time");
        assert_eq!(
            row[6],
            text(&json!({"n": i.to_string(), "source": "checkout"}).to_string())
        );
        assert_eq!(
            row[8],
            text(std::str::from_utf8(&order(i)).unwrap()),
            "raw is the original payload"
        );
        let SqlValue::Text(uri) = &row[7] else {
            panic!("no landing uri")
        };
        let object = uri
            .strip_prefix(&format!("file://{}/", app.landing_root().display()))
            .unwrap();
        if !layout.contains(&"batch") {
            assert_eq!(app.read_object(object), order(i), "the original bytes");
            assert!(object.ends_with(&format!("_{}.json", id(i))), "{object}");
        } else {
            let lines = app.landed_lines();
            let line = lines
                .iter()
                .find(|(o, l)| o == object && l["message_id"] == id(i).as_str())
                .unwrap_or_else(|| panic!("{object} holds no line of {}", id(i)));
            assert_eq!(line.1["data"].as_str().unwrap().as_bytes(), order(i));
        }
    }
    assert_eq!(rows.len(), before_rows as usize + delivered.len());
    assert_eq!(
        app.count("dead_letter") as usize,
        delivered.len() + broken,
        "the dead letters stay as history"
    );

    let objects_after_first = app.landed_objects();
    let (ok, second) = repair("redrive", &app, layout);
    assert!(ok, "{second}");
    assert_eq!(
        counts(&second),
        [examined, 0, delivered.len() as u64, broken as u64, 0],
        "{second}"
    );
    assert_eq!(
        app.landed_objects(),
        objects_after_first,
        "a second run writes nothing"
    );
    assert_eq!(order_rows(&app), rows);
}

#[tokio::test]
async fn redrive_lands_the_dead_letters_a_fixed_catalog_accepts_exactly_once() {
    redrive_lands_fixed_dead_letters_once(&[]).await;
}

#[tokio::test]
async fn redrive_in_the_batch_layout_lands_them_once_too() {
    redrive_lands_fixed_dead_letters_once(&["--landing-layout", "batch"]).await;
}

#[tokio::test]
async fn redrive_with_publish_time_partitioning_lands_them_once_too() {
    redrive_lands_fixed_dead_letters_once(&["--partition-time", "publish"]).await;
}

async fn backfill_restores_exactly_the_missing_rows(layout: &[&str]) {
    let mut app = land_orders(layout, None).await;
    app.stop_in_place().await;
    let complete = order_rows(&app);
    let valid = complete.len();
    let db = rusqlite::Connection::open(app.data_dir.path().join("warehouse.db")).unwrap();
    let deleted = db
        .execute(
            "DELETE FROM \"order\" WHERE CAST(substr(message_id, 2) AS INTEGER) % 3 = 0",
            [],
        )
        .unwrap();
    assert!(deleted > 3);

    // A catalog that refuses some landed events reports them and leaves their rows missing.
    let narrow = catalog_without_delivered();
    let narrow_flags = ["--schemas", narrow.path().to_str().unwrap()];
    let (ok, refusing) = repair("backfill", &app, &[layout, &narrow_flags].concat());
    assert!(ok, "{refusing}");
    let delivered = complete
        .values()
        .filter(|row| row[1] == text("delivered"))
        .count();
    assert_eq!(refusing["refused"], delivered as u64, "{refusing}");
    assert_eq!(refusing["by_rule"], json!({"enum": delivered}));
    assert_eq!(refusing["examined"], valid as u64);

    let (ok, first) = repair("backfill", &app, layout);
    assert!(ok, "{first}");
    assert_eq!(first["examined"], valid as u64, "{first}");
    assert_eq!(
        first["landed"].as_u64().unwrap() + first["already_present"].as_u64().unwrap(),
        valid as u64,
        "{first}"
    );
    assert_eq!(first["refused"], 0, "{first}");
    assert_eq!(first["failed"], 0);
    assert_eq!(
        order_rows(&app),
        complete,
        "exactly the rows that were there"
    );

    let (ok, second) = repair("backfill", &app, &[layout, &["--types", "order"]].concat());
    assert!(ok, "{second}");
    assert_eq!(
        (
            second["landed"].as_u64(),
            second["already_present"].as_u64()
        ),
        (Some(0), Some(valid as u64))
    );

    db.execute("DELETE FROM \"order\"", []).unwrap();
    let mut objects = 0;
    let mut landed = 0;
    for task in 0..3 {
        let index = task.to_string();
        let (ok, share) = repair(
            "backfill",
            &app,
            &[layout, &["--task-index", &index, "--task-count", "3"]].concat(),
        );
        assert!(ok, "{share}");
        assert_eq!(
            share["already_present"], 0,
            "no task did another's share: {share}"
        );
        objects += share["objects"].as_u64().unwrap();
        landed += share["landed"].as_u64().unwrap();
    }
    let total = app
        .landed_objects()
        .iter()
        .filter(|o| o.starts_with("output/order/"))
        .count();
    assert_eq!(
        objects, total as u64,
        "every object read by exactly one task"
    );
    assert_eq!(landed, valid as u64);
    assert_eq!(order_rows(&app), complete);
}

#[tokio::test]
async fn backfill_restores_exactly_the_missing_rows_and_tasks_split_the_work() {
    backfill_restores_exactly_the_missing_rows(&[]).await;
}

#[tokio::test]
async fn backfill_in_the_batch_layout_restores_them_too() {
    backfill_restores_exactly_the_missing_rows(&["--landing-layout", "batch"]).await;
}

#[tokio::test]
async fn in_the_batch_layout_a_redelivered_message_is_read_counted_and_written_once() {
    const BATCH: &[&str] = &["--landing-layout", "batch"];
    let old = catalog_without_delivered();
    let mut app = land_orders(BATCH, Some(&old)).await;
    // Every message again: in this layout, a second line each, events and dead letters.
    push_orders(&app).await;
    app.stop_in_place().await;
    let fields = |s: &Value| {
        ["examined", "repeated", "landed", "still_dead", "failed"].map(|k| s[k].as_u64().unwrap())
    };

    // 16 delivered orders now pass, 8 with a negative quantity never do; 16 shipped landed.
    let (ok, dry) = repair("redrive", &app, &[BATCH, &["--dry-run"]].concat());
    assert!(ok, "{dry}");
    assert_eq!(fields(&dry), [24, 24, 16, 8, 0], "{dry}");
    let (ok, run) = repair("redrive", &app, BATCH);
    assert!(ok, "{run}");
    assert_eq!(
        fields(&run),
        fields(&dry),
        "a dry run counts what a run does: {run}"
    );
    assert_eq!(app.count("order"), 32);

    let db = rusqlite::Connection::open(app.data_dir.path().join("warehouse.db")).unwrap();
    db.execute("DELETE FROM \"order\"", []).unwrap();
    let (ok, dry) = repair("backfill", &app, &[BATCH, &["--dry-run"]].concat());
    assert!(ok, "{dry}");
    let (ok, run) = repair("backfill", &app, BATCH);
    assert!(ok, "{run}");
    // The shipped orders have two lines each, the redriven ones one.
    assert_eq!(fields(&dry)[..3], [32, 16, 32], "{dry}");
    assert_eq!(fields(&run), fields(&dry), "{run}");
    assert_eq!(app.count("order"), 32);
}

#[test]
fn a_range_that_is_not_a_time_is_refused_naming_the_flag() {
    let output = landfall(&["redrive", "--since", "yesterday"]);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("--since \"yesterday\" is not an RFC 3339 timestamp"),
        "{stderr}"
    );
}

#[test]
fn a_repair_that_cannot_read_the_landing_layer_fails_and_says_where() {
    // A folder where the layout's record belongs, a file where a type's folder belongs:
    // reading either fails, and a repair that read nothing must not look like one that
    // found nothing.
    for (command, broken, a_folder) in [
        ("redrive", "_landfall/layout.json", true),
        ("backfill", "_landfall/layout.json", true),
        ("redrive", "_dead_letter", false),
        ("backfill", "order", false),
    ] {
        let data = tempfile::tempdir().unwrap();
        let path = data.path().join("landing/output").join(broken);
        std::fs::create_dir_all(if a_folder {
            &path
        } else {
            path.parent().unwrap()
        })
        .unwrap();
        if !a_folder {
            std::fs::write(&path, "").unwrap();
        }
        let output = landfall(&[command, "--data-dir", data.path().to_str().unwrap()]);
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(1), "{command}: {stderr}");
        assert!(stderr.contains(broken), "{command} {broken}: {stderr}");
    }
}
