//! The one definition of every table landfall writes.
//!
//! Validation (`event::validate`), row encoding, the SQLite DDL and the BigQuery DDL / API
//! schema are all derived from the constants below, so the embedded warehouse and the raw layer
//! cannot drift apart.

pub mod bigquery;
pub mod sqlite;

/// What a column holds; validation rules live on the kind so reasons can name them.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Kind {
    /// Non-empty string (producers send ids that are not UUIDs, so nothing stricter).
    Id,
    /// Any string, empty included.
    Text,
    /// RFC 3339 timestamp, stored normalised to UTC.
    Timestamp,
    /// Whole number within `min..=max`.
    Int { min: i64, max: i64 },
    /// Money: BigQuery NUMERIC, so amounts are not rounded through floating point there.
    Numeric,
    /// One of a fixed set of strings.
    Enum(&'static [&'static str]),
    /// Nested object, validated field by field.
    Record(&'static [Field]),
    /// Free-form JSON document (attributes, the raw payload).
    Json,
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Mode {
    Required,
    Nullable,
    Repeated,
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Field {
    pub name: &'static str,
    pub kind: Kind,
    pub mode: Mode,
    pub description: &'static str,
}

const fn required(name: &'static str, kind: Kind, description: &'static str) -> Field {
    Field {
        name,
        kind,
        mode: Mode::Required,
        description,
    }
}

const fn nullable(name: &'static str, kind: Kind, description: &'static str) -> Field {
    Field {
        name,
        kind,
        mode: Mode::Nullable,
        description,
    }
}

const fn repeated(name: &'static str, kind: Kind, description: &'static str) -> Field {
    Field {
        name,
        kind,
        mode: Mode::Repeated,
        description,
    }
}

/// A warehouse table: payload columns first, then the delivery columns every row carries.
#[derive(Debug, PartialEq)]
pub struct Table {
    pub name: &'static str,
    pub description: &'static str,
    pub payload: &'static [Field],
    pub delivery: &'static [Field],
    /// Column whose DATE() partitions the BigQuery table.
    pub partition_by: &'static str,
    pub cluster_by: &'static [&'static str],
}

impl Table {
    pub fn columns(&self) -> impl Iterator<Item = &'static Field> + Clone {
        self.payload.iter().chain(self.delivery.iter())
    }
}

/// An event type routed by the payload's `event_type`.
#[derive(Debug, PartialEq)]
pub struct EventType {
    pub name: &'static str,
    pub table: &'static Table,
    /// The event's own time: it partitions the landing path and the table.
    pub time_field: &'static str,
}

const MAX: i64 = i64::MAX;

pub const ORDER_STATUSES: &[&str] = &["pending", "processing", "shipped", "delivered"];
pub const INVENTORY_REASONS: &[&str] = &["restock", "sale", "return", "damage"];
pub const ACTIVITY_TYPES: &[&str] = &[
    "login",
    "logout",
    "view_product",
    "add_to_cart",
    "remove_from_cart",
];
pub const PLATFORMS: &[&str] = &["web", "mobile", "tablet"];

const ORDER_ITEM: &[Field] = &[
    required("product_id", Kind::Id, "Product identifier."),
    required("product_name", Kind::Text, "Product name at order time."),
    required("quantity", Kind::Int { min: 0, max: MAX }, "Units ordered."),
    required("price", Kind::Numeric, "Unit price."),
];

const ADDRESS: &[Field] = &[
    required("street", Kind::Text, "Street line."),
    required("city", Kind::Text, "City."),
    required("country", Kind::Text, "Country."),
];

const SESSION: &[Field] = &[
    required("session_id", Kind::Id, "Client session identifier."),
    required("platform", Kind::Enum(PLATFORMS), "web, mobile or tablet."),
];

const MESSAGE_ID: Field = required(
    "message_id",
    Kind::Id,
    "Pub/Sub message id; unique, the idempotency key.",
);
const PUBLISH_TIME: Field = required(
    "publish_time",
    Kind::Timestamp,
    "When Pub/Sub accepted the message.",
);
const RECEIVED_AT: Field = required(
    "received_at",
    Kind::Timestamp,
    "When landfall first landed it.",
);
const SUBSCRIPTION: Field = nullable(
    "subscription",
    Kind::Text,
    "Push subscription that delivered it.",
);
const ATTRIBUTES: Field = required("attributes", Kind::Json, "Pub/Sub message attributes.");

/// Columns every event row carries, describing the Pub/Sub delivery that brought it.
const DELIVERY: &[Field] = &[
    MESSAGE_ID,
    PUBLISH_TIME,
    RECEIVED_AT,
    SUBSCRIPTION,
    ATTRIBUTES,
    nullable(
        "delivery_attempt",
        Kind::Int { min: 0, max: MAX },
        "Pub/Sub delivery attempt (only with a dead-letter policy).",
    ),
    nullable(
        "landing_uri",
        Kind::Text,
        "Where the landing-layer copy of the payload is (null without a landing layer).",
    ),
    required(
        "raw",
        Kind::Json,
        "The payload as received, unknown fields included.",
    ),
];

pub static ORDER: Table = Table {
    name: "order",
    description: "Order events, one row per Pub/Sub message.",
    payload: &[
        required("event_type", Kind::Id, "Always `order`."),
        required("order_id", Kind::Id, "Order identifier."),
        required("customer_id", Kind::Id, "Customer identifier."),
        required("order_date", Kind::Timestamp, "When the order was placed."),
        required(
            "status",
            Kind::Enum(ORDER_STATUSES),
            "pending, processing, shipped or delivered.",
        ),
        repeated("items", Kind::Record(ORDER_ITEM), "Ordered line items."),
        required(
            "shipping_address",
            Kind::Record(ADDRESS),
            "Delivery address.",
        ),
        required("total_amount", Kind::Numeric, "Order total."),
    ],
    delivery: DELIVERY,
    partition_by: "order_date",
    cluster_by: &["status", "customer_id"],
};

pub static INVENTORY: Table = Table {
    name: "inventory",
    description: "Stock movements, one row per Pub/Sub message.",
    payload: &[
        required("event_type", Kind::Id, "Always `inventory`."),
        required("inventory_id", Kind::Id, "Movement identifier."),
        required("product_id", Kind::Id, "Product identifier."),
        required("warehouse_id", Kind::Id, "Warehouse identifier."),
        required(
            "quantity_change",
            Kind::Int {
                min: -100,
                max: 100,
            },
            "Units added (positive) or removed (negative), -100..100.",
        ),
        required(
            "reason",
            Kind::Enum(INVENTORY_REASONS),
            "restock, sale, return or damage.",
        ),
        required("timestamp", Kind::Timestamp, "When the stock moved."),
    ],
    delivery: DELIVERY,
    partition_by: "timestamp",
    cluster_by: &["product_id", "warehouse_id"],
};

pub static USER_ACTIVITY: Table = Table {
    name: "user_activity",
    description: "User activity, one row per Pub/Sub message.",
    payload: &[
        required("event_type", Kind::Id, "Always `user_activity`."),
        required("user_id", Kind::Id, "User identifier."),
        required(
            "activity_type",
            Kind::Enum(ACTIVITY_TYPES),
            "login, logout, view_product, add_to_cart or remove_from_cart.",
        ),
        required("ip_address", Kind::Text, "Client IP address as sent."),
        required("user_agent", Kind::Text, "Client user agent."),
        required("timestamp", Kind::Timestamp, "When the activity happened."),
        required("metadata", Kind::Record(SESSION), "Session context."),
    ],
    delivery: DELIVERY,
    partition_by: "timestamp",
    cluster_by: &["activity_type", "user_id"],
};

/// Messages that could not become a row of their event table, with the reason why.
pub static DEAD_LETTER: Table = Table {
    name: "dead_letter",
    description: "Poison messages: stored with the reason, then acknowledged.",
    payload: &[],
    delivery: &[
        MESSAGE_ID,
        PUBLISH_TIME,
        RECEIVED_AT,
        SUBSCRIPTION,
        ATTRIBUTES,
        nullable(
            "event_type",
            Kind::Text,
            "The payload's event type, when it named a known one.",
        ),
        required(
            "reason",
            Kind::Text,
            "Why it was dead-lettered: the field and the rule it broke.",
        ),
        required(
            "data",
            Kind::Text,
            "The message data: as text when UTF-8, otherwise base64.",
        ),
        required("data_encoding", Kind::Text, "`utf-8` or `base64`."),
        nullable(
            "landing_uri",
            Kind::Text,
            "Where the dead-letter file is in the landing layer (null without one).",
        ),
    ],
    partition_by: "received_at",
    cluster_by: &[],
};

pub static EVENT_TYPES: [EventType; 3] = [
    EventType {
        name: "order",
        table: &ORDER,
        time_field: "order_date",
    },
    EventType {
        name: "inventory",
        table: &INVENTORY,
        time_field: "timestamp",
    },
    EventType {
        name: "user_activity",
        table: &USER_ACTIVITY,
        time_field: "timestamp",
    },
];

pub static TABLES: [&Table; 4] = [&ORDER, &INVENTORY, &USER_ACTIVITY, &DEAD_LETTER];

pub fn event_type(name: &str) -> Option<&'static EventType> {
    EVENT_TYPES.iter().find(|t| t.name == name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_table_has_a_unique_message_id_and_its_partition_and_cluster_columns() {
        for table in TABLES {
            let names: Vec<_> = table.columns().map(|f| f.name).collect();
            assert!(names.contains(&"message_id"), "{}", table.name);
            assert!(names.contains(&table.partition_by), "{}", table.name);
            for c in table.cluster_by {
                assert!(names.contains(c), "{}: {c}", table.name);
            }
            let mut sorted = names.clone();
            sorted.sort();
            sorted.dedup();
            assert_eq!(
                sorted.len(),
                names.len(),
                "duplicate column in {}",
                table.name
            );
        }
    }

    #[test]
    fn event_types_partition_on_their_own_time_field() {
        for t in &EVENT_TYPES {
            assert_eq!(t.table.partition_by, t.time_field);
            assert_eq!(event_type(t.name), Some(t));
        }
        assert_eq!(event_type("refund"), None);
    }
}
