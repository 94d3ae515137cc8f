//! A stand-in for Cloud Run's front end, written for these tests (it is not Google's code).
//! Protected (the service does not allow unauthenticated calls): a request without a bearer
//! token is refused with 403, as Cloud Run's IAM check does, and one with a token is
//! forwarded with the token's signature replaced by `SIGNATURE_REMOVED_BY_GOOGLE`, as Cloud
//! Run forwards what it verified. Open (`--allow-unauthenticated`): everything is forwarded
//! as it is.

use std::sync::{Arc, Mutex};

use axum::body::Bytes;
use axum::extract::{Request, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};

#[derive(Clone)]
pub struct FrontEnd {
    pub url: String,
    state: Arc<Shared>,
}

struct Shared {
    open: bool,
    backend: Mutex<Option<String>>,
    client: reqwest::Client,
}

impl FrontEnd {
    pub async fn start(open: bool) -> Self {
        let state = Arc::new(Shared {
            open,
            backend: Mutex::new(None),
            client: reqwest::Client::new(),
        });
        let app = axum::Router::new()
            .fallback(forward)
            .with_state(state.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await });
        Self { url, state }
    }

    /// Where requests go once past the front end (`http://127.0.0.1:PORT`).
    pub fn route_to(&self, backend: &str) {
        *self.state.backend.lock().unwrap() = Some(backend.to_string());
    }
}

fn stripped(value: &str) -> Option<String> {
    let token = value.strip_prefix("Bearer ")?;
    let (signed, _) = token.rsplit_once('.')?;
    Some(format!("Bearer {signed}.SIGNATURE_REMOVED_BY_GOOGLE"))
}

async fn forward(State(state): State<Arc<Shared>>, request: Request) -> Response {
    let Some(backend) = state.backend.lock().unwrap().clone() else {
        return (StatusCode::SERVICE_UNAVAILABLE, "no revision serves yet").into_response();
    };
    let (parts, body) = request.into_parts();
    let mut headers = parts.headers.clone();
    if !state.open {
        let token = headers
            .get("authorization")
            .and_then(|v| v.to_str().ok())
            .and_then(stripped);
        match token {
            Some(token) => {
                headers.insert("authorization", token.parse().unwrap());
            }
            None => {
                return (
                    StatusCode::FORBIDDEN,
                    "Your client does not have permission",
                )
                    .into_response();
            }
        }
    }
    let body: Bytes = axum::body::to_bytes(body, usize::MAX).await.unwrap();
    let path = parts.uri.path_and_query().map_or("/", |p| p.as_str());
    headers.remove("host");
    let answer = state
        .client
        .request(parts.method, format!("{backend}{path}"))
        .headers(headers)
        .body(body)
        .send()
        .await
        .unwrap();
    let status = answer.status();
    let bytes = answer.bytes().await.unwrap();
    (status, bytes).into_response()
}
