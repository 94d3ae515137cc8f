//! What probes and scrapers read: `/healthz` (the process serves), `/readyz` (every sink
//! writable, keys loaded) and `/metrics` (Prometheus). None of them is behind authentication
//! or the push concurrency limit.

use std::sync::Arc;

use axum::Json;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use serde::Serialize;

use crate::auth::PushAuth;
use crate::auth::exposure::ExposureProbe;
use crate::sink::Sinks;
use crate::telemetry::metrics::{self, Metrics};

pub struct HealthState {
    pub sinks: Sinks,
    pub auth: PushAuth,
    pub metrics: Arc<Metrics>,
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

pub async fn readyz(State(state): State<Arc<HealthState>>) -> (StatusCode, Json<Readiness>) {
    let mut checks: Vec<Check> = state
        .sinks
        .check()
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
        let ready = exposure.ready().await;
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
    (
        [(header::CONTENT_TYPE, metrics::CONTENT_TYPE)],
        state.metrics.encode(),
    )
}
