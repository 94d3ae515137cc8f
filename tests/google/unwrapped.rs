//! The unwrapped push form through the real Pub/Sub emulator (`noWrapper` with
//! `writeMetadata`), routed by a message attribute; and `--also-local`, which keeps the
//! embedded sinks beside the Google ones.

use std::time::Duration;

use serde_json::json;

use crate::support::emulators::{Google, PROJECT, pubsub};
use crate::support::{json_body, poll, text};

#[tokio::test]
async fn unwrapped_pushes_routed_by_attribute_land_with_their_attributes() {
    let google = Google::new().await;
    let app = google.app(&["--event-type-attribute", "type"]).await;
    let pubsub = pubsub().await;
    let (topic, subscription) = (google.name("raw"), google.name("landfall-raw"));
    pubsub
        .unwrapped_push_subscription(&topic, &subscription, &format!("{}/push", app.address))
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
    let ids = pubsub.publish_with_attributes(&topic, &messages).await;

    poll::until(
        "the unwrapped pushes land",
        Duration::from_secs(60),
        || async {
            let (events, dead) = (
                google.rows("inventory").await,
                google.rows("dead_letter").await,
            );
            if events >= 5 && dead >= 1 {
                Ok(())
            } else {
                Err(format!("{events} events, {dead} dead letters"))
            }
        },
    )
    .await;
    let rows = google
        .query(&format!(
            "SELECT message_id, attributes, subscription, inventory_id FROM {} ORDER BY inventory_id",
            google.table("inventory")
        ))
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
            json!(format!("projects/{PROJECT}/subscriptions/{subscription}"))
        );
        assert_eq!(row[3], json!(format!("I{i}")));
    }
    let dead = google
        .query(&format!(
            "SELECT message_id, reason FROM {}",
            google.table("dead_letter")
        ))
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
        assert_eq!(&google.object(&object), data, "the body, byte for byte");
    }
    app.stop().await;
}

#[tokio::test]
async fn also_local_keeps_the_embedded_sinks_beside_the_google_ones() {
    let google = Google::new().await;
    let app = google.app(&["--also-local"]).await;

    let ack = json_body(app.push_fixture("order.json").await, "/push", 200).await;

    let object = "output/order/2026/11/25/09/14/order_20261125091403_1000001.json";
    let uri = format!("gs://{}/{object}", google.bucket);
    assert_eq!(ack["landing_uri"], uri, "rows name the bucket's object");
    assert_eq!(google.objects(), [object]);
    assert_eq!(app.landed_objects(), [object], "the folder holds it too");
    assert_eq!(google.rows("order").await, 1);
    assert_eq!(app.count("order"), 1);
    assert_eq!(
        app.query("SELECT landing_uri FROM \"order\""),
        vec![vec![text(&uri)]]
    );
    app.stop().await;
}

#[tokio::test]
async fn with_also_local_a_failing_copy_writes_no_row_anywhere() {
    let google = Google::new().await;
    let app = google.app(&["--also-local"]).await;
    // The local copy cannot be written: a file stands where its folder must go.
    let blocked = app.landing_root().join("output/order");
    std::fs::create_dir_all(blocked.parent().unwrap()).unwrap();
    std::fs::write(&blocked, b"a file where a folder must go").unwrap();

    let refused = json_body(app.push_fixture("order.json").await, "/push", 503).await;

    assert_eq!(refused["error"], "sink_unavailable");
    assert_eq!(
        google.rows("order").await,
        0,
        "no BigQuery row without every copy"
    );
    assert_eq!(app.count("order"), 0, "no SQLite row without every copy");
    std::fs::remove_file(&blocked).unwrap();
    let ack = json_body(app.push_fixture("order.json").await, "/push", 200).await;
    assert_eq!(ack["outcome"], "landed");
    assert_eq!((google.rows("order").await, app.count("order")), (1, 1));
    app.stop().await;
}
