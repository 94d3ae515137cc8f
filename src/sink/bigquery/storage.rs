//! BigQuery's Storage Write API: rows appended to each table's default stream over gRPC, as
//! protobuf messages of the table's [`RowType`].
//!
//! One HTTP/2 connection per process carries one long-lived `AppendRows` call per table; the
//! batches of a table follow each other on its call, and BigQuery answers them in order. A
//! call that breaks (a reset, a lost answer, no answer in time) is dropped and opened again
//! for the next batch; what it had in flight has an unknown outcome, which [`super`] settles
//! by looking the rows up before appending any again: the default stream does not
//! deduplicate.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::Context;
use gcp_bigquery_client::google::cloud::bigquery::storage::v1::append_rows_request::{
    ProtoData, Rows,
};
use gcp_bigquery_client::google::cloud::bigquery::storage::v1::append_rows_response::Response;
use gcp_bigquery_client::google::cloud::bigquery::storage::v1::big_query_write_client::BigQueryWriteClient;
use gcp_bigquery_client::google::cloud::bigquery::storage::v1::{
    AppendRowsRequest, AppendRowsResponse, ProtoRows, ProtoSchema,
};
use google_cloud_auth::credentials::{CacheableResource, Credentials};
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;
use tonic::Code;
use tonic::metadata::{MetadataMap, MetadataValue};
use tonic::transport::{Channel, ClientTlsConfig, Endpoint};

use crate::schema::proto::RowType;
use crate::schema::{Catalog, Table};

const GOOGLE_ENDPOINT: &str = "https://bigquerystorage.googleapis.com";
/// A request may hold 10 MB; the rows get this much of it, the rest is the request around them.
pub const MAX_REQUEST_ROWS_BYTES: usize = 9 * 1024 * 1024;
/// Answers are small; a request's rows are bounded by [`MAX_REQUEST_ROWS_BYTES`].
const MAX_MESSAGE_BYTES: usize = 16 * 1024 * 1024;
/// Batches queued for a call before a sender waits: a table has at most a few in flight.
const QUEUED_REQUESTS: usize = 8;

/// Where the Storage Write API is and who calls it.
#[derive(Debug, Clone)]
pub struct StorageTarget {
    pub project: String,
    pub dataset: String,
    /// An emulator's gRPC address (`http://host:port`); Google's endpoint with Application
    /// Default Credentials when unset.
    pub emulator: Option<String>,
}

/// What BigQuery did with one request's rows.
#[derive(Debug, PartialEq)]
pub enum Appended {
    /// Every row is in the table.
    All,
    /// None is: these rows were refused (their index in the request, BigQuery's words), the
    /// others may be sent again without them.
    RowErrors(Vec<(usize, String)>),
}

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum AppendError {
    /// BigQuery answered that nothing of the request was appended.
    #[error("{message}")]
    NotAppended {
        /// The table's schema and the rows' disagree: a column the table lacks, say.
        schema: bool,
        /// Sending again may succeed (unavailable, overloaded, aborted).
        retryable: bool,
        message: String,
    },
    /// No answer: the rows may or may not be in the table.
    #[error("{0}")]
    Unknown(String),
}

/// The Storage Write API client of one dataset.
pub struct StorageWriter {
    client: BigQueryWriteClient<Channel>,
    credentials: Option<Credentials>,
    tables: HashMap<String, TableStream>,
}

impl StorageWriter {
    /// Prepares a stream per catalog table; nothing connects until the first append.
    pub fn new(target: &StorageTarget, catalog: &Catalog) -> anyhow::Result<Self> {
        let (endpoint, credentials) = match &target.emulator {
            Some(url) => (Endpoint::from_shared(url.clone())?, None),
            None => {
                let credentials = google_cloud_auth::credentials::Builder::default()
                    .build()
                    .context("failed to find Application Default Credentials for BigQuery")?;
                let tls = ClientTlsConfig::new().with_native_roots();
                (
                    Endpoint::from_static(GOOGLE_ENDPOINT).tls_config(tls)?,
                    Some(credentials),
                )
            }
        };
        let channel = endpoint
            .http2_keep_alive_interval(Duration::from_secs(30))
            .keep_alive_while_idle(true)
            .connect_timeout(Duration::from_secs(10))
            .connect_lazy();
        let client = BigQueryWriteClient::new(channel)
            .max_encoding_message_size(MAX_MESSAGE_BYTES)
            .max_decoding_message_size(MAX_MESSAGE_BYTES);
        let tables = catalog
            .tables()
            .map(|table| {
                let stream = TableStream::new(target, table)
                    .with_context(|| format!("no row type for table {}", table.name))?;
                Ok((table.name.clone(), stream))
            })
            .collect::<anyhow::Result<_>>()?;
        Ok(Self {
            client,
            credentials,
            tables,
        })
    }

    /// The table's row type, to encode its rows with.
    pub fn row_type(&self, table: &str) -> &RowType {
        &self.table(table).row_type
    }

    fn table(&self, table: &str) -> &TableStream {
        self.tables
            .get(table)
            .expect("every table of the catalog has a stream")
    }

    /// Appends encoded rows to the table's default stream, waiting at most `within`.
    pub async fn append(
        &self,
        table: &str,
        rows: Vec<Vec<u8>>,
        within: Duration,
    ) -> Result<Appended, AppendError> {
        let stream = self.table(table);
        let deadline = tokio::time::Instant::now() + within;
        let answer = match tokio::time::timeout_at(deadline, stream.send(self, rows)).await {
            Ok(Ok(answer)) => answer,
            Ok(Err(error)) => return Err(error),
            Err(_) => {
                stream.drop_call().await;
                return Err(AppendError::Unknown(format!(
                    "the request was sent to {table} and not answered within {within:?}"
                )));
            }
        };
        let answered = match tokio::time::timeout_at(deadline, answer.receiver).await {
            Ok(Ok(Ok(response))) => read(response),
            Ok(Ok(Err(ended))) => Err(AppendError::Unknown(ended)),
            Ok(Err(_)) => Err(AppendError::Unknown("the call ended unanswered".into())),
            Err(_) => {
                stream.drop_call_if(answer.call).await;
                Err(AppendError::Unknown(format!(
                    "no answer from {table} within {within:?}"
                )))
            }
        };
        if matches!(answered, Err(AppendError::NotAppended { schema: true, .. })) {
            // A new call makes BigQuery read the table's schema again.
            stream.drop_call_if(answer.call).await;
        }
        answered
    }

    /// Authentication and routing for a new call.
    async fn metadata(&self, stream_name: &str) -> Result<MetadataMap, AppendError> {
        let mut metadata = match &self.credentials {
            None => MetadataMap::new(),
            Some(credentials) => match credentials.headers(http::Extensions::new()).await {
                Ok(CacheableResource::New { data, .. }) => MetadataMap::from_headers(data),
                Ok(CacheableResource::NotModified) => MetadataMap::new(),
                Err(e) => {
                    return Err(AppendError::NotAppended {
                        schema: false,
                        retryable: true,
                        message: format!("no access token for BigQuery: {e}"),
                    });
                }
            },
        };
        // Google's frontends route a call to its table's region by this header.
        let routing = format!("write_stream={}", urlencoding(stream_name));
        if let Ok(value) = MetadataValue::try_from(routing) {
            metadata.insert("x-goog-request-params", value);
        }
        Ok(metadata)
    }
}

/// `/` and `=` as `%2F`/`%3D`: the name is one value of a query-string-like header.
fn urlencoding(name: &str) -> String {
    url::form_urlencoded::byte_serialize(name.as_bytes()).collect()
}

/// What a response says about its request.
fn read(response: AppendRowsResponse) -> Result<Appended, AppendError> {
    if !response.row_errors.is_empty() {
        let refused = response
            .row_errors
            .into_iter()
            .filter_map(|e| Some((usize::try_from(e.index).ok()?, e.message)))
            .collect();
        return Ok(Appended::RowErrors(refused));
    }
    match response.response {
        Some(Response::AppendResult(_)) => Ok(Appended::All),
        Some(Response::Error(status)) => Err(refusal(Code::from_i32(status.code), status.message)),
        None => Err(AppendError::Unknown(
            "BigQuery answered without a result or an error".into(),
        )),
    }
}

/// An error BigQuery answered with: nothing of the request was appended.
fn refusal(code: Code, message: String) -> AppendError {
    let lower = message.to_ascii_lowercase();
    let schema = code == Code::InvalidArgument
        && ["schema", "field", "column"]
            .iter()
            .any(|word| lower.contains(word));
    let retryable = schema
        || matches!(
            code,
            Code::Unavailable
                | Code::ResourceExhausted
                | Code::Aborted
                | Code::Internal
                | Code::DeadlineExceeded
                | Code::Cancelled
        );
    AppendError::NotAppended {
        schema,
        retryable,
        message: format!("{code:?}: {message}"),
    }
}

/// One table's default stream and the call that writes to it.
struct TableStream {
    name: String,
    row_type: RowType,
    call: tokio::sync::Mutex<Option<Call>>,
}

/// A request on its way, and which call it went out on.
struct Sent {
    receiver: oneshot::Receiver<Answer>,
    call: u64,
}

/// A response, or why the call ended before it came.
type Answer = Result<AppendRowsResponse, String>;

impl TableStream {
    fn new(target: &StorageTarget, table: &Table) -> anyhow::Result<Self> {
        Ok(Self {
            name: format!(
                "projects/{}/datasets/{}/tables/{}/streams/_default",
                target.project, target.dataset, table.name
            ),
            row_type: RowType::of(table)?,
            call: tokio::sync::Mutex::new(None),
        })
    }

    /// Queues the rows on the open call (opening one when there is none).
    async fn send(&self, writer: &StorageWriter, rows: Vec<Vec<u8>>) -> Result<Sent, AppendError> {
        let mut slot = self.call.lock().await;
        if slot.as_ref().is_none_or(Call::ended) {
            *slot = Some(Call::open(writer, self).await?);
        }
        let call = slot.as_mut().expect("a call was just opened");
        let (answer, receiver) = oneshot::channel();
        let request = self.request(rows, !call.schema_sent);
        if !call.waiting.push(answer) {
            *slot = None;
            return Err(not_sent("the call to BigQuery ended"));
        }
        if call.requests.send(request).await.is_err() {
            // Queued for an answer that cannot come: the reader has ended, and says so to it.
            *slot = None;
            return Err(AppendError::Unknown("the call to BigQuery ended".into()));
        }
        call.schema_sent = true;
        Ok(Sent {
            receiver,
            call: call.id,
        })
    }

    fn request(&self, rows: Vec<Vec<u8>>, first: bool) -> AppendRowsRequest {
        // The first request of a call names the stream and the row type; later ones need not.
        let (write_stream, writer_schema) = match first {
            true => (
                self.name.clone(),
                Some(ProtoSchema {
                    proto_descriptor: Some(self.row_type.descriptor()),
                }),
            ),
            false => (String::new(), None),
        };
        AppendRowsRequest {
            write_stream,
            rows: Some(Rows::ProtoRows(ProtoData {
                writer_schema,
                rows: Some(ProtoRows {
                    serialized_rows: rows,
                }),
            })),
            ..Default::default()
        }
    }

    async fn drop_call(&self) {
        *self.call.lock().await = None;
    }

    /// Drops the call `id`, unless another has replaced it meanwhile.
    async fn drop_call_if(&self, id: u64) {
        let mut slot = self.call.lock().await;
        if slot.as_ref().is_some_and(|call| call.id == id) {
            *slot = None;
        }
    }
}

fn not_sent(message: &str) -> AppendError {
    AppendError::NotAppended {
        schema: false,
        retryable: true,
        message: message.into(),
    }
}

/// An open `AppendRows` call: requests go in through a channel; a task reads the answers and
/// hands each to the oldest request waiting.
struct Call {
    id: u64,
    requests: mpsc::Sender<AppendRowsRequest>,
    waiting: Waiting,
    schema_sent: bool,
    reader: JoinHandle<()>,
}

impl Call {
    async fn open(writer: &StorageWriter, stream: &TableStream) -> Result<Self, AppendError> {
        static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        let (requests, queued) = mpsc::channel(QUEUED_REQUESTS);
        let mut request = tonic::Request::new(tokio_stream::wrappers::ReceiverStream::new(queued));
        *request.metadata_mut() = writer.metadata(&stream.name).await?;
        let waiting = Waiting::default();
        let mut client = writer.client.clone();
        let answers = waiting.clone();
        let reader = tokio::spawn(async move {
            let ended = match client.append_rows(request).await {
                Ok(response) => read_answers(response.into_inner(), &answers).await,
                Err(status) => said(&status),
            };
            answers.close(&ended);
        });
        Ok(Self {
            id: NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed),
            requests,
            waiting,
            schema_sent: false,
            reader,
        })
    }

    fn ended(&self) -> bool {
        self.reader.is_finished()
    }
}

impl Drop for Call {
    fn drop(&mut self) {
        // Ends the HTTP/2 stream; whoever still waits hears that it ended.
        self.reader.abort();
        self.waiting.close("the call was dropped");
    }
}

/// Hands each answer to the oldest request waiting; returns why the call ended.
async fn read_answers(
    mut answers: tonic::Streaming<AppendRowsResponse>,
    waiting: &Waiting,
) -> String {
    loop {
        match answers.message().await {
            Ok(Some(answer)) => {
                if let Some(request) = waiting.pop() {
                    let _ = request.send(Ok(answer));
                }
            }
            Ok(None) => return "BigQuery ended the call".into(),
            Err(status) => return said(&status),
        }
    }
}

fn said(status: &tonic::Status) -> String {
    format!(
        "the call to BigQuery ended: {:?}: {}",
        status.code(),
        status.message()
    )
}

/// The requests of a call waiting for their answers, oldest first; closed when the call ends,
/// after which nothing more is queued on it.
#[derive(Clone, Default)]
struct Waiting(Arc<Mutex<WaitingState>>);

#[derive(Default)]
struct WaitingState {
    queue: VecDeque<oneshot::Sender<Answer>>,
    closed: bool,
}

impl Waiting {
    /// `false` when the call has ended.
    fn push(&self, answer: oneshot::Sender<Answer>) -> bool {
        let mut state = self.0.lock().unwrap_or_else(|p| p.into_inner());
        if state.closed {
            return false;
        }
        state.queue.push_back(answer);
        true
    }

    fn pop(&self) -> Option<oneshot::Sender<Answer>> {
        let mut state = self.0.lock().unwrap_or_else(|p| p.into_inner());
        state.queue.pop_front()
    }

    fn close(&self, why: &str) {
        let mut state = self.0.lock().unwrap_or_else(|p| p.into_inner());
        state.closed = true;
        for waiting in state.queue.drain(..) {
            let _ = waiting.send(Err(why.to_string()));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refusals_tell_schema_trouble_and_retryable_codes_from_the_rest() {
        let schema = refusal(
            Code::InvalidArgument,
            "Input schema has more fields than BigQuery schema, extra fields: 'coupon'".into(),
        );
        assert!(matches!(
            schema,
            AppendError::NotAppended {
                schema: true,
                retryable: true,
                ..
            }
        ));
        assert!(matches!(
            refusal(Code::Unavailable, "try again".into()),
            AppendError::NotAppended {
                schema: false,
                retryable: true,
                ..
            }
        ));
        assert!(matches!(
            refusal(Code::PermissionDenied, "no".into()),
            AppendError::NotAppended {
                retryable: false,
                ..
            }
        ));
    }

    #[test]
    fn row_errors_come_first_even_with_an_error_status() {
        use gcp_bigquery_client::google::cloud::bigquery::storage::v1::RowError;
        use gcp_bigquery_client::google::rpc::Status;
        let response = AppendRowsResponse {
            row_errors: vec![RowError {
                index: 1,
                code: 1,
                message: "bad".into(),
            }],
            response: Some(Response::Error(Status {
                code: Code::InvalidArgument as i32,
                message: "Rows are invalid".into(),
                details: vec![],
            })),
            ..Default::default()
        };
        assert_eq!(
            read(response),
            Ok(Appended::RowErrors(vec![(1, "bad".into())]))
        );
    }
}
