//! From a delivered message to a [`Record`]: the landing object and the warehouse row that the
//! sinks write. Every delivery becomes a record; a payload that is not a valid event becomes a
//! dead-letter record carrying the reason.

pub mod path;
pub mod route;

use std::sync::Arc;

use base64::Engine;
use bytes::Bytes;
use chrono::{DateTime, Utc};
use serde_json::{Value, json};

use crate::envelope::Delivery;
use crate::schema::metadata::{self, DeadLetterFacts};
use crate::schema::{Catalog, Cell, EventType, RowSource, Table};
use crate::time::format_timestamp;
use route::Routing;

/// Which time partitions the landing path.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum PartitionTime {
    /// The event's own time (its catalog `time_field`).
    Event,
    /// When Pub/Sub accepted the message.
    Publish,
}

/// How landing object names are laid out (the settings part of [`Landing`]).
#[derive(Debug, Clone)]
pub struct LandingLayout {
    pub prefix: String,
    pub partition: PartitionTime,
}

/// Where the landing copy is written, with the URI scheme that rows record
/// (`gs://bucket` or `file:///abs/landing`).
#[derive(Debug, Clone)]
pub struct Landing {
    /// `None` when no landing layer is configured (BigQuery alone).
    pub base_uri: Option<String>,
    pub layout: LandingLayout,
}

impl Landing {
    fn uri(&self, object_name: &str) -> Option<String> {
        self.base_uri
            .as_ref()
            .map(|base| format!("{base}/{object_name}"))
    }
}

/// What a record is, for logs, metrics and the ack body.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    Event {
        event_type: Arc<str>,
    },
    DeadLetter {
        reason: String,
        /// Bounded name of the broken rule (`required`, `not_json`, …), for metrics.
        rule: &'static str,
        /// Set when the message named a known event type.
        event_type: Option<Arc<str>>,
    },
}

/// One landing object plus one warehouse row: what every sink receives.
#[derive(Debug, Clone, PartialEq)]
pub struct Record {
    pub message_id: String,
    pub outcome: Outcome,
    pub table: Arc<Table>,
    pub object_name: String,
    pub object_uri: Option<String>,
    pub object_body: Bytes,
    /// Custom metadata on the landing object.
    pub object_metadata: Vec<(&'static str, String)>,
    /// One cell per column of `table`, in its order.
    pub row: Vec<Cell>,
    pub publish_time: DateTime<Utc>,
}

impl Record {
    pub fn event_type(&self) -> Option<&Arc<str>> {
        match &self.outcome {
            Outcome::Event { event_type } => Some(event_type),
            Outcome::DeadLetter { event_type, .. } => event_type.as_ref(),
        }
    }

    pub fn is_dead_letter(&self) -> bool {
        matches!(self.outcome, Outcome::DeadLetter { .. })
    }

    /// The value of one of the row's columns.
    pub fn cell(&self, column: &str) -> Option<&Cell> {
        self.table.column_index(column).map(|i| &self.row[i])
    }
}

/// Why a payload cannot be an event row.
#[derive(Debug, Clone, PartialEq)]
pub struct Poison {
    pub reason: String,
    pub rule: &'static str,
    pub event_type: Option<Arc<str>>,
}

impl Poison {
    pub fn untyped(reason: String, rule: &'static str) -> Self {
        Poison {
            reason,
            rule,
            event_type: None,
        }
    }
}

/// Turns deliveries into records with one catalog, one routing rule and one landing layout.
pub struct Classifier {
    pub catalog: Arc<Catalog>,
    pub routing: Routing,
    pub landing: Landing,
}

impl Classifier {
    /// An event record, or a dead-letter record when the payload is poison.
    pub fn classify(&self, delivery: &Delivery, received_at: DateTime<Utc>) -> Arc<Record> {
        match self.parse(delivery) {
            Ok((event_type, typed)) => {
                Arc::new(self.event(delivery, received_at, event_type, typed))
            }
            Err(poison) => self.dead_letter(delivery, received_at, poison),
        }
    }

    fn parse<'c>(
        &'c self,
        delivery: &Delivery,
    ) -> Result<(&'c Arc<EventType>, crate::schema::Typed), Poison> {
        let payload: Value = serde_json::from_slice(&delivery.data)
            .map_err(|e| Poison::untyped(format!("payload is not valid JSON: {e}"), "not_json"))?;
        if !payload.is_object() {
            return Err(Poison::untyped(
                "payload is not a JSON object".into(),
                "not_object",
            ));
        }
        let event_type = self
            .routing
            .route(&self.catalog, &payload, &delivery.attributes)?;
        let typed = event_type.validate(&payload).map_err(|v| Poison {
            reason: format!("{}{v}", event_type.name),
            rule: v.rule,
            event_type: Some(event_type.name.clone()),
        })?;
        Ok((event_type, typed))
    }

    fn event(
        &self,
        delivery: &Delivery,
        received_at: DateTime<Utc>,
        event_type: &EventType,
        typed: crate::schema::Typed,
    ) -> Record {
        let time = match self.landing.layout.partition {
            PartitionTime::Event => typed.time,
            PartitionTime::Publish => delivery.publish_time,
        };
        let name = &event_type.name;
        let object_name = path::event_object(
            &self.landing.layout.prefix,
            name,
            &time,
            &delivery.message_id,
        );
        let object_uri = self.landing.uri(&object_name);
        // The payload parsed as JSON, so it is UTF-8.
        let raw = String::from_utf8_lossy(&delivery.data);
        let source = row_source(
            delivery,
            received_at,
            object_uri.as_deref(),
            Some(&raw),
            None,
        );
        let table = event_type.table.clone();
        let mut row = typed.cells;
        row.extend(metadata::cells(table.metadata, &source));
        Record {
            message_id: delivery.message_id.clone(),
            outcome: Outcome::Event {
                event_type: name.clone(),
            },
            table,
            object_metadata: object_metadata(delivery, Some(name)),
            object_name,
            object_uri,
            object_body: delivery.data.clone(),
            row,
            publish_time: delivery.publish_time,
        }
    }

    /// A dead-letter record: for poison payloads and for rows a warehouse refuses.
    pub fn dead_letter(
        &self,
        delivery: &Delivery,
        received_at: DateTime<Utc>,
        poison: Poison,
    ) -> Arc<Record> {
        let object_name = path::dead_letter_object(
            &self.landing.layout.prefix,
            &delivery.publish_time,
            &delivery.message_id,
        );
        let object_uri = self.landing.uri(&object_name);
        let (data, encoding) = data_text(&delivery.data);
        let event_type = poison.event_type.as_deref();
        let body = json!({
            "message_id": delivery.message_id,
            "publish_time": format_timestamp(&delivery.publish_time),
            "received_at": format_timestamp(&received_at),
            "subscription": delivery.subscription,
            "attributes": delivery.attributes,
            "event_type": event_type,
            "reason": poison.reason,
            "data": data,
            "data_encoding": encoding,
        });
        let facts = DeadLetterFacts {
            event_type,
            reason: &poison.reason,
            data: &data,
            data_encoding: encoding,
        };
        let source = row_source(
            delivery,
            received_at,
            object_uri.as_deref(),
            None,
            Some(facts),
        );
        let table = self.catalog.dead_letter().clone();
        let row = metadata::cells(table.metadata, &source).collect();
        Arc::new(Record {
            message_id: delivery.message_id.clone(),
            object_metadata: object_metadata(delivery, event_type),
            outcome: Outcome::DeadLetter {
                reason: poison.reason,
                rule: poison.rule,
                event_type: poison.event_type,
            },
            table,
            object_name,
            object_uri,
            object_body: Bytes::from(
                serde_json::to_vec_pretty(&body).expect("a JSON value serialises"),
            ),
            row,
            publish_time: delivery.publish_time,
        })
    }
}

fn row_source<'a>(
    delivery: &'a Delivery,
    received_at: DateTime<Utc>,
    landing_uri: Option<&'a str>,
    raw: Option<&'a str>,
    dead_letter: Option<DeadLetterFacts<'a>>,
) -> RowSource<'a> {
    RowSource {
        message_id: &delivery.message_id,
        publish_time: delivery.publish_time,
        received_at,
        subscription: delivery.subscription.as_deref(),
        attributes: &delivery.attributes,
        delivery_attempt: delivery.delivery_attempt,
        landing_uri,
        raw,
        dead_letter,
    }
}

fn object_metadata(delivery: &Delivery, event_type: Option<&str>) -> Vec<(&'static str, String)> {
    let mut metadata = vec![
        ("message_id", delivery.message_id.clone()),
        ("publish_time", format_timestamp(&delivery.publish_time)),
    ];
    if let Some(subscription) = &delivery.subscription {
        metadata.push(("subscription", subscription.clone()));
    }
    if let Some(event_type) = event_type {
        metadata.push(("event_type", event_type.to_string()));
    }
    metadata
}

/// Message data as text when it is UTF-8, otherwise base64, with the encoding named.
fn data_text(data: &[u8]) -> (String, &'static str) {
    match std::str::from_utf8(data) {
        Ok(text) => (text.to_string(), "utf-8"),
        Err(_) => (
            base64::engine::general_purpose::STANDARD.encode(data),
            "base64",
        ),
    }
}

/// Records built the way the service builds them, for other modules' tests.
#[cfg(test)]
pub(crate) mod testing {
    use super::*;
    use crate::schema::CatalogSource;
    use crate::time::parse_timestamp;

    /// The shipped catalog, loaded once for all tests.
    pub fn catalog() -> Arc<Catalog> {
        static CATALOG: std::sync::OnceLock<Arc<Catalog>> = std::sync::OnceLock::new();
        CATALOG
            .get_or_init(|| Arc::new(Catalog::load(&CatalogSource::Shipped).unwrap()))
            .clone()
    }

    pub fn classifier(partition: PartitionTime) -> Classifier {
        Classifier {
            catalog: catalog(),
            routing: Routing::default(),
            landing: Landing {
                base_uri: Some("gs://bucket".into()),
                layout: LandingLayout {
                    prefix: "output".into(),
                    partition,
                },
            },
        }
    }

    pub fn delivery(id: &str, data: &[u8]) -> Delivery {
        Delivery {
            message_id: id.into(),
            publish_time: parse_timestamp("2026-11-25T10:00:00Z").unwrap(),
            subscription: Some("projects/p/subscriptions/s".into()),
            attributes: Default::default(),
            ordering_key: None,
            delivery_attempt: Some(2),
            data: Bytes::copy_from_slice(data),
        }
    }

    pub fn record(id: &str, data: &[u8]) -> Arc<Record> {
        classifier(PartitionTime::Event).classify(&delivery(id, data), Utc::now())
    }
}

#[cfg(test)]
mod tests {
    use super::testing::classifier;
    use super::*;

    fn delivery(data: &str) -> Delivery {
        testing::delivery("77", data.as_bytes())
    }

    const INVENTORY: &str = r#"{"event_type":"inventory","inventory_id":"i-1","product_id":"p-1","warehouse_id":"w-1","quantity_change":-3,"reason":"sale","timestamp":"2026-11-24T23:59:59Z","note":"kept"}"#;

    fn cell<'a>(record: &'a Record, column: &str) -> &'a Cell {
        record
            .cell(column)
            .unwrap_or_else(|| panic!("no column {column}"))
    }

    #[test]
    fn a_valid_event_lands_at_its_event_time_with_a_cell_per_column() {
        let record = classifier(PartitionTime::Event).classify(&delivery(INVENTORY), Utc::now());
        assert_eq!(
            record.outcome,
            Outcome::Event {
                event_type: "inventory".into()
            }
        );
        assert_eq!(
            record.object_name,
            "output/inventory/2026/11/24/23/59/inventory_20261124235959_77.json"
        );
        assert_eq!(
            record.object_uri,
            Some(format!("gs://bucket/{}", record.object_name))
        );
        assert_eq!(&record.object_body[..], INVENTORY.as_bytes());
        assert_eq!(record.row.len(), record.table.columns().count());
        assert_eq!(cell(&record, "raw"), &Cell::Json(INVENTORY.to_string()));
        assert_eq!(cell(&record, "quantity_change"), &Cell::Int(-3));
        assert_eq!(cell(&record, "delivery_attempt"), &Cell::Int(2));
        assert_eq!(cell(&record, "message_id"), &Cell::String("77".into()));
    }

    #[test]
    fn publish_partitioning_uses_the_publish_time() {
        let record = classifier(PartitionTime::Publish).classify(&delivery(INVENTORY), Utc::now());
        assert_eq!(
            record.object_name,
            "output/inventory/2026/11/25/10/00/inventory_20261125100000_77.json"
        );
    }

    #[test]
    fn poison_payloads_become_dead_letters_with_a_reason_and_a_rule() {
        let cases = [
            ("not json", "payload is not valid JSON", "not_json"),
            ("[1]", "payload is not a JSON object", "not_object"),
            (r#"{"a":1}"#, "event_type: is required", "unknown_type"),
            (
                r#"{"event_type":"refund"}"#,
                "event_type: unknown value \"refund\"",
                "unknown_type",
            ),
            (r#"{"event_type":"inventory"}"#, "inventory.", "required"),
        ];
        for (data, reason, rule) in cases {
            let record = classifier(PartitionTime::Event).classify(&delivery(data), Utc::now());
            match &record.outcome {
                Outcome::DeadLetter {
                    reason: got,
                    rule: got_rule,
                    ..
                } => {
                    assert!(got.starts_with(reason), "{got}");
                    assert_eq!(*got_rule, rule, "{data}");
                }
                other => panic!("{data}: {other:?}"),
            }
            assert_eq!(
                record.object_name,
                "output/_dead_letter/2026/11/25/10/00/77.json"
            );
            assert_eq!(record.row.len(), record.table.columns().count());
        }
    }

    #[test]
    fn binary_data_is_kept_as_base64_in_the_dead_letter() {
        let mut d = delivery("");
        d.data = Bytes::from_static(&[0xff, 0x00, 0x01]);
        let record = classifier(PartitionTime::Event).classify(&d, Utc::now());
        assert_eq!(cell(&record, "data"), &Cell::String("/wAB".into()));
        assert_eq!(
            cell(&record, "data_encoding"),
            &Cell::String("base64".into())
        );
    }
}
