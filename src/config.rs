//! Command line and environment, parsed once into typed settings.
//!
//! Every flag is also an environment variable, because Cloud Run is configured through the
//! environment. [`Settings::resolve`] checks combinations once, at start, so a misconfigured
//! service refuses to start instead of failing on its first message.

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, bail};
use clap::{Args, Parser, Subcommand, ValueEnum};

use crate::event::PartitionTime;
use crate::sink::batch::BatchConfig;
use crate::telemetry::LogFormat;

pub const GOOGLE_JWKS_URL: &str = "https://www.googleapis.com/oauth2/v3/certs";
pub const GOOGLE_ISSUERS: &[&str] = &["accounts.google.com", "https://accounts.google.com"];

#[derive(Debug, Parser)]
#[command(
    name = "landfall",
    version,
    about = "Pub/Sub push endpoint: verifies, validates and lands e-commerce events in a landing \
             layer (GCS or a folder) and a raw layer (BigQuery or SQLite)."
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Option<Command>,
    #[command(flatten)]
    pub settings: Settings,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Serve Pub/Sub push requests (the default when no command is given).
    Serve,
    /// The BigQuery raw layer's tables.
    Schema {
        #[command(subcommand)]
        action: SchemaAction,
    },
}

#[derive(Debug, Clone, Copy, Subcommand)]
pub enum SchemaAction {
    /// Print the BigQuery DDL (CREATE TABLE IF NOT EXISTS … PARTITION BY … CLUSTER BY …).
    Print,
    /// Create the dataset and tables through the API, adding missing columns; idempotent.
    Apply,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum AuthMode {
    /// Accept every request (embedded default; never in production).
    None,
    /// Require a Google-signed OIDC token from an allowed service account.
    Oidc,
}

#[derive(Debug, Clone, Args)]
pub struct Settings {
    /// Port to listen on (Cloud Run sets PORT).
    #[arg(long, env = "PORT", default_value_t = 8080, global = true)]
    pub port: u16,
    /// Address to listen on.
    #[arg(long, env = "LANDFALL_HOST", default_value = "0.0.0.0", global = true)]
    pub host: IpAddr,
    /// Folder for the embedded sinks: `landing/` for files, `warehouse.db` for SQLite.
    #[arg(
        long,
        env = "LANDFALL_DATA_DIR",
        default_value = "./landfall-data",
        global = true
    )]
    pub data_dir: PathBuf,
    /// First segment of every landing object name.
    #[arg(long, env = "LANDFALL_PREFIX", default_value = "output", global = true)]
    pub prefix: String,
    /// Which time partitions landing paths: the event's own time or the publish time.
    #[arg(long, env = "LANDFALL_PARTITION_TIME", value_enum, default_value_t = PartitionTime::Event, global = true)]
    pub partition_time: PartitionTime,
    /// Push authentication. Default: `oidc` when a Google sink is configured, else `none`.
    #[arg(long, env = "LANDFALL_AUTH", value_enum, global = true)]
    pub auth: Option<AuthMode>,
    /// Audience the push subscription puts in its tokens (Google's default: the push URL).
    #[arg(long, env = "LANDFALL_OIDC_AUDIENCE", global = true)]
    pub oidc_audience: Option<String>,
    /// Service-account email(s) allowed to push; repeat the flag or separate with commas.
    #[arg(
        long,
        env = "LANDFALL_OIDC_ALLOWED_EMAIL",
        value_delimiter = ',',
        global = true
    )]
    pub oidc_allowed_email: Vec<String>,
    /// Where Google's token-signing keys are published.
    #[arg(long, env = "LANDFALL_OIDC_JWKS_URL", default_value = GOOGLE_JWKS_URL, global = true)]
    pub oidc_jwks_url: String,
    /// Accepted token issuer. Default: both `accounts.google.com` and `https://accounts.google.com`.
    #[arg(long, env = "LANDFALL_OIDC_ISSUER", global = true)]
    pub oidc_issuer: Option<String>,
    /// Clock skew tolerated on `exp`, `iat` and `nbf`, in seconds.
    #[arg(
        long,
        env = "LANDFALL_OIDC_LEEWAY",
        default_value_t = 60,
        global = true
    )]
    pub oidc_leeway: u64,
    /// Cloud Storage bucket for the landing layer; turns the GCS sink on.
    #[arg(long, env = "LANDFALL_GCS_BUCKET", global = true)]
    pub gcs_bucket: Option<String>,
    /// Project of the BigQuery raw layer; turns the BigQuery sink on.
    #[arg(long, env = "LANDFALL_BIGQUERY_PROJECT", global = true)]
    pub bigquery_project: Option<String>,
    /// BigQuery dataset of the raw layer.
    #[arg(
        long,
        env = "LANDFALL_BIGQUERY_DATASET",
        default_value = "raw",
        global = true
    )]
    pub bigquery_dataset: String,
    /// Keep the embedded sinks on as well when a Google sink is configured.
    #[arg(long, env = "LANDFALL_ALSO_LOCAL", global = true)]
    pub also_local: bool,
    /// Cloud Storage emulator URL (e.g. http://127.0.0.1:4443); uses anonymous credentials.
    #[arg(long, env = "STORAGE_EMULATOR_HOST", global = true)]
    pub storage_emulator_host: Option<String>,
    /// BigQuery emulator host:port or URL; uses anonymous credentials.
    #[arg(long, env = "BIGQUERY_EMULATOR_HOST", global = true)]
    pub bigquery_emulator_host: Option<String>,
    /// Log format: readable `text`, or `json` for Cloud Logging.
    #[arg(long, env = "LANDFALL_LOG_FORMAT", value_enum, default_value_t = LogFormat::Text, global = true)]
    pub log_format: LogFormat,
    /// Largest accepted request body (Pub/Sub's 10 MB message is ~13.4 MB in base64).
    #[arg(long, env = "LANDFALL_MAX_BODY_BYTES", default_value_t = 16 * 1024 * 1024, global = true)]
    pub max_body_bytes: usize,
    /// Requests handled at once; beyond it requests get 429 at once instead of queueing.
    #[arg(
        long,
        env = "LANDFALL_MAX_CONCURRENCY",
        default_value_t = 1024,
        global = true
    )]
    pub max_concurrency: usize,
    /// Deadline for one push request, retries included; set it below the subscription's ack deadline.
    #[arg(
        long,
        env = "LANDFALL_REQUEST_TIMEOUT_SECS",
        default_value_t = 10,
        global = true
    )]
    pub request_timeout_secs: u64,
    /// After SIGTERM/SIGINT, how long in-flight requests and batches may take to finish.
    #[arg(
        long,
        env = "LANDFALL_SHUTDOWN_GRACE_SECS",
        default_value_t = 10,
        global = true
    )]
    pub shutdown_grace_secs: u64,
    /// Most events written in one batch (one SQLite transaction, one insertAll call).
    #[arg(
        long,
        env = "LANDFALL_BATCH_MAX_EVENTS",
        default_value_t = 500,
        global = true
    )]
    pub batch_max_events: usize,
    /// How long a batch waits for more events before it is written, in milliseconds.
    #[arg(
        long,
        env = "LANDFALL_BATCH_LINGER_MS",
        default_value_t = 1,
        global = true
    )]
    pub batch_linger_ms: u64,
    /// How long a write waits for a locked SQLite database before failing (then 503).
    #[arg(
        long,
        env = "LANDFALL_SQLITE_BUSY_TIMEOUT_MS",
        default_value_t = 5000,
        global = true
    )]
    pub sqlite_busy_timeout_ms: u64,
}

/// OIDC verification settings, complete by construction.
#[derive(Debug, Clone)]
pub struct OidcConfig {
    pub audience: String,
    pub allowed_emails: Vec<String>,
    pub jwks_url: String,
    pub issuers: Vec<String>,
    pub leeway: Duration,
}

#[derive(Debug, Clone)]
pub enum Auth {
    /// `explicit`: the operator asked for it despite a Google sink (warned at every start).
    None {
        explicit: bool,
    },
    Oidc(OidcConfig),
}

#[derive(Debug, Clone)]
pub struct BigQueryTarget {
    pub project: String,
    pub dataset: String,
    /// Base URL of an emulator's REST API, e.g. `http://127.0.0.1:9050`.
    pub emulator: Option<String>,
}

#[derive(Debug, Clone)]
pub struct GcsTarget {
    pub bucket: String,
    pub emulator: Option<String>,
}

#[derive(Debug, Clone)]
pub struct Limits {
    pub max_body_bytes: usize,
    pub max_concurrency: usize,
    pub request_timeout: Duration,
    pub shutdown_grace: Duration,
}

/// Everything `Application::build` needs, validated.
#[derive(Debug, Clone)]
pub struct Config {
    pub listen: SocketAddr,
    pub data_dir: PathBuf,
    pub prefix: String,
    pub partition: PartitionTime,
    pub auth: Auth,
    pub gcs: Option<GcsTarget>,
    pub bigquery: Option<BigQueryTarget>,
    /// Whether the embedded sinks (folder + SQLite) are on.
    pub local: bool,
    pub log_format: LogFormat,
    pub limits: Limits,
    pub batch: BatchConfig,
    pub sqlite_busy_timeout: Duration,
}

impl Settings {
    pub fn resolve(self) -> anyhow::Result<Config> {
        let gcs = self.gcs_bucket.clone().map(|bucket| GcsTarget {
            bucket,
            emulator: self.storage_emulator_host.clone(),
        });
        let bigquery = self.bigquery_target();
        let google = gcs.is_some() || bigquery.is_some();
        let data_dir = std::path::absolute(&self.data_dir)
            .with_context(|| format!("cannot resolve --data-dir {}", self.data_dir.display()))?;
        if self.batch_max_events == 0 || self.max_concurrency == 0 {
            bail!("--batch-max-events and --max-concurrency must be at least 1");
        }
        Ok(Config {
            listen: SocketAddr::new(self.host, self.port),
            data_dir,
            prefix: checked_prefix(&self.prefix)?,
            partition: self.partition_time,
            auth: self.auth_config(google)?,
            local: !google || self.also_local,
            gcs,
            bigquery,
            log_format: self.log_format,
            limits: Limits {
                max_body_bytes: self.max_body_bytes,
                max_concurrency: self.max_concurrency,
                request_timeout: Duration::from_secs(self.request_timeout_secs),
                shutdown_grace: Duration::from_secs(self.shutdown_grace_secs),
            },
            batch: BatchConfig {
                max_events: self.batch_max_events,
                linger: Duration::from_millis(self.batch_linger_ms),
            },
            sqlite_busy_timeout: Duration::from_millis(self.sqlite_busy_timeout_ms),
        })
    }

    /// The BigQuery raw layer, if configured (all `landfall schema` needs).
    pub fn bigquery_target(&self) -> Option<BigQueryTarget> {
        self.bigquery_project.clone().map(|project| BigQueryTarget {
            project,
            dataset: self.bigquery_dataset.clone(),
            emulator: self.bigquery_emulator_host.as_deref().map(emulator_url),
        })
    }

    fn auth_config(&self, google: bool) -> anyhow::Result<Auth> {
        let mode = self.auth.unwrap_or(if google {
            AuthMode::Oidc
        } else {
            AuthMode::None
        });
        if mode == AuthMode::None {
            return Ok(Auth::None {
                explicit: google && self.auth.is_some(),
            });
        }
        let Some(audience) = self.oidc_audience.clone().filter(|a| !a.is_empty()) else {
            bail!(
                "OIDC authentication needs --oidc-audience (the push subscription's token audience); \
                 pass --auth none to run without authentication"
            );
        };
        let allowed_emails: Vec<String> = self
            .oidc_allowed_email
            .iter()
            .map(|e| e.trim().to_string())
            .filter(|e| !e.is_empty())
            .collect();
        if allowed_emails.is_empty() {
            bail!(
                "OIDC authentication needs at least one --oidc-allowed-email (the push subscription's \
                 service account); pass --auth none to run without authentication"
            );
        }
        Ok(Auth::Oidc(OidcConfig {
            audience,
            allowed_emails,
            jwks_url: self.oidc_jwks_url.clone(),
            issuers: match &self.oidc_issuer {
                Some(issuer) => vec![issuer.clone()],
                None => GOOGLE_ISSUERS.iter().map(|s| s.to_string()).collect(),
            },
            leeway: Duration::from_secs(self.oidc_leeway),
        }))
    }
}

/// `BIGQUERY_EMULATOR_HOST` may be `host:port` or a URL.
fn emulator_url(host: &str) -> String {
    let host = host.trim_end_matches('/');
    if host.contains("://") {
        host.to_string()
    } else {
        format!("http://{host}")
    }
}

/// The prefix becomes part of file paths and object names, so it must stay inside them.
fn checked_prefix(prefix: &str) -> anyhow::Result<String> {
    let ok = !prefix.is_empty()
        && prefix
            .split('/')
            .all(|s| !s.is_empty() && s != "." && s != "..");
    if !ok {
        bail!(
            "--prefix {prefix:?} must be one or more non-empty path segments, without `.` or `..`, and no leading or trailing `/`"
        );
    }
    Ok(prefix.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> anyhow::Result<Config> {
        let mut argv = vec!["landfall"];
        argv.extend_from_slice(args);
        Cli::try_parse_from(argv)?.settings.resolve()
    }

    #[test]
    fn defaults_are_embedded_and_unauthenticated() {
        let config = parse(&[]).unwrap();
        assert!(config.local);
        assert!(matches!(config.auth, Auth::None { explicit: false }));
        assert_eq!(config.prefix, "output");
        assert!(config.data_dir.is_absolute());
    }

    #[test]
    fn a_google_sink_turns_oidc_on_and_refuses_to_start_half_configured() {
        let err = parse(&["--gcs-bucket", "b"]).unwrap_err().to_string();
        assert!(err.contains("--oidc-audience"), "{err}");
        let err = parse(&["--gcs-bucket", "b", "--oidc-audience", "https://x"])
            .unwrap_err()
            .to_string();
        assert!(err.contains("--oidc-allowed-email"), "{err}");
        let config = parse(&[
            "--gcs-bucket",
            "b",
            "--oidc-audience",
            "https://x",
            "--oidc-allowed-email",
            "a@p.iam.gserviceaccount.com,b@p.iam.gserviceaccount.com",
        ])
        .unwrap();
        assert!(!config.local);
        let Auth::Oidc(oidc) = config.auth else {
            panic!("oidc expected")
        };
        assert_eq!(oidc.allowed_emails.len(), 2);
        assert_eq!(oidc.issuers, GOOGLE_ISSUERS);
    }

    #[test]
    fn explicit_auth_none_with_a_google_sink_is_allowed_but_remembered() {
        let config = parse(&["serve", "--bigquery-project", "p", "--auth", "none"]).unwrap();
        assert!(matches!(config.auth, Auth::None { explicit: true }));
        assert_eq!(config.bigquery.unwrap().dataset, "raw");
    }

    #[test]
    fn prefixes_cannot_escape_the_landing_root() {
        for bad in ["", "/abs", "a/../b", "a//b", "trailing/"] {
            assert!(parse(&["--prefix", bad]).is_err(), "{bad}");
        }
        assert_eq!(
            parse(&["--prefix", "landing/v1"]).unwrap().prefix,
            "landing/v1"
        );
    }

    #[test]
    fn emulator_hosts_may_omit_the_scheme() {
        assert_eq!(emulator_url("127.0.0.1:9050"), "http://127.0.0.1:9050");
        assert_eq!(emulator_url("http://h:1/"), "http://h:1");
    }
}
