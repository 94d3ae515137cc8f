//! The embedded raw layer: a SQLite file in WAL mode with the same tables as BigQuery.
//!
//! One connection, one transaction per batch, `synchronous=FULL` so a commit is on disk before
//! any request in it is acknowledged. `message_id` is UNIQUE and inserts skip conflicts, so a
//! redelivery finds its row and writes nothing. A dead letter that names the event it would
//! have been is not written when that event's row exists (the message landed under an older
//! catalog), checked in the same transaction. At open, the tables follow the catalog: new
//! tables are created and new columns added; a difference that cannot be made in place stops
//! the start, naming the column.

use std::collections::{HashMap, HashSet};
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{Context, bail};
use async_trait::async_trait;
use rusqlite::types::Value as SqlValue;
use rusqlite::{Connection, Transaction};

use super::{Entry, Layer, Probe, Sink, SinkError, Written, blocking};
use crate::schema::cell::{JsonStyle, record_json};
use crate::schema::sqlite::{self, ExistingColumn};
use crate::schema::{Catalog, Cell, Column, ColumnType};
use crate::time::{format_date, format_timestamp};

const NAME: &str = "warehouse";

pub struct SqliteWarehouse {
    // std Mutex: it is only ever held on a blocking thread, never across an await.
    connection: Arc<Mutex<Connection>>,
    inserts: Arc<HashMap<String, String>>,
}

impl SqliteWarehouse {
    pub fn open(path: &Path, busy_timeout: Duration, catalog: &Catalog) -> anyhow::Result<Self> {
        let connection = Connection::open(path)
            .with_context(|| format!("failed to open SQLite database {}", path.display()))?;
        connection
            .busy_timeout(busy_timeout)
            .context("failed to set the busy timeout")?;
        connection
            .pragma_update(None, "journal_mode", "WAL")
            .context("failed to switch to WAL mode")?;
        connection
            .pragma_update(None, "synchronous", "FULL")
            .context("failed to set synchronous=FULL")?;
        evolve(&connection, catalog)
            .with_context(|| format!("the tables in {} do not fit the catalog", path.display()))?;
        let inserts = catalog
            .tables()
            .map(|t| (t.name.clone(), sqlite::insert(t)))
            .collect();
        Ok(Self {
            connection: Arc::new(Mutex::new(connection)),
            inserts: Arc::new(inserts),
        })
    }
}

/// What bringing a database to the catalog's shape takes.
pub struct Plan {
    /// In order: the curated views dropped, tables created or changed, the views created.
    statements: Vec<String>,
    /// One line per table that changes.
    pub changes: Vec<String>,
    /// What cannot change in place, one line per column.
    pub conflicts: Vec<String>,
}

/// Compares the database with the catalog: new tables and columns are added, columns no
/// longer required are relaxed, the curated views are made anew; anything else is a conflict.
pub fn plan(connection: &Connection, catalog: &Catalog) -> anyhow::Result<Plan> {
    let mut plan = Plan {
        statements: sqlite::views(catalog, &existing_views(connection)?)
            .into_iter()
            .filter(|s| s.starts_with("DROP"))
            .collect(),
        changes: Vec::new(),
        conflicts: Vec::new(),
    };
    for table in catalog.tables() {
        let existing = existing_columns(connection, &table.name)?;
        if existing.is_empty() {
            plan.statements.push(sqlite::create_table(table));
            plan.changes.push(format!("table {}: created", table.name));
            continue;
        }
        let evolution = sqlite::evolve(table, &existing);
        plan.changes.extend(evolution.describe(&table.name));
        plan.conflicts.extend(evolution.conflicts);
        plan.statements.extend(evolution.additions);
    }
    plan.statements.extend(
        sqlite::views(catalog, &[])
            .into_iter()
            .filter(|s| s.starts_with("CREATE")),
    );
    Ok(plan)
}

/// Brings the database to the catalog's shape in one transaction, or changes nothing.
fn evolve(connection: &Connection, catalog: &Catalog) -> anyhow::Result<()> {
    let plan = plan(connection, catalog)?;
    if !plan.conflicts.is_empty() {
        bail!("{}", plan.conflicts.join("; "));
    }
    for change in &plan.changes {
        tracing::info!(change = %change, "embedded warehouse brought up to the catalog");
    }
    let tx = connection
        .unchecked_transaction()
        .context("failed to begin the schema change")?;
    for statement in &plan.statements {
        tx.execute_batch(statement)
            .with_context(|| format!("failed to run {statement}"))?;
    }
    tx.commit().context("failed to commit the schema change")
}

fn existing_views(connection: &Connection) -> anyhow::Result<Vec<String>> {
    let mut statement = connection
        .prepare("SELECT name FROM sqlite_schema WHERE type = 'view'")
        .context("failed to read the view list")?;
    let names = statement
        .query_map([], |row| row.get(0))
        .context("failed to read the view list")?;
    names
        .collect::<Result<_, _>>()
        .context("failed to read the view list")
}

fn existing_columns(connection: &Connection, table: &str) -> anyhow::Result<Vec<ExistingColumn>> {
    let mut statement = connection
        .prepare("SELECT name, type, \"notnull\" FROM pragma_table_info(?1)")
        .context("failed to read the table list")?;
    let rows = statement
        .query_map([table], |row| {
            Ok(ExistingColumn {
                name: row.get(0)?,
                declared_type: row.get(1)?,
                not_null: row.get(2)?,
            })
        })
        .with_context(|| format!("failed to read the columns of {table}"))?;
    rows.collect::<Result<_, _>>()
        .with_context(|| format!("failed to read the columns of {table}"))
}

#[async_trait]
impl Sink for SqliteWarehouse {
    fn name(&self) -> &'static str {
        NAME
    }

    fn layer(&self) -> Layer {
        Layer::Warehouse
    }

    async fn write(&self, batch: &[Entry]) -> Vec<Result<Written, SinkError>> {
        let connection = self.connection.clone();
        let inserts = self.inserts.clone();
        let batch = batch.to_vec();
        blocking(NAME, batch.len(), move || {
            let mut connection = connection.lock().unwrap_or_else(|p| p.into_inner());
            insert_batch(&mut connection, &inserts, &batch)
        })
        .await
    }

    async fn find(&self, probes: &[Probe]) -> Option<Result<HashSet<String>, SinkError>> {
        let connection = self.connection.clone();
        let probes = probes.to_vec();
        let found = tokio::task::spawn_blocking(move || {
            let connection = connection.lock().unwrap_or_else(|p| p.into_inner());
            probes
                .iter()
                .filter_map(|p| match holds(&connection, &p.table.name, &p.message_id) {
                    Ok(true) => Some(Ok(p.message_id.clone())),
                    Ok(false) => None,
                    Err(e) => Some(Err(e)),
                })
                .collect::<anyhow::Result<HashSet<String>>>()
        })
        .await
        .map_err(anyhow::Error::from)
        .and_then(|r| r)
        .map_err(|e| SinkError::new(NAME, &e));
        Some(found)
    }

    async fn check(&self) -> Result<(), SinkError> {
        let connection = self.connection.clone();
        tokio::task::spawn_blocking(move || {
            let connection = connection.lock().unwrap_or_else(|p| p.into_inner());
            // Taking the write lock proves the database is writable, not merely readable.
            connection
                .execute_batch("BEGIN IMMEDIATE; ROLLBACK;")
                .context("the warehouse cannot take a write lock")
        })
        .await
        .map_err(anyhow::Error::from)
        .and_then(|r| r)
        .map_err(|e| SinkError::new(NAME, &e))
    }
}

fn insert_batch(
    connection: &mut Connection,
    inserts: &HashMap<String, String>,
    batch: &[Entry],
) -> anyhow::Result<Vec<Result<Written, SinkError>>> {
    let tx = connection
        .transaction()
        .context("failed to begin a transaction")?;
    let results = batch
        .iter()
        .map(|entry| {
            write(&tx, &inserts[&entry.record.table.name], entry)
                .map_err(|e| SinkError::new(NAME, &e))
        })
        .collect();
    tx.commit().context("failed to commit the batch")?;
    Ok(results)
}

fn write(tx: &Transaction, sql: &str, entry: &Entry) -> anyhow::Result<Written> {
    if entry.needs_prior_lookup()
        && let Some(prior) = entry.record.prior()
        && holds(tx, &prior.table.name, entry.record.message_id())?
    {
        return Ok(Written::LandedAsEvent(None));
    }
    let record = &entry.record;
    let mut statement = tx
        .prepare_cached(sql)
        .with_context(|| format!("failed to prepare the insert into {}", record.table.name))?;
    let values = record
        .table
        .columns()
        .zip(entry.cells())
        .map(|(column, cell)| sql_value(column, &cell));
    let changed = statement
        .execute(rusqlite::params_from_iter(values))
        .with_context(|| format!("failed to insert message {}", record.message_id()))?;
    Ok(if changed == 0 {
        Written::AlreadyPresent
    } else {
        Written::Created
    })
}

/// Whether `table` has a row for `message_id` (its UNIQUE index answers).
fn holds(connection: &Connection, table: &str, message_id: &str) -> anyhow::Result<bool> {
    let sql = format!("SELECT 1 FROM \"{table}\" WHERE message_id = ?1");
    let mut statement = connection
        .prepare_cached(&sql)
        .with_context(|| format!("failed to prepare a lookup in {table}"))?;
    statement
        .exists([message_id])
        .with_context(|| format!("failed to look for message {message_id} in {table}"))
}

fn sql_value(column: &Column, cell: &Cell) -> SqlValue {
    match cell {
        Cell::Null => SqlValue::Null,
        Cell::String(s) | Cell::Json(s) => SqlValue::Text(s.clone()),
        Cell::Int(i) => SqlValue::Integer(*i),
        Cell::Bool(b) => SqlValue::Integer(i64::from(*b)),
        Cell::Float(f) => SqlValue::Real(*f),
        Cell::Numeric(n) => n.as_f64().map_or(SqlValue::Null, SqlValue::Real),
        Cell::Timestamp(t) => SqlValue::Text(format_timestamp(t)),
        Cell::Date(d) => SqlValue::Text(format_date(d)),
        Cell::Record(cells) => match &column.ty {
            ColumnType::Record(columns) => {
                SqlValue::Text(record_json(columns, cells, JsonStyle::Document).to_string())
            }
            _ => SqlValue::Null,
        },
        Cell::Repeated(_) => {
            SqlValue::Text(cell.to_json(&column.ty, JsonStyle::Document).to_string())
        }
    }
}
