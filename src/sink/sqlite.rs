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

use super::{Access, Entry, Layer, Probe, Sink, SinkError, Unusable, Written, blocking};
use crate::schema::cell::{JsonStyle, record_json};
use crate::schema::sqlite::{self, ExistingColumn};
use crate::schema::{Catalog, Cell, Column, ColumnType};
use crate::telemetry::said::said;
use crate::time::{format_date, format_timestamp};

const NAME: &str = "warehouse";

pub struct SqliteWarehouse {
    // std Mutex: it is only ever held on a blocking thread, never across an await.
    connection: Arc<Mutex<Connection>>,
    inserts: Arc<HashMap<String, String>>,
    /// The file at the path, as opened: a commit into another (a deleted or replaced file, a
    /// moved folder) would be lost at the next start, so it is refused. `None` for the empty
    /// warehouse a dry run reads when there is none.
    file: Option<Arc<FileIdentity>>,
    /// Why the last batch failed to be written, until one is written again.
    last_failure: Arc<Mutex<Option<String>>>,
}

/// A file by its device, inode and birth time, and the path it was opened at. The birth time
/// tells a new file from a deleted one whose inode number the filesystem gave out again.
#[derive(Debug)]
pub struct FileIdentity {
    path: std::path::PathBuf,
    key: IdentityKey,
}

type IdentityKey = (u64, u64, Option<std::time::SystemTime>);

fn identity_key(metadata: &std::fs::Metadata) -> IdentityKey {
    use std::os::unix::fs::MetadataExt;
    (metadata.dev(), metadata.ino(), metadata.created().ok())
}

impl FileIdentity {
    pub fn of(path: &Path) -> anyhow::Result<Self> {
        let metadata =
            std::fs::metadata(path).with_context(|| format!("cannot read {}", path.display()))?;
        Ok(Self {
            path: path.to_path_buf(),
            key: identity_key(&metadata),
        })
    }

    /// `Err` unless the path still names the very file opened.
    pub fn check(&self) -> anyhow::Result<()> {
        let same = std::fs::metadata(&self.path).is_ok_and(|m| identity_key(&m) == self.key);
        if !same {
            bail!(
                "{} is gone or was replaced (deleted, moved, or its folder moved) since landfall \
                 opened it: what is written now would be lost; restart landfall",
                self.path.display()
            );
        }
        Ok(())
    }
}

impl SqliteWarehouse {
    /// The warehouse at `path`. `serve` creates it or brings its tables up to the catalog; a
    /// repair run creates it when missing but refuses one whose tables differ (a server with
    /// another catalog may be running over it); a dry run opens it read-only, or reads an
    /// empty one in memory when there is none.
    pub fn open(
        path: &Path,
        busy_timeout: Duration,
        catalog: &Catalog,
        access: Access,
    ) -> anyhow::Result<Self> {
        let exists = path.exists();
        let connection = match (access, exists) {
            (Access::ReadOnly, false) => Connection::open_in_memory()
                .context("failed to open an empty warehouse in memory")?,
            (Access::ReadOnly, true) => {
                let flags = rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY;
                Connection::open_with_flags(path, flags)
                    .with_context(|| format!("failed to open {} to read", path.display()))?
            }
            (Access::Serve | Access::Repair, _) => writable(path, busy_timeout)?,
        };
        if access == Access::Serve || !exists {
            evolve(&connection, catalog).map_err(|e| {
                Unusable(format!(
                    "the tables in {} do not fit the catalog: {}",
                    path.display(),
                    said(&e)
                ))
            })?;
        } else {
            unchanged(&connection, catalog, path)?;
        }
        let inserts = catalog
            .tables()
            .map(|t| (t.name.clone(), sqlite::insert(t)))
            .collect();
        let file = match exists || access != Access::ReadOnly {
            true => Some(Arc::new(FileIdentity::of(path)?)),
            false => None,
        };
        Ok(Self {
            connection: Arc::new(Mutex::new(connection)),
            inserts: Arc::new(inserts),
            file,
            last_failure: Arc::new(Mutex::new(None)),
        })
    }
}

fn writable(path: &Path, busy_timeout: Duration) -> anyhow::Result<Connection> {
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
    Ok(connection)
}

/// Refuses a database whose tables are not the catalog's: only `serve` changes them.
fn unchanged(connection: &Connection, catalog: &Catalog, path: &Path) -> anyhow::Result<()> {
    let plan = plan(connection, catalog)?;
    let differences: Vec<&String> = plan.changes.iter().chain(&plan.conflicts).collect();
    if differences.is_empty() {
        return Ok(());
    }
    let differences: Vec<&str> = differences.iter().map(|d| d.as_str()).collect();
    Err(Unusable(format!(
        "the tables in {} are not the catalog's ({}): start serve with this catalog first (it \
         brings them up to it), or give this command the catalog serve runs with",
        path.display(),
        differences.join("; ")
    ))
    .into())
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
        let (file, last_failure) = (self.file.clone(), self.last_failure.clone());
        let batch = batch.to_vec();
        blocking(NAME, batch.len(), move || {
            let mut connection = connection.lock().unwrap_or_else(|p| p.into_inner());
            let written = check_file(file.as_deref())
                .and_then(|()| insert_batch(&mut connection, &inserts, &batch));
            *last_failure.lock().unwrap_or_else(|p| p.into_inner()) =
                written.as_ref().err().map(said);
            written
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

    /// Ready when the file opened is still the one at the path, its disk has room, the last
    /// batch was written (a full disk fails writes while reads and locks still work), and the
    /// write lock can be taken within [`CHECK_LOCK_TIMEOUT`] (another process may hold it).
    /// Through a connection of its own, so that a probe never waits behind the writer.
    async fn check(&self) -> Result<(), SinkError> {
        let (file, last_failure) = (self.file.clone(), self.last_failure.clone());
        tokio::task::spawn_blocking(move || -> anyhow::Result<()> {
            let Some(file) = file else {
                return Ok(());
            };
            file.check()?;
            check_free_space(&file.path)?;
            if let Some(failure) = last_failure
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .clone()
            {
                bail!("the last batch could not be written: {failure}");
            }
            let probe = Connection::open_with_flags(
                &file.path,
                rusqlite::OpenFlags::SQLITE_OPEN_READ_WRITE,
            )
            .context("cannot open the warehouse")?;
            probe.busy_timeout(CHECK_LOCK_TIMEOUT)?;
            // Taking the write lock proves the database is writable, not merely readable.
            probe
                .execute_batch("BEGIN IMMEDIATE; ROLLBACK;")
                .context("the warehouse cannot take a write lock")
        })
        .await
        .map_err(anyhow::Error::from)
        .and_then(|r| r)
        .map_err(|e| SinkError::new(NAME, &e))
    }
}

fn check_file(file: Option<&FileIdentity>) -> anyhow::Result<()> {
    file.map_or(Ok(()), FileIdentity::check)
}

/// How long a readiness probe waits for the write lock: well within a probe's timeout.
const CHECK_LOCK_TIMEOUT: Duration = Duration::from_millis(500);

/// A disk with less room than this cannot take a batch.
const LEAST_FREE_BYTES: u64 = 1 << 20;

fn check_free_space(path: &Path) -> anyhow::Result<()> {
    let folder = path.parent().unwrap_or(Path::new("."));
    let stat = rustix::fs::statvfs(folder)
        .map_err(std::io::Error::from)
        .with_context(|| format!("cannot read the free space of {}", folder.display()))?;
    let free = stat.f_bavail.saturating_mul(stat.f_frsize);
    if free < LEAST_FREE_BYTES {
        bail!("the disk holding {} is full", folder.display());
    }
    Ok(())
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
