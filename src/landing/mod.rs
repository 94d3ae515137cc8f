//! The landing layer: a [layout](layout) over a [`Store`] (a [folder](folder) or a
//! [bucket](bucket)), written by `/push` as a [`Sink`] and read back by repair.
//!
//! Stores only ever create: an object is written whole, only if its name is free, and never
//! replaced, so a landed object is final and a redelivery of the `event` layout finds its
//! object already there. [`manifest`] records the layout's settings in the landing layer
//! itself, so that a restart with other settings cannot scatter one message over two paths.

pub mod bucket;
pub mod folder;
pub mod format;
pub mod layout;
pub mod manifest;
pub mod reader;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use chrono::{DateTime, Utc};
use futures::stream::BoxStream;

pub use layout::{LandingLayout, LayoutKind};
pub use reader::Reader;

use crate::event::Record;
use crate::sink::batch::BatchConfig;
use crate::sink::{Access, Entry, Layer, Receipt, Sink, SinkError, Unusable, Written};
use crate::telemetry::metrics::LandingMetrics;

/// `--landing-batch-*`: when a batch object of the `batch` layout is cut.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LandingBatchConfig {
    pub max_events: usize,
    pub max_bytes: usize,
    pub linger: Duration,
    pub idle: Duration,
}

/// One object to create.
#[derive(Debug, Clone)]
pub struct Object {
    pub name: String,
    pub body: Bytes,
    pub content_type: &'static str,
    /// Custom metadata (GCS), or one extended attribute (a local file).
    pub metadata: Vec<(&'static str, String)>,
}

/// What a create did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Put {
    Created,
    /// The name was taken: nothing was written.
    AlreadyPresent,
}

/// An object found by a listing.
#[derive(Debug, Clone)]
pub struct Listed {
    pub name: String,
    pub metadata: BTreeMap<String, String>,
    pub created: DateTime<Utc>,
}

/// Where landing objects are kept. Both implementations sit side by side: [`folder::Folder`]
/// and [`bucket::Bucket`].
#[async_trait]
pub trait Store: Send + Sync + 'static {
    /// For logs, metrics and `/readyz`: `landing` (a folder) or `gcs`.
    fn name(&self) -> &'static str;

    /// The URI prefix of its objects: `gs://bucket` or `file:///…/landing`.
    fn base_uri(&self) -> String;

    /// Creates every object whose name is free, never replacing one. Returns one result per
    /// object, in order, and only once every `Ok` is durable.
    async fn create(&self, objects: Vec<Object>) -> Vec<Result<Put, SinkError>>;

    /// Whether each name is taken.
    async fn exists(&self, names: Vec<String>) -> Vec<Result<bool, SinkError>>;

    /// An object's bytes; `None` when there is no such object.
    async fn read(&self, name: &str) -> anyhow::Result<Option<Bytes>>;

    /// Every object whose name starts with `prefix`, in name order.
    fn list(&self, prefix: String) -> BoxStream<'static, anyhow::Result<Listed>>;

    /// The folders directly below `prefix` (which ends in `/`), each as a prefix ending in `/`.
    async fn folders(&self, prefix: &str) -> anyhow::Result<Vec<String>>;

    /// Whether it can take writes now (for `/readyz`).
    async fn check(&self) -> Result<(), SinkError>;

    /// Batches written at once (each is one durable step).
    fn batches_in_flight(&self) -> usize {
        1
    }

    /// Most objects of the `event` layout in one batch.
    fn max_batch_objects(&self) -> usize {
        usize::MAX
    }
}

/// The landing layer as a sink: records become objects of its layout in its store.
pub struct Landing {
    layout: LandingLayout,
    store: Arc<dyn Store>,
    batch: LandingBatchConfig,
    metrics: LandingMetrics,
    /// Set once the store's recorded layout is this one; until then nothing is written.
    confirmed: tokio::sync::OnceCell<()>,
    access: Access,
}

/// How long a start waits for the store to confirm the layout before it serves anyway (the
/// writes then wait for it, and `/readyz` says so): an unreachable bucket must not keep the
/// server from answering its probes.
const CONFIRM_AT_START: Duration = Duration::from_secs(2);

impl Landing {
    /// Checks the layout against the one the store was first written with and refuses a
    /// different one. A store that cannot be asked yet does not stop the start: writes wait
    /// (503) and `/readyz` fails until it answers. Only `serve` records a layout; a repair
    /// run compares (and records it when it first writes), a dry run only compares.
    pub async fn open(
        layout: LandingLayout,
        store: Arc<dyn Store>,
        batch: LandingBatchConfig,
        metrics: LandingMetrics,
        access: Access,
    ) -> anyhow::Result<Self> {
        let landing = Self {
            layout,
            store,
            batch,
            metrics,
            confirmed: tokio::sync::OnceCell::new(),
            access,
        };
        let confirmed = match access {
            Access::Serve => tokio::time::timeout(CONFIRM_AT_START, landing.confirm())
                .await
                .unwrap_or_else(|_| {
                    Err(manifest::ManifestError::Unreachable(format!(
                        "{} did not answer within {CONFIRM_AT_START:?}",
                        landing.store.base_uri()
                    )))
                }),
            Access::Repair | Access::ReadOnly => {
                manifest::compare(landing.store.as_ref(), &landing.layout).await
            }
        };
        match confirmed {
            Ok(()) => {}
            Err(manifest::ManifestError::Differs(why)) => return Err(Unusable(why).into()),
            Err(e) if access == Access::Serve => {
                tracing::warn!(error = %e, "the landing layout is not confirmed yet; pushes wait for it")
            }
            Err(e) => return Err(anyhow::anyhow!("{e}")),
        }
        Ok(landing)
    }

    /// Confirms the layout once; every write and probe waits for that. A dry run never
    /// writes, so it never records one.
    async fn confirm(&self) -> Result<(), manifest::ManifestError> {
        let check = || async {
            match self.access {
                Access::ReadOnly => manifest::compare(self.store.as_ref(), &self.layout).await,
                Access::Serve | Access::Repair => {
                    manifest::check(self.store.as_ref(), &self.layout).await
                }
            }
        };
        self.confirmed.get_or_try_init(check).await.map(|_| ())
    }

    fn unconfirmed(&self, error: &manifest::ManifestError) -> SinkError {
        SinkError {
            sink: self.store.name(),
            message: error.to_string(),
        }
    }

    fn uri(&self, name: &str) -> Arc<str> {
        format!("{}/{name}", self.store.base_uri()).into()
    }

    /// The object of the `event` layout that holds this record.
    fn event_layout_object(&self, record: &Record) -> Object {
        match record.event_type().filter(|_| !record.is_dead_letter()) {
            Some(event_type) => Object {
                name: self.layout.event_object(
                    event_type,
                    &record.landing_time,
                    record.message_id(),
                ),
                body: record.delivery.data.clone(),
                content_type: "application/json",
                metadata: format::event_metadata(record),
            },
            None => Object {
                name: self
                    .layout
                    .dead_letter_object(&record.delivery.publish_time, record.message_id()),
                body: format::dead_letter_document(record),
                content_type: "application/json",
                metadata: format::event_metadata(record),
            },
        }
    }

    async fn write_events(&self, batch: &[Entry]) -> Vec<Result<Written, SinkError>> {
        let earlier = self.earlier_events(batch).await;
        let mut results: Vec<Option<Result<Written, SinkError>>> = Vec::with_capacity(batch.len());
        let (mut objects, mut slots) = (Vec::new(), Vec::new());
        for (i, (entry, earlier)) in batch.iter().zip(earlier).enumerate() {
            match earlier {
                Some(Ok(uri)) => results.push(Some(Ok(Written::LandedAsEvent(Some(uri))))),
                Some(Err(e)) => results.push(Some(Err(e))),
                None => {
                    results.push(None);
                    objects.push(self.event_layout_object(&entry.record));
                    slots.push(i);
                }
            }
        }
        let names: Vec<String> = objects.iter().map(|o| o.name.clone()).collect();
        let created = self.store.create(objects).await;
        for _ in created.iter().filter(|p| matches!(p, Ok(Put::Created))) {
            self.metrics.object(1);
        }
        for ((i, name), put) in slots.into_iter().zip(&names).zip(created) {
            results[i] = Some(put.map(|put| {
                Written::Landed(Receipt {
                    uri: self.uri(name),
                    before: Some(put == Put::AlreadyPresent),
                })
            }));
        }
        results
            .into_iter()
            .map(|r| r.expect("every record is settled or written"))
            .collect()
    }

    /// For each dead letter that names the event it would have been: whether that event's
    /// object exists (`Some(Ok(uri))`). `None` for every other record.
    async fn earlier_events(&self, batch: &[Entry]) -> Vec<Option<Result<Arc<str>, SinkError>>> {
        let names: Vec<Option<String>> = batch
            .iter()
            .map(|e| {
                e.record.prior().map(|p| {
                    self.layout
                        .event_object(&p.event_type, &p.landing_time, e.record.message_id())
                })
            })
            .collect();
        let asked: Vec<String> = names.iter().flatten().cloned().collect();
        if asked.is_empty() {
            return vec![None; batch.len()];
        }
        let mut answers = self.store.exists(asked).await.into_iter();
        names
            .into_iter()
            .map(|name| {
                let name = name?;
                match answers.next().expect("one answer per name") {
                    Ok(true) => Some(Ok(self.uri(&name))),
                    Ok(false) => None,
                    Err(e) => Some(Err(e)),
                }
            })
            .collect()
    }

    async fn write_batch(&self, batch: &[Entry]) -> Vec<Result<Written, SinkError>> {
        // One object per kind and minute folder, its records in arrival order.
        let mut groups: BTreeMap<layout::MinuteFolder, Vec<usize>> = BTreeMap::new();
        for (i, entry) in batch.iter().enumerate() {
            let record = &entry.record;
            let kind = match record.event_type().filter(|_| !record.is_dead_letter()) {
                Some(event_type) => event_type.as_ref(),
                None => layout::DEAD_LETTER_FOLDER,
            };
            groups
                .entry(self.layout.minute_folder(kind, &record.landing_time))
                .or_default()
                .push(i);
        }
        let batch_id = layout::batch_id();
        let mut objects = Vec::with_capacity(groups.len());
        for (n, (folder, members)) in groups.iter().enumerate() {
            let earliest = members
                .iter()
                .map(|&i| batch[i].record.landing_time)
                .min()
                .expect("a folder has a record");
            let body: Vec<u8> = members
                .iter()
                .flat_map(|&i| format::line(&batch[i].record))
                .collect();
            objects.push(Object {
                // One batch id, a counter per object: unique, and readable as one batch.
                name: self
                    .layout
                    .batch_object(folder, &earliest, &format!("{batch_id}-{n}")),
                body: Bytes::from(body),
                content_type: "application/x-ndjson",
                metadata: vec![("events", members.len().to_string())],
            });
        }
        let names: Vec<String> = objects.iter().map(|o| o.name.clone()).collect();
        let created = self.store.create(objects).await;
        let mut results: Vec<Option<Result<Written, SinkError>>> = vec![None; batch.len()];
        for ((members, name), put) in groups.values().zip(&names).zip(created) {
            let result = match put {
                Ok(_) => {
                    self.metrics.object(members.len());
                    Ok(Written::Landed(Receipt {
                        uri: self.uri(name),
                        // A batch object holds no record of earlier deliveries.
                        before: None,
                    }))
                }
                Err(e) => Err(e),
            };
            for &i in members {
                results[i] = Some(result.clone());
            }
        }
        results
            .into_iter()
            .map(|r| r.expect("every record belongs to one folder"))
            .collect()
    }
}

#[async_trait]
impl Sink for Landing {
    fn name(&self) -> &'static str {
        self.store.name()
    }

    fn layer(&self) -> Layer {
        Layer::Landing
    }

    async fn write(&self, batch: &[Entry]) -> Vec<Result<Written, SinkError>> {
        if let Err(e) = self.confirm().await {
            return vec![Err(self.unconfirmed(&e)); batch.len()];
        }
        match self.layout.kind {
            LayoutKind::Event => self.write_events(batch).await,
            LayoutKind::Batch => self.write_batch(batch).await,
        }
    }

    /// The store's own probe first: it answers quickly with what is wrong, where confirming
    /// the layout would retry until the deadline.
    async fn check(&self) -> Result<(), SinkError> {
        self.store.check().await?;
        self.confirm().await.map_err(|e| self.unconfirmed(&e))
    }

    /// The `event` layout: as many as the store takes. The `batch` layout: one, because
    /// every batch in flight splits the waiting pushes between objects, and its objects are
    /// uploaded at once anyway.
    fn batches_in_flight(&self) -> usize {
        match self.layout.kind {
            LayoutKind::Event => self.store.batches_in_flight(),
            LayoutKind::Batch => 1,
        }
    }

    fn batch_config(&self, default: BatchConfig) -> BatchConfig {
        match self.layout.kind {
            LayoutKind::Event => BatchConfig {
                max_events: default.max_events.min(self.store.max_batch_objects()),
                ..default
            },
            LayoutKind::Batch => BatchConfig {
                max_events: self.batch.max_events,
                max_bytes: self.batch.max_bytes,
                linger: self.batch.linger,
                idle: Some(self.batch.idle),
            },
        }
    }
}
