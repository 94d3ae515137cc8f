//! The real local stand-ins for Google's services: fake-gcs-server, local-bigquery and the
//! Pub/Sub emulator, installed by `.ci/tools.sh`.
//!
//! A test binary starts one set on first use and shares it: each test works in a bucket, two
//! datasets and topics of its own ([`Google`]), so tests run side by side. A test that stops
//! an emulator (an outage) starts instances of its own ([`Google::private`]).

mod bigquery;
mod gcs;
pub mod process;
mod pubsub;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use serde_json::Value;
use tokio::sync::OnceCell;

pub use bigquery::BigQuery;
pub use gcs::Gcs;
pub use pubsub::PubSub;

use super::app::{TestApp, spawn_app_with};
use super::binary::{Binary, landfall};

pub const PROJECT: &str = "test-proj";

/// The storage emulators this test binary shares, started on first use.
async fn shared() -> (Arc<Gcs>, Arc<BigQuery>) {
    static SHARED: OnceCell<(Arc<Gcs>, Arc<BigQuery>)> = OnceCell::const_new();
    SHARED
        .get_or_init(|| async {
            let (gcs, bigquery) = tokio::join!(Gcs::start(), BigQuery::start());
            (Arc::new(gcs), Arc::new(bigquery))
        })
        .await
        .clone()
}

/// The Pub/Sub emulator this test binary shares, started on first use.
pub async fn pubsub() -> Arc<PubSub> {
    static PUBSUB: OnceCell<Arc<PubSub>> = OnceCell::const_new();
    PUBSUB
        .get_or_init(|| async { Arc::new(PubSub::start().await) })
        .await
        .clone()
}

/// One test's share of the emulators: its bucket and datasets, and the flags that point
/// landfall and its commands at them.
pub struct Google {
    pub gcs: Arc<Gcs>,
    pub bigquery: Arc<BigQuery>,
    pub bucket: String,
    /// The raw layer's dataset.
    pub raw: String,
    /// The curated layer's dataset.
    pub curated: String,
    /// Where landfall reaches Cloud Storage: the emulator, or a proxy in front of it.
    pub gcs_url: String,
    /// Where landfall reaches BigQuery: the emulator, or a proxy in front of it.
    pub bigquery_url: String,
    /// Where landfall reaches the Storage Write API: the emulator's gRPC port, or a proxy.
    pub bigquery_grpc_url: String,
    /// `--bigquery-write-api`: `storage` (the default) or `insert-all`.
    pub write_api: WriteApi,
    n: usize,
}

/// The two ways rows reach BigQuery.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WriteApi {
    Storage,
    InsertAll,
}

impl WriteApi {
    pub fn flag(self) -> &'static str {
        match self {
            WriteApi::Storage => "storage",
            WriteApi::InsertAll => "insert-all",
        }
    }
}

impl Google {
    /// The shared emulators, a new bucket, and the catalog applied to new datasets.
    pub async fn new() -> Self {
        let google = Self::bare().await;
        google.apply(&[]);
        google
    }

    /// The shared emulators and a new bucket; no dataset yet.
    pub async fn bare() -> Self {
        let (gcs, bigquery) = shared().await;
        Self::on(gcs, bigquery).await
    }

    /// Emulators of its own, which the test may stop and start; the catalog applied.
    pub async fn private() -> Self {
        let (gcs, bigquery) = tokio::join!(Gcs::start(), BigQuery::start());
        let google = Self::on(Arc::new(gcs), Arc::new(bigquery)).await;
        google.apply(&[]);
        google
    }

    async fn on(gcs: Arc<Gcs>, bigquery: Arc<BigQuery>) -> Self {
        static NEXT: AtomicUsize = AtomicUsize::new(1);
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let bucket = format!("landing-{n}");
        gcs.create_bucket(&bucket).await;
        Google {
            gcs_url: gcs.url(),
            bigquery_url: bigquery.url(),
            bigquery_grpc_url: bigquery.grpc_url(),
            write_api: WriteApi::Storage,
            gcs,
            bigquery,
            bucket,
            raw: format!("raw_{n}"),
            curated: format!("curated_{n}"),
            n,
        }
    }

    /// A name of this test's own in a shared namespace (a topic, a subscription, a dataset).
    pub fn name(&self, what: &str) -> String {
        format!("{what}_{}", self.n)
    }

    /// landfall reaches BigQuery through this URL (a fault proxy) from now on.
    pub fn through(mut self, url: &str) -> Self {
        self.bigquery_url = url.to_string();
        self
    }

    /// landfall reaches Cloud Storage through this URL (a fault proxy) from now on.
    pub fn through_gcs(mut self, url: &str) -> Self {
        self.gcs_url = url.to_string();
        self
    }

    /// landfall reaches the Storage Write API through this URL (a gRPC fault proxy).
    pub fn through_grpc(mut self, url: &str) -> Self {
        self.bigquery_grpc_url = url.to_string();
        self
    }

    /// landfall writes rows through this API from now on.
    pub fn writing_with(mut self, api: WriteApi) -> Self {
        self.write_api = api;
        self
    }

    /// Where landfall lands: this bucket and dataset, through `gcs_url` and `bigquery_url`.
    pub fn sink_args(&self) -> Vec<String> {
        self.sink_args_into(&self.raw)
    }

    /// The same, into another dataset of the raw layer.
    pub fn sink_args_into(&self, dataset: &str) -> Vec<String> {
        let mut args = [
            "--gcs-bucket",
            &self.bucket,
            "--storage-emulator-host",
            &self.gcs_url,
        ]
        .map(String::from)
        .to_vec();
        args.extend(self.bigquery_args(dataset));
        args
    }

    /// Where landfall writes rows: this dataset, through `bigquery_url` or
    /// `bigquery_grpc_url` by `write_api`.
    fn bigquery_args(&self, dataset: &str) -> Vec<String> {
        [
            "--bigquery-project",
            PROJECT,
            "--bigquery-dataset",
            dataset,
            "--bigquery-emulator-host",
            &self.bigquery_url,
            "--bigquery-storage-emulator-host",
            &self.bigquery_grpc_url,
            "--bigquery-write-api",
            self.write_api.flag(),
        ]
        .map(String::from)
        .to_vec()
    }

    /// `serve`'s flags: the sinks, no authentication, and `extra`.
    pub fn args(&self, extra: &[&str]) -> Vec<String> {
        serve_args(self.sink_args(), extra)
    }

    /// The same with BigQuery alone: no landing layer, nothing local.
    pub fn bigquery_alone_args(&self, extra: &[&str]) -> Vec<String> {
        serve_args(self.bigquery_args(&self.raw), extra)
    }

    /// landfall in the test's process, writing to both Google sinks (and nothing local, as in
    /// production), with these flags besides.
    pub async fn app(&self, extra: &[&str]) -> TestApp {
        let args = self.args(extra);
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        spawn_app_with(&args).await
    }

    /// The real binary serving with [`Google::args`].
    pub fn binary(&self, extra: &[&str], env: &[(&str, &str)]) -> Binary {
        let args = self.args(extra);
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        Binary::start(&args, env)
    }

    /// `landfall schema apply ARGS` into this test's datasets; its stdout.
    pub fn apply(&self, extra: &[&str]) -> String {
        self.apply_into(&self.raw, &self.curated, extra)
    }

    /// The same into other datasets.
    pub fn apply_into(&self, raw: &str, curated: &str, extra: &[&str]) -> String {
        let output = landfall(
            &[
                &[
                    "schema",
                    "apply",
                    "--bigquery-project",
                    PROJECT,
                    "--bigquery-emulator-host",
                    &self.bigquery.url(),
                    "--bigquery-dataset",
                    raw,
                    "--bigquery-curated-dataset",
                    curated,
                ],
                extra,
            ]
            .concat(),
        );
        let stdout = String::from_utf8(output.stdout).unwrap();
        assert!(
            output.status.success(),
            "schema apply failed: {stdout}{}",
            String::from_utf8_lossy(&output.stderr)
        );
        stdout
    }

    /// A raw-layer table, quoted for SQL: `` `raw_7`.`order` ``.
    pub fn table(&self, name: &str) -> String {
        format!("`{}`.`{name}`", self.raw)
    }

    /// A curated-layer view, quoted for SQL.
    pub fn view(&self, name: &str) -> String {
        format!("`{}`.`{name}`", self.curated)
    }

    pub async fn query(&self, sql: &str) -> Vec<Vec<Value>> {
        self.bigquery.query(sql).await
    }

    pub async fn count(&self, sql: &str) -> i64 {
        self.bigquery.count(sql).await
    }

    /// Rows in a raw-layer table.
    pub async fn rows(&self, table: &str) -> i64 {
        self.count(&format!("SELECT COUNT(*) FROM {}", self.table(table)))
            .await
    }

    /// A raw-layer table's resource.
    pub async fn table_resource(&self, name: &str) -> Value {
        self.bigquery.table(&self.raw, name).await
    }

    /// Object names in this test's bucket, but for the layout record.
    pub fn objects(&self) -> Vec<String> {
        self.gcs.objects(&self.bucket)
    }

    pub fn object(&self, name: &str) -> Vec<u8> {
        self.gcs.object(&self.bucket, name)
    }

    /// An object's resource (generation, custom metadata, …).
    pub async fn metadata(&self, name: &str) -> Value {
        self.gcs.metadata(&self.bucket, name).await
    }

    /// `gs://BUCKET/`, which prefixes every landing URI.
    pub fn base_uri(&self) -> String {
        format!("gs://{}/", self.bucket)
    }

    /// The name of the object an ack's `landing_uri` names in this test's bucket.
    pub fn object_of(&self, ack: &Value) -> String {
        let uri = ack["landing_uri"].as_str().unwrap_or_default();
        uri.strip_prefix(&self.base_uri())
            .unwrap_or_else(|| panic!("{uri} is not in {}: {ack}", self.bucket))
            .to_string()
    }

    /// Every row of these raw-layer tables names an object in the bucket that holds its
    /// message: a row never exists without its object.
    pub async fn assert_no_row_without_its_object(&self, tables: &[&str]) {
        for table in tables {
            let sql = format!("SELECT message_id, landing_uri FROM {}", self.table(table));
            for row in self.query(&sql).await {
                let id = row[0].as_str().unwrap();
                let uri = row[1].as_str().unwrap_or_default();
                let name = uri
                    .strip_prefix(&self.base_uri())
                    .unwrap_or_else(|| panic!("{table} {id}: {uri} is not in the bucket"));
                let body = self.object(name);
                assert!(
                    super::app::object_holds(name, &body, id),
                    "{table} {id}: its object {name} does not hold it"
                );
            }
        }
    }
}

/// `serve`'s flags around `sinks`: no authentication, and `extra`. The deadline is the
/// product's (10 s) unless `extra` sets one: a push that should land must not race the
/// emulators on a loaded machine (under the whole suite on two cores, a first push that a
/// warehouse refuses and dead-letters took over 3 s).
fn serve_args(mut args: Vec<String>, extra: &[&str]) -> Vec<String> {
    args.extend(["--auth", "none"].map(String::from));
    args.extend(extra.iter().map(|s| s.to_string()));
    args
}
