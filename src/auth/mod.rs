//! Who may push: nobody is checked (`--auth none`), or every request must carry a
//! Google-signed OIDC token for this audience from an allowed service account.
//!
//! [`require`] is a middleware in front of `/push`, so the handler only ever sees verified
//! requests; the verified [`oidc::Claims`] ride along as a request extension.

pub mod jwks;
pub mod oidc;

use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::header::AUTHORIZATION;
use axum::middleware::Next;
use axum::response::Response;

use crate::error::ApiError;
use oidc::{AuthError, OidcVerifier};

#[derive(Clone)]
pub enum PushAuth {
    None,
    Oidc(Arc<OidcVerifier>),
}

impl PushAuth {
    /// Whether requests can be verified now (for `/readyz`).
    pub fn ready(&self) -> Result<(), String> {
        match self {
            PushAuth::Oidc(v) if !v.keys_loaded() => {
                Err("token-signing keys have not been fetched yet".into())
            }
            _ => Ok(()),
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
    let value = request
        .headers()
        .get(AUTHORIZATION)
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
