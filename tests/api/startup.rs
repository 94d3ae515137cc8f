//! Start-up in production shape, in a fresh process: the Google clients are built against
//! their real https endpoints. Both Google crates compile in a rustls crypto backend of their
//! own; unless landfall picks one, building the first https client panics. An emulator test
//! (plain http) cannot show that, so this one starts the real binary without emulators.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};

use serde_json::json;

use crate::oidc::{AUDIENCE, PUSHER, TestKey};

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

    let mut child = Command::new(env!("CARGO_BIN_EXE_landfall"))
        .args(["--host", "127.0.0.1", "--port", "0", "--log-format", "json"])
        .args([
            "--gcs-bucket",
            "shop-landing",
            "--bigquery-project",
            "shop-data",
        ])
        .args(["--oidc-audience", AUDIENCE, "--oidc-allowed-email", PUSHER])
        .args(["--oidc-jwks-url", "http://127.0.0.1:9/certs"])
        .env("GOOGLE_APPLICATION_CREDENTIALS", &credentials)
        .env_remove("STORAGE_EMULATOR_HOST")
        .env_remove("BIGQUERY_EMULATOR_HOST")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();

    let mut serving = false;
    for line in BufReader::new(child.stdout.take().unwrap()).lines() {
        let entry: serde_json::Value = serde_json::from_str(&line.unwrap()).unwrap();
        if entry["message"] == "landfall is serving" {
            serving = true;
            break;
        }
    }
    let _ = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status();
    let output = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(serving, "landfall did not start: {stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
    assert!(output.status.success(), "exit {}: {stderr}", output.status);
}
