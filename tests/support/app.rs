//! landfall in the test's own process: built from a command line (never from the environment)
//! with its own data folder, serving on port 0, driven over HTTP.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::time::Duration;

use landfall::startup::{Application, Config};
use reqwest::Response;
use rusqlite::types::Value as SqlValue;
use serde_json::Value;
use tempfile::TempDir;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use super::fixtures::fixture;
use super::metrics::{self, Sample};
use super::poll;

pub struct TestApp {
    pub address: String,
    pub data_dir: TempDir,
    pub client: reqwest::Client,
    stop: Option<oneshot::Sender<()>>,
    server: Option<JoinHandle<anyhow::Result<()>>>,
}

/// Settings as the command line alone would give them, plus the test's folder and port 0.
pub fn config(data_dir: &Path, extra: &[&str]) -> Config {
    let mut argv = vec![
        "landfall".to_string(),
        "--host".into(),
        "127.0.0.1".into(),
        "--port".into(),
        "0".into(),
        "--data-dir".into(),
        data_dir.display().to_string(),
    ];
    argv.extend(extra.iter().map(|s| s.to_string()));
    landfall::config::serve_config(argv).expect("test configuration is valid")
}

pub async fn spawn_app() -> TestApp {
    spawn_app_with(&[]).await
}

pub async fn spawn_app_with(extra: &[&str]) -> TestApp {
    let data_dir = tempfile::tempdir().expect("temp dir");
    let config = config(data_dir.path(), extra);
    spawn_with_config(config, data_dir).await
}

pub async fn spawn_with_config(config: Config, data_dir: TempDir) -> TestApp {
    init_logs();
    let app = Application::build(config).await.expect("app builds");
    let address = format!("http://127.0.0.1:{}", app.port());
    let (stop, stopped) = oneshot::channel::<()>();
    let server = tokio::spawn(app.run_until_stopped(async move {
        let _ = stopped.await;
    }));
    TestApp {
        address,
        data_dir,
        client: reqwest::Client::new(),
        stop: Some(stop),
        server: Some(server),
    }
}

fn init_logs() {
    static ONCE: OnceLock<()> = OnceLock::new();
    ONCE.get_or_init(|| {
        if std::env::var_os("TEST_LOG").is_some() {
            landfall::telemetry::init(
                landfall::telemetry::LogFormat::Text,
                None,
                landfall::telemetry::LogTo::Stdout,
            );
        }
    });
}

impl TestApp {
    pub async fn post_push(&self, body: impl Into<reqwest::Body>) -> Response {
        self.client
            .post(format!("{}/push", self.address))
            .header("content-type", "application/json")
            .body(body)
            .send()
            .await
            .expect("request is sent")
    }

    pub async fn push_fixture(&self, name: &str) -> Response {
        self.post_push(fixture(name)).await
    }

    pub async fn push_json(&self, body: &Value) -> Response {
        self.post_push(body.to_string()).await
    }

    pub async fn get(&self, path: &str) -> Response {
        self.client
            .get(format!("{}{path}", self.address))
            .send()
            .await
            .expect("request is sent")
    }

    pub fn landing_root(&self) -> PathBuf {
        self.data_dir.path().join("landing")
    }

    /// Every landed object name, sorted (temporary files would show up here too), but for
    /// the layout record (`output/_landfall/layout.json`). The landing folder must exist: a
    /// check that nothing landed is only worth something where something could have.
    pub fn landed_objects(&self) -> Vec<String> {
        landed_objects(&self.landing_root())
    }

    pub fn read_object(&self, name: &str) -> Vec<u8> {
        std::fs::read(self.landing_root().join(name)).unwrap_or_else(|e| panic!("{name}: {e}"))
    }

    /// Runs a query on the embedded warehouse through a connection of its own.
    pub fn query(&self, sql: &str) -> Vec<Vec<SqlValue>> {
        query(self.data_dir.path(), sql)
    }

    pub fn count(&self, table: &str) -> i64 {
        match self.query(&format!("SELECT COUNT(*) FROM \"{table}\""))[0][0] {
            SqlValue::Integer(n) => n,
            ref other => panic!("count is {other:?}"),
        }
    }

    /// Every row of every table holds a message whose landing object exists and holds it.
    pub fn assert_no_row_without_its_object(&self) {
        assert_no_row_without_its_object(self.data_dir.path());
    }

    /// Stops this app and starts another over the same data folder, with these flags.
    pub async fn restart(mut self, extra: &[&str]) -> TestApp {
        self.shutdown().await;
        let data_dir = std::mem::replace(&mut self.data_dir, tempfile::tempdir().unwrap());
        let config = config(data_dir.path(), extra);
        spawn_with_config(config, data_dir).await
    }

    /// Starts another app over the same data folder with these flags, as a start would:
    /// `Err` with the reason when it refuses.
    pub async fn start_again(&self, extra: &[&str]) -> anyhow::Result<Application> {
        Application::build(config(self.data_dir.path(), extra)).await
    }

    /// Every line of every batch object (`*.jsonl`), with the object it is in.
    pub fn landed_lines(&self) -> Vec<(String, Value)> {
        let mut lines = Vec::new();
        for name in self.landed_objects() {
            assert!(name.ends_with(".jsonl"), "{name} is not a batch object");
            lines.extend(
                batch_lines(&name, &self.read_object(&name))
                    .into_iter()
                    .map(|l| (name.clone(), l)),
            );
        }
        lines
    }

    /// Stops the server and keeps the data folder, for commands run over it afterwards.
    pub async fn stop_in_place(&mut self) {
        self.shutdown().await;
    }

    async fn shutdown(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(server) = self.server.take() {
            server.await.unwrap().unwrap();
        }
    }

    /// Stops the server the way a signal would and waits for it to drain.
    pub async fn stop(mut self) {
        self.shutdown().await;
    }

    pub fn metrics_url(&self) -> String {
        format!("{}/metrics", self.address)
    }

    /// Waits until `/metrics` shows this many pushes in flight.
    pub async fn wait_for_in_flight(&self, pushes: f64) {
        metrics::wait_for_in_flight(&self.metrics_url(), pushes).await;
    }

    pub async fn wait_until_ready(&self) {
        poll::until("the app is ready", Duration::from_secs(20), || async {
            let response = self.get("/readyz").await;
            match response.status().as_u16() {
                200 => Ok(()),
                other => Err(format!("{other}: {}", response.text().await.unwrap())),
            }
        })
        .await
    }

    /// `/metrics`, read by the official Prometheus parser.
    pub async fn scrape(&self) -> Vec<Sample> {
        metrics::scrape(&self.metrics_url()).await
    }
}

/// Every object name under a landing folder, sorted, but for the layout record.
pub fn landed_objects(root: &Path) -> Vec<String> {
    landed_files(root).into_keys().collect()
}

/// Every object under a landing folder, by name, with its bytes, but for the layout record.
pub fn landed_files(root: &Path) -> BTreeMap<String, Vec<u8>> {
    assert!(root.is_dir(), "no landing folder at {}", root.display());
    let mut files = files_under(root);
    files.retain(|name, _| !name.contains("/_landfall/"));
    files
}

/// Every file under `dir`, named relative to it, with its bytes.
pub fn files_under(dir: &Path) -> BTreeMap<String, Vec<u8>> {
    let mut files = BTreeMap::new();
    let mut folders = vec![dir.to_path_buf()];
    while let Some(folder) = folders.pop() {
        let entries =
            std::fs::read_dir(&folder).unwrap_or_else(|e| panic!("{}: {e}", folder.display()));
        for path in entries.map(|entry| entry.unwrap().path()) {
            if path.is_dir() {
                folders.push(path);
            } else {
                let name = path.strip_prefix(dir).unwrap().display().to_string();
                files.insert(name, std::fs::read(&path).unwrap());
            }
        }
    }
    files
}

/// The lines of a batch object, which must be complete: every line JSON, the last one ended.
pub fn batch_lines(name: &str, body: &[u8]) -> Vec<Value> {
    assert_eq!(
        body.last(),
        Some(&b'\n'),
        "{name} does not end with a newline"
    );
    body[..body.len() - 1]
        .split(|b| *b == b'\n')
        .map(|line| {
            serde_json::from_slice(line)
                .unwrap_or_else(|e| panic!("{name} holds a line that is not JSON: {e}"))
        })
        .collect()
}

/// Runs a query on the embedded warehouse in `data_dir`, through a connection of its own.
pub fn query(data_dir: &Path, sql: &str) -> Vec<Vec<SqlValue>> {
    let db = rusqlite::Connection::open(data_dir.join("warehouse.db")).unwrap();
    let mut statement = db.prepare(sql).unwrap_or_else(|e| panic!("{sql}: {e}"));
    let columns = statement.column_count();
    statement
        .query_map([], |row| {
            (0..columns).map(|i| row.get::<_, SqlValue>(i)).collect()
        })
        .unwrap()
        .map(Result::unwrap)
        .collect()
}

/// Every value of every row of `table`, as text, column by column.
pub fn row_texts(data_dir: &Path, table: &str) -> Vec<String> {
    let columns: Vec<String> = query(
        data_dir,
        &format!("SELECT name FROM pragma_table_info('{table}')"),
    )
    .into_iter()
    .map(|r| text_of(&r[0]))
    .collect();
    assert!(!columns.is_empty(), "no table {table}");
    let select = columns
        .iter()
        .map(|c| format!("\"{c}\""))
        .collect::<Vec<_>>()
        .join(", ");
    query(data_dir, &format!("SELECT {select} FROM \"{table}\""))
        .into_iter()
        .flat_map(|row| row.iter().map(text_of).collect::<Vec<_>>())
        .collect()
}

pub fn text_of(value: &SqlValue) -> String {
    match value {
        SqlValue::Null => "NULL".into(),
        SqlValue::Integer(i) => i.to_string(),
        SqlValue::Real(f) => f.to_string(),
        SqlValue::Text(t) => t.clone(),
        SqlValue::Blob(b) => String::from_utf8_lossy(b).to_string(),
    }
}

pub fn text(value: &str) -> SqlValue {
    SqlValue::Text(value.to_string())
}

/// The tables of the embedded warehouse (not its views).
pub fn tables(data_dir: &Path) -> Vec<String> {
    query(
        data_dir,
        "SELECT name FROM sqlite_schema WHERE type = 'table' AND name NOT LIKE 'sqlite_%'",
    )
    .into_iter()
    .map(|r| text_of(&r[0]))
    .collect()
}

/// Every row of the embedded warehouse in `data_dir` names, in `landing_uri`, a landing object
/// that exists and holds its message: a row never exists without its object.
pub fn assert_no_row_without_its_object(data_dir: &Path) {
    let root = data_dir.join("landing");
    let base = format!("file://{}/", root.display());
    for table in tables(data_dir) {
        let rows = query(
            data_dir,
            &format!("SELECT message_id, landing_uri FROM \"{table}\""),
        );
        for row in rows {
            let (id, uri) = (text_of(&row[0]), text_of(&row[1]));
            let name = uri
                .strip_prefix(&base)
                .unwrap_or_else(|| panic!("{table} {id}: {uri} is not under {base}"));
            let body = std::fs::read(root.join(name))
                .unwrap_or_else(|e| panic!("{table} {id}: its object {name}: {e}"));
            assert!(
                object_holds(name, &body, &id),
                "{table} {id}: its object {name} does not hold it"
            );
        }
    }
}

/// Whether a landing object holds the message: a batch object has its line, a dead letter's
/// document names it, an event object is named after it.
pub fn object_holds(name: &str, body: &[u8], message_id: &str) -> bool {
    if name.ends_with(".jsonl") {
        batch_lines(name, body)
            .iter()
            .any(|line| line["message_id"] == message_id)
    } else if name.contains("/_dead_letter/") {
        let document: Value = serde_json::from_slice(body).unwrap();
        document["message_id"] == message_id
    } else {
        name.ends_with(&format!("_{message_id}.json"))
    }
}

/// The embedded warehouse's write lock, held as another process would hold it: a push waits
/// for it (up to `--sqlite-busy-timeout-ms`), so a test keeps a push in flight for exactly as
/// long as it needs, whatever the machine's speed.
pub struct WarehouseLock(rusqlite::Connection);

impl WarehouseLock {
    pub fn take(data_dir: &Path) -> Self {
        let connection = rusqlite::Connection::open(data_dir.join("warehouse.db")).unwrap();
        connection.execute_batch("BEGIN IMMEDIATE").unwrap();
        WarehouseLock(connection)
    }

    pub fn release(self) {
        self.0.execute_batch("ROLLBACK").unwrap();
    }
}
