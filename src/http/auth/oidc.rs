//! Verification of the OIDC token Pub/Sub attaches to each push.
//!
//! Accepts exactly: RS256 (pinned here, never read from the token), a key from Google's set,
//! the configured issuer and audience, an unexpired token not issued in the future, and an
//! `email` on the allow-list with `email_verified: true`. Checking the email is what stops a
//! token minted by any other Google project for the same audience string.
//!
//! Behind Cloud Run with `--no-allow-unauthenticated`, Cloud Run verifies the token's signature
//! itself and forwards it with the signature replaced by `SIGNATURE_REMOVED_BY_GOOGLE`; with
//! [`Trust::CloudRun`] landfall then checks the same claims on that token, and accepts no other.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::{Algorithm, Validation, decode, decode_header};
use serde::Deserialize;
use serde_json::Value;

use super::jwks::{Jwks, KeyError};

/// Cached verifications; Pub/Sub reuses one token for about an hour, so this stays small.
const CACHE_CAPACITY: usize = 4096;
/// What Cloud Run puts where the signature was, once it has verified it.
pub const SIGNATURE_REMOVED: &str = "SIGNATURE_REMOVED_BY_GOOGLE";

/// Who has checked the token's signature.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Trust {
    /// landfall verifies it against Google's published keys.
    Signature,
    /// Cloud Run's IAM check has (the service does not allow unauthenticated calls).
    CloudRun,
}

/// OIDC verification settings, complete by construction.
#[derive(Debug, Clone)]
pub struct OidcConfig {
    pub audience: String,
    pub allowed_emails: Vec<String>,
    pub jwks_url: String,
    pub issuers: Vec<String>,
    pub leeway: Duration,
    pub trust: Trust,
    /// With [`Trust::CloudRun`]: where an unauthenticated probe goes to prove that Cloud Run
    /// turns such calls away (the service's own URL).
    pub probe_url: Option<String>,
}

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
    pub nbf: Option<i64>,
    /// Required; optional here only so its absence is reported as such.
    pub exp: Option<i64>,
    pub aud: Option<Value>,
    pub iss: Option<String>,
}

pub struct OidcVerifier {
    /// `None` when Cloud Run verifies signatures: no keys are needed.
    jwks: Option<Arc<Jwks>>,
    validation: Validation,
    audience: String,
    allowed_emails: HashSet<String>,
    leeway: i64,
    /// Tokens already verified, with the key that signed them: a hit still needs that key to
    /// be in the current set, so a key Google withdraws stops its tokens at once.
    verified: Mutex<HashMap<String, (Claims, Option<String>)>>,
}

impl OidcVerifier {
    pub fn new(config: &OidcConfig, jwks: Option<Arc<Jwks>>) -> Self {
        let mut validation = Validation::new(Algorithm::RS256);
        validation.leeway = config.leeway.as_secs();
        validation.validate_nbf = true;
        validation.set_audience(&[&config.audience]);
        validation.set_issuer(&config.issuers);
        validation.set_required_spec_claims(&["exp", "aud", "iss"]);
        Self {
            jwks,
            validation,
            audience: config.audience.clone(),
            allowed_emails: config.allowed_emails.iter().cloned().collect(),
            leeway: config.leeway.as_secs() as i64,
            verified: Mutex::new(HashMap::new()),
        }
    }

    /// Whether requests can be verified now (keys loaded, or none needed).
    pub fn keys_loaded(&self) -> bool {
        self.jwks.as_ref().is_none_or(|j| j.is_loaded())
    }

    pub fn keys_age(&self) -> Option<Duration> {
        self.jwks.as_ref().and_then(|j| j.age())
    }

    pub async fn verify(&self, token: &str) -> Result<Claims, AuthError> {
        let now = chrono::Utc::now().timestamp();
        if let Some(claims) = self.cached(token, now) {
            return Ok(claims);
        }
        let claims = match &self.jwks {
            Some(jwks) => self.verify_signed(jwks, token).await?,
            None => self.verify_stripped(token, now)?,
        };
        check_iat(&claims, now, self.leeway)?;
        self.check_email(&claims)?;
        self.remember(token, &claims, now);
        Ok(claims)
    }

    fn cached(&self, token: &str, now: i64) -> Option<Claims> {
        let cache = self.verified.lock().unwrap_or_else(|p| p.into_inner());
        let (claims, kid) = cache.get(token)?;
        let fresh = claims.exp.is_some_and(|exp| exp + self.leeway > now);
        let key_current = match (&self.jwks, kid) {
            (Some(jwks), Some(kid)) => jwks.holds(kid),
            _ => true,
        };
        (fresh && key_current).then(|| claims.clone())
    }

    fn remember(&self, token: &str, claims: &Claims, now: i64) {
        let mut cache = self.verified.lock().unwrap_or_else(|p| p.into_inner());
        if cache.len() >= CACHE_CAPACITY {
            cache.retain(|_, (c, _)| c.exp.is_some_and(|exp| exp + self.leeway > now));
            if cache.len() >= CACHE_CAPACITY {
                cache.clear();
            }
        }
        let kid = decode_header(token).ok().and_then(|h| h.kid);
        cache.insert(token.to_string(), (claims.clone(), kid));
    }

    async fn verify_signed(&self, jwks: &Jwks, token: &str) -> Result<Claims, AuthError> {
        if token.ends_with(SIGNATURE_REMOVED) {
            return Err(invalid(
                "token signature was removed by Cloud Run (the service requires authentication): run landfall with --auth cloud-run",
            ));
        }
        let header = decode_header(token).map_err(|_| invalid("token is not a well-formed JWT"))?;
        if header.alg != Algorithm::RS256 {
            return Err(invalid("token algorithm must be RS256"));
        }
        let kid = header
            .kid
            .ok_or_else(|| invalid("token header has no kid"))?;
        let key = jwks.key(&kid).await.map_err(|e| match e {
            KeyError::NotLoaded => AuthError::KeysUnavailable,
            KeyError::UnknownKid => invalid("token is signed with an unknown key (kid)"),
        })?;
        decode::<Claims>(token, &key, &self.validation)
            .map(|data| data.claims)
            .map_err(|e| match e.kind() {
                // jsonwebtoken reads times as unsigned: an exp before 1970 looks missing to it.
                ErrorKind::MissingRequiredClaim(claim) if claim == "exp" => {
                    match unverified_claims(token).and_then(|c| c.exp) {
                        Some(_) => classify(&ErrorKind::ExpiredSignature),
                        None => classify(e.kind()),
                    }
                }
                kind => classify(kind),
            })
    }

    /// A token whose signature Cloud Run has verified and removed: its claims get the checks
    /// jsonwebtoken gives a signed one, from the same [`Validation`].
    fn verify_stripped(&self, token: &str, now: i64) -> Result<Claims, AuthError> {
        if !token.ends_with(&format!(".{SIGNATURE_REMOVED}")) {
            return Err(invalid(
                "token was not verified by Cloud Run: with --auth cloud-run the service must not allow unauthenticated calls",
            ));
        }
        let header = decode_header(token).map_err(|_| invalid("token is not a well-formed JWT"))?;
        if header.alg != Algorithm::RS256 {
            return Err(invalid("token algorithm must be RS256"));
        }
        let claims: Claims = jsonwebtoken::dangerous::insecure_decode(token)
            .map(|data| data.claims)
            .map_err(|_| invalid("token is not a well-formed JWT"))?;
        self.check_registered_claims(&claims, now)?;
        Ok(claims)
    }

    fn check_registered_claims(&self, claims: &Claims, now: i64) -> Result<(), AuthError> {
        let leeway = self.leeway;
        let exp = claims
            .exp
            .ok_or_else(|| invalid("token has no exp claim"))?;
        if exp + leeway < now {
            return Err(classify(&ErrorKind::ExpiredSignature));
        }
        if claims.nbf.is_some_and(|nbf| nbf > now + leeway) {
            return Err(classify(&ErrorKind::ImmatureSignature));
        }
        let audience_ok = match &claims.aud {
            Some(Value::String(aud)) => *aud == self.audience,
            Some(Value::Array(auds)) => auds.iter().any(|a| a == self.audience.as_str()),
            _ => return Err(classify(&ErrorKind::MissingRequiredClaim("aud".into()))),
        };
        if !audience_ok {
            return Err(classify(&ErrorKind::InvalidAudience));
        }
        let issuer_ok = match (&claims.iss, &self.validation.iss) {
            (None, _) => return Err(classify(&ErrorKind::MissingRequiredClaim("iss".into()))),
            (Some(iss), Some(allowed)) => allowed.contains(iss),
            (Some(_), None) => true,
        };
        if !issuer_ok {
            return Err(classify(&ErrorKind::InvalidIssuer));
        }
        Ok(())
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

fn invalid(why: &str) -> AuthError {
    AuthError::Invalid(why.to_string())
}

fn check_iat(claims: &Claims, now: i64, leeway: i64) -> Result<(), AuthError> {
    match claims.iat {
        None => Err(invalid("token has no iat claim")),
        Some(iat) if iat > now + leeway => Err(invalid("token iat is in the future")),
        Some(_) => Ok(()),
    }
}

/// A token's claims, read without checking its signature: only to say what is wrong with one
/// that was refused.
fn unverified_claims(token: &str) -> Option<Claims> {
    jsonwebtoken::dangerous::insecure_decode::<Claims>(token)
        .ok()
        .map(|data| data.claims)
}

fn classify(kind: &ErrorKind) -> AuthError {
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
