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

use crate::envelope::{self, HeaderPolicy};
use crate::event::Poison;
use crate::http::budget::{BYTES_PER_JSON_VALUE, BudgetConfig, MemoryBudget, NoRoom, Reservation};
use crate::http::error::{ApiError, PushOutcome};
use crate::pipeline::{Handled, Handling, Pipeline};
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
    /// The memory all pushes in flight may hold.
    pub budget: BudgetConfig,
    /// Which headers of an unwrapped push are its attributes.
    pub headers: HeaderPolicy,
}

pub struct PushState {
    pub pipeline: Arc<Pipeline>,
    pub limits: PushLimits,
    pub budget: Arc<MemoryBudget>,
    pub metrics: Arc<Metrics>,
}

/// Payloads this small are not counted: their values are reserved at the most they could be
/// (one for every two bytes), at most 1 MiB.
const COUNTED_FROM: usize = 16 * 1024;

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
        withheld_headers = Empty,
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
        .get::<PushOutcome>()
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
            response.extensions_mut().insert(PushOutcome(outcome));
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
    let limit = state.limits.max_body_bytes;
    let declared = declared_length(headers);
    if declared.is_some_and(|len| len > limit) {
        return Err((ApiError::TooLarge(limit), None));
    }
    // What the body, the envelope as read and the decoded data take, before they are taken.
    let body_cost = BudgetConfig::body_cost(declared.unwrap_or(limit));
    let mut reservation = state
        .budget
        .reserve(body_cost)
        .await
        .map_err(|e| (no_room(e), None))?;
    let body = read_body(body, limit).await.map_err(|e| (e, None))?;
    let delivery = envelope::decode_with(headers, body, &state.limits.headers)
        .map_err(|e| (e.into(), None))?;
    let span = tracing::Span::current();
    span.record("message_id", delivery.message_id.as_str());
    if envelope::is_unwrapped(headers) {
        let withheld = state.limits.headers.withheld(headers);
        if !withheld.is_empty() {
            span.record("withheld_headers", withheld.join(",").as_str());
            state.metrics.withheld_headers(withheld.len());
        }
    }
    let received_at = received_now();
    let lag = (received_at - delivery.publish_time)
        .to_std()
        .unwrap_or_default();
    let pipeline = &state.pipeline;
    let record = match reserve_for_payload(state, &mut reservation, &delivery.data).await {
        Ok(()) => pipeline.classify(delivery, received_at),
        Err(NoRoom::Taken) => return Err((ApiError::BudgetFull, None)),
        Err(NoRoom::TooLarge) => {
            let reason = too_large_to_read(&delivery.data, state.budget.total());
            let poison = Poison::untyped(reason, "too_large_to_read");
            pipeline.unread(delivery, received_at, poison)
        }
    };
    let tag = EventTypeTag(record.event_type().cloned().unwrap_or_else(no_event_type));
    span.record("event_type", tag.0.as_ref());
    state.metrics.delivery_lag(&tag.0, lag);
    let handled = pipeline
        .land(record)
        .await
        .map_err(|e| (e.into(), Some(tag.clone())))?;
    if let Some(rule) = handled.record.rule() {
        span.record("rule", rule);
    }
    Ok(ack(&handled))
}

/// What the 200 says of a handled message. A dead letter whose message landed as an event
/// under an older catalog is a duplicate of that event (one message, one fate).
fn ack(handled: &Handled) -> Ack {
    let record = &handled.record;
    let (outcome, reason) = match (handled.handling, record.reason()) {
        (Handling::EarlierEvent, _) | (_, None) => ("landed", None),
        (_, Some(reason)) => ("dead_lettered", Some(reason.to_string())),
    };
    Ack {
        message_id: record.message_id().to_string(),
        outcome,
        duplicate: handled.handling != Handling::Stored,
        event_type: record.event_type().cloned(),
        landing_uri: handled.landing_uri.as_ref().map(|u| u.to_string()),
        reason,
    }
}

fn declared_length(headers: &HeaderMap) -> Option<usize> {
    headers
        .get(CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<usize>().ok())
}

/// What classifying the payload will take, reserved before it is taken: one [`Reservation`]
/// grows from the body's share to the payload's JSON values'.
async fn reserve_for_payload(
    state: &PushState,
    reservation: &mut Reservation,
    data: &[u8],
) -> Result<(), NoRoom> {
    let values = if data.len() < COUNTED_FROM {
        data.len() / 2 + 1
    } else {
        crate::json::count_values(data)
    };
    state
        .budget
        .grow(reservation, values.saturating_mul(BYTES_PER_JSON_VALUE))
        .await
}

/// Why a payload is kept as received without being read.
fn too_large_to_read(data: &[u8], budget: usize) -> String {
    let values = crate::json::count_values(data);
    format!(
        "payload is too large to read here: its {values} JSON values would take about {} MB, \
         more than the memory budget for pushes ({} MB); it is kept as received (redrive it \
         where more memory is given)",
        (values * BYTES_PER_JSON_VALUE).div_ceil(1 << 20),
        budget >> 20
    )
}

fn no_room(why: NoRoom) -> ApiError {
    match why {
        NoRoom::Taken => ApiError::BudgetFull,
        // The budget holds the largest body (the settings refuse less).
        NoRoom::TooLarge => ApiError::Internal("a body's share exceeds the memory budget".into()),
    }
}

async fn read_body(body: Body, limit: usize) -> Result<Bytes, ApiError> {
    match Limited::new(body, limit).collect().await {
        Ok(collected) => Ok(collected.to_bytes()),
        Err(e) if e.downcast_ref::<LengthLimitError>().is_some() => Err(ApiError::TooLarge(limit)),
        Err(e) => Err(ApiError::BodyUnreadable(e.to_string())),
    }
}
