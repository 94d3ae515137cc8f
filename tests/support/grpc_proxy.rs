//! A fault-injecting proxy for the Storage Write API's gRPC, written for these tests (a
//! stand-in, not Google's code): it sits in front of local-bigquery's gRPC port, passes every
//! call through, counts `AppendRows` calls, requests and rows, and on demand breaks them the
//! ways a network and BigQuery do, which the emulator cannot:
//!
//! - [`GrpcProxy::cut_answers`]: the request reaches BigQuery and is appended, and the answer is
//!   lost (the call is reset instead);
//! - [`GrpcProxy::drop_requests`]: the request is lost on the way and the call reset (nothing
//!   appended; the sender cannot tell);
//! - [`GrpcProxy::refuse_schema`]: BigQuery answers as it does for a while after a column was
//!   added, on a call opened before: the rows have a field the table (as the call knows it)
//!   lacks. That call stays stale; a new call sees the table as it is.
//!
//! gRPC messages are framed (a flag byte, a 4-byte length); the proxy reads the frames of
//! `AppendRows`, and passes every other call through untouched.

use std::collections::VecDeque;
use std::convert::Infallible;
use std::sync::{Arc, Mutex};

use bytes::{Buf, Bytes, BytesMut};
use gcp_bigquery_client::google::cloud::bigquery::storage::v1::append_rows_request::Rows;
use gcp_bigquery_client::google::cloud::bigquery::storage::v1::append_rows_response::Response as Answer;
use gcp_bigquery_client::google::cloud::bigquery::storage::v1::{
    AppendRowsRequest, AppendRowsResponse,
};
use gcp_bigquery_client::google::rpc::Status;
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, StreamBody};
use hyper::body::{Frame, Incoming};
use hyper::{Request, Response};
use hyper_util::rt::{TokioExecutor, TokioIo};
use prost::Message;
use tokio::sync::mpsc;

type Error = Box<dyn std::error::Error + Send + Sync>;
type Body = BoxBody<Bytes, Error>;

const APPEND_ROWS: &str = "/google.cloud.bigquery.storage.v1.BigQueryWrite/AppendRows";

#[derive(Default)]
struct Faults {
    cut_answers: usize,
    drop_requests: usize,
    refuse_schema: usize,
    /// Every request answered with this gRPC status code, until healed.
    failing: Option<i32>,
    /// Every request held this long before it is passed on, until healed.
    delay: Option<std::time::Duration>,
}

#[derive(Default)]
struct Counts {
    calls: usize,
    requests: usize,
    /// Rows of the requests passed on to BigQuery.
    rows: usize,
    cut: usize,
    dropped: usize,
    refused: usize,
    failed: usize,
}

#[derive(Default)]
struct Shared {
    faults: Faults,
    counts: Counts,
}

#[derive(Clone)]
pub struct GrpcProxy {
    pub url: String,
    backend: std::net::SocketAddr,
    shared: Arc<Mutex<Shared>>,
}

impl GrpcProxy {
    /// A proxy to `backend` (`http://host:port`), on a thread and runtime of its own.
    pub fn start(backend: &str) -> Self {
        let backend = backend
            .trim_start_matches("http://")
            .parse()
            .expect("the backend is http://ip:port");
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let proxy = GrpcProxy {
            url: format!("http://{}", listener.local_addr().unwrap()),
            backend,
            shared: Arc::default(),
        };
        let serving = proxy.clone();
        std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()
                .unwrap();
            runtime.block_on(serving.serve(listener));
        });
        proxy
    }

    /// The next `n` requests reach BigQuery; their answers are lost.
    pub fn cut_answers(&self, n: usize) {
        self.lock().faults.cut_answers += n;
    }

    /// The next `n` requests are lost on the way, and their calls reset.
    pub fn drop_requests(&self, n: usize) {
        self.lock().faults.drop_requests += n;
    }

    /// The next `n` requests are refused for a field the table lacks, and their calls stay
    /// stale: every later request on them is refused the same way.
    pub fn refuse_schema(&self, n: usize) {
        self.lock().faults.refuse_schema += n;
    }

    /// From now on, every request is answered with this gRPC status code (14 UNAVAILABLE, 13
    /// INTERNAL, 8 RESOURCE_EXHAUSTED…) without reaching BigQuery.
    pub fn fail(&self, code: i32) {
        self.lock().faults.failing = Some(code);
    }

    /// From now on, every request is held this long before it is passed on.
    pub fn delay(&self, by: std::time::Duration) {
        self.lock().faults.delay = Some(by);
    }

    /// Pass everything through again, at once.
    pub fn heal(&self) {
        let faults = &mut self.lock().faults;
        faults.failing = None;
        faults.delay = None;
    }

    /// `AppendRows` calls opened.
    pub fn calls(&self) -> usize {
        self.lock().counts.calls
    }

    /// Rows passed on to BigQuery (appended, unless BigQuery refused them).
    pub fn rows(&self) -> usize {
        self.lock().counts.rows
    }

    /// Requests seen, whatever became of them.
    pub fn requests(&self) -> usize {
        self.lock().counts.requests
    }

    /// Requests answered with an injected error status.
    pub fn failed(&self) -> usize {
        self.lock().counts.failed
    }

    /// (answers cut, requests dropped, requests refused for the schema).
    pub fn faults_done(&self) -> (usize, usize, usize) {
        let counts = &self.lock().counts;
        (counts.cut, counts.dropped, counts.refused)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Shared> {
        self.shared.lock().unwrap()
    }

    async fn serve(self, listener: std::net::TcpListener) {
        let listener = tokio::net::TcpListener::from_std(listener).unwrap();
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                continue;
            };
            let proxy = self.clone();
            tokio::spawn(async move {
                let service = hyper::service::service_fn(move |request| {
                    let proxy = proxy.clone();
                    async move { Ok::<_, Infallible>(proxy.handle(request).await) }
                });
                let _ = hyper::server::conn::http2::Builder::new(TokioExecutor::new())
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    }

    async fn handle(&self, request: Request<Incoming>) -> Response<Body> {
        let upstream = match self.connect().await {
            Ok(upstream) => upstream,
            Err(e) => return grpc_error(14, &format!("the proxy cannot reach BigQuery: {e}")),
        };
        if request.uri().path() != APPEND_ROWS {
            return pass_through(upstream, request).await;
        }
        self.lock().counts.calls += 1;
        self.append_rows(upstream, request)
    }

    async fn connect(&self) -> Result<hyper::client::conn::http2::SendRequest<Body>, Error> {
        let stream = tokio::net::TcpStream::connect(self.backend).await?;
        let (sender, connection) =
            hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(stream))
                .await?;
        tokio::spawn(connection);
        Ok(sender)
    }

    /// One `AppendRows` call: requests read and judged as they come, answers sent in the
    /// requests' order, from BigQuery or made here.
    fn append_rows(
        &self,
        mut upstream: hyper::client::conn::http2::SendRequest<Body>,
        request: Request<Incoming>,
    ) -> Response<Body> {
        let (parts, incoming) = request.into_parts();
        let (to_backend, backend_body) = mpsc::channel::<Result<Frame<Bytes>, Error>>(16);
        let mut forwarded = Request::from_parts(parts, frames(backend_body));
        forwarded.headers_mut().remove("content-length");
        let answers_from_backend =
            tokio::spawn(async move { upstream.send_request(forwarded).await });
        let (expect, expected) = mpsc::unbounded_channel();
        tokio::spawn(self.clone().pump(incoming, to_backend, expect));
        let (to_client, client_body) = mpsc::channel::<Result<Frame<Bytes>, Error>>(16);
        tokio::spawn(respond(answers_from_backend, expected, to_client));
        Response::builder()
            .header("content-type", "application/grpc")
            .body(frames(client_body))
            .unwrap()
    }

    /// Reads the client's requests and decides, for each, what becomes of it.
    async fn pump(
        self,
        mut incoming: Incoming,
        to_backend: mpsc::Sender<Result<Frame<Bytes>, Error>>,
        expect: mpsc::UnboundedSender<Expect>,
    ) {
        let mut buffer = BytesMut::new();
        let mut stale = false;
        while let Some(Ok(frame)) = incoming.frame().await {
            let Ok(data) = frame.into_data() else {
                continue;
            };
            buffer.extend_from_slice(&data);
            while let Some(message) = next_message(&mut buffer) {
                let delay = self.lock().faults.delay;
                if let Some(delay) = delay {
                    tokio::time::sleep(delay).await;
                }
                let decision = self.judge(&message, &mut stale);
                if matches!(decision, Expect::Upstream | Expect::CutAfterUpstream) {
                    let _ = to_backend.send(Ok(Frame::data(framed(&message)))).await;
                }
                let reset = matches!(decision, Expect::Reset);
                let _ = expect.send(decision);
                if reset {
                    return;
                }
            }
        }
        // The client has said all: so does the proxy to BigQuery.
        drop(to_backend);
    }

    fn judge(&self, message: &[u8], stale: &mut bool) -> Expect {
        let rows = AppendRowsRequest::decode(message).map_or(0, |request| match request.rows {
            Some(Rows::ProtoRows(data)) => data.rows.map_or(0, |r| r.serialized_rows.len()),
            None => 0,
        });
        let mut shared = self.lock();
        let Shared { faults, counts } = &mut *shared;
        counts.requests += 1;
        if let Some(code) = faults.failing {
            counts.failed += 1;
            return Expect::Made(refusal(code, "injected by the test's gRPC fault proxy"));
        }
        if faults.drop_requests > 0 {
            faults.drop_requests -= 1;
            counts.dropped += 1;
            return Expect::Reset;
        }
        if *stale || faults.refuse_schema > 0 {
            if !*stale {
                faults.refuse_schema -= 1;
                *stale = true;
            }
            counts.refused += 1;
            return Expect::Made(refusal(
                3,
                "Input schema has more fields than BigQuery schema, extra fields: 'coupon' \
                 (made by the test's gRPC fault proxy)",
            ));
        }
        counts.rows += rows;
        if faults.cut_answers > 0 {
            faults.cut_answers -= 1;
            counts.cut += 1;
            return Expect::CutAfterUpstream;
        }
        Expect::Upstream
    }
}

/// What the answer to a request is.
enum Expect {
    /// BigQuery's.
    Upstream,
    /// BigQuery's is awaited (the rows are appended), then the call is reset instead.
    CutAfterUpstream,
    /// One made here; the request never reached BigQuery.
    Made(Bytes),
    /// None: the call is reset.
    Reset,
}

/// Sends the client its answers in the order of its requests, then BigQuery's trailers.
async fn respond(
    backend: tokio::task::JoinHandle<hyper::Result<Response<Incoming>>>,
    mut expected: mpsc::UnboundedReceiver<Expect>,
    to_client: mpsc::Sender<Result<Frame<Bytes>, Error>>,
) {
    let mut backend = Some(backend);
    let mut answers: Option<Answers> = None;
    while let Some(expect) = expected.recv().await {
        let answer = match expect {
            Expect::Made(message) => message,
            Expect::Reset => return reset(&to_client).await,
            Expect::Upstream | Expect::CutAfterUpstream => {
                if answers.is_none() {
                    answers = Answers::of(backend.take()).await;
                }
                let Some(answers) = answers.as_mut() else {
                    return reset(&to_client).await;
                };
                let Some(message) = answers.next().await else {
                    return reset(&to_client).await;
                };
                if matches!(expect, Expect::CutAfterUpstream) {
                    return reset(&to_client).await;
                }
                message
            }
        };
        if to_client
            .send(Ok(Frame::data(framed(&answer))))
            .await
            .is_err()
        {
            return;
        }
    }
    // The client's requests ended: BigQuery's trailers (its status) end the call.
    if answers.is_none() {
        answers = Answers::of(backend.take()).await;
    }
    let trailers = match answers {
        Some(answers) => answers.trailers().await,
        None => None,
    };
    let trailers = trailers.unwrap_or_else(|| {
        let mut map = http::HeaderMap::new();
        map.insert("grpc-status", "0".parse().unwrap());
        map
    });
    let _ = to_client.send(Ok(Frame::trailers(trailers))).await;
}

/// Ends the call with a stream reset: the client gets no answer and no status from BigQuery.
async fn reset(to_client: &mpsc::Sender<Result<Frame<Bytes>, Error>>) {
    let _ = to_client
        .send(Err("reset by the test's gRPC fault proxy".into()))
        .await;
}

/// BigQuery's answer messages on a call, read frame by frame.
struct Answers {
    body: Incoming,
    buffer: BytesMut,
    pending: VecDeque<Bytes>,
    trailers: Option<http::HeaderMap>,
}

impl Answers {
    async fn of(
        backend: Option<tokio::task::JoinHandle<hyper::Result<Response<Incoming>>>>,
    ) -> Option<Self> {
        let response = backend?.await.ok()?.ok()?;
        Some(Self {
            body: response.into_body(),
            buffer: BytesMut::new(),
            pending: VecDeque::new(),
            trailers: None,
        })
    }

    async fn next(&mut self) -> Option<Bytes> {
        loop {
            if let Some(message) = self.pending.pop_front() {
                return Some(message);
            }
            match self.body.frame().await? {
                Ok(frame) => match frame.into_data() {
                    Ok(data) => {
                        self.buffer.extend_from_slice(&data);
                        while let Some(message) = next_message(&mut self.buffer) {
                            self.pending.push_back(message);
                        }
                    }
                    Err(frame) => {
                        self.trailers = frame.into_trailers().ok();
                        return None;
                    }
                },
                Err(_) => return None,
            }
        }
    }

    async fn trailers(mut self) -> Option<http::HeaderMap> {
        while self.trailers.is_none() {
            if self.body.frame().await.is_none() {
                break;
            }
            // Answers after the client's last request are not expected; they are dropped.
        }
        self.trailers
    }
}

/// An answer saying that nothing of the request was appended, and why.
fn refusal(code: i32, message: &str) -> Bytes {
    let answer = AppendRowsResponse {
        response: Some(Answer::Error(Status {
            code,
            message: message.into(),
            details: vec![],
        })),
        ..Default::default()
    };
    Bytes::from(answer.encode_to_vec())
}

/// A whole gRPC message from the front of `buffer`, if one is there.
fn next_message(buffer: &mut BytesMut) -> Option<Bytes> {
    if buffer.len() < 5 {
        return None;
    }
    let length = u32::from_be_bytes([buffer[1], buffer[2], buffer[3], buffer[4]]) as usize;
    if buffer.len() < 5 + length {
        return None;
    }
    buffer.advance(5);
    Some(buffer.split_to(length).freeze())
}

/// A message in gRPC's framing, uncompressed.
fn framed(message: &[u8]) -> Bytes {
    let mut frame = BytesMut::with_capacity(5 + message.len());
    frame.extend_from_slice(&[0]);
    frame.extend_from_slice(&(message.len() as u32).to_be_bytes());
    frame.extend_from_slice(message);
    frame.freeze()
}

fn frames(receiver: mpsc::Receiver<Result<Frame<Bytes>, Error>>) -> Body {
    BodyExt::boxed(StreamBody::new(
        tokio_stream::wrappers::ReceiverStream::new(receiver),
    ))
}

async fn pass_through(
    mut upstream: hyper::client::conn::http2::SendRequest<Body>,
    request: Request<Incoming>,
) -> Response<Body> {
    let request = request.map(|body| body.map_err(Error::from).boxed());
    match upstream.send_request(request).await {
        Ok(response) => response.map(|body| body.map_err(Error::from).boxed()),
        Err(e) => grpc_error(14, &format!("the proxy lost BigQuery: {e}")),
    }
}

/// A trailers-only gRPC answer with this status.
fn grpc_error(code: u32, message: &str) -> Response<Body> {
    Response::builder()
        .header("content-type", "application/grpc")
        .header("grpc-status", code.to_string())
        .header("grpc-message", message.replace(['\n', '\r'], " "))
        .body(
            http_body_util::Empty::new()
                .map_err(|never| match never {})
                .boxed(),
        )
        .unwrap()
}
