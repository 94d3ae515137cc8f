//! Where records go. Every backend implements [`Sink`], which takes a whole batch so each can
//! amortise its durable step (one fsync, one SQLite commit, one insertAll call) over many
//! events; [`batch::GroupCommit`] builds those batches from concurrent requests and [`Sinks`]
//! sends each record to every configured sink.
//!
//! Landing layer: [`crate::landing::Landing`] (a layout over a folder or a bucket).
//! Raw layer: [`sqlite::SqliteWarehouse`] or [`bigquery::BigQueryWarehouse`].
//!
//! The landing layer is written first, and a warehouse row only after its object is durable:
//! the row records where that object is, and the object tells whether the message landed
//! before (in the `event` layout, an object that already existed is the perfect record of an
//! earlier delivery). A warehouse that cannot refuse a second row by itself (BigQuery) uses
//! that verdict to look up only the redeliveries.

pub mod batch;
pub mod bigquery;
pub mod readiness;
pub mod sqlite;

use std::borrow::Cow;
use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use futures::future::join_all;

use crate::event::Record;
use crate::schema::{Cell, Table};
use crate::telemetry::said::said;
use batch::{BatchConfig, GroupCommit};

/// What a command may do to the stores it opens.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// `serve`: create what is missing, record the landing layout, bring tables up to the
    /// catalog.
    Serve,
    /// A repair run: write messages and rows, create a warehouse that is missing, but never
    /// change a table's shape (a server with another catalog may be running over it) nor
    /// make a landing layer where there is none (it is the input).
    Repair,
    /// A dry run: read only; nothing is created, recorded or changed.
    ReadOnly,
}

/// A failure that running again cannot mend: the configuration or the input must change
/// first. Commands exit 2 on it, where anything else exits 1 (run again).
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{0}")]
pub struct Unusable(pub String);

/// Where the landing layer put a record, and what it knows of earlier deliveries.
#[derive(Debug, Clone, PartialEq)]
pub struct Receipt {
    pub uri: Arc<str>,
    /// `Some(true)`: the object already existed (a redelivery); `Some(false)`: it is new;
    /// `None`: this layout cannot tell (a batch object holds no record of earlier ones).
    pub before: Option<bool>,
}

/// What a sink did with one record.
#[derive(Debug, Clone, PartialEq)]
pub enum Written {
    /// Newly and durably stored.
    Created,
    /// Was already there (a redelivery): nothing was written.
    AlreadyPresent,
    /// Stored, by a backend that cannot tell whether it already had it (BigQuery without a
    /// verdict from the landing layer): says nothing about whether it is a redelivery.
    Accepted,
    /// The landing layer holds it (the landing sinks' answer).
    Landed(Receipt),
    /// A dead letter that was not written, because the message landed as an event before
    /// (where that event's object is, when known).
    LandedAsEvent(Option<Arc<str>>),
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
            message: said(error),
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
    /// What the landing layer did with it; `None` for the landing layer itself, and when
    /// there is no landing layer.
    pub landing: Option<Receipt>,
}

impl Entry {
    /// What the landing layer knows of an earlier delivery (see [`Receipt::before`]).
    pub fn landed_before(&self) -> Option<bool> {
        self.landing.as_ref().and_then(|r| r.before)
    }

    /// The row's cells, with `landing_uri` where the landing layer put the record.
    pub fn cells(&self) -> impl Iterator<Item = Cow<'_, Cell>> + '_ {
        let uri_index = self.record.table.column_index("landing_uri");
        self.record.row.iter().enumerate().map(move |(i, cell)| {
            match (&self.landing, Some(i) == uri_index) {
                (Some(receipt), true) => Cow::Owned(Cell::String(receipt.uri.to_string())),
                _ => Cow::Borrowed(cell),
            }
        })
    }

    /// Whether a warehouse must itself look for the event this dead letter would have been:
    /// only when the landing layer could not (its layout does not find messages by id).
    pub fn needs_prior_lookup(&self) -> bool {
        self.record.prior().is_some() && self.landed_before().is_none()
    }
}

/// What to look for in a table: a message id, and the time that prunes its partitions (the
/// time field's value for an event; the publish time for a dead letter, which cannot have
/// been received before it).
#[derive(Debug, Clone)]
pub struct Probe {
    pub table: Arc<Table>,
    pub message_id: String,
    pub time: DateTime<Utc>,
}

impl Probe {
    /// The record's own row.
    pub fn of(record: &Record) -> Self {
        Probe {
            table: record.table.clone(),
            message_id: record.message_id().to_string(),
            time: if record.is_dead_letter() {
                record.delivery.publish_time
            } else {
                record
                    .partition_time()
                    .unwrap_or(record.delivery.publish_time)
            },
        }
    }

    /// The event a dead letter would have been, if it names one.
    pub fn prior(record: &Record) -> Option<Self> {
        record.prior().map(|p| Probe {
            table: p.table.clone(),
            message_id: record.message_id().to_string(),
            time: p.time,
        })
    }
}

#[async_trait]
pub trait Sink: Send + Sync + 'static {
    /// Short name for logs, metrics and `/readyz` (`landing`, `warehouse`, `gcs`, `bigquery`).
    fn name(&self) -> &'static str;

    fn layer(&self) -> Layer;

    /// Stores a batch. Returns exactly one result per entry, in order; returning only when
    /// every `Ok` is durable.
    async fn write(&self, batch: &[Entry]) -> Vec<Result<Written, SinkError>>;

    /// Whether the sink can take writes now (for `/readyz`).
    async fn check(&self) -> Result<(), SinkError>;

    /// Which of these rows exist (their message ids). Warehouses answer; a sink that cannot
    /// returns `None`.
    async fn find(&self, _probes: &[Probe]) -> Option<Result<HashSet<String>, SinkError>> {
        None
    }

    /// Batches written at once: 1 for a single-writer store like SQLite; remote APIs take
    /// more, or their latency would cap throughput.
    fn batches_in_flight(&self) -> usize {
        1
    }

    /// How this sink's batches are cut, given `--batch-max-events` and `--batch-linger-ms`.
    fn batch_config(&self, default: BatchConfig) -> BatchConfig {
        default
    }

    /// Redeliveries (records whose landing object already existed) in batches of their own,
    /// cut this way, under this name in metrics; `None` to batch them with first deliveries.
    /// For a sink whose redeliveries cost a lookup each batch: bigger batches, fewer lookups.
    fn replay_lane(&self) -> Option<(&'static str, BatchConfig)> {
        None
    }
}

/// Runs a blocking write on a blocking thread. If the writer itself fails (it panicked),
/// every item of the batch fails with it, so each waiting request is answered.
pub(crate) async fn blocking<T, F>(
    sink: &'static str,
    len: usize,
    write: F,
) -> Vec<Result<T, SinkError>>
where
    T: Clone + Send + 'static,
    F: FnOnce() -> anyhow::Result<Vec<Result<T, SinkError>>> + Send + 'static,
{
    let result = tokio::task::spawn_blocking(write)
        .await
        .map_err(|e| anyhow::anyhow!("the {sink} writer failed: {e}"))
        .and_then(|r| r);
    result.unwrap_or_else(|e| vec![Err(SinkError::new(sink, &e)); len])
}

/// What every sink answered for one record: each copy of the landing layer's receipt (the
/// first named) or that the message landed as an event before, then each warehouse's answer.
/// The message's fate is decided from them by [`crate::pipeline`].
#[derive(Debug, Clone, PartialEq)]
pub struct Answers {
    pub written: Vec<Written>,
    /// The landing object that holds the record, when it landed.
    pub landing_uri: Option<Arc<str>>,
}

/// A sink behind its group-commit queues.
#[derive(Clone)]
pub struct Queue {
    pub sink: Arc<dyn Sink>,
    pub fresh: GroupCommit,
    /// Redeliveries, when the sink batches them apart.
    pub replays: Option<GroupCommit>,
}

impl Queue {
    fn submit(
        &self,
        entry: Entry,
    ) -> impl std::future::Future<Output = Result<Written, SinkError>> + '_ {
        let lane = match (&self.replays, entry.landed_before()) {
            (Some(replays), Some(true)) => replays,
            _ => &self.fresh,
        };
        lane.submit(entry)
    }
}

/// Every configured sink, each behind its own group-commit queue.
#[derive(Clone)]
pub struct Sinks {
    /// Written first. With several (a bucket and `--also-local`), rows name the first's objects.
    landing: Arc<Vec<Queue>>,
    /// Written once the landing layer holds the record.
    warehouses: Arc<Vec<Queue>>,
}

impl Sinks {
    pub fn new(queues: Vec<Queue>) -> Self {
        let (landing, warehouses): (Vec<Queue>, Vec<Queue>) = queues
            .into_iter()
            .partition(|q| q.sink.layer() == Layer::Landing);
        Self {
            landing: Arc::new(landing),
            warehouses: Arc::new(warehouses),
        }
    }

    /// `Err` unless every sink has the record. The warehouses are not written at all when the
    /// landing layer failed: the redelivery will be told the truth about the object, and so
    /// the row is never written twice.
    pub async fn land(&self, record: Arc<Record>) -> Result<Answers, SinkError> {
        let receipt = match self.land_copies(&record).await? {
            Copies::EarlierEvent(uri) => {
                return Ok(Answers {
                    written: vec![Written::LandedAsEvent(uri)],
                    landing_uri: None,
                });
            }
            Copies::Landed(receipt) => receipt,
        };
        self.warehouse(record, receipt).await
    }

    /// Writes the record to the warehouses only, as landed at `receipt` (repair writes rows
    /// for objects that are already in the landing layer this way).
    pub async fn warehouse(
        &self,
        record: Arc<Record>,
        receipt: Option<Receipt>,
    ) -> Result<Answers, SinkError> {
        let entry = Entry {
            record,
            landing: receipt.clone(),
        };
        let mut written = Vec::with_capacity(self.warehouses.len() + 1);
        let landing_uri = receipt.as_ref().map(|r| r.uri.clone());
        if let Some(receipt) = receipt {
            written.push(Written::Landed(receipt));
        }
        for result in join_all(self.warehouses.iter().map(|q| q.submit(entry.clone()))).await {
            written.push(result?);
        }
        Ok(Answers {
            written,
            landing_uri,
        })
    }

    async fn land_copies(&self, record: &Arc<Record>) -> Result<Copies, SinkError> {
        let entry = Entry {
            record: record.clone(),
            landing: None,
        };
        let results = join_all(self.landing.iter().map(|q| q.submit(entry.clone()))).await;
        let mut receipt: Option<Receipt> = None;
        for result in results {
            match result? {
                Written::LandedAsEvent(uri) => return Ok(Copies::EarlierEvent(uri)),
                Written::Landed(landed) => match &mut receipt {
                    None => receipt = Some(landed),
                    // The first copy names the object; a redelivery is one if any copy says so.
                    Some(first) => {
                        first.before = match (first.before, landed.before) {
                            (Some(a), Some(b)) => Some(a || b),
                            _ => None,
                        }
                    }
                },
                other => unreachable!("a landing sink answered {other:?}"),
            }
        }
        Ok(Copies::Landed(receipt))
    }

    /// Which of these rows the first warehouse that can look holds; `None` when none can.
    pub async fn find(&self, probes: &[Probe]) -> Option<Result<HashSet<String>, SinkError>> {
        for queue in self.warehouses.iter() {
            if let Some(found) = queue.sink.find(probes).await {
                return Some(found);
            }
        }
        None
    }

    pub fn has_landing(&self) -> bool {
        !self.landing.is_empty()
    }

    pub fn has_warehouse(&self) -> bool {
        !self.warehouses.is_empty()
    }

    /// Readiness of every sink, by name, in the order they were configured, each check given
    /// at most `within` (a sink that does not answer is not ready).
    pub async fn check_within(
        &self,
        within: Duration,
    ) -> Vec<(&'static str, Result<(), SinkError>)> {
        join_all(
            self.landing
                .iter()
                .chain(self.warehouses.iter())
                .map(|q| async move {
                    let name = q.sink.name();
                    let checked = tokio::time::timeout(within, q.sink.check())
                        .await
                        .unwrap_or_else(|_| {
                            Err(SinkError {
                                sink: name,
                                message: format!("no answer within {within:?}"),
                            })
                        });
                    (name, checked)
                }),
        )
        .await
    }
}

enum Copies {
    Landed(Option<Receipt>),
    EarlierEvent(Option<Arc<str>>),
}

#[cfg(test)]
pub(crate) mod testing;

#[cfg(test)]
mod tests {
    use super::testing::Scripted;
    use super::*;
    use crate::telemetry::metrics::SinkMetrics;

    fn entry(data: &[u8], before: Option<Option<bool>>) -> Entry {
        Entry {
            record: crate::event::testing::record("61", data),
            landing: before.map(|before| Receipt {
                uri: "gs://b/o".into(),
                before,
            }),
        }
    }

    /// An order the catalog refuses (quantity -1) whose type and time field still read.
    const REFUSED_ORDER: &[u8] = br#"{"event_type":"order","order_id":"O1","customer_id":"C1","order_date":"2026-11-25T09:14:03Z","status":"pending","items":[{"product_id":"P","product_name":"K","quantity":-1,"price":1.5}],"shipping_address":{"street":"s","city":"c","country":"NO"},"total_amount":1.5}"#;

    #[test]
    fn a_warehouse_looks_for_the_prior_event_only_when_the_landing_layer_could_not() {
        assert_eq!(entry(REFUSED_ORDER, None).landed_before(), None);
        assert_eq!(entry(REFUSED_ORDER, Some(None)).landed_before(), None);
        assert_eq!(
            entry(REFUSED_ORDER, Some(Some(true))).landed_before(),
            Some(true)
        );
        assert_eq!(
            entry(REFUSED_ORDER, Some(Some(false))).landed_before(),
            Some(false)
        );
        // The batch layout cannot tell, nor can a warehouse without a landing layer.
        assert!(entry(REFUSED_ORDER, Some(None)).needs_prior_lookup());
        assert!(entry(REFUSED_ORDER, None).needs_prior_lookup());
        // The event layout found (or did not find) the event's object itself.
        assert!(!entry(REFUSED_ORDER, Some(Some(false))).needs_prior_lookup());
        assert!(!entry(REFUSED_ORDER, Some(Some(true))).needs_prior_lookup());
        // Not JSON: no event it could have been.
        assert!(!entry(b"\xff", Some(None)).needs_prior_lookup());
    }

    #[test]
    fn the_prior_probe_looks_in_the_events_table_at_its_time() {
        let record = crate::event::testing::record("61", REFUSED_ORDER);
        let probe = Probe::prior(&record).expect("a refused order names its event");
        assert_eq!(probe.table.name, "order");
        assert_eq!(probe.message_id, "61");
        assert_eq!(probe.time.to_rfc3339(), "2026-11-25T09:14:03+00:00");
        let own = Probe::of(&record);
        assert_eq!(own.table.name, "dead_letter");
        assert_eq!(own.time, record.delivery.publish_time);
        assert!(Probe::prior(&crate::event::testing::record("62", b"[]")).is_none());
    }

    fn lane(sink: &Arc<Scripted>) -> GroupCommit {
        let config = BatchConfig::new(10, Duration::from_millis(1));
        GroupCommit::spawn(sink.clone(), config, SinkMetrics::detached()).0
    }

    fn queued(sink: &Arc<Scripted>, replays: Option<&Arc<Scripted>>) -> Queue {
        Queue {
            sink: sink.clone(),
            fresh: lane(sink),
            replays: replays.map(lane),
        }
    }

    fn sinks_of(sinks: &[&Arc<Scripted>]) -> Sinks {
        Sinks::new(sinks.iter().map(|s| queued(s, None)).collect())
    }

    #[tokio::test]
    async fn a_redelivery_is_one_if_any_landing_copy_says_so_and_the_first_copy_names_it() {
        let record = || crate::event::testing::record("61", b"{}");
        let warehouse = Scripted::warehouse("warehouse", None);
        let bucket = Scripted::landing("gcs", "gs://b/o", Some(false));
        let folder = Scripted::landing("landing", "file:///o", Some(true));
        let landed = sinks_of(&[&bucket, &folder, &warehouse])
            .land(record())
            .await
            .unwrap();
        assert_eq!(landed.landing_uri.as_deref(), Some("gs://b/o"));
        assert_eq!(
            landed.written,
            [
                Written::Landed(Receipt {
                    uri: "gs://b/o".into(),
                    before: Some(true)
                }),
                Written::Created
            ]
        );
        let unsure = Scripted::landing("landing", "file:///o", None);
        sinks_of(&[&bucket, &unsure, &warehouse])
            .land(record())
            .await
            .unwrap();
        let neither = Scripted::landing("landing", "file:///o", Some(false));
        sinks_of(&[&bucket, &neither, &warehouse])
            .land(record())
            .await
            .unwrap();
        assert_eq!(warehouse.told(), [Some(true), None, Some(false)]);
    }

    #[tokio::test]
    async fn any_failing_sink_fails_the_record_and_no_row_is_written_without_every_copy() {
        let record = || crate::event::testing::record("61", b"{}");
        let bucket = Scripted::landing("gcs", "gs://b/o", Some(false));
        let warehouse = Scripted::warehouse("warehouse", None);
        let down = |layer| Scripted::failing("down", layer);
        let combinations = [
            vec![down(Layer::Landing), warehouse.clone()],
            vec![bucket.clone(), down(Layer::Landing), warehouse.clone()],
            vec![down(Layer::Landing), bucket.clone(), warehouse.clone()],
        ];
        for sinks in &combinations {
            let refs: Vec<&Arc<Scripted>> = sinks.iter().collect();
            let failed = sinks_of(&refs).land(record()).await.unwrap_err();
            assert_eq!(failed.sink, "down");
        }
        assert_eq!(
            warehouse.told(),
            Vec::<Option<bool>>::new(),
            "no row is written while a landing copy is missing"
        );
        for sinks in [
            vec![bucket.clone(), down(Layer::Warehouse)],
            vec![bucket.clone(), warehouse.clone(), down(Layer::Warehouse)],
        ] {
            let refs: Vec<&Arc<Scripted>> = sinks.iter().collect();
            let failed = sinks_of(&refs).land(record()).await.unwrap_err();
            assert_eq!(failed.sink, "down", "a failed warehouse fails the record");
        }
        let answered = sinks_of(&[&bucket, &warehouse])
            .warehouse(record(), None)
            .await
            .map(|a| a.written);
        assert_eq!(answered, Ok(vec![Written::Created]));
    }

    #[tokio::test]
    async fn redeliveries_take_the_replay_lane_where_a_sink_has_one() {
        let record = || crate::event::testing::record("61", b"{}");
        let (fresh, replays) = (
            Scripted::warehouse("bigquery", None),
            Scripted::warehouse("bigquery_replays", None),
        );
        for before in [Some(true), Some(false), None] {
            let landing = Scripted::landing("gcs", "gs://b/o", before);
            let sinks = Sinks::new(vec![queued(&landing, None), queued(&fresh, Some(&replays))]);
            sinks.land(record()).await.unwrap();
        }
        assert_eq!(replays.told(), [Some(true)]);
        assert_eq!(fresh.told(), [Some(false), None]);
    }

    #[tokio::test]
    async fn sinks_know_their_layers_ask_the_first_warehouse_that_can_look_and_check_all() {
        let landing = Scripted::landing("gcs", "gs://b/o", Some(false));
        let cannot = Scripted::warehouse("cannot", None);
        let can = Scripted::warehouse("can", Some(&["61"]));
        let only_landing = sinks_of(&[&landing]);
        assert!(only_landing.has_landing() && !only_landing.has_warehouse());
        assert!(only_landing.find(&[]).await.is_none());
        let only_warehouse = sinks_of(&[&cannot]);
        assert!(!only_warehouse.has_landing() && only_warehouse.has_warehouse());
        assert!(only_warehouse.find(&[]).await.is_none());
        let all = sinks_of(&[&landing, &cannot, &can]);
        let found = all.find(&[]).await.unwrap().unwrap();
        assert_eq!(found, HashSet::from(["61".to_string()]));
        let checked: Vec<_> = all
            .check_within(Duration::from_secs(1))
            .await
            .into_iter()
            .map(|(name, result)| (name, result.is_ok()))
            .collect();
        assert_eq!(checked, [("gcs", true), ("cannot", true), ("can", true)]);
    }
}
