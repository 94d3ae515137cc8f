//! The embedded warehouse's tables, mirrored from the BigQuery shapes: nested records and
//! arrays become JSON text, everything else one typed column.

use super::{Field, Kind, Mode, Table};

fn column_type(field: &Field) -> &'static str {
    match (field.mode, field.kind) {
        (Mode::Repeated, _) | (_, Kind::Record(_)) | (_, Kind::Json) => "TEXT",
        (_, Kind::Int { .. }) => "INTEGER",
        (_, Kind::Numeric) => "REAL",
        (_, Kind::Id | Kind::Text | Kind::Timestamp | Kind::Enum(_)) => "TEXT",
    }
}

fn column(field: &Field) -> String {
    let mut sql = format!("\"{}\" {}", field.name, column_type(field));
    if field.mode == Mode::Required {
        sql.push_str(" NOT NULL");
    }
    if field.name == "message_id" {
        // Redelivery must never add a second row: the constraint is the dedup.
        sql.push_str(" UNIQUE");
    }
    sql
}

/// `CREATE TABLE IF NOT EXISTS` for one table.
pub fn create_table(table: &Table) -> String {
    let columns: Vec<String> = table.columns().map(column).collect();
    format!(
        "CREATE TABLE IF NOT EXISTS \"{}\" (\n  {}\n)",
        table.name,
        columns.join(",\n  ")
    )
}

/// Insert that leaves an existing row alone, so a redelivery reports "already there".
pub fn insert(table: &Table) -> String {
    let names: Vec<String> = table.columns().map(|f| format!("\"{}\"", f.name)).collect();
    let params: Vec<String> = (1..=names.len()).map(|i| format!("?{i}")).collect();
    format!(
        "INSERT INTO \"{}\" ({}) VALUES ({}) ON CONFLICT(\"message_id\") DO NOTHING",
        table.name,
        names.join(", "),
        params.join(", ")
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::schema::{INVENTORY, ORDER};

    #[test]
    fn order_table_keeps_nested_fields_as_json_text_and_dedups_on_message_id() {
        let ddl = create_table(&ORDER);
        assert!(ddl.starts_with("CREATE TABLE IF NOT EXISTS \"order\""));
        assert!(ddl.contains("\"items\" TEXT,"));
        assert!(ddl.contains("\"shipping_address\" TEXT NOT NULL"));
        assert!(ddl.contains("\"total_amount\" REAL NOT NULL"));
        assert!(ddl.contains("\"message_id\" TEXT NOT NULL UNIQUE"));
        assert!(ddl.contains("\"delivery_attempt\" INTEGER,"));
    }

    #[test]
    fn insert_binds_every_column_once() {
        let sql = insert(&INVENTORY);
        let columns = INVENTORY.columns().count();
        assert!(sql.contains(&format!("?{columns})")));
        assert!(!sql.contains(&format!("?{}", columns + 1)));
        assert!(sql.ends_with("ON CONFLICT(\"message_id\") DO NOTHING"));
    }
}
