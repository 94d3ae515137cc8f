//! The Storage Write API against local-bigquery's gRPC port, through the tests' gRPC fault
//! proxy where a fault is needed: the same rows as insertAll, column by column; a refused row
//! dead-lettered while its request-mates land; a lost answer or a lost request leaving exactly
//! one row; a call stuck on an old table schema replaced by a new one.

use serde_json::{Value, json};

use crate::support::emulators::{Google, WriteApi};
use crate::support::grpc_proxy::GrpcProxy;
use crate::support::{
    TestApp, catalog_dir, catalog_fixture, envelope, fixture_data, json_body, shipped_catalog_with,
    shipped_schema,
};

const TABLES: [&str; 5] = [
    "order",
    "inventory",
    "user_activity",
    "payment",
    "dead_letter",
];

/// Columns that say when and where a delivery was received, not what it held.
const RECEIPT_COLUMNS: [&str; 1] = ["received_at"];

fn payment() -> Value {
    json!({
        "event_type": "payment", "payment_id": "PAY-1", "order_id": "ORD-7", "amount": 25.5,
        "currency": "EUR", "method": "card", "installments": 3, "paid_at": "2026-11-25T11:30:00.123456+01:00",
        "settled_on": "2026-11-27", "captured": false, "fee_ratio": 0.0125,
        "card": {"last4": "4242", "brand": "visa"}, "tags": ["web", ""],
        "refunds": [{"amount": 5, "at": "2026-11-26T08:00:00Z"}, {"amount": 0.01, "at": "0001-01-01T00:00:00Z"}],
        "extra": {"acquirer": "nets", "note": "ü \"quoted\""}
    })
}

/// Every row of a raw-layer table, each as column name → value, without the receipt columns
/// and with the bucket's name taken out of landing URIs.
async fn rows(google: &Google, table: &str) -> Vec<serde_json::Map<String, Value>> {
    let fields = google.table_resource(table).await["schema"]["fields"].clone();
    let names: Vec<String> = fields
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["name"].as_str().unwrap().to_string())
        .collect();
    let sql = format!("SELECT * FROM {} ORDER BY message_id", google.table(table));
    google
        .query(&sql)
        .await
        .into_iter()
        .map(|row| {
            names
                .iter()
                .zip(row)
                .filter(|(name, _)| !RECEIPT_COLUMNS.contains(&name.as_str()))
                .map(|(name, value)| {
                    let value = match (name.as_str(), value) {
                        ("landing_uri", Value::String(uri)) => {
                            json!(uri.replace(&google.base_uri(), "gs://BUCKET/"))
                        }
                        (_, value) => value,
                    };
                    (name.clone(), value)
                })
                .collect()
        })
        .collect()
}

async fn push_every_type(app: &TestApp) {
    for fixture in [
        "order.json",
        "inventory.json",
        "user-activity.json",
        "invalid-order.json",
    ] {
        json_body(app.push_fixture(fixture).await, "/push", 200).await;
    }
    let payment = payment().to_string();
    let ack = json_body(
        app.push_json(&envelope("9001", payment.as_bytes())).await,
        "/push",
        200,
    )
    .await;
    assert_eq!(ack["outcome"], "landed", "{ack}");
}

#[tokio::test]
async fn both_write_apis_land_every_type_with_the_same_row_column_by_column() {
    let files: Vec<(String, String)> = ["order", "inventory", "user_activity"]
        .map(|name| (format!("{name}.json"), shipped_schema(name).to_string()))
        .into_iter()
        .chain([(
            "payment.json".into(),
            catalog_fixture("payment").to_string(),
        )])
        .collect();
    let files: Vec<(&str, String)> = files.iter().map(|(n, t)| (n.as_str(), t.clone())).collect();
    let catalog = catalog_dir(&files);
    let schemas = catalog.path().to_str().unwrap();
    let storage = Google::bare().await;
    let insert_all = Google::bare().await.writing_with(WriteApi::InsertAll);
    for google in [&storage, &insert_all] {
        google.apply(&["--schemas", schemas]);
        let app = google.app(&["--schemas", schemas]).await;
        push_every_type(&app).await;
        app.stop().await;
    }

    for table in TABLES {
        let (through_storage, through_insert_all) =
            (rows(&storage, table).await, rows(&insert_all, table).await);
        assert_eq!(through_storage.len(), 1, "{table}: {through_storage:?}");
        for (column, value) in &through_insert_all[0] {
            assert_eq!(
                through_storage[0].get(column),
                Some(value),
                "{table}.{column}"
            );
        }
        assert_eq!(through_storage, through_insert_all, "{table}");
    }
    let order = &rows(&storage, "order").await[0];
    assert_eq!(
        order["items"].as_array().map(Vec::len),
        Some(2),
        "{order:?}"
    );
    assert!(order["shipping_address"].is_object(), "{order:?}");
    let payment = &rows(&storage, "payment").await[0];
    for column in [
        "settled_on",
        "captured",
        "fee_ratio",
        "extra",
        "refunds",
        "tags",
    ] {
        assert!(!payment[column].is_null(), "payment.{column}: {payment:?}");
    }
}

#[tokio::test]
async fn a_row_bigquery_refuses_is_dead_lettered_and_its_request_mates_land() {
    let google = Google::new().await;
    let proxy = GrpcProxy::start(&google.bigquery.grpc_url());
    let google = google.through_grpc(&proxy.url);
    // Long enough a linger that the three pushes share one request.
    let app = google.app(&["--batch-linger-ms", "300"]).await;
    let order: Value = serde_json::from_slice(&fixture_data("order.json")).unwrap();
    let mut refused = order.clone();
    // A valid JSON number, beyond what NUMERIC holds: only BigQuery can say no.
    refused["total_amount"] = json!(1e40);
    let pushes = [("1", &order), ("2", &refused), ("3", &order)].map(|(id, data)| {
        let (app, body) = (&app, envelope(id, data.to_string().as_bytes()));
        async move { app.push_json(&body).await }
    });
    let answers = futures::future::join_all(pushes).await;
    let mut outcomes = Vec::new();
    for answer in answers {
        outcomes.push(json_body(answer, "/push", 200).await["outcome"].clone());
    }

    assert_eq!(outcomes, ["landed", "dead_lettered", "landed"]);
    let ids = google
        .query(&format!(
            "SELECT message_id FROM {} ORDER BY message_id",
            google.table("order")
        ))
        .await;
    assert_eq!(ids, vec![vec![json!("1")], vec![json!("3")]]);
    let dead = google
        .query(&format!(
            "SELECT message_id, reason FROM {}",
            google.table("dead_letter")
        ))
        .await;
    assert_eq!(dead.len(), 1, "{dead:?}");
    assert_eq!(dead[0][0], json!("2"));
    let reason = dead[0][1].as_str().unwrap();
    assert!(
        reason.starts_with("rejected by the warehouse: "),
        "{reason}"
    );
    assert!(
        proxy.requests() >= 2,
        "the refused request and the one without its row"
    );
    app.stop().await;
}

/// A request whose answer is lost, or which is lost itself: landfall cannot know whether the
/// rows were appended, looks them up, and appends only what is missing.
async fn one_row_after(fault: impl Fn(&GrpcProxy)) {
    let google = Google::new().await;
    let proxy = GrpcProxy::start(&google.bigquery.grpc_url());
    let google = google.through_grpc(&proxy.url);
    let app = google.app(&["--request-timeout-secs", "10"]).await;
    json_body(app.push_fixture("inventory.json").await, "/push", 200).await;
    let calls_before = proxy.calls();

    fault(&proxy);
    let ack = json_body(app.push_fixture("order.json").await, "/push", 200).await;

    assert_eq!(ack["outcome"], "landed", "{ack}");
    assert_eq!(google.rows("order").await, 1, "exactly one row");
    assert!(
        proxy.calls() > calls_before,
        "the broken call was replaced by a new one"
    );
    let (cut, dropped, _) = proxy.faults_done();
    assert_eq!(cut + dropped, 1, "the fault happened");
    // The redelivery Pub/Sub would send had the push failed: still one row.
    let again = json_body(app.push_fixture("order.json").await, "/push", 200).await;
    assert_eq!(again["duplicate"], true);
    assert_eq!(google.rows("order").await, 1);
    app.stop().await;
}

#[tokio::test]
async fn an_append_whose_answer_is_lost_leaves_exactly_one_row() {
    one_row_after(|proxy| proxy.cut_answers(1)).await;
}

#[tokio::test]
async fn an_append_lost_on_the_way_is_appended_once_after_the_lookup() {
    one_row_after(|proxy| proxy.drop_requests(1)).await;
}

#[tokio::test]
async fn a_call_stuck_on_the_old_table_schema_is_replaced_and_the_row_carries_the_new_column() {
    let google = Google::new().await;
    let proxy = GrpcProxy::start(&google.bigquery.grpc_url());
    let google = google.through_grpc(&proxy.url);
    let mut order = shipped_schema("order");
    order["properties"]["coupon"] = json!({"type": "string", "description": "Coupon code."});
    let catalog = shipped_catalog_with("order", order);
    let schemas = catalog.path().to_str().unwrap();
    // The new build starts against the old tables and adds the column itself; BigQuery's
    // Write API keeps the old schema for calls opened before it noticed.
    let app = google
        .app(&["--schemas", schemas, "--request-timeout-secs", "10"])
        .await;
    proxy.refuse_schema(1);
    let mut data: Value = serde_json::from_slice(&fixture_data("order.json")).unwrap();
    data["coupon"] = json!("BLACKFRIDAY");

    let ack = json_body(
        app.push_json(&envelope("1", data.to_string().as_bytes()))
            .await,
        "/push",
        200,
    )
    .await;

    assert_eq!(ack["outcome"], "landed", "{ack}");
    assert_eq!(proxy.faults_done().2, 1, "the old schema refused once");
    assert!(proxy.calls() >= 2, "a new call took the rows");
    let rows = google
        .query(&format!(
            "SELECT message_id, coupon FROM {}",
            google.table("order")
        ))
        .await;
    assert_eq!(rows, vec![vec![json!("1"), json!("BLACKFRIDAY")]]);
    assert_eq!(google.rows("dead_letter").await, 0, "nothing valid refused");
    app.stop().await;
}
