//! The raw layer as protocol buffers, for BigQuery's Storage Write API: each table's row type
//! derived from its columns like every other shape, and a row's cells encoded as one message.
//!
//! The row type is proto2, where a field has presence: a NULL cell is a field left out, and a
//! zero or an empty string is still sent. Types follow BigQuery's table of protobuf types:
//! TIMESTAMP as microseconds since the epoch, DATE as days since it, NUMERIC and JSON as text
//! (the same text insertAll sends, so both APIs store the same value), records as nested
//! messages, arrays as repeated fields. The descriptor BigQuery is sent is self-contained:
//! records are nested types of the row type, named relatively.

use std::borrow::Borrow;

use chrono::NaiveDate;
use prost::Message;
use prost_reflect::{DescriptorPool, DynamicMessage, MessageDescriptor, Value};
use prost_types::field_descriptor_proto::{Label, Type};
use prost_types::{DescriptorProto, FieldDescriptorProto, FileDescriptorProto};

use super::{Cell, Column, ColumnType, Mode, Table};

const PACKAGE: &str = "landfall";
const ROW: &str = "Row";
/// Nested types share a message's names with its fields. BigQuery reserves this prefix in
/// column names, so no field can be named like a nested type.
const RECORD_PREFIX: &str = "_TABLE_";

/// A table's row type.
#[derive(Debug, Clone)]
pub struct RowType {
    message: MessageDescriptor,
    /// As built, names relative: a resolved descriptor names its types after this package,
    /// which BigQuery's own does not have.
    descriptor: DescriptorProto,
}

impl RowType {
    pub fn of(table: &Table) -> Result<Self, prost_reflect::DescriptorError> {
        let columns: Vec<&Column> = table.columns().collect();
        let descriptor = message_type(ROW, &columns);
        let file = FileDescriptorProto {
            name: Some(format!("{}.proto", table.name)),
            package: Some(PACKAGE.into()),
            message_type: vec![descriptor.clone()],
            syntax: Some("proto2".into()),
            ..Default::default()
        };
        let mut pool = DescriptorPool::new();
        pool.add_file_descriptor_proto(file)?;
        let message = pool
            .get_message_by_name(&format!("{PACKAGE}.{ROW}"))
            .expect("the pool holds the row type just added");
        Ok(Self {
            message,
            descriptor,
        })
    }

    /// The descriptor for `ProtoSchema.proto_descriptor`.
    pub fn descriptor(&self) -> DescriptorProto {
        self.descriptor.clone()
    }

    /// One row: the cells of the table's columns, in column order.
    pub fn encode<C: Borrow<Cell>>(&self, cells: impl IntoIterator<Item = C>) -> Vec<u8> {
        message(&self.message, cells).encode_to_vec()
    }

    /// A row read back (tests compare what was sent).
    pub fn decode(&self, bytes: &[u8]) -> Result<DynamicMessage, prost::DecodeError> {
        DynamicMessage::decode(self.message.clone(), bytes)
    }
}

fn message_type(name: &str, columns: &[&Column]) -> DescriptorProto {
    let mut message = DescriptorProto {
        name: Some(name.into()),
        ..Default::default()
    };
    for (number, column) in (1..).zip(columns) {
        let label = match column.mode {
            Mode::Repeated => Label::Repeated,
            Mode::Required | Mode::Nullable => Label::Optional,
        };
        let mut field = FieldDescriptorProto {
            name: Some(column.name.to_string()),
            number: Some(number),
            label: Some(label as i32),
            ..Default::default()
        };
        match &column.ty {
            ColumnType::Record(members) => {
                let nested = format!("{RECORD_PREFIX}{}", column.name);
                let members: Vec<&Column> = members.iter().collect();
                message.nested_type.push(message_type(&nested, &members));
                field.r#type = Some(Type::Message as i32);
                field.type_name = Some(nested);
            }
            scalar => field.r#type = Some(scalar_type(scalar) as i32),
        }
        message.field.push(field);
    }
    message
}

fn scalar_type(ty: &ColumnType) -> Type {
    match ty {
        ColumnType::String | ColumnType::Numeric | ColumnType::Json => Type::String,
        ColumnType::Timestamp | ColumnType::Int64 => Type::Int64,
        ColumnType::Date => Type::Int32,
        ColumnType::Float64 => Type::Double,
        ColumnType::Bool => Type::Bool,
        ColumnType::Record(_) => Type::Message,
    }
}

fn message<C: Borrow<Cell>>(
    descriptor: &MessageDescriptor,
    cells: impl IntoIterator<Item = C>,
) -> DynamicMessage {
    let mut message = DynamicMessage::new(descriptor.clone());
    for (field, cell) in descriptor.fields().zip(cells) {
        let nested = field.kind().as_message().cloned();
        if let Some(value) = value(cell.borrow(), nested.as_ref()) {
            message.set_field(&field, value);
        }
    }
    message
}

/// A cell as a field's value; `None` (the field left out) for NULL.
fn value(cell: &Cell, record: Option<&MessageDescriptor>) -> Option<Value> {
    Some(match cell {
        Cell::Null => return None,
        Cell::String(s) | Cell::Json(s) => Value::String(s.clone()),
        Cell::Numeric(n) => Value::String(n.to_string()),
        Cell::Int(i) => Value::I64(*i),
        Cell::Float(f) => Value::F64(*f),
        Cell::Bool(b) => Value::Bool(*b),
        Cell::Timestamp(t) => Value::I64(t.timestamp_micros()),
        Cell::Date(d) => Value::I32(days_since_epoch(d)),
        Cell::Record(cells) => Value::Message(message(record?, cells)),
        Cell::Repeated(items) => Value::List(
            items
                .iter()
                .filter_map(|item| value(item, record))
                .collect(),
        ),
    })
}

fn days_since_epoch(date: &NaiveDate) -> i32 {
    let epoch = chrono::DateTime::UNIX_EPOCH.date_naive();
    let days = date.signed_duration_since(epoch).num_days();
    // Dates run from year 1 to 9999: about ±3 million days.
    i32::try_from(days).expect("a valid date is within i32 days of 1970")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::schema::{Catalog, CatalogSource};

    fn shipped() -> Catalog {
        Catalog::load(&CatalogSource::Shipped).unwrap()
    }

    #[test]
    fn every_table_has_a_row_type_with_a_field_per_column_in_order() {
        let catalog = shipped();
        for table in catalog.tables() {
            let row = RowType::of(table).unwrap();
            let fields: Vec<String> = row.message.fields().map(|f| f.name().to_string()).collect();
            let columns: Vec<String> = table.columns().map(|c| c.name.to_string()).collect();
            assert_eq!(fields, columns, "{}", table.name);
        }
    }

    #[test]
    fn order_items_are_a_repeated_nested_record_in_a_self_contained_descriptor() {
        let catalog = shipped();
        let row = RowType::of(&catalog.event_type("order").unwrap().table).unwrap();
        let descriptor = row.descriptor();
        let items = descriptor
            .field
            .iter()
            .find(|f| f.name() == "items")
            .unwrap();
        assert_eq!(items.label(), Label::Repeated);
        assert_eq!(items.r#type(), Type::Message);
        assert_eq!(items.type_name(), "_TABLE_items");
        let nested = descriptor
            .nested_type
            .iter()
            .find(|n| n.name() == "_TABLE_items")
            .unwrap();
        let price = nested.field.iter().find(|f| f.name() == "price").unwrap();
        assert_eq!(price.r#type(), Type::String, "NUMERIC travels as text");
        let date = descriptor
            .field
            .iter()
            .find(|f| f.name() == "order_date")
            .unwrap();
        assert_eq!(date.r#type(), Type::Int64, "TIMESTAMP as microseconds");
    }

    #[test]
    fn cells_encode_with_presence_and_bigquery_units() {
        let table = Table {
            name: "t".into(),
            description: String::new(),
            payload: vec![
                Column::fixed("n", ColumnType::Int64, Mode::Nullable, ""),
                Column::fixed("zero", ColumnType::Int64, Mode::Nullable, ""),
                Column::fixed("at", ColumnType::Timestamp, Mode::Required, ""),
                Column::fixed("day", ColumnType::Date, Mode::Required, ""),
                Column::fixed("amount", ColumnType::Numeric, Mode::Required, ""),
                Column::fixed("tags", ColumnType::String, Mode::Repeated, ""),
            ],
            metadata: &[],
            partition_by: "at".into(),
            cluster_by: vec![],
            curated: None,
        };
        let row = RowType::of(&table).unwrap();
        let at = chrono::DateTime::parse_from_rfc3339("1970-01-02T00:00:00.000001Z")
            .unwrap()
            .to_utc();
        let cells = [
            Cell::Null,
            Cell::Int(0),
            Cell::Timestamp(at),
            Cell::Date(NaiveDate::from_ymd_opt(1969, 12, 31).unwrap()),
            Cell::Numeric(serde_json::from_str("0.1").unwrap()),
            Cell::Repeated(vec![Cell::String("a".into()), Cell::String(String::new())]),
        ];
        let decoded = row.decode(&row.encode(cells.iter())).unwrap();
        assert!(!decoded.has_field_by_name("n"), "NULL is a field left out");
        assert!(decoded.has_field_by_name("zero"), "zero is still sent");
        assert_eq!(
            decoded.get_field_by_name("at").unwrap().as_i64(),
            Some(86_400_000_001)
        );
        assert_eq!(decoded.get_field_by_name("day").unwrap().as_i32(), Some(-1));
        assert_eq!(
            decoded.get_field_by_name("amount").unwrap().as_str(),
            Some("0.1")
        );
        let tags = decoded.get_field_by_name("tags").unwrap();
        assert_eq!(tags.as_list().unwrap().len(), 2);
    }
}
