//! Failure paths: a sink that cannot write nacks (and the redelivery heals it), overload is
//! refused at once, and a stop signal drains what is in flight.

use crate::support::app::WarehouseLock;
use crate::support::*;

#[tokio::test]
async fn a_locked_warehouse_nacks_and_the_redelivery_lands_exactly_once() {
    let app = spawn_app_with(&["--sqlite-busy-timeout-ms", "100"]).await;
    let blocker = rusqlite::Connection::open(app.data_dir.path().join("warehouse.db")).unwrap();
    blocker.execute_batch("BEGIN IMMEDIATE").unwrap();

    let error = json_body(app.push_fixture("order.json").await, "/push", 503).await;
    assert_eq!(error["error"], "sink_unavailable");
    assert_eq!(
        error["message"],
        "the warehouse sink is unavailable; the message will be redelivered"
    );

    blocker.execute_batch("ROLLBACK").unwrap();
    let ack = json_body(app.push_fixture("order.json").await, "/push", 200).await;
    // The file landed on the first attempt; the row only now.
    assert_eq!(ack["duplicate"], false);
    assert_eq!(app.landed_objects().len(), 1);
    assert_eq!(app.count("order"), 1);
    app.stop().await;
}

#[tokio::test]
async fn a_landing_folder_that_cannot_be_written_nacks_until_it_can() {
    let app = spawn_app().await;
    let blocked = app.landing_root().join("output/order");
    std::fs::create_dir_all(blocked.parent().unwrap()).unwrap();
    std::fs::write(&blocked, b"a file where a folder must go").unwrap();

    let error = json_body(app.push_fixture("order.json").await, "/push", 503).await;
    assert_eq!(
        error["message"],
        "the landing sink is unavailable; the message will be redelivered"
    );
    assert_eq!(app.count("order"), 0, "no row is written before its object");

    std::fs::remove_file(&blocked).unwrap();
    json_body(app.push_fixture("order.json").await, "/push", 200).await;
    json_body(app.push_fixture("order.json").await, "/push", 200).await;
    assert_eq!(
        app.landed_objects(),
        vec!["output/order/2026/11/25/09/14/order_20261125091403_1000001.json".to_string()]
    );
    assert_eq!(app.count("order"), 1);
    app.stop().await;
}

#[tokio::test]
async fn requests_beyond_the_concurrency_limit_are_refused_429_with_retry_after() {
    let app = spawn_app_with(&[
        "--max-concurrency",
        "1",
        "--sqlite-busy-timeout-ms",
        "30000",
    ])
    .await;
    // The warehouse held: the first push stays in flight while the second arrives.
    let lock = WarehouseLock::take(app.data_dir.path());
    let first = tokio::spawn({
        let client = app.client.clone();
        let url = format!("{}/push", app.address);
        async move {
            client
                .post(url)
                .body(fixture("order.json"))
                .send()
                .await
                .unwrap()
        }
    });
    app.wait_for_in_flight(1.0).await;

    let second = app.push_fixture("inventory.json").await;
    assert_eq!(second.headers()["retry-after"], "1");
    let error = json_body(second, "/push", 429).await;
    assert_eq!(error["error"], "overloaded");
    // Health probes are not subject to the push limit.
    assert_eq!(app.get("/healthz").await.status(), 200);

    lock.release();
    json_body(first.await.unwrap(), "/push", 200).await;
    assert_eq!(app.count("inventory"), 0);
    app.stop().await;
}

#[tokio::test]
async fn sigterm_drains_a_pending_push_then_exits_zero() {
    let data_dir = tempfile::tempdir().unwrap();
    let data = data_dir.path().to_str().unwrap();
    let mut landfall = Binary::start(
        &["--sqlite-busy-timeout-ms", "30000", "--data-dir", data],
        &[("RUST_LOG", "info")],
    );
    let lock = WarehouseLock::take(data_dir.path());
    let push = tokio::spawn(
        reqwest::Client::new()
            .post(landfall.url("/push"))
            .body(fixture("order.json"))
            .send(),
    );
    landfall.wait_for_in_flight(1.0).await;

    landfall.send("TERM");
    landfall.wait_for_log(|l| l["message"] == "stop signal received");
    lock.release();

    let response = push.await.unwrap().unwrap();
    assert_eq!(
        response.status(),
        200,
        "the in-flight request is answered, not dropped"
    );
    let status = landfall.wait();
    assert!(status.success(), "exit status {status}");
    let logs = landfall.logs();
    assert!(
        logs.iter().all(|l| l["severity"].is_string()),
        "Cloud Logging needs severity on every line"
    );
    let said: Vec<&str> = logs.iter().filter_map(|l| l["message"].as_str()).collect();
    assert!(said.contains(&"landfall stopped"), "{said:?}");
    assert!(
        !said.iter().any(|m| m.contains("abandoning")),
        "a drained server abandons nothing: {said:?}"
    );
    let object = data_dir
        .path()
        .join("landing/output/order/2026/11/25/09/14/order_20261125091403_1000001.json");
    assert_eq!(std::fs::read(object).unwrap(), fixture_data("order.json"));
    let db = rusqlite::Connection::open(data_dir.path().join("warehouse.db")).unwrap();
    let rows: i64 = db
        .query_row("SELECT COUNT(*) FROM \"order\"", [], |r| r.get(0))
        .unwrap();
    assert_eq!(rows, 1);
}
