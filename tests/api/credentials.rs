//! Credentials are never data: an unwrapped push carrying every header that holds a
//! credential lands with none of them in its attributes, its row, its landing object, the
//! log or the metrics — with each authentication mode that reads such a header.

use crate::helpers::*;
use crate::oidc::{AUDIENCE, JwksServer, PUSHER, TestKey, google_claims};

/// Each credential header with a secret of its own, to look for afterwards.
fn credentials(token: &str) -> Vec<(&'static str, String)> {
    vec![
        ("authorization", format!("Bearer {token}")),
        ("x-serverless-authorization", format!("Bearer {token}")),
        ("proxy-authorization", "Basic cHJveHktc2VjcmV0".to_string()),
        ("cookie", "session=cookie-secret-4711".to_string()),
        ("x-api-key", "api-key-secret-0815".to_string()),
        ("x-goog-iap-jwt-assertion", "iap-secret-jwt".to_string()),
    ]
}

fn secrets(token: &str) -> Vec<String> {
    let signature = token.rsplit('.').next().unwrap().to_string();
    vec![
        token.to_string(),
        signature,
        "cHJveHktc2VjcmV0".into(),
        "cookie-secret-4711".into(),
        "api-key-secret-0815".into(),
        "iap-secret-jwt".into(),
    ]
}

async fn push_with_every_credential(mode: &str, token: &str, jwks: &JwksServer) {
    let data = tempfile::tempdir().unwrap();
    let dir = data.path().to_str().unwrap();
    let mut args = vec![
        "--data-dir",
        dir,
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
    let client = reqwest::Client::new();
    for _ in 0..100 {
        if client
            .get(landfall.url("/readyz"))
            .send()
            .await
            .unwrap()
            .status()
            == 200
        {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    let mut request = client
        .post(landfall.url("/push"))
        .header("x-goog-pubsub-message-id", "3000001")
        .header("x-goog-pubsub-publish-time", "2026-11-25T09:20:01Z")
        .header("source", "warehouse-scanner")
        .body(fixture("unwrapped-inventory.json"));
    for (name, value) in credentials(token) {
        request = request.header(name, value);
    }
    let ack = json_body(request.send().await.unwrap(), "/push", 200).await;
    assert_eq!(ack["outcome"], "landed", "{mode}: {ack}");
    let metrics = client
        .get(landfall.url("/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    landfall.send("TERM");
    let mut landfall = landfall;
    assert!(landfall.wait().success());

    let db = rusqlite::Connection::open(data.path().join("warehouse.db")).unwrap();
    let attributes: String = db
        .query_row("SELECT attributes FROM inventory", [], |r| r.get(0))
        .unwrap();
    assert_eq!(attributes, r#"{"source":"warehouse-scanner"}"#, "{mode}");
    let row: String = db
        .query_row("SELECT json_array(inventory.*) FROM inventory", [], |r| {
            r.get(0)
        })
        .unwrap_or_default();
    let object = ack["landing_uri"]
        .as_str()
        .unwrap()
        .strip_prefix("file://")
        .unwrap();
    let mut buffer = vec![0u8; 16 * 1024];
    let len = rustix::fs::getxattr(object, "user.landfall", &mut buffer[..]).unwrap();
    let object_metadata = String::from_utf8_lossy(&buffer[..len]).to_string();
    let object_body = String::from_utf8(std::fs::read(object).unwrap()).unwrap();
    let logs: String = landfall.logs().iter().map(|l| l.to_string()).collect();
    for secret in secrets(token) {
        for (place, text) in [
            ("the row", &row),
            ("the landing object's metadata", &object_metadata),
            ("the landing object", &object_body),
            ("the log", &logs),
            ("the metrics", &metrics),
        ] {
            assert!(
                !text.contains(&secret),
                "{mode}: a credential reached {place}: {secret}"
            );
        }
    }
    assert!(
        object_metadata.contains("warehouse-scanner"),
        "the attribute itself is kept"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_credential_header_reaches_an_attribute_a_row_an_object_a_log_or_a_metric() {
    let key = TestKey::generate("k1");
    let jwks = JwksServer::start(vec![key.jwk.clone()], true).await;
    let token = key.sign(&google_claims());
    push_with_every_credential("oidc", &token, &jwks).await;
    // Behind Cloud Run the signature arrives removed.
    let (signed, _) = token.rsplit_once('.').unwrap();
    push_with_every_credential(
        "cloud-run",
        &format!("{signed}.SIGNATURE_REMOVED_BY_GOOGLE"),
        &jwks,
    )
    .await;
}
