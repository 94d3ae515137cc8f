//! `landfall serve`: its flags, resolved into [`crate::startup::Config`].

use std::net::SocketAddr;
use std::time::Duration;

use clap::Args;
use clap::builder::BoolishValueParser;

use super::args::{AuthArgs, AuthMode, LogArgs, ServerArgs, SinkArgs, at_least_one, checked};
use super::{ConfigErrors, GOOGLE_ISSUERS, Given};
use crate::auth::AuthConfig;
use crate::auth::oidc::{OidcConfig, Trust};
use crate::push::PushLimits;
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
}

#[derive(Debug, Clone, Args)]
#[command(next_help_heading = "Logging")]
pub struct TelemetryArgs {
    /// Project whose Cloud Trace the request traces belong to (default: the BigQuery project).
    #[arg(long, env = "GOOGLE_CLOUD_PROJECT")]
    pub trace_project: Option<String>,
    /// Record Prometheus metrics and serve them at /metrics (`true`/`false`, `1`/`0`, `yes`/`no`).
    #[arg(long, env = "LANDFALL_METRICS", default_value_t = true, value_parser = BoolishValueParser::new(), action = clap::ArgAction::Set)]
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
                (
                    limits.max_concurrency,
                    "--max-concurrency",
                    "LANDFALL_MAX_CONCURRENCY",
                ),
                (
                    limits.request_timeout_secs as usize,
                    "--request-timeout-secs",
                    "LANDFALL_REQUEST_TIMEOUT_SECS",
                ),
                (
                    limits.max_body_bytes,
                    "--max-body-bytes",
                    "LANDFALL_MAX_BODY_BYTES",
                ),
            ],
        );
        let request_timeout = Duration::from_secs(limits.request_timeout_secs);
        // Remote writes, retries included, must finish while Pub/Sub still waits for the answer.
        let sinks = self
            .sinks
            .resolve(request_timeout, given, &mut problems, &mut warnings);
        let auth = self.auth_config(given, &mut problems, &mut warnings);
        let routing = self.sinks.routing.routing(&mut problems);
        let config = Config {
            listen: SocketAddr::new(self.server.host, self.server.port),
            catalog: self.sinks.catalog.source(),
            routing,
            trace_project: self
                .telemetry
                .trace_project
                .clone()
                .or_else(|| sinks.bigquery.as_ref().map(|b| b.project.clone())),
            sinks,
            auth,
            log_format: self.logging.log_format,
            metrics: self.telemetry.metrics,
            limits: PushLimits {
                max_body_bytes: limits.max_body_bytes,
                max_concurrency: limits.max_concurrency,
                request_timeout,
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
                for (id, flag) in [
                    ("oidc_audience", "--oidc-audience (LANDFALL_OIDC_AUDIENCE)"),
                    (
                        "oidc_allowed_email",
                        "--oidc-allowed-email (LANDFALL_OIDC_ALLOWED_EMAIL)",
                    ),
                    ("oidc_jwks_url", "--oidc-jwks-url (LANDFALL_OIDC_JWKS_URL)"),
                    ("oidc_issuer", "--oidc-issuer (LANDFALL_OIDC_ISSUER)"),
                    ("oidc_leeway", "--oidc-leeway (LANDFALL_OIDC_LEEWAY)"),
                    (
                        "cloud_run_probe_url",
                        "--cloud-run-probe-url (LANDFALL_CLOUD_RUN_PROBE_URL)",
                    ),
                ] {
                    if given.has(id) {
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
        if trust == Trust::Signature && given.has("cloud_run_probe_url") {
            warnings.push(
                "--cloud-run-probe-url (LANDFALL_CLOUD_RUN_PROBE_URL) has no effect with --auth oidc".into(),
            );
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

    fn parse(args: &[&str]) -> Result<Config, ConfigErrors> {
        let mut argv = vec!["landfall"];
        argv.extend_from_slice(args);
        serve_config(argv)
    }

    #[test]
    fn defaults_are_embedded_and_unauthenticated() {
        let config = parse(&[]).unwrap();
        let embedded = config.sinks.embedded.unwrap();
        assert!(matches!(config.auth, AuthConfig::None { explicit: false }));
        assert_eq!(config.sinks.landing.prefix, "output");
        assert!(embedded.data_dir.is_absolute());
        assert_eq!(config.catalog, CatalogSource::Shipped);
        assert_eq!(config.routing, Routing::Field("event_type".into()));
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
        assert!(config.sinks.embedded.is_none());
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
        assert_eq!(config.sinks.bigquery.unwrap().dataset, "raw");
        assert_eq!(config.trace_project.as_deref(), Some("p"));
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
            parse(&["--event-type-attribute", "type"]).unwrap().routing,
            Routing::Attribute("type".into())
        );
        assert_eq!(
            parse(&["--event-type-field", "kind"]).unwrap().routing,
            Routing::Field("kind".into())
        );
    }
}
