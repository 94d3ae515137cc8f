//! Pub/Sub push envelopes, wrapped (JSON) or unwrapped (`noWrapper` + `writeMetadata`), decoded
//! into one [`Delivery`].
//!
//! What is a Pub/Sub message is decided by one schema: `openapi/push-envelope.json`, the file
//! the OpenAPI document publishes. A wrapped body is validated against it; the unwrapped
//! form's headers are gathered into the same shape and validated by it too. Anything that
//! fails is not a Pub/Sub message at all (400), and the message says what was wrong in the
//! envelope's own terms (the field, or the header, and what it must be). A message whose
//! *payload* is bad is a poison message, and is handled downstream by the dead letter.

mod headers;

use std::collections::BTreeMap;
use std::sync::OnceLock;

use axum::http::HeaderMap;
use base64::Engine;
use bytes::Bytes;
use chrono::{DateTime, Utc};
use jsonschema::error::{TypeKind, ValidationErrorKind};
use jsonschema::paths::LocationSegment;
use jsonschema::{ValidationError, Validator};
use serde::Deserialize;
use serde_json::{Map, Value, json};

use crate::time::parse_timestamp;
pub use headers::{CREDENTIAL_HEADERS, HeaderPolicy};

/// The published schema of a push envelope.
pub const SCHEMA: &str = include_str!("../../openapi/push-envelope.json");

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
    /// The body does not parse (or names a key twice).
    #[error("body is not a Pub/Sub push envelope: it is not JSON: {0}")]
    NotJson(String),
    /// A part of the envelope is not what Pub/Sub sends; `place` names the field or header.
    #[error("{place}: {problem}")]
    Invalid { place: String, problem: String },
}

pub const MESSAGE_ID_HEADER: &str = "x-goog-pubsub-message-id";
const PUBLISH_TIME_HEADER: &str = "x-goog-pubsub-publish-time";
const SUBSCRIPTION_HEADER: &str = "x-goog-pubsub-subscription-name";
/// Google's reference names every metadata header `x-goog-pubsub-<KEY>`; the emulator sends
/// the ordering key as `x-goog-ordering-key`. Both are read, Google's first.
const ORDERING_KEY_HEADERS: [&str; 2] = ["x-goog-pubsub-ordering-key", "x-goog-ordering-key"];

/// Decodes either envelope form; the unwrapped one is recognised by its message-id header.
/// Which of its headers are attributes is the default [`HeaderPolicy`]'s call.
pub fn decode(headers: &HeaderMap, body: Bytes) -> Result<Delivery, EnvelopeError> {
    decode_with(headers, body, &HeaderPolicy::default())
}

/// [`decode`], with the operator's [`HeaderPolicy`] for the unwrapped form.
pub fn decode_with(
    headers: &HeaderMap,
    body: Bytes,
    policy: &HeaderPolicy,
) -> Result<Delivery, EnvelopeError> {
    if is_unwrapped(headers) {
        unwrapped(headers, body, policy)
    } else {
        wrapped(&body)
    }
}

/// Whether a push is of the unwrapped form (`noWrapper`): it has the message-id header.
pub fn is_unwrapped(headers: &HeaderMap) -> bool {
    headers.contains_key(MESSAGE_ID_HEADER)
}

/// The envelope schema, compiled once; `date-time` is checked by the same function that
/// reads the publish time, so the two cannot disagree.
fn validator() -> &'static Validator {
    static VALIDATOR: OnceLock<Validator> = OnceLock::new();
    VALIDATOR.get_or_init(|| {
        let schema: Value = serde_json::from_str(SCHEMA).expect("the envelope schema is JSON");
        jsonschema::draft202012::options()
            .should_validate_formats(true)
            .with_format("date-time", |s: &str| parse_timestamp(s).is_some())
            // Linear-time matching: `data` can be megabytes of base64.
            .with_pattern_options(jsonschema::PatternOptions::regex())
            .build(&schema)
            .expect("the envelope schema compiles")
    })
}

fn schema() -> &'static Value {
    static SCHEMA_VALUE: OnceLock<Value> = OnceLock::new();
    SCHEMA_VALUE.get_or_init(|| serde_json::from_str(SCHEMA).expect("the envelope schema is JSON"))
}

#[derive(Deserialize)]
struct Wrapped {
    message: WrappedMessage,
    subscription: Option<String>,
    /// A JSON Schema integer may be written `8.0`; the schema bounds it to 1..2³¹.
    #[serde(rename = "deliveryAttempt")]
    delivery_attempt: Option<serde_json::Number>,
}

#[derive(Deserialize)]
struct WrappedMessage {
    data: Option<String>,
    #[serde(default)]
    attributes: BTreeMap<String, String>,
    #[serde(rename = "messageId")]
    message_id_camel: Option<String>,
    message_id: Option<String>,
    #[serde(rename = "publishTime")]
    publish_time_camel: Option<String>,
    publish_time: Option<String>,
    #[serde(rename = "orderingKey")]
    ordering_key: Option<String>,
}

/// Where a problem is, said the way the sender knows it: a body field, or a header.
#[derive(Clone, Copy)]
enum Form {
    Wrapped,
    Unwrapped,
}

fn wrapped(body: &[u8]) -> Result<Delivery, EnvelopeError> {
    let value = crate::json::from_slice(body).map_err(EnvelopeError::NotJson)?;
    check(&value, Form::Wrapped)?;
    let envelope: Wrapped =
        serde_json::from_value(value).map_err(|e| invalid("body", e.to_string()))?;
    let message = envelope.message;
    let data = base64()
        .decode(message.data.unwrap_or_default())
        .map_err(|e| {
            invalid(
                "message.data",
                format!("is not base64: {}", base64_problem(&e)),
            )
        })?;
    Ok(Delivery {
        message_id: message
            .message_id_camel
            .or(message.message_id)
            .expect("the schema requires one"),
        publish_time: publish_time(message.publish_time_camel.or(message.publish_time))?,
        subscription: envelope.subscription,
        attributes: message.attributes,
        ordering_key: message.ordering_key.filter(|k| !k.is_empty()),
        delivery_attempt: envelope
            .delivery_attempt
            .and_then(|n| n.as_i64().or_else(|| n.as_f64().map(|f| f as i64))),
        data: Bytes::from(data),
    })
}

/// Standard base64; padding bits that are not zero are ignored, as the schema's pattern does.
fn base64() -> base64::engine::GeneralPurpose {
    let config = base64::engine::GeneralPurposeConfig::new().with_decode_allow_trailing_bits(true);
    base64::engine::GeneralPurpose::new(&base64::alphabet::STANDARD, config)
}

fn base64_problem(error: &base64::DecodeError) -> String {
    use base64::DecodeError::*;
    match error {
        InvalidByte(offset, byte) => {
            format!(
                "{:?} at position {offset} is not a base64 character",
                *byte as char
            )
        }
        InvalidLength(length) => format!("{length} characters cannot be base64"),
        InvalidLastSymbol(offset, _) => {
            format!("the character at position {offset} cannot end base64")
        }
        InvalidPadding => "its `=` padding is wrong".into(),
    }
}

fn publish_time(text: Option<String>) -> Result<DateTime<Utc>, EnvelopeError> {
    text.as_deref()
        .and_then(parse_timestamp)
        .ok_or_else(|| invalid("message.publishTime", "is not an RFC 3339 timestamp".into()))
}

fn unwrapped(
    headers: &HeaderMap,
    body: Bytes,
    policy: &HeaderPolicy,
) -> Result<Delivery, EnvelopeError> {
    let header = |name: &str| -> Result<Option<String>, EnvelopeError> {
        headers
            .get(name)
            .map(|v| {
                v.to_str().map(str::to_string).map_err(|_| {
                    invalid(
                        &format!("header {name}"),
                        "is not text (visible ASCII)".into(),
                    )
                })
            })
            .transpose()
    };
    let message_id = header(MESSAGE_ID_HEADER)?;
    let publish = header(PUBLISH_TIME_HEADER)?;
    let subscription = header(SUBSCRIPTION_HEADER)?;
    let ordering_key = match header(ORDERING_KEY_HEADERS[0])? {
        Some(key) => Some(key),
        None => header(ORDERING_KEY_HEADERS[1])?,
    };
    let attributes = policy.attributes(headers)?;
    // The same shape as a wrapped envelope, so that one schema decides both forms.
    let mut message = Map::new();
    message.insert("messageId".into(), json!(message_id));
    if let Some(time) = &publish {
        message.insert("publishTime".into(), json!(time));
    }
    message.insert("attributes".into(), json!(attributes));
    let mut envelope = json!({"message": message});
    if let Some(subscription) = &subscription {
        envelope["subscription"] = json!(subscription);
    }
    check(&envelope, Form::Unwrapped)?;
    Ok(Delivery {
        message_id: message_id.expect("the form is chosen by this header"),
        publish_time: publish_time(publish)?,
        subscription,
        attributes,
        ordering_key: ordering_key.filter(|k| !k.is_empty()),
        delivery_attempt: None,
        data: body,
    })
}

pub(crate) fn invalid(place: &str, problem: String) -> EnvelopeError {
    EnvelopeError::Invalid {
        place: place.to_string(),
        problem,
    }
}

/// The envelope against the published schema; the first problem in plain words.
fn check(envelope: &Value, form: Form) -> Result<(), EnvelopeError> {
    let validator = validator();
    if validator.is_valid(envelope) {
        return Ok(());
    }
    // The first error only: `iter_errors` would make one for every bad attribute first.
    let error = validator
        .validate(envelope)
        .expect_err("an invalid instance has an error");
    let segments = segments(&error);
    Err(invalid(
        &place(&segments, form),
        problem(&error, &segments, form),
    ))
}

fn segments(error: &ValidationError) -> Vec<String> {
    error
        .instance_path()
        .iter()
        .map(|s| match s {
            LocationSegment::Property(name) => name.to_string(),
            LocationSegment::Index(i) => i.to_string(),
        })
        .collect()
}

/// `message.attributes.source`, or in the unwrapped form the header it came from.
fn place(segments: &[String], form: Form) -> String {
    let path: Vec<&str> = segments.iter().map(String::as_str).collect();
    match (form, path.as_slice()) {
        (_, []) => "body".into(),
        (Form::Unwrapped, ["message", "messageId"]) => format!("header {MESSAGE_ID_HEADER}"),
        (Form::Unwrapped, ["message", "publishTime"]) => format!("header {PUBLISH_TIME_HEADER}"),
        (Form::Unwrapped, ["message", "attributes", key]) => format!("header {key}"),
        (Form::Unwrapped, ["message", "attributes"]) => "headers".into(),
        _ => path.join("."),
    }
}

fn problem(error: &ValidationError, segments: &[String], form: Form) -> String {
    match error.kind() {
        ValidationErrorKind::Type { kind } => format!(
            "must be {}, not {}",
            expected(kind),
            json_type(error.instance())
        ),
        ValidationErrorKind::Required { property } => {
            format!("has no `{}`", property.as_str().unwrap_or_default())
        }
        ValidationErrorKind::AnyOf { .. } => {
            let wanted = if error.schema_path().as_str().contains("/allOf/0") {
                ("messageId", "message_id", MESSAGE_ID_HEADER)
            } else {
                ("publishTime", "publish_time", PUBLISH_TIME_HEADER)
            };
            match form {
                Form::Wrapped => format!("has no `{}` (nor `{}`)", wanted.0, wanted.1),
                Form::Unwrapped => format!("has no header {}", wanted.2),
            }
        }
        ValidationErrorKind::MaxProperties { limit } => {
            format!(
                "holds {} attributes; Pub/Sub sends at most {limit}",
                object_len(error.instance())
            )
        }
        ValidationErrorKind::MaxLength { limit } => {
            format!(
                "is longer than {limit} characters; Pub/Sub sends attribute values of at most 1,024 bytes"
            )
        }
        ValidationErrorKind::PropertyNames { error } => match error.kind() {
            ValidationErrorKind::MaxLength { limit } => format!(
                "an attribute key is longer than {limit} characters; Pub/Sub sends keys of at most 256 bytes"
            ),
            _ => "an attribute key is empty".into(),
        },
        ValidationErrorKind::Minimum { .. } | ValidationErrorKind::Maximum { .. } => {
            format!("must be {}", description(segments).unwrap_or("in range"))
        }
        ValidationErrorKind::Pattern { .. } | ValidationErrorKind::Format { .. } => {
            format!(
                "must be {}",
                description(segments).unwrap_or("as the envelope schema says")
            )
        }
        _ => error.masked().to_string(),
    }
}

fn expected(kind: &TypeKind) -> String {
    let name = |t: &jsonschema::JsonType| match t.to_string().as_str() {
        "object" => "an object".to_string(),
        "array" => "an array".to_string(),
        "integer" => "a whole number".to_string(),
        other => format!("a {other}"),
    };
    match kind {
        TypeKind::Single(t) => name(t),
        TypeKind::Multiple(types) => types
            .iter()
            .map(|t| name(&t))
            .collect::<Vec<_>>()
            .join(" or "),
    }
}

fn json_type(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

fn object_len(value: &Value) -> usize {
    value.as_object().map_or(0, Map::len)
}

/// The `description` the schema gives the field at this place (following one `$ref`).
fn description(segments: &[String]) -> Option<&'static str> {
    let root = schema();
    let mut node = root;
    for segment in segments {
        node = node.get("properties")?.get(segment)?;
        if let Some(reference) = node.get("$ref").and_then(Value::as_str) {
            node = root.pointer(reference.strip_prefix('#')?)?;
        }
    }
    node.get("description").and_then(Value::as_str)
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    fn body(json: &str) -> Bytes {
        Bytes::from(json.to_string())
    }

    fn problem_of(json: &str) -> String {
        decode(&HeaderMap::new(), body(json))
            .unwrap_err()
            .to_string()
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
        let whole = decode(
            &HeaderMap::new(),
            body(r#"{"message":{"messageId":"7","publishTime":"2026-11-25T07:54:20Z"},"deliveryAttempt":8.0}"#),
        )
        .unwrap();
        assert_eq!(
            whole.delivery_attempt,
            Some(8),
            "8.0 is an integer to JSON Schema"
        );
    }

    #[test]
    fn every_problem_is_said_in_the_envelopes_own_terms() {
        let ok = |message: &str| format!(r#"{{"message":{{{message}}}}}"#);
        let time = r#""publishTime":"2026-11-25T07:54:20Z""#;
        let cases = [
            (
                "nope".to_string(),
                "body is not a Pub/Sub push envelope: it is not JSON: a value is expected here and something else is (line 1, column 2, byte 1)",
            ),
            ("[1,2]".to_string(), "body: must be an object, not an array"),
            (
                format!(r#"{{"message":{{"messageId":"1","messageId":"2",{time}}}}}"#),
                r#"body is not a Pub/Sub push envelope: it is not JSON: the key "messageId" appears twice in one object (line 1, column 43, byte 42)"#,
            ),
            ("null".to_string(), "body: must be an object, not null"),
            ("{}".to_string(), "body: has no `message`"),
            (
                r#"{"message":"x"}"#.to_string(),
                "message: must be an object, not a string",
            ),
            (ok(time), "message: has no `messageId` (nor `message_id`)"),
            (
                ok(r#""messageId":"1""#),
                "message: has no `publishTime` (nor `publish_time`)",
            ),
            (
                ok(&format!(r#""messageId":"",{time}"#)),
                "message.messageId: must be 1 to 128 letters, digits, `-`, `_` or `.`, not starting with `.` (Pub/Sub's ids are decimal digits; the id names landing objects)",
            ),
            (
                ok(&format!(r#""messageId":"../x",{time}"#)),
                "message.messageId: must be 1 to 128 letters, digits, `-`, `_` or `.`, not starting with `.` (Pub/Sub's ids are decimal digits; the id names landing objects)",
            ),
            (
                ok(r#""messageId":"1","publishTime":"0363-01-01T00:00:00Z""#),
                "message.publishTime: must be an RFC 3339 timestamp in the years 2000 to 2099 (Pub/Sub's own publish time)",
            ),
            (
                ok(r#""messageId":"1","publishTime":"2026-11-25 07:54:20Z""#),
                "message.publishTime: must be an RFC 3339 timestamp in the years 2000 to 2099 (Pub/Sub's own publish time)",
            ),
            (
                ok(&format!(r#""messageId":"1",{time},"data":"!!!!""#)),
                "message.data: must be standard base64 with padding: the message data (an event as JSON)",
            ),
            (
                ok(&format!(r#""messageId":"1",{time},"data":7"#)),
                "message.data: must be a string, not a number",
            ),
            (
                ok(&format!(r#""messageId":"1",{time},"attributes":{{"k":1}}"#)),
                "message.attributes.k: must be a string, not a number",
            ),
            (
                format!(r#"{{"message":{{"messageId":"1",{time}}},"deliveryAttempt":0}}"#),
                "deliveryAttempt: must be a whole number from 1 (only with a dead-letter policy)",
            ),
        ];
        for (input, expected) in cases {
            assert_eq!(problem_of(&input), expected, "{input}");
        }
    }

    #[test]
    fn pub_sub_limits_on_attributes_are_named() {
        let many: Map<String, Value> = (0..101).map(|i| (format!("k{i}"), json!("v"))).collect();
        let envelope = json!({"message": {"messageId": "1", "publishTime": "2026-11-25T07:54:20Z", "attributes": many}});
        assert_eq!(
            problem_of(&envelope.to_string()),
            "message.attributes: holds 101 attributes; Pub/Sub sends at most 100"
        );
        let long_value = json!({"message": {"messageId": "1", "publishTime": "2026-11-25T07:54:20Z", "attributes": {"k": "v".repeat(1025)}}});
        assert_eq!(
            problem_of(&long_value.to_string()),
            "message.attributes.k: is longer than 1024 characters; Pub/Sub sends attribute values of at most 1,024 bytes"
        );
        let long_key = json!({"message": {"messageId": "1", "publishTime": "2026-11-25T07:54:20Z", "attributes": {"k".repeat(257): "v"}}});
        assert_eq!(
            problem_of(&long_key.to_string()),
            "message.attributes: an attribute key is longer than 256 characters; Pub/Sub sends keys of at most 256 bytes"
        );
    }

    fn unwrapped_headers() -> HeaderMap {
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
        h
    }

    #[test]
    fn unwrapped_reads_metadata_headers_and_keeps_other_headers_as_attributes() {
        let mut h = unwrapped_headers();
        h.insert("source", HeaderValue::from_static("checkout"));
        let d = decode(&h, body("{}")).unwrap();
        assert_eq!(d.message_id, "42");
        assert_eq!(
            d.attributes,
            BTreeMap::from([("source".into(), "checkout".into())])
        );
        assert_eq!(&d.data[..], b"{}");
    }

    #[test]
    fn wrapped_reads_the_ordering_key_and_an_empty_one_is_none() {
        let with = |key: &str| {
            decode(
                &HeaderMap::new(),
                body(&format!(
                    r#"{{"message":{{"messageId":"7","publishTime":"2026-11-25T07:54:20Z","orderingKey":"{key}"}}}}"#
                )),
            )
            .unwrap()
            .ordering_key
        };
        assert_eq!(with("cart-7").as_deref(), Some("cart-7"));
        assert_eq!(with(""), None);
    }

    #[test]
    fn unwrapped_reads_the_ordering_key_under_either_name_and_an_empty_one_is_none() {
        for name in ORDERING_KEY_HEADERS {
            let mut h = unwrapped_headers();
            h.insert(name, HeaderValue::from_static("cart-7"));
            let d = decode(&h, body("{}")).unwrap();
            assert_eq!(d.ordering_key.as_deref(), Some("cart-7"), "{name}");
            assert!(d.attributes.is_empty(), "{name}");
            h.insert(name, HeaderValue::from_static(""));
            assert_eq!(decode(&h, body("{}")).unwrap().ordering_key, None);
        }
        let mut both = unwrapped_headers();
        both.insert(ORDERING_KEY_HEADERS[0], HeaderValue::from_static("google"));
        both.insert(
            ORDERING_KEY_HEADERS[1],
            HeaderValue::from_static("emulator"),
        );
        assert_eq!(
            decode(&both, body("{}")).unwrap().ordering_key.as_deref(),
            Some("google")
        );
    }

    #[test]
    fn each_base64_problem_is_said_in_characters_and_positions() {
        let problem = |text: &str| base64_problem(&base64().decode(text).unwrap_err());
        assert_eq!(
            problem("ab!d"),
            "'!' at position 2 is not a base64 character"
        );
        assert_eq!(problem("abcde"), "5 characters cannot be base64");
        assert_eq!(
            problem("ab=c"),
            "'=' at position 2 is not a base64 character"
        );
        assert_eq!(
            base64_problem(&base64::DecodeError::InvalidLastSymbol(3, b'x')),
            "the character at position 3 cannot end base64"
        );
        assert_eq!(
            base64_problem(&base64::DecodeError::InvalidPadding),
            "its `=` padding is wrong"
        );
    }

    #[test]
    fn credentials_never_become_attributes() {
        let mut h = unwrapped_headers();
        for name in CREDENTIAL_HEADERS.iter().chain(&[
            "x-goog-iap-jwt-assertion",
            "x-cloud-trace-context",
            "x-forwarded-for",
        ]) {
            h.insert(*name, HeaderValue::from_static("secret-credential"));
        }
        h.insert("source", HeaderValue::from_static("checkout"));
        let d = decode(&h, body("{}")).unwrap();
        assert_eq!(d.attributes.keys().collect::<Vec<_>>(), ["source"]);
    }

    #[test]
    fn unwrapped_problems_name_the_header() {
        let mut h = unwrapped_headers();
        h.insert(PUBLISH_TIME_HEADER, HeaderValue::from_static("yesterday"));
        assert_eq!(
            decode(&h, body("{}")).unwrap_err().to_string(),
            "header x-goog-pubsub-publish-time: must be an RFC 3339 timestamp in the years 2000 to 2099 (Pub/Sub's own publish time)"
        );
        h.remove(PUBLISH_TIME_HEADER);
        assert_eq!(
            decode(&h, body("{}")).unwrap_err().to_string(),
            "message: has no header x-goog-pubsub-publish-time"
        );
        let mut h = unwrapped_headers();
        h.insert(MESSAGE_ID_HEADER, HeaderValue::from_static("a/b"));
        assert!(
            decode(&h, body("{}"))
                .unwrap_err()
                .to_string()
                .starts_with("header x-goog-pubsub-message-id: must be 1 to 128")
        );
    }

    #[test]
    fn unwrapped_attribute_problems_name_their_headers() {
        let problem = |h: &HeaderMap| decode(h, body("{}")).unwrap_err().to_string();
        let mut h = unwrapped_headers();
        h.insert("source", HeaderValue::from_str(&"x".repeat(1025)).unwrap());
        assert!(
            problem(&h).starts_with("header source: "),
            "{}",
            problem(&h)
        );
        let mut h = unwrapped_headers();
        for i in 0..101 {
            h.insert(
                axum::http::HeaderName::from_bytes(format!("a{i}").as_bytes()).unwrap(),
                HeaderValue::from_static("v"),
            );
        }
        assert!(problem(&h).starts_with("headers: "), "{}", problem(&h));
    }

    #[test]
    fn padding_bits_need_not_be_zero_as_the_schema_allows() {
        let d = decode(
            &HeaderMap::new(),
            body(r#"{"message":{"data":"QR==","messageId":"1","publishTime":"2026-11-25T07:54:20Z"}}"#),
        )
        .unwrap();
        assert_eq!(&d.data[..], b"A");
    }
}
