//! Pub/Sub push envelopes, wrapped (JSON) or unwrapped (`noWrapper` + `writeMetadata`), decoded
//! into one [`Delivery`].
//!
//! Anything that fails here is not a Pub/Sub message at all (400); a message whose *payload* is
//! bad is a poison message and is handled downstream by the dead letter.

use std::collections::BTreeMap;

use axum::http::HeaderMap;
use base64::Engine;
use bytes::Bytes;
use chrono::{DateTime, Utc};
use serde::Deserialize;

use crate::time::parse_timestamp;

/// One Pub/Sub message as delivered, whichever envelope carried it.
#[derive(Debug, Clone, PartialEq)]
pub struct Delivery {
    pub message_id: String,
    pub publish_time: DateTime<Utc>,
    pub subscription: Option<String>,
    pub attributes: BTreeMap<String, String>,
    pub ordering_key: Option<String>,
    pub delivery_attempt: Option<i64>,
    /// The message data, decoded from base64 in the wrapped form.
    pub data: Bytes,
}

#[derive(Debug, PartialEq, thiserror::Error)]
pub enum EnvelopeError {
    #[error("body is not a Pub/Sub push envelope: {0}")]
    NotJson(String),
    #[error("envelope has no `message`")]
    NoMessage,
    #[error("message has no `messageId`")]
    NoMessageId,
    #[error(
        "message id {0:?} is not usable: expected 1 to 128 letters, digits, `-`, `_` or `.`, not starting with `.`"
    )]
    BadMessageId(String),
    #[error("message has no `publishTime`")]
    NoPublishTime,
    #[error("publish time {0:?} is not an RFC 3339 timestamp")]
    BadPublishTime(String),
    #[error("message `data` is not valid base64: {0}")]
    DataNotBase64(String),
    #[error("header {0} is not valid UTF-8")]
    BadHeader(String),
}

pub const MESSAGE_ID_HEADER: &str = "x-goog-pubsub-message-id";
const PUBLISH_TIME_HEADER: &str = "x-goog-pubsub-publish-time";
const SUBSCRIPTION_HEADER: &str = "x-goog-pubsub-subscription-name";
const ORDERING_KEY_HEADER: &str = "x-goog-ordering-key";

/// Decodes either envelope form; the unwrapped one is recognised by its message-id header.
pub fn decode(headers: &HeaderMap, body: Bytes) -> Result<Delivery, EnvelopeError> {
    if headers.contains_key(MESSAGE_ID_HEADER) {
        unwrapped(headers, body)
    } else {
        wrapped(&body)
    }
}

#[derive(Deserialize)]
struct Wrapped {
    message: Option<WrappedMessage>,
    subscription: Option<String>,
    #[serde(rename = "deliveryAttempt")]
    delivery_attempt: Option<i64>,
}

/// Pub/Sub sends both spellings of each name; either may be the only one present.
#[derive(Deserialize)]
struct WrappedMessage {
    data: Option<String>,
    #[serde(default)]
    attributes: Option<BTreeMap<String, String>>,
    #[serde(rename = "messageId")]
    message_id_camel: Option<String>,
    message_id: Option<String>,
    #[serde(rename = "publishTime")]
    publish_time_camel: Option<String>,
    publish_time: Option<String>,
    #[serde(rename = "orderingKey")]
    ordering_key: Option<String>,
}

fn wrapped(body: &[u8]) -> Result<Delivery, EnvelopeError> {
    let envelope: Wrapped =
        serde_json::from_slice(body).map_err(|e| EnvelopeError::NotJson(e.to_string()))?;
    let message = envelope.message.ok_or(EnvelopeError::NoMessage)?;
    let message_id = message
        .message_id_camel
        .or(message.message_id)
        .ok_or(EnvelopeError::NoMessageId)?;
    let publish_time = message
        .publish_time_camel
        .or(message.publish_time)
        .ok_or(EnvelopeError::NoPublishTime)?;
    let data = base64::engine::general_purpose::STANDARD
        .decode(message.data.unwrap_or_default())
        .map_err(|e| EnvelopeError::DataNotBase64(e.to_string()))?;
    Ok(Delivery {
        message_id: checked_message_id(message_id)?,
        publish_time: checked_publish_time(&publish_time)?,
        subscription: envelope.subscription,
        attributes: message.attributes.unwrap_or_default(),
        ordering_key: message.ordering_key.filter(|k| !k.is_empty()),
        delivery_attempt: envelope.delivery_attempt,
        data: Bytes::from(data),
    })
}

fn unwrapped(headers: &HeaderMap, body: Bytes) -> Result<Delivery, EnvelopeError> {
    let header = |name: &str| -> Result<Option<String>, EnvelopeError> {
        headers
            .get(name)
            .map(|v| {
                v.to_str()
                    .map(str::to_string)
                    .map_err(|_| EnvelopeError::BadHeader(name.to_string()))
            })
            .transpose()
    };
    let message_id = header(MESSAGE_ID_HEADER)?.ok_or(EnvelopeError::NoMessageId)?;
    let publish_time = header(PUBLISH_TIME_HEADER)?.ok_or(EnvelopeError::NoPublishTime)?;
    Ok(Delivery {
        message_id: checked_message_id(message_id)?,
        publish_time: checked_publish_time(&publish_time)?,
        subscription: header(SUBSCRIPTION_HEADER)?,
        attributes: attribute_headers(headers),
        ordering_key: header(ORDERING_KEY_HEADER)?.filter(|k| !k.is_empty()),
        delivery_attempt: None,
        data: body,
    })
}

/// Headers that HTTP, Google's front end or landfall itself add; every other header of an
/// unwrapped push is a message attribute.
const TRANSPORT_HEADERS: &[&str] = &[
    "accept",
    "accept-encoding",
    "authorization",
    "connection",
    "content-length",
    "content-type",
    "forwarded",
    "from",
    "host",
    "traceparent",
    "tracestate",
    "transfer-encoding",
    "user-agent",
    "via",
    "expect",
];

fn is_transport_header(name: &str) -> bool {
    TRANSPORT_HEADERS.contains(&name)
        || ["x-goog-", "x-cloud-", "x-forwarded-", "x-envoy-"]
            .iter()
            .any(|prefix| name.starts_with(prefix))
}

fn attribute_headers(headers: &HeaderMap) -> BTreeMap<String, String> {
    headers
        .iter()
        .filter(|(name, _)| !is_transport_header(name.as_str()))
        .filter_map(|(name, value)| Some((name.to_string(), value.to_str().ok()?.to_string())))
        .collect()
}

/// The id becomes part of an object name, so only a conservative alphabet gets through
/// (Pub/Sub's ids are decimal digits).
fn checked_message_id(id: String) -> Result<String, EnvelopeError> {
    let usable = (1..=128).contains(&id.len())
        && !id.starts_with('.')
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'));
    if usable {
        Ok(id)
    } else {
        Err(EnvelopeError::BadMessageId(id))
    }
}

fn checked_publish_time(text: &str) -> Result<DateTime<Utc>, EnvelopeError> {
    parse_timestamp(text).ok_or_else(|| EnvelopeError::BadPublishTime(text.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    fn body(json: &str) -> Bytes {
        Bytes::from(json.to_string())
    }

    #[test]
    fn wrapped_accepts_either_spelling_and_decodes_data() {
        let d = decode(
            &HeaderMap::new(),
            body(
                r#"{"message":{"data":"eyJhIjoxfQ==","message_id":"7","publish_time":"2026-11-25T07:54:20.468Z","attributes":{"k":"v"}},"subscription":"projects\/p\/subscriptions\/s","deliveryAttempt":3}"#,
            ),
        )
        .unwrap();
        assert_eq!(d.message_id, "7");
        assert_eq!(&d.data[..], br#"{"a":1}"#);
        assert_eq!(
            d.subscription.as_deref(),
            Some("projects/p/subscriptions/s")
        );
        assert_eq!(d.delivery_attempt, Some(3));
        assert_eq!(d.attributes["k"], "v");
    }

    #[test]
    fn wrapped_failures_name_the_problem() {
        let h = HeaderMap::new();
        assert!(matches!(
            decode(&h, body("nope")),
            Err(EnvelopeError::NotJson(_))
        ));
        assert_eq!(decode(&h, body("{}")), Err(EnvelopeError::NoMessage));
        assert_eq!(
            decode(
                &h,
                body(r#"{"message":{"data":"e30=","publishTime":"2026-11-25T07:54:20Z"}}"#)
            ),
            Err(EnvelopeError::NoMessageId)
        );
        assert!(matches!(
            decode(
                &h,
                body(
                    r#"{"message":{"data":"%%%","messageId":"1","publishTime":"2026-11-25T07:54:20Z"}}"#
                )
            ),
            Err(EnvelopeError::DataNotBase64(_))
        ));
        assert!(matches!(
            decode(
                &h,
                body(
                    r#"{"message":{"data":"e30=","messageId":"../x","publishTime":"2026-11-25T07:54:20Z"}}"#
                )
            ),
            Err(EnvelopeError::BadMessageId(_))
        ));
    }

    #[test]
    fn unwrapped_reads_metadata_headers_and_keeps_other_headers_as_attributes() {
        let mut h = HeaderMap::new();
        h.insert(MESSAGE_ID_HEADER, HeaderValue::from_static("42"));
        h.insert(
            PUBLISH_TIME_HEADER,
            HeaderValue::from_static("2026-11-25T07:54:20.468Z"),
        );
        h.insert(
            SUBSCRIPTION_HEADER,
            HeaderValue::from_static("projects/p/subscriptions/s"),
        );
        h.insert(
            "content-type",
            HeaderValue::from_static("application/x-www-form-urlencoded"),
        );
        h.insert("source", HeaderValue::from_static("checkout"));
        let d = decode(&h, body("{}")).unwrap();
        assert_eq!(d.message_id, "42");
        assert_eq!(
            d.attributes,
            BTreeMap::from([("source".into(), "checkout".into())])
        );
        assert_eq!(&d.data[..], b"{}");
    }
}
