//! The one error type at the HTTP boundary. Each variant's doc names its status; the status
//! is what Pub/Sub reads as ack (2xx) or nack (everything else), so the mapping is the product.
//! Every error response, including those the router makes on its own (404, 405), has the body
//! `{"error": code, "message": text}`.

use axum::Json;
use axum::extract::Request;
use axum::http::{HeaderValue, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use serde_json::json;

use crate::envelope::EnvelopeError;
use crate::sink::SinkError;

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// 400: the body is not a Pub/Sub push envelope. Retrying the same bytes cannot help.
    #[error(transparent)]
    BadEnvelope(#[from] EnvelopeError),
    /// 413: the body is over `--max-body-bytes`.
    #[error("request body is larger than {0} bytes")]
    TooLarge(usize),
    /// 400: the body could not be read (client went away, broken chunking).
    #[error("request body could not be read: {0}")]
    BodyUnreadable(String),
    /// 400: a request other than a push is malformed (its parameters).
    #[error("{0}")]
    BadRequest(String),
    /// 401: no usable bearer token (missing, malformed, bad signature, expired).
    #[error("{0}")]
    Unauthenticated(String),
    /// 403: a valid Google token, but not for this audience, issuer or service account.
    #[error("{0}")]
    Forbidden(String),
    /// 503: a sink did not store the record durably; Pub/Sub will redeliver.
    #[error(transparent)]
    SinkUnavailable(#[from] SinkError),
    /// 503: the verification keys are not loaded yet; the sender did nothing wrong.
    #[error("{0}")]
    AuthUnavailable(String),
    /// 429: more requests in progress than `--max-concurrency`.
    #[error("too many requests in progress")]
    Overloaded,
    /// 429: the memory budget for pushes in flight (`--memory-budget-mb`) is taken.
    #[error("the memory pushes in flight may hold is taken; the message will be redelivered")]
    BudgetFull,
    /// 503: the request did not finish within `--request-timeout-secs`.
    #[error("request timed out")]
    TimedOut,
    /// 404: no such path.
    #[error("no such path: {0}")]
    NotFound(String),
    /// 405: the path exists, the method does not; the response keeps `Allow`.
    #[error("method {method} is not allowed on {path}")]
    MethodNotAllowed { method: Method, path: String },
    /// 431: more headers than landfall reads (the number it reads); refused before routing.
    #[error(
        "the request carries more headers than landfall reads (at most {0} headers): a Pub/Sub push carries at most 100 attributes"
    )]
    HeadersTooLarge(usize),
    /// 400: not readable as HTTP/1.1 (its start line, a header, or `Content-Length`);
    /// refused before routing.
    #[error(
        "the request is not readable as HTTP/1.1: its start line, a header or its Content-Length is malformed"
    )]
    Malformed,
    /// The status the router chose for a request it refused by itself (other than 404/405).
    #[error("the request was refused ({0})")]
    Refused(StatusCode),
    /// 500: landfall itself failed; the cause is in the log.
    #[error("internal error: {0}")]
    Internal(String),
}

impl ApiError {
    /// A refusal hyper made before the request reached the router, by its status.
    pub fn refused_by_http(status: StatusCode, max_headers: usize) -> Self {
        match status {
            StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE => Self::HeadersTooLarge(max_headers),
            StatusCode::BAD_REQUEST => Self::Malformed,
            other => Self::Refused(other),
        }
    }

    pub fn status(&self) -> StatusCode {
        match self {
            Self::BadEnvelope(_)
            | Self::BodyUnreadable(_)
            | Self::BadRequest(_)
            | Self::Malformed => StatusCode::BAD_REQUEST,
            Self::HeadersTooLarge(_) => StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
            Self::TooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            Self::Unauthenticated(_) => StatusCode::UNAUTHORIZED,
            Self::Forbidden(_) => StatusCode::FORBIDDEN,
            Self::SinkUnavailable(_) | Self::AuthUnavailable(_) | Self::TimedOut => {
                StatusCode::SERVICE_UNAVAILABLE
            }
            Self::Overloaded | Self::BudgetFull => StatusCode::TOO_MANY_REQUESTS,
            Self::NotFound(_) => StatusCode::NOT_FOUND,
            Self::MethodNotAllowed { .. } => StatusCode::METHOD_NOT_ALLOWED,
            Self::Refused(status) => *status,
            Self::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// Stable machine-readable name, documented in the OpenAPI file.
    pub fn code(&self) -> &'static str {
        match self {
            Self::BadEnvelope(_) => "bad_envelope",
            Self::BodyUnreadable(_) => "body_unreadable",
            Self::BadRequest(_) => "bad_request",
            Self::TooLarge(_) => "payload_too_large",
            Self::Unauthenticated(_) => "unauthenticated",
            Self::Forbidden(_) => "forbidden",
            Self::SinkUnavailable(_) => "sink_unavailable",
            Self::AuthUnavailable(_) => "auth_unavailable",
            Self::Overloaded | Self::BudgetFull => "overloaded",
            Self::TimedOut => "timed_out",
            Self::NotFound(_) => "not_found",
            Self::MethodNotAllowed { .. } => "method_not_allowed",
            Self::HeadersTooLarge(_) => "headers_too_large",
            Self::Malformed => "malformed_request",
            Self::Refused(_) => "refused",
            Self::Internal(_) => "internal",
        }
    }

    /// The `outcome` label of `landfall_pushes_total` for a push answered with this error.
    pub fn outcome(&self) -> &'static str {
        match self.status() {
            StatusCode::UNAUTHORIZED => "unauthorized",
            StatusCode::FORBIDDEN => "forbidden",
            StatusCode::PAYLOAD_TOO_LARGE => "too_large",
            StatusCode::TOO_MANY_REQUESTS => "overloaded",
            s if s.is_client_error() => "bad_request",
            _ => "unavailable",
        }
    }

    /// 5xx bodies stay generic: the cause chain belongs in the log, not in a response.
    fn public_message(&self) -> String {
        match self {
            Self::SinkUnavailable(e) => {
                format!(
                    "the {} sink is unavailable; the message will be redelivered",
                    e.sink
                )
            }
            Self::Internal(_) => "internal error; the message will be redelivered".into(),
            other => other.to_string(),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = self.status();
        let body = json!({"error": self.code(), "message": self.public_message()});
        let mut response = (status, Json(body)).into_response();
        if status == StatusCode::UNAUTHORIZED {
            response.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Bearer error=\"invalid_token\""),
            );
        }
        if status == StatusCode::TOO_MANY_REQUESTS {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
        }
        response
            .extensions_mut()
            .insert(PushOutcome(self.outcome()));
        response
    }
}

/// How a push was answered, for metrics: set on every response a push handler or an
/// [`ApiError`] produces.
#[derive(Debug, Clone, Copy)]
pub struct PushOutcome(pub &'static str);

/// Gives the responses the router makes by itself (404, 405, …), which have empty bodies, the
/// documented error shape; headers such as `Allow` stay.
pub async fn documented_errors(request: Request, next: Next) -> Response {
    let (method, path) = (request.method().clone(), request.uri().path().to_string());
    let response = next.run(request).await;
    let status = response.status();
    let is_json = response
        .headers()
        .get(header::CONTENT_TYPE)
        .is_some_and(|v| v.as_bytes().starts_with(b"application/json"));
    if status.as_u16() < 400 || is_json {
        return response;
    }
    let error = match status {
        StatusCode::NOT_FOUND => ApiError::NotFound(format!("{method} {path}")),
        StatusCode::METHOD_NOT_ALLOWED => ApiError::MethodNotAllowed { method, path },
        other => ApiError::Refused(other),
    };
    let (mut parts, _) = response.into_parts();
    let documented = error.into_response();
    parts.headers.remove(header::CONTENT_LENGTH);
    parts.headers.extend(documented.headers().clone());
    Response::from_parts(parts, documented.into_body())
}
