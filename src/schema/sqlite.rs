//! The embedded warehouse's tables: the same columns as BigQuery with the storage classes
//! SQLite has. Records, arrays and JSON become JSON text; money is REAL, as it always was here.

use super::{Column, ColumnType, Mode, Table};

pub fn column_type(column: &Column) -> &'static str {
    match (&column.ty, column.mode) {
        (_, Mode::Repeated) | (ColumnType::Record(_) | ColumnType::Json, _) => "TEXT",
        (ColumnType::Int64 | ColumnType::Bool, _) => "INTEGER",
        (ColumnType::Numeric | ColumnType::Float64, _) => "REAL",
        (ColumnType::String | ColumnType::Timestamp | ColumnType::Date, _) => "TEXT",
    }
}

fn definition(column: &Column) -> String {
    let mut sql = format!("\"{}\" {}", column.name, column_type(column));
    if column.mode == Mode::Required {
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
    /// `ALTER TABLE … ADD COLUMN` statements, one per missing column (always nullable: the
    /// rows already there lack it).
    pub additions: Vec<String>,
    pub added: Vec<String>,
    /// Differences that cannot be changed in place, each naming its column.
    pub conflicts: Vec<String>,
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
                evolution.conflicts.push(format!(
                    "column {}.{name} is NOT NULL in the database, but the catalog no longer requires it",
                    table.name
                ));
            }
            Some(_) => {}
        }
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
