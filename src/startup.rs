//! Wiring: settings → telemetry's metrics, the pipeline, authentication and the router → a
//! server that drains on shutdown.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use axum::Router;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::http::auth::exposure::ExposureProbe;
use crate::http::auth::oidc::{OidcConfig, Trust};
use crate::http::auth::{AuthConfig, PushAuth};
use crate::http::budget::MemoryBudget;
use crate::http::connection::ConnectionLimits;
use crate::http::health::HealthState;
use crate::http::push::{PushLimits, PushState};
use crate::http::{AppState, router};
use crate::pipeline::build::SinkSet;
use crate::pipeline::{Pipeline, PipelineConfig, Writers};
use crate::schema::Catalog;
use crate::sink::Access;
use crate::telemetry::LogFormat;
use crate::telemetry::metrics::Metrics;

/// Everything [`Application::build`] needs, validated (by [`crate::config`]).
#[derive(Debug, Clone)]
pub struct Config {
    pub listen: SocketAddr,
    pub pipeline: PipelineConfig,
    pub auth: AuthConfig,
    pub log_format: LogFormat,
    pub trace_project: Option<String>,
    pub metrics: bool,
    pub limits: PushLimits,
    pub connections: ConnectionLimits,
    /// After SIGTERM/SIGINT, how long in-flight requests and batches may take to finish.
    pub shutdown_grace: Duration,
    /// Settings given that do nothing in this configuration; logged at start.
    pub warnings: Vec<String>,
}

impl Config {
    /// The deadline of one push, retries included: the sinks' own.
    pub fn request_timeout(&self) -> Duration {
        self.pipeline.sinks.deadline
    }
}

pub struct Application {
    listener: TcpListener,
    router: Router,
    connections: ConnectionLimits,
    /// The pipeline's group-commit writers; they finish their batches once the router is gone.
    writers: Writers,
    /// Stops background tasks (the JWKS refresher).
    background: CancellationToken,
    grace: Duration,
    serves: Serves,
    /// Probed once when serving starts (and by `/readyz`), so a misdeployment is logged early.
    exposure: Option<Arc<ExposureProbe>>,
}

/// What an application serves, for the line it logs when it starts serving.
struct Serves {
    landing: String,
    warehouse: String,
    event_types: String,
    auth: &'static str,
}

impl Serves {
    fn describe(config: &Config, catalog: &Catalog) -> Self {
        let sinks = &config.pipeline.sinks;
        let mut landing = Vec::new();
        if let Some(gcs) = &sinks.gcs {
            landing.push(format!("gs://{}/{}", gcs.bucket, sinks.landing.prefix));
        }
        let mut warehouse = Vec::new();
        if let Some(bigquery) = &sinks.bigquery {
            warehouse.push(format!(
                "BigQuery {}.{} ({})",
                bigquery.target.project, bigquery.target.dataset, bigquery.write_api
            ));
        }
        if let Some(embedded) = &sinks.embedded {
            let folder = embedded.landing_dir();
            landing.push(format!("{}/{}", folder.display(), sinks.landing.prefix));
            warehouse.push(format!("SQLite {}", embedded.warehouse_path().display()));
        }
        Self {
            landing: format!("{} ({} layout)", landing.join(" and "), sinks.landing.kind),
            warehouse: warehouse.join(" and "),
            event_types: catalog.names().join(", "),
            auth: match &config.auth {
                AuthConfig::None { .. } => "none",
                AuthConfig::Oidc(oidc) => match oidc.trust {
                    Trust::Signature => "oidc",
                    Trust::CloudRun => "cloud-run",
                },
            },
        }
    }
}

impl Application {
    /// Binds first (a probe's connection waits in the queue rather than being refused), then
    /// builds the pipeline (refusing a broken catalog), none of whose sinks waits long for a
    /// service that does not answer.
    pub async fn build(config: Config) -> anyhow::Result<Self> {
        let listener = bind(config.listen).await?;
        let metrics = Arc::new(metrics(&config));
        let (pipeline, writers) =
            Pipeline::build(&config.pipeline, metrics.clone(), Access::Serve).await?;
        Self::assemble(config, listener, pipeline, writers, metrics)
    }

    /// The same application over sinks of the caller's choosing (the benchmark measures the
    /// server without storage this way).
    pub async fn with_sinks(
        config: Config,
        catalog: Arc<Catalog>,
        sinks: SinkSet,
    ) -> anyhow::Result<Self> {
        let listener = bind(config.listen).await?;
        let metrics = Arc::new(metrics(&config));
        let (pipeline, writers) =
            Pipeline::with_sinks(catalog, &config.pipeline, sinks, metrics.clone());
        Self::assemble(config, listener, pipeline, writers, metrics)
    }

    fn assemble(
        config: Config,
        listener: TcpListener,
        pipeline: Pipeline,
        writers: Writers,
        metrics: Arc<Metrics>,
    ) -> anyhow::Result<Self> {
        crate::process::install_crypto_provider();
        warn_if_unauthenticated(&config.auth);
        for warning in &config.warnings {
            tracing::warn!("{warning}");
        }
        let serves = Serves::describe(&config, pipeline.catalog());
        let background = CancellationToken::new();
        let auth = PushAuth::start(&config.auth, &background)?;
        let exposure = match &config.auth {
            AuthConfig::Oidc(OidcConfig {
                probe_url: Some(url),
                ..
            }) => Some(Arc::new(ExposureProbe::new(url)?)),
            _ => None,
        };
        let budget = Arc::new(MemoryBudget::new(config.limits.budget));
        tracing::info!(
            memory_budget_mb = config.limits.budget.bytes >> 20,
            "pushes in flight may hold {} MiB",
            config.limits.budget.bytes >> 20
        );
        let pipeline = Arc::new(pipeline);
        let state = AppState {
            push: Arc::new(PushState {
                pipeline: pipeline.clone(),
                limits: config.limits.clone(),
                budget: budget.clone(),
                metrics: metrics.clone(),
            }),
            health: Arc::new(HealthState {
                pipeline,
                auth: auth.clone(),
                metrics: metrics.clone(),
                budget,
                exposure: exposure.clone(),
            }),
            auth,
            metrics,
        };
        Ok(Self {
            listener,
            router: router(
                state,
                config.limits.max_concurrency,
                config.request_timeout(),
            ),
            connections: config.connections,
            writers,
            background,
            grace: config.shutdown_grace,
            serves,
            exposure,
        })
    }
    pub fn local_addr(&self) -> SocketAddr {
        self.listener
            .local_addr()
            .expect("a bound listener has an address")
    }

    pub fn port(&self) -> u16 {
        self.local_addr().port()
    }

    /// Serves until `shutdown` resolves, then stops accepting, lets in-flight requests and
    /// pending batches finish (for at most the grace period) and returns.
    pub async fn run_until_stopped(
        self,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> anyhow::Result<()> {
        let stopping = CancellationToken::new();
        let signal = stopping.clone();
        let serves = &self.serves;
        tracing::info!(
            address = %self.local_addr(),
            landing = %serves.landing,
            warehouse = %serves.warehouse,
            event_types = %serves.event_types,
            auth = serves.auth,
            "landfall is serving"
        );
        if let Some(exposure) = self.exposure.clone() {
            tokio::spawn(async move { exposure.exposure().await });
        }
        let server =
            crate::http::server::serve(self.listener, self.router, self.connections, async move {
                shutdown.await;
                signal.cancel();
            });
        let deadline = async {
            stopping.cancelled().await;
            tracing::info!(
                grace_secs = self.grace.as_secs(),
                "shutting down: draining in-flight requests"
            );
            tokio::time::sleep(self.grace).await;
        };
        tokio::select! {
            () = server => {}
            _ = deadline => tracing::warn!("grace period over: abandoning requests still in flight (Pub/Sub will redeliver them)"),
        }
        self.background.cancel();
        // The router (and with it the pipeline) is gone: the writers now drain and stop.
        if !self.writers.finish(self.grace).await {
            tracing::warn!(
                "grace period over: abandoning unfinished batches (Pub/Sub will redeliver them)"
            );
        }
        tracing::info!("landfall stopped");
        Ok(())
    }
}

async fn bind(address: SocketAddr) -> anyhow::Result<TcpListener> {
    TcpListener::bind(address)
        .await
        .with_context(|| format!("failed to listen on {address}"))
}

fn warn_if_unauthenticated(auth: &AuthConfig) {
    match auth {
        AuthConfig::None { explicit: true } => tracing::warn!(
            "--auth none with a Google sink: ANY caller can write to the production landing and raw layers"
        ),
        AuthConfig::None { explicit: false } => tracing::warn!(
            "authentication is off (--auth none): every request to /push is accepted; use --auth oidc in production"
        ),
        AuthConfig::Oidc(_) => {}
    }
}

fn metrics(config: &Config) -> Metrics {
    let oidc = matches!(config.auth, AuthConfig::Oidc(_));
    if config.metrics {
        Metrics::new(config.request_timeout(), oidc)
    } else {
        Metrics::disabled(config.request_timeout())
    }
}
