//! Wrapped and unwrapped bodies with arbitrary headers through the envelope decoder: never a
//! panic; a decoded wrapped envelope, encoded again, decodes to the same delivery.

#![no_main]

use arbitrary::Arbitrary;
use axum::http::{HeaderMap, HeaderName, HeaderValue};
use base64::Engine;
use libfuzzer_sys::fuzz_target;
use serde_json::json;

use landfall::envelope::{self, Delivery};
use landfall::time::format_timestamp;

#[derive(Arbitrary, Debug)]
struct Push<'a> {
    headers: Vec<(&'a str, &'a [u8])>,
    body: &'a [u8],
}

/// The delivery as a wrapped envelope, the way Pub/Sub would send it.
fn wrapped(delivery: &Delivery) -> Vec<u8> {
    let mut message = json!({
        "data": base64::engine::general_purpose::STANDARD.encode(&delivery.data),
        "attributes": delivery.attributes,
        "messageId": delivery.message_id,
        "publishTime": format_timestamp(&delivery.publish_time),
    });
    if let Some(key) = &delivery.ordering_key {
        message["orderingKey"] = json!(key);
    }
    let mut envelope = json!({"message": message});
    if let Some(subscription) = &delivery.subscription {
        envelope["subscription"] = json!(subscription);
    }
    if let Some(attempt) = delivery.delivery_attempt {
        envelope["deliveryAttempt"] = json!(attempt);
    }
    envelope.to_string().into_bytes()
}

fuzz_target!(|push: Push| {
    let mut headers = HeaderMap::new();
    for (name, value) in push.headers {
        if let (Ok(name), Ok(value)) = (HeaderName::try_from(name), HeaderValue::from_bytes(value)) {
            headers.append(name, value);
        }
    }
    let body = bytes::Bytes::copy_from_slice(push.body);
    match envelope::decode(&headers, body) {
        Ok(delivery) => {
            let again = envelope::decode(&HeaderMap::new(), wrapped(&delivery).into())
                .unwrap_or_else(|e| panic!("{delivery:?} re-encoded is refused: {e}"));
            assert_eq!(again, delivery, "the re-encoded envelope decodes differently");
        }
        Err(error) => assert!(!error.to_string().is_empty()),
    }
});
