//! Test data: the fixture files (also used by the README's curl examples), push envelopes as
//! Pub/Sub builds them, and catalogs made from the shipped schemas.

use base64::Engine;
use serde_json::{Value, json};
use tempfile::TempDir;

pub const FIXTURES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures");

pub fn fixture(name: &str) -> Vec<u8> {
    std::fs::read(format!("{FIXTURES}/{name}")).unwrap_or_else(|e| panic!("fixture {name}: {e}"))
}

/// The decoded `message.data` of a wrapped fixture.
pub fn fixture_data(name: &str) -> Vec<u8> {
    let envelope: Value = serde_json::from_slice(&fixture(name)).unwrap();
    b64decode(envelope["message"]["data"].as_str().unwrap())
}

pub fn b64decode(text: &str) -> Vec<u8> {
    base64::engine::general_purpose::STANDARD
        .decode(text)
        .unwrap()
}

pub fn b64encode(data: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(data)
}

/// A wrapped push envelope as Pub/Sub sends it.
pub fn envelope(message_id: &str, data: &[u8]) -> Value {
    json!({
        "message": {
            "data": b64encode(data),
            "attributes": {},
            "messageId": message_id,
            "publishTime": "2026-11-25T10:00:00.000Z",
        },
        "subscription": "projects/test-proj/subscriptions/landfall",
    })
}

/// A wrapped envelope whose message carries these attributes.
pub fn envelope_with_attributes(message_id: &str, data: &[u8], attributes: Value) -> Value {
    let mut envelope = envelope(message_id, data);
    envelope["message"]["attributes"] = attributes;
    envelope
}

/// One of the shipped catalog's files (`schemas/NAME.json`), to copy or change.
pub fn shipped_schema(name: &str) -> Value {
    let path = format!("{}/schemas/{name}.json", env!("CARGO_MANIFEST_DIR"));
    serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap()
}

/// The test catalog's files (`tests/fixtures/catalog/NAME.json`).
pub fn catalog_fixture(name: &str) -> Value {
    serde_json::from_slice(&fixture(&format!("catalog/{name}.json"))).unwrap()
}

/// A catalog folder holding exactly these files (name → JSON Schema, or raw text).
pub fn catalog_dir(files: &[(&str, String)]) -> TempDir {
    let dir = tempfile::tempdir().unwrap();
    for (name, text) in files {
        std::fs::write(dir.path().join(name), text).unwrap();
    }
    dir
}

/// The shipped catalog with a new required field, `channel`, in `order`: an order that
/// landed before is refused by it.
pub fn stricter_order_catalog() -> TempDir {
    let mut order = shipped_schema("order");
    order["properties"]["channel"] = serde_json::json!({"type": "string"});
    order["required"]
        .as_array_mut()
        .unwrap()
        .push(serde_json::json!("channel"));
    shipped_catalog_with("order", order)
}

/// The shipped catalog with one file replaced.
pub fn shipped_catalog_with(name: &str, schema: Value) -> TempDir {
    let files: Vec<(&str, String)> = ["order", "inventory", "user_activity"]
        .into_iter()
        .map(|shipped| {
            let text = if shipped == name {
                schema.to_string()
            } else {
                shipped_schema(shipped).to_string()
            };
            (shipped, text)
        })
        .map(|(n, text)| {
            (
                match n {
                    "order" => "order.json",
                    "inventory" => "inventory.json",
                    _ => "user_activity.json",
                },
                text,
            )
        })
        .collect();
    catalog_dir(&files)
}

/// The object name of an event in the default layout (`--prefix output`, `event`), for
/// tests over many generated messages; tests of single messages spell the name out.
pub fn event_object(
    event_type: &str,
    time: &chrono::DateTime<chrono::Utc>,
    message_id: &str,
) -> String {
    format!(
        "output/{event_type}/{}/{event_type}_{}_{message_id}.json",
        time.format("%Y/%m/%d/%H/%M"),
        time.format("%Y%m%d%H%M%S")
    )
}
