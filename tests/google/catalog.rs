//! The catalog against BigQuery: a type defined only in a test catalog gets its partitioned,
//! clustered table and typed rows; a new field becomes a column on `schema apply`; a deploy
//! that runs ahead of `schema apply` never dead-letters a valid event; and a slow first
//! comparison with the tables is made once, not again by every batch that waited for it.

use serde_json::{Value, json};

use crate::support::emulators::{Google, PROJECT, WriteApi};
use crate::support::fault_proxy::Call;
use crate::support::proxies::through_proxies;
use crate::support::{
    catalog_dir, catalog_fixture, envelope, fixture_data, json_body, shipped_catalog_with,
    shipped_schema,
};

fn payment() -> Value {
    json!({
        "event_type": "payment", "payment_id": "PAY-1", "order_id": "ORD-7", "amount": 25.5,
        "currency": "EUR", "method": "card", "installments": 3, "paid_at": "2026-11-25T11:30:00+01:00",
        "settled_on": "2026-11-27", "captured": true, "fee_ratio": 0.0125,
        "card": {"last4": "4242", "brand": "visa"}, "tags": ["web", "first-order"],
        "refunds": [{"amount": 5, "at": "2026-11-26T08:00:00Z"}], "extra": {"acquirer": "nets"}
    })
}

/// The shipped catalog with `coupon` added to `order`.
fn catalog_with_coupon() -> tempfile::TempDir {
    let mut order = shipped_schema("order");
    order["properties"]["coupon"] = json!({"type": "string", "description": "Coupon code."});
    shipped_catalog_with("order", order)
}

fn order_with_coupon() -> String {
    let mut order: Value = serde_json::from_slice(&fixture_data("order.json")).unwrap();
    order["coupon"] = json!("BLACKFRIDAY");
    order.to_string()
}

#[tokio::test]
async fn a_catalog_type_gets_its_partitioned_clustered_table_and_typed_rows() {
    let google = Google::bare().await;
    let catalog = catalog_dir(&[("payment.json", catalog_fixture("payment").to_string())]);
    let schemas = catalog.path().to_str().unwrap();

    let report = google.apply(&["--schemas", schemas]);

    assert!(
        report.contains(&format!("table {PROJECT}.{}.payment: created", google.raw)),
        "{report}"
    );
    let table = google.table_resource("payment").await;
    assert_eq!(table["timePartitioning"]["field"], "paid_at");
    assert_eq!(table["clustering"]["fields"], json!(["method", "order_id"]));
    let app = google.app(&["--schemas", schemas]).await;
    let data = payment().to_string();
    json_body(
        app.push_json(&envelope("9001", data.as_bytes())).await,
        "/push",
        200,
    )
    .await;
    let mut bad = payment();
    bad["card"]["last4"] = json!("12a4");
    let refused = json_body(
        app.push_json(&envelope("9002", bad.to_string().as_bytes()))
            .await,
        "/push",
        200,
    )
    .await;
    assert_eq!(refused["outcome"], "dead_lettered");

    let object = "output/payment/2026/11/25/10/30/payment_20261125103000_9001.json";
    assert_eq!(google.object(object), data.as_bytes());
    let rows = google
        .query(&format!(
            "SELECT amount = CAST('25.5' AS NUMERIC), installments, captured, settled_on, fee_ratio, \
             card.last4, tags[OFFSET(1)], refunds[OFFSET(0)].at, paid_at FROM {}",
            google.table("payment")
        ))
        .await;
    assert_eq!(rows.len(), 1);
    let row = &rows[0];
    assert_eq!(row[0], json!("true"));
    assert_eq!(row[1], json!("3"));
    assert_eq!(row[2], json!("true"));
    assert_eq!(row[3], json!("2026-11-27"));
    assert_eq!(row[4].as_str().unwrap().parse::<f64>().unwrap(), 0.0125);
    assert_eq!(row[5], json!("4242"));
    assert_eq!(row[6], json!("first-order"));
    assert!(
        row[7].is_string() && row[8].is_string(),
        "timestamps: {row:?}"
    );
    let dead = google
        .query(&format!(
            "SELECT message_id, event_type, reason FROM {}",
            google.table("dead_letter")
        ))
        .await;
    assert_eq!(
        dead,
        vec![vec![
            json!("9002"),
            json!("payment"),
            json!(r#"payment.card.last4: "12a4" does not match ^[0-9]{4}$"#)
        ]]
    );
    app.stop().await;
}

#[tokio::test]
async fn a_field_added_to_order_becomes_a_column_on_schema_apply() {
    let google = Google::new().await;
    let before = google.app(&[]).await;
    json_body(before.push_fixture("order.json").await, "/push", 200).await;
    before.stop().await;
    let catalog = catalog_with_coupon();
    let schemas = catalog.path().to_str().unwrap();

    let report = google.apply(&["--schemas", schemas]);

    let raw = &google.raw;
    assert!(
        report.contains(&format!(
            "table {PROJECT}.{raw}.order: added columns coupon\n"
        )),
        "{report}"
    );
    let again = google.apply(&["--schemas", schemas]);
    assert!(
        again.contains(&format!("table {PROJECT}.{raw}.order: up to date")),
        "{again}"
    );
    let coupon = google.table_resource("order").await["schema"]["fields"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["name"] == "coupon")
        .cloned()
        .unwrap();
    assert_eq!(coupon["mode"], "NULLABLE");
    let after = google.app(&["--schemas", schemas]).await;
    json_body(
        after
            .push_json(&envelope("2", order_with_coupon().as_bytes()))
            .await,
        "/push",
        200,
    )
    .await;
    let rows = google
        .query(&format!(
            "SELECT message_id, coupon FROM {} ORDER BY message_id",
            google.table("order")
        ))
        .await;
    assert_eq!(
        rows,
        vec![
            vec![json!("1000001"), Value::Null],
            vec![json!("2"), json!("BLACKFRIDAY")]
        ]
    );
    after.stop().await;
}

#[tokio::test]
async fn a_deploy_ahead_of_schema_apply_never_dead_letters_a_valid_event() {
    let google = Google::new().await;
    let catalog = catalog_with_coupon();
    let schemas = catalog.path().to_str().unwrap();

    // The new build starts against the old tables: it adds the column itself.
    let app = google.app(&["--schemas", schemas]).await;
    json_body(
        app.push_json(&envelope("1", order_with_coupon().as_bytes()))
            .await,
        "/push",
        200,
    )
    .await;

    // The table falls behind while it runs (recreated without the column): the push is not
    // acknowledged, the column comes back, and the redelivery lands.
    let shipped =
        landfall::schema::Catalog::load(&landfall::schema::CatalogSource::Shipped).unwrap();
    let old = landfall::schema::bigquery::api_table(
        PROJECT,
        &google.raw,
        &shipped.event_type("order").unwrap().table,
    );
    google
        .bigquery
        .replace_table(&google.raw, "order", &old)
        .await;
    let behind = json_body(
        app.push_json(&envelope("2", order_with_coupon().as_bytes()))
            .await,
        "/push",
        503,
    )
    .await;
    assert_eq!(behind["error"], "sink_unavailable");
    let redelivered = json_body(
        app.push_json(&envelope("2", order_with_coupon().as_bytes()))
            .await,
        "/push",
        200,
    )
    .await;
    assert_eq!(redelivered["outcome"], "landed");

    let rows = google
        .query(&format!(
            "SELECT message_id, coupon FROM {}",
            google.table("order")
        ))
        .await;
    assert_eq!(rows, vec![vec![json!("2"), json!("BLACKFRIDAY")]]);
    assert_eq!(
        google.rows("dead_letter").await,
        0,
        "nothing valid was dead-lettered"
    );
    app.stop().await;
}

#[tokio::test]
async fn a_slow_first_comparison_with_the_tables_is_made_once_for_the_pushes_that_wait() {
    let (google, proxy) = through_proxies(WriteApi::Storage).await;
    // Slower than the start waits for it: landfall serves while it is still comparing.
    proxy
        .rest
        .delay(Call::TableGet, std::time::Duration::from_millis(800));
    let app = google.app(&[]).await;

    let pushes = ["order.json", "inventory.json", "user-activity.json"].map(|name| {
        let app = &app;
        async move { json_body(app.push_fixture(name).await, "/push", 200).await }
    });
    let answers = futures::future::join_all(pushes).await;

    assert!(
        answers.iter().all(|a| a["outcome"] == "landed"),
        "{answers:?}"
    );
    let shipped =
        landfall::schema::Catalog::load(&landfall::schema::CatalogSource::Shipped).unwrap();
    assert_eq!(
        proxy.rest.seen(Call::TableGet),
        shipped.tables().count(),
        "one comparison: each table read once"
    );
    app.stop().await;
}
