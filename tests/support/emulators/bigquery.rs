//! local-bigquery (REST and the Storage Write API over gRPC), from PyPI with DuckDB pinned.

use std::process::Command;

use serde_json::{Value, json};
use tempfile::TempDir;

use super::PROJECT;
use super::process::{Process, on_fresh_ports, reserve_port, wait_until_up};
use crate::support::tools::tool;

pub struct BigQuery {
    pub port: u16,
    pub grpc_port: u16,
    data: TempDir,
    process: Process,
}

impl BigQuery {
    /// An instance of its own (the test may stop it). A port someone took meanwhile is
    /// another try on other ports.
    pub async fn start() -> Self {
        on_fresh_ports(async || {
            let bigquery = BigQuery {
                port: reserve_port(),
                grpc_port: reserve_port(),
                data: tempfile::tempdir().unwrap(),
                process: Process::idle(),
            };
            match bigquery.try_start().await {
                Ok(()) => Ok(bigquery),
                Err(e) => Err(format!("local-bigquery did not start: {e}")),
            }
        })
        .await
    }

    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// The Storage Write API's gRPC address.
    pub fn grpc_url(&self) -> String {
        format!("http://127.0.0.1:{}", self.grpc_port)
    }

    async fn try_start(&self) -> Result<(), String> {
        self.process.start(
            Command::new(tool("bigquery", "LOCAL_BIGQUERY"))
                .args([
                    "serve",
                    "--host",
                    "127.0.0.1",
                    "--port",
                    &self.port.to_string(),
                ])
                .args([
                    "--grpc-port",
                    &self.grpc_port.to_string(),
                    "--project",
                    PROJECT,
                ])
                .arg("--data-dir")
                .arg(self.data.path().join("db"))
                .env("HOME", tool("bigquery", "BIGQUERY_HOME")),
            &self.data.path().join("local-bigquery.log"),
        );
        let datasets = format!("{}/bigquery/v2/projects/{PROJECT}/datasets", self.url());
        wait_until_up(&datasets, "local-bigquery", &self.process).await
    }

    /// Starts again on the same ports and data folder: rows survive a stop.
    pub async fn restart(&self) {
        self.try_start().await.unwrap();
    }

    pub fn stop(&self) {
        self.process.stop();
    }

    /// Runs a standard-SQL query; rows as arrays of cell values (strings or null).
    pub async fn query(&self, sql: &str) -> Vec<Vec<Value>> {
        let url = format!("{}/bigquery/v2/projects/{PROJECT}/queries", self.url());
        let response: Value = reqwest::Client::new()
            .post(&url)
            .json(&json!({"query": sql, "useLegacySql": false}))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert!(
            response["errors"].is_null() && response["error"].is_null(),
            "{sql}: {response}"
        );
        response["rows"]
            .as_array()
            .map(|rows| {
                rows.iter()
                    .map(|row| {
                        row["f"]
                            .as_array()
                            .unwrap()
                            .iter()
                            .map(|c| c["v"].clone())
                            .collect()
                    })
                    .collect()
            })
            .unwrap_or_default()
    }

    pub async fn count(&self, sql: &str) -> i64 {
        self.query(sql).await[0][0]
            .as_str()
            .unwrap()
            .parse()
            .unwrap()
    }

    /// The emulator's access log: one line per API call.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.data.path().join("local-bigquery.log")).unwrap_or_default()
    }

    /// A table's resource through the REST API.
    pub async fn table(&self, dataset: &str, name: &str) -> Value {
        let url = format!(
            "{}/bigquery/v2/projects/{PROJECT}/datasets/{dataset}/tables/{name}",
            self.url()
        );
        reqwest::get(&url).await.unwrap().json().await.unwrap()
    }

    /// Replaces a table with one made from this resource (an older shape, say).
    pub async fn replace_table(&self, dataset: &str, name: &str, resource: &Value) {
        let url = format!(
            "{}/bigquery/v2/projects/{PROJECT}/datasets/{dataset}/tables",
            self.url()
        );
        let client = reqwest::Client::new();
        client.delete(format!("{url}/{name}")).send().await.unwrap();
        let created = client.post(&url).json(resource).send().await.unwrap();
        assert!(
            created.status().is_success(),
            "{}",
            created.text().await.unwrap()
        );
    }
}
