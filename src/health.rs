//! `/healthz` (the process serves) and `/readyz` (every sink writable, keys loaded).

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use serde::Serialize;

use crate::auth::PushAuth;
use crate::sink::Sinks;

#[derive(Clone)]
pub struct HealthState {
    pub sinks: Sinks,
    pub auth: PushAuth,
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

pub async fn readyz(State(state): State<HealthState>) -> (StatusCode, Json<Readiness>) {
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
