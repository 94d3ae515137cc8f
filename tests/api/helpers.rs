//! Test harness: each test gets its own app on port 0 with its own data folder.

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use base64::Engine;
pub use landfall::startup::Application;
use landfall::startup::Config;
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

    /// Every landed object name, sorted (temporary files would show up here too), but for
    /// the layout record (`output/_landfall/layout.json`). The landing folder must exist: a
    /// check that nothing landed is only worth something where something could have.
    pub fn landed_objects(&self) -> Vec<String> {
        let root = self.landing_root();
        assert!(root.is_dir(), "no landing folder at {}", root.display());
        let mut names = Vec::new();
        walk(&root, &root, &mut names);
        names.retain(|n| !n.contains("/_landfall/"));
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
            let body = self.read_object(&name);
            assert_eq!(
                body.last(),
                Some(&b'\n'),
                "{name} does not end with a newline"
            );
            for line in body[..body.len() - 1].split(|b| *b == b'\n') {
                let value: Value = serde_json::from_slice(line)
                    .unwrap_or_else(|e| panic!("{name} holds a line that is not JSON: {e}"));
                lines.push((name.clone(), value));
            }
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
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(server) = self.server.take() {
            server.await.unwrap().unwrap();
        }
    }
}

fn walk(root: &Path, dir: &Path, out: &mut Vec<String>) {
    let entries = std::fs::read_dir(dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display()));
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

/// Checks a real response body against the schema `openapi/landfall.yaml` documents for it:
/// the operation's own response, or for 404 and 405 the shared ones every path answers with.
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
    let documented = format!(
        "#/paths/{}/{method}/responses/{status}",
        path.replace('/', "~1")
    );
    let response = match (doc.pointer(&documented[1..]), status) {
        (Some(response), _) => match response.get("$ref").and_then(Value::as_str) {
            Some(reference) => reference.to_string(),
            None => documented,
        },
        (None, 404) => "#/components/responses/NotFound".to_string(),
        (None, 405) => "#/components/responses/MethodNotAllowed".to_string(),
        (None, _) => {
            panic!("openapi/landfall.yaml documents no {status} response for {method} {path}")
        }
    };
    let pointer = format!("{response}/content/application~1json/schema");
    assert!(
        doc.pointer(&pointer[1..]).is_some(),
        "openapi/landfall.yaml has no JSON schema at {pointer}"
    );
    // The whole document is the schema root so `$ref`s resolve; the `$ref` picks the response.
    let mut schema = doc.clone();
    schema["$ref"] = Value::String(pointer);
    let validator = jsonschema::validator_for(&schema).expect("openapi schemas compile");
    if let Err(error) = validator.validate(body) {
        panic!("{method} {path} {status} does not match openapi/landfall.yaml: {error}\n{body:#}");
    }
}

/// Reads a response as JSON after checking its status, and checks it against the OpenAPI file
/// (POST for /push, GET for everything else).
pub async fn json_body(response: Response, path: &str, expected_status: u16) -> Value {
    let method = if path == "/push" { "post" } else { "get" };
    json_body_of(response, method, path, expected_status).await
}

pub async fn json_body_of(
    response: Response,
    method: &str,
    path: &str,
    expected_status: u16,
) -> Value {
    let status = response.status().as_u16();
    let body: Value = response.json().await.expect("response body is JSON");
    assert_eq!(status, expected_status, "unexpected status, body: {body}");
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
    landfall_with_env(args, &[])
}

/// Runs the real binary to completion with these environment variables set.
pub fn landfall_with_env(args: &[&str], env: &[(&str, &str)]) -> std::process::Output {
    let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_landfall"));
    command.args(args).env_remove("PORT");
    for (k, v) in env {
        command.env(k, v);
    }
    command.output().expect("landfall runs")
}

impl TestApp {
    /// Waits until `/metrics` shows this many pushes in flight.
    pub async fn wait_for_in_flight(&self, pushes: f64) {
        wait_for_in_flight(&format!("{}/metrics", self.address), pushes).await;
    }

    pub async fn wait_until_ready(&self) {
        for _ in 0..200 {
            if self.get("/readyz").await.status() == 200 {
                return;
            }
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        }
        panic!("the app never became ready");
    }

    /// `/metrics`, read by the official Prometheus Python client's parser (which refuses a
    /// malformed exposition).
    pub async fn scrape(&self) -> Vec<Sample> {
        let response = self.get("/metrics").await;
        assert_eq!(response.status(), 200);
        assert_eq!(
            response.headers()["content-type"],
            "text/plain; version=0.0.4; charset=utf-8"
        );
        parse_exposition(&response.text().await.unwrap())
    }
}

/// Polls a `/metrics` URL until `landfall_in_flight_pushes` reaches `pushes`.
pub async fn wait_for_in_flight(url: &str, pushes: f64) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    loop {
        let text = reqwest::get(url).await.unwrap().text().await.unwrap();
        let now = sample(&parse_exposition(&text), "landfall_in_flight_pushes", &[]);
        if now.is_some_and(|n| n >= pushes) {
            return;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "never {pushes} pushes in flight: {now:?}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
}

/// A Prometheus text exposition, read by the official Prometheus Python client's parser
/// (which refuses a malformed one).
pub fn parse_exposition(text: &str) -> Vec<Sample> {
    let python = crate::tools::tool("prometheus", "PROMETHEUS_PYTHON");
    let output = crate::tools::run_support_script(&python, "parse_metrics.py", text.as_bytes());
    assert!(
        output.status.success(),
        "the Prometheus parser refused the exposition: {}\n{text}",
        String::from_utf8_lossy(&output.stderr)
    );
    serde_json::from_slice(&output.stdout).unwrap()
}

/// One sample of a parsed exposition.
#[derive(Debug, Clone, serde::Deserialize)]
pub struct Sample {
    pub family: String,
    #[serde(rename = "type")]
    pub kind: String,
    pub name: String,
    pub labels: std::collections::BTreeMap<String, String>,
    pub value: Value,
}

/// The value of the sample with this name and exactly these labels.
pub fn sample(samples: &[Sample], name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    let wanted: std::collections::BTreeMap<String, String> = labels
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    samples
        .iter()
        .find(|s| s.name == name && s.labels == wanted)
        .map(|s| s.value.as_f64().unwrap_or(f64::NAN))
}

/// The real `landfall` binary serving on a free port with JSON logs, its log lines collected.
pub struct Binary {
    pub child: std::process::Child,
    pub address: String,
    logs: std::sync::Arc<std::sync::Mutex<Vec<Value>>>,
}

impl Binary {
    /// Starts `landfall ARGS` (serving on 127.0.0.1, any port) and waits until it serves.
    pub fn start(args: &[&str], env: &[(&str, &str)]) -> Self {
        let mut with_port = vec!["--port", "0"];
        with_port.extend_from_slice(args);
        Self::start_on(&with_port, env)
    }

    /// The same, with `--port` among `args`.
    pub fn start_on(args: &[&str], env: &[(&str, &str)]) -> Self {
        use std::io::{BufRead, BufReader};
        let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_landfall"));
        command
            .args(["--host", "127.0.0.1", "--log-format", "json"])
            .args(args)
            .env_remove("PORT")
            .env_remove("STORAGE_EMULATOR_HOST")
            .env_remove("BIGQUERY_EMULATOR_HOST")
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped());
        for (k, v) in env {
            command.env(k, v);
        }
        let mut child = command.spawn().expect("landfall starts");
        let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
        let logs = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let address = loop {
            let Some(Ok(line)) = lines.next() else {
                let mut stderr = String::new();
                std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut stderr)
                    .unwrap();
                panic!("landfall did not start: {stderr}");
            };
            let entry: Value = serde_json::from_str(&line).expect("every log line is JSON");
            logs.lock().unwrap().push(entry.clone());
            if entry["message"] == "landfall is serving" {
                break entry["address"].as_str().unwrap().to_string();
            }
        };
        let collected = logs.clone();
        std::thread::spawn(move || {
            for line in lines.map_while(Result::ok) {
                let entry: Value = serde_json::from_str(&line).expect("every log line is JSON");
                collected.lock().unwrap().push(entry);
            }
        });
        Binary {
            child,
            address,
            logs,
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.address)
    }

    /// Every log line so far.
    pub fn logs(&self) -> Vec<Value> {
        self.logs.lock().unwrap().clone()
    }

    /// The first log line that `wanted` picks, waiting for it to be written (the line of a
    /// push is written as its answer leaves, and read here from another thread).
    pub fn wait_for_log(&self, wanted: impl Fn(&Value) -> bool) -> Value {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
        loop {
            if let Some(line) = self.logs().into_iter().find(&wanted) {
                return line;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "no such log line in {:#?}",
                self.logs()
            );
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
    }

    /// Waits until `/metrics` shows this many pushes in flight.
    pub async fn wait_for_in_flight(&self, pushes: f64) {
        wait_for_in_flight(&self.url("/metrics"), pushes).await;
    }

    /// Sends a signal (`TERM`, `KILL`) to the process.
    pub fn send(&self, signal: &str) {
        let sent = std::process::Command::new("kill")
            .args([format!("-{signal}"), self.child.id().to_string()])
            .status()
            .unwrap();
        assert!(sent.success());
    }

    pub fn wait(&mut self) -> std::process::ExitStatus {
        self.child.wait().unwrap()
    }
}

impl Drop for Binary {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The object name of an event in the default layout (`--prefix output`, `event`).
pub fn event_object(
    event_type: &str,
    time: &chrono::DateTime<chrono::Utc>,
    message_id: &str,
) -> String {
    landfall::landing::LandingLayout {
        prefix: "output".into(),
        partition: landfall::event::PartitionTime::Event,
        kind: landfall::landing::LayoutKind::Event,
    }
    .event_object(event_type, time, message_id)
}
