//! The one error type at the HTTP boundary. Each variant's doc names its status; the status
//! is what Pub/Sub reads as ack (2xx) or nack (everything else), so the mapping is the product.

use axum::Json;
use axum::http::{HeaderValue, StatusCode, header};
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
    /// 503: the request did not finish within `--request-timeout-secs`.
    #[error("request timed out")]
    TimedOut,
}

impl ApiError {
    pub fn status(&self) -> StatusCode {
        match self {
            Self::BadEnvelope(_) | Self::BodyUnreadable(_) => StatusCode::BAD_REQUEST,
            Self::TooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            Self::Unauthenticated(_) => StatusCode::UNAUTHORIZED,
            Self::Forbidden(_) => StatusCode::FORBIDDEN,
            Self::SinkUnavailable(_) | Self::AuthUnavailable(_) | Self::TimedOut => {
                StatusCode::SERVICE_UNAVAILABLE
            }
            Self::Overloaded => StatusCode::TOO_MANY_REQUESTS,
        }
    }

    /// Stable machine-readable name, documented in the OpenAPI file.
    pub fn code(&self) -> &'static str {
        match self {
            Self::BadEnvelope(_) => "bad_envelope",
            Self::BodyUnreadable(_) => "body_unreadable",
            Self::TooLarge(_) => "payload_too_large",
            Self::Unauthenticated(_) => "unauthenticated",
            Self::Forbidden(_) => "forbidden",
            Self::SinkUnavailable(_) => "sink_unavailable",
            Self::AuthUnavailable(_) => "auth_unavailable",
            Self::Overloaded => "overloaded",
            Self::TimedOut => "timed_out",
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
    }
}
