//! Google's token-signing keys, fetched from the JWKS URL and kept fresh.
//!
//! The set is cached for the `Cache-Control: max-age` it was served with (less `Age`) and
//! refreshed in the background before it runs out. A failed refresh keeps the keys we have
//! and retries with backoff. A token naming a key we do not know may force one refetch, at
//! most once per [`FORCED_REFETCH_INTERVAL`], so nobody can make landfall hammer Google.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use anyhow::{Context, bail};
use jsonwebtoken::DecodingKey;
use jsonwebtoken::jwk::{AlgorithmParameters, JwkSet, KeyAlgorithm};
use reqwest::header::{AGE, CACHE_CONTROL, HeaderMap};
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::telemetry::said::said;

pub const FORCED_REFETCH_INTERVAL: Duration = Duration::from_secs(30);
/// Used when the response has no usable `max-age`.
const DEFAULT_TTL: Duration = Duration::from_secs(300);
const FIRST_RETRY: Duration = Duration::from_secs(1);
const MAX_RETRY: Duration = Duration::from_secs(15);
/// Google's key set is a few KiB; a response larger than this is not one.
const MAX_JWKS_BYTES: usize = 1 << 20;

/// A response's body, refused once it passes `limit` bytes (declared or read).
async fn read_limited(mut response: reqwest::Response, limit: usize) -> anyhow::Result<Vec<u8>> {
    if response.content_length().is_some_and(|l| l > limit as u64) {
        bail!("the response is larger than {limit} bytes");
    }
    let mut body = Vec::new();
    while let Some(chunk) = response.chunk().await? {
        if body.len() + chunk.len() > limit {
            bail!("the response is larger than {limit} bytes");
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyError {
    /// No key set has been fetched yet.
    NotLoaded,
    /// The set is loaded but has no key with this id.
    UnknownKid,
}

/// The keys by id, and when they were fetched.
type KeySet = (Arc<HashMap<String, DecodingKey>>, Instant);

pub struct Jwks {
    url: String,
    client: reqwest::Client,
    keys: RwLock<Option<KeySet>>,
    /// When a token last forced a refetch; the async lock also makes such refetches single-flight.
    last_forced: tokio::sync::Mutex<Option<Instant>>,
}

impl Jwks {
    pub fn new(url: String) -> anyhow::Result<Self> {
        let client = reqwest::Client::builder()
            .timeout(Duration::from_secs(5))
            .build()
            .context("failed to build the JWKS HTTP client")?;
        Ok(Self {
            url,
            client,
            keys: RwLock::new(None),
            last_forced: tokio::sync::Mutex::new(None),
        })
    }

    /// A key set that starts out holding `set` (fetched later from `url` as usual).
    pub fn with_keys(url: String, set: &JwkSet) -> anyhow::Result<Self> {
        let jwks = Self::new(url)?;
        *jwks.keys.write().unwrap_or_else(|p| p.into_inner()) =
            Some((Arc::new(rsa_keys(set)), Instant::now()));
        Ok(jwks)
    }

    pub fn is_loaded(&self) -> bool {
        self.keys
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .is_some()
    }

    /// How long ago the cached keys were fetched.
    pub fn age(&self) -> Option<Duration> {
        let keys = self.keys.read().unwrap_or_else(|p| p.into_inner());
        keys.as_ref().map(|(_, fetched)| fetched.elapsed())
    }

    /// Whether the current set holds this key (no fetch).
    pub fn holds(&self, kid: &str) -> bool {
        let keys = self.keys.read().unwrap_or_else(|p| p.into_inner());
        keys.as_ref()
            .is_some_and(|(keys, _)| keys.contains_key(kid))
    }

    fn lookup(&self, kid: &str) -> Result<DecodingKey, KeyError> {
        let keys = self.keys.read().unwrap_or_else(|p| p.into_inner());
        let (keys, _) = keys.as_ref().ok_or(KeyError::NotLoaded)?;
        keys.get(kid).cloned().ok_or(KeyError::UnknownKid)
    }

    /// The key for `kid`, refetching the set once if it is unknown and the rate limit allows.
    pub async fn key(&self, kid: &str) -> Result<DecodingKey, KeyError> {
        match self.lookup(kid) {
            Ok(key) => return Ok(key),
            Err(_) => self.forced_refetch().await,
        }
        self.lookup(kid)
    }

    async fn forced_refetch(&self) {
        let mut last = self.last_forced.lock().await;
        if last.is_some_and(|t| t.elapsed() < FORCED_REFETCH_INTERVAL) {
            return;
        }
        *last = Some(Instant::now());
        if let Err(e) = self.refresh().await {
            tracing::warn!(error = said(&e), url = %self.url, "JWKS refetch failed");
        }
    }

    /// Fetches the key set and replaces the cached one; returns how long it may be cached.
    pub async fn refresh(&self) -> anyhow::Result<Duration> {
        let response = self
            .client
            .get(&self.url)
            .send()
            .await
            .with_context(|| format!("failed to fetch {}", self.url))?;
        if !response.status().is_success() {
            bail!("{} answered {}", self.url, response.status());
        }
        let ttl = cache_ttl(response.headers());
        let body = read_limited(response, MAX_JWKS_BYTES)
            .await
            .with_context(|| format!("failed to read {}", self.url))?;
        let set: JwkSet = serde_json::from_slice(&body)
            .with_context(|| format!("{} is not a JWK set", self.url))?;
        let keys = rsa_keys(&set);
        if keys.is_empty() {
            bail!("{} holds no RS256 keys", self.url);
        }
        tracing::info!(
            keys = keys.len(),
            ttl_secs = ttl.as_secs(),
            "loaded token-signing keys"
        );
        *self.keys.write().unwrap_or_else(|p| p.into_inner()) =
            Some((Arc::new(keys), Instant::now()));
        Ok(ttl)
    }

    /// Keeps the set fresh until `stop` is cancelled.
    pub fn spawn_refresher(self: Arc<Self>, stop: CancellationToken) -> JoinHandle<()> {
        tokio::spawn(async move {
            let mut retry = FIRST_RETRY;
            loop {
                let wait = match self.refresh().await {
                    Ok(ttl) => {
                        retry = FIRST_RETRY;
                        refresh_after(ttl)
                    }
                    Err(e) if self.is_loaded() => {
                        tracing::warn!(
                            error = said(&e),
                            retry_in_secs = retry.as_secs(),
                            "JWKS refresh failed; keeping cached keys"
                        );
                        let wait = retry;
                        retry = (retry * 2).min(MAX_RETRY);
                        wait
                    }
                    Err(e) => {
                        tracing::error!(
                            error = said(&e),
                            retry_in_secs = retry.as_secs(),
                            "JWKS fetch failed and no keys were ever fetched: pushes are answered 503 until it succeeds"
                        );
                        let wait = retry;
                        retry = (retry * 2).min(MAX_RETRY);
                        wait
                    }
                };
                tokio::select! {
                    _ = stop.cancelled() => return,
                    _ = tokio::time::sleep(wait) => {}
                }
            }
        })
    }
}

/// Refresh well before expiry, so a slow or failed fetch still leaves time to retry.
fn refresh_after(ttl: Duration) -> Duration {
    (ttl * 3 / 4).max(Duration::from_secs(1))
}

fn cache_ttl(headers: &HeaderMap) -> Duration {
    let max_age = headers
        .get(CACHE_CONTROL)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| {
            v.split(',')
                .filter_map(|d| d.trim().strip_prefix("max-age="))
                .find_map(|s| s.parse::<u64>().ok())
        });
    let age = headers
        .get(AGE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok())
        .unwrap_or(0);
    max_age.map_or(DEFAULT_TTL, |m| Duration::from_secs(m.saturating_sub(age)))
}

fn rsa_keys(set: &JwkSet) -> HashMap<String, DecodingKey> {
    set.keys
        .iter()
        .filter(|jwk| matches!(jwk.algorithm, AlgorithmParameters::RSA(_)))
        .filter(|jwk| matches!(jwk.common.key_algorithm, None | Some(KeyAlgorithm::RS256)))
        .filter_map(|jwk| {
            let kid = jwk.common.key_id.clone()?;
            Some((kid, DecodingKey::from_jwk(jwk).ok()?))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use reqwest::header::HeaderValue;

    #[test]
    fn ttl_is_max_age_less_age() {
        let mut headers = HeaderMap::new();
        assert_eq!(cache_ttl(&headers), DEFAULT_TTL);
        headers.insert(
            CACHE_CONTROL,
            HeaderValue::from_static("public, max-age=19800, must-revalidate"),
        );
        assert_eq!(cache_ttl(&headers), Duration::from_secs(19800));
        headers.insert(AGE, HeaderValue::from_static("800"));
        assert_eq!(cache_ttl(&headers), Duration::from_secs(19000));
        assert_eq!(
            refresh_after(Duration::from_secs(19000)),
            Duration::from_secs(14250)
        );
        assert_eq!(refresh_after(Duration::ZERO), Duration::from_secs(1));
    }
}
