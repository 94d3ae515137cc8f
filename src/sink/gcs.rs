//! The landing layer in Cloud Storage, through Google's official `google-cloud-storage` crate.
//!
//! Objects are created with `ifGenerationMatch=0`: GCS refuses (412) to overwrite, which is
//! exactly the "already landed" answer a redelivery needs, and a retried upload can never
//! replace a landed object. Uploads are forced to be single-shot (multipart): that is the
//! upload type on which the emulator enforces the precondition too.

use std::time::Duration;

use anyhow::Context;
use async_trait::async_trait;
use futures::StreamExt;
use google_cloud_gax::retry_policy::RetryPolicyExt;
use google_cloud_storage::client::Storage;
use google_cloud_storage::retry_policy::RetryableErrors;

use super::readiness::CachedCheck;
use super::{Entry, Layer, Sink, SinkError, Written};
use crate::event::Record;

const NAME: &str = "gcs";

/// The bucket of the landing layer.
#[derive(Debug, Clone)]
pub struct GcsTarget {
    pub bucket: String,
    /// An emulator's URL (`STORAGE_EMULATOR_HOST`); anonymous credentials then.
    pub emulator: Option<String>,
}
/// Uploads in flight at once within one batch.
const UPLOADS_PER_BATCH: usize = 64;

pub struct GcsLanding {
    client: Storage,
    bucket: String,
    /// Object read by the readiness probe; it need not exist.
    probe_object: String,
    deadline: Duration,
    readiness: CachedCheck,
}

impl GcsLanding {
    /// Builds the client: Application Default Credentials, or anonymous ones for an emulator.
    /// `deadline` bounds each upload, retries included.
    pub async fn connect(
        target: &GcsTarget,
        prefix: &str,
        deadline: Duration,
    ) -> anyhow::Result<Self> {
        let mut builder = Storage::builder()
            .with_retry_policy(RetryableErrors.with_time_limit(deadline))
            // Every object fits in memory (the body limit bounds it), so never resumable.
            .with_resumable_upload_threshold(usize::MAX);
        if let Some(endpoint) = &target.emulator {
            builder = builder
                .with_endpoint(endpoint.trim_end_matches('/'))
                .with_credentials(
                    google_cloud_auth::credentials::anonymous::Builder::new().build(),
                );
        }
        let client = builder
            .build()
            .await
            .context("failed to build the Cloud Storage client")?;
        Ok(Self {
            client,
            bucket: target.bucket.clone(),
            probe_object: format!("{prefix}/_readiness_probe"),
            deadline,
            readiness: CachedCheck::new(NAME, format!("bucket {} is not reachable", target.bucket)),
        })
    }

    pub fn base_uri(&self) -> String {
        format!("gs://{}", self.bucket)
    }

    fn bucket_path(&self) -> String {
        format!("projects/_/buckets/{}", self.bucket)
    }

    async fn upload(&self, record: &Record) -> Result<Written, SinkError> {
        let metadata = record
            .object_metadata
            .iter()
            .map(|(k, v)| (k.to_string(), v.clone()));
        let upload = self
            .client
            .write_object(
                self.bucket_path(),
                &record.object_name,
                record.object_body.clone(),
            )
            .set_if_generation_match(0)
            .set_content_type("application/json")
            .set_metadata(metadata)
            .send_buffered();
        let failed = |e: anyhow::Error| {
            SinkError::new(
                NAME,
                &e.context(format!(
                    "failed to upload gs://{}/{}",
                    self.bucket, record.object_name
                )),
            )
        };
        match tokio::time::timeout(self.deadline, upload).await {
            Ok(Ok(_)) => Ok(Written::Created),
            // The precondition failed: the object exists, so this message has landed before.
            Ok(Err(e)) if e.http_status_code() == Some(412) => Ok(Written::AlreadyPresent),
            Ok(Err(e)) => Err(failed(e.into())),
            Err(_) => Err(failed(anyhow::anyhow!(
                "timed out after {:?}",
                self.deadline
            ))),
        }
    }

    async fn probe(&self) -> anyhow::Result<()> {
        let read = self
            .client
            .read_object(self.bucket_path(), &self.probe_object);
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
impl Sink for GcsLanding {
    fn name(&self) -> &'static str {
        NAME
    }

    fn layer(&self) -> Layer {
        Layer::Landing
    }

    async fn write(&self, batch: &[Entry]) -> Vec<Result<Written, SinkError>> {
        let uploads: Vec<_> = batch.iter().map(|e| self.upload(&e.record)).collect();
        futures::stream::iter(uploads)
            .buffered(UPLOADS_PER_BATCH)
            .collect()
            .await
    }

    async fn check(&self) -> Result<(), SinkError> {
        self.readiness.get(self.probe()).await
    }

    fn batches_in_flight(&self) -> usize {
        8
    }
}
