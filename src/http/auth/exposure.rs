//! Whether unauthenticated calls reach landfall, with `--auth cloud-run`.
//!
//! In that mode landfall trusts Cloud Run to have refused every call without a valid token
//! (the service must not allow unauthenticated calls). Deployed by mistake with
//! `--allow-unauthenticated`, the service would take forged claims from anyone. So landfall
//! sends one request without credentials, carrying a fresh nonce, to its own public URL: if
//! Cloud Run turns it away, all is as it should be; if it comes back echoed by `GET /probe`
//! (any instance of any landfall revision echoes), unauthenticated calls get through and
//! readiness fails. A probe that gets no clear answer (no revision serves yet, a network
//! error) proves nothing either way and does not fail readiness.

use std::time::Duration;

use axum::Json;
use axum::extract::Query;
use serde::Deserialize;
use serde_json::{Value, json};
use tokio::sync::Mutex;
use tokio::time::Instant;

use crate::http::error::ApiError;

/// How long one answer is trusted.
const TTL: Duration = Duration::from_secs(60);
const TIMEOUT: Duration = Duration::from_secs(5);

/// What the probe found.
#[derive(Debug, Clone, PartialEq)]
pub enum Exposure {
    /// Turned away without reaching landfall.
    Protected,
    /// Echoed: unauthenticated calls reach landfall.
    Exposed(String),
    /// No clear answer.
    Unknown(String),
}

pub struct ExposureProbe {
    url: String,
    client: reqwest::Client,
    last: Mutex<Option<(Instant, Exposure)>>,
}

impl ExposureProbe {
    /// `service_url`: the service's own URL (the token audience, by default).
    pub fn new(service_url: &str) -> anyhow::Result<Self> {
        Ok(Self {
            url: format!("{}/probe", service_url.trim_end_matches('/')),
            client: reqwest::Client::builder().timeout(TIMEOUT).build()?,
            last: Mutex::new(None),
        })
    }

    /// The last answer while fresh, else a new probe.
    pub async fn exposure(&self) -> Exposure {
        let mut last = self.last.lock().await;
        if let Some((at, exposure)) = last.as_ref()
            && at.elapsed() < TTL
        {
            return exposure.clone();
        }
        let exposure = self.probe().await;
        match &exposure {
            Exposure::Exposed(why) => tracing::error!(url = %self.url, "{why}"),
            Exposure::Unknown(why) => {
                tracing::warn!(url = %self.url, "could not tell whether unauthenticated calls reach landfall: {why}")
            }
            Exposure::Protected => {
                tracing::info!(url = %self.url, "unauthenticated calls are turned away before landfall, as --auth cloud-run needs")
            }
        }
        *last = Some((Instant::now(), exposure.clone()));
        exposure
    }

    async fn probe(&self) -> Exposure {
        let nonce = format!("{:032x}", fastrand::u128(..));
        let response = match self
            .client
            .get(&self.url)
            .query(&[("nonce", &nonce)])
            .send()
            .await
        {
            Ok(response) => response,
            Err(e) => return Exposure::Unknown(format!("the probe failed: {e}")),
        };
        let status = response.status().as_u16();
        let echoed = response.json::<Value>().await.ok().and_then(|body| {
            body.get("nonce")
                .and_then(Value::as_str)
                .map(str::to_string)
        });
        match (status, echoed) {
            (200, Some(echo)) if echo == nonce => Exposure::Exposed(format!(
                "a request without credentials to {} reached landfall: the service allows unauthenticated calls, so with --auth cloud-run anyone can push forged claims; redeploy with --no-allow-unauthenticated, or run --auth oidc",
                self.url
            )),
            (401 | 403, _) => Exposure::Protected,
            (status, _) => Exposure::Unknown(format!("{} answered {status}", self.url)),
        }
    }

    /// For `/readyz`: an error only when the service is provably open.
    pub async fn ready(&self) -> Result<(), String> {
        match self.exposure().await {
            Exposure::Exposed(why) => Err(why),
            Exposure::Protected | Exposure::Unknown(_) => Ok(()),
        }
    }
}

#[derive(Deserialize)]
pub struct ProbeQuery {
    nonce: Option<String>,
}

/// `GET /probe?nonce=…`: echoes the nonce, so that a probe can tell it reached landfall.
pub async fn echo(Query(query): Query<ProbeQuery>) -> Result<Json<Value>, ApiError> {
    let nonce = query
        .nonce
        .ok_or_else(|| ApiError::BadRequest("nonce: is required".into()))?;
    if !(1..=64).contains(&nonce.len()) || !nonce.bytes().all(|b| b.is_ascii_alphanumeric()) {
        return Err(ApiError::BadRequest(
            "nonce: must be 1 to 64 letters or digits".into(),
        ));
    }
    Ok(Json(json!({ "nonce": nonce })))
}
