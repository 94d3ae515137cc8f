//! landfall with both Google sinks, driven over HTTP: objects and rows checked in the emulators.

use std::time::Duration;

use serde_json::{Value, json};

use crate::emulators::{BigQuery, Gcs};
use crate::helpers::{envelope, fixture_data, json_body};
use crate::{GoogleStack, SERIAL, apply_schema, google_stack, spawn_google_app};

#[tokio::test]
async fn events_land_once_in_the_bucket_and_the_raw_layer() {
    let GoogleStack {
        gcs,
        bigquery,
        app,
        _turn,
    } = google_stack().await;

    for fixture in [
        "order.json",
        "inventory.json",
        "user-activity.json",
        "invalid-order.json",
    ] {
        let ack = json_body(app.push_fixture(fixture).await, "/push", 200).await;
        assert_eq!(ack["duplicate"], false, "{fixture}");
        let again = json_body(app.push_fixture(fixture).await, "/push", 200).await;
        assert_eq!(
            again["duplicate"], true,
            "{fixture}: the bucket already has it"
        );
    }

    let order = "output/order/2026/11/25/09/14/order_20261125091403_1000001.json";
    assert_eq!(
        gcs.objects(),
        vec![
            "output/_dead_letter/2026/11/25/09/15/1000004.json",
            "output/inventory/2026/11/25/09/14/inventory_20261125091405_1000002.json",
            order,
            "output/user_activity/2026/11/25/08/13/user_activity_20261125081358_1000003.json",
        ]
    );
    assert_eq!(gcs.object(order), fixture_data("order.json"));
    let mut metadata = gcs.metadata(order).await;
    // contentType (application/json) goes in the same upload metadata, but fake-gcs-server
    // drops it from multipart uploads, so only the custom metadata can be checked here: all
    // that the row needs beside the payload, so that the object alone can rebuild it.
    let received_at = metadata["metadata"]["received_at"].take();
    let received_at = chrono::DateTime::parse_from_rfc3339(received_at.as_str().unwrap()).unwrap();
    assert!(
        (chrono::Utc::now() - received_at.to_utc())
            .num_seconds()
            .abs()
            < 120
    );
    assert_eq!(
        metadata["metadata"],
        json!({"message_id": "1000001", "publish_time": "2026-11-25T09:14:07.123Z",
               "subscription": "projects/shop-data/subscriptions/landfall-push", "event_type": "order",
               "attributes": "{\"source\":\"checkout-service\"}", "received_at": null})
    );
    let rows = bigquery
        .query(
            "SELECT order_id, status, total_amount = CAST('59.99' AS NUMERIC), items[OFFSET(1)].product_name, \
             shipping_address.city, message_id, landing_uri FROM raw.`order`",
        )
        .await;
    assert_eq!(
        rows,
        vec![vec![
            json!("ORD-20261125-0001"),
            json!("processing"),
            json!("true"),
            json!("Milk frother"),
            json!("Bergen"),
            json!("1000001"),
            json!(format!("gs://landing/{order}")),
        ]]
    );
    for table in ["inventory", "user_activity", "dead_letter"] {
        assert_eq!(
            bigquery
                .count(&format!("SELECT COUNT(*) FROM raw.{table}"))
                .await,
            1,
            "{table}"
        );
    }
    let reasons = bigquery
        .query("SELECT message_id, reason FROM raw.dead_letter")
        .await;
    assert_eq!(
        reasons,
        vec![vec![
            json!("1000004"),
            json!("order.items[1].quantity: -1 is less than the minimum of 0")
        ]]
    );
    app.stop().await;
}

#[tokio::test]
async fn a_row_bigquery_refuses_is_dead_lettered_and_acked() {
    let GoogleStack {
        gcs,
        bigquery,
        app,
        _turn,
    } = google_stack().await;
    // Valid JSON number, but beyond what NUMERIC holds: only BigQuery can say no.
    let mut order: Value = serde_json::from_slice(&fixture_data("order.json")).unwrap();
    order["total_amount"] = json!(1e40);

    let ack = json_body(
        app.push_json(&envelope("7001", order.to_string().as_bytes()))
            .await,
        "/push",
        200,
    )
    .await;

    assert_eq!(ack["outcome"], "dead_lettered");
    let reason = ack["reason"].as_str().unwrap();
    assert!(
        reason.starts_with("rejected by the warehouse: total_amount: "),
        "{reason}"
    );
    assert_eq!(bigquery.count("SELECT COUNT(*) FROM raw.`order`").await, 0);
    let rows = bigquery
        .query("SELECT message_id, event_type, reason FROM raw.dead_letter")
        .await;
    assert_eq!(
        rows,
        vec![vec![json!("7001"), json!("order"), json!(reason)]]
    );
    assert!(
        gcs.objects()
            .contains(&"output/_dead_letter/2026/11/25/10/00/7001.json".to_string())
    );
    app.stop().await;
}

#[tokio::test]
async fn an_unreachable_bucket_nacks_and_readiness_says_why() {
    let _turn = SERIAL.lock().await;
    let (mut gcs, bigquery) = (Gcs::start().await, BigQuery::start().await);
    apply_schema(&bigquery);
    gcs.stop();
    let app = spawn_google_app(&gcs, &bigquery).await;

    let not_ready = json_body(app.get("/readyz").await, "/readyz", 503).await;
    let checks = not_ready["checks"].as_array().unwrap();
    assert_eq!(checks[0]["name"], "gcs");
    assert_eq!(checks[0]["ok"], false);
    assert_eq!(checks[1], json!({"name": "bigquery", "ok": true}));
    let error = json_body(app.push_fixture("inventory.json").await, "/push", 503).await;
    assert_eq!(
        error["message"],
        "the gcs sink is unavailable; the message will be redelivered"
    );
    assert_eq!(
        bigquery.count("SELECT COUNT(*) FROM raw.inventory").await,
        0,
        "no row is written before its object"
    );

    gcs.restart().await;
    let mut ready = false;
    for _ in 0..30 {
        if app.get("/readyz").await.status() == 200 {
            ready = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    assert!(ready, "readiness recovers once the bucket answers");
    json_body(app.push_fixture("inventory.json").await, "/push", 200).await;
    assert_eq!(gcs.objects().len(), 1);
    assert_eq!(
        bigquery.count("SELECT COUNT(*) FROM raw.inventory").await,
        1
    );
    app.stop().await;
}
