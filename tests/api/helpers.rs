//! Test harness: each test gets its own app on port 0 with its own data folder.

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use base64::Engine;
use clap::Parser;
use landfall::config::{Cli, Config};
use landfall::startup::Application;
use reqwest::Response;
use rusqlite::types::Value as SqlValue;
use serde_json::{Value, json};
use tempfile::TempDir;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

pub const FIXTURES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures");

pub struct TestApp {
    pub address: String,
    pub data_dir: TempDir,
    pub client: reqwest::Client,
    stop: Option<oneshot::Sender<()>>,
    server: Option<JoinHandle<anyhow::Result<()>>>,
}

/// Settings as the command line would give them, plus the test's own folder and port 0.
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
    Cli::try_parse_from(argv)
        .expect("test arguments parse")
        .serve
        .resolve()
        .expect("test configuration is valid")
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
            landfall::telemetry::init(landfall::telemetry::LogFormat::Text, None);
        }
    });
}

pub fn fixture(name: &str) -> Vec<u8> {
    std::fs::read(format!("{FIXTURES}/{name}")).unwrap_or_else(|e| panic!("fixture {name}: {e}"))
}

/// The decoded `message.data` of a wrapped fixture.
pub fn fixture_data(name: &str) -> Vec<u8> {
    let envelope: Value = serde_json::from_slice(&fixture(name)).unwrap();
    b64decode(envelope["message"]["data"].as_str().unwrap())
}

pub fn b64decode(text: &str) -> Vec<u8> {
    base64::engine::general_purpose::STANDARD
        .decode(text)
        .unwrap()
}

/// A wrapped push envelope as Pub/Sub sends it.
pub fn envelope(message_id: &str, data: &[u8]) -> Value {
    json!({
        "message": {
            "data": base64::engine::general_purpose::STANDARD.encode(data),
            "attributes": {},
            "messageId": message_id,
            "publishTime": "2026-11-25T10:00:00.000Z",
        },
        "subscription": "projects/test-proj/subscriptions/landfall",
    })
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

    /// Every landed object name, sorted (temporary files would show up here too).
    pub fn landed_objects(&self) -> Vec<String> {
        let root = self.landing_root();
        let mut names = Vec::new();
        walk(&root, &root, &mut names);
        names.sort();
        names
    }

    pub fn read_object(&self, name: &str) -> Vec<u8> {
        std::fs::read(self.landing_root().join(name)).unwrap_or_else(|e| panic!("{name}: {e}"))
    }

    /// Runs a query on the embedded warehouse through a connection of its own.
    pub fn query(&self, sql: &str) -> Vec<Vec<SqlValue>> {
        let db = rusqlite::Connection::open(self.data_dir.path().join("warehouse.db")).unwrap();
        let mut statement = db.prepare(sql).unwrap();
        let columns = statement.column_count();
        statement
            .query_map([], |row| {
                (0..columns).map(|i| row.get::<_, SqlValue>(i)).collect()
            })
            .unwrap()
            .map(Result::unwrap)
            .collect()
    }

    pub fn count(&self, table: &str) -> i64 {
        match self.query(&format!("SELECT COUNT(*) FROM \"{table}\""))[0][0] {
            SqlValue::Integer(n) => n,
            ref other => panic!("count is {other:?}"),
        }
    }

    /// Stops the server the way a signal would and waits for it to drain.
    pub async fn stop(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(server) = self.server.take() {
            server.await.unwrap().unwrap();
        }
    }
}

fn walk(root: &Path, dir: &Path, out: &mut Vec<String>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.map(Result::unwrap) {
        let path = entry.path();
        if path.is_dir() {
            walk(root, &path, out);
        } else {
            out.push(path.strip_prefix(root).unwrap().display().to_string());
        }
    }
}

pub fn text(value: &str) -> SqlValue {
    SqlValue::Text(value.to_string())
}

/// Checks a real response body against the schema `openapi/landfall.yaml` documents for it.
pub fn assert_matches_openapi(path: &str, method: &str, status: u16, body: &Value) {
    static DOC: OnceLock<Value> = OnceLock::new();
    let doc = DOC.get_or_init(|| {
        let text = std::fs::read_to_string(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/openapi/landfall.yaml"
        ))
        .unwrap();
        serde_yaml::from_str(&text).expect("openapi/landfall.yaml parses")
    });
    let pointer = format!(
        "#/paths/{}/{method}/responses/{status}/content/application~1json/schema",
        path.replace('/', "~1")
    );
    assert!(
        doc.pointer(&pointer[1..]).is_some(),
        "openapi/landfall.yaml documents no {status} response for {method} {path}"
    );
    // The whole document is the schema root so `$ref`s resolve; the `$ref` picks the response.
    let mut schema = doc.clone();
    schema["$ref"] = Value::String(pointer);
    let validator = jsonschema::validator_for(&schema).expect("openapi schemas compile");
    if let Err(error) = validator.validate(body) {
        panic!("{method} {path} {status} does not match openapi/landfall.yaml: {error}\n{body:#}");
    }
}

/// Reads a response as JSON after checking its status, and checks it against the OpenAPI file.
pub async fn json_body(response: Response, path: &str, expected_status: u16) -> Value {
    let status = response.status().as_u16();
    let body: Value = response.json().await.expect("response body is JSON");
    assert_eq!(status, expected_status, "unexpected status, body: {body}");
    let method = if path == "/push" { "post" } else { "get" };
    assert_matches_openapi(path, method, status, &body);
    body
}

/// A wrapped envelope whose message carries these attributes.
pub fn envelope_with_attributes(message_id: &str, data: &[u8], attributes: Value) -> Value {
    let mut envelope = envelope(message_id, data);
    envelope["message"]["attributes"] = attributes;
    envelope
}

/// One of the shipped catalog's files (`schemas/NAME.json`), to copy or change.
pub fn shipped_schema(name: &str) -> Value {
    let path = format!("{}/schemas/{name}.json", env!("CARGO_MANIFEST_DIR"));
    serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap()
}

/// The test catalog's files (`tests/fixtures/catalog/NAME.json`).
pub fn catalog_fixture(name: &str) -> Value {
    serde_json::from_slice(&fixture(&format!("catalog/{name}.json"))).unwrap()
}

/// A catalog folder holding exactly these files (name → JSON Schema, or raw text).
pub fn catalog_dir(files: &[(&str, String)]) -> TempDir {
    let dir = tempfile::tempdir().unwrap();
    for (name, text) in files {
        std::fs::write(dir.path().join(name), text).unwrap();
    }
    dir
}

/// Runs the real binary to completion.
pub fn landfall(args: &[&str]) -> std::process::Output {
    std::process::Command::new(env!("CARGO_BIN_EXE_landfall"))
        .args(args)
        .env_remove("PORT")
        .output()
        .expect("landfall runs")
}
