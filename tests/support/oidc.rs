//! Real OIDC material for tests and the benchmark: RSA keys generated here, a JWKS served by a
//! local HTTP server, and tokens signed like Google's.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, RwLock};

use aws_lc_rs::encoding::{AsDer, Pkcs8V1Der};
use aws_lc_rs::rsa::{KeyPair, KeySize, PublicKeyComponents};
use aws_lc_rs::signature::KeyPair as _;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{Value, json};

pub const AUDIENCE: &str = "https://landfall-test.a.run.app/push";
pub const PUSHER: &str = "pubsub-push@shop-data.iam.gserviceaccount.com";

/// An RSA signing key with its public half as a JWK.
pub struct TestKey {
    pub kid: String,
    pub encoding: EncodingKey,
    pub jwk: Value,
    /// The public key in PEM, for the HS256-with-public-key attack.
    pub public_pem: String,
    /// The private key in PKCS#8 PEM, as a service-account key file holds it.
    pub private_pem: String,
}

impl TestKey {
    pub fn generate(kid: &str) -> Self {
        let pair = KeyPair::generate(KeySize::Rsa2048).expect("RSA key generation");
        let pkcs8: Pkcs8V1Der = pair.as_der().expect("PKCS#8 encoding");
        let private_pem = pem("PRIVATE KEY", pkcs8.as_ref());
        let encoding = EncodingKey::from_rsa_pem(private_pem.as_bytes())
            .expect("jsonwebtoken accepts the key");
        let public: PublicKeyComponents<Vec<u8>> = pair.public_key().into();
        let public_der = pair.public_key().as_der().expect("public key DER");
        Self {
            kid: kid.to_string(),
            encoding,
            jwk: json!({
                "kty": "RSA", "alg": "RS256", "use": "sig", "kid": kid,
                "n": URL_SAFE_NO_PAD.encode(&public.n),
                "e": URL_SAFE_NO_PAD.encode(&public.e),
            }),
            public_pem: pem("PUBLIC KEY", public_der.as_ref()),
            private_pem,
        }
    }

    pub fn sign(&self, claims: &Value) -> String {
        let mut header = Header::new(Algorithm::RS256);
        header.kid = Some(self.kid.clone());
        self.sign_with(header, claims)
    }

    pub fn sign_with(&self, header: Header, claims: &Value) -> String {
        jsonwebtoken::encode(&header, claims, &self.encoding).expect("signing works")
    }
}

fn pem(label: &str, der: &[u8]) -> String {
    let body = STANDARD.encode(der);
    let lines: Vec<&str> = body
        .as_bytes()
        .chunks(64)
        .map(|c| std::str::from_utf8(c).unwrap())
        .collect();
    format!(
        "-----BEGIN {label}-----\n{}\n-----END {label}-----\n",
        lines.join("\n")
    )
}

pub fn now() -> i64 {
    chrono::Utc::now().timestamp()
}

/// Claims shaped like those of a Pub/Sub push token.
pub fn google_claims() -> Value {
    json!({
        "iss": "https://accounts.google.com",
        "aud": AUDIENCE,
        "azp": "109876543210987654321",
        "sub": "109876543210987654321",
        "email": PUSHER,
        "email_verified": true,
        "iat": now(),
        "exp": now() + 3600,
    })
}

/// A JWKS endpoint the test controls: its key set, whether it answers, how often it was hit.
#[derive(Clone)]
pub struct JwksServer {
    pub url: String,
    state: Arc<JwksState>,
}

struct JwksState {
    keys: RwLock<Vec<Value>>,
    up: AtomicBool,
    hits: AtomicUsize,
    /// Bytes of padding the key set is served with (a response too large to be one).
    padding: AtomicUsize,
}

impl JwksServer {
    pub async fn start(keys: Vec<Value>, up: bool) -> Self {
        let state = Arc::new(JwksState {
            keys: RwLock::new(keys),
            up: AtomicBool::new(up),
            hits: AtomicUsize::new(0),
            padding: AtomicUsize::new(0),
        });
        let app = axum::Router::new()
            .route("/certs", axum::routing::get(serve_keys))
            .with_state(state.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/certs", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await });
        Self { url, state }
    }

    pub fn set_keys(&self, keys: Vec<Value>) {
        *self.state.keys.write().unwrap() = keys;
    }

    pub fn set_up(&self, up: bool) {
        self.state.up.store(up, Ordering::SeqCst);
    }

    /// Serves the key set with this many bytes of padding from now on.
    pub fn set_padding(&self, bytes: usize) {
        self.state.padding.store(bytes, Ordering::SeqCst);
    }

    pub fn hits(&self) -> usize {
        self.state.hits.load(Ordering::SeqCst)
    }
}

async fn serve_keys(State(state): State<Arc<JwksState>>) -> axum::response::Response {
    state.hits.fetch_add(1, Ordering::SeqCst);
    if !state.up.load(Ordering::SeqCst) {
        return (StatusCode::SERVICE_UNAVAILABLE, "down").into_response();
    }
    let keys = state.keys.read().unwrap().clone();
    (
        [(
            header::CACHE_CONTROL,
            "public, max-age=3600, must-revalidate",
        )],
        axum::Json(
            json!({ "keys": keys, "padding": "x".repeat(state.padding.load(Ordering::SeqCst)) }),
        ),
    )
        .into_response()
}
