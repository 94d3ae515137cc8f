//! From a delivered message to a [`Record`]: the facts the landing layer writes and the
//! warehouse row. Every delivery becomes a record; a payload that is not a valid event becomes a
//! dead-letter record carrying the reason.

pub mod route;

use std::sync::Arc;

use base64::Engine;
use chrono::{DateTime, Utc};
use serde_json::Value;

use crate::envelope::Delivery;
use crate::schema::metadata::{self, DeadLetterFacts};
use crate::schema::{Catalog, Cell, EventType, RowSource, Table, Typed};
use crate::time::parse_timestamp;
use route::Routing;

/// Which time partitions the landing path.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, serde::Serialize, serde::Deserialize,
)]
#[serde(rename_all = "lowercase")]
pub enum PartitionTime {
    /// The event's own time (its catalog `time_field`).
    Event,
    /// When Pub/Sub accepted the message.
    Publish,
}

impl std::fmt::Display for PartitionTime {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            PartitionTime::Event => "event",
            PartitionTime::Publish => "publish",
        })
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
        /// The event this message would have been, when the payload still says which: an
        /// earlier delivery may have landed as that event under an older catalog.
        prior: Option<Prior>,
    },
}

/// An event's identity without its row: enough to find it in the landing layer and in its
/// table.
#[derive(Debug, Clone, PartialEq)]
pub struct Prior {
    pub event_type: Arc<str>,
    pub table: Arc<Table>,
    /// The value of the type's time field (it partitions the table).
    pub time: DateTime<Utc>,
    /// The time that partitions its landing path.
    pub landing_time: DateTime<Utc>,
}

/// One message, classified: what the landing layer writes and the warehouse row.
#[derive(Debug, Clone, PartialEq)]
pub struct Record {
    pub delivery: Delivery,
    /// When landfall received it (for a repaired record: when it first did).
    pub received_at: DateTime<Utc>,
    pub outcome: Outcome,
    pub table: Arc<Table>,
    /// One cell per column of `table`, in its order; `landing_uri` stays NULL here, since
    /// only the landing layer knows it (in the batch layout, once the batch is cut).
    pub row: Vec<Cell>,
    /// The time that partitions its landing path: the event time or the publish time for an
    /// event, the publish time for a dead letter.
    pub landing_time: DateTime<Utc>,
}

impl Record {
    pub fn message_id(&self) -> &str {
        &self.delivery.message_id
    }

    pub fn event_type(&self) -> Option<&Arc<str>> {
        match &self.outcome {
            Outcome::Event { event_type } => Some(event_type),
            Outcome::DeadLetter { event_type, .. } => event_type.as_ref(),
        }
    }

    pub fn is_dead_letter(&self) -> bool {
        matches!(self.outcome, Outcome::DeadLetter { .. })
    }

    pub fn prior(&self) -> Option<&Prior> {
        match &self.outcome {
            Outcome::DeadLetter { prior, .. } => prior.as_ref(),
            Outcome::Event { .. } => None,
        }
    }

    /// The rule a dead letter broke; `None` for an event.
    pub fn rule(&self) -> Option<&'static str> {
        match &self.outcome {
            Outcome::DeadLetter { rule, .. } => Some(rule),
            Outcome::Event { .. } => None,
        }
    }

    pub fn reason(&self) -> Option<&str> {
        match &self.outcome {
            Outcome::DeadLetter { reason, .. } => Some(reason),
            Outcome::Event { .. } => None,
        }
    }

    /// The value of one of the row's columns.
    pub fn cell(&self, column: &str) -> Option<&Cell> {
        self.table.column_index(column).map(|i| &self.row[i])
    }

    /// The value of the column that partitions its table (the time field, or `received_at`).
    pub fn partition_time(&self) -> Option<DateTime<Utc>> {
        match self.cell(&self.table.partition_by) {
            Some(Cell::Timestamp(t)) => Some(*t),
            _ => None,
        }
    }
}

/// Why a payload cannot be an event row.
#[derive(Debug, Clone, PartialEq)]
pub struct Poison {
    pub reason: String,
    pub rule: &'static str,
    pub event_type: Option<Arc<str>>,
    pub prior: Option<Prior>,
}

impl Poison {
    pub fn untyped(reason: String, rule: &'static str) -> Self {
        Poison {
            reason,
            rule,
            event_type: None,
            prior: None,
        }
    }
}

/// Turns deliveries into records with one catalog, one routing rule and one partitioning.
pub struct Classifier {
    pub catalog: Arc<Catalog>,
    pub routing: Routing,
    pub partition: PartitionTime,
}

impl Classifier {
    /// An event record, or a dead-letter record when the payload is poison.
    pub fn classify(&self, delivery: Delivery, received_at: DateTime<Utc>) -> Arc<Record> {
        match self.parse(&delivery) {
            Ok((event_type, typed)) => {
                Arc::new(self.event(delivery, received_at, event_type, typed))
            }
            Err(poison) => self.dead_letter(delivery, received_at, poison),
        }
    }

    fn parse<'c>(&'c self, delivery: &Delivery) -> Result<(&'c Arc<EventType>, Typed), Poison> {
        let text = std::str::from_utf8(&delivery.data).map_err(|e| {
            Poison::untyped(
                format!(
                    "payload is not UTF-8 text (byte {} is not valid UTF-8), so it cannot be JSON",
                    e.valid_up_to()
                ),
                "not_json",
            )
        })?;
        let payload = crate::json::from_slice(text.as_bytes()).map_err(|problem| {
            let rule = if problem.contains("appears twice") {
                "duplicate_key"
            } else {
                "not_json"
            };
            Poison::untyped(format!("payload is not valid JSON: {problem}"), rule)
        })?;
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
            prior: self.prior(event_type, &payload, delivery),
        })?;
        Ok((event_type, typed))
    }

    /// The event a refused payload would have been, when its time field still reads.
    fn prior(&self, event_type: &EventType, payload: &Value, delivery: &Delivery) -> Option<Prior> {
        let time = payload
            .get(&event_type.table.partition_by)
            .and_then(Value::as_str)
            .and_then(parse_timestamp)?;
        Some(Prior {
            event_type: event_type.name.clone(),
            table: event_type.table.clone(),
            time,
            landing_time: self.landing_time(time, delivery),
        })
    }

    fn landing_time(&self, event_time: DateTime<Utc>, delivery: &Delivery) -> DateTime<Utc> {
        match self.partition {
            PartitionTime::Event => event_time,
            PartitionTime::Publish => delivery.publish_time,
        }
    }

    fn event(
        &self,
        delivery: Delivery,
        received_at: DateTime<Utc>,
        event_type: &EventType,
        typed: Typed,
    ) -> Record {
        let landing_time = self.landing_time(typed.time, &delivery);
        // The payload parsed as JSON, so it is UTF-8.
        let raw = String::from_utf8_lossy(&delivery.data);
        let source = row_source(&delivery, received_at, Some(&raw), None);
        let table = event_type.table.clone();
        let mut row = typed.cells;
        row.extend(metadata::cells(table.metadata, &source));
        Record {
            outcome: Outcome::Event {
                event_type: event_type.name.clone(),
            },
            table,
            row,
            landing_time,
            received_at,
            delivery,
        }
    }

    /// A dead-letter record: for poison payloads and for rows a warehouse refuses.
    pub fn dead_letter(
        &self,
        delivery: Delivery,
        received_at: DateTime<Utc>,
        poison: Poison,
    ) -> Arc<Record> {
        let (data, encoding) = data_text(&delivery.data);
        let facts = DeadLetterFacts {
            event_type: poison.event_type.as_deref(),
            reason: &poison.reason,
            data: &data,
            data_encoding: encoding,
        };
        let source = row_source(&delivery, received_at, None, Some(facts));
        let table = self.catalog.dead_letter().clone();
        let row = metadata::cells(table.metadata, &source).collect();
        Arc::new(Record {
            outcome: Outcome::DeadLetter {
                reason: poison.reason,
                rule: poison.rule,
                event_type: poison.event_type,
                prior: poison.prior,
            },
            table,
            row,
            landing_time: delivery.publish_time,
            received_at,
            delivery,
        })
    }
}

fn row_source<'a>(
    delivery: &'a Delivery,
    received_at: DateTime<Utc>,
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
        landing_uri: None,
        raw,
        dead_letter,
    }
}

/// Message data as text when it is UTF-8, otherwise base64, with the encoding named.
pub fn data_text(data: &[u8]) -> (String, &'static str) {
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
    use bytes::Bytes;

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
            partition,
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
        classifier(PartitionTime::Event).classify(delivery(id, data), Utc::now())
    }
}

#[cfg(test)]
mod tests {
    use super::testing::classifier;
    use super::*;
    use bytes::Bytes;

    fn delivery(data: &str) -> Delivery {
        testing::delivery("77", data.as_bytes())
    }

    #[test]
    fn partition_times_are_named_as_the_flag_spells_them() {
        // A landing layer written with other settings is refused in these words.
        assert_eq!(PartitionTime::Event.to_string(), "event");
        assert_eq!(PartitionTime::Publish.to_string(), "publish");
    }

    const INVENTORY: &str = r#"{"event_type":"inventory","inventory_id":"i-1","product_id":"p-1","warehouse_id":"w-1","quantity_change":-3,"reason":"sale","timestamp":"2026-11-24T23:59:59Z","note":"kept"}"#;

    fn cell<'a>(record: &'a Record, column: &str) -> &'a Cell {
        record
            .cell(column)
            .unwrap_or_else(|| panic!("no column {column}"))
    }

    #[test]
    fn a_valid_event_lands_at_its_event_time_with_a_cell_per_column() {
        let record = classifier(PartitionTime::Event).classify(delivery(INVENTORY), Utc::now());
        assert_eq!(
            record.outcome,
            Outcome::Event {
                event_type: "inventory".into()
            }
        );
        assert_eq!(
            record.landing_time,
            parse_timestamp("2026-11-24T23:59:59Z").unwrap()
        );
        assert_eq!(&record.delivery.data[..], INVENTORY.as_bytes());
        assert_eq!(record.row.len(), record.table.columns().count());
        assert_eq!(cell(&record, "raw"), &Cell::Json(INVENTORY.to_string()));
        assert_eq!(cell(&record, "quantity_change"), &Cell::Int(-3));
        assert_eq!(cell(&record, "delivery_attempt"), &Cell::Int(2));
        assert_eq!(cell(&record, "message_id"), &Cell::String("77".into()));
        assert_eq!(cell(&record, "landing_uri"), &Cell::Null);
    }

    #[test]
    fn publish_partitioning_uses_the_publish_time() {
        let record = classifier(PartitionTime::Publish).classify(delivery(INVENTORY), Utc::now());
        assert_eq!(
            record.landing_time,
            parse_timestamp("2026-11-25T10:00:00Z").unwrap()
        );
    }

    #[test]
    fn poison_payloads_become_dead_letters_with_a_reason_and_a_rule() {
        let cases = [
            (
                "not json",
                "payload is not valid JSON: a value is expected here and something else is (line 1, column 2, byte 1)",
                "not_json",
            ),
            (
                r#"{"event_type":"inventory","quantity_change":500,"quantity_change":5}"#,
                r#"payload is not valid JSON: the key "quantity_change" appears twice in one object (line 1, column 68, byte 67)"#,
                "duplicate_key",
            ),
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
            let record = classifier(PartitionTime::Event).classify(delivery(data), Utc::now());
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
            assert_eq!(record.landing_time, record.delivery.publish_time);
            assert_eq!(record.row.len(), record.table.columns().count());
        }
    }

    #[test]
    fn a_refused_event_whose_time_still_reads_names_the_event_it_would_have_been() {
        let bad = INVENTORY.replace("-3", "-300");
        let record = classifier(PartitionTime::Event).classify(delivery(&bad), Utc::now());
        let prior = record
            .prior()
            .expect("the type and the time field still read");
        assert_eq!(&*prior.event_type, "inventory");
        assert_eq!(prior.table.name, "inventory");
        assert_eq!(prior.time, parse_timestamp("2026-11-24T23:59:59Z").unwrap());
        assert_eq!(prior.landing_time, prior.time);
        let by_publish = classifier(PartitionTime::Publish).classify(delivery(&bad), Utc::now());
        assert_eq!(
            by_publish.prior().unwrap().landing_time,
            by_publish.delivery.publish_time
        );
        let no_time = INVENTORY.replace("2026-11-24T23:59:59Z", "yesterday");
        let record = classifier(PartitionTime::Event).classify(delivery(&no_time), Utc::now());
        assert!(record.is_dead_letter());
        assert_eq!(record.prior(), None, "no time field, no event to look for");
    }

    #[test]
    fn binary_data_is_kept_as_base64_in_the_dead_letter_and_named_as_not_utf8() {
        let mut d = delivery("");
        d.data = Bytes::from_static(&[b'{', 0xff, 0x00, 0x01]);
        let record = classifier(PartitionTime::Event).classify(d, Utc::now());
        assert_eq!(cell(&record, "data"), &Cell::String("e/8AAQ==".into()));
        assert_eq!(
            cell(&record, "data_encoding"),
            &Cell::String("base64".into())
        );
        assert_eq!(
            record.reason(),
            Some("payload is not UTF-8 text (byte 1 is not valid UTF-8), so it cannot be JSON")
        );
    }
}
