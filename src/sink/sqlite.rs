//! The embedded raw layer: a SQLite file in WAL mode with the same tables as BigQuery.
//!
//! One connection, one transaction per batch, `synchronous=FULL` so a commit is on disk before
//! any request in it is acknowledged. `message_id` is UNIQUE and inserts skip conflicts, so a
//! redelivery finds its row and writes nothing.

use std::collections::HashMap;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::Context;
use async_trait::async_trait;
use rusqlite::Connection;
use rusqlite::types::Value as SqlValue;

use super::{Sink, SinkError, Written, on_blocking_thread};
use crate::event::Record;
use crate::event::validate::{Cell, format_timestamp};
use crate::schema::{TABLES, sqlite};

const NAME: &str = "warehouse";

pub struct SqliteWarehouse {
    // std Mutex: it is only ever held on a blocking thread, never across an await.
    connection: Arc<Mutex<Connection>>,
    inserts: Arc<HashMap<&'static str, String>>,
}

impl SqliteWarehouse {
    pub fn open(path: &Path, busy_timeout: Duration) -> anyhow::Result<Self> {
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
        for table in TABLES {
            connection
                .execute_batch(&sqlite::create_table(table))
                .with_context(|| format!("failed to create table {}", table.name))?;
        }
        let inserts = TABLES.iter().map(|t| (t.name, sqlite::insert(t))).collect();
        Ok(Self {
            connection: Arc::new(Mutex::new(connection)),
            inserts: Arc::new(inserts),
        })
    }
}

#[async_trait]
impl Sink for SqliteWarehouse {
    fn name(&self) -> &'static str {
        NAME
    }

    async fn write(&self, batch: &[Arc<Record>]) -> Vec<Result<Written, SinkError>> {
        let connection = self.connection.clone();
        let inserts = self.inserts.clone();
        let batch = batch.to_vec();
        on_blocking_thread(NAME, batch.len(), move || {
            let mut connection = connection.lock().unwrap_or_else(|p| p.into_inner());
            insert_batch(&mut connection, &inserts, &batch)
        })
        .await
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
    inserts: &HashMap<&'static str, String>,
    batch: &[Arc<Record>],
) -> anyhow::Result<Vec<Result<Written, SinkError>>> {
    let tx = connection
        .transaction()
        .context("failed to begin a transaction")?;
    let results = batch
        .iter()
        .map(|record| {
            insert(&tx, &inserts[record.table.name], record).map_err(|e| SinkError::new(NAME, &e))
        })
        .collect();
    tx.commit().context("failed to commit the batch")?;
    Ok(results)
}

fn insert(tx: &rusqlite::Transaction, sql: &str, record: &Record) -> anyhow::Result<Written> {
    let mut statement = tx
        .prepare_cached(sql)
        .with_context(|| format!("failed to prepare the insert into {}", record.table.name))?;
    let values = record.row.iter().map(|(_, cell)| sql_value(cell));
    let changed = statement
        .execute(rusqlite::params_from_iter(values))
        .with_context(|| format!("failed to insert message {}", record.message_id))?;
    Ok(if changed == 0 {
        Written::AlreadyPresent
    } else {
        Written::Created
    })
}

fn sql_value(cell: &Cell) -> SqlValue {
    match cell {
        Cell::Null => SqlValue::Null,
        Cell::Text(s) | Cell::Json(s) => SqlValue::Text(s.clone()),
        Cell::Int(i) => SqlValue::Integer(*i),
        Cell::Numeric(n) => n.as_f64().map_or(SqlValue::Null, SqlValue::Real),
        Cell::Timestamp(t) => SqlValue::Text(format_timestamp(t)),
        Cell::Nested(v) => SqlValue::Text(v.to_string()),
    }
}
