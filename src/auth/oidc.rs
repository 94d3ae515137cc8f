//! Verification of the OIDC token Pub/Sub attaches to each push.
//!
//! Accepts exactly: RS256 (pinned here, never read from the token), a key from Google's set,
//! the configured issuer and audience, an unexpired token not issued in the future, and an
//! `email` on the allow-list with `email_verified: true`. Checking the email is what stops a
//! token minted by any other Google project for the same audience string.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};

use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::{Algorithm, Validation, decode, decode_header};
use serde::Deserialize;
use serde_json::Value;

use super::jwks::{Jwks, KeyError};
use crate::config::OidcConfig;

/// Cached verifications; Pub/Sub reuses one token for about an hour, so this stays small.
const CACHE_CAPACITY: usize = 4096;

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum AuthError {
    /// 401: the token is missing, malformed, badly signed or out of its validity window.
    #[error("{0}")]
    Invalid(String),
    /// 403: a genuine token, but not one this service accepts.
    #[error("{0}")]
    NotAllowed(String),
    /// 503: the signing keys have not been loaded yet.
    #[error("token-signing keys are not loaded yet; retry later")]
    KeysUnavailable,
}

/// The claims landfall relies on; handlers receive them as a request extension.
#[derive(Debug, Clone, Deserialize)]
pub struct Claims {
    pub email: Option<String>,
    #[serde(default)]
    pub email_verified: Option<Value>,
    pub sub: Option<String>,
    pub iat: Option<i64>,
    /// Required; optional here only so its absence is reported as such.
    pub exp: Option<i64>,
}

pub struct OidcVerifier {
    jwks: Arc<Jwks>,
    validation: Validation,
    allowed_emails: HashSet<String>,
    leeway: i64,
    verified: Mutex<HashMap<String, Claims>>,
}

impl OidcVerifier {
    pub fn new(config: &OidcConfig, jwks: Arc<Jwks>) -> Self {
        let mut validation = Validation::new(Algorithm::RS256);
        validation.leeway = config.leeway.as_secs();
        validation.validate_nbf = true;
        validation.set_audience(&[&config.audience]);
        validation.set_issuer(&config.issuers);
        validation.set_required_spec_claims(&["exp", "aud", "iss"]);
        Self {
            jwks,
            validation,
            allowed_emails: config.allowed_emails.iter().cloned().collect(),
            leeway: config.leeway.as_secs() as i64,
            verified: Mutex::new(HashMap::new()),
        }
    }

    pub fn keys_loaded(&self) -> bool {
        self.jwks.is_loaded()
    }

    pub async fn verify(&self, token: &str) -> Result<Claims, AuthError> {
        let now = chrono::Utc::now().timestamp();
        if let Some(claims) = self.cached(token, now) {
            return Ok(claims);
        }
        let claims = self.verify_uncached(token, now).await?;
        self.remember(token, &claims, now);
        Ok(claims)
    }

    fn cached(&self, token: &str, now: i64) -> Option<Claims> {
        let cache = self.verified.lock().unwrap_or_else(|p| p.into_inner());
        cache
            .get(token)
            .filter(|c| c.exp.is_some_and(|exp| exp + self.leeway > now))
            .cloned()
    }

    fn remember(&self, token: &str, claims: &Claims, now: i64) {
        let mut cache = self.verified.lock().unwrap_or_else(|p| p.into_inner());
        if cache.len() >= CACHE_CAPACITY {
            cache.retain(|_, c| c.exp.is_some_and(|exp| exp + self.leeway > now));
            if cache.len() >= CACHE_CAPACITY {
                cache.clear();
            }
        }
        cache.insert(token.to_string(), claims.clone());
    }

    async fn verify_uncached(&self, token: &str, now: i64) -> Result<Claims, AuthError> {
        let invalid = |why: &str| AuthError::Invalid(why.to_string());
        let header = decode_header(token).map_err(|_| invalid("token is not a well-formed JWT"))?;
        if header.alg != Algorithm::RS256 {
            return Err(invalid("token algorithm must be RS256"));
        }
        let kid = header
            .kid
            .ok_or_else(|| invalid("token header has no kid"))?;
        let key = self.jwks.key(&kid).await.map_err(|e| match e {
            KeyError::NotLoaded => AuthError::KeysUnavailable,
            KeyError::UnknownKid => invalid("token is signed with an unknown key (kid)"),
        })?;
        let claims = decode::<Claims>(token, &key, &self.validation)
            .map_err(|e| classify(e.kind()))?
            .claims;
        match claims.iat {
            None => return Err(invalid("token has no iat claim")),
            Some(iat) if iat > now + self.leeway => {
                return Err(invalid("token iat is in the future"));
            }
            Some(_) => {}
        }
        self.check_email(&claims)?;
        Ok(claims)
    }

    fn check_email(&self, claims: &Claims) -> Result<(), AuthError> {
        let email = claims
            .email
            .as_deref()
            .ok_or_else(|| AuthError::NotAllowed("token has no email claim".into()))?;
        if !self.allowed_emails.contains(email) {
            return Err(AuthError::NotAllowed(format!(
                "service account {email} is not allowed to push here"
            )));
        }
        if claims.email_verified != Some(Value::Bool(true)) {
            return Err(AuthError::NotAllowed("token email is not verified".into()));
        }
        Ok(())
    }
}

fn classify(kind: &ErrorKind) -> AuthError {
    let invalid = |why: &str| AuthError::Invalid(why.to_string());
    let not_allowed = |why: &str| AuthError::NotAllowed(why.to_string());
    match kind {
        ErrorKind::InvalidAudience => not_allowed("token audience is not this service's"),
        ErrorKind::InvalidIssuer => not_allowed("token issuer is not Google"),
        ErrorKind::MissingRequiredClaim(claim) if claim == "aud" => {
            not_allowed("token has no audience")
        }
        ErrorKind::MissingRequiredClaim(claim) if claim == "iss" => {
            not_allowed("token has no issuer")
        }
        ErrorKind::ExpiredSignature => invalid("token has expired"),
        ErrorKind::ImmatureSignature => invalid("token is not valid yet (nbf)"),
        ErrorKind::InvalidSignature => invalid("token signature does not verify"),
        ErrorKind::InvalidAlgorithm => invalid("token algorithm must be RS256"),
        ErrorKind::MissingRequiredClaim(claim) => invalid(&format!("token has no {claim} claim")),
        _ => invalid("token is not a well-formed JWT"),
    }
}
