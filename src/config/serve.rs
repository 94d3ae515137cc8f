//! `landfall serve`: its flags, resolved into [`crate::startup::Config`].

use std::net::SocketAddr;
use std::time::Duration;

use clap::Args;
use clap::builder::BoolishValueParser;

use super::args::{AuthArgs, AuthMode, LogArgs, ServerArgs, SinkArgs, at_least_one, checked};
use super::{ConfigErrors, GOOGLE_ISSUERS, Given};
use crate::envelope::HeaderPolicy;
use crate::http::auth::AuthConfig;
use crate::http::auth::oidc::{OidcConfig, Trust};
use crate::http::budget::{BudgetConfig, default_budget_bytes};
use crate::http::connection::ConnectionLimits;
use crate::http::push::PushLimits;
use crate::pipeline::PipelineConfig;
use crate::startup::Config;

#[derive(Debug, Clone, Args)]
pub struct ServeArgs {
    #[command(flatten)]
    pub server: ServerArgs,
    #[command(flatten)]
    pub sinks: SinkArgs,
    #[command(flatten)]
    pub auth: AuthArgs,
    #[command(flatten)]
    pub limits: LimitArgs,
    #[command(flatten)]
    pub logging: LogArgs,
    #[command(flatten)]
    pub telemetry: TelemetryArgs,
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
    /// A connection that has begun a request head and not finished it within this many
    /// seconds is closed.
    #[arg(long, env = "LANDFALL_HEADER_TIMEOUT_SECS", default_value_t = 10)]
    pub header_timeout_secs: u64,
    /// A connection idle between requests this many seconds is closed (longer than Google's
    /// front ends keep one, 600 s, so landfall never closes one they are about to reuse).
    #[arg(long, env = "LANDFALL_IDLE_TIMEOUT_SECS", default_value_t = 620)]
    pub idle_timeout_secs: u64,
    /// Memory the pushes in flight may hold, in MiB; a push that does not fit waits a second,
    /// then gets 429. Default: half the container's memory limit, else 256.
    #[arg(long, env = "LANDFALL_MEMORY_BUDGET_MB")]
    pub memory_budget_mb: Option<usize>,
    /// Unwrapped pushes: keep this header as an attribute although its name looks like a
    /// credential (repeat, or separate with commas).
    #[arg(long, env = "LANDFALL_KEEP_HEADER", value_delimiter = ',')]
    pub keep_header: Vec<String>,
}

#[derive(Debug, Clone, Args)]
#[command(next_help_heading = "Logging")]
pub struct TelemetryArgs {
    /// Project whose Cloud Trace the request traces belong to (default: the BigQuery project).
    #[arg(long, env = "GOOGLE_CLOUD_PROJECT")]
    pub trace_project: Option<String>,
    /// Record Prometheus metrics and serve them at /metrics (`true`/`false`, `1`/`0`, `yes`/`no`).
    #[arg(long, env = "LANDFALL_METRICS", default_value_t = true, value_parser = BoolishValueParser::new(), action = clap::ArgAction::Set, hide_possible_values = true)]
    pub metrics: bool,
}

impl ServeArgs {
    pub fn resolve(self, given: &Given) -> Result<Config, ConfigErrors> {
        let mut problems = Vec::new();
        let mut warnings = Vec::new();
        let limits = &self.limits;
        at_least_one(
            &mut problems,
            &[
                (limits.max_concurrency, setting!(LimitArgs, max_concurrency)),
                (
                    limits.request_timeout_secs as usize,
                    setting!(LimitArgs, request_timeout_secs),
                ),
                (limits.max_body_bytes, setting!(LimitArgs, max_body_bytes)),
                (
                    limits.header_timeout_secs as usize,
                    setting!(LimitArgs, header_timeout_secs),
                ),
                (
                    limits.idle_timeout_secs as usize,
                    setting!(LimitArgs, idle_timeout_secs),
                ),
            ],
        );
        let request_timeout = Duration::from_secs(limits.request_timeout_secs);
        let budget = BudgetConfig {
            bytes: limits
                .memory_budget_mb
                .map_or_else(default_budget_bytes, |mb| mb << 20),
            wait: Duration::from_secs(1),
        };
        let least = BudgetConfig::least_for(limits.max_body_bytes);
        if budget.bytes < least {
            problems.push(format!(
                "{} {} MiB cannot hold one push of {} {}: it needs at least {} MiB",
                setting!(LimitArgs, memory_budget_mb),
                budget.bytes >> 20,
                setting!(LimitArgs, max_body_bytes),
                limits.max_body_bytes,
                least.div_ceil(1 << 20)
            ));
        }
        // Remote writes, retries included, must finish while Pub/Sub still waits for the answer.
        let sinks = self
            .sinks
            .resolve(request_timeout, given, &mut problems, &mut warnings);
        let auth = self.auth_config(given, &mut problems, &mut warnings);
        let routing = self.sinks.routing.routing(&mut problems);
        let config = Config {
            listen: SocketAddr::new(self.server.host, self.server.port),
            trace_project: self
                .telemetry
                .trace_project
                .clone()
                .or_else(|| sinks.bigquery.as_ref().map(|b| b.target.project.clone())),
            pipeline: PipelineConfig {
                catalog: self.sinks.catalog.source(),
                routing,
                sinks,
            },
            auth,
            log_format: self.logging.log_format,
            metrics: self.telemetry.metrics,
            limits: PushLimits {
                max_body_bytes: limits.max_body_bytes,
                max_concurrency: limits.max_concurrency,
                budget,
                headers: HeaderPolicy::new(limits.keep_header.iter().map(|h| h.trim().to_string())),
            },
            connections: ConnectionLimits {
                header_timeout: Duration::from_secs(limits.header_timeout_secs),
                idle_timeout: Duration::from_secs(limits.idle_timeout_secs),
            },
            shutdown_grace: Duration::from_secs(limits.shutdown_grace_secs),
            warnings,
        };
        checked(config, problems)
    }

    fn auth_config(
        &self,
        given: &Given,
        problems: &mut Vec<String>,
        warnings: &mut Vec<String>,
    ) -> AuthConfig {
        let args = &self.auth;
        let google = self.sinks.google();
        let mode = args.auth.unwrap_or(if google {
            AuthMode::Oidc
        } else {
            AuthMode::None
        });
        let trust = match mode {
            AuthMode::None => {
                for (given, flag) in [
                    (
                        given!(given, AuthArgs, oidc_audience),
                        setting!(AuthArgs, oidc_audience),
                    ),
                    (
                        given!(given, AuthArgs, oidc_allowed_email),
                        setting!(AuthArgs, oidc_allowed_email),
                    ),
                    (
                        given!(given, AuthArgs, oidc_jwks_url),
                        setting!(AuthArgs, oidc_jwks_url),
                    ),
                    (
                        given!(given, AuthArgs, oidc_issuer),
                        setting!(AuthArgs, oidc_issuer),
                    ),
                    (
                        given!(given, AuthArgs, oidc_leeway),
                        setting!(AuthArgs, oidc_leeway),
                    ),
                    (
                        given!(given, AuthArgs, cloud_run_probe_url),
                        setting!(AuthArgs, cloud_run_probe_url),
                    ),
                ] {
                    if given {
                        warnings.push(format!("{flag} has no effect with --auth none"));
                    }
                }
                return AuthConfig::None {
                    explicit: google && args.auth.is_some(),
                };
            }
            AuthMode::Oidc => Trust::Signature,
            AuthMode::CloudRun => Trust::CloudRun,
        };
        let audience = args.oidc_audience.clone().filter(|a| !a.is_empty());
        if audience.is_none() {
            problems.push(format!(
                "{} is required for OIDC authentication: the push subscription's token audience \
                 (or pass --auth none to run without authentication)",
                setting!(AuthArgs, oidc_audience)
            ));
        }
        let allowed_emails: Vec<String> = args
            .oidc_allowed_email
            .iter()
            .map(|e| e.trim().to_string())
            .filter(|e| !e.is_empty())
            .collect();
        if allowed_emails.is_empty() {
            problems.push(format!(
                "{} is required for OIDC authentication: the push subscription's service account",
                setting!(AuthArgs, oidc_allowed_email)
            ));
        }
        if trust == Trust::Signature && given!(given, AuthArgs, cloud_run_probe_url) {
            warnings.push(format!(
                "{} has no effect with --auth oidc",
                setting!(AuthArgs, cloud_run_probe_url)
            ));
        }
        let probe_url = match (trust, args.cloud_run_probe_url.as_deref()) {
            (Trust::Signature, _) | (_, Some("off")) => None,
            (Trust::CloudRun, Some(url)) => Some(url.to_string()),
            (Trust::CloudRun, None) => audience
                .clone()
                .filter(|a| a.starts_with("https://") || a.starts_with("http://")),
        };
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
            probe_url,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::serve_config;
    use crate::event::route::Routing;
    use crate::schema::CatalogSource;
    use crate::sink::bigquery::WriteApi;

    fn parse(args: &[&str]) -> Result<Config, ConfigErrors> {
        let mut argv = vec!["landfall"];
        argv.extend_from_slice(args);
        serve_config(argv)
    }

    #[test]
    fn defaults_are_embedded_and_unauthenticated() {
        let config = parse(&[]).unwrap();
        let embedded = config.pipeline.sinks.embedded.unwrap();
        assert!(matches!(config.auth, AuthConfig::None { explicit: false }));
        assert_eq!(config.pipeline.sinks.landing.prefix, "output");
        assert!(embedded.data_dir.is_absolute());
        assert_eq!(config.pipeline.catalog, CatalogSource::Shipped);
        assert_eq!(config.pipeline.routing, Routing::Field("event_type".into()));
        assert!(config.warnings.is_empty(), "{:?}", config.warnings);
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
        assert!(config.pipeline.sinks.embedded.is_none());
        let AuthConfig::Oidc(oidc) = config.auth else {
            panic!("oidc expected")
        };
        assert_eq!(oidc.allowed_emails.len(), 2);
        assert_eq!(oidc.issuers, GOOGLE_ISSUERS);
        assert_eq!(oidc.trust, Trust::Signature);
        assert_eq!(oidc.probe_url, None);
    }

    #[test]
    fn cloud_run_probes_its_audience_unless_told_otherwise() {
        let base = [
            "--auth",
            "cloud-run",
            "--oidc-allowed-email",
            "p@x.iam.gserviceaccount.com",
        ];
        let probe = |extra: &[&str]| {
            let mut args = base.to_vec();
            args.extend_from_slice(extra);
            match parse(&args).unwrap().auth {
                AuthConfig::Oidc(oidc) => oidc.probe_url,
                AuthConfig::None { .. } => panic!("oidc expected"),
            }
        };
        assert_eq!(
            probe(&["--oidc-audience", "https://landfall-1.europe-west1.run.app"]).as_deref(),
            Some("https://landfall-1.europe-west1.run.app")
        );
        assert_eq!(
            probe(&["--oidc-audience", "landfall-push"]),
            None,
            "not a URL"
        );
        assert_eq!(
            probe(&[
                "--oidc-audience",
                "https://a",
                "--cloud-run-probe-url",
                "off"
            ]),
            None
        );
    }

    #[test]
    fn explicit_auth_none_with_a_google_sink_is_allowed_but_remembered() {
        let config = parse(&["serve", "--bigquery-project", "p", "--auth", "none"]).unwrap();
        assert!(matches!(config.auth, AuthConfig::None { explicit: true }));
        assert_eq!(
            config.pipeline.sinks.bigquery.unwrap().target.dataset,
            "raw"
        );
        assert_eq!(config.trace_project.as_deref(), Some("p"));
    }

    #[test]
    fn the_storage_write_api_is_the_default_and_an_emulator_needs_its_grpc_address() {
        let write_api = |args: &[&str]| {
            parse(args)
                .unwrap()
                .pipeline
                .sinks
                .bigquery
                .unwrap()
                .write_api
        };
        assert_eq!(
            write_api(&["serve", "--bigquery-project", "p", "--auth", "none"]),
            WriteApi::Storage { emulator: None }
        );
        let rest_only = [
            "serve",
            "--bigquery-project",
            "p",
            "--auth",
            "none",
            "--bigquery-emulator-host",
            "localhost:9050",
        ];
        let errors = parse(&rest_only).unwrap_err().to_string();
        assert!(
            errors.contains("--bigquery-storage-emulator-host (BIGQUERY_STORAGE_EMULATOR_HOST)"),
            "{errors}"
        );
        let insert_all = [&rest_only[..], &["--bigquery-write-api", "insert-all"]].concat();
        assert_eq!(write_api(&insert_all), WriteApi::InsertAll);
        let both = [
            &rest_only[..],
            &["--bigquery-storage-emulator-host", "localhost:9060"],
        ]
        .concat();
        assert_eq!(
            write_api(&both),
            WriteApi::Storage {
                emulator: Some("http://localhost:9060".into())
            }
        );
    }

    #[test]
    fn settings_that_do_nothing_in_this_mode_are_warned_about() {
        let config = parse(&[
            "--oidc-audience",
            "https://x",
            "--storage-emulator-host",
            "http://127.0.0.1:1",
            "--bigquery-location",
            "EU",
            "--landing-batch-linger-ms",
            "5",
        ])
        .unwrap();
        assert_eq!(
            config.warnings,
            [
                "--storage-emulator-host (STORAGE_EMULATOR_HOST) has no effect without --gcs-bucket (LANDFALL_GCS_BUCKET)",
                "--bigquery-location (LANDFALL_BIGQUERY_LOCATION) has no effect without --bigquery-project (LANDFALL_BIGQUERY_PROJECT)",
                "--landing-batch-linger-ms (LANDFALL_LANDING_BATCH_LINGER_MS) has no effect with --landing-layout event (LANDFALL_LANDING_LAYOUT)",
                "--oidc-audience (LANDFALL_OIDC_AUDIENCE) has no effect with --auth none",
            ]
        );
    }

    #[test]
    fn serve_takes_the_curated_dataset_and_says_it_does_nothing_there() {
        let config = parse(&["--bigquery-curated-dataset", "views"]).unwrap();
        assert_eq!(
            config.warnings,
            [
                "--bigquery-curated-dataset (LANDFALL_BIGQUERY_CURATED_DATASET) has no effect here: `schema apply` makes the curated layer"
            ]
        );
    }

    #[test]
    fn a_memory_budget_must_hold_the_largest_push() {
        let errors = parse(&["--memory-budget-mb", "64"]).unwrap_err().0;
        assert_eq!(
            errors,
            [
                "--memory-budget-mb (LANDFALL_MEMORY_BUDGET_MB) 64 MiB cannot hold one push of --max-body-bytes (LANDFALL_MAX_BODY_BYTES) 16777216: it needs at least 72 MiB"
            ]
        );
        let config = parse(&["--memory-budget-mb", "64", "--max-body-bytes", "1000000"]).unwrap();
        assert_eq!(config.limits.budget.bytes, 64 << 20);
    }

    #[test]
    fn zero_limits_are_refused_naming_flag_and_variable() {
        let errors = parse(&["--max-body-bytes", "0", "--landing-batch-max-events", "0"])
            .unwrap_err()
            .0;
        assert_eq!(
            errors,
            [
                "--max-body-bytes (LANDFALL_MAX_BODY_BYTES) must be at least 1",
                "--landing-batch-max-events (LANDFALL_LANDING_BATCH_MAX_EVENTS) must be at least 1",
            ]
        );
    }

    #[test]
    fn booleans_take_the_words_people_use() {
        for (value, on) in [("1", true), ("0", false), ("yes", true), ("off", false)] {
            assert_eq!(parse(&["--metrics", value]).unwrap().metrics, on, "{value}");
        }
    }

    #[test]
    fn routing_by_attribute_or_another_field() {
        use crate::event::route::Routing;
        assert_eq!(
            parse(&["--event-type-attribute", "type"])
                .unwrap()
                .pipeline
                .routing,
            Routing::Attribute("type".into())
        );
        assert_eq!(
            parse(&["--event-type-field", "kind"])
                .unwrap()
                .pipeline
                .routing,
            Routing::Field("kind".into())
        );
    }
}
