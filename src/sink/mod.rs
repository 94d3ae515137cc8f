//! Where records go. Every backend implements [`Sink`], which takes a whole batch so each can
//! amortise its durable step (one fsync, one SQLite commit, one insertAll call) over many
//! events; [`batch::GroupCommit`] builds those batches from concurrent requests and
//! [`Sinks`] fans each record out to every configured sink.
//!
//! Landing layer: [`local::LocalLanding`] (a folder) or [`gcs::GcsLanding`].
//! Raw layer: [`sqlite::SqliteWarehouse`] or [`bigquery::BigQueryWarehouse`].

pub mod batch;
pub mod bigquery;
pub mod gcs;
pub mod local;
pub mod readiness;
pub mod sqlite;

use std::sync::Arc;

use async_trait::async_trait;
use futures::future::join_all;

use crate::event::Record;
use batch::GroupCommit;

/// What a sink did with one record.
#[derive(Debug, Clone, PartialEq)]
pub enum Written {
    /// Newly and durably stored.
    Created,
    /// Was already there (a redelivery): nothing was written.
    AlreadyPresent,
    /// Stored, by a backend that cannot tell whether it already had it (BigQuery's insertId
    /// dedup): says nothing about whether the message is a redelivery.
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

#[async_trait]
pub trait Sink: Send + Sync + 'static {
    /// Short name for logs and `/readyz` (`landing`, `warehouse`, `gcs`, `bigquery`).
    fn name(&self) -> &'static str;

    /// Stores a batch. Returns exactly one result per record, in order; returning only when
    /// every `Ok` is durable.
    async fn write(&self, batch: &[Arc<Record>]) -> Vec<Result<Written, SinkError>>;

    /// Whether the sink can take writes now (for `/readyz`).
    async fn check(&self) -> Result<(), SinkError>;

    /// Batches written at once: 1 for a single-writer store like SQLite; remote APIs take
    /// more, or their latency would cap throughput.
    fn batches_in_flight(&self) -> usize {
        1
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

/// Every configured sink, each behind its own group-commit queue.
#[derive(Clone)]
pub struct Sinks {
    queues: Arc<Vec<GroupCommit>>,
    sinks: Arc<Vec<Arc<dyn Sink>>>,
}

impl Sinks {
    pub fn new(queues: Vec<GroupCommit>, sinks: Vec<Arc<dyn Sink>>) -> Self {
        Self {
            queues: Arc::new(queues),
            sinks: Arc::new(sinks),
        }
    }

    /// Writes to all sinks concurrently; `Err` unless every one of them has the record.
    pub async fn land(&self, record: Arc<Record>) -> Result<Landed, SinkError> {
        let results = join_all(self.queues.iter().map(|q| q.submit(record.clone()))).await;
        let (mut created, mut present, mut rejected) = (false, false, None);
        for result in results {
            match result? {
                Written::Created => created = true,
                Written::AlreadyPresent => present = true,
                Written::Accepted => {}
                Written::Rejected(reason) => rejected = rejected.or(Some(reason)),
            }
        }
        Ok(match rejected {
            Some(reason) => Landed::Rejected(reason),
            None if present && !created => Landed::Duplicate,
            None => Landed::Stored,
        })
    }

    /// Readiness of every sink, by name.
    pub async fn check(&self) -> Vec<(&'static str, Result<(), SinkError>)> {
        join_all(
            self.sinks
                .iter()
                .map(|s| async { (s.name(), s.check().await) }),
        )
        .await
    }
}
