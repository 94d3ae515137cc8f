//! Checks a payload against its table's fields and turns it into typed cells.
//!
//! Hand-written rather than serde-derived so a violation names the exact field path
//! (`items[2].quantity`) and the rule it broke: that reason is what lands in the dead letter.

use chrono::{DateTime, SecondsFormat, Utc};
use serde_json::{Map, Number, Value};

use crate::schema::{Field, Kind, Mode};

/// One column value, typed so each warehouse can encode it its own way.
#[derive(Debug, Clone, PartialEq)]
pub enum Cell {
    Null,
    Text(String),
    Int(i64),
    Numeric(Number),
    Timestamp(DateTime<Utc>),
    /// A JSON document stored as text (BigQuery JSON column, SQLite TEXT).
    Json(String),
    /// A validated record or array: nested in BigQuery, JSON text in SQLite.
    Nested(Value),
}

/// A payload that breaks its schema: the field path and the rule.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{path}: {rule}")]
pub struct Violation {
    pub path: String,
    pub rule: String,
}

impl Violation {
    fn new(path: &str, rule: impl Into<String>) -> Self {
        Self {
            path: path.to_string(),
            rule: rule.into(),
        }
    }
}

/// Timestamps are stored normalised to UTC with the precision they were sent with.
pub fn format_timestamp(t: &DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::AutoSi, true)
}

pub fn parse_timestamp(text: &str) -> Option<DateTime<Utc>> {
    DateTime::parse_from_rfc3339(text)
        .ok()
        .map(|t| t.with_timezone(&Utc))
}

/// Validates the top-level `fields` of `object`, returning one cell per field in order.
pub fn validate_columns(
    fields: &'static [Field],
    object: &Map<String, Value>,
) -> Result<Vec<(&'static str, Cell)>, Violation> {
    fields
        .iter()
        .map(|field| {
            Ok((
                field.name,
                column(field, object.get(field.name), field.name)?,
            ))
        })
        .collect()
}

fn column(field: &Field, value: Option<&Value>, path: &str) -> Result<Cell, Violation> {
    let value = match value {
        None | Some(Value::Null) => return absent(field, path),
        Some(value) => value,
    };
    if field.mode == Mode::Repeated {
        return Ok(Cell::Nested(array(field, value, path)?));
    }
    match field.kind {
        Kind::Record(fields) => Ok(Cell::Nested(record(fields, value, path)?)),
        kind => scalar(kind, value, path),
    }
}

fn absent(field: &Field, path: &str) -> Result<Cell, Violation> {
    match field.mode {
        Mode::Required => Err(Violation::new(path, "is required")),
        Mode::Repeated => Ok(Cell::Nested(Value::Array(Vec::new()))),
        Mode::Nullable => Ok(Cell::Null),
    }
}

fn array(field: &Field, value: &Value, path: &str) -> Result<Value, Violation> {
    let items = value
        .as_array()
        .ok_or_else(|| Violation::new(path, "must be an array"))?;
    items
        .iter()
        .enumerate()
        .map(|(i, item)| {
            let path = format!("{path}[{i}]");
            match field.kind {
                Kind::Record(fields) => record(fields, item, &path),
                kind => scalar(kind, item, &path).map(|cell| cell.to_json()),
            }
        })
        .collect::<Result<_, _>>()
        .map(Value::Array)
}

/// Keeps only the schema's fields, so the warehouse copy matches its declared shape; the
/// unknown ones survive in the `raw` column and the landing file.
fn record(fields: &'static [Field], value: &Value, path: &str) -> Result<Value, Violation> {
    let object = value
        .as_object()
        .ok_or_else(|| Violation::new(path, "must be an object"))?;
    let mut out = Map::new();
    for field in fields {
        let cell = column(
            field,
            object.get(field.name),
            &format!("{path}.{}", field.name),
        )?;
        out.insert(field.name.to_string(), cell.to_json());
    }
    Ok(Value::Object(out))
}

impl Cell {
    /// The value as JSON, as it sits inside a nested record.
    pub fn to_json(&self) -> Value {
        match self {
            Cell::Null => Value::Null,
            Cell::Text(s) | Cell::Json(s) => Value::String(s.clone()),
            Cell::Int(i) => Value::from(*i),
            Cell::Numeric(n) => Value::Number(n.clone()),
            Cell::Timestamp(t) => Value::String(format_timestamp(t)),
            Cell::Nested(v) => v.clone(),
        }
    }
}

fn scalar(kind: Kind, value: &Value, path: &str) -> Result<Cell, Violation> {
    match kind {
        Kind::Id => match value.as_str() {
            Some(s) if !s.trim().is_empty() => Ok(Cell::Text(s.to_string())),
            _ => Err(Violation::new(path, "must be a non-empty string")),
        },
        Kind::Text => value
            .as_str()
            .map(|s| Cell::Text(s.to_string()))
            .ok_or_else(|| Violation::new(path, "must be a string")),
        Kind::Timestamp => value
            .as_str()
            .and_then(parse_timestamp)
            .map(Cell::Timestamp)
            .ok_or_else(|| {
                Violation::new(
                    path,
                    "must be an RFC 3339 timestamp such as 2026-11-25T07:54:20Z",
                )
            }),
        Kind::Int { min, max } => match value.as_i64() {
            Some(i) if (min..=max).contains(&i) => Ok(Cell::Int(i)),
            _ if max == i64::MAX => Err(Violation::new(
                path,
                format!("must be an integer greater than or equal to {min}"),
            )),
            _ => Err(Violation::new(
                path,
                format!("must be an integer from {min} to {max}"),
            )),
        },
        Kind::Numeric => match value {
            Value::Number(n) => Ok(Cell::Numeric(n.clone())),
            _ => Err(Violation::new(path, "must be a number")),
        },
        Kind::Enum(allowed) => match value.as_str() {
            Some(s) if allowed.contains(&s) => Ok(Cell::Text(s.to_string())),
            _ => Err(Violation::new(
                path,
                format!("must be one of {}", allowed.join(", ")),
            )),
        },
        Kind::Json => Ok(Cell::Json(value.to_string())),
        Kind::Record(_) => unreachable!("records are handled by `column`"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::schema::{INVENTORY, ORDER};
    use serde_json::json;

    fn order() -> Value {
        json!({
            "event_type": "order", "order_id": "o-1", "customer_id": "c-1",
            "order_date": "2026-11-25T09:15:30+02:00", "status": "shipped",
            "items": [{"product_id": "p-1", "product_name": "Mug", "quantity": 2, "price": 9.5}],
            "shipping_address": {"street": "1 Main St", "city": "Oslo", "country": "NO"},
            "total_amount": 19.0
        })
    }

    fn check(
        table_fields: &'static [Field],
        value: Value,
    ) -> Result<Vec<(&'static str, Cell)>, String> {
        validate_columns(table_fields, value.as_object().unwrap()).map_err(|v| v.to_string())
    }

    #[test]
    fn a_valid_order_becomes_typed_cells_in_utc() {
        let cells = check(ORDER.payload, order()).unwrap();
        let get = |name| cells.iter().find(|(n, _)| *n == name).unwrap().1.clone();
        assert_eq!(
            get("order_date"),
            Cell::Timestamp(parse_timestamp("2026-11-25T07:15:30Z").unwrap())
        );
        assert_eq!(
            get("items"),
            Cell::Nested(
                json!([{"product_id": "p-1", "product_name": "Mug", "quantity": 2, "price": 9.5}])
            )
        );
        assert_eq!(
            get("total_amount"),
            Cell::Numeric(Number::from_f64(19.0).unwrap())
        );
    }

    #[test]
    fn violations_name_the_nested_field_and_the_rule() {
        let mut bad = order();
        bad["items"][0]["quantity"] = json!(-1);
        assert_eq!(
            check(ORDER.payload, bad).unwrap_err(),
            "items[0].quantity: must be an integer greater than or equal to 0"
        );
        let mut bad = order();
        bad["items"][0]["quantity"] = json!(1.5);
        assert!(
            check(ORDER.payload, bad)
                .unwrap_err()
                .starts_with("items[0].quantity")
        );
        let mut bad = order();
        bad["shipping_address"]
            .as_object_mut()
            .unwrap()
            .remove("city");
        assert_eq!(
            check(ORDER.payload, bad).unwrap_err(),
            "shipping_address.city: is required"
        );
        let mut bad = order();
        bad["status"] = json!("lost");
        assert_eq!(
            check(ORDER.payload, bad).unwrap_err(),
            "status: must be one of pending, processing, shipped, delivered"
        );
        let mut bad = order();
        bad["order_id"] = json!("");
        assert_eq!(
            check(ORDER.payload, bad).unwrap_err(),
            "order_id: must be a non-empty string"
        );
        let mut bad = order();
        bad["order_date"] = json!("yesterday");
        assert!(
            check(ORDER.payload, bad)
                .unwrap_err()
                .starts_with("order_date: must be an RFC 3339")
        );
    }

    #[test]
    fn quantity_change_is_bounded_both_ways() {
        let inv = |q: i64| {
            json!({"event_type": "inventory", "inventory_id": "i", "product_id": "p",
                   "warehouse_id": "w", "quantity_change": q, "reason": "sale",
                   "timestamp": "2026-11-25T07:00:00Z"})
        };
        assert!(check(INVENTORY.payload, inv(-100)).is_ok());
        assert!(check(INVENTORY.payload, inv(100)).is_ok());
        assert_eq!(
            check(INVENTORY.payload, inv(101)).unwrap_err(),
            "quantity_change: must be an integer from -100 to 100"
        );
    }

    #[test]
    fn unknown_nested_fields_are_dropped_from_the_typed_copy() {
        let mut extra = order();
        extra["shipping_address"]["floor"] = json!(3);
        let cells = check(ORDER.payload, extra).unwrap();
        let address = &cells
            .iter()
            .find(|(n, _)| *n == "shipping_address")
            .unwrap()
            .1;
        assert_eq!(
            address,
            &Cell::Nested(json!({"street": "1 Main St", "city": "Oslo", "country": "NO"}))
        );
    }
}
