//! Bringing the raw layer's tables to the catalog's shape: `landfall schema apply`, and the
//! same additive changes at every start of `landfall serve`.
//!
//! Additive changes are made: new tables, new columns (always NULLABLE, since the rows already
//! there lack them), REQUIRED relaxed to NULLABLE. Anything else (a type, a partitioning or a
//! clustering that changed, a column the catalog no longer has) is a conflict: `apply`
//! changes nothing at all and names each one.

use std::collections::BTreeMap;

use anyhow::Context;
use gcp_bigquery_client::Client;
use gcp_bigquery_client::model::dataset::Dataset;
use gcp_bigquery_client::model::table::Table as ApiTable;
use serde_json::{Value, json};

use super::BigQueryTarget;
use super::retry::is_not_found;
use crate::schema::bigquery::api_table;
use crate::schema::{Catalog, Table};

/// One change to make.
enum Step {
    CreateDataset,
    CreateTable {
        name: String,
        resource: Value,
    },
    Patch {
        name: String,
        resource: Box<ApiTable>,
        changes: String,
    },
}

/// What separates the live dataset from the catalog.
pub struct Plan {
    steps: Vec<Step>,
    /// Per table, what cannot be changed in place.
    pub conflicts: BTreeMap<String, Vec<String>>,
    /// Per table, a line saying what is or will be done.
    report: Vec<String>,
}

pub async fn plan(
    client: &Client,
    target: &BigQueryTarget,
    catalog: &Catalog,
) -> anyhow::Result<Plan> {
    let mut plan = Plan {
        steps: Vec::new(),
        conflicts: BTreeMap::new(),
        report: Vec::new(),
    };
    let dataset = format!("dataset {}.{}", target.project, target.dataset);
    let exists = match client.dataset().get(&target.project, &target.dataset).await {
        Ok(_) => true,
        Err(e) if is_not_found(&e) => false,
        Err(e) => return Err(e).with_context(|| format!("failed to read {dataset}")),
    };
    if !exists {
        plan.steps.push(Step::CreateDataset);
        plan.report.push(format!("{dataset}: created"));
    } else {
        plan.report.push(format!("{dataset}: exists"));
    }
    for table in catalog.tables() {
        plan_table(client, target, table, exists, &mut plan).await?;
    }
    Ok(plan)
}

async fn plan_table(
    client: &Client,
    target: &BigQueryTarget,
    table: &Table,
    dataset_exists: bool,
    plan: &mut Plan,
) -> anyhow::Result<()> {
    let name = format!("table {}.{}.{}", target.project, target.dataset, table.name);
    let desired = api_table(&target.project, &target.dataset, table);
    let existing = if dataset_exists {
        match client
            .table()
            .get(&target.project, &target.dataset, &table.name, None)
            .await
        {
            Ok(existing) => Some(existing),
            Err(e) if is_not_found(&e) => None,
            Err(e) => return Err(e).with_context(|| format!("failed to read {name}")),
        }
    } else {
        None
    };
    let Some(existing) = existing else {
        plan.steps.push(Step::CreateTable {
            name: table.name.clone(),
            resource: desired,
        });
        plan.report.push(format!("{name}: created"));
        return Ok(());
    };
    let current = serde_json::to_value(&existing).context("a table resource serialises")?;
    let diff = compare(&desired, &current);
    if !diff.conflicts.is_empty() {
        plan.report.push(format!("{name}: differs"));
        plan.conflicts.insert(
            table.name.clone(),
            diff.conflicts
                .iter()
                .map(|c| format!("{name}: {c}"))
                .collect(),
        );
        return Ok(());
    }
    let changes = diff.changes();
    if changes.is_empty() {
        plan.report.push(format!("{name}: up to date"));
        return Ok(());
    }
    let mut resource = existing;
    resource.schema = serde_json::from_value(json!({"fields": diff.merged}))
        .context("the merged schema is valid")?;
    plan.report.push(format!("{name}: {changes}"));
    plan.steps.push(Step::Patch {
        name: table.name.clone(),
        resource: Box::new(resource),
        changes,
    });
    Ok(())
}

impl Plan {
    /// Tables that the plan leaves behind the catalog, with why (for readiness and for 503s).
    pub fn conflicts_by_table(&self) -> BTreeMap<String, String> {
        self.conflicts
            .iter()
            .map(|(table, lines)| (table.clone(), lines.join("; ")))
            .collect()
    }

    pub fn has_dataset(&self) -> bool {
        !self.steps.iter().any(|s| matches!(s, Step::CreateDataset))
    }

    /// Makes every step; returns what was done, one line per object.
    pub async fn execute(
        self,
        client: &Client,
        target: &BigQueryTarget,
    ) -> anyhow::Result<Vec<String>> {
        for step in &self.steps {
            match step {
                Step::CreateDataset => {
                    let mut dataset = Dataset::new(&target.project, &target.dataset);
                    if let Some(location) = &target.location {
                        dataset = dataset.location(location);
                    }
                    client
                        .dataset()
                        .create(dataset)
                        .await
                        .with_context(|| format!("failed to create dataset {}", target.dataset))?;
                }
                Step::CreateTable { name, resource } => {
                    let table: ApiTable = serde_json::from_value(resource.clone())
                        .context("the schema is a valid table")?;
                    client
                        .table()
                        .create(table)
                        .await
                        .with_context(|| format!("failed to create table {name}"))?;
                }
                Step::Patch {
                    name,
                    resource,
                    changes,
                } => {
                    client
                        .table()
                        .patch(&target.project, &target.dataset, name, (**resource).clone())
                        .await
                        .with_context(|| format!("failed to change table {name} ({changes})"))?;
                }
            }
        }
        Ok(self.report)
    }

    /// The same plan without the tables in conflict (what `serve` may still do).
    pub fn without_conflicts(mut self) -> Self {
        let conflicts = &self.conflicts;
        self.steps.retain(|step| match step {
            Step::CreateDataset => true,
            Step::CreateTable { name, .. } | Step::Patch { name, .. } => {
                !conflicts.contains_key(name)
            }
        });
        self
    }

    pub fn is_empty(&self) -> bool {
        self.steps.is_empty()
    }

    /// The tables a step would create or change, and how.
    pub fn changes_by_table(&self) -> BTreeMap<String, String> {
        self.steps
            .iter()
            .filter_map(|step| match step {
                Step::CreateDataset => None,
                Step::CreateTable { name, .. } => Some((name.clone(), "missing".to_string())),
                Step::Patch { name, changes, .. } => Some((name.clone(), changes.clone())),
            })
            .collect()
    }
}

/// `landfall schema apply`: the raw layer's tables, everything or nothing, then the curated
/// layer's views in `curated_dataset`. Returns one line per object.
pub async fn apply(
    target: &BigQueryTarget,
    curated_dataset: &str,
    catalog: &Catalog,
) -> anyhow::Result<Vec<String>> {
    let client = super::client(target).await?;
    let plan = plan(&client, target, catalog).await?;
    if !plan.conflicts.is_empty() {
        let conflicts: Vec<String> = plan.conflicts.values().flatten().cloned().collect();
        return Err(crate::sink::Unusable(format!(
            "{}\nincompatible differences (nothing was changed; fix them by hand or recreate the table):\n  {}",
            plan.report.join("\n"),
            conflicts.join("\n  ")
        ))
        .into());
    }
    let mut report = plan.execute(&client, target).await?;
    report.extend(super::views::apply(&client, target, curated_dataset, catalog).await?);
    Ok(report)
}

/// What the live tables lack or contradict, one line per object (`schema check`).
pub async fn describe(
    target: &BigQueryTarget,
    catalog: &Catalog,
) -> anyhow::Result<(Vec<String>, Vec<String>)> {
    let client = super::client(target).await?;
    let plan = plan(&client, target, catalog).await?;
    let conflicts = plan.conflicts.values().flatten().cloned().collect();
    Ok((plan.report, conflicts))
}

/// What separates an existing table from the desired one.
#[derive(Debug, Default, PartialEq)]
pub struct Diff {
    /// Existing fields, relaxed where the catalog relaxed them, then the missing ones (what a
    /// patch would send).
    pub merged: Vec<Value>,
    pub added: Vec<String>,
    pub relaxed: Vec<String>,
    pub conflicts: Vec<String>,
}

impl Diff {
    fn changes(&self) -> String {
        let mut parts = Vec::new();
        if !self.added.is_empty() {
            parts.push(format!("added columns {}", self.added.join(", ")));
        }
        if !self.relaxed.is_empty() {
            parts.push(format!("relaxed to NULLABLE {}", self.relaxed.join(", ")));
        }
        parts.join("; ")
    }
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
        let path_here = format!("{path}{name}");
        let mut kept = existing.clone();
        let Some(wanted) = desired.iter().find(|f| f["name"] == name) else {
            diff.conflicts.push(format!(
                "column {path_here} is in the table but not in the catalog (a field cannot be removed)"
            ));
            merged.push(kept);
            continue;
        };
        check_field(wanted, existing, &path_here, diff);
        if mode(existing) == "REQUIRED" && mode(wanted) == "NULLABLE" {
            kept["mode"] = "NULLABLE".into();
            diff.relaxed.push(path_here.clone());
        }
        if normalized_type(wanted) == "RECORD" && normalized_type(existing) == "RECORD" {
            kept["fields"] = Value::Array(merge_fields(
                fields(wanted),
                fields(existing),
                &format!("{path_here}."),
                diff,
            ));
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
    if (want_mode == "REPEATED") != (have_mode == "REPEATED") {
        diff.conflicts.push(format!(
            "column {path} is {have_mode}, expected {want_mode}"
        ));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::schema::CatalogSource;

    fn desired(event_type: &str) -> Value {
        let catalog = Catalog::load(&CatalogSource::Shipped).unwrap();
        api_table("p", "raw", &catalog.event_type(event_type).unwrap().table)
    }

    #[test]
    fn an_identical_table_needs_nothing() {
        let desired = desired("order");
        let diff = compare(&desired, &desired);
        assert_eq!(diff.changes(), "");
        assert!(diff.conflicts.is_empty(), "{diff:?}");
    }

    #[test]
    fn missing_columns_are_added_nullable_nested_ones_included() {
        let desired = desired("order");
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
    fn a_field_no_longer_required_is_relaxed() {
        let mut desired = desired("inventory");
        let current = desired.clone();
        let reason = desired["schema"]["fields"]
            .as_array_mut()
            .unwrap()
            .iter_mut()
            .find(|f| f["name"] == "reason")
            .unwrap();
        reason["mode"] = json!("NULLABLE");
        let diff = compare(&desired, &current);
        assert_eq!(diff.changes(), "relaxed to NULLABLE reason");
        assert!(diff.conflicts.is_empty());
    }

    #[test]
    fn type_mode_partition_and_removal_differences_are_conflicts_not_fixes() {
        let desired = desired("inventory");
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
        subscription["mode"] = json!("REPEATED");
        fields.push(json!({"name": "legacy", "type": "STRING", "mode": "NULLABLE"}));
        let diff = compare(&desired, &current);
        assert!(diff.added.is_empty());
        assert_eq!(
            diff.conflicts,
            vec![
                "column quantity_change is STRING, expected INT64",
                "column subscription is REPEATED, expected NULLABLE",
                "column legacy is in the table but not in the catalog (a field cannot be removed)",
                "partitioned by None, expected Some(\"timestamp\")",
            ]
        );
    }

    #[test]
    fn legacy_type_names_are_the_same_types() {
        let desired = desired("inventory");
        let mut current = desired.clone();
        for f in current["schema"]["fields"].as_array_mut().unwrap() {
            if f["type"] == "INT64" {
                f["type"] = json!("INTEGER");
            }
        }
        assert!(compare(&desired, &current).conflicts.is_empty());
    }
}
