//! The landing layer in Cloud Storage, through Google's official `google-cloud-storage` crate.
//!
//! Objects are created with `ifGenerationMatch=0`: GCS refuses (412) to overwrite, which is
//! exactly the "already landed" answer a redelivery needs, and a retried upload can never
//! replace a landed object. Uploads are forced to be single-shot (multipart): that is the
//! upload type on which the emulator enforces the precondition too.
//!
//! The crate lists objects and reads their metadata only over gRPC, which the emulator does
//! not serve; those two go through the JSON API (`objects.list`, `objects.get`) with the
//! same credentials.

use std::collections::BTreeMap;
use std::time::Duration;

use anyhow::Context;
use async_trait::async_trait;
use bytes::Bytes;
use chrono::{DateTime, Utc};
use futures::stream::BoxStream;
use futures::{StreamExt, TryStreamExt};
use google_cloud_auth::credentials::{CacheableResource, Credentials};
use google_cloud_gax::retry_policy::RetryPolicyExt;
use google_cloud_storage::client::Storage;
use google_cloud_storage::retry_policy::RetryableErrors;
use serde::Deserialize;

use super::{Listed, Object, Put, Store};
use crate::sink::SinkError;
use crate::sink::readiness::CachedCheck;

const NAME: &str = "gcs";
const GOOGLE_ENDPOINT: &str = "https://storage.googleapis.com";
/// Uploads in flight at once within one batch.
const UPLOADS_PER_BATCH: usize = 64;

/// The bucket of the landing layer.
#[derive(Debug, Clone)]
pub struct GcsTarget {
    pub bucket: String,
    /// An emulator's URL (`STORAGE_EMULATOR_HOST`); anonymous credentials then.
    pub emulator: Option<String>,
}

pub struct Bucket {
    client: Storage,
    json: JsonApi,
    bucket: String,
    /// Object read by the readiness probe; it need not exist.
    probe_object: String,
    deadline: Duration,
    readiness: CachedCheck,
}

impl Bucket {
    /// Builds the clients: Application Default Credentials, or anonymous ones for an
    /// emulator. `deadline` bounds each call, retries included.
    pub async fn connect(
        target: &GcsTarget,
        prefix: &str,
        deadline: Duration,
    ) -> anyhow::Result<Self> {
        let credentials = match &target.emulator {
            Some(_) => google_cloud_auth::credentials::anonymous::Builder::new().build(),
            None => google_cloud_auth::credentials::Builder::default()
                .build()
                .context("failed to find Application Default Credentials for Cloud Storage")?,
        };
        let mut builder = Storage::builder()
            .with_retry_policy(RetryableErrors.with_time_limit(deadline))
            // Every object fits in memory (the body limit bounds it), so never resumable.
            .with_resumable_upload_threshold(usize::MAX)
            .with_credentials(credentials.clone());
        let endpoint = target
            .emulator
            .as_deref()
            .unwrap_or(GOOGLE_ENDPOINT)
            .trim_end_matches('/')
            .to_string();
        if target.emulator.is_some() {
            builder = builder.with_endpoint(&endpoint);
        }
        let client = builder
            .build()
            .await
            .context("failed to build the Cloud Storage client")?;
        Ok(Self {
            client,
            json: JsonApi::new(endpoint, target.bucket.clone(), credentials, deadline)?,
            bucket: target.bucket.clone(),
            probe_object: format!("{prefix}/_readiness_probe"),
            deadline,
            readiness: CachedCheck::new(NAME, format!("bucket {} is not reachable", target.bucket)),
        })
    }

    fn bucket_path(&self) -> String {
        format!("projects/_/buckets/{}", self.bucket)
    }

    async fn upload(&self, object: Object) -> Result<Put, SinkError> {
        let metadata = object
            .metadata
            .iter()
            .map(|(k, v)| (k.to_string(), v.clone()));
        let upload = self
            .client
            .write_object(self.bucket_path(), &object.name, object.body.clone())
            .set_if_generation_match(0)
            .set_content_type(object.content_type)
            .set_metadata(metadata)
            .send_buffered();
        let failed = |e: anyhow::Error| {
            SinkError::new(
                NAME,
                &e.context(format!(
                    "failed to upload gs://{}/{}",
                    self.bucket, object.name
                )),
            )
        };
        match tokio::time::timeout(self.deadline, upload).await {
            Ok(Ok(_)) => Ok(Put::Created),
            // The precondition failed: the object exists, so this message has landed before.
            Ok(Err(e)) if e.http_status_code() == Some(412) => Ok(Put::AlreadyPresent),
            Ok(Err(e)) => Err(failed(e.into())),
            Err(_) => Err(failed(anyhow::anyhow!(
                "timed out after {:?}",
                self.deadline
            ))),
        }
    }

    /// One attempt: a readiness probe says what is wrong now, it does not wait it out.
    async fn probe(&self) -> anyhow::Result<()> {
        let read = self
            .client
            .read_object(self.bucket_path(), &self.probe_object)
            .with_retry_policy(RetryableErrors.with_attempt_limit(1));
        match read.send().await {
            Ok(_) => Ok(()),
            // A missing probe object proves the bucket answers and we may read it.
            Err(e) if e.http_status_code() == Some(404) && !format!("{e:#}").contains("bucket") => {
                Ok(())
            }
            Err(e) => Err(e.into()),
        }
    }
}

#[async_trait]
impl Store for Bucket {
    fn name(&self) -> &'static str {
        NAME
    }

    fn base_uri(&self) -> String {
        format!("gs://{}", self.bucket)
    }

    async fn create(&self, objects: Vec<Object>) -> Vec<Result<Put, SinkError>> {
        futures::stream::iter(objects.into_iter().map(|o| self.upload(o)))
            .buffered(UPLOADS_PER_BATCH)
            .collect()
            .await
    }

    async fn exists(&self, names: Vec<String>) -> Vec<Result<bool, SinkError>> {
        let asks = names.into_iter().map(|name| async move {
            self.json
                .exists(&name)
                .await
                .map_err(|e| SinkError::new(NAME, &e))
        });
        futures::stream::iter(asks)
            .buffered(UPLOADS_PER_BATCH)
            .collect()
            .await
    }

    async fn read(&self, name: &str) -> anyhow::Result<Option<Bytes>> {
        let read = self
            .client
            .read_object(self.bucket_path(), name)
            .send()
            .await;
        let mut response = match read {
            Ok(response) => response,
            Err(e) if e.http_status_code() == Some(404) => return Ok(None),
            Err(e) => {
                return Err(anyhow::Error::from(e)
                    .context(format!("failed to read gs://{}/{name}", self.bucket)));
            }
        };
        let mut body = Vec::new();
        while let Some(chunk) = response.next().await {
            let chunk =
                chunk.with_context(|| format!("failed to read gs://{}/{name}", self.bucket))?;
            body.extend_from_slice(&chunk);
        }
        Ok(Some(Bytes::from(body)))
    }

    fn list(&self, prefix: String) -> BoxStream<'static, anyhow::Result<Listed>> {
        self.json.clone().list(prefix)
    }

    async fn folders(&self, prefix: &str) -> anyhow::Result<Vec<String>> {
        self.json.folders(prefix).await
    }

    async fn check(&self) -> Result<(), SinkError> {
        self.readiness.get(self.probe()).await
    }

    fn batches_in_flight(&self) -> usize {
        8
    }
}

/// The two calls of the Cloud Storage JSON API the crate does not make over HTTP.
#[derive(Clone)]
struct JsonApi {
    http: reqwest::Client,
    endpoint: String,
    bucket: String,
    credentials: Credentials,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Page {
    #[serde(default)]
    items: Vec<Item>,
    #[serde(default)]
    prefixes: Vec<String>,
    next_page_token: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Item {
    name: String,
    #[serde(default)]
    metadata: BTreeMap<String, String>,
    time_created: Option<DateTime<Utc>>,
}

impl JsonApi {
    fn new(
        endpoint: String,
        bucket: String,
        credentials: Credentials,
        deadline: Duration,
    ) -> anyhow::Result<Self> {
        let http = reqwest::Client::builder()
            .timeout(deadline.max(Duration::from_secs(30)))
            .build()
            .context("failed to build the Cloud Storage HTTP client")?;
        Ok(Self {
            http,
            endpoint,
            bucket,
            credentials,
        })
    }

    /// `{endpoint}/storage/v1/b/{bucket}/…`, each segment percent-encoded (object names hold `/`).
    fn url(&self, segments: &[&str]) -> anyhow::Result<reqwest::Url> {
        let mut url = reqwest::Url::parse(&self.endpoint)
            .with_context(|| format!("{} is not a URL", self.endpoint))?;
        url.path_segments_mut()
            .map_err(|_| anyhow::anyhow!("{} cannot be a base URL", self.endpoint))?
            .pop_if_empty()
            .extend(["storage", "v1", "b", &self.bucket])
            .extend(segments);
        Ok(url)
    }

    async fn get(
        &self,
        url: reqwest::Url,
        query: &[(&str, &str)],
    ) -> anyhow::Result<reqwest::Response> {
        let mut request = self.http.get(url).query(query);
        if let CacheableResource::New { data, .. } = self
            .credentials
            .headers(http::Extensions::new())
            .await
            .context("failed to get Cloud Storage credentials")?
        {
            request = request.headers(data);
        }
        request.send().await.context("Cloud Storage did not answer")
    }

    async fn exists(&self, name: &str) -> anyhow::Result<bool> {
        let response = self
            .get(self.url(&["o", name])?, &[("fields", "name")])
            .await?;
        match response.status().as_u16() {
            200 => Ok(true),
            404 => Ok(false),
            status => anyhow::bail!(
                "looking for gs://{}/{name} was answered {status}",
                self.bucket
            ),
        }
    }

    /// The folders right below `prefix`: a listing with `delimiter=/`, all its pages.
    async fn folders(&self, prefix: &str) -> anyhow::Result<Vec<String>> {
        let mut folders = Vec::new();
        let mut token: Option<String> = None;
        loop {
            let page = self
                .page(
                    prefix,
                    token.as_deref(),
                    &[("delimiter", "/"), ("fields", "prefixes,nextPageToken")],
                )
                .await?;
            folders.extend(page.prefixes);
            match page.next_page_token {
                Some(next) => token = Some(next),
                None => break,
            }
        }
        folders.sort();
        Ok(folders)
    }

    async fn page(
        &self,
        prefix: &str,
        token: Option<&str>,
        extra: &[(&str, &str)],
    ) -> anyhow::Result<Page> {
        let url = self.url(&["o"])?;
        let mut query = vec![("prefix", prefix), ("maxResults", "1000")];
        query.extend_from_slice(extra);
        if !extra.iter().any(|(k, _)| *k == "fields") {
            query.push(("fields", "items(name,metadata,timeCreated),nextPageToken"));
        }
        if let Some(token) = token {
            query.push(("pageToken", token));
        }
        let response = self.get(url, &query).await?;
        let status = response.status();
        if !status.is_success() {
            anyhow::bail!(
                "listing gs://{}/{prefix} was answered {status}",
                self.bucket
            );
        }
        response.json().await.with_context(|| {
            format!(
                "listing gs://{}/{prefix} gave an unreadable page",
                self.bucket
            )
        })
    }

    fn list(self, prefix: String) -> BoxStream<'static, anyhow::Result<Listed>> {
        let pages = futures::stream::try_unfold(
            (self, prefix, Some(None::<String>)),
            |(api, prefix, next)| async move {
                let Some(token) = next else {
                    return Ok::<_, anyhow::Error>(None);
                };
                let page = api.page(&prefix, token.as_deref(), &[]).await?;
                let next = page.next_page_token.clone().map(Some);
                Ok(Some((page.items, (api, prefix, next))))
            },
        );
        Box::pin(
            pages
                .map_ok(|items| {
                    futures::stream::iter(items.into_iter().map(|item| {
                        Ok(Listed {
                            name: item.name,
                            metadata: item.metadata,
                            created: item.time_created.unwrap_or_else(Utc::now),
                        })
                    }))
                })
                .try_flatten(),
        )
    }
}
