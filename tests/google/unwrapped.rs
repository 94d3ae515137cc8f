//! The unwrapped push form through the real Pub/Sub emulator (`noWrapper` with
//! `writeMetadata`), routed by a message attribute; and `--also-local`, which keeps the
//! embedded sinks beside the Google ones.

use std::time::{Duration, Instant};

use serde_json::json;

use crate::emulators::{PROJECT, PubSub};
use crate::helpers::json_body;
use crate::{GoogleStack, google_stack, spawn_google_app_with};

#[tokio::test]
async fn unwrapped_pushes_routed_by_attribute_land_with_their_attributes() {
    let GoogleStack {
        gcs,
        bigquery,
        app: first,
        _turn,
    } = google_stack().await;
    first.stop().await;
    let app = spawn_google_app_with(&gcs, &bigquery, &["--event-type-attribute", "type"]).await;
    let pubsub = PubSub::start().await;
    pubsub
        .unwrapped_push_subscription("raw", "landfall-raw", &format!("{}/push", app.address))
        .await;
    // The shipped catalog requires the payload's event_type too; only the attribute routes:
    // the last message, valid but without the attribute, is a dead letter.
    let inventory = |i: usize| {
        json!({"event_type": "inventory", "inventory_id": format!("I{i}"), "product_id": "P", "warehouse_id": "W",
               "quantity_change": 2, "reason": "restock", "timestamp": "2026-11-25T12:00:00Z"})
        .to_string()
        .into_bytes()
    };
    let messages: Vec<_> = (0..5)
        .map(|i| {
            (
                inventory(i),
                json!({"type": "inventory", "source": "scanner"}),
            )
        })
        .chain([(inventory(5), json!({"source": "scanner"}))])
        .collect();
    let ids = pubsub.publish_with_attributes("raw", &messages).await;

    let started = Instant::now();
    while bigquery.count("SELECT COUNT(*) FROM raw.inventory").await < 5
        || bigquery.count("SELECT COUNT(*) FROM raw.dead_letter").await < 1
    {
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "the unwrapped pushes never landed"
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    let rows = bigquery
        .query("SELECT message_id, attributes, subscription, inventory_id FROM raw.inventory ORDER BY inventory_id")
        .await;
    assert_eq!(rows.len(), 5);
    for (i, row) in rows.iter().enumerate() {
        assert_eq!(row[0], json!(ids[i]), "the emulator's own message id");
        let attributes: serde_json::Value = serde_json::from_str(row[1].as_str().unwrap()).unwrap();
        assert_eq!(
            attributes,
            json!({"source": "scanner", "type": "inventory"}),
            "only the attributes"
        );
        assert_eq!(
            row[2],
            json!(format!("projects/{PROJECT}/subscriptions/landfall-raw"))
        );
        assert_eq!(row[3], json!(format!("I{i}")));
    }
    let dead = bigquery
        .query("SELECT message_id, reason FROM raw.dead_letter")
        .await;
    assert_eq!(
        dead,
        vec![vec![json!(ids[5]), json!("attribute type: is required")]]
    );
    for (i, data) in messages.iter().take(5).map(|(d, _)| d).enumerate() {
        let object = format!(
            "output/inventory/2026/11/25/12/00/inventory_20261125120000_{}.json",
            ids[i]
        );
        assert_eq!(&gcs.object(&object), data, "the body, byte for byte");
    }
    app.stop().await;
}

#[tokio::test]
async fn also_local_keeps_the_embedded_sinks_beside_the_google_ones() {
    let GoogleStack {
        gcs,
        bigquery,
        app: first,
        _turn,
    } = google_stack().await;
    first.stop().await;
    let app = spawn_google_app_with(&gcs, &bigquery, &["--also-local"]).await;

    let ack = json_body(app.push_fixture("order.json").await, "/push", 200).await;

    let object = "output/order/2026/11/25/09/14/order_20261125091403_1000001.json";
    assert_eq!(
        ack["landing_uri"],
        format!("gs://landing/{object}"),
        "rows name the bucket's object"
    );
    assert_eq!(gcs.objects(), [object]);
    assert_eq!(app.landed_objects(), [object], "the folder holds it too");
    assert_eq!(bigquery.count("SELECT COUNT(*) FROM raw.`order`").await, 1);
    assert_eq!(app.count("order"), 1);
    let local_uri = app.query("SELECT landing_uri FROM \"order\"");
    assert_eq!(
        local_uri,
        vec![vec![rusqlite::types::Value::Text(format!(
            "gs://landing/{object}"
        ))]]
    );
    app.stop().await;
}
