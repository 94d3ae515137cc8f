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

use crate::auth::{self, AuthConfig, PushAuth};
use crate::config::Config;
use crate::error::{self, ApiError};
use crate::event::{Classifier, Landing};
use crate::health::{self, HealthState};
use crate::push::{self, PushState};
use crate::schema::Catalog;
use crate::sink::batch::GroupCommit;
use crate::sink::bigquery::BigQueryWarehouse;
use crate::sink::gcs::GcsLanding;
use crate::sink::local::LocalLanding;
use crate::sink::sqlite::SqliteWarehouse;
use crate::sink::{Sink, Sinks};
use crate::telemetry::metrics::Metrics;

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

/// Bounds on what one push may take.
#[derive(Debug, Clone)]
pub struct Limits {
    pub max_body_bytes: usize,
    pub max_concurrency: usize,
    pub request_timeout: Duration,
    pub shutdown_grace: Duration,
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

/// The sinks an application writes to, and the URI prefix rows record for landed objects.
pub struct SinkSet {
    pub sinks: Vec<Arc<dyn Sink>>,
    /// `gs://bucket` or `file:///…/landing`: the first landing sink's.
    pub landing_base_uri: Option<String>,
}

pub struct Application {
    listener: TcpListener,
    router: Router,
    /// Group-commit writers; they finish their batches once the router is gone.
    writers: Vec<JoinHandle<()>>,
    /// Stops background tasks (the JWKS refresher).
    background: CancellationToken,
    grace: Duration,
}

impl Application {
    /// Loads the catalog (refusing a broken one), connects the configured sinks and binds.
    pub async fn build(config: Config) -> anyhow::Result<Self> {
        let catalog = Arc::new(Catalog::load(&config.catalog)?);
        let sinks = build_sinks(&config, &catalog).await?;
        Self::with_sinks(config, catalog, sinks).await
    }

    /// The same application over sinks of the caller's choosing (the benchmark measures the
    /// server without storage this way).
    pub async fn with_sinks(
        config: Config,
        catalog: Arc<Catalog>,
        sinks: SinkSet,
    ) -> anyhow::Result<Self> {
        install_crypto_provider();
        warn_if_unauthenticated(&config.auth);
        let background = CancellationToken::new();
        let auth = PushAuth::start(&config.auth, &background)?;
        let oidc = matches!(config.auth, AuthConfig::Oidc(_));
        let metrics = Arc::new(if config.metrics {
            Metrics::new(config.limits.request_timeout, oidc)
        } else {
            Metrics::disabled(config.limits.request_timeout)
        });
        let mut writers = Vec::new();
        let mut queues = Vec::new();
        for sink in sinks.sinks {
            let (queue, writer) =
                GroupCommit::spawn(sink.clone(), config.batch, metrics.sink(sink.name()));
            queues.push((sink, queue));
            writers.push(writer);
        }
        let sinks_handle = Sinks::new(queues);
        let classifier = Classifier {
            catalog,
            routing: config.routing.clone(),
            landing: Landing {
                base_uri: sinks.landing_base_uri,
                layout: config.landing.clone(),
            },
        };
        let state = AppState {
            push: Arc::new(PushState {
                sinks: sinks_handle.clone(),
                classifier: Arc::new(classifier),
                max_body_bytes: config.limits.max_body_bytes,
                metrics: metrics.clone(),
            }),
            health: Arc::new(HealthState {
                sinks: sinks_handle,
                auth: auth.clone(),
                metrics: metrics.clone(),
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
            grace: config.limits.shutdown_grace,
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
        tracing::info!(address = %self.local_addr(), "landfall is serving");
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

/// The configured sinks: the landing layer first, then the warehouses.
async fn build_sinks(config: &Config, catalog: &Arc<Catalog>) -> anyhow::Result<SinkSet> {
    // Remote writes, retries included, must finish while Pub/Sub still waits for the answer.
    let deadline = config.limits.request_timeout;
    let mut set = SinkSet {
        sinks: Vec::new(),
        landing_base_uri: None,
    };
    if let Some(target) = &config.gcs {
        let bucket = GcsLanding::connect(target, &config.landing.prefix, deadline).await?;
        set.landing_base_uri
            .get_or_insert_with(|| bucket.base_uri());
        set.sinks.push(Arc::new(bucket));
    }
    if let Some(embedded) = &config.embedded {
        std::fs::create_dir_all(&embedded.data_dir)
            .with_context(|| format!("failed to create {}", embedded.data_dir.display()))?;
        let folder = LocalLanding::open(embedded.data_dir.join("landing"))?;
        set.landing_base_uri
            .get_or_insert_with(|| folder.base_uri());
        set.sinks.push(Arc::new(folder));
    }
    if let Some(target) = &config.bigquery {
        let warehouse = BigQueryWarehouse::connect(target, catalog.clone(), deadline).await?;
        set.sinks.push(Arc::new(warehouse));
    }
    if let Some(embedded) = &config.embedded {
        let database = embedded.data_dir.join("warehouse.db");
        let warehouse = SqliteWarehouse::open(&database, embedded.sqlite_busy_timeout, catalog)?;
        set.sinks.push(Arc::new(warehouse));
    }
    Ok(set)
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
