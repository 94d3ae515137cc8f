//! Google's Pub/Sub emulator (`gcloud beta emulators pubsub start`), which really pushes to
//! landfall (without OIDC tokens). Tests sharing one name their topics and subscriptions
//! apart.

use std::process::Command;

use base64::Engine;
use serde_json::{Value, json};
use tempfile::TempDir;

use super::PROJECT;
use super::process::{Process, on_fresh_ports, reserve_port, wait_until_up};
use crate::support::tools::tool;

async fn post_json(url: &str, body: &Value) -> Value {
    let response = reqwest::Client::new()
        .post(url)
        .json(body)
        .send()
        .await
        .unwrap();
    response.json().await.unwrap()
}

pub struct PubSub {
    pub port: u16,
    dir: TempDir,
    process: Process,
}

impl PubSub {
    pub async fn start() -> Self {
        let gcloud = &tool("pubsub", "GCLOUD");
        assert!(
            !gcloud.is_empty(),
            "gcloud with the Pub/Sub emulator is not installed"
        );
        on_fresh_ports(async || {
            let pubsub = PubSub {
                port: reserve_port(),
                dir: tempfile::tempdir().unwrap(),
                process: Process::idle(),
            };
            pubsub.process.start(
                Command::new(gcloud)
                    .args(["beta", "emulators", "pubsub", "start"])
                    .arg(format!("--host-port=127.0.0.1:{}", pubsub.port))
                    .arg(format!("--project={PROJECT}"))
                    .arg(format!("--data-dir={}", pubsub.dir.path().display())),
                &pubsub.dir.path().join("pubsub.log"),
            );
            let root = format!("http://127.0.0.1:{}/", pubsub.port);
            wait_until_up(&root, "the Pub/Sub emulator", &pubsub.process)
                .await
                .map(|()| pubsub)
        })
        .await
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

    /// Sends a subscription's pushes to another endpoint (a restarted landfall's).
    pub async fn repoint(&self, subscription: &str, endpoint: &str) {
        self.call(
            reqwest::Method::POST,
            &format!("subscriptions/{subscription}:modifyPushConfig"),
            json!({"pushConfig": {"pushEndpoint": endpoint}}),
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
