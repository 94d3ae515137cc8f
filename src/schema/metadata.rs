//! landfall's own columns: what every event row records about its delivery, and the
//! dead-letter table. Each column carries the function that fills it, so a row is built by
//! walking the table's columns and nothing restates their order.

use std::collections::BTreeMap;
use std::sync::{Arc, OnceLock};

use chrono::{DateTime, Utc};

use super::{Cell, Column, ColumnType, Mode, Table};

/// Everything a metadata column can be filled from.
pub struct RowSource<'a> {
    pub message_id: &'a str,
    pub publish_time: DateTime<Utc>,
    pub received_at: DateTime<Utc>,
    pub subscription: Option<&'a str>,
    pub attributes: &'a BTreeMap<String, String>,
    pub delivery_attempt: Option<i64>,
    pub landing_uri: Option<&'a str>,
    /// The payload text (event rows).
    pub raw: Option<&'a str>,
    /// Why the message is a dead letter, and what it said it was (dead-letter rows).
    pub dead_letter: Option<DeadLetterFacts<'a>>,
}

pub struct DeadLetterFacts<'a> {
    pub event_type: Option<&'a str>,
    pub reason: &'a str,
    pub data: &'a str,
    pub data_encoding: &'a str,
}

#[derive(Debug)]
pub struct MetaColumn {
    pub column: Column,
    pub value: fn(&RowSource) -> Cell,
}

impl PartialEq for MetaColumn {
    fn eq(&self, other: &Self) -> bool {
        self.column == other.column
    }
}

const fn meta(
    name: &'static str,
    ty: ColumnType,
    mode: Mode,
    description: &'static str,
    value: fn(&RowSource) -> Cell,
) -> MetaColumn {
    MetaColumn {
        column: Column::fixed(name, ty, mode, description),
        value,
    }
}

fn text(value: Option<&str>) -> Cell {
    value.map_or(Cell::Null, |v| Cell::String(v.to_string()))
}

fn facts<'a>(source: &'a RowSource) -> Option<&'a DeadLetterFacts<'a>> {
    source.dead_letter.as_ref()
}

const MESSAGE_ID: MetaColumn = meta(
    "message_id",
    ColumnType::String,
    Mode::Required,
    "Pub/Sub message id; unique, the idempotency key.",
    |s| Cell::String(s.message_id.to_string()),
);
const PUBLISH_TIME: MetaColumn = meta(
    "publish_time",
    ColumnType::Timestamp,
    Mode::Required,
    "When Pub/Sub accepted the message.",
    |s| Cell::Timestamp(s.publish_time),
);
const RECEIVED_AT: MetaColumn = meta(
    "received_at",
    ColumnType::Timestamp,
    Mode::Required,
    "When landfall first landed it.",
    |s| Cell::Timestamp(s.received_at),
);
const SUBSCRIPTION: MetaColumn = meta(
    "subscription",
    ColumnType::String,
    Mode::Nullable,
    "Push subscription that delivered it.",
    |s| text(s.subscription),
);
const ATTRIBUTES: MetaColumn = meta(
    "attributes",
    ColumnType::Json,
    Mode::Required,
    "Pub/Sub message attributes.",
    |s| Cell::Json(serde_json::to_string(s.attributes).expect("string maps serialise")),
);

/// The columns after the payload's in every event table.
pub static EVENT_METADATA: [MetaColumn; 8] = [
    MESSAGE_ID,
    PUBLISH_TIME,
    RECEIVED_AT,
    SUBSCRIPTION,
    ATTRIBUTES,
    meta(
        "delivery_attempt",
        ColumnType::Int64,
        Mode::Nullable,
        "Pub/Sub delivery attempt (only with a dead-letter policy).",
        |s| s.delivery_attempt.map_or(Cell::Null, Cell::Int),
    ),
    meta(
        "landing_uri",
        ColumnType::String,
        Mode::Nullable,
        "Where the landing-layer copy of the payload is (null without a landing layer).",
        |s| text(s.landing_uri),
    ),
    meta(
        "raw",
        ColumnType::Json,
        Mode::Required,
        "The payload as received, unknown fields included.",
        |s| s.raw.map_or(Cell::Null, |r| Cell::Json(r.to_string())),
    ),
];

/// The dead-letter table's columns: a poison message with the reason it was refused.
pub static DEAD_LETTER_COLUMNS: [MetaColumn; 10] = [
    MESSAGE_ID,
    PUBLISH_TIME,
    RECEIVED_AT,
    SUBSCRIPTION,
    ATTRIBUTES,
    meta(
        "event_type",
        ColumnType::String,
        Mode::Nullable,
        "The payload's event type, when it named a known one.",
        |s| text(facts(s).and_then(|f| f.event_type)),
    ),
    meta(
        "reason",
        ColumnType::String,
        Mode::Required,
        "Why it was dead-lettered: the field and the rule it broke.",
        |s| text(facts(s).map(|f| f.reason)),
    ),
    meta(
        "data",
        ColumnType::String,
        Mode::Required,
        "The message data: as text when UTF-8, otherwise base64.",
        |s| text(facts(s).map(|f| f.data)),
    ),
    meta(
        "data_encoding",
        ColumnType::String,
        Mode::Required,
        "`utf-8` or `base64`.",
        |s| text(facts(s).map(|f| f.data_encoding)),
    ),
    meta(
        "landing_uri",
        ColumnType::String,
        Mode::Nullable,
        "Where the dead-letter file is in the landing layer (null without one).",
        |s| text(s.landing_uri),
    ),
];

pub const DEAD_LETTER_TABLE: &str = "dead_letter";

/// The dead-letter table: the same in every catalog.
pub fn dead_letter_table() -> Arc<Table> {
    static TABLE: OnceLock<Arc<Table>> = OnceLock::new();
    TABLE
        .get_or_init(|| {
            Arc::new(Table {
                name: DEAD_LETTER_TABLE.into(),
                description: "Poison messages: stored with the reason, then acknowledged.".into(),
                payload: Vec::new(),
                metadata: &DEAD_LETTER_COLUMNS,
                partition_by: "received_at".into(),
                cluster_by: Vec::new(),
                curated: None,
            })
        })
        .clone()
}

/// The metadata part of a row, in column order.
pub fn cells(columns: &[MetaColumn], source: &RowSource) -> impl Iterator<Item = Cell> {
    columns.iter().map(move |m| (m.value)(source))
}

/// Names a catalog may not use for its own columns.
pub fn reserved_column(name: &str) -> bool {
    EVENT_METADATA
        .iter()
        .any(|m| m.column.name.eq_ignore_ascii_case(name))
}
