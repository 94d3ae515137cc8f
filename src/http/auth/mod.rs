//! Who may push: nobody is checked (`--auth none`), or every request must carry a
//! Google-signed OIDC token for this audience from an allowed service account (`--auth oidc`;
//! `--auth cloud-run` when Cloud Run has already verified the signature).
//!
//! [`require`] is a middleware in front of `/push`, so the handler only ever sees verified
//! requests; the verified [`oidc::Claims`] ride along as a request extension.

pub mod exposure;
pub mod jwks;
pub mod oidc;

use std::sync::Arc;
use std::time::Duration;

use axum::extract::{Request, State};
use axum::http::HeaderName;
use axum::http::header::AUTHORIZATION;
use axum::middleware::Next;
use axum::response::Response;
use tokio_util::sync::CancellationToken;

use crate::http::error::ApiError;
use jwks::Jwks;
use oidc::{AuthError, OidcConfig, OidcVerifier, Trust};

/// Cloud Run checks this header instead of `Authorization` when both are sent, and then
/// forwards `Authorization` untouched: the token Cloud Run verified is the one in here.
const SERVERLESS_AUTHORIZATION: HeaderName = HeaderName::from_static("x-serverless-authorization");

/// How pushes are authenticated, as configured.
#[derive(Debug, Clone)]
pub enum AuthConfig {
    /// `explicit`: the operator asked for it despite a Google sink (warned at every start).
    None {
        explicit: bool,
    },
    Oidc(OidcConfig),
}

#[derive(Clone)]
pub enum PushAuth {
    None,
    Oidc(Arc<OidcVerifier>),
}

impl PushAuth {
    /// Builds the verifier; with signatures to check, starts the key refresher (stopped by
    /// `background`).
    pub fn start(config: &AuthConfig, background: &CancellationToken) -> anyhow::Result<Self> {
        let AuthConfig::Oidc(oidc) = config else {
            return Ok(PushAuth::None);
        };
        let jwks = match oidc.trust {
            Trust::Signature => {
                let jwks = Arc::new(Jwks::new(oidc.jwks_url.clone())?);
                jwks.clone().spawn_refresher(background.child_token());
                Some(jwks)
            }
            Trust::CloudRun => None,
        };
        Ok(PushAuth::Oidc(Arc::new(OidcVerifier::new(oidc, jwks))))
    }

    /// Whether requests can be verified now (for `/readyz`).
    pub fn ready(&self) -> Result<(), String> {
        match self {
            PushAuth::Oidc(v) if !v.keys_loaded() => {
                Err("token-signing keys have not been fetched yet".into())
            }
            _ => Ok(()),
        }
    }

    /// How old the cached signing keys are (for metrics).
    pub fn keys_age(&self) -> Option<Duration> {
        match self {
            PushAuth::Oidc(v) => v.keys_age(),
            PushAuth::None => None,
        }
    }
}

impl From<AuthError> for ApiError {
    fn from(e: AuthError) -> Self {
        match e {
            AuthError::Invalid(why) => ApiError::Unauthenticated(why),
            AuthError::NotAllowed(why) => ApiError::Forbidden(why),
            AuthError::KeysUnavailable => ApiError::AuthUnavailable(e.to_string()),
        }
    }
}

pub async fn require(
    State(auth): State<PushAuth>,
    mut request: Request,
    next: Next,
) -> Result<Response, ApiError> {
    if let PushAuth::Oidc(verifier) = &auth {
        let token = bearer_token(&request)?;
        let claims = verifier.verify(token).await.inspect_err(|e| {
            // The token itself is never logged: it is a credential until it expires.
            tracing::warn!(reason = %e, "push request rejected by authentication");
        })?;
        request.extensions_mut().insert(claims);
    }
    Ok(next.run(request).await)
}

fn bearer_token(request: &Request) -> Result<&str, ApiError> {
    let unauthenticated = |why: &str| ApiError::Unauthenticated(why.to_string());
    let headers = request.headers();
    let value = headers
        .get(SERVERLESS_AUTHORIZATION)
        .or_else(|| headers.get(AUTHORIZATION))
        .ok_or_else(|| unauthenticated("missing Authorization header"))?
        .to_str()
        .map_err(|_| unauthenticated("Authorization header is not valid text"))?;
    let (scheme, token) = value.split_once(' ').unwrap_or((value, ""));
    if !scheme.eq_ignore_ascii_case("bearer") {
        return Err(unauthenticated("Authorization scheme must be Bearer"));
    }
    let token = token.trim();
    if token.is_empty() {
        return Err(unauthenticated("bearer token is empty"));
    }
    Ok(token)
}
