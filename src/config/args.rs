//! The flag groups, each under its own `--help` heading, and the sink settings that `serve`
//! and the repair commands share.

use std::net::IpAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::builder::BoolishValueParser;
use clap::{Args, ValueEnum};

use super::{ConfigErrors, Given, emulator_url};
use crate::event::PartitionTime;
use crate::event::route::Routing;
use crate::landing::bucket::GcsTarget;
use crate::landing::layout::SettingNames;
use crate::landing::{LandingBatchConfig, LandingLayout, LayoutKind};
use crate::pipeline::build::{EmbeddedConfig, SinkConfig};
use crate::schema::CatalogSource;
use crate::sink::batch::BatchConfig;
use crate::sink::bigquery::{BigQueryConfig, BigQueryTarget, WriteApi};
use crate::telemetry::LogFormat;

#[derive(Debug, Clone, Args)]
#[command(next_help_heading = "Server")]
pub struct ServerArgs {
    /// Port to listen on (Cloud Run sets PORT).
    #[arg(long, env = "PORT", default_value_t = 8080)]
    pub port: u16,
    /// Address to listen on.
    #[arg(long, env = "LANDFALL_HOST", default_value = "0.0.0.0")]
    pub host: IpAddr,
}

#[derive(Debug, Clone, Args)]
#[command(next_help_heading = "Landing layer")]
pub struct LandingArgs {
    /// First segment of every landing object name.
    #[arg(long, env = "LANDFALL_PREFIX", default_value = "output")]
    pub prefix: String,
    /// Which time partitions landing paths: the event's own time or the publish time.
    #[arg(long, env = "LANDFALL_PARTITION_TIME", value_enum, default_value_t = PartitionTime::Event)]
    pub partition_time: PartitionTime,
    /// `event`: one object per message (exact: finds redeliveries). `batch`: one object per
    /// event type, minute and batch of messages (hundreds of times fewer objects at volume, so
    /// far lower Cloud Storage costs).
    #[arg(long, env = "LANDFALL_LANDING_LAYOUT", value_enum, default_value_t = LayoutKind::Event)]
    pub landing_layout: LayoutKind,
    /// Batch layout: most messages in one object.
    #[arg(
        long,
        env = "LANDFALL_LANDING_BATCH_MAX_EVENTS",
        default_value_t = 1000
    )]
    pub landing_batch_max_events: usize,
    /// Batch layout: most payload bytes in one object.
    #[arg(long, env = "LANDFALL_LANDING_BATCH_MAX_BYTES", default_value_t = 16 * 1024 * 1024)]
    pub landing_batch_max_bytes: usize,
    /// Batch layout: how long an object waits for more messages, in milliseconds.
    #[arg(long, env = "LANDFALL_LANDING_BATCH_LINGER_MS", default_value_t = 1000)]
    pub landing_batch_linger_ms: u64,
    /// Batch layout: an object is also cut once no message has joined it for this long, in
    /// milliseconds (set it to the linger to always wait the linger out).
    #[arg(long, env = "LANDFALL_LANDING_BATCH_IDLE_MS", default_value_t = 50)]
    pub landing_batch_idle_ms: u64,
}

#[derive(Debug, Clone, Args)]
#[command(next_help_heading = "Embedded sinks")]
pub struct EmbeddedArgs {
    /// Folder for the embedded sinks: `landing/` for files, `warehouse.db` for SQLite.
    #[arg(long, env = "LANDFALL_DATA_DIR", default_value = "./landfall-data")]
    pub data_dir: PathBuf,
    /// Keep the embedded sinks on as well when a Google sink is configured.
    #[arg(long, env = "LANDFALL_ALSO_LOCAL", value_parser = BoolishValueParser::new(), default_value_t = false, num_args = 0..=1, default_missing_value = "true", hide_possible_values = true)]
    pub also_local: bool,
    /// How long a write waits for a locked SQLite database before failing (then 503).
    #[arg(long, env = "LANDFALL_SQLITE_BUSY_TIMEOUT_MS", default_value_t = 5000)]
    pub sqlite_busy_timeout_ms: u64,
}

#[derive(Debug, Clone, Args)]
#[command(next_help_heading = "Event catalog")]
pub struct CatalogArgs {
    /// Folder of JSON Schema files, one per event type, replacing the shipped catalog.
    #[arg(long, env = "LANDFALL_SCHEMAS")]
    pub schemas: Option<PathBuf>,
}

impl CatalogArgs {
    pub fn source(&self) -> CatalogSource {
        self.schemas
            .clone()
            .map_or(CatalogSource::Shipped, CatalogSource::Folder)
    }
}

#[derive(Debug, Clone, Args)]
#[command(next_help_heading = "Event catalog")]
pub struct RoutingArgs {
    /// Top-level payload field naming the event type.
    #[arg(long, env = "LANDFALL_EVENT_TYPE_FIELD", default_value = "event_type")]
    pub event_type_field: String,
    /// Take the event type from this Pub/Sub message attribute instead of the payload.
    #[arg(long, env = "LANDFALL_EVENT_TYPE_ATTRIBUTE")]
    pub event_type_attribute: Option<String>,
}

impl RoutingArgs {
    pub fn routing(&self, problems: &mut Vec<String>) -> Routing {
        match &self.event_type_attribute {
            Some(attribute) if attribute.is_empty() => {
                problems.push(format!(
                    "{} must not be empty",
                    setting!(RoutingArgs, event_type_attribute)
                ));
                Routing::default()
            }
            Some(attribute) => Routing::Attribute(attribute.clone()),
            None => Routing::Field(self.event_type_field.clone()),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum AuthMode {
    /// Accept every request (embedded default; never in production).
    None,
    /// Require a Google-signed OIDC token from an allowed service account.
    Oidc,
    /// Like `oidc`, for a Cloud Run service that does not allow unauthenticated calls: Cloud
    /// Run verifies the token's signature and removes it; landfall checks the claims.
    CloudRun,
}

#[derive(Debug, Clone, Args)]
#[command(next_help_heading = "Authentication")]
pub struct AuthArgs {
    /// Push authentication. Default: `oidc` when a Google sink is configured, else `none`.
    #[arg(long, env = "LANDFALL_AUTH", value_enum)]
    pub auth: Option<AuthMode>,
    /// Audience the push subscription puts in its tokens.
    #[arg(long, env = "LANDFALL_OIDC_AUDIENCE")]
    pub oidc_audience: Option<String>,
    /// Service-account email(s) allowed to push; repeat the flag or separate with commas.
    #[arg(long, env = "LANDFALL_OIDC_ALLOWED_EMAIL", value_delimiter = ',')]
    pub oidc_allowed_email: Vec<String>,
    /// Where Google's token-signing keys are published.
    #[arg(long, env = "LANDFALL_OIDC_JWKS_URL", default_value = super::GOOGLE_JWKS_URL)]
    pub oidc_jwks_url: String,
    /// Accepted token issuer. Default: both `accounts.google.com` and `https://accounts.google.com`.
    #[arg(long, env = "LANDFALL_OIDC_ISSUER")]
    pub oidc_issuer: Option<String>,
    /// Clock skew tolerated on `exp`, `iat` and `nbf`, in seconds.
    #[arg(long, env = "LANDFALL_OIDC_LEEWAY", default_value_t = 60)]
    pub oidc_leeway: u64,
    /// `--auth cloud-run`: the URL an unauthenticated probe is sent to, to prove that Cloud
    /// Run turns such calls away (default: the audience, when it is a URL; `off` for none).
    #[arg(long, env = "LANDFALL_CLOUD_RUN_PROBE_URL")]
    pub cloud_run_probe_url: Option<String>,
}

#[derive(Debug, Clone, Args)]
#[command(next_help_heading = "Google Cloud")]
pub struct GoogleArgs {
    /// Cloud Storage bucket for the landing layer; turns the GCS sink on.
    #[arg(long, env = "LANDFALL_GCS_BUCKET")]
    pub gcs_bucket: Option<String>,
    /// Cloud Storage emulator URL (e.g. http://127.0.0.1:4443); uses anonymous credentials.
    #[arg(long, env = "STORAGE_EMULATOR_HOST")]
    pub storage_emulator_host: Option<String>,
    #[command(flatten)]
    pub bigquery: BigQueryArgs,
}

#[derive(Debug, Clone, Args)]
#[command(next_help_heading = "Google Cloud")]
pub struct BigQueryArgs {
    /// Project of the BigQuery raw layer; turns the BigQuery sink on.
    #[arg(long, env = "LANDFALL_BIGQUERY_PROJECT")]
    pub bigquery_project: Option<String>,
    /// BigQuery dataset of the raw layer.
    #[arg(long, env = "LANDFALL_BIGQUERY_DATASET", default_value = "raw")]
    pub bigquery_dataset: String,
    /// Where `schema apply` creates the datasets (e.g. EU, europe-west1); BigQuery's default (US) when unset.
    #[arg(long, env = "LANDFALL_BIGQUERY_LOCATION")]
    pub bigquery_location: Option<String>,
    /// BigQuery emulator host:port or URL; uses anonymous credentials.
    #[arg(long, env = "BIGQUERY_EMULATOR_HOST")]
    pub bigquery_emulator_host: Option<String>,
    /// How rows reach BigQuery: `storage`, the Storage Write API (half the price, first 2 TiB
    /// a month free), or `insert-all`, the legacy streaming API.
    #[arg(
        long,
        env = "LANDFALL_BIGQUERY_WRITE_API",
        value_enum,
        default_value_t = WriteApiArg::Storage
    )]
    pub bigquery_write_api: WriteApiArg,
    /// The Storage Write API emulator's gRPC host:port or URL (with --bigquery-emulator-host).
    #[arg(long, env = "BIGQUERY_STORAGE_EMULATOR_HOST")]
    pub bigquery_storage_emulator_host: Option<String>,
    /// BigQuery dataset of the curated layer's views, which `schema apply` makes beside the
    /// raw one (accepted everywhere, so that one set of settings serves every command).
    #[arg(
        long,
        env = "LANDFALL_BIGQUERY_CURATED_DATASET",
        default_value = "curated"
    )]
    pub bigquery_curated_dataset: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum WriteApiArg {
    Storage,
    InsertAll,
}

impl BigQueryArgs {
    /// The raw layer as a sink, if a project is configured.
    fn sink(
        &self,
        problems: &mut Vec<String>,
        warnings: &mut Vec<String>,
    ) -> Option<BigQueryConfig> {
        let target = self.target()?;
        let storage_emulator = self
            .bigquery_storage_emulator_host
            .as_deref()
            .map(emulator_url);
        let write_api = match self.bigquery_write_api {
            WriteApiArg::InsertAll => {
                if storage_emulator.is_some() {
                    warnings.push(format!(
                        "{} has no effect with {} insert-all",
                        setting!(BigQueryArgs, bigquery_storage_emulator_host),
                        setting!(BigQueryArgs, bigquery_write_api)
                    ));
                }
                WriteApi::InsertAll
            }
            WriteApiArg::Storage => {
                if target.emulator.is_some() && storage_emulator.is_none() {
                    problems.push(format!(
                        "{} is set but {} is not: the Storage Write API would go to Google; \
                         give the emulator's gRPC address, or choose {} insert-all",
                        setting!(BigQueryArgs, bigquery_emulator_host),
                        setting!(BigQueryArgs, bigquery_storage_emulator_host),
                        setting!(BigQueryArgs, bigquery_write_api)
                    ));
                }
                WriteApi::Storage {
                    emulator: storage_emulator,
                }
            }
        };
        Some(BigQueryConfig { target, write_api })
    }

    /// The raw layer's dataset, if a project is configured.
    pub fn target(&self) -> Option<BigQueryTarget> {
        self.bigquery_project.clone().map(|project| BigQueryTarget {
            project,
            dataset: self.bigquery_dataset.clone(),
            location: self.bigquery_location.clone(),
            emulator: self.bigquery_emulator_host.as_deref().map(emulator_url),
        })
    }

    /// Settings that only mean something with a BigQuery project.
    fn ignored_without_a_project(&self, given: &Given, warnings: &mut Vec<String>) {
        if self.bigquery_project.is_some() {
            return;
        }
        for (given, flag) in [
            (
                given!(given, BigQueryArgs, bigquery_dataset),
                setting!(BigQueryArgs, bigquery_dataset),
            ),
            (
                given!(given, BigQueryArgs, bigquery_location),
                setting!(BigQueryArgs, bigquery_location),
            ),
            (
                given!(given, BigQueryArgs, bigquery_emulator_host),
                setting!(BigQueryArgs, bigquery_emulator_host),
            ),
            (
                given!(given, BigQueryArgs, bigquery_write_api),
                setting!(BigQueryArgs, bigquery_write_api),
            ),
            (
                given!(given, BigQueryArgs, bigquery_storage_emulator_host),
                setting!(BigQueryArgs, bigquery_storage_emulator_host),
            ),
        ] {
            if given {
                warnings.push(format!(
                    "{flag} has no effect without {}",
                    setting!(BigQueryArgs, bigquery_project)
                ));
            }
        }
    }
}

#[derive(Debug, Clone, Args)]
#[command(next_help_heading = "Batching")]
pub struct BatchArgs {
    /// Most events written to a warehouse in one batch (one SQLite transaction, one BigQuery request).
    #[arg(long, env = "LANDFALL_BATCH_MAX_EVENTS", default_value_t = 500)]
    pub batch_max_events: usize,
    /// How long a batch waits for more events before it is written, in milliseconds.
    #[arg(long, env = "LANDFALL_BATCH_LINGER_MS", default_value_t = 1)]
    pub batch_linger_ms: u64,
}

#[derive(Debug, Clone, Args)]
#[command(next_help_heading = "Logging")]
pub struct LogArgs {
    /// Log format: readable `text`, or `json` for Cloud Logging.
    #[arg(long, env = "LANDFALL_LOG_FORMAT", value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,
}

/// Where events land and which catalog and routing classify them: what `serve` and the
/// repair commands share, so that both build the very same sinks and classifier.
#[derive(Debug, Clone, Args)]
pub struct SinkArgs {
    #[command(flatten)]
    pub landing: LandingArgs,
    #[command(flatten)]
    pub embedded: EmbeddedArgs,
    #[command(flatten)]
    pub catalog: CatalogArgs,
    #[command(flatten)]
    pub routing: RoutingArgs,
    #[command(flatten)]
    pub google: GoogleArgs,
    #[command(flatten)]
    pub batching: BatchArgs,
}

impl SinkArgs {
    /// Whether a Google sink is configured.
    pub fn google(&self) -> bool {
        self.google.gcs_bucket.is_some() || self.google.bigquery.bigquery_project.is_some()
    }

    pub fn resolve(
        &self,
        deadline: Duration,
        given: &Given,
        problems: &mut Vec<String>,
        warnings: &mut Vec<String>,
    ) -> SinkConfig {
        let gcs = self.google.gcs_bucket.clone().map(|bucket| GcsTarget {
            bucket,
            emulator: self.google.storage_emulator_host.clone(),
        });
        if gcs.is_none() && given!(given, GoogleArgs, storage_emulator_host) {
            warnings.push(format!(
                "{} has no effect without {}",
                setting!(GoogleArgs, storage_emulator_host),
                setting!(GoogleArgs, gcs_bucket)
            ));
        }
        self.google
            .bigquery
            .ignored_without_a_project(given, warnings);
        if given!(given, BigQueryArgs, bigquery_curated_dataset) {
            warnings.push(format!(
                "{} has no effect here: `schema apply` makes the curated layer",
                setting!(BigQueryArgs, bigquery_curated_dataset)
            ));
        }
        let google = self.google();
        if !google && given!(given, EmbeddedArgs, also_local) {
            warnings.push(format!(
                "{} has no effect without a Google sink: the embedded sinks are on anyway",
                setting!(EmbeddedArgs, also_local)
            ));
        }
        let embedded = (!google || self.embedded.also_local)
            .then(|| self.embedded_config(problems))
            .flatten();
        if let Err(problem) = checked_prefix(&self.landing.prefix) {
            problems.push(problem);
        }
        let landing = &self.landing;
        if landing.landing_layout == LayoutKind::Event {
            for (given, flag) in [
                (
                    given!(given, LandingArgs, landing_batch_max_events),
                    setting!(LandingArgs, landing_batch_max_events),
                ),
                (
                    given!(given, LandingArgs, landing_batch_max_bytes),
                    setting!(LandingArgs, landing_batch_max_bytes),
                ),
                (
                    given!(given, LandingArgs, landing_batch_linger_ms),
                    setting!(LandingArgs, landing_batch_linger_ms),
                ),
                (
                    given!(given, LandingArgs, landing_batch_idle_ms),
                    setting!(LandingArgs, landing_batch_idle_ms),
                ),
            ] {
                if given {
                    warnings.push(format!("{flag} has no effect with {}", layout_is("event")));
                }
            }
        }
        at_least_one(
            problems,
            &[
                (
                    self.batching.batch_max_events,
                    setting!(BatchArgs, batch_max_events),
                ),
                (
                    landing.landing_batch_max_events,
                    setting!(LandingArgs, landing_batch_max_events),
                ),
                (
                    landing.landing_batch_max_bytes,
                    setting!(LandingArgs, landing_batch_max_bytes),
                ),
            ],
        );
        SinkConfig {
            landing: LandingLayout {
                prefix: landing.prefix.clone(),
                partition: landing.partition_time,
                kind: landing.landing_layout,
                names: SettingNames {
                    layout: setting!(LandingArgs, landing_layout),
                    partition_time: setting!(LandingArgs, partition_time),
                },
            },
            landing_batch: LandingBatchConfig {
                max_events: landing.landing_batch_max_events,
                max_bytes: landing.landing_batch_max_bytes,
                linger: Duration::from_millis(landing.landing_batch_linger_ms),
                idle: Duration::from_millis(landing.landing_batch_idle_ms),
            },
            embedded,
            gcs,
            bigquery: self.google.bigquery.sink(problems, warnings),
            batch: BatchConfig::new(
                self.batching.batch_max_events,
                Duration::from_millis(self.batching.batch_linger_ms),
            ),
            deadline,
        }
    }

    fn embedded_config(&self, problems: &mut Vec<String>) -> Option<EmbeddedConfig> {
        let data_dir = &self.embedded.data_dir;
        match std::path::absolute(data_dir) {
            Ok(path) if path.exists() && !path.is_dir() => {
                problems.push(format!(
                    "{} {} is a file, not a folder",
                    setting!(EmbeddedArgs, data_dir),
                    data_dir.display()
                ));
                None
            }
            Ok(data_dir) => Some(EmbeddedConfig {
                data_dir,
                sqlite_busy_timeout: Duration::from_millis(self.embedded.sqlite_busy_timeout_ms),
            }),
            Err(e) => {
                problems.push(format!(
                    "{} {}: {e}",
                    setting!(EmbeddedArgs, data_dir),
                    data_dir.display()
                ));
                None
            }
        }
    }
}

/// A problem for each of these settings (its value and its name) that is 0.
pub fn at_least_one(problems: &mut Vec<String>, settings: &[(usize, String)]) {
    for (value, name) in settings {
        if *value == 0 {
            problems.push(format!("{name} must be at least 1"));
        }
    }
}

/// `--landing-layout event (LANDFALL_LANDING_LAYOUT)`: the layout setting with a value.
fn layout_is(value: &str) -> String {
    let named = setting!(LandingArgs, landing_layout);
    match named.split_once(' ') {
        Some((flag, variable)) => format!("{flag} {value} {variable}"),
        None => format!("{named} {value}"),
    }
}

/// The problems found, or the value.
pub fn checked<T>(value: T, problems: Vec<String>) -> Result<T, ConfigErrors> {
    if problems.is_empty() {
        Ok(value)
    } else {
        Err(ConfigErrors(problems))
    }
}

/// The prefix becomes part of file paths and object names, so it must stay inside them.
fn checked_prefix(prefix: &str) -> Result<(), String> {
    let ok = !prefix.is_empty()
        && prefix
            .split('/')
            .all(|s| !s.is_empty() && s != "." && s != ".." && !s.starts_with('_'));
    if ok {
        Ok(())
    } else {
        Err(format!(
            "{} {prefix:?} must be one or more non-empty path segments, without `.` or `..`, not starting with `_`, and no leading or trailing `/`",
            setting!(LandingArgs, prefix)
        ))
    }
}

#[derive(Debug, Clone, Args)]
pub struct CheckArgs {
    #[command(flatten)]
    pub catalog: CatalogArgs,
    /// Also compare the catalog with the embedded warehouse in this folder, as `serve` would.
    #[arg(long, env = "LANDFALL_DATA_DIR")]
    pub data_dir: Option<PathBuf>,
    #[command(flatten)]
    pub bigquery: CheckBigQueryArgs,
}

/// The live BigQuery tables `schema check` compares the catalog with.
#[derive(Debug, Clone, Args)]
#[command(next_help_heading = "Google Cloud")]
pub struct CheckBigQueryArgs {
    /// Also compare the catalog with the tables of the raw layer in this BigQuery project.
    #[arg(long, env = "LANDFALL_BIGQUERY_PROJECT")]
    pub bigquery_project: Option<String>,
    /// BigQuery dataset of the raw layer.
    #[arg(long, env = "LANDFALL_BIGQUERY_DATASET", default_value = "raw")]
    pub bigquery_dataset: String,
    /// BigQuery emulator host:port or URL; uses anonymous credentials.
    #[arg(long, env = "BIGQUERY_EMULATOR_HOST")]
    pub bigquery_emulator_host: Option<String>,
}

impl CheckBigQueryArgs {
    pub fn target(&self) -> Option<BigQueryTarget> {
        self.bigquery_project.clone().map(|project| BigQueryTarget {
            project,
            dataset: self.bigquery_dataset.clone(),
            location: None,
            emulator: self.bigquery_emulator_host.as_deref().map(emulator_url),
        })
    }
}

#[derive(Debug, Clone, Args)]
pub struct PrintArgs {
    #[command(flatten)]
    pub catalog: CatalogArgs,
    /// Print the curated layer's views instead of the raw layer's tables.
    #[arg(long)]
    pub curated: bool,
    /// Project of the raw layer, to qualify the names with.
    #[arg(long, env = "LANDFALL_BIGQUERY_PROJECT")]
    pub bigquery_project: Option<String>,
    /// BigQuery dataset of the raw layer.
    #[arg(long, env = "LANDFALL_BIGQUERY_DATASET", default_value = "raw")]
    pub bigquery_dataset: String,
    /// BigQuery dataset of the curated layer's views.
    #[arg(
        long,
        env = "LANDFALL_BIGQUERY_CURATED_DATASET",
        default_value = "curated"
    )]
    pub bigquery_curated_dataset: String,
    /// Print, for each type with a curated key, a table in this dataset holding its `_latest`
    /// view and the MERGE that brings it up to date (to schedule), instead of the views.
    #[arg(long, value_name = "DATASET")]
    pub materialise_into: Option<String>,
    /// How many days back, by the type's time field, each MERGE reads.
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u32).range(1..))]
    pub lookback_days: u32,
}

#[derive(Debug, Clone, Args)]
pub struct ApplyArgs {
    #[command(flatten)]
    pub catalog: CatalogArgs,
    #[command(flatten)]
    pub bigquery: BigQueryArgs,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefixes_cannot_escape_the_landing_root_or_look_like_landfalls_own_folders() {
        for bad in [
            "",
            "/abs",
            "a/../b",
            "a//b",
            "trailing/",
            "_landfall",
            "a/_x",
        ] {
            assert!(checked_prefix(bad).is_err(), "{bad}");
        }
        assert!(checked_prefix("landing/v1").is_ok());
    }
}
