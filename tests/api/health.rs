//! Liveness and readiness probes.

use crate::support::filesystem::Ext4;
use crate::support::*;

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
async fn readyz_lists_every_check_and_fails_while_a_sink_cannot_write() {
    let Some(disk) = Ext4::mount(16) else { return };
    let data_dir = tempfile::tempdir().unwrap();
    // The landing folder alone on a disk that can turn read-only under the running server.
    std::os::unix::fs::symlink(disk.folder("landing"), data_dir.path().join("landing")).unwrap();
    let app = spawn_with_config(crate::support::config(data_dir.path(), &[]), data_dir).await;

    let ready = json_body(app.get("/readyz").await, "/readyz", 200).await;
    assert_eq!(ready["status"], "ready");
    let names: Vec<_> = ready["checks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["name"].clone())
        .collect();
    assert_eq!(names, ["landing", "warehouse", "auth"]);

    disk.read_only(true);
    let not_ready = json_body(app.get("/readyz").await, "/readyz", 503).await;
    disk.read_only(false);
    assert_eq!(not_ready["status"], "not_ready");
    let landing = &not_ready["checks"][0];
    assert_eq!(landing["name"], "landing");
    assert_eq!(landing["ok"], false);
    assert!(
        landing["error"].as_str().unwrap().contains("cannot write"),
        "{landing}"
    );
    assert_eq!(not_ready["checks"][1]["ok"], true, "{not_ready}");

    json_body(app.get("/readyz").await, "/readyz", 200).await;
    app.stop().await;
}

#[tokio::test]
async fn a_landing_folder_replaced_under_the_server_keeps_it_unready_until_restarted() {
    let app = spawn_app().await;
    json_body(app.get("/readyz").await, "/readyz", 200).await;

    // What landed before would be gone from under the server: it must not carry on as if not.
    let root = app.landing_root();
    std::fs::remove_dir_all(&root).unwrap();
    std::fs::create_dir(&root).unwrap();

    let not_ready = json_body(app.get("/readyz").await, "/readyz", 503).await;
    let error = not_ready["checks"][0]["error"].as_str().unwrap();
    assert!(error.contains("is gone or was replaced"), "{not_ready}");
    assert!(error.contains("restart landfall"), "{not_ready}");
    app.stop().await;
}
