//! Arbitrary bearer strings through the OIDC verifier against a fixed key set (the public key
//! of `tests/fixtures/tokens/`): never a panic, and never accepted, since nothing but the
//! key's owner can sign. Behind Cloud Run (signature removed) only the claims are checked.

#![no_main]

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use libfuzzer_sys::fuzz_target;

use landfall::http::auth::jwks::Jwks;
use landfall::http::auth::oidc::{OidcConfig, OidcVerifier, Trust};

const KEYS: &str = include_str!("../../fixtures/tokens/jwks.json");

fn config(trust: Trust) -> OidcConfig {
    OidcConfig {
        audience: "https://landfall-test.a.run.app/push".into(),
        allowed_emails: vec!["pubsub-push@shop-data.iam.gserviceaccount.com".into()],
        jwks_url: "http://127.0.0.1:9/certs".into(),
        issuers: vec!["https://accounts.google.com".into(), "accounts.google.com".into()],
        leeway: Duration::from_secs(60),
        trust,
        probe_url: None,
    }
}

struct Verifiers {
    runtime: tokio::runtime::Runtime,
    signed: OidcVerifier,
    cloud_run: OidcVerifier,
}

fn verifiers() -> &'static Verifiers {
    static VERIFIERS: OnceLock<Verifiers> = OnceLock::new();
    VERIFIERS.get_or_init(|| {
        landfall::process::install_crypto_provider();
        let set = serde_json::from_str(KEYS).unwrap();
        let jwks = Arc::new(Jwks::with_keys("http://127.0.0.1:9/certs".into(), &set).unwrap());
        Verifiers {
            runtime: tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap(),
            signed: OidcVerifier::new(&config(Trust::Signature), Some(jwks)),
            cloud_run: OidcVerifier::new(&config(Trust::CloudRun), None),
        }
    })
}

fuzz_target!(|token: &str| {
    let verifiers = verifiers();
    verifiers.runtime.block_on(async {
        let verdict = verifiers.signed.verify(token).await;
        assert!(verdict.is_err(), "a token nobody signed was accepted: {token}");
        let _ = verifiers.cloud_run.verify(token).await;
    });
});
