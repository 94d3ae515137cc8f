//! The raw layer's BigQuery shapes: DDL for `landfall schema print`, and the JSON table
//! schema used by `landfall schema apply`.

use serde_json::{Value, json};

use super::{Field, Kind, Mode, TABLES, Table};

fn scalar_type(kind: Kind) -> &'static str {
    match kind {
        Kind::Id | Kind::Text | Kind::Enum(_) => "STRING",
        Kind::Timestamp => "TIMESTAMP",
        Kind::Int { .. } => "INT64",
        Kind::Numeric => "NUMERIC",
        Kind::Json => "JSON",
        Kind::Record(_) => "RECORD",
    }
}

fn ddl_type(field: &Field) -> String {
    let inner = match field.kind {
        Kind::Record(fields) => {
            let members: Vec<String> = fields.iter().map(ddl_member).collect();
            format!("STRUCT<{}>", members.join(", "))
        }
        kind => scalar_type(kind).to_string(),
    };
    match field.mode {
        Mode::Repeated => format!("ARRAY<{inner}>"),
        Mode::Required => format!("{inner} NOT NULL"),
        Mode::Nullable => inner,
    }
}

fn ddl_member(field: &Field) -> String {
    format!(
        "{} {} OPTIONS(description={})",
        field.name,
        ddl_type(field),
        quote(field.description)
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
        quote(table.description)
    ));
    ddl
}

/// Every table's DDL, preceded by the dataset's.
pub fn ddl(dataset: &str) -> String {
    let mut out = format!("CREATE SCHEMA IF NOT EXISTS `{dataset}`;\n\n");
    for table in TABLES {
        out.push_str(&create_table(dataset, table));
        out.push('\n');
    }
    out
}

/// A field as the BigQuery REST API's `TableFieldSchema`.
pub fn api_field(field: &Field) -> Value {
    let mode = match field.mode {
        Mode::Required => "REQUIRED",
        Mode::Nullable => "NULLABLE",
        Mode::Repeated => "REPEATED",
    };
    let mut value = json!({
        "name": field.name,
        "type": scalar_type(field.kind),
        "mode": mode,
        "description": field.description,
    });
    if let Kind::Record(fields) = field.kind {
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
    use crate::schema::{DEAD_LETTER, ORDER};

    #[test]
    fn order_ddl_nests_items_and_partitions_and_clusters_as_the_raw_layer_needs() {
        let ddl = create_table("raw", &ORDER);
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
        let ddl = create_table("raw", &DEAD_LETTER);
        assert!(ddl.contains("PARTITION BY DATE(received_at)\nOPTIONS"));
        assert!(!ddl.contains("CLUSTER BY"));
    }

    #[test]
    fn api_schema_marks_items_as_repeated_record() {
        let table = api_table("p", "raw", &ORDER);
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
