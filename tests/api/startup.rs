//! Start-up in production shape, in a fresh process: the Google clients are built against
//! their real https endpoints. Both Google crates compile in a rustls crypto backend of their
//! own; unless landfall picks one, building the first https client panics. An emulator test
//! (plain http) cannot show that, so this one starts the real binary without emulators.

use serde_json::json;

use crate::support::Binary;
use crate::support::oidc::{AUDIENCE, PUSHER, TestKey};

#[test]
fn production_google_clients_build_and_the_service_starts() {
    let dir = tempfile::tempdir().unwrap();
    // Application Default Credentials from a (made-up) service-account key: no network needed.
    let key = TestKey::generate("sa-key");
    let credentials = dir.path().join("service-account.json");
    let key_file = json!({
        "type": "service_account", "project_id": "shop-data", "private_key_id": "sa-key",
        "private_key": key.private_pem, "client_email": "landfall@shop-data.iam.gserviceaccount.com",
        "client_id": "1", "token_uri": "https://oauth2.googleapis.com/token",
    });
    std::fs::write(&credentials, key_file.to_string()).unwrap();

    let credentials = credentials.to_str().unwrap();
    let landfall = Binary::start(
        &[
            "--gcs-bucket",
            "shop-landing",
            "--bigquery-project",
            "shop-data",
            "--oidc-audience",
            AUDIENCE,
            "--oidc-allowed-email",
            PUSHER,
            "--oidc-jwks-url",
            "http://127.0.0.1:9/certs",
        ],
        &[("GOOGLE_APPLICATION_CREDENTIALS", credentials)],
    );
    landfall.send("TERM");
    let mut landfall = landfall;
    let status = landfall.wait();
    let stderr = landfall.stderr();
    assert!(!stderr.contains("panicked"), "{stderr}");
    assert!(status.success(), "exit {status}: {stderr}");
}
