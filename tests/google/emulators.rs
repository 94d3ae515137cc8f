//! The real local stand-ins: fake-gcs-server, local-bigquery and Google's Pub/Sub emulator,
//! installed by `.ci/tools.sh` and started here, each test with its own set on free
//! ports. Every process is killed (with its children) when its handle drops.

use std::net::TcpListener;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::time::Duration;

use base64::Engine;
use serde_json::{Value, json};
use tempfile::TempDir;

use crate::tools::tool;

pub const PROJECT: &str = "test-proj";
pub const BUCKET: &str = "landing";

async fn post_json(url: &str, body: &Value) -> Value {
    let response = reqwest::Client::new()
        .post(url)
        .json(body)
        .send()
        .await
        .unwrap();
    response.json().await.unwrap()
}

async fn get_json(url: &str) -> Value {
    reqwest::get(url).await.unwrap().json().await.unwrap()
}

pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A child process in its own process group, so stopping it stops what it spawned.
struct Process(Option<Child>);

impl Process {
    fn spawn(command: &mut Command, log: &Path) -> Self {
        let log = std::fs::File::create(log).unwrap();
        let child = command
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .process_group(0)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {command:?}: {e}"));
        Process(Some(child))
    }

    fn stop(&mut self) {
        if let Some(mut child) = self.0.take() {
            // `--`: procps kill would read a negative pid as an option.
            let _ = Command::new("kill")
                .args(["-KILL", "--", &format!("-{}", child.id())])
                .status();
            let _ = child.wait();
        }
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        self.stop();
    }
}

async fn wait_for(url: &str, what: &str) {
    let client = reqwest::Client::new();
    for _ in 0..600 {
        if let Ok(response) = client.get(url).send().await
            && response.status().is_success()
        {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("{what} did not come up at {url}");
}

pub struct Gcs {
    pub port: u16,
    pub root: TempDir,
    process: Process,
}

impl Gcs {
    pub async fn start() -> Self {
        let mut gcs = Gcs {
            port: free_port(),
            root: tempfile::tempdir().unwrap(),
            process: Process(None),
        };
        gcs.restart().await;
        let response = reqwest::Client::new()
            .post(format!("{}/storage/v1/b?project={PROJECT}", gcs.url()))
            .json(&json!({"name": BUCKET}))
            .send()
            .await
            .unwrap();
        assert!(
            response.status().is_success(),
            "bucket creation: {}",
            response.status()
        );
        gcs
    }

    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// Starts (again) on the same port and folder: objects survive a stop.
    pub async fn restart(&mut self) {
        self.process.stop();
        let bin = tool("gcs", "FAKE_GCS_SERVER");
        let data = self.root.path().join("data");
        std::fs::create_dir_all(&data).unwrap();
        let address = format!("127.0.0.1:{}", self.port);
        self.process = Process::spawn(
            Command::new(bin).args([
                "-scheme",
                "http",
                "-host",
                "127.0.0.1",
                "-port",
                &self.port.to_string(),
                "-backend",
                "filesystem",
                "-filesystem-root",
                data.to_str().unwrap(),
                "-external-url",
                &self.url(),
                "-public-host",
                &address,
                "-log-level",
                "warn",
            ]),
            &self.root.path().join("fake-gcs.log"),
        );
        wait_for(&format!("{}/storage/v1/b", self.url()), "fake-gcs-server").await;
    }

    pub fn stop(&mut self) {
        self.process.stop();
    }

    fn bucket_dir(&self) -> PathBuf {
        self.root.path().join("data").join(BUCKET)
    }

    /// Object names in the bucket, read from the emulator's own folder, but for the layout
    /// record (`output/_landfall/layout.json`).
    pub fn objects(&self) -> Vec<String> {
        let root = self.bucket_dir();
        let mut names = Vec::new();
        let mut dirs = vec![root.clone()];
        while let Some(dir) = dirs.pop() {
            for entry in std::fs::read_dir(&dir)
                .into_iter()
                .flatten()
                .map(Result::unwrap)
            {
                let path = entry.path();
                if path.is_dir() {
                    dirs.push(path);
                } else {
                    names.push(path.strip_prefix(&root).unwrap().display().to_string());
                }
            }
        }
        names.retain(|n| !n.contains("/_landfall/"));
        names.sort();
        names
    }

    pub fn object(&self, name: &str) -> Vec<u8> {
        std::fs::read(self.bucket_dir().join(name))
            .unwrap_or_else(|e| panic!("gs://{BUCKET}/{name}: {e}"))
    }

    /// The object's resource (content type, custom metadata) through the JSON API.
    pub async fn metadata(&self, name: &str) -> Value {
        let encoded: String = name.replace('/', "%2F");
        get_json(&format!("{}/storage/v1/b/{BUCKET}/o/{encoded}", self.url())).await
    }
}

pub struct BigQuery {
    pub port: u16,
    grpc_port: u16,
    data: TempDir,
    process: Process,
}

impl BigQuery {
    pub async fn start() -> Self {
        let mut bigquery = BigQuery {
            port: free_port(),
            grpc_port: free_port(),
            data: tempfile::tempdir().unwrap(),
            process: Process(None),
        };
        bigquery.restart().await;
        bigquery
    }

    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// Starts (again) on the same port and data folder: rows survive a stop.
    pub async fn restart(&mut self) {
        self.process.stop();
        self.process = Process::spawn(
            Command::new(tool("bigquery", "LOCAL_BIGQUERY"))
                .args([
                    "serve",
                    "--host",
                    "127.0.0.1",
                    "--port",
                    &self.port.to_string(),
                ])
                .args([
                    "--grpc-port",
                    &self.grpc_port.to_string(),
                    "--project",
                    PROJECT,
                ])
                .arg("--data-dir")
                .arg(self.data.path().join("db"))
                .env("HOME", tool("bigquery", "BIGQUERY_HOME")),
            &self.data.path().join("local-bigquery.log"),
        );
        wait_for(
            &format!("{}/bigquery/v2/projects/{PROJECT}/datasets", self.url()),
            "local-bigquery",
        )
        .await;
    }

    pub fn stop(&mut self) {
        self.process.stop();
    }

    /// Runs a standard-SQL query; rows as arrays of cell values (strings or null).
    pub async fn query(&self, sql: &str) -> Vec<Vec<Value>> {
        let url = format!("{}/bigquery/v2/projects/{PROJECT}/queries", self.url());
        let response = post_json(&url, &json!({"query": sql, "useLegacySql": false})).await;
        assert!(
            response["errors"].is_null() && response["error"].is_null(),
            "{sql}: {response}"
        );
        response["rows"]
            .as_array()
            .map(|rows| {
                rows.iter()
                    .map(|row| {
                        row["f"]
                            .as_array()
                            .unwrap()
                            .iter()
                            .map(|c| c["v"].clone())
                            .collect()
                    })
                    .collect()
            })
            .unwrap_or_default()
    }

    pub async fn count(&self, sql: &str) -> i64 {
        self.query(sql).await[0][0]
            .as_str()
            .unwrap()
            .parse()
            .unwrap()
    }

    /// The emulator's access log: one line per API call.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.data.path().join("local-bigquery.log")).unwrap_or_default()
    }

    pub async fn table(&self, name: &str) -> Value {
        get_json(&format!(
            "{}/bigquery/v2/projects/{PROJECT}/datasets/raw/tables/{name}",
            self.url()
        ))
        .await
    }
}

pub struct PubSub {
    pub port: u16,
    _dir: TempDir,
    _process: Process,
}

impl PubSub {
    pub async fn start() -> Self {
        let gcloud = &tool("pubsub", "GCLOUD");
        assert!(
            !gcloud.is_empty(),
            "gcloud with the Pub/Sub emulator is not installed"
        );
        let port = free_port();
        let dir = tempfile::tempdir().unwrap();
        let process = Process::spawn(
            Command::new(gcloud)
                .args(["beta", "emulators", "pubsub", "start"])
                .arg(format!("--host-port=127.0.0.1:{port}"))
                .arg(format!("--project={PROJECT}"))
                .arg(format!("--data-dir={}", dir.path().display())),
            &dir.path().join("pubsub.log"),
        );
        wait_for(&format!("http://127.0.0.1:{port}/"), "the Pub/Sub emulator").await;
        PubSub {
            port,
            _dir: dir,
            _process: process,
        }
    }

    fn url(&self, path: &str) -> String {
        format!(
            "http://127.0.0.1:{}/v1/projects/{PROJECT}/{path}",
            self.port
        )
    }

    /// Sends one admin request and insists that it succeeds.
    async fn call(&self, method: reqwest::Method, path: &str, body: Value) {
        let response = reqwest::Client::new()
            .request(method.clone(), self.url(path))
            .json(&body)
            .send()
            .await
            .unwrap();
        let status = response.status();
        assert!(
            status.is_success(),
            "{method} {path}: {status} {}",
            response.text().await.unwrap()
        );
    }

    /// A topic and a push subscription that delivers it to `endpoint`.
    pub async fn push_subscription(&self, topic: &str, subscription: &str, endpoint: &str) {
        self.subscribe(topic, subscription, endpoint, false).await;
    }

    /// The same, keeping acknowledged messages so that the subscription can be sought back.
    pub async fn replayable_push_subscription(
        &self,
        topic: &str,
        subscription: &str,
        endpoint: &str,
    ) {
        self.subscribe(topic, subscription, endpoint, true).await;
    }

    async fn subscribe(&self, topic: &str, subscription: &str, endpoint: &str, retain: bool) {
        self.subscribe_with(
            topic,
            subscription,
            json!({"pushEndpoint": endpoint}),
            retain,
        )
        .await;
    }

    /// A push subscription in the unwrapped form (`noWrapper` with `writeMetadata`): the raw
    /// data as the body, metadata and attributes as headers.
    pub async fn unwrapped_push_subscription(
        &self,
        topic: &str,
        subscription: &str,
        endpoint: &str,
    ) {
        let config = json!({"pushEndpoint": endpoint, "noWrapper": {"writeMetadata": true}});
        self.subscribe_with(topic, subscription, config, false)
            .await;
    }

    async fn subscribe_with(
        &self,
        topic: &str,
        subscription: &str,
        push_config: Value,
        retain: bool,
    ) {
        self.call(reqwest::Method::PUT, &format!("topics/{topic}"), json!({}))
            .await;
        self.call(
            reqwest::Method::PUT,
            &format!("subscriptions/{subscription}"),
            json!({
                "topic": format!("projects/{PROJECT}/topics/{topic}"),
                "pushConfig": push_config,
                "ackDeadlineSeconds": 10,
                "retainAckedMessages": retain,
            }),
        )
        .await;
    }

    /// Publishes messages with attributes of their own; the ids Pub/Sub assigned, in order.
    pub async fn publish_with_attributes(
        &self,
        topic: &str,
        messages: &[(Vec<u8>, Value)],
    ) -> Vec<String> {
        let b64 = base64::engine::general_purpose::STANDARD;
        let body: Vec<Value> = messages
            .iter()
            .map(|(data, attributes)| json!({"data": b64.encode(data), "attributes": attributes}))
            .collect();
        let url = self.url(&format!("topics/{topic}:publish"));
        let response = post_json(&url, &json!({"messages": body})).await;
        response["messageIds"]
            .as_array()
            .unwrap_or_else(|| panic!("publish: {response}"))
            .iter()
            .map(|id| id.as_str().unwrap().to_string())
            .collect()
    }

    /// `gcloud pubsub subscriptions seek SUB --time=TIME`: every message published after
    /// `time` is delivered again, acknowledged or not.
    pub async fn seek(&self, subscription: &str, time: chrono::DateTime<chrono::Utc>) {
        let time = time.to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
        self.call(
            reqwest::Method::POST,
            &format!("subscriptions/{subscription}:seek"),
            json!({ "time": time }),
        )
        .await;
    }

    /// Publishes the payloads; returns the message ids Pub/Sub assigned, in order.
    pub async fn publish(&self, topic: &str, payloads: &[Vec<u8>]) -> Vec<String> {
        let b64 = base64::engine::general_purpose::STANDARD;
        let mut ids = Vec::new();
        for chunk in payloads.chunks(500) {
            let messages: Vec<Value> = chunk
                .iter()
                .map(|p| json!({"data": b64.encode(p), "attributes": {"source": "e2e"}}))
                .collect();
            let url = self.url(&format!("topics/{topic}:publish"));
            let response = post_json(&url, &json!({"messages": messages})).await;
            let published = response["messageIds"]
                .as_array()
                .unwrap_or_else(|| panic!("publish: {response}"));
            ids.extend(published.iter().map(|id| id.as_str().unwrap().to_string()));
        }
        ids
    }
}
