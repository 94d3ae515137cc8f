//! The pipeline: from a delivered message to its fate, for `/push` and for repair alike, and
//! the one place where each rule about what becomes of a message is written.
//!
//! classify (an event, or a dead letter with its reason) → land in every sink (the landing
//! layer first, then the warehouses, never a row without its object) → the fate of their
//! answers ([`fate`]): stored; a duplicate (stored before); an earlier event (a dead letter
//! whose message landed as an event under an older catalog: nothing is dead-lettered); or
//! refused by a warehouse for its content — then it is dead-lettered instead, since the same
//! content would be refused forever, and that is its fate.
//!
//! [`build`] makes the sinks from the settings; `serve`, `redrive` and `backfill` all build
//! their pipeline there.

pub mod build;
pub mod fate;

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use tokio::task::JoinHandle;

use crate::envelope::Delivery;
use crate::event::route::Routing;
use crate::event::{Classifier, Poison, Record};
use crate::landing::Reader;
use crate::schema::{Catalog, CatalogSource};
use crate::sink::{Access, Probe, Receipt, SinkError, Sinks};
use crate::telemetry::metrics::{Metrics, no_event_type};
use crate::time::received_now;
use build::{SinkConfig, SinkSet, build_sinks, start_writers};
use fate::{Fate, settle};

/// What a pipeline is built from: the catalog, how a message names its type, and the sinks.
#[derive(Debug, Clone)]
pub struct PipelineConfig {
    pub catalog: CatalogSource,
    pub routing: Routing,
    pub sinks: SinkConfig,
}

pub struct Pipeline {
    classifier: Classifier,
    sinks: Sinks,
    metrics: Arc<Metrics>,
    /// The landing layer read back where rows say it is (the first store), for repair.
    reader: Option<Reader>,
}

/// How a message of this fate is handled; `Err` with the reason when a warehouse refused
/// its content.
fn handling_of(fate: Fate) -> Result<Handling, String> {
    match fate {
        Fate::Stored => Ok(Handling::Stored),
        Fate::Duplicate => Ok(Handling::Duplicate),
        Fate::EarlierEvent => Ok(Handling::EarlierEvent),
        Fate::Rejected(reason) => Err(reason),
    }
}

/// Dead-letter rows are plain text columns: a refusal means the warehouse's table is broken,
/// and the message must stay unacknowledged until it is mended.
fn dead_letter_refused(reason: String) -> SinkError {
    SinkError {
        sink: "warehouse",
        message: format!("the dead letter was refused: {reason}"),
    }
}

/// The group-commit writers behind a pipeline: they finish their batches once every handle
/// to the pipeline is gone.
pub struct Writers(Vec<JoinHandle<()>>);

impl Writers {
    /// Waits for the writers to finish, at most `within`; whether they did.
    pub async fn finish(self, within: Duration) -> bool {
        tokio::time::timeout(within, futures::future::join_all(self.0))
            .await
            .is_ok()
    }
}

/// How a message was handled.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Handling {
    /// Newly stored (as an event, or as a dead letter).
    Stored,
    /// Every sink had it already (a redelivery): nothing was written.
    Duplicate,
    /// A dead letter whose message landed as an event before: that event stands.
    EarlierEvent,
}

/// What became of a message.
#[derive(Debug, Clone)]
pub struct Handled {
    /// The record stored: the one classified, or the dead letter a warehouse's refusal made it.
    pub record: Arc<Record>,
    pub handling: Handling,
    /// The landing object that holds it (for an earlier event: that event's, when known).
    pub landing_uri: Option<Arc<str>>,
}

impl Pipeline {
    /// Loads the catalog (refusing a broken one) and opens the configured sinks for `access`.
    pub async fn build(
        config: &PipelineConfig,
        metrics: Arc<Metrics>,
        access: Access,
    ) -> anyhow::Result<(Self, Writers)> {
        let catalog = Arc::new(Catalog::load(&config.catalog)?);
        let set = build_sinks(&config.sinks, &catalog, &metrics, access).await?;
        Ok(Self::with_sinks(catalog, config, set, metrics))
    }

    /// The same over sinks of the caller's choosing (the benchmark's ceiling stores nothing).
    pub fn with_sinks(
        catalog: Arc<Catalog>,
        config: &PipelineConfig,
        set: SinkSet,
        metrics: Arc<Metrics>,
    ) -> (Self, Writers) {
        let reader = set.stores.first().map(|store| Reader {
            layout: config.sinks.landing.clone(),
            store: store.clone(),
        });
        let (sinks, writers) = start_writers(set, config.sinks.batch, &metrics);
        let classifier = Classifier {
            catalog,
            routing: config.routing.clone(),
            partition: config.sinks.landing.partition,
        };
        let pipeline = Self {
            classifier,
            sinks,
            metrics,
            reader,
        };
        (pipeline, Writers(writers))
    }

    pub fn catalog(&self) -> &Arc<Catalog> {
        &self.classifier.catalog
    }

    /// The landing layer, to read back; `None` when only a warehouse is configured.
    pub fn reader(&self) -> Option<&Reader> {
        self.reader.as_ref()
    }

    pub fn has_warehouse(&self) -> bool {
        self.sinks.has_warehouse()
    }

    /// What a message is: an event, or a dead letter with its reason.
    pub fn classify(&self, delivery: Delivery, received_at: DateTime<Utc>) -> Arc<Record> {
        self.classifier.classify(delivery, received_at)
    }

    /// A dead letter of a message kept as received, without reading its payload.
    pub fn unread(
        &self,
        delivery: Delivery,
        received_at: DateTime<Utc>,
        poison: Poison,
    ) -> Arc<Record> {
        self.classifier.dead_letter(delivery, received_at, poison)
    }

    /// Stores a record in every sink and decides its fate. `Err` (a sink did not store it):
    /// nothing may be acknowledged, and running it again is safe.
    pub async fn land(&self, record: Arc<Record>) -> Result<Handled, SinkError> {
        let answers = self.sinks.land(record.clone()).await?;
        self.settle(record, settle(answers)).await
    }

    /// Writes the row of an event whose object is already in the landing layer at `uri`
    /// (backfill): the warehouses take it as a redelivery, so a row already there is found.
    pub async fn restore(&self, record: Arc<Record>, uri: Arc<str>) -> Result<Handled, SinkError> {
        let receipt = Receipt {
            uri,
            before: Some(true),
        };
        let answers = self.sinks.warehouse(record.clone(), Some(receipt)).await?;
        self.settle(record, settle(answers)).await
    }

    async fn settle(
        &self,
        record: Arc<Record>,
        settled: fate::Settled,
    ) -> Result<Handled, SinkError> {
        match handling_of(settled.fate) {
            Ok(handling) => Ok(self.handled(record, handling, settled.landing_uri)),
            Err(reason) => self.dead_letter_instead(&record, reason).await,
        }
    }

    /// A warehouse refused a row for its content: the message goes to the dead letter, since
    /// the same content would be refused again on every redelivery.
    async fn dead_letter_instead(
        &self,
        refused: &Record,
        reason: String,
    ) -> Result<Handled, SinkError> {
        let (false, Some(event_type)) = (refused.is_dead_letter(), refused.event_type()) else {
            return Err(dead_letter_refused(reason));
        };
        // No `prior`: the event it would be is the very one refused.
        let poison = Poison {
            reason: format!("rejected by the warehouse: {reason}"),
            rule: "warehouse_rejected",
            event_type: Some(event_type.clone()),
            prior: None,
        };
        let record = self
            .classifier
            .dead_letter(refused.delivery.clone(), received_now(), poison);
        let settled = settle(self.sinks.land(record.clone()).await?);
        let handling = handling_of(settled.fate).map_err(dead_letter_refused)?;
        Ok(self.handled(record, handling, settled.landing_uri))
    }

    /// What became of a record; a dead letter stored anew is counted, once, here.
    fn handled(
        &self,
        record: Arc<Record>,
        handling: Handling,
        landing_uri: Option<Arc<str>>,
    ) -> Handled {
        if handling == Handling::Stored {
            self.count_dead_letter(&record);
        }
        Handled {
            record,
            handling,
            landing_uri,
        }
    }

    fn count_dead_letter(&self, record: &Record) {
        if let Some(rule) = record.rule() {
            let event_type = record.event_type().cloned().unwrap_or_else(no_event_type);
            self.metrics.dead_letter(&event_type, rule);
        }
    }

    /// Which of these rows a warehouse holds; `None` when none can say.
    pub async fn find(&self, probes: &[Probe]) -> Option<Result<HashSet<String>, SinkError>> {
        self.sinks.find(probes).await
    }

    /// Readiness of every sink, each check given at most `within`.
    pub async fn check_within(
        &self,
        within: Duration,
    ) -> Vec<(&'static str, Result<(), SinkError>)> {
        self.sinks.check_within(within).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::PartitionTime;
    use crate::landing::{LandingBatchConfig, LandingLayout, LayoutKind};
    use crate::sink::batch::BatchConfig;
    use crate::sink::testing::Scripted;

    const INVENTORY: &[u8] = br#"{"event_type":"inventory","inventory_id":"i","product_id":"p","warehouse_id":"w","quantity_change":1,"reason":"sale","timestamp":"2026-11-25T09:59:00Z"}"#;

    fn config() -> PipelineConfig {
        let landing = LandingLayout {
            prefix: String::new(),
            partition: PartitionTime::Event,
            kind: LayoutKind::Event,
            names: Default::default(),
        };
        let landing_batch = LandingBatchConfig {
            max_events: 10,
            max_bytes: 1 << 20,
            linger: Duration::from_millis(1),
            idle: Duration::from_secs(1),
        };
        let sinks = SinkConfig {
            landing,
            landing_batch,
            embedded: None,
            gcs: None,
            bigquery: None,
            batch: BatchConfig::new(10, Duration::from_millis(1)),
            deadline: Duration::from_secs(5),
        };
        PipelineConfig {
            catalog: CatalogSource::Shipped,
            routing: Default::default(),
            sinks,
        }
    }

    fn pipeline(warehouse: Arc<Scripted>) -> Pipeline {
        let landing = Scripted::landing("landing", "file:///o", Some(false));
        let set = SinkSet {
            sinks: vec![landing, warehouse],
            stores: Vec::new(),
        };
        let catalog = crate::event::testing::catalog();
        let metrics = Arc::new(Metrics::new(Duration::from_secs(5), false));
        Pipeline::with_sinks(catalog, &config(), set, metrics).0
    }

    fn delivery() -> Delivery {
        crate::event::testing::delivery("61", INVENTORY)
    }

    #[tokio::test]
    async fn a_row_the_warehouse_refuses_is_stored_as_a_dead_letter_instead() {
        let pipeline = pipeline(Scripted::refusing_events("warehouse", "no such column"));
        let event = pipeline.classify(delivery(), received_now());
        assert!(!event.is_dead_letter(), "the fixture is a valid event");
        let handled = pipeline.land(event).await.unwrap();
        assert_eq!(handled.handling, Handling::Stored);
        assert!(handled.record.is_dead_letter());
        assert_eq!(handled.record.rule(), Some("warehouse_rejected"));
        assert_eq!(handled.landing_uri.as_deref(), Some("file:///o"));
    }

    #[tokio::test]
    async fn a_dead_letter_the_warehouse_refuses_too_acknowledges_nothing() {
        let pipeline = pipeline(Scripted::refusing("warehouse", "no such column"));
        let event = pipeline.classify(delivery(), received_now());
        let failed = pipeline.land(event).await.unwrap_err();
        assert_eq!(failed.sink, "warehouse");
        assert!(
            failed
                .message
                .contains("the dead letter was refused: no such column"),
            "{failed:?}"
        );
    }
}
