//! The curated layer in BigQuery (local-bigquery runs its views, `QUALIFY`, `UNNEST … WITH
//! OFFSET`): `schema apply` makes the dataset and views, idempotently; the views read one row
//! per message, the latest version per key and the items of it.

use serde_json::{Value, json};

use crate::support::emulators::{Google, PROJECT};
use crate::support::tools::tool;
use crate::support::{envelope, fixture_data, json_body, shipped_catalog_with, shipped_schema};
use landfall::schema::curated::{self, Dialect};
use landfall::schema::{Catalog, CatalogSource, ColumnType, Mode};

fn order(id: &str, date: &str, status: &str, items: &[(&str, i64)]) -> Vec<u8> {
    let items: Vec<_> = items
        .iter()
        .map(|(p, q)| json!({"product_id": p, "product_name": "n", "quantity": q, "price": 2.5}))
        .collect();
    json!({"event_type": "order", "order_id": id, "customer_id": "C1", "order_date": date, "status": status,
           "items": items, "shipping_address": {"street": "1 Quay", "city": "Bergen", "country": "NO"},
           "total_amount": 10.0})
    .to_string()
    .into_bytes()
}

fn cells(rows: Vec<Vec<Value>>) -> Vec<Vec<String>> {
    rows.into_iter()
        .map(|r| {
            r.into_iter()
                .map(|v| v.as_str().map_or("NULL".into(), str::to_string))
                .collect()
        })
        .collect()
}

#[tokio::test]
async fn schema_apply_makes_views_that_read_the_latest_version_and_its_items() {
    let google = Google::bare().await;
    let curated = google.curated.clone();
    let first = google.apply(&[]);
    assert!(
        first.contains(&format!("dataset {PROJECT}.{curated}: created")),
        "{first}"
    );
    assert!(
        first.contains(&format!("view {PROJECT}.{curated}.order_items: created")),
        "{first}"
    );
    let second = google.apply(&[]);
    for line in second.lines() {
        assert!(
            line.ends_with(": exists") || line.ends_with(": up to date"),
            "a second apply changes nothing: {line}"
        );
    }
    let app = google.app(&[]).await;
    let pushes = [
        (
            "1",
            order(
                "O1",
                "2026-11-25T10:05:00Z",
                "shipped",
                &[("P1", 1), ("P2", 2)],
            ),
        ),
        (
            "2",
            order("O1", "2026-11-25T10:00:00Z", "pending", &[("P1", 1)]),
        ),
        (
            "3",
            order(
                "O1",
                "2026-11-25T10:09:00Z",
                "delivered",
                &[("P1", 1), ("P2", 2), ("P3", 3)],
            ),
        ),
        (
            "4",
            order(
                "O2",
                "2026-11-25T11:00:00Z",
                "pending",
                &[("P7", 7), ("P8", 8)],
            ),
        ),
    ];
    for (id, data) in &pushes {
        json_body(app.push_json(&envelope(id, data)).await, "/push", 200).await;
    }
    // A duplicate in the raw layer, as BigQuery alone or a batch redelivery can leave.
    let (order, view) = (google.table("order"), |name: &str| google.view(name));
    google
        .query(&format!(
            "INSERT INTO {order} SELECT * FROM {order} WHERE message_id = '3'"
        ))
        .await;
    assert_eq!(google.rows("order").await, 5);

    assert_eq!(
        google
            .count(&format!("SELECT COUNT(*) FROM {}", view("order")))
            .await,
        4,
        "one row per message"
    );
    assert_eq!(
        cells(
            google
                .query(&format!(
                    "SELECT order_id, status, message_id FROM {} ORDER BY order_id",
                    view("order_latest")
                ))
                .await
        ),
        [["O1", "delivered", "3"], ["O2", "pending", "4"]]
    );
    assert_eq!(
        cells(google.query(&format!("SELECT order_id, position, product_id, quantity FROM {} ORDER BY order_id, position", view("order_items"))).await),
        [
            ["O1", "0", "P1", "1"],
            ["O1", "1", "P2", "2"],
            ["O1", "2", "P3", "3"],
            ["O2", "0", "P7", "7"],
            ["O2", "1", "P8", "8"],
        ],
        "the items of the latest versions only, each once"
    );

    // A dead letter, then the same message id landed as an event (a redrive): it leaves the view.
    json_body(app.push_fixture("invalid-order.json").await, "/push", 200).await;
    assert_eq!(
        cells(
            google
                .query(&format!("SELECT message_id FROM {}", view("dead_letter")))
                .await
        ),
        [["1000004"]]
    );
    let mut fixed: Value = serde_json::from_slice(&fixture_data("invalid-order.json")).unwrap();
    fixed["items"][1]["quantity"] = json!(1);
    json_body(
        app.push_json(&envelope("1000004", fixed.to_string().as_bytes()))
            .await,
        "/push",
        200,
    )
    .await;
    assert_eq!(
        google
            .count(&format!("SELECT COUNT(*) FROM {}", view("dead_letter")))
            .await,
        0
    );
    assert_eq!(google.rows("dead_letter").await, 1);
    app.stop().await;

    // A new field reaches the views on the next apply.
    let mut wider = shipped_schema("order");
    wider["properties"]["channel"] = json!({"type": "string"});
    let catalog = shipped_catalog_with("order", wider);
    let third = google.apply(&["--schemas", catalog.path().to_str().unwrap()]);
    assert!(
        third.contains(&format!("view {PROJECT}.{curated}.order: replaced")),
        "{third}"
    );
    assert!(
        third.contains(&format!("view {PROJECT}.{curated}.inventory: up to date")),
        "{third}"
    );
    assert_eq!(
        cells(
            google
                .query(&format!(
                    "SELECT channel FROM {} WHERE order_id = 'O1'",
                    view("order_latest")
                ))
                .await
        ),
        [["NULL"]]
    );
}

/// The DuckDB column type standing for a catalog column, enough to plan a query over it.
fn duckdb_type(ty: &ColumnType, mode: Mode) -> &'static str {
    match (ty, mode) {
        (_, Mode::Repeated) | (ColumnType::Record(_) | ColumnType::Json, _) => "VARCHAR",
        (ColumnType::Timestamp, _) => "TIMESTAMP",
        (ColumnType::Date, _) => "DATE",
        (ColumnType::Int64, _) => "BIGINT",
        (ColumnType::Numeric | ColumnType::Float64, _) => "DOUBLE",
        (ColumnType::Bool, _) => "BOOLEAN",
        (ColumnType::String, _) => "VARCHAR",
    }
}

/// Whether a filter on the view's time field reaches the raw table's scan, in DuckDB's plan.
fn pushed_below_the_window(view: &str, table: &landfall::schema::Table) -> bool {
    let columns: Vec<(String, &str)> = table
        .columns()
        .map(|c| (c.name.to_string(), duckdb_type(&c.ty, c.mode)))
        .collect();
    let request = json!({
        "tables": {format!("p.raw.{}", table.name): columns},
        "view": view,
        "filter": format!("CAST(\"{}\" AS DATE) = DATE '2026-11-25'", table.partition_by),
    });
    let launcher = tool("bigquery", "LOCAL_BIGQUERY");
    let python = std::path::Path::new(&launcher).with_file_name("python");
    let output = crate::support::tools::run_support_script(
        python.to_str().unwrap(),
        "prune_check.py",
        request.to_string().as_bytes(),
    );
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let answer: Value = serde_json::from_slice(&output.stdout).unwrap();
    answer["pushed"].as_bool().unwrap()
}

#[test]
fn a_filter_on_the_time_field_prunes_under_each_one_row_per_message_view() {
    let catalog = Catalog::load(&CatalogSource::Shipped).unwrap();
    let dialect = Dialect::BigQuery {
        project: "p",
        raw: "raw",
        curated: "curated",
    };
    let views = curated::views(&dialect, &catalog);
    for event_type in catalog.event_types() {
        let table = &event_type.table;
        let view = &views.iter().find(|v| v.name == table.name).unwrap().query;
        assert!(
            pushed_below_the_window(view, table),
            "{}: the filter stays above the window",
            table.name
        );
        // The check can fail: a window over the message id alone keeps the filter above it.
        let naive = view.replace(
            &format!("PARTITION BY `{}`, ", table.partition_by),
            "PARTITION BY ",
        );
        assert!(
            !pushed_below_the_window(&naive, table),
            "{}: the check cannot tell",
            table.name
        );
    }
}

/// `schema print --materialise-into`'s statements, run as a scheduled query would run them.
async fn materialise(google: &Google, mart: &str, lookback_days: u32) {
    let catalog = Catalog::load(&CatalogSource::Shipped).unwrap();
    let sql =
        curated::bigquery_materialise(PROJECT, &google.curated, mart, lookback_days, &catalog);
    for statement in sql.split(";\n\n").filter(|s| !s.trim().is_empty()) {
        google.query(statement).await;
    }
}

async fn latest(google: &Google, from: &str) -> Vec<Vec<String>> {
    cells(
        google
            .query(&format!(
                "SELECT order_id, status, message_id FROM {from} ORDER BY order_id"
            ))
            .await,
    )
}

#[tokio::test]
async fn the_printed_merge_keeps_a_table_equal_to_the_latest_view_within_its_lookback() {
    let google = Google::new().await;
    let app = google.app(&[]).await;
    let mart = google.name("mart");
    let (latest_view, table) = (
        google.view("order_latest"),
        format!("`{mart}`.order_latest"),
    );
    let ago = |hours: i64| {
        (chrono::Utc::now() - chrono::Duration::hours(hours))
            .to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
    };
    let push = |id: &'static str, data: Vec<u8>| {
        let app = &app;
        async move { json_body(app.push_json(&envelope(id, &data)).await, "/push", 200).await }
    };
    push("1", order("O1", &ago(2), "pending", &[("P1", 1)])).await;
    push("2", order("O2", &ago(1), "processing", &[("P2", 1)])).await;
    materialise(&google, &mart, 3).await;
    let view = latest(&google, &latest_view).await;
    assert_eq!(view, [["O1", "pending", "1"], ["O2", "processing", "2"]]);
    assert_eq!(latest(&google, &table).await, view);

    // A newer version of O1, a stale one (older than what the table holds), and an order
    // whose time field is older than the lookback.
    push("3", order("O1", &ago(0), "shipped", &[("P1", 1)])).await;
    push("4", order("O1", &ago(3), "pending", &[("P1", 1)])).await;
    push("5", order("O3", &ago(24 * 10), "delivered", &[("P3", 1)])).await;
    materialise(&google, &mart, 3).await;
    assert_eq!(
        latest(&google, &table).await,
        [["O1", "shipped", "3"], ["O2", "processing", "2"]],
        "the newer version replaces the older, the stale one does not; O3 is beyond the lookback"
    );
    materialise(&google, &mart, 30).await;
    let view = latest(&google, &latest_view).await;
    assert_eq!(view.len(), 3);
    assert_eq!(latest(&google, &table).await, view);
    materialise(&google, &mart, 30).await;
    assert_eq!(
        google.count(&format!("SELECT COUNT(*) FROM {table}")).await,
        3,
        "a second run changes nothing"
    );
}
