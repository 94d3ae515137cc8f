//! Wiring: settings → catalog, sinks, auth, metrics and router → a server that drains on
//! shutdown.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use axum::error_handling::HandleErrorLayer;
use axum::extract::FromRef;
use axum::routing::{get, post};
use axum::{BoxError, Router, middleware};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tower::ServiceBuilder;

use crate::auth::exposure::{self, ExposureProbe};
use crate::auth::oidc::OidcConfig;
use crate::auth::{self, AuthConfig, PushAuth};
use crate::error::{self, ApiError};
use crate::event::Classifier;
use crate::event::route::Routing;
use crate::health::{self, HealthState};
use crate::landing::bucket::{Bucket, GcsTarget};
use crate::landing::folder::Folder;
use crate::landing::{Landing, LandingBatchConfig, LandingLayout, Store};
use crate::push::{self, PushLimits, PushState};
use crate::schema::{Catalog, CatalogSource};
use crate::sink::batch::{BatchConfig, GroupCommit};
use crate::sink::bigquery::{BigQueryTarget, BigQueryWarehouse};
use crate::sink::sqlite::SqliteWarehouse;
use crate::sink::{EmbeddedConfig, Queued, Sink, Sinks};
use crate::telemetry::LogFormat;
use crate::telemetry::metrics::Metrics;

/// Everything [`Application::build`] needs, validated (by [`crate::config`]).
#[derive(Debug, Clone)]
pub struct Config {
    pub listen: SocketAddr,
    pub catalog: CatalogSource,
    pub routing: Routing,
    pub sinks: SinkConfig,
    pub auth: AuthConfig,
    pub log_format: LogFormat,
    pub trace_project: Option<String>,
    pub metrics: bool,
    pub limits: PushLimits,
    /// After SIGTERM/SIGINT, how long in-flight requests and batches may take to finish.
    pub shutdown_grace: Duration,
    /// Settings given that do nothing in this configuration; logged at start.
    pub warnings: Vec<String>,
}

/// Which sinks to write and how: what `serve` and the repair commands share.
#[derive(Debug, Clone)]
pub struct SinkConfig {
    pub landing: LandingLayout,
    pub landing_batch: LandingBatchConfig,
    /// The folder and SQLite sinks; on when no Google sink is, or with `--also-local`.
    pub embedded: Option<EmbeddedConfig>,
    pub gcs: Option<GcsTarget>,
    pub bigquery: Option<BigQueryTarget>,
    /// `--batch-max-events` and `--batch-linger-ms`.
    pub batch: BatchConfig,
    /// How long one remote write may take, retries included.
    pub deadline: Duration,
}

/// The TLS stacks of the two Google crates enable different rustls crypto backends; with both
/// compiled in, rustls cannot pick one and the first HTTPS client panics. Pick one, once.
pub fn install_crypto_provider() {
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
}

/// mimalloc keeps freed memory for a while and backs it with huge pages, which at 1,000
/// connections doubles the resident set for no measurable speed (benches/load.rs, paired runs):
/// return freed memory at once (huge pages are off at build time, the `no_thp` feature).
pub fn tune_allocator() {
    // The position of `mi_option_purge_delay` in mimalloc v3's `mi_option_e` (mimalloc.h); the
    // test below pins it against the option's documented default.
    const PURGE_DELAY: libmimalloc_sys::mi_option_t = 15;
    // SAFETY: sets one of mimalloc's documented options; no memory is touched.
    unsafe { libmimalloc_sys::mi_option_set(PURGE_DELAY, 0) };
}

/// Each piece behind its own `Arc`: handlers and middleware clone only the piece they use,
/// once per request.
#[derive(Clone)]
struct AppState {
    push: Arc<PushState>,
    health: Arc<HealthState>,
    auth: PushAuth,
    metrics: Arc<Metrics>,
}

impl FromRef<AppState> for Arc<PushState> {
    fn from_ref(state: &AppState) -> Self {
        state.push.clone()
    }
}

impl FromRef<AppState> for Arc<HealthState> {
    fn from_ref(state: &AppState) -> Self {
        state.health.clone()
    }
}

/// The sinks an application writes to: the landing layer's first, then the warehouses.
pub struct SinkSet {
    pub sinks: Vec<Arc<dyn Sink>>,
    /// The landing layer's stores, the first one's objects named by rows (for reading back).
    pub stores: Vec<Arc<dyn Store>>,
}

pub struct Application {
    listener: TcpListener,
    router: Router,
    /// Group-commit writers; they finish their batches once the router is gone.
    writers: Vec<JoinHandle<()>>,
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
        let sinks = &config.sinks;
        let mut landing = Vec::new();
        if let Some(gcs) = &sinks.gcs {
            landing.push(format!("gs://{}/{}", gcs.bucket, sinks.landing.prefix));
        }
        let mut warehouse = Vec::new();
        if let Some(bigquery) = &sinks.bigquery {
            warehouse.push(format!(
                "BigQuery {}.{}",
                bigquery.project, bigquery.dataset
            ));
        }
        if let Some(embedded) = &sinks.embedded {
            let dir = embedded.data_dir.display();
            landing.push(format!("{dir}/landing/{}", sinks.landing.prefix));
            warehouse.push(format!("SQLite {dir}/warehouse.db"));
        }
        Self {
            landing: format!("{} ({} layout)", landing.join(" and "), sinks.landing.kind),
            warehouse: warehouse.join(" and "),
            event_types: catalog.names().join(", "),
            auth: match &config.auth {
                AuthConfig::None { .. } => "none",
                AuthConfig::Oidc(oidc) => match oidc.trust {
                    crate::auth::oidc::Trust::Signature => "oidc",
                    crate::auth::oidc::Trust::CloudRun => "cloud-run",
                },
            },
        }
    }
}

impl Application {
    /// Loads the catalog (refusing a broken one), connects the configured sinks and binds.
    pub async fn build(config: Config) -> anyhow::Result<Self> {
        let catalog = Arc::new(Catalog::load(&config.catalog)?);
        let metrics = Arc::new(metrics(&config));
        let sinks = build_sinks(&config.sinks, &catalog, &metrics).await?;
        Self::assemble(config, catalog, sinks, metrics).await
    }

    /// The same application over sinks of the caller's choosing (the benchmark measures the
    /// server without storage this way).
    pub async fn with_sinks(
        config: Config,
        catalog: Arc<Catalog>,
        sinks: SinkSet,
    ) -> anyhow::Result<Self> {
        let metrics = Arc::new(metrics(&config));
        Self::assemble(config, catalog, sinks, metrics).await
    }

    async fn assemble(
        config: Config,
        catalog: Arc<Catalog>,
        sinks: SinkSet,
        metrics: Arc<Metrics>,
    ) -> anyhow::Result<Self> {
        install_crypto_provider();
        warn_if_unauthenticated(&config.auth);
        for warning in &config.warnings {
            tracing::warn!("{warning}");
        }
        let serves = Serves::describe(&config, &catalog);
        let background = CancellationToken::new();
        let auth = PushAuth::start(&config.auth, &background)?;
        let exposure = match &config.auth {
            AuthConfig::Oidc(OidcConfig {
                probe_url: Some(url),
                ..
            }) => Some(Arc::new(ExposureProbe::new(url)?)),
            _ => None,
        };
        let (sinks_handle, writers) = start_writers(sinks, config.sinks.batch, &metrics);
        let classifier = Classifier {
            catalog,
            routing: config.routing.clone(),
            partition: config.sinks.landing.partition,
        };
        let state = AppState {
            push: Arc::new(PushState {
                sinks: sinks_handle.clone(),
                classifier: Arc::new(classifier),
                limits: config.limits.clone(),
                metrics: metrics.clone(),
            }),
            health: Arc::new(HealthState {
                sinks: sinks_handle,
                auth: auth.clone(),
                metrics: metrics.clone(),
                exposure: exposure.clone(),
            }),
            auth,
            metrics,
        };
        let listener = TcpListener::bind(config.listen)
            .await
            .with_context(|| format!("failed to listen on {}", config.listen))?;
        Ok(Self {
            listener,
            router: router(state, &config),
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
        let server = axum::serve(self.listener, self.router).with_graceful_shutdown(async move {
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
            served = server.into_future() => served.context("the HTTP server failed")?,
            _ = deadline => tracing::warn!("grace period over: abandoning requests still in flight (Pub/Sub will redeliver them)"),
        }
        self.background.cancel();
        // The router (and with it every queue handle) is gone: the writers now drain and stop.
        let drained =
            tokio::time::timeout(self.grace, futures::future::join_all(self.writers)).await;
        if drained.is_err() {
            tracing::warn!(
                "grace period over: abandoning unfinished batches (Pub/Sub will redeliver them)"
            );
        }
        tracing::info!("landfall stopped");
        Ok(())
    }
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
        Metrics::new(config.limits.request_timeout, oidc)
    } else {
        Metrics::disabled(config.limits.request_timeout)
    }
}

/// A group-commit writer for each sink (two for a sink that batches redeliveries apart);
/// `batch` is `--batch-max-events` and `--batch-linger-ms`.
pub fn start_writers(
    sinks: SinkSet,
    batch: BatchConfig,
    metrics: &Metrics,
) -> (Sinks, Vec<JoinHandle<()>>) {
    let mut writers = Vec::new();
    let mut queues = Vec::new();
    for sink in sinks.sinks {
        let handles = metrics.sink(sink.name());
        let (fresh, writer) = GroupCommit::spawn(sink.clone(), sink.batch_config(batch), handles);
        writers.push(writer);
        let replays = sink.replay_lane().map(|(name, replay)| {
            let (queue, writer) = GroupCommit::spawn(sink.clone(), replay, metrics.sink(name));
            writers.push(writer);
            queue
        });
        queues.push(Queued {
            sink,
            fresh,
            replays,
        });
    }
    (Sinks::new(queues), writers)
}

/// The configured landing stores: the bucket first (rows name its objects), then the folder.
async fn landing_stores(config: &SinkConfig) -> anyhow::Result<Vec<Arc<dyn Store>>> {
    let deadline = config.deadline;
    let mut stores: Vec<Arc<dyn Store>> = Vec::new();
    if let Some(target) = &config.gcs {
        stores.push(Arc::new(
            Bucket::connect(target, &config.landing.prefix, deadline).await?,
        ));
    }
    if let Some(embedded) = &config.embedded {
        create_data_dir(&embedded.data_dir)?;
        stores.push(Arc::new(Folder::open(embedded.data_dir.join("landing"))?));
    }
    Ok(stores)
}

fn create_data_dir(path: &std::path::Path) -> anyhow::Result<()> {
    if path.exists() && !path.is_dir() {
        anyhow::bail!(
            "--data-dir (LANDFALL_DATA_DIR) {} is a file, not a folder",
            path.display()
        );
    }
    std::fs::create_dir_all(path).with_context(|| {
        format!(
            "--data-dir (LANDFALL_DATA_DIR): cannot create the folder {}",
            path.display()
        )
    })
}

/// The configured sinks: the landing layer first, then the warehouses.
pub async fn build_sinks(
    config: &SinkConfig,
    catalog: &Arc<Catalog>,
    metrics: &Metrics,
) -> anyhow::Result<SinkSet> {
    let deadline = config.deadline;
    let mut sinks: Vec<Arc<dyn Sink>> = Vec::new();
    let stores = landing_stores(config).await?;
    for store in &stores {
        let handles = metrics.landing(store.name());
        let landing = Landing::open(
            config.landing.clone(),
            store.clone(),
            config.landing_batch,
            handles,
        )
        .await?;
        sinks.push(Arc::new(landing));
    }
    if let Some(target) = &config.bigquery {
        let warehouse = BigQueryWarehouse::connect(target, catalog.clone(), deadline).await?;
        sinks.push(Arc::new(warehouse));
    }
    if let Some(embedded) = &config.embedded {
        let database = embedded.data_dir.join("warehouse.db");
        let warehouse = SqliteWarehouse::open(&database, embedded.sqlite_busy_timeout, catalog)?;
        sinks.push(Arc::new(warehouse));
    }
    Ok(SinkSet { sinks, stores })
}

fn router(state: AppState, config: &Config) -> Router {
    // Only /push is limited: probes and scrapes must still answer when ingestion is saturated.
    let push_limits = ServiceBuilder::new()
        .layer(HandleErrorLayer::new(limit_error))
        .load_shed()
        .concurrency_limit(config.limits.max_concurrency)
        .timeout(config.limits.request_timeout);
    let push_route = post(push::handler)
        .route_layer(middleware::from_fn_with_state(
            state.auth.clone(),
            auth::require,
        ))
        .route_layer(push_limits)
        .route_layer(middleware::from_fn_with_state(
            state.metrics.clone(),
            push::observe,
        ));
    let mut router = Router::new()
        .route("/push", push_route)
        .route("/healthz", get(health::healthz))
        .route("/probe", get(exposure::echo))
        .route("/readyz", get(health::readyz));
    if state.metrics.enabled() {
        router = router.route("/metrics", get(health::metrics));
    }
    router
        .layer(middleware::from_fn(error::documented_errors))
        .with_state(state)
}

async fn limit_error(error: BoxError) -> ApiError {
    if error.is::<tower::load_shed::error::Overloaded>() {
        ApiError::Overloaded
    } else if error.is::<tower::timeout::error::Elapsed>() {
        ApiError::TimedOut
    } else {
        ApiError::Internal(error.to_string())
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_option_tune_allocator_sets_is_the_purge_delay() {
        // In the mimalloc this crate builds (v3), `purge_delay` defaults to 1000 ms and the
        // options beside it to 1 and 0: a wrong position would show here.
        // SAFETY: reads an option.
        assert_eq!(unsafe { libmimalloc_sys::mi_option_get(15) }, 1000);
    }
}
