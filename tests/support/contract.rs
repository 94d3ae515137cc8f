//! Every JSON body a test reads is checked against the schema `openapi/landfall.yaml`
//! documents for that response.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};

use reqwest::Response;
use serde_json::Value;

fn document() -> &'static Value {
    static DOC: OnceLock<Value> = OnceLock::new();
    DOC.get_or_init(|| {
        let text = std::fs::read_to_string(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/openapi/landfall.yaml"
        ))
        .unwrap();
        serde_yaml::from_str(&text).expect("openapi/landfall.yaml parses")
    })
}

/// The compiled schema at a JSON pointer of the document, compiled once.
fn validator(pointer: &str) -> Arc<jsonschema::Validator> {
    static COMPILED: OnceLock<Mutex<HashMap<String, Arc<jsonschema::Validator>>>> = OnceLock::new();
    let mut compiled = COMPILED.get_or_init(Default::default).lock().unwrap();
    compiled
        .entry(pointer.to_string())
        .or_insert_with(|| {
            // The whole document is the schema root so `$ref`s resolve; the `$ref` picks the
            // response.
            let mut schema = document().clone();
            schema["$ref"] = Value::String(pointer.to_string());
            Arc::new(jsonschema::validator_for(&schema).expect("openapi schemas compile"))
        })
        .clone()
}

/// Checks a real response body against the schema documented for it: the operation's own
/// response, or for 404 and 405 the shared ones every path answers with.
pub fn assert_matches_openapi(path: &str, method: &str, status: u16, body: &Value) {
    let doc = document();
    let documented = format!(
        "#/paths/{}/{method}/responses/{status}",
        path.replace('/', "~1")
    );
    let response = match (doc.pointer(&documented[1..]), status) {
        (Some(response), _) => match response.get("$ref").and_then(Value::as_str) {
            Some(reference) => reference.to_string(),
            None => documented,
        },
        (None, 404) => "#/components/responses/NotFound".to_string(),
        (None, 405) => "#/components/responses/MethodNotAllowed".to_string(),
        (None, _) => {
            panic!("openapi/landfall.yaml documents no {status} response for {method} {path}")
        }
    };
    let pointer = format!("{response}/content/application~1json/schema");
    assert!(
        doc.pointer(&pointer[1..]).is_some(),
        "openapi/landfall.yaml has no JSON schema at {pointer}"
    );
    if let Err(error) = validator(&pointer).validate(body) {
        panic!("{method} {path} {status} does not match openapi/landfall.yaml: {error}\n{body:#}");
    }
}

/// Reads a response as JSON after checking its status, and checks it against the OpenAPI file
/// (POST for /push, GET for everything else).
pub async fn json_body(response: Response, path: &str, expected_status: u16) -> Value {
    let method = if path == "/push" { "post" } else { "get" };
    json_body_of(response, method, path, expected_status).await
}

pub async fn json_body_of(
    response: Response,
    method: &str,
    path: &str,
    expected_status: u16,
) -> Value {
    let status = response.status().as_u16();
    let body: Value = response.json().await.expect("response body is JSON");
    assert_eq!(status, expected_status, "unexpected status, body: {body}");
    assert_matches_openapi(path, method, status, &body);
    body
}
