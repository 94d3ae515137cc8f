//! Loading and checking a catalog: a folder of JSON Schema files, one per event type, or the
//! catalog shipped inside the binary (`schemas/` at the repository root).
//!
//! Every problem is reported with its file and JSON pointer, all at once, so that
//! `landfall schema check` and a refused `landfall serve` say the same thing.

use std::collections::HashMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use include_dir::{Dir, include_dir};
use jsonschema::Validator;
use serde::Deserialize;
use serde_json::Value;

use super::cell::payload_cells;
use super::columns::{self, Finding, escape};
use super::curated;
use super::metadata::{self, DEAD_LETTER_TABLE, EVENT_METADATA};
use super::validate::{self, Violation};
use super::{Cell, Column, ColumnType, Mode, Table};

static SHIPPED: Dir = include_dir!("$CARGO_MANIFEST_DIR/schemas");
const DRAFT_2020_12: &str = "https://json-schema.org/draft/2020-12/schema";
const MAX_CLUSTER_COLUMNS: usize = 4;

/// Where the catalog comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CatalogSource {
    /// The three seed types, embedded at build time.
    Shipped,
    /// Every `*.json` file directly in this folder (`--schemas`).
    Folder(PathBuf),
}

/// One event type: its schema compiled once, and its table.
pub struct EventType {
    pub name: Arc<str>,
    pub table: Arc<Table>,
    /// The catalog file it came from, for messages.
    pub file: String,
    /// Where `schema check` saw a JSON column instead of a typed one, and why.
    pub notes: Vec<Finding>,
    time_index: usize,
    validator: Validator,
}

impl fmt::Debug for EventType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EventType")
            .field("name", &self.name)
            .field("table", &self.table.name)
            .finish()
    }
}

/// A valid payload, ready to become a row.
pub struct Typed {
    /// One cell per payload column.
    pub cells: Vec<Cell>,
    /// The time field's value: it partitions the landing path and the table.
    pub time: chrono::DateTime<chrono::Utc>,
}

impl EventType {
    /// Checks a payload against the schema and takes its typed cells.
    pub fn validate(&self, payload: &Value) -> Result<Typed, Violation> {
        if let Some(violation) = validate::first_violation(&self.validator, payload) {
            return Err(violation);
        }
        let object = payload
            .as_object()
            .ok_or_else(|| Violation::new("", "must be an object", "type"))?;
        let cells = payload_cells(&self.table.payload, object, "")?;
        let time = match &cells[self.time_index] {
            Cell::Timestamp(t) => *t,
            _ => unreachable!("the time field is a required TIMESTAMP, checked at load"),
        };
        Ok(Typed { cells, time })
    }
}

/// Every event type of a catalog, and the dead-letter table beside them.
#[derive(Debug)]
pub struct Catalog {
    types: Vec<Arc<EventType>>,
    by_name: HashMap<Arc<str>, usize>,
    dead_letter: Arc<Table>,
}

impl Catalog {
    pub fn load(source: &CatalogSource) -> Result<Catalog, CatalogError> {
        let files = match source {
            CatalogSource::Shipped => shipped_files(),
            CatalogSource::Folder(dir) => folder_files(dir)?,
        };
        build(files)
    }

    /// A catalog from files given as (name, text), as a folder would hold them.
    pub fn from_files(files: Vec<(String, String)>) -> Result<Catalog, CatalogError> {
        build(
            files
                .into_iter()
                .map(|(name, text)| File { name, text })
                .collect(),
        )
    }

    pub fn event_type(&self, name: &str) -> Option<&Arc<EventType>> {
        self.by_name.get(name).map(|&i| &self.types[i])
    }

    pub fn event_types(&self) -> &[Arc<EventType>] {
        &self.types
    }

    pub fn dead_letter(&self) -> &Arc<Table> {
        &self.dead_letter
    }

    /// Every table landfall writes: one per event type, then the dead letter.
    pub fn tables(&self) -> impl Iterator<Item = &Arc<Table>> {
        self.types
            .iter()
            .map(|t| &t.table)
            .chain(std::iter::once(&self.dead_letter))
    }

    pub fn names(&self) -> Vec<&str> {
        self.types.iter().map(|t| t.name.as_ref()).collect()
    }
}

/// A catalog that cannot be used: every problem found, each naming its file and pointer.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub struct CatalogError {
    pub problems: Vec<Problem>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Problem {
    pub file: String,
    /// JSON pointer inside the file; empty for the whole file.
    pub pointer: String,
    pub message: String,
}

impl fmt::Display for Problem {
    /// `file#/pointer: message` for a place inside a file; `file: message` for the file (or
    /// folder) as a whole.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.pointer.as_str() {
            "" => write!(f, "{}: {}", self.file, self.message),
            pointer => write!(f, "{}#{pointer}: {}", self.file, self.message),
        }
    }
}

impl fmt::Display for CatalogError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let lines: Vec<String> = self.problems.iter().map(Problem::to_string).collect();
        write!(
            f,
            "the event catalog is not usable:\n  {}",
            lines.join("\n  ")
        )
    }
}

impl CatalogError {
    fn one(file: &str, pointer: &str, message: impl Into<String>) -> Self {
        CatalogError {
            problems: vec![Problem {
                file: file.to_string(),
                pointer: pointer.to_string(),
                message: message.into(),
            }],
        }
    }
}

/// A file's name (as messages show it) and its text.
struct File {
    name: String,
    text: String,
}

fn shipped_files() -> Vec<File> {
    let mut files: Vec<File> = SHIPPED
        .files()
        .filter(|f| f.path().extension().is_some_and(|e| e == "json"))
        .map(|f| File {
            name: format!("schemas/{}", f.path().display()),
            text: f.contents_utf8().unwrap_or_default().to_string(),
        })
        .collect();
    files.sort_by(|a, b| a.name.cmp(&b.name));
    files
}

fn folder_files(dir: &Path) -> Result<Vec<File>, CatalogError> {
    let shown = dir.display().to_string();
    let entries = std::fs::read_dir(dir).map_err(|e| {
        let problem = match e.kind() {
            std::io::ErrorKind::NotFound => "no such folder".to_string(),
            std::io::ErrorKind::NotADirectory => "is a file, not a folder of schema files".into(),
            std::io::ErrorKind::PermissionDenied => "cannot be read (permission denied)".into(),
            _ => format!("cannot be read ({e})"),
        };
        CatalogError::one(&shown, "", problem)
    })?;
    let mut paths: Vec<PathBuf> = entries
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.is_file() && p.extension().is_some_and(|e| e == "json"))
        .collect();
    paths.sort();
    let mut problems = Vec::new();
    let mut files = Vec::new();
    for path in paths {
        let name = path.display().to_string();
        match std::fs::read_to_string(&path) {
            Ok(text) => files.push(File { name, text }),
            Err(e) => {
                problems.extend(CatalogError::one(&name, "", format!("cannot read: {e}")).problems)
            }
        }
    }
    if files.is_empty() && problems.is_empty() {
        return Err(CatalogError::one(
            &shown,
            "",
            "holds no *.json schema files",
        ));
    }
    if problems.is_empty() {
        Ok(files)
    } else {
        Err(CatalogError { problems })
    }
}

fn build(files: Vec<File>) -> Result<Catalog, CatalogError> {
    let mut problems = Vec::new();
    let mut types: Vec<Arc<EventType>> = Vec::new();
    for file in files {
        match event_type(&file) {
            Ok(t) => types.push(Arc::new(t)),
            Err(found) => problems.extend(found.into_iter().map(|f| Problem {
                file: file.name.clone(),
                pointer: f.pointer,
                message: f.message,
            })),
        }
    }
    problems.extend(duplicates(&types));
    if !problems.is_empty() {
        return Err(CatalogError { problems });
    }
    let by_name = types
        .iter()
        .enumerate()
        .map(|(i, t)| (t.name.clone(), i))
        .collect();
    Ok(Catalog {
        types,
        by_name,
        dead_letter: metadata::dead_letter_table(),
    })
}

/// Two files may not claim one event type or one table (tables compared case-insensitively:
/// SQLite's names are).
fn duplicates(types: &[Arc<EventType>]) -> Vec<Problem> {
    let mut problems = Vec::new();
    for (i, t) in types.iter().enumerate() {
        for earlier in &types[..i] {
            if earlier.name == t.name {
                problems.push(Problem {
                    file: t.file.clone(),
                    pointer: "/x-landfall/event_type".into(),
                    message: format!(
                        "event type {:?} is also defined by {}",
                        t.name, earlier.file
                    ),
                });
            }
            if earlier.table.name.eq_ignore_ascii_case(&t.table.name) {
                problems.push(Problem {
                    file: t.file.clone(),
                    pointer: "/x-landfall/table".into(),
                    message: format!(
                        "table {:?} is also written by {}",
                        t.table.name, earlier.file
                    ),
                });
            }
        }
    }
    problems
}

/// The landfall block of a catalog file.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Block {
    event_type: String,
    table: Option<String>,
    time_field: String,
    #[serde(default)]
    cluster_by: Vec<String>,
    curated: Option<curated::CuratedBlock>,
}

fn finding(pointer: &str, message: impl Into<String>) -> Finding {
    Finding {
        pointer: pointer.to_string(),
        message: message.into(),
    }
}

fn event_type(file: &File) -> Result<EventType, Vec<Finding>> {
    let doc: Value = serde_json::from_str(&file.text)
        .map_err(|e| vec![finding("", format!("not JSON: {e}"))])?;
    check_draft(&doc)?;
    let block = landfall_block(&doc)?;
    let derived = columns::derive(&doc);
    let mut problems = derived.problems;
    problems.extend(check_root(&doc));
    problems.extend(check_names(&block));
    problems.extend(check_reserved(&derived.columns));
    let time_index = check_time_field(&doc, &block, &derived.columns, &mut problems);
    problems.extend(check_cluster_by(&block, &derived.columns));
    let (curated, found) =
        curated::check(block.curated.as_ref(), &block.time_field, &derived.columns);
    problems.extend(found);
    let validator = validate::compile(&doc).map_err(|e| {
        let mut all = problems.clone();
        all.push(finding(
            e.instance_path().as_str(),
            format!("not a valid schema: {e}"),
        ));
        all
    })?;
    if !problems.is_empty() {
        return Err(problems);
    }
    let table = Table {
        name: block
            .table
            .clone()
            .unwrap_or_else(|| block.event_type.clone()),
        description: doc
            .get("description")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string(),
        payload: derived.columns,
        metadata: &EVENT_METADATA,
        partition_by: block.time_field.clone(),
        cluster_by: block.cluster_by.clone(),
        curated: Some(curated),
    };
    Ok(EventType {
        name: block.event_type.as_str().into(),
        table: Arc::new(table),
        file: file.name.clone(),
        notes: derived.notes,
        time_index: time_index.expect("no problems means the time field was found"),
        validator,
    })
}

/// Draft 2020-12 only, and a valid one: publishers validate with the same file elsewhere.
fn check_draft(doc: &Value) -> Result<(), Vec<Finding>> {
    if let Some(declared) = doc.get("$schema").and_then(Value::as_str)
        && declared.trim_end_matches('#') != DRAFT_2020_12
    {
        return Err(vec![finding(
            "/$schema",
            format!("landfall reads JSON Schema draft 2020-12 ({DRAFT_2020_12}), not {declared}"),
        )]);
    }
    let problems: Vec<Finding> = jsonschema::draft202012::meta::validator()
        .iter_errors(doc)
        .map(|e| {
            finding(
                e.instance_path().as_str(),
                format!("not a valid 2020-12 schema: {e}"),
            )
        })
        .collect();
    if problems.is_empty() {
        Ok(())
    } else {
        Err(problems)
    }
}

fn landfall_block(doc: &Value) -> Result<Block, Vec<Finding>> {
    let block = doc.get("x-landfall").ok_or_else(|| {
        vec![finding(
            "",
            "has no \"x-landfall\" block (event_type, time_field)",
        )]
    })?;
    serde_json::from_value(block.clone()).map_err(|e| {
        vec![finding(
            "/x-landfall",
            format!("is not a landfall block: {e}"),
        )]
    })
}

fn check_root(doc: &Value) -> Vec<Finding> {
    let is_object = doc.get("type") == Some(&Value::String("object".into()));
    let has_properties = doc
        .get("properties")
        .and_then(Value::as_object)
        .is_some_and(|p| !p.is_empty());
    if is_object && has_properties {
        Vec::new()
    } else {
        vec![finding(
            "",
            "must be an object schema (\"type\": \"object\") with \"properties\"",
        )]
    }
}

/// The event type is a path segment of every landing object; the table a SQL identifier.
fn check_names(block: &Block) -> Vec<Finding> {
    let mut problems = Vec::new();
    let segment_ok = |s: &str| {
        !s.is_empty()
            && s.len() <= 64
            && !s.starts_with(['_', '.', '-'])
            && s.chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
    };
    if !segment_ok(&block.event_type) {
        problems.push(finding(
            "/x-landfall/event_type",
            format!(
                "{:?} must be 1 to 64 letters, digits, `_` or `-`, not starting with `_` or `-`",
                block.event_type
            ),
        ));
    }
    if let Some(table) = &block.table {
        let table_ok = table.len() <= 1024
            && table.starts_with(|c: char| c.is_ascii_alphabetic() || c == '_')
            && table.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
        if !table_ok {
            problems.push(finding(
                "/x-landfall/table",
                format!("{table:?} must be letters, digits and `_`, not starting with a digit"),
            ));
        }
    }
    let table = block.table.as_deref().unwrap_or(&block.event_type);
    if table.eq_ignore_ascii_case(DEAD_LETTER_TABLE) {
        problems.push(finding(
            if block.table.is_some() {
                "/x-landfall/table"
            } else {
                "/x-landfall/event_type"
            },
            format!("table {table:?} is landfall's own dead letter"),
        ));
    }
    problems
}

fn check_reserved(columns: &[Column]) -> Vec<Finding> {
    columns
        .iter()
        .filter(|c| metadata::reserved_column(&c.name))
        .map(|c| {
            finding(
                &format!("/properties/{}", escape(&c.name)),
                format!(
                    "{:?} is a column landfall adds to every row; rename the field",
                    c.name
                ),
            )
        })
        .collect()
}

/// The time field partitions the landing path and the table, so every event must have one.
fn check_time_field(
    doc: &Value,
    block: &Block,
    columns: &[Column],
    problems: &mut Vec<Finding>,
) -> Option<usize> {
    let pointer = "/x-landfall/time_field";
    let name = &block.time_field;
    let Some(index) = columns.iter().position(|c| c.name == *name) else {
        problems.push(finding(
            pointer,
            format!("{name:?} is not a top-level property"),
        ));
        return None;
    };
    let required = doc
        .get("required")
        .and_then(Value::as_array)
        .is_some_and(|r| r.iter().any(|v| v == name.as_str()));
    let column = &columns[index];
    if !required || column.ty != ColumnType::Timestamp || column.mode != Mode::Required {
        problems.push(finding(
            pointer,
            format!("{name:?} must be a required, non-null string with \"format\": \"date-time\""),
        ));
        return None;
    }
    Some(index)
}

fn check_cluster_by(block: &Block, columns: &[Column]) -> Vec<Finding> {
    let mut problems = Vec::new();
    if block.cluster_by.len() > MAX_CLUSTER_COLUMNS {
        problems.push(finding(
            "/x-landfall/cluster_by",
            format!(
                "names {} columns; BigQuery clusters on at most {MAX_CLUSTER_COLUMNS}",
                block.cluster_by.len()
            ),
        ));
    }
    for (i, name) in block.cluster_by.iter().enumerate() {
        let pointer = format!("/x-landfall/cluster_by/{i}");
        match columns.iter().find(|c| c.name == *name) {
            None => problems.push(finding(&pointer, format!("{name:?} is not a top-level property"))),
            Some(c) if !c.can_cluster() => problems.push(finding(
                &pointer,
                format!("{name:?} is a nested, repeated, JSON or FLOAT64 column; clustering needs a top-level scalar"),
            )),
            Some(_) => {}
        }
    }
    problems
}
