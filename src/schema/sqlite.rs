//! The embedded warehouse's tables: the same columns as BigQuery with the storage classes
//! SQLite has. Records, arrays and JSON become JSON text; money is REAL, as it always was here.
//! SQLite has no partitions and no clustering: `cluster_by` and the partition column shape
//! BigQuery only.

use super::curated::{self, Dialect};
use super::{Catalog, Column, ColumnType, Mode, Table};

pub fn column_type(column: &Column) -> &'static str {
    match (&column.ty, column.mode) {
        (_, Mode::Repeated) | (ColumnType::Record(_) | ColumnType::Json, _) => "TEXT",
        (ColumnType::Int64 | ColumnType::Bool, _) => "INTEGER",
        (ColumnType::Numeric | ColumnType::Float64, _) => "REAL",
        (ColumnType::String | ColumnType::Timestamp | ColumnType::Date, _) => "TEXT",
    }
}

fn definition(column: &Column) -> String {
    definition_with(column, column.mode == Mode::Required)
}

fn definition_with(column: &Column, not_null: bool) -> String {
    let mut sql = format!("\"{}\" {}", column.name, column_type(column));
    if not_null {
        sql.push_str(" NOT NULL");
    }
    if column.name == "message_id" {
        // Redelivery must never add a second row: the constraint is the dedup.
        sql.push_str(" UNIQUE");
    }
    sql
}

/// `CREATE TABLE IF NOT EXISTS` for one table.
pub fn create_table(table: &Table) -> String {
    let columns: Vec<String> = table.columns().map(definition).collect();
    format!(
        "CREATE TABLE IF NOT EXISTS \"{}\" (\n  {}\n)",
        table.name,
        columns.join(",\n  ")
    )
}

/// Insert that leaves an existing row alone, so a redelivery reports "already there". The
/// values are bound in [`Table::columns`] order, the order rows are built in.
pub fn insert(table: &Table) -> String {
    let names: Vec<String> = table.columns().map(|c| format!("\"{}\"", c.name)).collect();
    let params: Vec<String> = (1..=names.len()).map(|i| format!("?{i}")).collect();
    format!(
        "INSERT INTO \"{}\" ({}) VALUES ({}) ON CONFLICT(\"message_id\") DO NOTHING",
        table.name,
        names.join(", "),
        params.join(", ")
    )
}

/// A column as `PRAGMA table_info` reports it.
#[derive(Debug, Clone, PartialEq)]
pub struct ExistingColumn {
    pub name: String,
    pub declared_type: String,
    pub not_null: bool,
}

/// What it takes to bring an existing table to the catalog's shape.
#[derive(Debug, Default, PartialEq)]
pub struct Evolution {
    /// The statements, in order: `ALTER TABLE … ADD COLUMN` for each missing column (always
    /// nullable: the rows already there lack it), or a rebuild of the table when a column is
    /// relaxed (SQLite cannot drop a NOT NULL in place).
    pub additions: Vec<String>,
    pub added: Vec<String>,
    /// Columns the catalog no longer requires: NOT NULL is dropped.
    pub relaxed: Vec<String>,
    /// Differences that cannot be changed in place, each naming its column.
    pub conflicts: Vec<String>,
}

impl Evolution {
    /// What would change, one line per table (`schema check --data-dir`, start-up logs).
    pub fn describe(&self, table: &str) -> Option<String> {
        let mut parts = Vec::new();
        if !self.added.is_empty() {
            parts.push(format!("adds columns {}", self.added.join(", ")));
        }
        if !self.relaxed.is_empty() {
            parts.push(format!("relaxes to nullable {}", self.relaxed.join(", ")));
        }
        (!parts.is_empty()).then(|| format!("table {table}: {}", parts.join("; ")))
    }
}

pub fn evolve(table: &Table, existing: &[ExistingColumn]) -> Evolution {
    let mut evolution = Evolution::default();
    for column in table.columns() {
        let name = &column.name;
        match existing.iter().find(|e| e.name.eq_ignore_ascii_case(name)) {
            None => {
                evolution.additions.push(format!(
                    "ALTER TABLE \"{}\" ADD COLUMN \"{name}\" {}",
                    table.name,
                    column_type(column)
                ));
                evolution.added.push(name.to_string());
            }
            Some(e) if !e.declared_type.eq_ignore_ascii_case(column_type(column)) => {
                evolution.conflicts.push(format!(
                    "column {}.{name} is {} in the database, the catalog makes it {}",
                    table.name,
                    e.declared_type,
                    column_type(column)
                ));
            }
            Some(e) if e.not_null && column.mode != Mode::Required => {
                evolution.relaxed.push(name.to_string());
            }
            Some(_) => {}
        }
    }
    if !evolution.relaxed.is_empty() {
        evolution.additions = rebuild(table, existing);
    }
    for e in existing {
        if !table
            .columns()
            .any(|c| c.name.eq_ignore_ascii_case(&e.name))
        {
            evolution.conflicts.push(format!(
                "column {}.{} is in the database but not in the catalog (a field cannot be removed)",
                table.name, e.name
            ));
        }
    }
    evolution
}

/// The table made anew with the catalog's columns, NOT NULL only where the database has it
/// and the catalog still requires it, the rows copied over: SQLite's way to relax a column.
fn rebuild(table: &Table, existing: &[ExistingColumn]) -> Vec<String> {
    let name = &table.name;
    let temporary = format!("{name}__landfall_rebuild");
    let columns: Vec<String> = table
        .columns()
        .map(|c| {
            let had = existing
                .iter()
                .find(|e| e.name.eq_ignore_ascii_case(&c.name));
            definition_with(
                c,
                c.mode == Mode::Required && had.is_some_and(|e| e.not_null),
            )
        })
        .collect();
    let copied: Vec<String> = existing.iter().map(|e| format!("\"{}\"", e.name)).collect();
    let copied = copied.join(", ");
    vec![
        format!(
            "CREATE TABLE \"{temporary}\" (\n  {}\n)",
            columns.join(",\n  ")
        ),
        format!("INSERT INTO \"{temporary}\" ({copied}) SELECT {copied} FROM \"{name}\""),
        format!("DROP TABLE \"{name}\""),
        format!("ALTER TABLE \"{temporary}\" RENAME TO \"{name}\""),
    ]
}

/// The curated views, created anew at every start (after any table change): first every
/// `curated_…` view there is, dropped, then the catalog's.
pub fn views(catalog: &Catalog, existing_views: &[String]) -> Vec<String> {
    let mut statements: Vec<String> = existing_views
        .iter()
        .filter(|v| v.starts_with("curated_"))
        .map(|v| format!("DROP VIEW IF EXISTS \"{v}\""))
        .collect();
    for view in curated::views(&Dialect::Sqlite, catalog) {
        statements.push(format!("CREATE VIEW \"{}\" AS {}", view.name, view.query));
    }
    statements
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::schema::{Catalog, CatalogSource};

    fn order() -> std::sync::Arc<Table> {
        let catalog = Catalog::load(&CatalogSource::Shipped).unwrap();
        catalog.event_type("order").unwrap().table.clone()
    }

    fn existing(table: &Table) -> Vec<ExistingColumn> {
        table
            .columns()
            .map(|c| ExistingColumn {
                name: c.name.to_string(),
                declared_type: column_type(c).to_string(),
                not_null: c.mode == Mode::Required,
            })
            .collect()
    }

    #[test]
    fn order_table_keeps_nested_fields_as_json_text_and_dedups_on_message_id() {
        let ddl = create_table(&order());
        assert!(ddl.starts_with("CREATE TABLE IF NOT EXISTS \"order\""));
        assert!(ddl.contains("\"items\" TEXT,"));
        assert!(ddl.contains("\"shipping_address\" TEXT NOT NULL"));
        assert!(ddl.contains("\"total_amount\" REAL NOT NULL"));
        assert!(ddl.contains("\"message_id\" TEXT NOT NULL UNIQUE"));
        assert!(ddl.contains("\"delivery_attempt\" INTEGER,"));
    }

    #[test]
    fn insert_binds_every_column_once() {
        let table = order();
        let sql = insert(&table);
        let columns = table.columns().count();
        assert!(sql.contains(&format!("?{columns})")));
        assert!(!sql.contains(&format!("?{}", columns + 1)));
        assert!(sql.ends_with("ON CONFLICT(\"message_id\") DO NOTHING"));
    }

    #[test]
    fn a_column_no_longer_required_is_relaxed_by_rebuilding_the_table() {
        let table = order();
        let mut current = existing(&table);
        let total = current
            .iter_mut()
            .find(|c| c.name == "total_amount")
            .unwrap();
        total.not_null = true;
        let mut relaxed = (*table).clone();
        relaxed
            .payload
            .iter_mut()
            .find(|c| c.name == "total_amount")
            .unwrap()
            .mode = Mode::Nullable;
        let evolution = evolve(&relaxed, &current);
        assert_eq!(evolution.relaxed, ["total_amount"]);
        assert!(evolution.conflicts.is_empty());
        assert_eq!(evolution.additions.len(), 4, "{:?}", evolution.additions);
        assert!(evolution.additions[0].contains("\"total_amount\" REAL,"));
        assert!(evolution.additions[0].contains("\"order_id\" TEXT NOT NULL"));
        assert_eq!(
            evolution.describe("order").as_deref(),
            Some("table order: relaxes to nullable total_amount")
        );
    }

    #[test]
    fn a_missing_column_is_added_and_a_changed_or_removed_one_is_a_conflict() {
        let table = order();
        let mut current = existing(&table);
        assert_eq!(evolve(&table, &current), Evolution::default());
        current.retain(|c| c.name != "customer_id");
        let evolution = evolve(&table, &current);
        assert_eq!(
            evolution.additions,
            ["ALTER TABLE \"order\" ADD COLUMN \"customer_id\" TEXT"]
        );
        assert!(evolution.conflicts.is_empty());

        let mut current = existing(&table);
        current[7].declared_type = "TEXT".into();
        current.push(ExistingColumn {
            name: "legacy".into(),
            declared_type: "TEXT".into(),
            not_null: false,
        });
        let evolution = evolve(&table, &current);
        assert_eq!(
            evolution.conflicts,
            [
                "column order.total_amount is TEXT in the database, the catalog makes it REAL",
                "column order.legacy is in the database but not in the catalog (a field cannot be removed)"
            ]
        );
    }
}
