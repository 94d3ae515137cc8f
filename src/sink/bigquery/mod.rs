//! The raw layer in BigQuery, through `gcp-bigquery-client`: rows grouped by the group-commit
//! writer into `tabledata.insertAll` calls, one per table per batch, with `insertId` set to the
//! Pub/Sub message id so a redelivered row is dropped by BigQuery's dedup.
//!
//! Split like Vector's GCP sinks: this file holds the client and the [`Sink`] impl,
//! [`request`] the row encoding and response mapping, [`retry`] which failures are retried,
//! [`apply`] the `landfall schema apply` command.

pub mod apply;
pub mod request;
pub mod retry;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use async_trait::async_trait;
use gcp_bigquery_client::Client;
use gcp_bigquery_client::auth::Authenticator;
use gcp_bigquery_client::client_builder::ClientBuilder;
use gcp_bigquery_client::error::BQError;

use super::readiness::CachedCheck;
use super::{Sink, SinkError, Written};
use crate::config::BigQueryTarget;
use crate::event::Record;

const NAME: &str = "bigquery";

/// An emulator checks no credentials; this hands it a placeholder token.
#[derive(Clone)]
struct EmulatorToken;

#[async_trait]
impl Authenticator for EmulatorToken {
    async fn access_token(&self) -> Result<String, BQError> {
        Ok("emulator".into())
    }
}

/// Application Default Credentials, or none against `BIGQUERY_EMULATOR_HOST`.
pub async fn client(target: &BigQueryTarget) -> anyhow::Result<Client> {
    let mut builder = ClientBuilder::new();
    match &target.emulator {
        Some(url) => builder
            .with_v2_base_url(format!("{url}/bigquery/v2"))
            .build_from_authenticator(Arc::new(EmulatorToken))
            .await
            .context("failed to build the BigQuery client for the emulator"),
        None => builder
            .build_from_application_default_credentials()
            .await
            .context("failed to build the BigQuery client from Application Default Credentials"),
    }
}

pub struct BigQueryWarehouse {
    client: Client,
    project: String,
    dataset: String,
    deadline: Duration,
    readiness: CachedCheck,
}

impl BigQueryWarehouse {
    pub async fn connect(target: &BigQueryTarget, deadline: Duration) -> anyhow::Result<Self> {
        Ok(Self {
            client: client(target).await?,
            project: target.project.clone(),
            dataset: target.dataset.clone(),
            deadline,
            readiness: CachedCheck::new(
                NAME,
                format!(
                    "dataset {}.{} is not reachable",
                    target.project, target.dataset
                ),
            ),
        })
    }

    async fn insert_table(
        &self,
        table: &str,
        records: &[&Arc<Record>],
    ) -> Vec<Result<Written, SinkError>> {
        let mut results = Vec::with_capacity(records.len());
        for chunk in request::chunks(records) {
            let insert = || {
                let body = request::insert_request(chunk);
                async move {
                    self.client
                        .tabledata()
                        .insert_all(&self.project, &self.dataset, table, body?)
                        .await
                }
            };
            match retry::within(self.deadline, insert).await {
                Ok(response) => results.extend(request::outcomes(response, chunk.len())),
                Err(e) => {
                    let error = SinkError::new(
                        NAME,
                        &e.context(format!("insertAll into {}.{table} failed", self.dataset)),
                    );
                    results.extend(chunk.iter().map(|_| Err(error.clone())));
                }
            }
        }
        results
    }

    async fn probe(&self) -> anyhow::Result<()> {
        let dataset = self
            .client
            .dataset()
            .get(&self.project, &self.dataset)
            .await?;
        drop(dataset);
        Ok(())
    }
}

#[async_trait]
impl Sink for BigQueryWarehouse {
    fn name(&self) -> &'static str {
        NAME
    }

    async fn write(&self, batch: &[Arc<Record>]) -> Vec<Result<Written, SinkError>> {
        let mut by_table: BTreeMap<&'static str, Vec<usize>> = BTreeMap::new();
        for (i, record) in batch.iter().enumerate() {
            by_table.entry(record.table.name).or_default().push(i);
        }
        let inserts = by_table.iter().map(|(table, indices)| async move {
            let records: Vec<&Arc<Record>> = indices.iter().map(|&i| &batch[i]).collect();
            (indices, self.insert_table(table, &records).await)
        });
        let mut results: Vec<Option<Result<Written, SinkError>>> = vec![None; batch.len()];
        for (indices, outcomes) in futures::future::join_all(inserts).await {
            for (&i, outcome) in indices.iter().zip(outcomes) {
                results[i] = Some(outcome);
            }
        }
        results
            .into_iter()
            .map(|r| r.expect("every record belongs to exactly one table"))
            .collect()
    }

    async fn check(&self) -> Result<(), SinkError> {
        self.readiness.get(self.probe()).await
    }

    fn batches_in_flight(&self) -> usize {
        4
    }
}
