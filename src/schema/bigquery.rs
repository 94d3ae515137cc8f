//! The raw layer's BigQuery shapes: DDL for `landfall schema print`, and the REST API's table
//! resource for `landfall schema apply` and the start-up check.

use serde_json::{Value, json};

use super::{Catalog, Column, ColumnType, Mode, Table};

fn scalar_type(ty: &ColumnType) -> &'static str {
    match ty {
        ColumnType::String => "STRING",
        ColumnType::Timestamp => "TIMESTAMP",
        ColumnType::Date => "DATE",
        ColumnType::Int64 => "INT64",
        ColumnType::Numeric => "NUMERIC",
        ColumnType::Float64 => "FLOAT64",
        ColumnType::Bool => "BOOL",
        ColumnType::Json => "JSON",
        ColumnType::Record(_) => "RECORD",
    }
}

fn ddl_type(column: &Column) -> String {
    let inner = match &column.ty {
        ColumnType::Record(fields) => {
            let members: Vec<String> = fields.iter().map(ddl_member).collect();
            format!("STRUCT<{}>", members.join(", "))
        }
        ty => scalar_type(ty).to_string(),
    };
    match column.mode {
        Mode::Repeated => format!("ARRAY<{inner}>"),
        Mode::Required => format!("{inner} NOT NULL"),
        Mode::Nullable => inner,
    }
}

fn ddl_member(column: &Column) -> String {
    format!(
        "{} {} OPTIONS(description={})",
        column.name,
        ddl_type(column),
        quote(&column.description)
    )
}

fn quote(text: &str) -> String {
    format!("\"{}\"", text.replace('\\', "\\\\").replace('"', "\\\""))
}

/// `CREATE TABLE IF NOT EXISTS` with partitioning, clustering and column descriptions.
pub fn create_table(dataset: &str, table: &Table) -> String {
    let columns: Vec<String> = table.columns().map(ddl_member).collect();
    let mut ddl = format!(
        "CREATE TABLE IF NOT EXISTS `{dataset}.{}` (\n  {}\n)\nPARTITION BY DATE({})",
        table.name,
        columns.join(",\n  "),
        table.partition_by
    );
    if !table.cluster_by.is_empty() {
        ddl.push_str(&format!("\nCLUSTER BY {}", table.cluster_by.join(", ")));
    }
    ddl.push_str(&format!(
        "\nOPTIONS(description={});\n",
        quote(&table.description)
    ));
    ddl
}

/// Every table's DDL, preceded by the dataset's.
pub fn ddl(dataset: &str, catalog: &Catalog) -> String {
    let mut out = format!("CREATE SCHEMA IF NOT EXISTS `{dataset}`;\n\n");
    for table in catalog.tables() {
        out.push_str(&create_table(dataset, table));
        out.push('\n');
    }
    out
}

/// A column as the REST API's `TableFieldSchema`.
pub fn api_field(column: &Column) -> Value {
    let mode = match column.mode {
        Mode::Required => "REQUIRED",
        Mode::Nullable => "NULLABLE",
        Mode::Repeated => "REPEATED",
    };
    let mut value = json!({
        "name": column.name,
        "type": scalar_type(&column.ty),
        "mode": mode,
        "description": column.description,
    });
    if let ColumnType::Record(fields) = &column.ty {
        value["fields"] = Value::Array(fields.iter().map(api_field).collect());
    }
    value
}

/// A table as the REST API's `Table` resource (schema, partitioning, clustering).
pub fn api_table(project: &str, dataset: &str, table: &Table) -> Value {
    let mut value = json!({
        "tableReference": {"projectId": project, "datasetId": dataset, "tableId": table.name},
        "description": table.description,
        "schema": {"fields": table.columns().map(api_field).collect::<Vec<_>>()},
        "timePartitioning": {"type": "DAY", "field": table.partition_by},
    });
    if !table.cluster_by.is_empty() {
        value["clustering"] = json!({"fields": table.cluster_by});
    }
    value
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::schema::CatalogSource;

    fn catalog() -> Catalog {
        Catalog::load(&CatalogSource::Shipped).unwrap()
    }

    #[test]
    fn order_ddl_nests_items_and_partitions_and_clusters_as_the_raw_layer_needs() {
        let catalog = catalog();
        let ddl = create_table("raw", &catalog.event_type("order").unwrap().table);
        assert!(ddl.starts_with("CREATE TABLE IF NOT EXISTS `raw.order`"));
        assert!(ddl.contains(
            "items ARRAY<STRUCT<product_id STRING NOT NULL OPTIONS(description=\"Product identifier.\"), "
        ));
        assert!(ddl.contains("price NUMERIC NOT NULL"));
        assert!(ddl.contains("shipping_address STRUCT<street STRING NOT NULL"));
        assert!(ddl.contains("attributes JSON NOT NULL"));
        assert!(ddl.contains("PARTITION BY DATE(order_date)\nCLUSTER BY status, customer_id\n"));
    }

    #[test]
    fn dead_letter_is_partitioned_by_receipt_and_not_clustered() {
        let ddl = create_table("raw", catalog().dead_letter());
        assert!(ddl.contains("PARTITION BY DATE(received_at)\nOPTIONS"));
        assert!(!ddl.contains("CLUSTER BY"));
    }

    #[test]
    fn api_schema_marks_items_as_repeated_record() {
        let catalog = catalog();
        let table = api_table("p", "raw", &catalog.event_type("order").unwrap().table);
        let items = table["schema"]["fields"]
            .as_array()
            .unwrap()
            .iter()
            .find(|f| f["name"] == "items")
            .unwrap();
        assert_eq!(items["type"], "RECORD");
        assert_eq!(items["mode"], "REPEATED");
        assert_eq!(items["fields"][3]["type"], "NUMERIC");
        assert_eq!(
            table["clustering"]["fields"],
            json!(["status", "customer_id"])
        );
        assert_eq!(table["timePartitioning"]["field"], "order_date");
    }
}
