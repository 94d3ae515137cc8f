//! The curated layer, derived from the catalog like the raw one: views over the raw tables,
//! in BigQuery (their own dataset) and in SQLite (`curated_…` beside the tables).
//!
//! For every event type:
//! - `{table}`: one row per `message_id`, the earliest received, every column of the raw
//!   table. The window partitions by the type's time field (a message's copies share it) and
//!   the message id, so that a filter on the time field is pushed under the window and prunes
//!   the raw table's partitions as it would on the table itself.
//! - with a `key`: `{table}_latest`, one row per key, the version with the greatest
//!   `latest_by`, ties broken by `publish_time`, then `message_id`.
//! - for each `flatten` column: `{table}_{column}`, one row per element of the latest version
//!   (of every message when there is no key), with the key (else `message_id`), the time
//!   field, the element's `position` and its fields.
//!
//! And `dead_letter`: one row per dead-lettered message id that has not landed as an event
//! since (a redrive lands it under the same id).

use serde::Deserialize;

use super::columns::Finding;
use super::metadata::DEAD_LETTER_TABLE;
use super::{Catalog, Column, ColumnType, Mode, Table};

/// A type's `x-landfall.curated` block, checked.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Curated {
    pub key: Vec<String>,
    /// Defaults to the time field.
    pub latest_by: String,
    pub flatten: Vec<String>,
}

/// The block as written in a catalog file.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CuratedBlock {
    #[serde(default)]
    key: Vec<String>,
    latest_by: Option<String>,
    #[serde(default)]
    flatten: Vec<String>,
}

fn finding(pointer: String, message: String) -> Finding {
    Finding { pointer, message }
}

/// Checks a block against the table's payload columns; every problem names its pointer.
pub fn check(
    block: Option<&CuratedBlock>,
    time_field: &str,
    columns: &[Column],
) -> (Curated, Vec<Finding>) {
    let mut problems = Vec::new();
    let Some(block) = block else {
        return (
            Curated {
                latest_by: time_field.to_string(),
                ..Curated::default()
            },
            problems,
        );
    };
    let top = |name: &str| columns.iter().find(|c| c.name == name);
    let base = "/x-landfall/curated";
    for (i, name) in block.key.iter().enumerate() {
        let pointer = format!("{base}/key/{i}");
        match top(name) {
            None => problems.push(finding(
                pointer,
                format!("{name:?} is not a top-level property"),
            )),
            Some(c) if !is_scalar(c) => problems.push(finding(
                pointer,
                format!(
                    "{name:?} is a nested, repeated or JSON column; a key is a top-level scalar"
                ),
            )),
            Some(_) => {}
        }
    }
    let latest_by = block
        .latest_by
        .clone()
        .unwrap_or_else(|| time_field.to_string());
    if let Some(name) = &block.latest_by {
        let pointer = format!("{base}/latest_by");
        if block.key.is_empty() {
            problems.push(finding(
                pointer.clone(),
                "latest_by orders the versions of a key: give a key too".into(),
            ));
        }
        match top(name) {
            None => problems.push(finding(
                pointer,
                format!("{name:?} is not a top-level property"),
            )),
            Some(c) if !orders_versions(c) => problems.push(finding(
                pointer,
                format!(
                    "{name:?} must be a top-level timestamp, date or number to order versions by"
                ),
            )),
            Some(_) => {}
        }
    }
    for (i, name) in block.flatten.iter().enumerate() {
        let pointer = format!("{base}/flatten/{i}");
        match top(name) {
            None => problems.push(finding(pointer, format!("{name:?} is not a top-level property"))),
            Some(Column {
                ty: ColumnType::Record(_),
                mode: Mode::Repeated,
                ..
            }) => {}
            Some(_) => problems.push(finding(
                pointer,
                format!("{name:?} is not an array of objects (a repeated record), so there are no element rows to make"),
            )),
        }
    }
    let curated = Curated {
        key: block.key.clone(),
        latest_by,
        flatten: block.flatten.clone(),
    };
    (curated, problems)
}

fn is_scalar(column: &Column) -> bool {
    column.mode != Mode::Repeated && !matches!(column.ty, ColumnType::Record(_) | ColumnType::Json)
}

fn orders_versions(column: &Column) -> bool {
    column.mode != Mode::Repeated
        && matches!(
            column.ty,
            ColumnType::Timestamp
                | ColumnType::Date
                | ColumnType::Int64
                | ColumnType::Numeric
                | ColumnType::Float64
        )
}

/// One view: its name and the query that defines it.
#[derive(Debug, Clone, PartialEq)]
pub struct View {
    pub name: String,
    pub query: String,
}

/// Where the views read from and what SQL they speak.
pub enum Dialect<'a> {
    BigQuery {
        project: &'a str,
        raw: &'a str,
        curated: &'a str,
    },
    /// Views beside the tables, named `curated_…`.
    Sqlite,
}

impl Dialect<'_> {
    fn quote(&self, name: &str) -> String {
        match self {
            Dialect::BigQuery { .. } => format!("`{name}`"),
            Dialect::Sqlite => format!("\"{name}\""),
        }
    }

    /// A view's own name.
    pub fn view_name(&self, name: &str) -> String {
        match self {
            Dialect::BigQuery { .. } => name.to_string(),
            Dialect::Sqlite => format!("curated_{name}"),
        }
    }

    fn raw(&self, table: &str) -> String {
        match self {
            Dialect::BigQuery { project, raw, .. } => format!("`{project}.{raw}.{table}`"),
            Dialect::Sqlite => self.quote(table),
        }
    }

    fn view(&self, name: &str) -> String {
        match self {
            Dialect::BigQuery {
                project, curated, ..
            } => format!("`{project}.{curated}.{name}`"),
            Dialect::Sqlite => self.quote(&self.view_name(name)),
        }
    }

    /// An expression that orders a column's values: SQLite keeps timestamps as RFC 3339 text,
    /// whose digits after the second do not sort as numbers do.
    fn sortable(&self, column: &str, ty: &ColumnType) -> String {
        match (self, ty) {
            (Dialect::Sqlite, ColumnType::Timestamp | ColumnType::Date) => {
                format!("julianday({})", self.quote(column))
            }
            _ => self.quote(column),
        }
    }

    /// `SELECT columns FROM source` keeping the first row of each `partition` by `order`.
    fn first_of_each(
        &self,
        columns: &str,
        source: &str,
        filter: Option<&str>,
        partition: &str,
        order: &str,
    ) -> String {
        match self {
            Dialect::BigQuery { .. } => format!(
                "SELECT {columns} FROM {source} WHERE {} QUALIFY ROW_NUMBER() OVER (PARTITION BY {partition} ORDER BY {order}) = 1",
                filter.unwrap_or("TRUE")
            ),
            Dialect::Sqlite => {
                let filter = filter.map(|f| format!(" WHERE {f}")).unwrap_or_default();
                format!(
                    "SELECT {columns} FROM (SELECT *, ROW_NUMBER() OVER (PARTITION BY {partition} ORDER BY {order}) AS landfall_rank FROM {source}{filter}) WHERE landfall_rank = 1"
                )
            }
        }
    }

    /// An element field of a flattened array, as a column.
    fn element(&self, field: &str) -> String {
        match self {
            Dialect::BigQuery { .. } => format!("landfall_element.{}", self.quote(field)),
            Dialect::Sqlite => format!("json_extract(landfall_element.value, '$.\"{field}\"')"),
        }
    }

    fn unnest(&self, source: &str, column: &str) -> String {
        match self {
            Dialect::BigQuery { .. } => format!(
                "{source} AS landfall_row CROSS JOIN UNNEST(landfall_row.{}) AS landfall_element WITH OFFSET AS landfall_position",
                self.quote(column)
            ),
            Dialect::Sqlite => format!(
                "{source} AS landfall_row, json_each(landfall_row.{}) AS landfall_element",
                self.quote(column)
            ),
        }
    }

    fn position(&self) -> &'static str {
        match self {
            Dialect::BigQuery { .. } => "landfall_position",
            Dialect::Sqlite => "landfall_element.key",
        }
    }
}

fn column_type<'t>(table: &'t Table, name: &str) -> &'t ColumnType {
    &table
        .columns()
        .find(|c| c.name == name)
        .expect("the catalog checked every curated column")
        .ty
}

/// Every view of the curated layer, in the order they can be created (each after the views
/// it reads).
pub fn views(dialect: &Dialect, catalog: &Catalog) -> Vec<View> {
    let mut views = Vec::new();
    for event_type in catalog.event_types() {
        views.extend(type_views(dialect, &event_type.table));
    }
    views.push(dead_letter_view(dialect, catalog));
    views
}

fn all_columns(dialect: &Dialect, table: &Table) -> String {
    table
        .columns()
        .map(|c| dialect.quote(&c.name))
        .collect::<Vec<_>>()
        .join(", ")
}

fn type_views(dialect: &Dialect, table: &Table) -> Vec<View> {
    let q = |name: &str| dialect.quote(name);
    let columns = all_columns(dialect, table);
    let time = &table.partition_by;
    let mut views = vec![View {
        name: dialect.view_name(&table.name),
        query: dialect.first_of_each(
            &columns,
            &dialect.raw(&table.name),
            None,
            &format!("{}, {}", q(time), q("message_id")),
            &format!(
                "{}, {}",
                dialect.sortable("received_at", &ColumnType::Timestamp),
                q("landing_uri")
            ),
        ),
    }];
    let curated = table.curated.clone().unwrap_or_default();
    let source = if curated.key.is_empty() {
        dialect.view(&table.name)
    } else {
        let latest = format!("{}_latest", table.name);
        let key: Vec<String> = curated.key.iter().map(|k| q(k)).collect();
        views.push(View {
            name: dialect.view_name(&latest),
            query: dialect.first_of_each(
                &columns,
                &dialect.view(&table.name),
                None,
                &key.join(", "),
                &format!(
                    "{} DESC, {} DESC, {} DESC",
                    dialect.sortable(&curated.latest_by, column_type(table, &curated.latest_by)),
                    dialect.sortable("publish_time", &ColumnType::Timestamp),
                    q("message_id")
                ),
            ),
        });
        dialect.view(&latest)
    };
    for column in &curated.flatten {
        views.push(flattened(dialect, table, &curated, column, &source));
    }
    views
}

/// `{table}_{column}`: the identity columns, then `position`, then the element's fields; an
/// element field named like an identity column is prefixed with the array's name.
fn flattened(
    dialect: &Dialect,
    table: &Table,
    curated: &Curated,
    column: &str,
    source: &str,
) -> View {
    let q = |name: &str| dialect.quote(name);
    let mut identity: Vec<String> = if curated.key.is_empty() {
        vec!["message_id".to_string()]
    } else {
        curated.key.clone()
    };
    if !identity.contains(&table.partition_by) {
        identity.push(table.partition_by.clone());
    }
    let mut selected: Vec<String> = identity
        .iter()
        .map(|c| format!("landfall_row.{} AS {}", q(c), q(c)))
        .collect();
    let mut taken: Vec<String> = identity.clone();
    let position = free_name("position", column, &taken);
    selected.push(format!("{} AS {}", dialect.position(), q(&position)));
    taken.push(position);
    let ColumnType::Record(fields) = column_type(table, column) else {
        unreachable!("the catalog checked that {column} is a repeated record");
    };
    for field in fields {
        let name = free_name(&field.name, column, &taken);
        selected.push(format!("{} AS {}", dialect.element(&field.name), q(&name)));
        taken.push(name);
    }
    View {
        name: dialect.view_name(&format!("{}_{column}", table.name)),
        query: format!(
            "SELECT {} FROM {}",
            selected.join(", "),
            dialect.unnest(source, column)
        ),
    }
}

fn free_name(name: &str, array: &str, taken: &[String]) -> String {
    if taken.iter().any(|t| t.eq_ignore_ascii_case(name)) {
        format!("{array}_{name}")
    } else {
        name.to_string()
    }
}

fn dead_letter_view(dialect: &Dialect, catalog: &Catalog) -> View {
    let q = |name: &str| dialect.quote(name);
    let table = catalog.dead_letter();
    let landed: Vec<String> = catalog
        .event_types()
        .iter()
        .map(|t| {
            format!(
                "SELECT {} FROM {}",
                q("message_id"),
                dialect.raw(&t.table.name)
            )
        })
        .collect();
    let filter = format!(
        "{} NOT IN ({})",
        q("message_id"),
        landed.join(" UNION ALL ")
    );
    View {
        name: dialect.view_name(DEAD_LETTER_TABLE),
        query: dialect.first_of_each(
            &all_columns(dialect, table),
            &dialect.raw(DEAD_LETTER_TABLE),
            Some(&filter),
            &q("message_id"),
            &dialect.sortable("received_at", &ColumnType::Timestamp),
        ),
    }
}

/// `schema print --curated`: every view as a `CREATE OR REPLACE VIEW` statement.
pub fn bigquery_ddl(project: &str, raw: &str, curated: &str, catalog: &Catalog) -> String {
    let dialect = Dialect::BigQuery {
        project,
        raw,
        curated,
    };
    let mut out = format!("CREATE SCHEMA IF NOT EXISTS `{project}.{curated}`;\n\n");
    for view in views(&dialect, catalog) {
        out.push_str(&format!(
            "CREATE OR REPLACE VIEW `{project}.{curated}.{}` AS\n{};\n\n",
            view.name, view.query
        ));
    }
    out
}

/// `schema print --materialise-into DATASET`: for each type with a key, a table holding its
/// `{table}_latest` view, and the `MERGE` that brings it up to date, to schedule. The merge
/// reads only the versions whose time field lies within the last `lookback_days` (so only
/// those partitions are scanned); a version older than that when it arrives is left to a run
/// with a longer lookback.
pub fn bigquery_materialise(
    project: &str,
    curated: &str,
    into: &str,
    lookback_days: u32,
    catalog: &Catalog,
) -> String {
    let dialect = Dialect::BigQuery {
        project,
        raw: "",
        curated,
    };
    let mut out = format!("CREATE SCHEMA IF NOT EXISTS `{project}.{into}`;\n\n");
    for event_type in catalog.event_types() {
        let table = &event_type.table;
        let Some(curated) = table.curated.as_ref().filter(|c| !c.key.is_empty()) else {
            continue;
        };
        let target = format!("`{project}.{into}.{}_latest`", table.name);
        out.push_str(&format!(
            "CREATE TABLE IF NOT EXISTS {target}\nPARTITION BY DATE(`{}`) CLUSTER BY {}\nAS SELECT * FROM {} WHERE FALSE;\n\n",
            table.partition_by,
            curated.key.iter().take(4).map(|k| dialect.quote(k)).collect::<Vec<_>>().join(", "),
            dialect.view(&format!("{}_latest", table.name)),
        ));
        out.push_str(&merge(&dialect, table, curated, &target, lookback_days));
        out.push_str(";\n\n");
    }
    out
}

fn merge(dialect: &Dialect, table: &Table, curated: &Curated, target: &str, days: u32) -> String {
    let q = |name: &str| dialect.quote(name);
    let order = [curated.latest_by.as_str(), "publish_time", "message_id"];
    let nullable = |name: &str| {
        table
            .columns()
            .any(|c| c.name == name && c.mode == Mode::Nullable)
    };
    let versions: Vec<(&str, bool)> = order.iter().map(|c| (*c, nullable(c))).collect();
    let source = dialect.first_of_each(
        &all_columns(dialect, table),
        &dialect.view(&table.name),
        Some(&format!(
            "{} >= TIMESTAMP_SUB(CURRENT_TIMESTAMP(), INTERVAL {days} DAY)",
            q(&table.partition_by)
        )),
        &curated
            .key
            .iter()
            .map(|k| q(k))
            .collect::<Vec<_>>()
            .join(", "),
        &order
            .iter()
            .map(|c| format!("{} DESC", q(c)))
            .collect::<Vec<_>>()
            .join(", "),
    );
    let on = curated
        .key
        .iter()
        .map(|k| {
            format!(
                "landfall_target.{0} IS NOT DISTINCT FROM landfall_source.{0}",
                q(k)
            )
        })
        .collect::<Vec<_>>()
        .join(" AND ");
    let names: Vec<String> = table.columns().map(|c| q(&c.name)).collect();
    let set = table
        .columns()
        .filter(|c| !curated.key.iter().any(|k| *k == c.name))
        .map(|c| format!("{0} = landfall_source.{0}", q(&c.name)))
        .collect::<Vec<_>>()
        .join(", ");
    let values = names
        .iter()
        .map(|n| format!("landfall_source.{n}"))
        .collect::<Vec<_>>()
        .join(", ");
    format!(
        "MERGE {target} AS landfall_target\nUSING ({source}) AS landfall_source\nON {on}\nWHEN MATCHED AND {} THEN UPDATE SET {set}\nWHEN NOT MATCHED THEN INSERT ({}) VALUES ({values})",
        newer(dialect, &versions),
        names.join(", ")
    )
}

/// Whether the source's version sorts after the target's by these columns (name, and
/// whether it may be NULL), as the `_latest` view orders them: descending, NULLs last.
fn newer(dialect: &Dialect, columns: &[(&str, bool)]) -> String {
    let Some(((name, nullable), rest)) = columns.split_first() else {
        return "FALSE".into();
    };
    let (s, t) = (
        format!("landfall_source.{}", dialect.quote(name)),
        format!("landfall_target.{}", dialect.quote(name)),
    );
    let mut arms = vec![format!("{s} > {t}")];
    if *nullable {
        arms.push(format!("({s} IS NOT NULL AND {t} IS NULL)"));
    }
    if !rest.is_empty() {
        arms.push(format!(
            "({s} IS NOT DISTINCT FROM {t} AND {})",
            newer(dialect, rest)
        ));
    }
    format!("({})", arms.join(" OR "))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::testing::catalog;

    fn bigquery() -> Vec<View> {
        views(
            &Dialect::BigQuery {
                project: "p",
                raw: "raw",
                curated: "curated",
            },
            &catalog(),
        )
    }

    fn view<'a>(views: &'a [View], name: &str) -> &'a str {
        &views
            .iter()
            .find(|v| v.name == name)
            .unwrap_or_else(|| panic!("no view {name}"))
            .query
    }

    #[test]
    fn only_types_with_a_key_get_a_table_and_merge_that_reads_the_lookback_only() {
        let sql = bigquery_materialise("p", "curated", "mart", 5, &catalog());
        let merges: Vec<&str> = sql.matches("MERGE `p.mart.").collect();
        assert_eq!(merges.len(), 2, "{sql}");
        assert!(sql.contains("MERGE `p.mart.order_latest`"), "{sql}");
        assert!(sql.contains("MERGE `p.mart.inventory_latest`"), "{sql}");
        assert!(
            !sql.contains("user_activity"),
            "no key, nothing to keep the latest of"
        );
        assert!(
            sql.contains("FROM `p.curated.order` WHERE `order_date` >= TIMESTAMP_SUB(CURRENT_TIMESTAMP(), INTERVAL 5 DAY)"),
            "{sql}"
        );
        assert!(
            sql.contains("PARTITION BY DATE(`order_date`) CLUSTER BY `order_id`"),
            "{sql}"
        );
    }

    #[test]
    fn every_type_has_its_one_row_per_message_view_partitioned_by_its_time_field() {
        let views = bigquery();
        let names: Vec<&str> = views.iter().map(|v| v.name.as_str()).collect();
        assert_eq!(
            names,
            [
                "inventory",
                "inventory_latest",
                "order",
                "order_latest",
                "order_items",
                "user_activity",
                "dead_letter"
            ]
        );
        let order = view(&views, "order");
        assert!(
            order.starts_with("SELECT `event_type`, `order_id`,"),
            "{order}"
        );
        assert!(order.contains("FROM `p.raw.order` WHERE TRUE QUALIFY ROW_NUMBER() OVER (PARTITION BY `order_date`, `message_id` ORDER BY `received_at`, `landing_uri`) = 1"), "{order}");
        assert!(order.contains("`raw`"), "every column of the raw table");
    }

    #[test]
    fn the_latest_version_per_key_and_the_items_of_it() {
        let views = bigquery();
        assert_eq!(
            view(&views, "order_latest"),
            format!(
                "SELECT {} FROM `p.curated.order` WHERE TRUE QUALIFY ROW_NUMBER() OVER (PARTITION BY `order_id` ORDER BY `order_date` DESC, `publish_time` DESC, `message_id` DESC) = 1",
                all_columns(
                    &Dialect::Sqlite,
                    &catalog().event_type("order").unwrap().table
                )
                .replace('"', "`")
            )
        );
        assert_eq!(
            view(&views, "order_items"),
            "SELECT landfall_row.`order_id` AS `order_id`, landfall_row.`order_date` AS `order_date`, landfall_position AS `position`, \
             landfall_element.`product_id` AS `product_id`, landfall_element.`product_name` AS `product_name`, \
             landfall_element.`quantity` AS `quantity`, landfall_element.`price` AS `price` \
             FROM `p.curated.order_latest` AS landfall_row CROSS JOIN UNNEST(landfall_row.`items`) AS landfall_element WITH OFFSET AS landfall_position"
        );
    }

    #[test]
    fn dead_letters_that_landed_as_events_since_are_not_listed() {
        let views = bigquery();
        let dead = view(&views, "dead_letter");
        assert!(dead.contains("WHERE `message_id` NOT IN (SELECT `message_id` FROM `p.raw.inventory` UNION ALL SELECT `message_id` FROM `p.raw.order` UNION ALL SELECT `message_id` FROM `p.raw.user_activity`) QUALIFY"), "{dead}");
    }

    #[test]
    fn sqlite_views_rank_in_a_subquery_and_order_times_as_times() {
        let views = views(&Dialect::Sqlite, &catalog());
        let order = view(&views, "curated_order");
        assert!(order.contains("ROW_NUMBER() OVER (PARTITION BY \"order_date\", \"message_id\" ORDER BY julianday(\"received_at\"), \"landing_uri\") AS landfall_rank FROM \"order\") WHERE landfall_rank = 1"), "{order}");
        let items = view(&views, "curated_order_items");
        assert!(
            items
                .contains("json_extract(landfall_element.value, '$.\"quantity\"') AS \"quantity\""),
            "{items}"
        );
        assert!(items.ends_with("FROM \"curated_order_latest\" AS landfall_row, json_each(landfall_row.\"items\") AS landfall_element"), "{items}");
    }

    fn columns() -> Vec<Column> {
        catalog().event_type("order").unwrap().table.payload.clone()
    }

    fn problems(block: serde_json::Value) -> Vec<String> {
        let block: CuratedBlock = serde_json::from_value(block).unwrap();
        check(Some(&block), "order_date", &columns())
            .1
            .into_iter()
            .map(|f| format!("{}: {}", f.pointer, f.message))
            .collect()
    }

    #[test]
    fn a_block_that_names_what_cannot_serve_is_refused_at_its_pointer() {
        assert!(problems(serde_json::json!({"key": ["order_id"], "latest_by": "order_date", "flatten": ["items"]})).is_empty());
        assert_eq!(
            problems(
                serde_json::json!({"key": ["nope", "items", "shipping_address"], "latest_by": "status", "flatten": ["customer_id", "shipping_address"]})
            ),
            [
                "/x-landfall/curated/key/0: \"nope\" is not a top-level property",
                "/x-landfall/curated/key/1: \"items\" is a nested, repeated or JSON column; a key is a top-level scalar",
                "/x-landfall/curated/key/2: \"shipping_address\" is a nested, repeated or JSON column; a key is a top-level scalar",
                "/x-landfall/curated/latest_by: \"status\" must be a top-level timestamp, date or number to order versions by",
                "/x-landfall/curated/flatten/0: \"customer_id\" is not an array of objects (a repeated record), so there are no element rows to make",
                "/x-landfall/curated/flatten/1: \"shipping_address\" is not an array of objects (a repeated record), so there are no element rows to make",
            ]
        );
        assert_eq!(
            problems(serde_json::json!({"latest_by": "order_date"})),
            [
                "/x-landfall/curated/latest_by: latest_by orders the versions of a key: give a key too"
            ]
        );
    }
}
