//! Command line and environment, parsed once into typed settings.
//!
//! Every flag is also an environment variable, because Cloud Run is configured through the
//! environment. Flags are grouped by concern in `--help`, and each command takes only the
//! flags it uses. [`ServeArgs::resolve`] checks combinations once, at start, and reports every
//! problem at once, so a misconfigured service refuses to start instead of failing on its
//! first message. Each component owns its settings type; this module only fills them in.

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand, ValueEnum};

use crate::auth::AuthConfig;
use crate::auth::oidc::{OidcConfig, Trust};
use crate::event::route::Routing;
use crate::event::{LandingLayout, PartitionTime};
use crate::schema::CatalogSource;
use crate::sink::EmbeddedConfig;
use crate::sink::batch::BatchConfig;
use crate::sink::bigquery::BigQueryTarget;
use crate::sink::gcs::GcsTarget;
use crate::startup::Limits;
use crate::telemetry::LogFormat;

pub const GOOGLE_JWKS_URL: &str = "https://www.googleapis.com/oauth2/v3/certs";
pub const GOOGLE_ISSUERS: &[&str] = &["accounts.google.com", "https://accounts.google.com"];

#[derive(Debug, Parser)]
#[command(
    name = "landfall",
    version,
    about = "Pub/Sub push endpoint: verifies, validates and lands events in a landing layer \
             (GCS or a folder) and a raw layer (BigQuery or SQLite).",
    args_conflicts_with_subcommands = true
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Option<Command>,
    /// `landfall [FLAGS]` is `landfall serve [FLAGS]`.
    #[command(flatten)]
    pub serve: ServeArgs,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Serve Pub/Sub push requests (the default when no command is given).
    Serve(Box<ServeArgs>),
    /// The event catalog and the tables it becomes.
    Schema {
        #[command(subcommand)]
        command: SchemaCommand,
    },
}

#[derive(Debug, Subcommand)]
pub enum SchemaCommand {
    /// Validate a catalog offline; print each event type with its table, partitioning and
    /// clustering. Exits non-zero on any problem.
    Check(CatalogArgs),
    /// Print the BigQuery DDL (CREATE TABLE IF NOT EXISTS … PARTITION BY … CLUSTER BY …).
    Print(PrintArgs),
    /// Create the dataset and tables, add new columns; idempotent, and all-or-nothing when
    /// a difference cannot be changed in place.
    Apply(ApplyArgs),
}

#[derive(Debug, Clone, Args)]
pub struct ServeArgs {
    #[command(flatten)]
    pub server: ServerArgs,
    #[command(flatten)]
    pub landing: LandingArgs,
    #[command(flatten)]
    pub catalog: CatalogArgs,
    #[command(flatten)]
    pub routing: RoutingArgs,
    #[command(flatten)]
    pub auth: AuthArgs,
    #[command(flatten)]
    pub google: GoogleArgs,
    #[command(flatten)]
    pub limits: LimitArgs,
    #[command(flatten)]
    pub batching: BatchArgs,
    #[command(flatten)]
    pub logging: LogArgs,
}

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
    /// Folder for the embedded sinks: `landing/` for files, `warehouse.db` for SQLite.
    #[arg(long, env = "LANDFALL_DATA_DIR", default_value = "./landfall-data")]
    pub data_dir: PathBuf,
    /// First segment of every landing object name.
    #[arg(long, env = "LANDFALL_PREFIX", default_value = "output")]
    pub prefix: String,
    /// Which time partitions landing paths: the event's own time or the publish time.
    #[arg(long, env = "LANDFALL_PARTITION_TIME", value_enum, default_value_t = PartitionTime::Event)]
    pub partition_time: PartitionTime,
    /// Keep the embedded sinks on as well when a Google sink is configured.
    #[arg(long, env = "LANDFALL_ALSO_LOCAL")]
    pub also_local: bool,
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
    #[arg(long, env = "LANDFALL_OIDC_JWKS_URL", default_value = GOOGLE_JWKS_URL)]
    pub oidc_jwks_url: String,
    /// Accepted token issuer. Default: both `accounts.google.com` and `https://accounts.google.com`.
    #[arg(long, env = "LANDFALL_OIDC_ISSUER")]
    pub oidc_issuer: Option<String>,
    /// Clock skew tolerated on `exp`, `iat` and `nbf`, in seconds.
    #[arg(long, env = "LANDFALL_OIDC_LEEWAY", default_value_t = 60)]
    pub oidc_leeway: u64,
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
    /// Where `schema apply` creates the dataset (e.g. EU, europe-west1); BigQuery's default (US) when unset.
    #[arg(long, env = "LANDFALL_BIGQUERY_LOCATION")]
    pub bigquery_location: Option<String>,
    /// BigQuery emulator host:port or URL; uses anonymous credentials.
    #[arg(long, env = "BIGQUERY_EMULATOR_HOST")]
    pub bigquery_emulator_host: Option<String>,
}

impl BigQueryArgs {
    /// The raw layer's dataset, if a project is configured.
    pub fn target(&self) -> Option<BigQueryTarget> {
        self.bigquery_project.clone().map(|project| BigQueryTarget {
            project,
            dataset: self.bigquery_dataset.clone(),
            location: self.bigquery_location.clone(),
            emulator: self.bigquery_emulator_host.as_deref().map(emulator_url),
        })
    }
}

#[derive(Debug, Clone, Args)]
#[command(next_help_heading = "Limits")]
pub struct LimitArgs {
    /// Largest accepted request body (Pub/Sub's 10 MB message is ~13.4 MB in base64).
    #[arg(long, env = "LANDFALL_MAX_BODY_BYTES", default_value_t = 16 * 1024 * 1024)]
    pub max_body_bytes: usize,
    /// Requests handled at once; beyond it requests get 429 at once instead of queueing.
    #[arg(long, env = "LANDFALL_MAX_CONCURRENCY", default_value_t = 1024)]
    pub max_concurrency: usize,
    /// Deadline for one push request, retries included; set it below the subscription's ack deadline.
    #[arg(long, env = "LANDFALL_REQUEST_TIMEOUT_SECS", default_value_t = 10)]
    pub request_timeout_secs: u64,
    /// After SIGTERM/SIGINT, how long in-flight requests and batches may take to finish.
    #[arg(long, env = "LANDFALL_SHUTDOWN_GRACE_SECS", default_value_t = 10)]
    pub shutdown_grace_secs: u64,
    /// How long a write waits for a locked SQLite database before failing (then 503).
    #[arg(long, env = "LANDFALL_SQLITE_BUSY_TIMEOUT_MS", default_value_t = 5000)]
    pub sqlite_busy_timeout_ms: u64,
}

#[derive(Debug, Clone, Args)]
#[command(next_help_heading = "Batching")]
pub struct BatchArgs {
    /// Most events written in one batch (one SQLite transaction, one insertAll call).
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
    /// Project whose Cloud Trace the request traces belong to (default: the BigQuery project).
    #[arg(long, env = "GOOGLE_CLOUD_PROJECT")]
    pub trace_project: Option<String>,
    /// Record Prometheus metrics and serve them at /metrics.
    #[arg(long, env = "LANDFALL_METRICS", default_value_t = true, action = clap::ArgAction::Set)]
    pub metrics: bool,
}

#[derive(Debug, Clone, Args)]
pub struct PrintArgs {
    #[command(flatten)]
    pub catalog: CatalogArgs,
    #[command(flatten)]
    pub bigquery: BigQueryArgs,
}

#[derive(Debug, Clone, Args)]
pub struct ApplyArgs {
    #[command(flatten)]
    pub catalog: CatalogArgs,
    #[command(flatten)]
    pub bigquery: BigQueryArgs,
}

/// Everything `Application::build` needs, validated.
#[derive(Debug, Clone)]
pub struct Config {
    pub listen: SocketAddr,
    pub catalog: CatalogSource,
    pub routing: Routing,
    pub landing: LandingLayout,
    /// The folder and SQLite sinks; on when no Google sink is, or with `--also-local`.
    pub embedded: Option<EmbeddedConfig>,
    pub gcs: Option<GcsTarget>,
    pub bigquery: Option<BigQueryTarget>,
    pub auth: AuthConfig,
    pub log_format: LogFormat,
    pub trace_project: Option<String>,
    pub metrics: bool,
    pub limits: Limits,
    pub batch: BatchConfig,
}

/// Every problem with a configuration, one per line, each naming its flag and variable.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{}", .0.join("\n"))]
pub struct ConfigErrors(pub Vec<String>);

impl ServeArgs {
    pub fn resolve(self) -> Result<Config, ConfigErrors> {
        let mut problems = Vec::new();
        let gcs = self.google.gcs_bucket.clone().map(|bucket| GcsTarget {
            bucket,
            emulator: self.google.storage_emulator_host.clone(),
        });
        let bigquery = self.google.bigquery.target();
        let google = gcs.is_some() || bigquery.is_some();
        let auth = self.auth_config(google, &mut problems);
        let embedded = (!google || self.landing.also_local)
            .then(|| self.embedded(&mut problems))
            .flatten();
        if let Err(problem) = checked_prefix(&self.landing.prefix) {
            problems.push(problem);
        }
        let routing = match &self.routing.event_type_attribute {
            Some(attribute) if attribute.is_empty() => {
                problems.push(
                    "--event-type-attribute (LANDFALL_EVENT_TYPE_ATTRIBUTE) must not be empty"
                        .into(),
                );
                Routing::default()
            }
            Some(attribute) => Routing::Attribute(attribute.clone()),
            None => Routing::Field(self.routing.event_type_field.clone()),
        };
        for (value, flag, env) in [
            (
                self.batching.batch_max_events,
                "--batch-max-events",
                "LANDFALL_BATCH_MAX_EVENTS",
            ),
            (
                self.limits.max_concurrency,
                "--max-concurrency",
                "LANDFALL_MAX_CONCURRENCY",
            ),
            (
                self.limits.request_timeout_secs as usize,
                "--request-timeout-secs",
                "LANDFALL_REQUEST_TIMEOUT_SECS",
            ),
        ] {
            if value == 0 {
                problems.push(format!("{flag} ({env}) must be at least 1"));
            }
        }
        if !problems.is_empty() {
            return Err(ConfigErrors(problems));
        }
        Ok(Config {
            listen: SocketAddr::new(self.server.host, self.server.port),
            catalog: self.catalog.source(),
            routing,
            landing: LandingLayout {
                prefix: self.landing.prefix.clone(),
                partition: self.landing.partition_time,
            },
            embedded,
            trace_project: self
                .logging
                .trace_project
                .clone()
                .or_else(|| bigquery.as_ref().map(|b| b.project.clone())),
            gcs,
            bigquery,
            auth,
            log_format: self.logging.log_format,
            metrics: self.logging.metrics,
            limits: Limits {
                max_body_bytes: self.limits.max_body_bytes,
                max_concurrency: self.limits.max_concurrency,
                request_timeout: Duration::from_secs(self.limits.request_timeout_secs),
                shutdown_grace: Duration::from_secs(self.limits.shutdown_grace_secs),
            },
            batch: BatchConfig {
                max_events: self.batching.batch_max_events,
                linger: Duration::from_millis(self.batching.batch_linger_ms),
            },
        })
    }

    fn embedded(&self, problems: &mut Vec<String>) -> Option<EmbeddedConfig> {
        match std::path::absolute(&self.landing.data_dir) {
            Ok(data_dir) => Some(EmbeddedConfig {
                data_dir,
                sqlite_busy_timeout: Duration::from_millis(self.limits.sqlite_busy_timeout_ms),
            }),
            Err(e) => {
                problems.push(format!(
                    "--data-dir (LANDFALL_DATA_DIR) {}: {e}",
                    self.landing.data_dir.display()
                ));
                None
            }
        }
    }

    fn auth_config(&self, google: bool, problems: &mut Vec<String>) -> AuthConfig {
        let args = &self.auth;
        let mode = args.auth.unwrap_or(if google {
            AuthMode::Oidc
        } else {
            AuthMode::None
        });
        let trust = match mode {
            AuthMode::None => {
                return AuthConfig::None {
                    explicit: google && args.auth.is_some(),
                };
            }
            AuthMode::Oidc => Trust::Signature,
            AuthMode::CloudRun => Trust::CloudRun,
        };
        let audience = args.oidc_audience.clone().filter(|a| !a.is_empty());
        if audience.is_none() {
            problems.push(
                "--oidc-audience (LANDFALL_OIDC_AUDIENCE) is required for OIDC authentication: \
                 the push subscription's token audience (or pass --auth none to run without authentication)"
                    .into(),
            );
        }
        let allowed_emails: Vec<String> = args
            .oidc_allowed_email
            .iter()
            .map(|e| e.trim().to_string())
            .filter(|e| !e.is_empty())
            .collect();
        if allowed_emails.is_empty() {
            problems.push(
                "--oidc-allowed-email (LANDFALL_OIDC_ALLOWED_EMAIL) is required for OIDC authentication: \
                 the push subscription's service account"
                    .into(),
            );
        }
        AuthConfig::Oidc(OidcConfig {
            audience: audience.unwrap_or_default(),
            allowed_emails,
            jwks_url: args.oidc_jwks_url.clone(),
            issuers: match &args.oidc_issuer {
                Some(issuer) => vec![issuer.clone()],
                None => GOOGLE_ISSUERS.iter().map(|s| s.to_string()).collect(),
            },
            leeway: Duration::from_secs(args.oidc_leeway),
            trust,
        })
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
fn checked_prefix(prefix: &str) -> Result<(), String> {
    let ok = !prefix.is_empty()
        && prefix
            .split('/')
            .all(|s| !s.is_empty() && s != "." && s != "..");
    if ok {
        Ok(())
    } else {
        Err(format!(
            "--prefix (LANDFALL_PREFIX) {prefix:?} must be one or more non-empty path segments, without `.` or `..`, and no leading or trailing `/`"
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> Result<Config, ConfigErrors> {
        let mut argv = vec!["landfall"];
        argv.extend_from_slice(args);
        let cli = Cli::try_parse_from(argv).expect("arguments parse");
        match cli.command {
            Some(Command::Serve(serve)) => serve.resolve(),
            Some(Command::Schema { .. }) => panic!("not serve"),
            None => cli.serve.resolve(),
        }
    }

    #[test]
    fn defaults_are_embedded_and_unauthenticated() {
        let config = parse(&[]).unwrap();
        let embedded = config.embedded.unwrap();
        assert!(matches!(config.auth, AuthConfig::None { explicit: false }));
        assert_eq!(config.landing.prefix, "output");
        assert!(embedded.data_dir.is_absolute());
        assert_eq!(config.catalog, CatalogSource::Shipped);
        assert_eq!(config.routing, Routing::Field("event_type".into()));
    }

    #[test]
    fn a_google_sink_turns_oidc_on_and_every_missing_setting_is_reported_at_once() {
        let errors = parse(&["--gcs-bucket", "b"]).unwrap_err().0;
        assert_eq!(errors.len(), 2, "{errors:?}");
        assert!(errors[0].starts_with("--oidc-audience (LANDFALL_OIDC_AUDIENCE) is required"));
        assert!(
            errors[1].starts_with("--oidc-allowed-email (LANDFALL_OIDC_ALLOWED_EMAIL) is required")
        );
        let config = parse(&[
            "--gcs-bucket",
            "b",
            "--oidc-audience",
            "https://x",
            "--oidc-allowed-email",
            "a@p.iam.gserviceaccount.com,b@p.iam.gserviceaccount.com",
        ])
        .unwrap();
        assert!(config.embedded.is_none());
        let AuthConfig::Oidc(oidc) = config.auth else {
            panic!("oidc expected")
        };
        assert_eq!(oidc.allowed_emails.len(), 2);
        assert_eq!(oidc.issuers, GOOGLE_ISSUERS);
        assert_eq!(oidc.trust, Trust::Signature);
    }

    #[test]
    fn explicit_auth_none_with_a_google_sink_is_allowed_but_remembered() {
        let config = parse(&["serve", "--bigquery-project", "p", "--auth", "none"]).unwrap();
        assert!(matches!(config.auth, AuthConfig::None { explicit: true }));
        assert_eq!(config.bigquery.unwrap().dataset, "raw");
        assert_eq!(config.trace_project.as_deref(), Some("p"));
    }

    #[test]
    fn prefixes_cannot_escape_the_landing_root() {
        for bad in ["", "/abs", "a/../b", "a//b", "trailing/"] {
            assert!(parse(&["--prefix", bad]).is_err(), "{bad}");
        }
        assert_eq!(
            parse(&["--prefix", "landing/v1"]).unwrap().landing.prefix,
            "landing/v1"
        );
    }

    #[test]
    fn routing_by_attribute_or_another_field() {
        assert_eq!(
            parse(&["--event-type-attribute", "type"]).unwrap().routing,
            Routing::Attribute("type".into())
        );
        assert_eq!(
            parse(&["--event-type-field", "kind"]).unwrap().routing,
            Routing::Field("kind".into())
        );
    }

    #[test]
    fn schema_commands_take_only_their_own_flags() {
        let parsed = |args: &[&str]| {
            let mut argv = vec!["landfall"];
            argv.extend_from_slice(args);
            Cli::try_parse_from(argv)
        };
        assert!(parsed(&["schema", "print", "--max-concurrency", "5"]).is_err());
        assert!(parsed(&["schema", "check", "--port", "1"]).is_err());
        assert!(
            parsed(&[
                "schema",
                "apply",
                "--schemas",
                "x",
                "--bigquery-project",
                "p"
            ])
            .is_ok()
        );
        assert!(parsed(&["--port", "1", "schema", "check"]).is_err());
    }

    #[test]
    fn emulator_hosts_may_omit_the_scheme() {
        assert_eq!(emulator_url("127.0.0.1:9050"), "http://127.0.0.1:9050");
        assert_eq!(emulator_url("http://h:1/"), "http://h:1");
    }
}
