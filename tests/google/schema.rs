//! `landfall schema apply` against the BigQuery emulator.

use serde_json::json;

use landfall::schema::{Catalog, CatalogSource};

use crate::support::emulators::{Google, PROJECT};

#[tokio::test]
async fn schema_apply_is_idempotent_and_creates_partitioned_clustered_tables() {
    let google = Google::bare().await;
    let (raw, curated) = (&google.raw, &google.curated);

    let first = google.apply(&[]);
    let second = google.apply(&[]);

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
        let mut lines = vec![format!("dataset {PROJECT}.{raw}: {dataset}")];
        for t in ["inventory", "order", "user_activity", "dead_letter"] {
            lines.push(format!("table {PROJECT}.{raw}.{t}: {table}"));
        }
        lines.push(format!("dataset {PROJECT}.{curated}: {dataset}"));
        for v in views {
            lines.push(format!("view {PROJECT}.{curated}.{v}: {view}"));
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
        let resource = google.table_resource(table).await;
        assert_eq!(resource["timePartitioning"]["field"], partition, "{table}");
        assert_eq!(resource["clustering"]["fields"], clustering, "{table}");
    }
    let dead_letter = google.table_resource("dead_letter").await;
    assert_eq!(dead_letter["timePartitioning"]["field"], "received_at");
    let order = google.table_resource("order").await;
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
    let google = Google::new().await;
    // An older inventory table, without the `raw` column.
    let catalog = Catalog::load(&CatalogSource::Shipped).unwrap();
    let inventory = &catalog.event_type("inventory").unwrap().table;
    let mut old = landfall::schema::bigquery::api_table(PROJECT, &google.raw, inventory);
    old["schema"]["fields"]
        .as_array_mut()
        .unwrap()
        .retain(|f| f["name"] != "raw");
    google
        .bigquery
        .replace_table(&google.raw, "inventory", &old)
        .await;

    let report = google.apply(&[]);

    assert!(
        report.contains(&format!(
            "table {PROJECT}.{}.inventory: added columns raw\n",
            google.raw
        )),
        "{report}"
    );
    let fields = google.table_resource("inventory").await["schema"]["fields"].clone();
    assert!(
        fields
            .as_array()
            .unwrap()
            .iter()
            .any(|f| f["name"] == "raw")
    );
    assert!(google.apply(&[]).contains("inventory: up to date"));
}
