//! Liveness and readiness probes.

use crate::helpers::*;

#[tokio::test]
async fn healthz_answers_while_the_process_serves() {
    let app = spawn_app().await;
    let response = app.get("/healthz").await;
    assert_eq!(response.status(), 200);
    let body: serde_json::Value = response.json().await.unwrap();
    assert_eq!(body, serde_json::json!({"status": "ok"}));
    assert_matches_openapi("/healthz", "get", 200, &body);
    app.stop().await;
}

#[tokio::test]
async fn readyz_lists_every_check_and_fails_when_a_sink_cannot_write() {
    let app = spawn_app().await;

    let ready = json_body(app.get("/readyz").await, "/readyz", 200).await;
    assert_eq!(ready["status"], "ready");
    let names: Vec<_> = ready["checks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["name"].clone())
        .collect();
    assert_eq!(names, ["landing", "warehouse", "auth"]);

    // A file where the landing folder should be: nothing can be written there.
    std::fs::remove_dir_all(app.landing_root()).unwrap();
    std::fs::write(app.landing_root(), b"in the way").unwrap();
    let not_ready = json_body(app.get("/readyz").await, "/readyz", 503).await;
    assert_eq!(not_ready["status"], "not_ready");
    let landing = &not_ready["checks"][0];
    assert_eq!(landing["name"], "landing");
    assert_eq!(landing["ok"], false);
    assert!(
        landing["error"].as_str().unwrap().contains("cannot write"),
        "{landing}"
    );
    assert_eq!(not_ready["checks"][1]["ok"], true);

    std::fs::remove_file(app.landing_root()).unwrap();
    std::fs::create_dir(app.landing_root()).unwrap();
    json_body(app.get("/readyz").await, "/readyz", 200).await;
    app.stop().await;
}
