//! `landfall schema apply`: creates the dataset and tables from the schema definition,
//! idempotently. A table missing columns gets them added; a difference that cannot be
//! changed in place (a type, a mode, the partitioning) is reported and left alone.

use anyhow::{Context, bail};
use gcp_bigquery_client::Client;
use gcp_bigquery_client::error::BQError;
use gcp_bigquery_client::model::dataset::Dataset;
use gcp_bigquery_client::model::table::Table as ApiTable;
use serde_json::Value;

use super::client;
use crate::config::BigQueryTarget;
use crate::schema::bigquery::api_table;
use crate::schema::{TABLES, Table};

/// Applies every table; returns one line per object saying what was done.
pub async fn apply(target: &BigQueryTarget) -> anyhow::Result<Vec<String>> {
    let client = client(target).await?;
    let mut report = vec![ensure_dataset(&client, target).await?];
    let mut incompatible = Vec::new();
    for table in TABLES {
        let (line, conflicts) = ensure_table(&client, target, table).await?;
        report.push(line);
        incompatible.extend(conflicts);
    }
    if !incompatible.is_empty() {
        bail!(
            "{}\nincompatible differences (not changed; fix them by hand or recreate the table):\n  {}",
            report.join("\n"),
            incompatible.join("\n  ")
        );
    }
    Ok(report)
}

fn is_not_found(error: &BQError) -> bool {
    matches!(error, BQError::ResponseError { error } if error.error.code == 404)
}

async fn ensure_dataset(client: &Client, target: &BigQueryTarget) -> anyhow::Result<String> {
    let name = format!("dataset {}.{}", target.project, target.dataset);
    match client.dataset().get(&target.project, &target.dataset).await {
        Ok(_) => Ok(format!("{name}: exists")),
        Err(e) if is_not_found(&e) => {
            client
                .dataset()
                .create(Dataset::new(&target.project, &target.dataset))
                .await
                .with_context(|| format!("failed to create {name}"))?;
            Ok(format!("{name}: created"))
        }
        Err(e) => Err(e).with_context(|| format!("failed to read {name}")),
    }
}

async fn ensure_table(
    client: &Client,
    target: &BigQueryTarget,
    table: &Table,
) -> anyhow::Result<(String, Vec<String>)> {
    let name = format!("table {}.{}.{}", target.project, target.dataset, table.name);
    let desired = api_table(&target.project, &target.dataset, table);
    let existing = match client
        .table()
        .get(&target.project, &target.dataset, table.name, None)
        .await
    {
        Ok(existing) => existing,
        Err(e) if is_not_found(&e) => {
            let new: ApiTable =
                serde_json::from_value(desired).context("schema is a valid table")?;
            client
                .table()
                .create(new)
                .await
                .with_context(|| format!("failed to create {name}"))?;
            return Ok((format!("{name}: created"), Vec::new()));
        }
        Err(e) => return Err(e).with_context(|| format!("failed to read {name}")),
    };
    let current = serde_json::to_value(&existing).context("table resource serialises")?;
    let diff = compare(&desired, &current);
    let conflicts: Vec<String> = diff
        .conflicts
        .iter()
        .map(|c| format!("{name}: {c}"))
        .collect();
    if diff.added.is_empty() {
        let state = if conflicts.is_empty() {
            "up to date"
        } else {
            "differs"
        };
        return Ok((format!("{name}: {state}"), conflicts));
    }
    let mut patched = existing;
    patched.schema = serde_json::from_value(serde_json::json!({"fields": diff.merged}))
        .context("merged schema is valid")?;
    client
        .table()
        .patch(&target.project, &target.dataset, table.name, patched)
        .await
        .with_context(|| format!("failed to add columns to {name}"))?;
    Ok((
        format!("{name}: added columns {}", diff.added.join(", ")),
        conflicts,
    ))
}

/// What separates an existing table from the desired one.
#[derive(Debug, Default, PartialEq)]
pub struct Diff {
    /// Existing fields plus the missing ones, in that order (what a patch would send).
    pub merged: Vec<Value>,
    pub added: Vec<String>,
    pub conflicts: Vec<String>,
}

pub fn compare(desired: &Value, current: &Value) -> Diff {
    let mut diff = Diff::default();
    diff.merged = merge_fields(
        fields(&desired["schema"]),
        fields(&current["schema"]),
        "",
        &mut diff,
    );
    let partition = |t: &Value| t["timePartitioning"]["field"].as_str().map(str::to_string);
    if partition(desired) != partition(current) {
        diff.conflicts.push(format!(
            "partitioned by {:?}, expected {:?}",
            partition(current),
            partition(desired)
        ));
    }
    let clustering = |t: &Value| t["clustering"]["fields"].clone();
    let (want, have) = (clustering(desired), clustering(current));
    let empty = |v: &Value| v.is_null() || v.as_array().is_some_and(|a| a.is_empty());
    if want != have && !(empty(&want) && empty(&have)) {
        diff.conflicts
            .push(format!("clustered by {have}, expected {want}"));
    }
    diff
}

fn fields(parent: &Value) -> &[Value] {
    parent["fields"].as_array().map_or(&[], Vec::as_slice)
}

fn normalized_type(field: &Value) -> String {
    match field["type"].as_str().unwrap_or("") {
        "INTEGER" => "INT64",
        "FLOAT" => "FLOAT64",
        "BOOLEAN" => "BOOL",
        "STRUCT" => "RECORD",
        other => other,
    }
    .to_string()
}

fn mode(field: &Value) -> &str {
    field["mode"].as_str().unwrap_or("NULLABLE")
}

fn merge_fields(desired: &[Value], current: &[Value], path: &str, diff: &mut Diff) -> Vec<Value> {
    let mut merged: Vec<Value> = Vec::new();
    for existing in current {
        let name = existing["name"].as_str().unwrap_or("");
        let mut kept = existing.clone();
        if let Some(wanted) = desired.iter().find(|f| f["name"] == name) {
            let path = format!("{path}{name}");
            check_field(wanted, existing, &path, diff);
            if normalized_type(wanted) == "RECORD" && normalized_type(existing) == "RECORD" {
                kept["fields"] = Value::Array(merge_fields(
                    fields(wanted),
                    fields(existing),
                    &format!("{path}."),
                    diff,
                ));
            }
        }
        merged.push(kept);
    }
    for wanted in desired {
        if !current.iter().any(|f| f["name"] == wanted["name"]) {
            let mut added = wanted.clone();
            // BigQuery only adds columns that may be empty in the rows already there.
            if mode(&added) == "REQUIRED" {
                added["mode"] = "NULLABLE".into();
            }
            diff.added
                .push(format!("{path}{}", wanted["name"].as_str().unwrap_or("")));
            merged.push(added);
        }
    }
    merged
}

fn check_field(wanted: &Value, existing: &Value, path: &str, diff: &mut Diff) {
    let (want_type, have_type) = (normalized_type(wanted), normalized_type(existing));
    if want_type != have_type {
        diff.conflicts.push(format!(
            "column {path} is {have_type}, expected {want_type}"
        ));
    }
    let (want_mode, have_mode) = (mode(wanted), mode(existing));
    let repeated_mismatch = (want_mode == "REPEATED") != (have_mode == "REPEATED");
    let stricter = have_mode == "REQUIRED" && want_mode != "REQUIRED";
    if repeated_mismatch || stricter {
        diff.conflicts.push(format!(
            "column {path} is {have_mode}, expected {want_mode}"
        ));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::schema::{INVENTORY, ORDER};
    use serde_json::json;

    #[test]
    fn an_identical_table_needs_nothing() {
        let desired = api_table("p", "raw", &ORDER);
        let diff = compare(&desired, &desired);
        assert!(
            diff.added.is_empty() && diff.conflicts.is_empty(),
            "{diff:?}"
        );
    }

    #[test]
    fn missing_columns_are_added_nullable_nested_ones_included() {
        let desired = api_table("p", "raw", &ORDER);
        let mut current = desired.clone();
        let fields = current["schema"]["fields"].as_array_mut().unwrap();
        fields.retain(|f| f["name"] != "raw");
        let items = fields.iter_mut().find(|f| f["name"] == "items").unwrap();
        items["fields"]
            .as_array_mut()
            .unwrap()
            .retain(|f| f["name"] != "price");
        let diff = compare(&desired, &current);
        assert_eq!(diff.added, vec!["items.price", "raw"]);
        assert!(diff.conflicts.is_empty());
        let raw = diff.merged.last().unwrap();
        assert_eq!(raw["name"], "raw");
        assert_eq!(raw["mode"], "NULLABLE");
    }

    #[test]
    fn type_mode_and_partition_differences_are_conflicts_not_fixes() {
        let desired = api_table("p", "raw", &INVENTORY);
        let mut current = desired.clone();
        current["timePartitioning"] = json!({"type": "DAY"});
        let fields = current["schema"]["fields"].as_array_mut().unwrap();
        let quantity = fields
            .iter_mut()
            .find(|f| f["name"] == "quantity_change")
            .unwrap();
        quantity["type"] = json!("STRING");
        let subscription = fields
            .iter_mut()
            .find(|f| f["name"] == "subscription")
            .unwrap();
        subscription["mode"] = json!("REQUIRED");
        let diff = compare(&desired, &current);
        assert!(diff.added.is_empty());
        assert_eq!(
            diff.conflicts,
            vec![
                "column quantity_change is STRING, expected INT64",
                "column subscription is REQUIRED, expected NULLABLE",
                "partitioned by None, expected Some(\"timestamp\")",
            ]
        );
    }

    #[test]
    fn legacy_type_names_are_the_same_types() {
        let desired = api_table("p", "raw", &INVENTORY);
        let mut current = desired.clone();
        for f in current["schema"]["fields"].as_array_mut().unwrap() {
            if f["type"] == "INT64" {
                f["type"] = json!("INTEGER");
            }
        }
        assert!(compare(&desired, &current).conflicts.is_empty());
    }
}
