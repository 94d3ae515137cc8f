//! Credentials are never data: unwrapped pushes carrying every header that holds a credential
//! (an event and a poison message) land with none of them in any row, landing object or its
//! metadata, batch line, dead-letter document, the log or the metrics — with each
//! authentication mode that reads such a header, in both layouts.

use crate::support::oidc::{AUDIENCE, JwksServer, PUSHER, TestKey, google_claims};
use crate::support::*;

/// Each credential header with a secret of its own, to look for afterwards.
fn credentials(token: &str) -> Vec<(&'static str, String)> {
    vec![
        ("authorization", format!("Bearer {token}")),
        ("x-serverless-authorization", format!("Bearer {token}")),
        ("proxy-authorization", "Basic cHJveHktc2VjcmV0".to_string()),
        ("cookie", "session=cookie-secret-4711".to_string()),
        ("x-api-key", "api-key-secret-0815".to_string()),
        ("x-goog-iap-jwt-assertion", "iap-secret-jwt".to_string()),
        // Names that only look like credentials: withheld by the rule, not by a list.
        ("x-auth-token", "auth-token-secret-1".to_string()),
        ("api-key", "api-key-secret-2".to_string()),
        ("x-access-token", "access-token-secret-3".to_string()),
        ("x-amz-security-token", "amz-token-secret-4".to_string()),
        ("private-token", "private-token-secret-5".to_string()),
        ("x-upstream-authorization", "upstream-secret-6".to_string()),
    ]
}

/// The headers above that are withheld by the rule (and counted), not by name.
const LOOK_LIKE_CREDENTIALS: usize = 6;

fn secrets(token: &str) -> Vec<String> {
    let signature = token.rsplit('.').next().unwrap().to_string();
    vec![
        token.to_string(),
        signature,
        "cHJveHktc2VjcmV0".into(),
        "cookie-secret-4711".into(),
        "api-key-secret-0815".into(),
        "iap-secret-jwt".into(),
        "auth-token-secret-1".into(),
        "api-key-secret-2".into(),
        "access-token-secret-3".into(),
        "amz-token-secret-4".into(),
        "private-token-secret-5".into(),
        "upstream-secret-6".into(),
    ]
}

/// Where a credential could land: every value of every row of every table, every landing
/// object and its metadata (a file's extended attribute), the log and the metrics.
fn everything_stored(data_dir: &std::path::Path) -> Vec<(String, String)> {
    let mut places = Vec::new();
    for table in crate::support::app::tables(data_dir) {
        let values = crate::support::app::row_texts(data_dir, &table).join("\n");
        places.push((format!("a row of {table}"), values));
    }
    let root = data_dir.join("landing");
    for name in crate::support::app::landed_objects(&root) {
        let path = root.join(&name);
        let body = String::from_utf8_lossy(&std::fs::read(&path).unwrap()).to_string();
        places.push((format!("the object {name}"), body));
        let mut buffer = vec![0u8; 64 * 1024];
        if let Ok(len) = rustix::fs::getxattr(&path, "user.landfall", &mut buffer[..]) {
            let metadata = String::from_utf8_lossy(&buffer[..len]).to_string();
            places.push((format!("the metadata of {name}"), metadata));
        }
    }
    places
}

/// An unwrapped push of `data` with every credential header, as message `id`.
async fn push_with_credentials(
    landfall: &Binary,
    id: &str,
    data: Vec<u8>,
    token: &str,
) -> serde_json::Value {
    let mut request = reqwest::Client::new()
        .post(landfall.url("/push"))
        .header("x-goog-pubsub-message-id", id)
        .header("x-goog-pubsub-publish-time", "2026-11-25T09:20:01Z")
        .header("source", "warehouse-scanner")
        .body(data);
    for (name, value) in credentials(token) {
        request = request.header(name, value);
    }
    json_body(request.send().await.unwrap(), "/push", 200).await
}

async fn push_with_every_credential(mode: &str, layout: &str, token: &str, jwks: &JwksServer) {
    let data = tempfile::tempdir().unwrap();
    let dir = data.path().to_str().unwrap();
    let mut args = vec![
        "--data-dir",
        dir,
        "--landing-layout",
        layout,
        "--auth",
        mode,
        "--oidc-audience",
        AUDIENCE,
        "--oidc-allowed-email",
        PUSHER,
    ];
    if mode == "oidc" {
        args.extend(["--oidc-jwks-url", &jwks.url]);
    }
    let landfall = Binary::start(&args, &[]);
    landfall.wait_until_ready().await;
    let event = push_with_credentials(
        &landfall,
        "3000001",
        fixture("unwrapped-inventory.json"),
        token,
    )
    .await;
    assert_eq!(event["outcome"], "landed", "{mode}: {event}");
    let poison = push_with_credentials(&landfall, "3000002", b"{not json".to_vec(), token).await;
    assert_eq!(poison["outcome"], "dead_lettered", "{mode}: {poison}");
    let metrics = reqwest::get(landfall.url("/metrics"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert_eq!(
        sample(
            &parse_exposition(&metrics),
            "landfall_withheld_headers_total",
            &[]
        ),
        Some(2.0 * LOOK_LIKE_CREDENTIALS as f64),
        "{mode} {layout}: the withheld headers are counted"
    );
    landfall.send("TERM");
    let mut landfall = landfall;
    assert!(landfall.wait().success());

    let attributes = crate::support::app::query(data.path(), "SELECT attributes FROM inventory");
    assert_eq!(
        attributes,
        vec![vec![text(r#"{"source":"warehouse-scanner"}"#)]],
        "{mode} {layout}: the attribute itself is kept"
    );
    let mut places = everything_stored(data.path());
    assert!(
        places
            .iter()
            .filter(|(place, _)| place.starts_with("the object"))
            .count()
            >= 2,
        "{mode} {layout}: the event and the dead letter landed: {places:?}"
    );
    let logs: String = landfall.logs().iter().map(|l| l.to_string()).collect();
    places.push(("the log".into(), logs + &landfall.stderr()));
    places.push(("the metrics".into(), metrics));
    for secret in secrets(token) {
        for (place, text) in &places {
            assert!(
                !text.contains(&secret),
                "{mode} {layout}: a credential reached {place}: {secret}"
            );
        }
    }
}

#[tokio::test]
async fn the_operator_keeps_a_header_that_only_looks_like_a_credential() {
    let app = spawn_app_with(&["--keep-header", "Idempotency-Key"]).await;
    let ack = app
        .client
        .post(format!("{}/push", app.address))
        .header("x-goog-pubsub-message-id", "3000009")
        .header("x-goog-pubsub-publish-time", "2026-11-25T09:20:01Z")
        .header("idempotency-key", "k-7")
        .header("x-session-id", "s-secret")
        .body(fixture("unwrapped-inventory.json"))
        .send()
        .await
        .unwrap();
    json_body(ack, "/push", 200).await;
    assert_eq!(
        app.query("SELECT attributes FROM inventory"),
        vec![vec![text(r#"{"idempotency-key":"k-7"}"#)]]
    );
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_credential_header_reaches_an_attribute_a_row_an_object_a_log_or_a_metric() {
    let key = TestKey::generate("k1");
    let jwks = JwksServer::start(vec![key.jwk.clone()], true).await;
    let token = key.sign(&google_claims());
    for layout in ["event", "batch"] {
        push_with_every_credential("oidc", layout, &token, &jwks).await;
    }
    // Behind Cloud Run the signature arrives removed.
    let (signed, _) = token.rsplit_once('.').unwrap();
    push_with_every_credential(
        "cloud-run",
        "event",
        &format!("{signed}.SIGNATURE_REMOVED_BY_GOOGLE"),
        &jwks,
    )
    .await;
}
