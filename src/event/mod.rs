//! From a delivered message to a [`Record`]: the landing object and the warehouse row that
//! the sinks write. Every delivery becomes a record; a payload that is not a valid event
//! becomes a dead-letter record carrying the reason.

pub mod path;
pub mod validate;

use std::sync::Arc;

use base64::Engine;
use bytes::Bytes;
use chrono::{DateTime, Utc};
use serde_json::{Map, Value, json};

use crate::envelope::Delivery;
use crate::schema::{self, DEAD_LETTER, EventType, Table};
use validate::{Cell, format_timestamp, validate_columns};

/// Which time partitions the landing path.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum PartitionTime {
    /// The event's own time (`order_date` / `timestamp`).
    Event,
    /// When Pub/Sub accepted the message.
    Publish,
}

/// Where the landing copy is written, with the URI scheme that rows record
/// (`gs://bucket` or `file:///abs/landing`).
#[derive(Debug, Clone)]
pub struct Landing {
    /// `None` when no landing layer is configured (BigQuery alone).
    pub base_uri: Option<String>,
    pub prefix: String,
    pub partition: PartitionTime,
}

impl Landing {
    fn uri(&self, object_name: &str) -> Option<String> {
        self.base_uri
            .as_ref()
            .map(|base| format!("{base}/{object_name}"))
    }
}

/// What a record is, for logs and for the ack body.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    Event {
        event_type: &'static str,
    },
    DeadLetter {
        reason: String,
        /// Set when the payload named a known event type but broke its schema.
        event_type: Option<&'static str>,
    },
}

/// One landing object plus one warehouse row: what every sink receives.
#[derive(Debug, Clone, PartialEq)]
pub struct Record {
    pub message_id: String,
    pub outcome: Outcome,
    pub table: &'static Table,
    pub object_name: String,
    pub object_uri: Option<String>,
    pub object_body: Bytes,
    /// Custom metadata on the landing object.
    pub object_metadata: Vec<(&'static str, String)>,
    pub row: Vec<(&'static str, Cell)>,
}

impl Record {
    pub fn event_type(&self) -> Option<&'static str> {
        match self.outcome {
            Outcome::Event { event_type }
            | Outcome::DeadLetter {
                event_type: Some(event_type),
                ..
            } => Some(event_type),
            Outcome::DeadLetter {
                event_type: None, ..
            } => None,
        }
    }

    pub fn is_dead_letter(&self) -> bool {
        matches!(self.outcome, Outcome::DeadLetter { .. })
    }
}

/// Turns a delivery into an event record, or a dead-letter record when the payload is poison.
pub fn classify(delivery: &Delivery, received_at: DateTime<Utc>, landing: &Landing) -> Arc<Record> {
    match parse(&delivery.data) {
        Ok(event) => Arc::new(event_record(delivery, received_at, landing, event)),
        Err(poison) => dead_letter(
            delivery,
            received_at,
            landing,
            poison.reason,
            poison.event_type,
        ),
    }
}

struct Parsed {
    event_type: &'static EventType,
    cells: Vec<(&'static str, Cell)>,
    event_time: DateTime<Utc>,
}

/// Why a payload cannot be an event row.
struct Poison {
    reason: String,
    event_type: Option<&'static str>,
}

impl From<String> for Poison {
    fn from(reason: String) -> Self {
        Poison {
            reason,
            event_type: None,
        }
    }
}

fn parse(data: &[u8]) -> Result<Parsed, Poison> {
    let value: Value =
        serde_json::from_slice(data).map_err(|e| format!("payload is not valid JSON: {e}"))?;
    let object = value
        .as_object()
        .ok_or_else(|| "payload is not a JSON object".to_string())?;
    let event_type = route(object)?;
    let cells = validate_columns(event_type.table.payload, object).map_err(|v| Poison {
        reason: format!("{}.{v}", event_type.name),
        event_type: Some(event_type.name),
    })?;
    let event_time = cells
        .iter()
        .find_map(|(name, cell)| match cell {
            Cell::Timestamp(t) if *name == event_type.time_field => Some(*t),
            _ => None,
        })
        .expect("the time field is required, so validation guarantees it");
    Ok(Parsed {
        event_type,
        cells,
        event_time,
    })
}

fn route(object: &Map<String, Value>) -> Result<&'static EventType, String> {
    let name = match object.get("event_type") {
        None | Some(Value::Null) => return Err("event_type: is required".into()),
        Some(Value::String(name)) => name,
        Some(_) => return Err("event_type: must be a string".into()),
    };
    schema::event_type(name).ok_or_else(|| {
        let known: Vec<_> = schema::EVENT_TYPES.iter().map(|t| t.name).collect();
        format!(
            "event_type: unknown value {name:?}, expected one of {}",
            known.join(", ")
        )
    })
}

fn delivery_cells(delivery: &Delivery, received_at: DateTime<Utc>) -> Vec<(&'static str, Cell)> {
    vec![
        ("message_id", Cell::Text(delivery.message_id.clone())),
        ("publish_time", Cell::Timestamp(delivery.publish_time)),
        ("received_at", Cell::Timestamp(received_at)),
        (
            "subscription",
            delivery.subscription.clone().map_or(Cell::Null, Cell::Text),
        ),
        (
            "attributes",
            Cell::Json(json!(delivery.attributes).to_string()),
        ),
    ]
}

fn event_record(
    delivery: &Delivery,
    received_at: DateTime<Utc>,
    landing: &Landing,
    event: Parsed,
) -> Record {
    let time = match landing.partition {
        PartitionTime::Event => event.event_time,
        PartitionTime::Publish => delivery.publish_time,
    };
    let name = event.event_type.name;
    let object_name = path::event_object(&landing.prefix, name, &time, &delivery.message_id);
    let object_uri = landing.uri(&object_name);
    let mut row = event.cells;
    row.extend(delivery_cells(delivery, received_at));
    row.push((
        "delivery_attempt",
        delivery.delivery_attempt.map_or(Cell::Null, Cell::Int),
    ));
    row.push((
        "landing_uri",
        object_uri.clone().map_or(Cell::Null, Cell::Text),
    ));
    // The payload parsed as JSON, so it is valid UTF-8.
    row.push((
        "raw",
        Cell::Json(String::from_utf8_lossy(&delivery.data).into_owned()),
    ));
    Record {
        message_id: delivery.message_id.clone(),
        outcome: Outcome::Event { event_type: name },
        table: event.event_type.table,
        object_metadata: object_metadata(delivery, Some(name)),
        object_name,
        object_uri,
        object_body: delivery.data.clone(),
        row,
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

/// A dead-letter record: used for poison payloads and for rows a warehouse rejects.
pub fn dead_letter(
    delivery: &Delivery,
    received_at: DateTime<Utc>,
    landing: &Landing,
    reason: String,
    event_type: Option<&'static str>,
) -> Arc<Record> {
    let object_name = path::dead_letter_object(
        &landing.prefix,
        &delivery.publish_time,
        &delivery.message_id,
    );
    let object_uri = landing.uri(&object_name);
    let (data, encoding) = data_text(&delivery.data);
    let body = json!({
        "message_id": delivery.message_id,
        "publish_time": format_timestamp(&delivery.publish_time),
        "received_at": format_timestamp(&received_at),
        "subscription": delivery.subscription,
        "attributes": delivery.attributes,
        "event_type": event_type,
        "reason": reason,
        "data": data,
        "data_encoding": encoding,
    });
    let mut row = delivery_cells(delivery, received_at);
    row.extend([
        (
            "event_type",
            event_type.map_or(Cell::Null, |t| Cell::Text(t.to_string())),
        ),
        ("reason", Cell::Text(reason.clone())),
        ("data", Cell::Text(data)),
        ("data_encoding", Cell::Text(encoding.to_string())),
        (
            "landing_uri",
            object_uri.clone().map_or(Cell::Null, Cell::Text),
        ),
    ]);
    Arc::new(Record {
        message_id: delivery.message_id.clone(),
        outcome: Outcome::DeadLetter { reason, event_type },
        table: &DEAD_LETTER,
        object_metadata: object_metadata(delivery, event_type),
        object_name,
        object_uri,
        object_body: Bytes::from(
            serde_json::to_vec_pretty(&body).expect("a JSON value serialises"),
        ),
        row,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;
    use validate::parse_timestamp;

    fn landing() -> Landing {
        Landing {
            base_uri: Some("gs://bucket".into()),
            prefix: "output".into(),
            partition: PartitionTime::Event,
        }
    }

    fn delivery(data: &str) -> Delivery {
        Delivery {
            message_id: "77".into(),
            publish_time: parse_timestamp("2026-11-25T10:00:00Z").unwrap(),
            subscription: Some("projects/p/subscriptions/s".into()),
            attributes: BTreeMap::new(),
            ordering_key: None,
            delivery_attempt: Some(2),
            data: Bytes::from(data.to_string()),
        }
    }

    const INVENTORY: &str = r#"{"event_type":"inventory","inventory_id":"i-1","product_id":"p-1","warehouse_id":"w-1","quantity_change":-3,"reason":"sale","timestamp":"2026-11-24T23:59:59Z","note":"kept"}"#;

    fn columns_match_table(record: &Record) {
        let names: Vec<_> = record.row.iter().map(|(n, _)| *n).collect();
        let expected: Vec<_> = record.table.columns().map(|f| f.name).collect();
        assert_eq!(names, expected);
    }

    #[test]
    fn a_valid_event_lands_at_its_event_time_with_every_column_in_table_order() {
        let now = Utc::now();
        let record = classify(&delivery(INVENTORY), now, &landing());
        assert_eq!(
            record.outcome,
            Outcome::Event {
                event_type: "inventory"
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
        columns_match_table(&record);
        assert!(
            record
                .row
                .contains(&("raw", Cell::Json(INVENTORY.to_string())))
        );
        assert!(record.row.contains(&("delivery_attempt", Cell::Int(2))));
    }

    #[test]
    fn publish_partitioning_uses_the_publish_time() {
        let mut landing = landing();
        landing.partition = PartitionTime::Publish;
        let record = classify(&delivery(INVENTORY), Utc::now(), &landing);
        assert_eq!(
            record.object_name,
            "output/inventory/2026/11/25/10/00/inventory_20261125100000_77.json"
        );
    }

    #[test]
    fn poison_payloads_become_dead_letters_with_a_reason() {
        let cases = [
            ("not json", "payload is not valid JSON"),
            ("[1]", "payload is not a JSON object"),
            (r#"{"a":1}"#, "event_type: is required"),
            (
                r#"{"event_type":"refund"}"#,
                "event_type: unknown value \"refund\"",
            ),
            (
                r#"{"event_type":"inventory"}"#,
                "inventory.inventory_id: is required",
            ),
        ];
        for (data, reason) in cases {
            let record = classify(&delivery(data), Utc::now(), &landing());
            match &record.outcome {
                Outcome::DeadLetter { reason: got, .. } => {
                    assert!(got.starts_with(reason), "{got}")
                }
                other => panic!("{data}: {other:?}"),
            }
            assert_eq!(
                record.object_name,
                "output/_dead_letter/2026/11/25/10/00/77.json"
            );
            columns_match_table(&record);
        }
    }

    #[test]
    fn binary_data_is_kept_as_base64_in_the_dead_letter() {
        let mut d = delivery("");
        d.data = Bytes::from_static(&[0xff, 0x00, 0x01]);
        let record = classify(&d, Utc::now(), &landing());
        assert!(record.row.contains(&("data", Cell::Text("/wAB".into()))));
        assert!(
            record
                .row
                .contains(&("data_encoding", Cell::Text("base64".into())))
        );
    }
}
