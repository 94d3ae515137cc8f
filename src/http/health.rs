//! What probes and scrapers read: `/healthz` (the process serves), `/readyz` (every sink
//! writable, keys loaded) and `/metrics` (Prometheus). None of them is behind authentication
//! or the push concurrency limit.

use std::sync::Arc;

use axum::Json;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use serde::Serialize;

use crate::http::auth::PushAuth;
use crate::http::auth::exposure::ExposureProbe;
use crate::http::budget::MemoryBudget;
use crate::pipeline::Pipeline;
use crate::telemetry::metrics::{self, Metrics};

pub struct HealthState {
    pub pipeline: Arc<Pipeline>,
    pub auth: PushAuth,
    pub metrics: Arc<Metrics>,
    pub budget: Arc<MemoryBudget>,
    /// With `--auth cloud-run`: whether unauthenticated calls are turned away.
    pub exposure: Option<Arc<ExposureProbe>>,
}

#[derive(Debug, Serialize)]
pub struct Check {
    pub name: &'static str,
    pub ok: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

#[derive(Debug, Serialize)]
pub struct Readiness {
    /// `ready` or `not_ready`.
    pub status: &'static str,
    pub checks: Vec<Check>,
}

pub async fn healthz() -> Json<serde_json::Value> {
    Json(serde_json::json!({"status": "ok"}))
}

/// How long each check of `/readyz` may take: they run at once, so that the answer comes well
/// within a probe's timeout (5 s in the deploy guide) however many do not answer.
const CHECK_WITHIN: std::time::Duration = std::time::Duration::from_secs(2);

pub async fn readyz(State(state): State<Arc<HealthState>>) -> (StatusCode, Json<Readiness>) {
    let mut checks: Vec<Check> = state
        .pipeline
        .check_within(CHECK_WITHIN)
        .await
        .into_iter()
        .map(|(name, result)| Check {
            name,
            ok: result.is_ok(),
            error: result.err().map(|e| e.message),
        })
        .collect();
    let auth = state.auth.ready();
    checks.push(Check {
        name: "auth",
        ok: auth.is_ok(),
        error: auth.err(),
    });
    if let Some(exposure) = &state.exposure {
        let ready = tokio::time::timeout(CHECK_WITHIN, exposure.ready())
            .await
            .unwrap_or_else(|_| Err(format!("no answer within {CHECK_WITHIN:?}")));
        checks.push(Check {
            name: "unauthenticated_calls",
            ok: ready.is_ok(),
            error: ready.err(),
        });
    }
    let ready = checks.iter().all(|c| c.ok);
    let status = if ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (
        status,
        Json(Readiness {
            status: if ready { "ready" } else { "not_ready" },
            checks,
        }),
    )
}

pub async fn metrics(State(state): State<Arc<HealthState>>) -> impl IntoResponse {
    state.metrics.set_keys_age(state.auth.keys_age());
    state
        .metrics
        .set_budget(state.budget.total(), state.budget.reserved());
    (
        [(header::CONTENT_TYPE, metrics::CONTENT_TYPE)],
        state.metrics.encode(),
    )
}
