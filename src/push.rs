//! `POST /push`: envelope → event → sinks → ack. The status code is the ack: 200 only once
//! every sink holds the record (or the dead letter does).

use std::sync::Arc;
use std::time::Instant;

use axum::Json;
use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, header::CONTENT_LENGTH};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use chrono::{SubsecRound, Utc};
use http_body_util::{BodyExt, LengthLimitError, Limited};
use serde::Serialize;

use crate::envelope::{self, Delivery};
use crate::error::ApiError;
use crate::event::{self, Landing, Outcome, Record};
use crate::sink::{Landed, Sinks};

#[derive(Clone)]
pub struct PushState {
    pub sinks: Sinks,
    pub landing: Landing,
    pub max_body_bytes: usize,
}

/// The 200 body: what happened to the message.
#[derive(Debug, Serialize)]
pub struct Ack {
    pub message_id: String,
    /// `landed` or `dead_lettered`.
    pub outcome: &'static str,
    /// True when a sink already had it and none stored it anew (a redelivery). BigQuery
    /// cannot tell, so it does not count either way.
    pub duplicate: bool,
    pub event_type: Option<&'static str>,
    /// The landing-layer object; null when only BigQuery is configured.
    pub landing_uri: Option<String>,
    pub reason: Option<String>,
}

pub async fn handler(State(state): State<PushState>, headers: HeaderMap, body: Body) -> Response {
    let started = Instant::now();
    let mut message_id = None;
    let result = handle(&state, &headers, body, &mut message_id).await;
    let latency_ms = started.elapsed().as_secs_f64() * 1000.0;
    match result {
        Ok(ack) => {
            tracing::info!(
                message_id = %ack.message_id,
                event_type = ack.event_type.unwrap_or("-"),
                outcome = ack.outcome,
                duplicate = ack.duplicate,
                reason = ack.reason.as_deref().unwrap_or(""),
                latency_ms,
                "push acknowledged"
            );
            Json(ack).into_response()
        }
        Err(error) => {
            let status = error.status().as_u16();
            let message_id = message_id.as_deref().unwrap_or("-");
            if error.status().is_server_error() {
                tracing::error!(message_id, status, error = %error, latency_ms, "push not acknowledged");
            } else {
                tracing::warn!(message_id, status, error = %error, latency_ms, "push rejected");
            }
            error.into_response()
        }
    }
}

/// `message_id` is filled in as soon as it is known, so failures can be logged with it.
async fn handle(
    state: &PushState,
    headers: &HeaderMap,
    body: Body,
    message_id: &mut Option<String>,
) -> Result<Ack, ApiError> {
    let body = read_body(headers, body, state.max_body_bytes).await?;
    let delivery = envelope::decode(headers, body)?;
    *message_id = Some(delivery.message_id.clone());
    // Microseconds: the precision BigQuery TIMESTAMP keeps, so both warehouses agree.
    let received_at = Utc::now().trunc_subsecs(6);
    let record = event::classify(&delivery, received_at, &state.landing);
    match state.sinks.land(record.clone()).await? {
        Landed::Stored => Ok(ack(&record, false)),
        Landed::Duplicate => Ok(ack(&record, true)),
        Landed::Rejected(reason) => dead_letter_rejected(state, &delivery, &record, reason).await,
    }
}

/// A warehouse refused a row for its content: keep it in the dead letter and ack, since
/// redelivering the same content would be refused forever.
async fn dead_letter_rejected(
    state: &PushState,
    delivery: &Delivery,
    rejected: &Record,
    reason: String,
) -> Result<Ack, ApiError> {
    let (false, Some(event_type)) = (rejected.is_dead_letter(), rejected.event_type()) else {
        // Dead-letter rows are plain text columns; a refusal means the schema is broken.
        return Err(ApiError::SinkUnavailable(crate::sink::SinkError {
            sink: "dead_letter",
            message: format!("dead letter refused: {reason}"),
        }));
    };
    let reason = format!("rejected by the warehouse: {reason}");
    let record = event::dead_letter(
        delivery,
        Utc::now().trunc_subsecs(6),
        &state.landing,
        reason,
        Some(event_type),
    );
    let landed = state.sinks.land(record.clone()).await?;
    Ok(ack(&record, landed == Landed::Duplicate))
}

fn ack(record: &Arc<Record>, duplicate: bool) -> Ack {
    let (outcome, reason) = match &record.outcome {
        Outcome::Event { .. } => ("landed", None),
        Outcome::DeadLetter { reason, .. } => ("dead_lettered", Some(reason.clone())),
    };
    Ack {
        message_id: record.message_id.clone(),
        outcome,
        duplicate,
        event_type: record.event_type(),
        landing_uri: record.object_uri.clone(),
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
