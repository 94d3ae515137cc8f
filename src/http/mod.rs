//! The HTTP edge, in one place: the router and its routes (`/push`, the probes, `/metrics`),
//! authentication, the one error type at the boundary, the accept loop, what each connection
//! may hold, and the memory budget of the pushes in flight.

pub mod auth;
pub mod budget;
pub mod connection;
pub mod error;
pub mod health;
pub mod push;
pub mod server;

use std::sync::Arc;
use std::time::Duration;

use axum::error_handling::HandleErrorLayer;
use axum::extract::FromRef;
use axum::routing::{get, post};
use axum::{BoxError, Router, middleware};
use tower::ServiceBuilder;

use crate::telemetry::metrics::Metrics;
use auth::PushAuth;
use auth::exposure;
use error::ApiError;
use health::HealthState;
use push::PushState;

/// Each piece behind its own `Arc`: handlers and middleware clone only the piece they use,
/// once per request.
#[derive(Clone)]
pub struct AppState {
    pub push: Arc<PushState>,
    pub health: Arc<HealthState>,
    pub auth: PushAuth,
    pub metrics: Arc<Metrics>,
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

/// The routes, each with the layers it needs.
pub fn router(state: AppState, max_concurrency: usize, request_timeout: Duration) -> Router {
    // Only /push is limited: probes and scrapes must still answer when ingestion is saturated.
    let push_limits = ServiceBuilder::new()
        .layer(HandleErrorLayer::new(limit_error))
        .load_shed()
        .concurrency_limit(max_concurrency)
        .timeout(request_timeout);
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
        // The handler is gone and never says why; the push's log line must.
        tracing::Span::current().record(
            "error",
            "the sinks did not finish within --request-timeout-secs",
        );
        ApiError::TimedOut
    } else {
        ApiError::Internal(error.to_string())
    }
}
