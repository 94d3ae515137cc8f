//! `POST /push`: envelope → event → sinks → ack. The status code is the ack: 200 only once
//! every sink holds the record (or the dead letter does).
//!
//! [`observe`] wraps the route: it opens the request's span (its trace, then its message id),
//! counts and times every push however it ends, and writes the one log line per request.

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::Json;
use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, header::CONTENT_LENGTH};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use http_body_util::{BodyExt, LengthLimitError, Limited};
use serde::Serialize;
use tracing::Instrument;
use tracing::field::Empty;

use crate::envelope;
use crate::error::{ApiError, Outcome as Answered};
use crate::event::{Classifier, Outcome, Poison, Record};
use crate::sink::{Fate, Sinks};
use crate::telemetry::metrics::{Metrics, no_event_type};
use crate::telemetry::trace::TraceContext;
use crate::time::received_now;

/// Bounds on what one push may take; only `/push` is limited, so that probes and scrapes
/// still answer when ingestion is saturated.
#[derive(Debug, Clone)]
pub struct PushLimits {
    pub max_body_bytes: usize,
    /// Requests handled at once; more are answered 429 at once.
    pub max_concurrency: usize,
    /// The deadline of one push, retries included.
    pub request_timeout: Duration,
}

pub struct PushState {
    pub sinks: Sinks,
    pub classifier: Arc<Classifier>,
    pub limits: PushLimits,
    pub metrics: Arc<Metrics>,
}

/// The 200 body: what happened to the message.
#[derive(Debug, Serialize)]
pub struct Ack {
    pub message_id: String,
    /// `landed` or `dead_lettered`.
    pub outcome: &'static str,
    /// True when the message was stored before and nothing was stored anew (a redelivery).
    pub duplicate: bool,
    pub event_type: Option<Arc<str>>,
    /// The landing-layer object; null when only BigQuery is configured.
    pub landing_uri: Option<String>,
    pub reason: Option<String>,
}

/// The routed event type of a push, for its metrics.
#[derive(Debug, Clone)]
struct EventTypeTag(Arc<str>);

pub async fn observe(
    State(metrics): State<Arc<Metrics>>,
    request: Request,
    next: Next,
) -> Response {
    let _in_flight = metrics.in_flight();
    let started = Instant::now();
    let span = tracing::info_span!(
        "push",
        trace_id = Empty,
        span_id = Empty,
        trace_sampled = Empty,
        message_id = Empty,
        event_type = Empty,
        rule = Empty,
        error = Empty,
    );
    if let Some(trace) = TraceContext::from_headers(request.headers()) {
        span.record("trace_id", trace.trace_id.as_str());
        span.record("trace_sampled", trace.sampled);
        if let Some(span_id) = &trace.span_id {
            span.record("span_id", span_id.as_str());
        }
    }
    let response = next.run(request).instrument(span.clone()).await;
    let elapsed = started.elapsed();
    let outcome = response
        .extensions()
        .get::<Answered>()
        .map_or("unavailable", |o| o.0);
    let event_type = response
        .extensions()
        .get::<EventTypeTag>()
        .map_or_else(no_event_type, |t| t.0.clone());
    metrics.push(outcome, &event_type, elapsed);
    let _entered = span.enter();
    log_answer(response.status().as_u16(), outcome, elapsed);
    response
}

/// The request's log line: never the token, never the payload.
fn log_answer(status: u16, outcome: &'static str, elapsed: Duration) {
    // Tenths of a millisecond are as precise as a push's latency is meaningful.
    let latency_ms = (elapsed.as_secs_f64() * 10_000.0).round() / 10.0;
    if status >= 500 {
        tracing::error!(status, outcome, latency_ms, "push not acknowledged");
    } else if status >= 400 {
        tracing::warn!(status, outcome, latency_ms, "push rejected");
    } else {
        tracing::info!(status, outcome, latency_ms, "push acknowledged");
    }
}

pub async fn handler(
    State(state): State<Arc<PushState>>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    match handle(&state, &headers, body).await {
        Ok(ack) => {
            let outcome = match (ack.outcome, ack.duplicate) {
                (_, true) => "duplicate",
                (outcome, false) => outcome,
            };
            let tag = ack.event_type.clone().map(EventTypeTag);
            let mut response = Json(ack).into_response();
            response.extensions_mut().insert(Answered(outcome));
            if let Some(tag) = tag {
                response.extensions_mut().insert(tag);
            }
            response
        }
        Err((error, tag)) => {
            // The cause chain goes to the log line (the span's), the body stays generic.
            tracing::Span::current().record("error", tracing::field::display(&error));
            let mut response = error.into_response();
            if let Some(tag) = tag {
                response.extensions_mut().insert(tag);
            }
            response
        }
    }
}

type Failure = (ApiError, Option<EventTypeTag>);

async fn handle(state: &PushState, headers: &HeaderMap, body: Body) -> Result<Ack, Failure> {
    let body = read_body(headers, body, state.limits.max_body_bytes)
        .await
        .map_err(|e| (e, None))?;
    let delivery = envelope::decode(headers, body).map_err(|e| (e.into(), None))?;
    let span = tracing::Span::current();
    span.record("message_id", delivery.message_id.as_str());
    let received_at = received_now();
    let lag = (received_at - delivery.publish_time)
        .to_std()
        .unwrap_or_default();
    let record = state.classifier.classify(delivery, received_at);
    let tag = EventTypeTag(record.event_type().cloned().unwrap_or_else(no_event_type));
    span.record("event_type", tag.0.as_ref());
    state.metrics.delivery_lag(&tag.0, lag);
    let landed = state
        .sinks
        .land(record.clone())
        .await
        .map_err(|e| (e.into(), Some(tag.clone())))?;
    if let Outcome::DeadLetter { rule, .. } = &record.outcome {
        span.record("rule", *rule);
        if landed.fate == Fate::Stored {
            state.metrics.dead_letter(&tag.0, rule);
        }
    }
    match landed.fate {
        Fate::Stored => Ok(ack(&record, false, landed.landing_uri)),
        Fate::Duplicate => Ok(ack(&record, true, landed.landing_uri)),
        Fate::EarlierEvent => Ok(earlier_event(&record, landed.landing_uri)),
        Fate::Rejected(reason) => dead_letter_rejected(state, &record, reason)
            .await
            .map_err(|e| (e, Some(tag.clone()))),
    }
}

/// A refused redelivery of a message that landed as an event under an older catalog: it is a
/// duplicate of that event, not a new dead letter (one message, one fate).
fn earlier_event(record: &Record, landing_uri: Option<Arc<str>>) -> Ack {
    Ack {
        message_id: record.message_id().to_string(),
        outcome: "landed",
        duplicate: true,
        event_type: record.event_type().cloned(),
        landing_uri: landing_uri.map(|u| u.to_string()),
        reason: None,
    }
}

/// A warehouse refused a row for its content: keep it in the dead letter and ack, since
/// redelivering the same content would be refused forever.
async fn dead_letter_rejected(
    state: &PushState,
    rejected: &Record,
    reason: String,
) -> Result<Ack, ApiError> {
    let (false, Some(event_type)) = (rejected.is_dead_letter(), rejected.event_type()) else {
        // Dead-letter rows are plain text columns; a refusal means the schema is broken.
        return Err(ApiError::Internal(format!(
            "the dead letter was refused: {reason}"
        )));
    };
    // No `prior`: the event it would be is the very one refused.
    let poison = Poison {
        reason: format!("rejected by the warehouse: {reason}"),
        rule: "warehouse_rejected",
        event_type: Some(event_type.clone()),
        prior: None,
    };
    let record = state
        .classifier
        .dead_letter(rejected.delivery.clone(), received_now(), poison);
    let landed = state.sinks.land(record.clone()).await?;
    let duplicate = landed.fate == Fate::Duplicate;
    if !duplicate {
        state.metrics.dead_letter(event_type, "warehouse_rejected");
    }
    tracing::Span::current().record("rule", "warehouse_rejected");
    Ok(ack(&record, duplicate, landed.landing_uri))
}

fn ack(record: &Record, duplicate: bool, landing_uri: Option<Arc<str>>) -> Ack {
    let (outcome, reason) = match &record.outcome {
        Outcome::Event { .. } => ("landed", None),
        Outcome::DeadLetter { reason, .. } => ("dead_lettered", Some(reason.clone())),
    };
    Ack {
        message_id: record.message_id().to_string(),
        outcome,
        duplicate,
        event_type: record.event_type().cloned(),
        landing_uri: landing_uri.map(|u| u.to_string()),
        reason,
    }
}

async fn read_body(headers: &HeaderMap, body: Body, limit: usize) -> Result<Bytes, ApiError> {
    let declared = headers
        .get(CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<usize>().ok());
    if declared.is_some_and(|len| len > limit) {
        return Err(ApiError::TooLarge(limit));
    }
    match Limited::new(body, limit).collect().await {
        Ok(collected) => Ok(collected.to_bytes()),
        Err(e) if e.downcast_ref::<LengthLimitError>().is_some() => Err(ApiError::TooLarge(limit)),
        Err(e) => Err(ApiError::BodyUnreadable(e.to_string())),
    }
}
