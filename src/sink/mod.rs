//! Where records go. Every backend implements [`Sink`], which takes a whole batch so each can
//! amortise its durable step (one fsync, one SQLite commit, one insertAll call) over many
//! events; [`batch::GroupCommit`] builds those batches from concurrent requests and [`Sinks`]
//! sends each record to every configured sink.
//!
//! Landing layer: [`local::LocalLanding`] (a folder) or [`gcs::GcsLanding`].
//! Raw layer: [`sqlite::SqliteWarehouse`] or [`bigquery::BigQueryWarehouse`].
//!
//! The landing layer is written first when a warehouse needs to know whether a record is a
//! redelivery ([`Sink::needs_landing_verdict`]): an object that already existed is the
//! perfect record of "this message landed before", and a warehouse row is only ever written
//! after its object exists.

pub mod batch;
pub mod bigquery;
pub mod gcs;
pub mod local;
pub mod readiness;
pub mod sqlite;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use futures::future::join_all;

use crate::event::Record;
use batch::GroupCommit;

/// The embedded sinks: a landing folder and a SQLite warehouse under one data folder.
#[derive(Debug, Clone)]
pub struct EmbeddedConfig {
    /// Absolute: rows record the landing folder's path.
    pub data_dir: PathBuf,
    /// How long a write waits for a locked database before failing (then 503).
    pub sqlite_busy_timeout: Duration,
}

/// What a sink did with one record.
#[derive(Debug, Clone, PartialEq)]
pub enum Written {
    /// Newly and durably stored.
    Created,
    /// Was already there (a redelivery): nothing was written.
    AlreadyPresent,
    /// Stored, by a backend that cannot tell whether it already had it (BigQuery without a
    /// landing layer): says nothing about whether the message is a redelivery.
    Accepted,
    /// The backend refused the record for its content; retrying cannot help.
    Rejected(String),
}

/// A record that is not durably stored. Always retryable from Pub/Sub's point of view: the
/// request is answered 503 and the message redelivered.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{sink}: {message}")]
pub struct SinkError {
    pub sink: &'static str,
    pub message: String,
}

impl SinkError {
    /// Keeps the whole cause chain, since the error is cloned to every waiting request.
    pub fn new(sink: &'static str, error: &anyhow::Error) -> Self {
        Self {
            sink,
            message: format!("{error:#}"),
        }
    }
}

/// Which layer a sink belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Layer {
    Landing,
    Warehouse,
}

/// A record as a sink receives it.
#[derive(Debug, Clone)]
pub struct Entry {
    pub record: Arc<Record>,
    /// What the landing layer said before this warehouse write: `Some(true)` when the object
    /// already existed (a redelivery), `None` when there is no landing layer or the sink did
    /// not ask ([`Sink::needs_landing_verdict`]).
    pub landed_before: Option<bool>,
}

#[async_trait]
pub trait Sink: Send + Sync + 'static {
    /// Short name for logs, metrics and `/readyz` (`landing`, `warehouse`, `gcs`, `bigquery`).
    fn name(&self) -> &'static str;

    fn layer(&self) -> Layer;

    /// A warehouse that cannot refuse a second row by itself waits for the landing layer's
    /// verdict on each record and is given it in [`Entry::landed_before`].
    fn needs_landing_verdict(&self) -> bool {
        false
    }

    /// Stores a batch. Returns exactly one result per entry, in order; returning only when
    /// every `Ok` is durable.
    async fn write(&self, batch: &[Entry]) -> Vec<Result<Written, SinkError>>;

    /// Whether the sink can take writes now (for `/readyz`).
    async fn check(&self) -> Result<(), SinkError>;

    /// Batches written at once: 1 for a single-writer store like SQLite; remote APIs take
    /// more, or their latency would cap throughput.
    fn batches_in_flight(&self) -> usize {
        1
    }

    /// Most events this sink takes in one batch, below `--batch-max-events`.
    fn max_batch_events(&self) -> usize {
        usize::MAX
    }
}

/// Runs a batch write on a blocking thread. If the writer itself fails (it panicked), every
/// record of the batch fails with it, so each waiting request is answered.
pub(crate) async fn on_blocking_thread<F>(
    sink: &'static str,
    len: usize,
    write: F,
) -> Vec<Result<Written, SinkError>>
where
    F: FnOnce() -> anyhow::Result<Vec<Result<Written, SinkError>>> + Send + 'static,
{
    let result = tokio::task::spawn_blocking(write)
        .await
        .map_err(|e| anyhow::anyhow!("the {sink} writer failed: {e}"))
        .and_then(|r| r);
    result.unwrap_or_else(|e| vec![Err(SinkError::new(sink, &e)); len])
}

/// The outcome of landing one record in every sink.
#[derive(Debug, Clone, PartialEq)]
pub enum Landed {
    /// At least one sink stored something new.
    Stored,
    /// A sink already had it and none stored anything new.
    Duplicate,
    /// A sink refused the content (the first refusal's reason).
    Rejected(String),
}

/// A sink behind its group-commit queue.
#[derive(Clone)]
struct Queue {
    sink: Arc<dyn Sink>,
    commit: GroupCommit,
}

/// Every configured sink, each behind its own group-commit queue.
#[derive(Clone)]
pub struct Sinks {
    /// Written at once: the landing layer and the warehouses that refuse duplicates themselves.
    first: Arc<Vec<Queue>>,
    /// Written after `first`, told whether the landing layer already had the record.
    after_landing: Arc<Vec<Queue>>,
    has_landing: bool,
}

impl Sinks {
    pub fn new(queues: Vec<(Arc<dyn Sink>, GroupCommit)>) -> Self {
        let has_landing = queues.iter().any(|(s, _)| s.layer() == Layer::Landing);
        let (after_landing, first): (Vec<Queue>, Vec<Queue>) = queues
            .into_iter()
            .map(|(sink, commit)| Queue { sink, commit })
            .partition(|q| q.sink.needs_landing_verdict());
        Self {
            first: Arc::new(first),
            after_landing: Arc::new(after_landing),
            has_landing,
        }
    }

    /// `Err` unless every sink has the record. A warehouse that waits for the landing layer
    /// is not written at all when the landing layer failed: the redelivery will be told the
    /// truth about the object, and so the row is never written twice.
    pub async fn land(&self, record: Arc<Record>) -> Result<Landed, SinkError> {
        let entry = |landed_before| Entry {
            record: record.clone(),
            landed_before,
        };
        let first = join_all(self.first.iter().map(|q| q.commit.submit(entry(None)))).await;
        let mut landed_before = false;
        let mut written = Vec::with_capacity(first.len() + self.after_landing.len());
        for (queue, result) in self.first.iter().zip(first) {
            let result = result?;
            if queue.sink.layer() == Layer::Landing && result == Written::AlreadyPresent {
                landed_before = true;
            }
            written.push(result);
        }
        let verdict = self.has_landing.then_some(landed_before);
        for result in join_all(
            self.after_landing
                .iter()
                .map(|q| q.commit.submit(entry(verdict))),
        )
        .await
        {
            written.push(result?);
        }
        Ok(combine(written))
    }

    /// Readiness of every sink, by name, in the order they were configured.
    pub async fn check(&self) -> Vec<(&'static str, Result<(), SinkError>)> {
        join_all(
            self.first
                .iter()
                .chain(self.after_landing.iter())
                .map(|q| async { (q.sink.name(), q.sink.check().await) }),
        )
        .await
    }
}

fn combine(written: Vec<Written>) -> Landed {
    let (mut created, mut present, mut rejected) = (false, false, None);
    for w in written {
        match w {
            Written::Created => created = true,
            Written::AlreadyPresent => present = true,
            Written::Accepted => {}
            Written::Rejected(reason) => rejected = rejected.or(Some(reason)),
        }
    }
    match rejected {
        Some(reason) => Landed::Rejected(reason),
        None if present && !created => Landed::Duplicate,
        None => Landed::Stored,
    }
}
