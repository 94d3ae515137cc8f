//! `landfall schema apply` against the BigQuery emulator.

use serde_json::json;

use landfall::schema::{Catalog, CatalogSource};

use crate::emulators::{BigQuery, PROJECT};
use crate::{SERIAL, apply_schema};

#[tokio::test]
async fn schema_apply_is_idempotent_and_creates_partitioned_clustered_tables() {
    let _turn = SERIAL.lock().await;
    let bigquery = BigQuery::start().await;

    let first = apply_schema(&bigquery);
    let second = apply_schema(&bigquery);

    let views = [
        "inventory",
        "inventory_latest",
        "order",
        "order_latest",
        "order_items",
        "user_activity",
        "dead_letter",
    ];
    let report = |dataset: &str, table: &str, view: &str| {
        let mut lines = vec![format!("dataset {PROJECT}.raw: {dataset}")];
        for t in ["inventory", "order", "user_activity", "dead_letter"] {
            lines.push(format!("table {PROJECT}.raw.{t}: {table}"));
        }
        lines.push(format!("dataset {PROJECT}.curated: {dataset}"));
        for v in views {
            lines.push(format!("view {PROJECT}.curated.{v}: {view}"));
        }
        lines.join("\n") + "\n"
    };
    assert_eq!(first, report("created", "created", "created"));
    assert_eq!(second, report("exists", "up to date", "up to date"));
    let expected = [
        ("order", "order_date", json!(["status", "customer_id"])),
        (
            "inventory",
            "timestamp",
            json!(["product_id", "warehouse_id"]),
        ),
        (
            "user_activity",
            "timestamp",
            json!(["activity_type", "user_id"]),
        ),
    ];
    for (table, partition, clustering) in expected {
        let resource = bigquery.table(table).await;
        assert_eq!(resource["timePartitioning"]["field"], partition, "{table}");
        assert_eq!(resource["clustering"]["fields"], clustering, "{table}");
    }
    let dead_letter = bigquery.table("dead_letter").await;
    assert_eq!(dead_letter["timePartitioning"]["field"], "received_at");
    let order = bigquery.table("order").await;
    let items = order["schema"]["fields"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["name"] == "items")
        .unwrap()
        .clone();
    assert_eq!(items["mode"], "REPEATED");
    assert_eq!(items["type"], "RECORD");
    assert!(items["description"].is_string());
}

#[tokio::test]
async fn schema_apply_adds_a_missing_column_and_reports_it() {
    let _turn = SERIAL.lock().await;
    let bigquery = BigQuery::start().await;
    apply_schema(&bigquery);
    // An older inventory table, without the `raw` column.
    let url = format!(
        "{}/bigquery/v2/projects/{PROJECT}/datasets/raw/tables",
        bigquery.url()
    );
    let client = reqwest::Client::new();
    client
        .delete(format!("{url}/inventory"))
        .send()
        .await
        .unwrap();
    let catalog = Catalog::load(&CatalogSource::Shipped).unwrap();
    let inventory = &catalog.event_type("inventory").unwrap().table;
    let mut old = landfall::schema::bigquery::api_table(PROJECT, "raw", inventory);
    old["schema"]["fields"]
        .as_array_mut()
        .unwrap()
        .retain(|f| f["name"] != "raw");
    let created = client.post(&url).json(&old).send().await.unwrap();
    assert!(created.status().is_success());

    let report = apply_schema(&bigquery);

    assert!(
        report.contains(&format!(
            "table {PROJECT}.raw.inventory: added columns raw\n"
        )),
        "{report}"
    );
    let fields = bigquery.table("inventory").await["schema"]["fields"].clone();
    assert!(
        fields
            .as_array()
            .unwrap()
            .iter()
            .any(|f| f["name"] == "raw")
    );
    assert!(apply_schema(&bigquery).contains("inventory: up to date"));
}
