//! The curated layer in BigQuery: its dataset beside the raw one (in the same location) and
//! the views [`crate::schema::curated`] derives, made by `landfall schema apply`.
//!
//! A view is (re)created with `CREATE OR REPLACE VIEW` only when its definition changed: each
//! carries a label with a checksum of its query, so that applying twice changes nothing and a
//! new column reaches the views on the next apply.

use anyhow::{Context, bail};
use gcp_bigquery_client::Client;
use gcp_bigquery_client::model::dataset::Dataset;
use gcp_bigquery_client::model::query_request::QueryRequest;

use super::BigQueryTarget;
use super::retry::is_not_found;
use crate::schema::Catalog;
use crate::schema::curated::{self, Dialect, View};

/// The label holding a view's definition checksum.
const DEFINITION_LABEL: &str = "landfall_definition";

/// Creates the curated dataset if needed and every view whose definition changed; one line
/// per object, saying what was done.
pub async fn apply(
    client: &Client,
    target: &BigQueryTarget,
    dataset: &str,
    catalog: &Catalog,
) -> anyhow::Result<Vec<String>> {
    let mut report = vec![ensure_dataset(client, target, dataset).await?];
    let dialect = Dialect::BigQuery {
        project: &target.project,
        raw: &target.dataset,
        curated: dataset,
    };
    for view in curated::views(&dialect, catalog) {
        report.push(apply_view(client, target, dataset, &view).await?);
    }
    Ok(report)
}

async fn ensure_dataset(
    client: &Client,
    target: &BigQueryTarget,
    dataset: &str,
) -> anyhow::Result<String> {
    let name = format!("dataset {}.{dataset}", target.project);
    match client.dataset().get(&target.project, dataset).await {
        Ok(_) => return Ok(format!("{name}: exists")),
        Err(e) if is_not_found(&e) => {}
        Err(e) => return Err(e).with_context(|| format!("failed to read {name}")),
    }
    // Views must live where the tables they read do.
    let location = match &target.location {
        Some(location) => Some(location.clone()),
        None => {
            client
                .dataset()
                .get(&target.project, &target.dataset)
                .await
                .with_context(|| {
                    format!(
                        "failed to read dataset {}.{}",
                        target.project, target.dataset
                    )
                })?
                .location
        }
    };
    let mut resource = Dataset::new(&target.project, dataset);
    if let Some(location) = &location {
        resource = resource.location(location);
    }
    client
        .dataset()
        .create(resource)
        .await
        .with_context(|| format!("failed to create {name}"))?;
    Ok(format!("{name}: created"))
}

fn checksum(view: &View) -> String {
    format!("{:08x}", crc32fast::hash(view.query.as_bytes()))
}

async fn apply_view(
    client: &Client,
    target: &BigQueryTarget,
    dataset: &str,
    view: &View,
) -> anyhow::Result<String> {
    let name = format!("view {}.{dataset}.{}", target.project, view.name);
    let checksum = checksum(view);
    let existing = match client
        .table()
        .get(&target.project, dataset, &view.name, None)
        .await
    {
        Ok(table) => Some(table),
        Err(e) if is_not_found(&e) => None,
        Err(e) => return Err(e).with_context(|| format!("failed to read {name}")),
    };
    let current = existing
        .as_ref()
        .and_then(|t| t.labels.as_ref())
        .and_then(|labels| labels.get(DEFINITION_LABEL));
    if current == Some(&checksum) {
        return Ok(format!("{name}: up to date"));
    }
    let ddl = format!(
        "CREATE OR REPLACE VIEW `{}.{dataset}.{}` OPTIONS(labels=[(\"{DEFINITION_LABEL}\", \"{checksum}\")]) AS {}",
        target.project, view.name, view.query
    );
    let response = client
        .job()
        .query(&target.project, QueryRequest::new(ddl))
        .await
        .with_context(|| format!("failed to create {name}"))?;
    if let Some(errors) = response.errors.filter(|e| !e.is_empty()) {
        bail!("failed to create {name}: {errors:?}");
    }
    Ok(format!(
        "{name}: {}",
        if existing.is_some() {
            "replaced"
        } else {
            "created"
        }
    ))
}
