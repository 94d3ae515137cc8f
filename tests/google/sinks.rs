//! landfall with both Google sinks, driven over HTTP: objects and rows checked in the emulators.

use std::time::Duration;

use serde_json::{Value, json};

use crate::support::emulators::{Google, WriteApi};
use crate::support::fault_proxy::FaultProxy;
use crate::support::proxies::through_proxies;
use crate::support::{
    envelope, fixture, fixture_data, json_body, poll, sample, stricter_order_catalog,
};

with_each_write_api!(
    events_land_once_in_the_bucket_and_the_raw_layer,
    a_row_bigquery_refuses_is_dead_lettered_and_acked,
);

async fn events_land_once_in_the_bucket_and_the_raw_layer(api: WriteApi) {
    let (google, proxy) = through_proxies(api).await;
    let app = google.app(&[]).await;
    let order = "output/order/2026/11/25/09/14/order_20261125091403_1000001.json";
    let objects = [
        "output/_dead_letter/2026/11/25/09/15/1000004.json",
        "output/inventory/2026/11/25/09/14/inventory_20261125091405_1000002.json",
        order,
        "output/user_activity/2026/11/25/08/13/user_activity_20261125081358_1000003.json",
    ];

    for fixture in [
        "order.json",
        "inventory.json",
        "user-activity.json",
        "invalid-order.json",
    ] {
        let ack = json_body(app.push_fixture(fixture).await, "/push", 200).await;
        assert_eq!(ack["duplicate"], false, "{fixture}");
        let name = google.object_of(&ack);
        assert!(objects.contains(&name.as_str()), "{name}");
        let stored = google.metadata(&name).await;
        let written = proxy.rows_written();

        // A redelivery: acknowledged as one, with nothing created or inserted anew.
        let again = json_body(app.push_fixture(fixture).await, "/push", 200).await;
        assert_eq!(
            again["duplicate"], true,
            "{fixture}: the bucket already has it"
        );
        let after = google.metadata(&name).await;
        assert_eq!(
            (&after["generation"], &after["updated"]),
            (&stored["generation"], &stored["updated"]),
            "{fixture}: the object was not written again"
        );
        assert_eq!(
            proxy.rows_written(),
            written,
            "{fixture}: no row was written again"
        );
    }

    assert_eq!(google.objects(), objects);
    assert_eq!(google.object(order), fixture_data("order.json"));
    let mut metadata = google.metadata(order).await;
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
    let rows = google
        .query(&format!(
            "SELECT order_id, status, total_amount = CAST('59.99' AS NUMERIC), items[OFFSET(1)].product_name, \
             shipping_address.city, message_id, landing_uri FROM {}",
            google.table("order")
        ))
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
            json!(format!("gs://{}/{order}", google.bucket)),
        ]]
    );
    for table in ["inventory", "user_activity", "dead_letter"] {
        assert_eq!(google.rows(table).await, 1, "{table}");
    }
    let reasons = google
        .query(&format!(
            "SELECT message_id, reason FROM {}",
            google.table("dead_letter")
        ))
        .await;
    assert_eq!(
        reasons,
        vec![vec![
            json!("1000004"),
            json!("order.items[1].quantity: -1 is less than the minimum of 0")
        ]]
    );
    assert_eq!(proxy.rows_written(), 4, "one row written per message");
    if api == WriteApi::InsertAll {
        assert_insert_ids_are_message_ids(&proxy.rest);
    }
    google
        .assert_no_row_without_its_object(&["order", "inventory", "user_activity", "dead_letter"])
        .await;
    app.stop().await;
}

/// insertId is the message id: what lets BigQuery drop a second insert of a row.
fn assert_insert_ids_are_message_ids(proxy: &FaultProxy) {
    let insert_ids: Vec<Value> = proxy
        .insert_bodies()
        .iter()
        .flat_map(|body| body["rows"].as_array().unwrap().clone())
        .map(|row| row["insertId"].clone())
        .collect();
    assert_eq!(
        insert_ids.len(),
        4,
        "one insert per message: {insert_ids:?}"
    );
    for id in ["1000001", "1000002", "1000003", "1000004"] {
        assert!(insert_ids.contains(&json!(id)), "{id}: {insert_ids:?}");
    }
}

async fn a_row_bigquery_refuses_is_dead_lettered_and_acked(api: WriteApi) {
    let google = Google::new().await.writing_with(api);
    let app = google.app(&[]).await;
    // Valid JSON number, but beyond what NUMERIC holds: only BigQuery can say no.
    let mut order: Value = serde_json::from_slice(&fixture_data("order.json")).unwrap();
    order["total_amount"] = json!(1e40);
    let delivery = envelope("7001", order.to_string().as_bytes());

    let ack = json_body(app.push_json(&delivery).await, "/push", 200).await;

    assert_eq!(ack["outcome"], "dead_lettered");
    let reason = ack["reason"].as_str().unwrap();
    // insertAll says where in the row; the Storage Write API's row errors say only what.
    let said = match api {
        WriteApi::InsertAll => "rejected by the warehouse: total_amount: ",
        WriteApi::Storage => "rejected by the warehouse: ",
    };
    assert!(reason.starts_with(said), "{reason}");
    assert_eq!(google.rows("order").await, 0);
    let rows = google
        .query(&format!(
            "SELECT message_id, event_type, reason FROM {}",
            google.table("dead_letter")
        ))
        .await;
    assert_eq!(
        rows,
        vec![vec![json!("7001"), json!("order"), json!(reason)]]
    );
    assert!(
        google
            .objects()
            .contains(&"output/_dead_letter/2026/11/25/10/00/7001.json".to_string())
    );

    // Redelivered: refused again, its dead letter is already there, so nothing new is stored
    // or counted.
    let again = json_body(app.push_json(&delivery).await, "/push", 200).await;
    assert_eq!(again["outcome"], "dead_lettered", "{again}");
    assert_eq!(again["duplicate"], true, "{again}");
    let dead = google
        .query(&format!(
            "SELECT message_id FROM {}",
            google.table("dead_letter")
        ))
        .await;
    assert_eq!(dead.len(), 1, "{dead:?}");
    assert_eq!(
        sample(
            &app.scrape().await,
            "landfall_dead_letters_total",
            &[("event_type", "order"), ("rule", "warehouse_rejected")]
        ),
        Some(1.0),
        "the redelivery is not counted as a dead letter"
    );
    app.stop().await;
}

#[tokio::test]
async fn an_unreachable_bucket_nacks_and_readiness_says_why() {
    let google = Google::private().await;
    google.gcs.stop();
    let app = google.app(&[]).await;

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
        google.rows("inventory").await,
        0,
        "no row is written before its object"
    );

    google.gcs.restart().await;
    poll::until(
        "readiness recovers once the bucket answers",
        Duration::from_secs(30),
        || async {
            let status = app.get("/readyz").await.status();
            if status == 200 {
                Ok(())
            } else {
                Err(status.to_string())
            }
        },
    )
    .await;
    json_body(app.push_fixture("inventory.json").await, "/push", 200).await;
    assert_eq!(google.objects().len(), 1);
    assert_eq!(google.rows("inventory").await, 1);

    // Gone again once the layout is confirmed: only the bucket's own probe can tell.
    google.gcs.stop();
    poll::until(
        "readiness says the bucket is gone",
        Duration::from_secs(30),
        || async {
            let answer = app.get("/readyz").await;
            let status = answer.status();
            let body: Value = answer.json().await.unwrap();
            match (status.as_u16(), &body["checks"][0]) {
                (503, check) if check["name"] == "gcs" && check["ok"] == false => Ok(()),
                _ => Err(format!("{status} {body}")),
            }
        },
    )
    .await;
    app.stop().await;
}

/// Credentials are never data, in the Google sinks either: an unwrapped push carrying
/// credential headers lands with none of them in the object, its metadata or the row.
#[tokio::test]
async fn no_credential_reaches_the_bucket_or_bigquery() {
    let google = Google::new().await;
    let app = google.app(&[]).await;
    let secrets = [
        ("x-api-key", "api-key-secret-0815"),
        ("cookie", "session=cookie-secret-4711"),
        (
            "x-serverless-authorization",
            "Bearer serverless-secret-4242",
        ),
        ("proxy-authorization", "Basic cHJveHktc2VjcmV0"),
    ];
    let mut request = app
        .client
        .post(format!("{}/push", app.address))
        .header("x-goog-pubsub-message-id", "3000001")
        .header("x-goog-pubsub-publish-time", "2026-11-25T09:20:01Z")
        .header("source", "warehouse-scanner")
        .body(fixture("unwrapped-inventory.json"));
    for (name, value) in secrets {
        request = request.header(name, value);
    }
    let ack = json_body(request.send().await.unwrap(), "/push", 200).await;
    assert_eq!(ack["outcome"], "landed", "{ack}");

    let name = google.object_of(&ack);
    let metadata = google.metadata(&name).await.to_string();
    let object = String::from_utf8(google.object(&name)).unwrap();
    let row = google
        .query(&format!("SELECT * FROM {}", google.table("inventory")))
        .await;
    assert_eq!(row.len(), 1);
    let row = serde_json::to_string(&row).unwrap();
    assert!(
        metadata.contains("warehouse-scanner"),
        "the attribute itself is kept: {metadata}"
    );
    assert!(
        row.contains("warehouse-scanner"),
        "the attribute itself is kept: {row}"
    );
    for (_, value) in secrets {
        let secret = value.rsplit([' ', '=']).next().unwrap();
        for (place, text) in [
            ("the object's metadata", &metadata),
            ("the object", &object),
            ("the row", &row),
        ] {
            assert!(
                !text.contains(secret),
                "a credential reached {place}: {secret}"
            );
        }
    }
    app.stop().await;
}

/// The largest attribute set Pub/Sub allows (100 attributes of 1,024 bytes) is more than a
/// bucket's 8 KiB of custom metadata: the object says they were left out, the row has them.
#[tokio::test]
async fn the_largest_attribute_set_lands_its_row_whole_and_its_object_says_what_was_left_out() {
    let google = Google::new().await;
    let app = google.app(&[]).await;
    let mut request = app
        .client
        .post(format!("{}/push", app.address))
        .header("x-goog-pubsub-message-id", "3100001")
        .header("x-goog-pubsub-publish-time", "2026-11-25T09:20:01Z")
        .body(fixture("unwrapped-inventory.json"));
    for i in 0..100 {
        request = request.header(format!("attr-{i:03}"), "v".repeat(1024));
    }
    let ack = json_body(request.send().await.unwrap(), "/push", 200).await;
    assert_eq!(ack["outcome"], "landed", "{ack}");

    let name = google.object_of(&ack);
    let metadata = google.metadata(&name).await;
    assert_eq!(
        metadata["metadata"]["attributes_omitted"], "true",
        "{metadata}"
    );
    assert_eq!(metadata["metadata"]["message_id"], "3100001");
    let row = google
        .query(&format!(
            "SELECT attributes FROM {}",
            google.table("inventory")
        ))
        .await;
    let attributes: Value = serde_json::from_str(row[0][0].as_str().unwrap()).unwrap();
    assert_eq!(attributes.as_object().unwrap().len(), 100);
    app.stop().await;
}

/// Whether a refused payload's event has landed before is the bucket's to say: an order that
/// landed, redelivered after a deploy that refuses it, is that object, not a dead letter.
#[tokio::test]
async fn a_landed_order_redelivered_under_a_stricter_catalog_is_a_duplicate_not_a_dead_letter() {
    let google = Google::new().await;
    let app = google.app(&[]).await;
    let first = json_body(app.push_fixture("order.json").await, "/push", 200).await;
    app.stop().await;
    let catalog = stricter_order_catalog();
    let app = google
        .app(&["--schemas", catalog.path().to_str().unwrap()])
        .await;

    let again = json_body(app.push_fixture("order.json").await, "/push", 200).await;

    assert_eq!(again["outcome"], "landed", "{again}");
    assert_eq!(again["duplicate"], true);
    assert_eq!(again["landing_uri"], first["landing_uri"]);
    let objects = google.objects();
    assert_eq!(objects.len(), 1, "{objects:?}");
    assert!(objects[0].starts_with("output/order/"), "{objects:?}");
    assert_eq!(google.rows("order").await, 1);
    assert_eq!(google.rows("dead_letter").await, 0);
    app.stop().await;
}
