//! The sinks a pipeline writes to, built from the settings: the landing layer's stores (the
//! bucket first: rows name its objects; then the folder) as layouts over them, then the
//! warehouses, each behind its group-commit writer.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use tokio::task::JoinHandle;

use crate::landing::bucket::{Bucket, GcsTarget};
use crate::landing::folder::Folder;
use crate::landing::{Landing, LandingBatchConfig, LandingLayout, Store};
use crate::schema::Catalog;
use crate::sink::batch::{BatchConfig, GroupCommit};
use crate::sink::bigquery::{BigQueryConfig, BigQueryWarehouse};
use crate::sink::sqlite::SqliteWarehouse;
use crate::sink::{Access, Queue, Sink, Sinks};
use crate::telemetry::metrics::Metrics;

/// Which sinks to write and how: what `serve` and the repair commands share.
#[derive(Debug, Clone)]
pub struct SinkConfig {
    pub landing: LandingLayout,
    pub landing_batch: LandingBatchConfig,
    /// The folder and SQLite sinks; on when no Google sink is, or with `--also-local`.
    pub embedded: Option<EmbeddedConfig>,
    pub gcs: Option<GcsTarget>,
    pub bigquery: Option<BigQueryConfig>,
    /// `--batch-max-events` and `--batch-linger-ms`.
    pub batch: BatchConfig,
    /// How long one remote write may take, retries included.
    pub deadline: Duration,
}

/// The embedded sinks: a landing folder and a SQLite warehouse under one data folder.
#[derive(Debug, Clone)]
pub struct EmbeddedConfig {
    /// Absolute: rows record the landing folder's path.
    pub data_dir: PathBuf,
    /// How long a write waits for a locked database before failing (then 503).
    pub sqlite_busy_timeout: Duration,
}

impl EmbeddedConfig {
    /// `{data-dir}/landing`: the landing layer's folder.
    pub fn landing_dir(&self) -> PathBuf {
        self.data_dir.join("landing")
    }

    /// `{data-dir}/warehouse.db`: the SQLite warehouse.
    pub fn warehouse_path(&self) -> PathBuf {
        self.data_dir.join("warehouse.db")
    }
}

/// The sinks an application writes to: the landing layer's first, then the warehouses.
pub struct SinkSet {
    pub sinks: Vec<Arc<dyn Sink>>,
    /// The landing layer's stores, the first one's objects named by rows (for reading back).
    pub stores: Vec<Arc<dyn Store>>,
}

/// A group-commit writer for each sink (two for a sink that batches redeliveries apart);
/// `batch` is `--batch-max-events` and `--batch-linger-ms`.
pub fn start_writers(
    sinks: SinkSet,
    batch: BatchConfig,
    metrics: &Metrics,
) -> (Sinks, Vec<JoinHandle<()>>) {
    let mut writers = Vec::new();
    let mut queues = Vec::new();
    for sink in sinks.sinks {
        let handles = metrics.sink(sink.name());
        let (fresh, writer) = GroupCommit::spawn(sink.clone(), sink.batch_config(batch), handles);
        writers.push(writer);
        let replays = sink.replay_lane().map(|(name, replay)| {
            let (queue, writer) = GroupCommit::spawn(sink.clone(), replay, metrics.sink(name));
            writers.push(writer);
            queue
        });
        queues.push(Queue {
            sink,
            fresh,
            replays,
        });
    }
    (Sinks::new(queues), writers)
}

/// The configured landing stores: the bucket first (rows name its objects), then the folder.
async fn landing_stores(
    config: &SinkConfig,
    access: Access,
) -> anyhow::Result<Vec<Arc<dyn Store>>> {
    let deadline = config.deadline;
    let mut stores: Vec<Arc<dyn Store>> = Vec::new();
    if let Some(target) = &config.gcs {
        stores.push(Arc::new(
            Bucket::connect(target, &config.landing.prefix, deadline).await?,
        ));
    }
    if let Some(embedded) = &config.embedded {
        if access == Access::Serve {
            create_data_dir(&embedded.data_dir)?;
        }
        stores.push(Arc::new(Folder::open(embedded.landing_dir(), access)?));
    }
    Ok(stores)
}

/// The data folder (the settings have refused a file in its place).
fn create_data_dir(path: &Path) -> anyhow::Result<()> {
    std::fs::create_dir_all(path)
        .with_context(|| format!("cannot create the data folder {}", path.display()))
}

/// The configured sinks: the landing layer first, then the warehouses, opened for `access`.
pub async fn build_sinks(
    config: &SinkConfig,
    catalog: &Arc<Catalog>,
    metrics: &Metrics,
    access: Access,
) -> anyhow::Result<SinkSet> {
    let deadline = config.deadline;
    let mut sinks: Vec<Arc<dyn Sink>> = Vec::new();
    let stores = landing_stores(config, access).await?;
    for store in &stores {
        let handles = metrics.landing(store.name());
        let landing = Landing::open(
            config.landing.clone(),
            store.clone(),
            config.landing_batch,
            handles,
            access,
        )
        .await?;
        sinks.push(Arc::new(landing));
    }
    if let Some(bigquery) = &config.bigquery {
        let warehouse =
            BigQueryWarehouse::connect(bigquery, catalog.clone(), deadline, access).await?;
        sinks.push(warehouse);
    }
    if let Some(embedded) = &config.embedded {
        let database = embedded.warehouse_path();
        let warehouse =
            SqliteWarehouse::open(&database, embedded.sqlite_busy_timeout, catalog, access)?;
        sinks.push(Arc::new(warehouse));
    }
    Ok(SinkSet { sinks, stores })
}
