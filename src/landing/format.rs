//! What the landing objects hold, and reading them back.
//!
//! - An event object of the `event` layout is the message data byte for byte; what the row
//!   needs besides (publish time, receipt time, attributes, …) is the object's metadata: GCS
//!   custom metadata, or one extended attribute on a local file.
//! - A dead-letter object of the `event` layout is a JSON document with the same facts, the
//!   reason and the data (text, or base64 as `data_encoding` says).
//! - A `batch` object is newline-delimited JSON, one [`Line`] per message, `\n` after every
//!   line: `data` is the payload exactly as received, as a JSON string, or `data_base64`
//!   when it is not UTF-8. Dead-letter lines add `reason`.
//!
//! Every accepted byte stays recoverable: [`read_event_object`], [`read_dead_letter`] and
//! [`read_lines`] give back the [`Delivery`] that was landed, which repair classifies again.

use std::collections::BTreeMap;

use anyhow::{Context, bail};
use base64::Engine;
use bytes::Bytes;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::json;

use crate::envelope::Delivery;
use crate::event::{Record, data_text};
use crate::time::{format_timestamp, parse_timestamp};

const B64: base64::engine::GeneralPurpose = base64::engine::general_purpose::STANDARD;
/// GCS allows 8 KiB of custom metadata per object; attributes beyond this are not kept there.
const MAX_ATTRIBUTES_METADATA: usize = 6 * 1024;

/// A message as the landing layer holds it.
#[derive(Debug, Clone, PartialEq)]
pub struct LandedMessage {
    pub delivery: Delivery,
    pub received_at: DateTime<Utc>,
    pub event_type: Option<String>,
    /// Set for dead letters.
    pub reason: Option<String>,
}

/// One line of a batch object.
#[derive(Debug, Serialize, Deserialize)]
pub struct Line {
    pub message_id: String,
    pub publish_time: String,
    pub received_at: String,
    pub subscription: Option<String>,
    pub attributes: BTreeMap<String, String>,
    pub event_type: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub data: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub data_base64: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ordering_key: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub delivery_attempt: Option<i64>,
}

/// The record's line, with its `\n`.
pub fn line(record: &Record) -> Vec<u8> {
    let d = &record.delivery;
    let (data, data_base64) = match std::str::from_utf8(&d.data) {
        Ok(text) => (Some(text.to_string()), None),
        Err(_) => (None, Some(B64.encode(&d.data))),
    };
    let line = Line {
        message_id: d.message_id.clone(),
        publish_time: format_timestamp(&d.publish_time),
        received_at: format_timestamp(&record.received_at),
        subscription: d.subscription.clone(),
        attributes: d.attributes.clone(),
        event_type: record.event_type().map(|t| t.to_string()),
        data,
        data_base64,
        reason: record.reason().map(str::to_string),
        ordering_key: d.ordering_key.clone(),
        delivery_attempt: d.delivery_attempt,
    };
    let mut bytes = serde_json::to_vec(&line).expect("a line serialises");
    bytes.push(b'\n');
    bytes
}

/// Every line of a batch object. A line that does not read is an error naming it: a torn
/// object cannot exist (objects are created whole), so it is a foreign one.
pub fn read_lines(body: &[u8]) -> anyhow::Result<Vec<LandedMessage>> {
    body.split(|b| *b == b'\n')
        .enumerate()
        .filter(|(_, l)| !l.is_empty())
        .map(|(i, l)| {
            let line: Line = serde_json::from_slice(l)
                .with_context(|| format!("line {} is not a landfall line", i + 1))?;
            landed_line(line).with_context(|| format!("line {}", i + 1))
        })
        .collect()
}

fn landed_line(line: Line) -> anyhow::Result<LandedMessage> {
    let data = match (line.data, line.data_base64) {
        (Some(text), None) => Bytes::from(text.into_bytes()),
        (None, Some(b64)) => Bytes::from(B64.decode(b64).context("data_base64 is not base64")?),
        _ => bail!("a line holds exactly one of data and data_base64"),
    };
    Ok(LandedMessage {
        delivery: Delivery {
            message_id: line.message_id,
            publish_time: timestamp(&line.publish_time, "publish_time")?,
            subscription: line.subscription,
            attributes: line.attributes,
            ordering_key: line.ordering_key,
            delivery_attempt: line.delivery_attempt,
            data,
        },
        received_at: timestamp(&line.received_at, "received_at")?,
        event_type: line.event_type,
        reason: line.reason,
    })
}

fn timestamp(text: &str, field: &str) -> anyhow::Result<DateTime<Utc>> {
    parse_timestamp(text).with_context(|| format!("{field} {text:?} is not an RFC 3339 timestamp"))
}

/// The dead-letter document of the `event` layout.
pub fn dead_letter_document(record: &Record) -> Bytes {
    let d = &record.delivery;
    let (data, encoding) = data_text(&d.data);
    let mut body = json!({
        "message_id": d.message_id,
        "publish_time": format_timestamp(&d.publish_time),
        "received_at": format_timestamp(&record.received_at),
        "subscription": d.subscription,
        "attributes": d.attributes,
        "event_type": record.event_type().map(|t| t.as_ref()),
        "reason": record.reason(),
        "data": data,
        "data_encoding": encoding,
    });
    if let Some(key) = &d.ordering_key {
        body["ordering_key"] = key.clone().into();
    }
    if let Some(attempt) = d.delivery_attempt {
        body["delivery_attempt"] = attempt.into();
    }
    Bytes::from(serde_json::to_vec_pretty(&body).expect("a JSON value serialises"))
}

#[derive(Deserialize)]
struct DeadLetterDocument {
    message_id: String,
    publish_time: String,
    received_at: String,
    subscription: Option<String>,
    #[serde(default)]
    attributes: BTreeMap<String, String>,
    event_type: Option<String>,
    reason: String,
    data: String,
    data_encoding: String,
    ordering_key: Option<String>,
    delivery_attempt: Option<i64>,
}

pub fn read_dead_letter(body: &[u8]) -> anyhow::Result<LandedMessage> {
    let doc: DeadLetterDocument =
        serde_json::from_slice(body).context("not a landfall dead-letter document")?;
    let data = match doc.data_encoding.as_str() {
        "utf-8" => Bytes::from(doc.data.into_bytes()),
        "base64" => Bytes::from(B64.decode(&doc.data).context("data is not base64")?),
        other => bail!("unknown data_encoding {other:?}"),
    };
    Ok(LandedMessage {
        delivery: Delivery {
            message_id: doc.message_id,
            publish_time: timestamp(&doc.publish_time, "publish_time")?,
            subscription: doc.subscription,
            attributes: doc.attributes,
            ordering_key: doc.ordering_key,
            delivery_attempt: doc.delivery_attempt,
            data,
        },
        received_at: timestamp(&doc.received_at, "received_at")?,
        event_type: doc.event_type,
        reason: Some(doc.reason),
    })
}

/// What an event object carries beside its bytes (GCS custom metadata, or a local file's
/// extended attribute): everything its row needs that is not in the payload.
pub fn event_metadata(record: &Record) -> Vec<(&'static str, String)> {
    let d = &record.delivery;
    let mut metadata = vec![
        ("message_id", d.message_id.clone()),
        ("publish_time", format_timestamp(&d.publish_time)),
        ("received_at", format_timestamp(&record.received_at)),
    ];
    if let Some(subscription) = &d.subscription {
        metadata.push(("subscription", subscription.clone()));
    }
    if let Some(event_type) = record.event_type() {
        metadata.push(("event_type", event_type.to_string()));
    }
    let attributes = serde_json::to_string(&d.attributes).expect("string maps serialise");
    if attributes.len() <= MAX_ATTRIBUTES_METADATA {
        metadata.push((ATTRIBUTES, attributes));
    } else {
        metadata.push((ATTRIBUTES_OMITTED, "true".into()));
    }
    if let Some(key) = &d.ordering_key {
        metadata.push(("ordering_key", key.clone()));
    }
    if let Some(attempt) = d.delivery_attempt {
        metadata.push(("delivery_attempt", attempt.to_string()));
    }
    metadata
}

/// The same metadata without the attributes, for a store that cannot hold them all: it says
/// they were left out (the row's `attributes` column holds every one).
pub fn without_attributes(metadata: &[(&'static str, String)]) -> Vec<(&'static str, String)> {
    metadata
        .iter()
        .map(|(key, value)| match *key {
            ATTRIBUTES => (ATTRIBUTES_OMITTED, "true".to_string()),
            _ => (*key, value.clone()),
        })
        .collect()
}

const ATTRIBUTES: &str = "attributes";
const ATTRIBUTES_OMITTED: &str = "attributes_omitted";

/// An event object read back: its bytes, and what its metadata and name say. Objects
/// landed before the metadata carried every fact fall back to what is known: the object's
/// creation time for both times, no attributes.
pub fn read_event_object(
    message_id: &str,
    event_type: &str,
    body: Bytes,
    metadata: &BTreeMap<String, String>,
    created: DateTime<Utc>,
) -> LandedMessage {
    let time = |key: &str| metadata.get(key).and_then(|t| parse_timestamp(t));
    let received_at = time("received_at").unwrap_or(created);
    LandedMessage {
        delivery: Delivery {
            message_id: message_id.to_string(),
            publish_time: time("publish_time").unwrap_or(received_at),
            subscription: metadata.get("subscription").cloned(),
            attributes: metadata
                .get(ATTRIBUTES)
                .and_then(|a| serde_json::from_str(a).ok())
                .unwrap_or_default(),
            ordering_key: metadata.get("ordering_key").cloned(),
            delivery_attempt: metadata
                .get("delivery_attempt")
                .and_then(|a| a.parse().ok()),
            data: body,
        },
        received_at,
        event_type: Some(event_type.to_string()),
        reason: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::PartitionTime;
    use crate::event::testing::{classifier, delivery};

    fn record(data: &[u8]) -> std::sync::Arc<Record> {
        let mut d = delivery("42", data);
        d.attributes.insert("source".into(), "checkout".into());
        d.ordering_key = Some("customer-7".into());
        classifier(PartitionTime::Event)
            .classify(d, parse_timestamp("2026-11-25T10:00:01.5Z").unwrap())
    }

    const ORDER: &[u8] = br#"{"event_type":"inventory","inventory_id":"i","product_id":"p","warehouse_id":"w","quantity_change":1,"reason":"sale","timestamp":"2026-11-25T09:59:00Z", "spaced" : "kept \u00e9 as sent"}"#;

    #[test]
    fn a_line_keeps_the_payload_exactly_and_reads_back_to_the_same_delivery() {
        let record = record(ORDER);
        let line = line(&record);
        assert_eq!(line.last(), Some(&b'\n'));
        let value: serde_json::Value = serde_json::from_slice(&line).unwrap();
        assert_eq!(value["data"].as_str().unwrap().as_bytes(), ORDER);
        assert_eq!(value["event_type"], "inventory");
        assert_eq!(value["received_at"], "2026-11-25T10:00:01.500Z");
        assert!(value.get("data_base64").is_none() && value.get("reason").is_none());
        let landed = read_lines(&[line.clone(), line].concat()).unwrap();
        assert_eq!(landed.len(), 2);
        assert_eq!(landed[0].delivery, record.delivery);
        assert_eq!(landed[0].received_at, record.received_at);
    }

    #[test]
    fn bytes_that_are_not_utf8_travel_as_base64_with_the_reason() {
        let record = record(&[0xff, b'{', 0x00]);
        let value: serde_json::Value = serde_json::from_slice(&line(&record)).unwrap();
        assert_eq!(value["data_base64"], "/3sA");
        assert!(value.get("data").is_none());
        assert!(value["reason"].as_str().unwrap().contains("UTF-8"));
        assert_eq!(value["event_type"], serde_json::Value::Null);
        let landed = read_lines(&line(&record)).unwrap();
        assert_eq!(&landed[0].delivery.data[..], &[0xff, b'{', 0x00]);
        assert_eq!(landed[0].reason.as_deref(), record.reason());
    }

    #[test]
    fn a_foreign_line_is_an_error_naming_it() {
        let error = read_lines(b"{\"x\":1}\n").unwrap_err();
        assert!(
            format!("{error:#}").starts_with("line 1 is not a landfall line"),
            "{error:#}"
        );
    }

    #[test]
    fn a_dead_letter_document_reads_back_to_its_delivery() {
        let record = record(b"not json");
        let landed = read_dead_letter(&dead_letter_document(&record)).unwrap();
        assert_eq!(landed.delivery, record.delivery);
        assert_eq!(landed.reason.as_deref(), record.reason());
    }

    #[test]
    fn event_metadata_carries_what_the_row_needs() {
        let record = record(ORDER);
        let metadata: BTreeMap<String, String> = event_metadata(&record)
            .into_iter()
            .map(|(k, v)| (k.to_string(), v))
            .collect();
        let landed = read_event_object(
            "42",
            "inventory",
            record.delivery.data.clone(),
            &metadata,
            Utc::now(),
        );
        assert_eq!(landed.delivery, record.delivery);
        assert_eq!(landed.received_at, record.received_at);
        let bare = read_event_object(
            "42",
            "inventory",
            record.delivery.data.clone(),
            &BTreeMap::new(),
            record.received_at,
        );
        assert_eq!(
            bare.delivery.publish_time, record.received_at,
            "without metadata: the creation time"
        );
        assert!(bare.delivery.attributes.is_empty());
    }
}
