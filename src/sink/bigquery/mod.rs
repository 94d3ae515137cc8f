//! The raw layer in BigQuery: rows grouped by the group-commit writer into one request per
//! table per batch, through the Storage Write API's default streams ([`storage`], the
//! default) or `tabledata.insertAll` with `insertId` set to the Pub/Sub message id
//! ([`request`]); REST calls through `gcp-bigquery-client`.
//!
//! Neither keeps one row per message by itself: the default stream does not deduplicate, and
//! `insertId` only for about a minute. With a landing layer configured this sink writes after
//! it and is told which records' objects already existed: those are looked up by message id
//! ([`lookup`], one query per batch, pruned to their partitions) and written only when their
//! row is missing. First deliveries pay nothing extra. An append whose answer is lost is
//! settled the same way before anything is sent again ([`append`]).
//!
//! Split like Vector's GCP sinks: this file holds the client and the [`Sink`] impl,
//! [`storage`] and [`append`] the Storage Write API, [`request`] insertAll's rows and
//! answers, [`retry`] which REST failures are retried, [`lookup`] the replay check, [`apply`]
//! the table changes of `landfall schema apply` (also made, when additive, at start).

mod append;
pub mod apply;
pub mod lookup;
pub mod request;
pub mod retry;
pub mod storage;
pub mod views;

use std::collections::{BTreeMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::Context;
use async_trait::async_trait;
use gcp_bigquery_client::Client;
use gcp_bigquery_client::auth::Authenticator;
use gcp_bigquery_client::client_builder::ClientBuilder;
use gcp_bigquery_client::error::BQError;
use tokio::time::Instant;

use super::batch::BatchConfig;
use super::readiness::CachedCheck;
use super::{Access, Entry, Layer, Probe, Sink, SinkError, Unusable, Written};
use crate::schema::Catalog;
use crate::telemetry::said::said;
use lookup::{Ask, Recent};
use storage::{StorageTarget, StorageWriter};

const NAME: &str = "bigquery";
/// How long a start waits for the first comparison with the live tables.
const FIRST_SYNC_WAIT: Duration = Duration::from_secs(2);
/// How often a table behind the catalog is compared again (and fixed when additive).
const RESYNC_INTERVAL: Duration = Duration::from_secs(10);
/// How redeliveries are batched: one lookup query per batch, so as many as a few hundred
/// milliseconds gather (measured in benches/load.rs `--replay`).
const REPLAY_BATCH: BatchConfig = BatchConfig {
    max_events: 500,
    max_bytes: 8 * 1024 * 1024,
    linger: Duration::from_millis(100),
    // A replay arrives as fast as Pub/Sub sends it: let its batches fill, since every batch
    // is a query.
    idle: None,
};

/// The dataset of the raw layer.
#[derive(Debug, Clone)]
pub struct BigQueryTarget {
    pub project: String,
    pub dataset: String,
    /// Where `schema apply` creates the dataset (e.g. `EU`, `europe-west1`); BigQuery's
    /// default (US) when unset.
    pub location: Option<String>,
    /// Base URL of an emulator's REST API, e.g. `http://127.0.0.1:9050`.
    pub emulator: Option<String>,
}

/// The raw layer as a sink: the dataset, and the API its rows go through.
#[derive(Debug, Clone)]
pub struct BigQueryConfig {
    pub target: BigQueryTarget,
    pub write_api: WriteApi,
}

/// How rows reach BigQuery.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WriteApi {
    /// The Storage Write API's default streams, at an emulator's gRPC address or Google's.
    Storage { emulator: Option<String> },
    /// `tabledata.insertAll`, the legacy streaming API.
    InsertAll,
}

impl std::fmt::Display for WriteApi {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            WriteApi::Storage { .. } => "Storage Write API",
            WriteApi::InsertAll => "insertAll",
        })
    }
}

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

/// Tables whose live shape is behind the catalog, and why; writes to them are refused (503)
/// rather than risk BigQuery refusing valid rows into the dead letter.
#[derive(Default)]
struct SchemaState {
    behind: BTreeMap<String, String>,
    last_sync: Option<Instant>,
}

pub struct BigQueryWarehouse {
    client: Client,
    /// The Storage Write API's streams; `None`: rows go through insertAll.
    storage: Option<StorageWriter>,
    target: BigQueryTarget,
    catalog: Arc<Catalog>,
    deadline: Duration,
    readiness: CachedCheck,
    schema: Mutex<SchemaState>,
    /// One comparison with the live tables at a time.
    syncing: tokio::sync::Mutex<()>,
    /// Rows this instance inserted or found lately: a redelivery of one needs no query.
    recent: Recent,
    /// Only `serve` changes tables; a repair run refuses tables that differ.
    access: Access,
}

impl BigQueryWarehouse {
    /// Builds the client. For `serve`, brings the tables to the catalog's shape where that is
    /// additive, in the background: a BigQuery that does not answer neither stops nor delays
    /// the start (`/readyz` reports it, and its rows wait). A repair run compares at once and
    /// refuses tables that are not the catalog's.
    pub async fn connect(
        config: &BigQueryConfig,
        catalog: Arc<Catalog>,
        deadline: Duration,
        access: Access,
    ) -> anyhow::Result<Arc<Self>> {
        let target = &config.target;
        let storage = match &config.write_api {
            WriteApi::InsertAll => None,
            WriteApi::Storage { emulator } => {
                let target = StorageTarget {
                    project: target.project.clone(),
                    dataset: target.dataset.clone(),
                    emulator: emulator.clone(),
                };
                Some(StorageWriter::new(&target, &catalog)?)
            }
        };
        let not_compared = "not compared with the catalog yet".to_string();
        let warehouse = Arc::new(Self {
            client: client(target).await?,
            storage,
            target: target.clone(),
            deadline,
            readiness: CachedCheck::new(
                NAME,
                format!("dataset {}.{} is not ready", target.project, target.dataset),
            ),
            schema: Mutex::new(SchemaState {
                behind: catalog
                    .tables()
                    .map(|t| (t.name.clone(), not_compared.clone()))
                    .collect(),
                last_sync: None,
            }),
            catalog,
            syncing: tokio::sync::Mutex::new(()),
            recent: Recent::default(),
            access,
        });
        if access == Access::Serve {
            let syncing = warehouse.clone();
            let first = tokio::spawn(async move { syncing.sync().await });
            // A BigQuery that answers at once starts in step; one that does not, later.
            let _ = tokio::time::timeout(FIRST_SYNC_WAIT, first).await;
            return Ok(warehouse);
        }
        let behind = warehouse.try_sync().await.with_context(|| {
            format!(
                "cannot compare the dataset {}.{} with the catalog",
                target.project, target.dataset
            )
        })?;
        if !behind.is_empty() {
            let tables: Vec<String> = behind
                .iter()
                .map(|(t, why)| format!("{t}: {why}"))
                .collect();
            return Err(Unusable(format!(
                "the BigQuery tables are not the catalog's ({}): run `landfall schema apply` with this catalog first",
                tables.join("; ")
            ))
            .into());
        }
        warehouse
            .schema
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .behind
            .clear();
        Ok(warehouse)
    }

    /// Compares the catalog with the live tables, makes the additive changes and records
    /// which tables are still behind.
    async fn sync(&self) {
        let _one_at_a_time = self.syncing.lock().await;
        self.sync_now().await;
    }

    /// [`Self::sync`], the caller holding `syncing`.
    async fn sync_now(&self) {
        let behind = match self.try_sync().await {
            Ok(behind) => behind,
            Err(e) => {
                let why = format!("could not compare with the live tables: {}", said(&e));
                self.catalog
                    .tables()
                    .map(|t| (t.name.clone(), why.clone()))
                    .collect()
            }
        };
        if behind.is_empty() {
            tracing::info!(dataset = %self.target.dataset, "the BigQuery tables match the catalog");
        } else {
            tracing::error!(dataset = %self.target.dataset, behind = ?behind, "BigQuery tables are behind the catalog; their events are not acknowledged until they catch up");
        }
        let mut state = self.schema.lock().unwrap_or_else(|p| p.into_inner());
        state.behind = behind;
        state.last_sync = Some(Instant::now());
    }

    async fn try_sync(&self) -> anyhow::Result<BTreeMap<String, String>> {
        let plan = apply::plan(&self.client, &self.target, &self.catalog).await?;
        if !plan.has_dataset() {
            let why = format!(
                "dataset {}.{} does not exist: run `landfall schema apply`",
                self.target.project, self.target.dataset
            );
            return Ok(self
                .catalog
                .tables()
                .map(|t| (t.name.clone(), why.clone()))
                .collect());
        }
        if self.access != Access::Serve {
            let mut behind = plan.changes_by_table();
            behind.extend(plan.conflicts_by_table());
            return Ok(behind);
        }
        let behind = plan.conflicts_by_table();
        let plan = plan.without_conflicts();
        if !plan.is_empty() {
            for line in plan.execute(&self.client, &self.target).await? {
                tracing::info!(change = %line, "BigQuery table brought up to the catalog");
            }
        }
        Ok(behind)
    }

    /// Re-syncs when a table is behind and the last attempt is old enough. Asked again once
    /// the lock is held: the batches and probes that queued behind one comparison are served
    /// by it, instead of each making another in turn (a start slower than `FIRST_SYNC_WAIT`
    /// held the first pushes for two comparisons or more).
    async fn resync_if_due(&self) {
        if !self.resync_due() {
            return;
        }
        let _one_at_a_time = self.syncing.lock().await;
        if self.resync_due() {
            self.sync_now().await;
        }
    }

    fn resync_due(&self) -> bool {
        let state = self.schema.lock().unwrap_or_else(|p| p.into_inner());
        !state.behind.is_empty()
            && state
                .last_sync
                .is_none_or(|t| t.elapsed() >= RESYNC_INTERVAL)
    }

    fn behind(&self, table: &str) -> Option<String> {
        let state = self.schema.lock().unwrap_or_else(|p| p.into_inner());
        state.behind.get(table).cloned()
    }

    fn mark_behind(&self, table: &str, why: String) {
        let mut state = self.schema.lock().unwrap_or_else(|p| p.into_inner());
        state.behind.insert(table.to_string(), why);
        // Compare again at once: the table may just need the column added.
        state.last_sync = None;
    }

    /// Looks up what the batch needs looked up (redeliveries' own rows, and the events that
    /// dead letters would have been) in one query, and settles those records: present, landed
    /// as an event before, or failed with the lookup. Every other record is `None`: to insert.
    async fn settle(&self, batch: &[Entry]) -> Vec<Option<Result<Written, SinkError>>> {
        let asks: Vec<Option<Ask>> = batch.iter().map(Ask::of).collect();
        let probes: Vec<Probe> = asks
            .iter()
            .flatten()
            .map(|ask| ask.probe().clone())
            .filter(|p| !self.recent.contains(&p.table.name, &p.message_id))
            .collect();
        let found = self.lookup(&probes).await;
        asks.into_iter()
            .map(|ask| {
                let ask = ask?;
                let probe = ask.probe();
                let present = self.recent.contains(&probe.table.name, &probe.message_id)
                    || match &found {
                        Ok(found) => {
                            found.contains(&(probe.table.name.clone(), probe.message_id.clone()))
                        }
                        Err(error) => return Some(Err(error.clone())),
                    };
                match (ask, present) {
                    (Ask::Own(_), true) => Some(Ok(Written::AlreadyPresent)),
                    (Ask::Prior(_), true) => Some(Ok(Written::LandedAsEvent(None))),
                    (_, false) => None,
                }
            })
            .collect()
    }

    /// Which of these rows exist, as (table, message id), in one query for every table.
    async fn lookup(&self, probes: &[Probe]) -> Result<HashSet<(String, String)>, SinkError> {
        if probes.is_empty() {
            return Ok(HashSet::new());
        }
        let mut request = lookup::request(&self.target.project, &self.target.dataset, probes);
        request.timeout_ms = Some(i32::try_from(self.deadline.as_millis()).unwrap_or(i32::MAX));
        let query = || {
            let request = request.clone();
            async move { self.client.job().query(&self.target.project, request).await }
        };
        let found = retry::within(self.deadline, query)
            .await
            .and_then(lookup::found)
            .map_err(|e| {
                SinkError::new(
                    NAME,
                    &e.context(format!(
                        "looking up {} redelivered rows in dataset {} failed",
                        probes.len(),
                        self.target.dataset
                    )),
                )
            })?;
        for (table, id) in &found {
            self.recent.insert(table, id);
        }
        Ok(found)
    }

    /// Inserts one table's unsettled entries.
    async fn insert_table(&self, entries: &[&Entry]) -> Vec<Result<Written, SinkError>> {
        let table = &entries[0].record.table.name;
        if let Some(why) = self.behind(table) {
            let error = SinkError {
                sink: NAME,
                message: format!("table {table} is behind the catalog: {why}"),
            };
            return vec![Err(error); entries.len()];
        }
        let results = match &self.storage {
            Some(storage) => self.append(storage, entries).await,
            None => self.insert(entries).await,
        };
        for (entry, result) in entries.iter().zip(&results) {
            if matches!(result, Ok(Written::Created | Written::Accepted)) {
                self.recent.insert(table, entry.record.message_id());
            }
        }
        results
    }

    async fn insert(&self, entries: &[&Entry]) -> Vec<Result<Written, SinkError>> {
        let table = entries[0].record.table.name.as_str();
        let mut results = Vec::with_capacity(entries.len());
        for chunk in request::chunks(entries) {
            let insert = || {
                let body = request::insert_request(chunk);
                async move {
                    self.client
                        .tabledata()
                        .insert_all(&self.target.project, &self.target.dataset, table, body?)
                        .await
                }
            };
            match retry::within(self.deadline, insert).await {
                Ok(response) => {
                    let outcomes = request::outcomes(response, chunk);
                    if let Some(why) = outcomes.missing_column {
                        self.mark_behind(table, why);
                    }
                    results.extend(outcomes.rows);
                }
                Err(e) => {
                    let error = SinkError::new(
                        NAME,
                        &e.context(format!(
                            "insertAll into {}.{table} failed",
                            self.target.dataset
                        )),
                    );
                    results.extend(chunk.iter().map(|_| Err(error.clone())));
                }
            }
        }
        results
    }

    async fn probe(&self) -> anyhow::Result<()> {
        self.resync_if_due().await;
        let behind = self
            .schema
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .behind
            .clone();
        if !behind.is_empty() {
            let lines: Vec<String> = behind
                .iter()
                .map(|(t, why)| format!("{t}: {why}"))
                .collect();
            anyhow::bail!("tables behind the catalog: {}", lines.join("; "));
        }
        self.client
            .dataset()
            .get(&self.target.project, &self.target.dataset)
            .await?;
        Ok(())
    }
}

#[async_trait]
impl Sink for BigQueryWarehouse {
    fn name(&self) -> &'static str {
        NAME
    }

    fn layer(&self) -> Layer {
        Layer::Warehouse
    }

    async fn write(&self, batch: &[Entry]) -> Vec<Result<Written, SinkError>> {
        self.resync_if_due().await;
        // Settled before any insert: redeliveries whose row exists, dead letters whose event
        // does, and those whose lookup failed (answered 503: a guess could write a second row).
        let mut results = self.settle(batch).await;
        let mut by_table: BTreeMap<&str, Vec<usize>> = BTreeMap::new();
        for (i, entry) in batch.iter().enumerate() {
            if results[i].is_none() {
                by_table
                    .entry(entry.record.table.name.as_str())
                    .or_default()
                    .push(i);
            }
        }
        let writes = by_table.values().map(|indices| async move {
            let entries: Vec<&Entry> = indices.iter().map(|&i| &batch[i]).collect();
            (indices, self.insert_table(&entries).await)
        });
        for (indices, outcomes) in futures::future::join_all(writes).await {
            for (&i, outcome) in indices.iter().zip(outcomes) {
                results[i] = Some(outcome);
            }
        }
        results
            .into_iter()
            .map(|r| r.expect("every record is settled or inserted"))
            .collect()
    }

    async fn find(&self, probes: &[Probe]) -> Option<Result<HashSet<String>, SinkError>> {
        Some(
            self.lookup(probes)
                .await
                .map(|found| found.into_iter().map(|(_, id)| id).collect()),
        )
    }

    async fn check(&self) -> Result<(), SinkError> {
        self.readiness.get(self.probe()).await
    }

    /// Two: while one batch waits on BigQuery, the next one fills. More in flight only makes
    /// smaller batches (more calls for the same rows).
    fn batches_in_flight(&self) -> usize {
        2
    }

    /// Redeliveries wait for a lookup query anyway: they gather longer, so that a replay asks
    /// one query for many messages, and never hold first deliveries behind it.
    fn replay_lane(&self) -> Option<(&'static str, BatchConfig)> {
        Some(("bigquery_replays", REPLAY_BATCH))
    }
}
