//! Wiring: settings → sinks, auth and router → a server that drains on shutdown.

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

use crate::auth::jwks::Jwks;
use crate::auth::oidc::OidcVerifier;
use crate::auth::{self, PushAuth};
use crate::config::{Auth, Config};
use crate::error::ApiError;
use crate::event::Landing;
use crate::health::{self, HealthState};
use crate::push::{self, PushState};
use crate::sink::batch::GroupCommit;
use crate::sink::bigquery::BigQueryWarehouse;
use crate::sink::gcs::GcsLanding;
use crate::sink::local::LocalLanding;
use crate::sink::sqlite::SqliteWarehouse;
use crate::sink::{Sink, Sinks};

/// The TLS stacks of the two Google crates enable different rustls crypto backends; with both
/// compiled in, rustls cannot pick one and the first HTTPS client panics. Pick one, once.
pub fn install_crypto_provider() {
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
}

#[derive(Clone)]
struct AppState {
    push: PushState,
    health: HealthState,
    auth: PushAuth,
}

impl FromRef<AppState> for PushState {
    fn from_ref(state: &AppState) -> Self {
        state.push.clone()
    }
}

impl FromRef<AppState> for HealthState {
    fn from_ref(state: &AppState) -> Self {
        state.health.clone()
    }
}

impl FromRef<AppState> for PushAuth {
    fn from_ref(state: &AppState) -> Self {
        state.auth.clone()
    }
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
    pub async fn build(config: Config) -> anyhow::Result<Self> {
        install_crypto_provider();
        warn_if_unauthenticated(&config);
        let background = CancellationToken::new();
        let (sinks, landing, writers) = build_sinks(&config).await?;
        let auth = build_auth(&config, &background)?;
        let state = AppState {
            push: PushState {
                sinks: sinks.clone(),
                landing,
                max_body_bytes: config.limits.max_body_bytes,
            },
            health: HealthState {
                sinks,
                auth: auth.clone(),
            },
            auth,
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

fn warn_if_unauthenticated(config: &Config) {
    match config.auth {
        Auth::None { explicit: true } => tracing::warn!(
            "--auth none with a Google sink: ANY caller can write to the production landing and raw layers"
        ),
        Auth::None { explicit: false } => tracing::warn!(
            "authentication is off (--auth none): every request to /push is accepted; use --auth oidc in production"
        ),
        Auth::Oidc(_) => {}
    }
}

async fn build_sinks(config: &Config) -> anyhow::Result<(Sinks, Landing, Vec<JoinHandle<()>>)> {
    // Remote writes, retries included, must finish while Pub/Sub still waits for the answer.
    let deadline = config.limits.request_timeout;
    // Rows point at the first landing sink: the bucket when there is one.
    let mut base_uri: Option<String> = None;
    let mut sinks: Vec<Arc<dyn Sink>> = Vec::new();
    if let Some(target) = &config.gcs {
        let bucket = GcsLanding::connect(target, &config.prefix, deadline).await?;
        base_uri.get_or_insert_with(|| bucket.base_uri());
        sinks.push(Arc::new(bucket));
    }
    if let Some(target) = &config.bigquery {
        sinks.push(Arc::new(
            BigQueryWarehouse::connect(target, deadline).await?,
        ));
    }
    if config.local {
        std::fs::create_dir_all(&config.data_dir)
            .with_context(|| format!("failed to create {}", config.data_dir.display()))?;
        let folder = LocalLanding::open(config.data_dir.join("landing"))?;
        base_uri.get_or_insert_with(|| folder.base_uri());
        sinks.push(Arc::new(folder));
        let database = config.data_dir.join("warehouse.db");
        sinks.push(Arc::new(SqliteWarehouse::open(
            &database,
            config.sqlite_busy_timeout,
        )?));
    }
    let (queues, writers) = sinks
        .iter()
        .map(|sink| GroupCommit::spawn(sink.clone(), config.batch))
        .unzip();
    let landing = Landing {
        base_uri,
        prefix: config.prefix.clone(),
        partition: config.partition,
    };
    Ok((Sinks::new(queues, sinks), landing, writers))
}

fn build_auth(config: &Config, background: &CancellationToken) -> anyhow::Result<PushAuth> {
    match &config.auth {
        Auth::None { .. } => Ok(PushAuth::None),
        Auth::Oidc(oidc) => {
            let jwks = Arc::new(Jwks::new(oidc.jwks_url.clone())?);
            jwks.clone().spawn_refresher(background.child_token());
            Ok(PushAuth::Oidc(Arc::new(OidcVerifier::new(oidc, jwks))))
        }
    }
}

fn router(state: AppState, config: &Config) -> Router {
    // Only /push is limited: health probes must still answer when ingestion is saturated.
    let push_limits = ServiceBuilder::new()
        .layer(HandleErrorLayer::new(limit_error))
        .load_shed()
        .concurrency_limit(config.limits.max_concurrency)
        .timeout(config.limits.request_timeout);
    let push_route = post(push::handler)
        .route_layer(middleware::from_fn_with_state(state.clone(), auth::require))
        .route_layer(push_limits);
    Router::new()
        .route("/push", push_route)
        .route("/healthz", get(health::healthz))
        .route("/readyz", get(health::readyz))
        .with_state(state)
}

async fn limit_error(error: BoxError) -> ApiError {
    if error.is::<tower::load_shed::error::Overloaded>() {
        ApiError::Overloaded
    } else if error.is::<tower::timeout::error::Elapsed>() {
        ApiError::TimedOut
    } else {
        ApiError::SinkUnavailable(crate::sink::SinkError {
            sink: "server",
            message: error.to_string(),
        })
    }
}
