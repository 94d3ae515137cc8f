//! A fault-injecting proxy written for these tests (a stand-in, not Google's code): it sits in
//! front of local-bigquery (or fake-gcs-server, to fail the read of one object), passes every
//! call through, counts landfall's calls by kind, keeps
//! the bodies of its insertAll calls and lookup queries, and answers chosen kinds of call with
//! an error status instead, for as long as the test says (a 503 storm, a failing
//! `jobs.query`). It can also take the `insertId`s out of insertAll calls, so that BigQuery
//! cannot deduplicate: what is then kept once is kept once by landfall alone.

use std::sync::{Arc, Mutex};

use axum::body::Bytes;
use axum::extract::{Request, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::Value;

/// Which calls a fault hits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Call {
    InsertAll,
    Query,
    /// `tables.get`: how landfall compares a table with the catalog.
    TableGet,
    /// Cloud Storage: a read of the landing layer's layout record.
    LayoutRead,
}

#[derive(Default)]
struct Shared {
    backend: String,
    failing: Vec<(Call, u16)>,
    delays: Vec<(Call, std::time::Duration)>,
    inserts: Vec<Value>,
    queries: Vec<Value>,
    failed: usize,
    strip_insert_ids: bool,
    /// Every call of a known kind that reached the proxy.
    seen: Vec<Call>,
}

#[derive(Clone)]
pub struct FaultProxy {
    pub url: String,
    state: Arc<Mutex<Shared>>,
    client: reqwest::Client,
}

impl FaultProxy {
    /// A proxy to `backend` (local-bigquery's URL). It runs on a thread and runtime of its
    /// own: a test that blocks its thread (waiting for a landfall process to report that it
    /// serves, while that process calls BigQuery through this proxy at start) must not stop it.
    pub async fn start(backend: &str) -> Self {
        let state = Arc::new(Mutex::new(Shared {
            backend: backend.to_string(),
            ..Shared::default()
        }));
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let proxy = Self {
            url,
            state,
            client: reqwest::Client::new(),
        };
        let app = axum::Router::new()
            .fallback(forward)
            .with_state(proxy.clone());
        std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            runtime.block_on(async move {
                let listener = tokio::net::TcpListener::from_std(listener).unwrap();
                axum::serve(listener, app).await
            })
        });
        proxy
    }

    /// From now on, answer every call of this kind with `status`.
    pub fn fail(&self, call: Call, status: u16) {
        self.state.lock().unwrap().failing.push((call, status));
    }

    /// From now on, hold every call of this kind this long before passing it on.
    pub fn delay(&self, call: Call, by: std::time::Duration) {
        self.state.lock().unwrap().delays.push((call, by));
    }

    /// Pass everything through again, at once.
    pub fn heal(&self) {
        let mut state = self.state.lock().unwrap();
        state.failing.clear();
        state.delays.clear();
    }

    /// insertAll calls that reached local-bigquery.
    pub fn inserts(&self) -> usize {
        self.state.lock().unwrap().inserts.len()
    }

    /// The bodies of the insertAll calls that reached local-bigquery, as landfall sent them.
    pub fn insert_bodies(&self) -> Vec<Value> {
        self.state.lock().unwrap().inserts.clone()
    }

    /// Whether insertAll calls reach BigQuery without their `insertId`s from now on.
    pub fn strip_insert_ids(&self, strip: bool) {
        self.state.lock().unwrap().strip_insert_ids = strip;
    }

    /// The bodies of the `jobs.query` calls that reached local-bigquery.
    pub fn queries(&self) -> Vec<Value> {
        self.state.lock().unwrap().queries.clone()
    }

    /// Calls answered with an injected error.
    pub fn failed(&self) -> usize {
        self.state.lock().unwrap().failed
    }

    /// Calls of this kind that reached the proxy, whatever became of them.
    pub fn seen(&self, call: Call) -> usize {
        let state = self.state.lock().unwrap();
        state.seen.iter().filter(|c| **c == call).count()
    }
}

fn kind(method: &axum::http::Method, path: &str) -> Option<Call> {
    if path.ends_with("/insertAll") {
        Some(Call::InsertAll)
    } else if path.ends_with("/queries") {
        Some(Call::Query)
    } else if method == axum::http::Method::GET
        && path.trim_end_matches('/').rsplit('/').nth(1) == Some("tables")
    {
        Some(Call::TableGet)
    } else if method == axum::http::Method::GET && path.ends_with("layout.json") {
        Some(Call::LayoutRead)
    } else {
        None
    }
}

async fn forward(State(proxy): State<FaultProxy>, request: Request) -> Response {
    let (parts, body) = request.into_parts();
    let mut body: Bytes = axum::body::to_bytes(body, usize::MAX).await.unwrap();
    let path = parts.uri.path().to_string();
    let call = kind(&parts.method, &path);
    let (backend, delay) = {
        let mut state = proxy.state.lock().unwrap();
        state.seen.extend(call);
        if let Some((_, status)) = state
            .failing
            .iter()
            .find(|(c, _)| Some(*c) == call)
            .copied()
        {
            state.failed += 1;
            let body = format!(
                r#"{{"error":{{"code":{status},"message":"injected by the test's fault proxy","errors":[],"status":"UNAVAILABLE"}}}}"#
            );
            return (
                StatusCode::from_u16(status).unwrap(),
                [("content-type", "application/json")],
                body,
            )
                .into_response();
        }
        match call {
            Some(Call::InsertAll) => {
                let sent: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
                state.inserts.push(sent.clone());
                if state.strip_insert_ids {
                    let mut stripped = sent;
                    for row in stripped["rows"].as_array_mut().into_iter().flatten() {
                        row.as_object_mut().map(|r| r.remove("insertId"));
                    }
                    body = Bytes::from(serde_json::to_vec(&stripped).unwrap());
                }
            }
            Some(Call::Query) => state
                .queries
                .push(serde_json::from_slice(&body).unwrap_or(Value::Null)),
            Some(Call::TableGet | Call::LayoutRead) | None => {}
        }
        let delay = state
            .delays
            .iter()
            .find(|(c, _)| Some(*c) == call)
            .map(|(_, d)| *d);
        (state.backend.clone(), delay)
    };
    if let Some(delay) = delay {
        tokio::time::sleep(delay).await;
    }
    let target = format!(
        "{backend}{}",
        parts.uri.path_and_query().map_or("/", |p| p.as_str())
    );
    let mut headers = parts.headers.clone();
    headers.remove("host");
    headers.remove("content-length");
    let answer = proxy
        .client
        .request(parts.method, target)
        .headers(headers)
        .body(body)
        .send()
        .await
        .unwrap();
    let status = answer.status();
    // The backend's headers pass on (Cloud Storage's generation and hashes with them), but
    // those that describe this hop's framing.
    let mut headers = answer.headers().clone();
    for hop in [
        "content-length",
        "transfer-encoding",
        "connection",
        "content-encoding",
    ] {
        headers.remove(hop);
    }
    let bytes = answer.bytes().await.unwrap();
    let mut response = (status, bytes).into_response();
    response.headers_mut().extend(headers);
    response
}
