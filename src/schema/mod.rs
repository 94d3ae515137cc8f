//! The catalog: one JSON Schema file per event type, and the tables it becomes.
//!
//! A file is the single definition of its event type: validation ([`catalog::EventType::validate`]),
//! the typed row ([`cell`]), the SQLite DDL ([`sqlite`]) and the BigQuery DDL and API schema
//! ([`bigquery`]) are all derived from the columns [`columns`] reads out of it. The columns every
//! row carries about its delivery, and the dead-letter table, are landfall's own and live in
//! [`metadata`].

pub mod bigquery;
pub mod catalog;
pub mod cell;
mod columns;
pub mod curated;
pub mod metadata;
pub mod proto;
pub mod sqlite;
mod validate;

use std::borrow::Cow;

pub use catalog::{Catalog, CatalogError, CatalogSource, EventType, Typed};
pub use cell::Cell;
pub use metadata::RowSource;
pub use validate::Violation;

/// A column's type, named as BigQuery names it; SQLite maps each to the storage class it has.
#[derive(Debug, Clone, PartialEq)]
pub enum ColumnType {
    String,
    Timestamp,
    Date,
    Int64,
    /// Exact decimal: money never passes through a float on its way to BigQuery.
    Numeric,
    Float64,
    Bool,
    /// Anything without a single column type: kept as a JSON document.
    Json,
    Record(Vec<Column>),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    Required,
    Nullable,
    Repeated,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Column {
    pub name: Cow<'static, str>,
    pub ty: ColumnType,
    pub mode: Mode,
    pub description: Cow<'static, str>,
}

impl Column {
    pub const fn fixed(
        name: &'static str,
        ty: ColumnType,
        mode: Mode,
        description: &'static str,
    ) -> Self {
        Self {
            name: Cow::Borrowed(name),
            ty,
            mode,
            description: Cow::Borrowed(description),
        }
    }

    /// BigQuery clusters only on top-level scalar columns of these types.
    pub fn can_cluster(&self) -> bool {
        self.mode != Mode::Repeated
            && matches!(
                self.ty,
                ColumnType::String
                    | ColumnType::Timestamp
                    | ColumnType::Date
                    | ColumnType::Int64
                    | ColumnType::Numeric
                    | ColumnType::Bool
            )
    }
}

/// A warehouse table: the payload's columns, then landfall's metadata columns.
#[derive(Debug, Clone, PartialEq)]
pub struct Table {
    pub name: String,
    pub description: String,
    pub payload: Vec<Column>,
    pub metadata: &'static [metadata::MetaColumn],
    /// Column whose DATE() partitions the BigQuery table.
    pub partition_by: String,
    pub cluster_by: Vec<String>,
    /// How the curated layer models it (`None` for the dead letter, which has its own view).
    pub curated: Option<curated::Curated>,
}

impl Table {
    /// Every column in table order: the order rows, DDL and inserts all follow.
    pub fn columns(&self) -> impl Iterator<Item = &Column> + Clone {
        self.payload
            .iter()
            .chain(self.metadata.iter().map(|m| &m.column))
    }

    pub fn column_index(&self, name: &str) -> Option<usize> {
        self.columns().position(|c| c.name == name)
    }
}
