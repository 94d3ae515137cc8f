//! Every error has the documented `{"error", "message"}` body, also those the router makes by
//! itself; a misconfigured start names every problem at once, with no stack trace.

use crate::support::*;

#[tokio::test]
async fn an_unknown_path_is_a_documented_404() {
    let app = spawn_app().await;

    let response = app.get("/nope?x=1").await;

    let body = json_body_of(response, "get", "/nope", 404).await;
    assert_eq!(body["error"], "not_found");
    assert_eq!(body["message"], "no such path: GET /nope");
    let response = app
        .client
        .post(format!("{}/v1/push", app.address))
        .send()
        .await
        .unwrap();
    json_body_of(response, "post", "/v1/push", 404).await;
    app.stop().await;
}

#[tokio::test]
async fn a_wrong_method_is_a_documented_405_that_keeps_allow() {
    let app = spawn_app().await;

    let response = app.get("/push").await;

    assert_eq!(response.headers()["allow"], "POST");
    assert_eq!(response.headers()["content-type"], "application/json");
    let body = json_body_of(response, "get", "/push", 405).await;
    assert_eq!(body["error"], "method_not_allowed");
    assert_eq!(body["message"], "method GET is not allowed on /push");
    for (method, path) in [
        (reqwest::Method::POST, "/healthz"),
        (reqwest::Method::DELETE, "/readyz"),
        (reqwest::Method::PUT, "/metrics"),
    ] {
        let response = app
            .client
            .request(method.clone(), format!("{}{path}", app.address))
            .send()
            .await
            .unwrap();
        let allow = response.headers()["allow"].to_str().unwrap().to_string();
        assert!(allow.contains("GET"), "{path}: {allow}");
        json_body_of(response, method.as_str(), path, 405).await;
    }
    app.stop().await;
}

#[test]
fn every_missing_setting_is_named_at_once_with_its_flag_and_variable() {
    let output = landfall(&[
        "--port",
        "0",
        "--gcs-bucket",
        "shop-landing",
        "--prefix",
        "../up",
        "--max-concurrency",
        "0",
    ]);

    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(2), "{stderr}");
    for expected in [
        "landfall: invalid configuration:",
        "  - --oidc-audience (LANDFALL_OIDC_AUDIENCE) is required for OIDC authentication",
        "  - --oidc-allowed-email (LANDFALL_OIDC_ALLOWED_EMAIL) is required for OIDC authentication",
        "  - --prefix (LANDFALL_PREFIX) \"../up\" must be one or more non-empty path segments",
        "  - --max-concurrency (LANDFALL_MAX_CONCURRENCY) must be at least 1",
    ] {
        assert!(
            stderr.contains(expected),
            "missing {expected:?} in\n{stderr}"
        );
    }
    assert_eq!(stderr.lines().count(), 5, "one line per problem:\n{stderr}");
    assert!(
        !stderr.contains("backtrace") && !stderr.contains("Caused by"),
        "{stderr}"
    );
}

#[test]
fn a_data_dir_that_is_a_file_is_refused_with_the_configuration() {
    let dir = tempfile::tempdir().unwrap();
    let blocker = dir.path().join("data");
    std::fs::write(&blocker, b"a file where the data folder must go").unwrap();

    let output = landfall(&["--port", "0", "--data-dir", blocker.to_str().unwrap()]);

    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(2), "{stderr}");
    assert_eq!(
        stderr.lines().collect::<Vec<_>>(),
        [
            "landfall: invalid configuration:".to_string(),
            format!(
                "  - --data-dir (LANDFALL_DATA_DIR) {} is a file, not a folder",
                blocker.display()
            ),
        ]
    );
}

#[test]
fn a_failure_after_the_settings_is_one_readable_line() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port().to_string();
    let dir = tempfile::tempdir().unwrap();

    let output = landfall(&["--port", &port, "--data-dir", dir.path().to_str().unwrap()]);

    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    let last = stderr.lines().last().unwrap_or_default();
    assert!(
        last.starts_with(&format!("landfall: failed to listen on 0.0.0.0:{port}: ")),
        "{stderr}"
    );
    assert!(
        !stderr.contains("panicked") && !stderr.contains("Caused by"),
        "{stderr}"
    );
}

#[test]
fn a_bad_value_from_the_environment_names_the_variable_as_well_as_the_flag() {
    let output = landfall_with_env(
        &["--port", "0"],
        &[("LANDFALL_REQUEST_TIMEOUT_SECS", "soon")],
    );
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains(
            "invalid value 'soon' for '--request-timeout-secs <REQUEST_TIMEOUT_SECS>' (from the environment variable LANDFALL_REQUEST_TIMEOUT_SECS)"
        ),
        "{stderr}"
    );
    // Booleans take what people write in an environment: the start gets past them to the
    // next problem.
    let output = landfall_with_env(
        &["--port", "0", "--max-concurrency", "0"],
        &[("LANDFALL_METRICS", "1")],
    );
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(
        stderr.lines().collect::<Vec<_>>(),
        [
            "landfall: invalid configuration:",
            "  - --max-concurrency (LANDFALL_MAX_CONCURRENCY) must be at least 1"
        ],
        "{stderr}"
    );
    let on_the_command_line = landfall(&["--port", "0", "--max-concurrency", "many"]);
    let stderr = String::from_utf8_lossy(&on_the_command_line.stderr);
    assert!(
        stderr.contains("invalid value 'many' for '--max-concurrency <MAX_CONCURRENCY>' (also read from the environment variable LANDFALL_MAX_CONCURRENCY)"),
        "the variable is named, and not as where the value came from: {stderr}"
    );
}
