//! Row values: one [`Cell`] per column, typed so that each warehouse encodes it its own way.
//!
//! Cells are taken from a payload only after the catalog's validator has accepted it, and by
//! walking the columns derived from that same schema, so the walk has no rules of its own:
//! the one thing it can still refuse is a value that is valid JSON Schema but fits no column
//! (an integer beyond 64 bits).

use chrono::{DateTime, NaiveDate, Utc};
use serde_json::{Map, Number, Value};

use super::validate::Violation;
use super::{Column, ColumnType, Mode};
use crate::time::{format_date, format_timestamp, parse_date, parse_timestamp};

#[derive(Debug, Clone, PartialEq)]
pub enum Cell {
    Null,
    String(String),
    Int(i64),
    Float(f64),
    Numeric(Number),
    Bool(bool),
    Timestamp(DateTime<Utc>),
    Date(NaiveDate),
    /// A JSON document, as text (the `raw` payload keeps its exact bytes this way).
    Json(String),
    /// A record's cells, in its columns' order.
    Record(Vec<Cell>),
    Repeated(Vec<Cell>),
}

/// How a cell becomes JSON.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JsonStyle {
    /// For BigQuery's insertAll: NUMERIC and JSON travel as strings.
    BigQuery,
    /// For a JSON document (nested values in SQLite): numbers as numbers, JSON embedded.
    Document,
}

impl Cell {
    pub fn to_json(&self, ty: &ColumnType, style: JsonStyle) -> Value {
        match self {
            Cell::Null => Value::Null,
            Cell::String(s) => Value::String(s.clone()),
            Cell::Int(i) => Value::from(*i),
            Cell::Float(f) => Number::from_f64(*f).map_or(Value::Null, Value::Number),
            Cell::Numeric(n) => match style {
                JsonStyle::BigQuery => Value::String(n.to_string()),
                JsonStyle::Document => Value::Number(n.clone()),
            },
            Cell::Bool(b) => Value::Bool(*b),
            Cell::Timestamp(t) => Value::String(format_timestamp(t)),
            Cell::Date(d) => Value::String(format_date(d)),
            Cell::Json(text) => match style {
                JsonStyle::BigQuery => Value::String(text.clone()),
                JsonStyle::Document => {
                    serde_json::from_str(text).unwrap_or_else(|_| Value::String(text.clone()))
                }
            },
            Cell::Record(cells) => {
                let ColumnType::Record(columns) = ty else {
                    return Value::Null;
                };
                record_json(columns, cells, style)
            }
            Cell::Repeated(items) => {
                Value::Array(items.iter().map(|item| item.to_json(ty, style)).collect())
            }
        }
    }
}

/// A record as a JSON object, its members in column order.
pub fn record_json(columns: &[Column], cells: &[Cell], style: JsonStyle) -> Value {
    let members: Map<String, Value> = columns
        .iter()
        .zip(cells)
        .map(|(column, cell)| (column.name.to_string(), cell.to_json(&column.ty, style)))
        .collect();
    Value::Object(members)
}

/// The payload's cells, one per column, from an object the validator accepted.
pub fn payload_cells(
    columns: &[Column],
    object: &Map<String, Value>,
    path: &str,
) -> Result<Vec<Cell>, Violation> {
    columns
        .iter()
        .map(|column| {
            let path = format!("{path}.{}", column.name);
            column_cell(column, object.get(column.name.as_ref()), &path)
        })
        .collect()
}

fn column_cell(column: &Column, value: Option<&Value>, path: &str) -> Result<Cell, Violation> {
    let value = match value {
        None | Some(Value::Null) if column.mode == Mode::Repeated => {
            return Ok(Cell::Repeated(Vec::new()));
        }
        None | Some(Value::Null) => return Ok(Cell::Null),
        Some(value) => value,
    };
    if column.mode == Mode::Repeated {
        let items = value.as_array().ok_or_else(|| mismatch(path, "an array"))?;
        return items
            .iter()
            .enumerate()
            .map(|(i, item)| typed(&column.ty, item, &format!("{path}[{i}]")))
            .collect::<Result<_, _>>()
            .map(Cell::Repeated);
    }
    typed(&column.ty, value, path)
}

fn typed(ty: &ColumnType, value: &Value, path: &str) -> Result<Cell, Violation> {
    let cell = match ty {
        ColumnType::String => value.as_str().map(|s| Cell::String(s.to_string())),
        ColumnType::Timestamp => value
            .as_str()
            .and_then(parse_timestamp)
            .map(Cell::Timestamp),
        ColumnType::Date => value.as_str().and_then(parse_date).map(Cell::Date),
        ColumnType::Int64 => return int64(value, path),
        ColumnType::Numeric => value.as_number().map(|n| Cell::Numeric(n.clone())),
        ColumnType::Float64 => value.as_f64().map(Cell::Float),
        ColumnType::Bool => value.as_bool().map(Cell::Bool),
        ColumnType::Json => Some(Cell::Json(value.to_string())),
        ColumnType::Record(columns) => {
            let object = value
                .as_object()
                .ok_or_else(|| mismatch(path, "an object"))?;
            return payload_cells(columns, object, path).map(Cell::Record);
        }
    };
    cell.ok_or_else(|| mismatch(path, type_name(ty)))
}

/// JSON Schema's `integer` includes `1.0` and numbers of any size; INT64 does not.
fn int64(value: &Value, path: &str) -> Result<Cell, Violation> {
    if let Some(i) = value.as_i64() {
        return Ok(Cell::Int(i));
    }
    match value.as_f64() {
        Some(f) if f.fract() == 0.0 && f >= i64::MIN as f64 && f < i64::MAX as f64 => {
            Ok(Cell::Int(f as i64))
        }
        _ => Err(Violation::new(
            path,
            format!("{value} does not fit a 64-bit integer column"),
            "column_range",
        )),
    }
}

fn type_name(ty: &ColumnType) -> &'static str {
    match ty {
        ColumnType::String => "a string",
        ColumnType::Timestamp => "an RFC 3339 timestamp",
        ColumnType::Date => "an RFC 3339 date",
        ColumnType::Int64 => "an integer",
        ColumnType::Numeric | ColumnType::Float64 => "a number",
        ColumnType::Bool => "a boolean",
        ColumnType::Json => "JSON",
        ColumnType::Record(_) => "an object",
    }
}

/// The validator accepted a value its column cannot hold: the schema and its columns disagree.
fn mismatch(path: &str, expected: &str) -> Violation {
    Violation::new(
        path,
        format!("is not {expected}, which its column needs"),
        "column_type",
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::schema::Catalog;

    #[test]
    fn an_absent_array_is_empty_and_an_absent_scalar_or_object_is_null() {
        let schema = include_str!("../../tests/fixtures/catalog/payment.json");
        let catalog = Catalog::from_files(vec![("payment.json".into(), schema.into())]).unwrap();
        let payment = catalog.event_type("payment").unwrap();
        let payload = serde_json::json!({"event_type": "payment", "payment_id": "P1",
            "order_id": "O1", "amount": 59.99, "currency": "NOK", "method": "card",
            "paid_at": "2026-11-25T09:14:30Z", "card": {"last4": "4242", "brand": "visa"}});
        let typed = payment.validate(&payload).unwrap();
        let cell = |name: &str| {
            let i = payment.table.payload.iter().position(|c| &*c.name == name);
            &typed.cells[i.unwrap_or_else(|| panic!("no column {name}"))]
        };
        assert_eq!(cell("tags"), &Cell::Repeated(vec![]));
        assert_eq!(cell("refunds"), &Cell::Repeated(vec![]));
        assert_eq!(cell("installments"), &Cell::Null);
        assert_eq!(cell("captured"), &Cell::Null);
        assert_eq!(cell("extra"), &Cell::Null);
        assert_eq!(cell("currency"), &Cell::String("NOK".into()));
    }

    #[test]
    fn an_integer_column_takes_whole_numbers_that_fit_64_bits() {
        let int = |text: &str| int64(&serde_json::from_str(text).unwrap(), ".n");
        assert_eq!(int("3"), Ok(Cell::Int(3)));
        assert_eq!(
            int("3.0"),
            Ok(Cell::Int(3)),
            "JSON Schema's integer includes 3.0"
        );
        assert_eq!(int("-9.223372036854775808e18"), Ok(Cell::Int(i64::MIN)));
        for too_big in ["9223372036854775808.0", "1e19", "-1e19"] {
            let refused = int(too_big).unwrap_err();
            assert_eq!(refused.rule, "column_range", "{too_big}");
        }
        assert_eq!(int("2.5").unwrap_err().rule, "column_range");
    }

    #[test]
    fn a_value_its_column_cannot_hold_names_what_the_column_needs() {
        let refused = |ty: ColumnType| typed(&ty, &serde_json::json!([1]), ".v").unwrap_err();
        let cases = [
            (ColumnType::String, "a string"),
            (ColumnType::Timestamp, "an RFC 3339 timestamp"),
            (ColumnType::Date, "an RFC 3339 date"),
            (ColumnType::Float64, "a number"),
            (ColumnType::Bool, "a boolean"),
            (ColumnType::Record(Vec::new()), "an object"),
        ];
        for (ty, needs) in cases {
            assert_eq!(
                refused(ty).to_string(),
                format!(".v: is not {needs}, which its column needs")
            );
        }
    }
}
