//! One message, one fate: a message id lands once, as one event or one dead letter, whatever
//! the catalog, the partitioning or the layout say by the time it is delivered again.

use serde_json::json;

use crate::support::*;

#[tokio::test]
async fn a_restart_with_another_partition_time_or_layout_is_refused_naming_the_setting() {
    let app = spawn_app().await;
    json_body(app.push_fixture("order.json").await, "/push", 200).await;

    let refused = app
        .start_again(&["--partition-time", "publish"])
        .await
        .err()
        .expect("another partitioning over the same landing layer is refused");
    let message = format!("{refused:#}");
    assert!(
        message.starts_with(
            "--partition-time (LANDFALL_PARTITION_TIME) is publish, but the landing layer under \"output\" was written with event"
        ),
        "{message}"
    );
    assert!(message.contains("_landfall/layout.json"), "{message}");
    let refused = app
        .start_again(&["--landing-layout", "batch"])
        .await
        .err()
        .expect("another layout over the same landing layer is refused");
    assert!(
        format!("{refused:#}").starts_with(
            "--landing-layout (LANDFALL_LANDING_LAYOUT) is batch, but the landing layer under \"output\" was written with event"
        ),
        "{refused:#}"
    );
    // Another prefix is another landing layer, with its own record.
    assert!(
        app.start_again(&["--partition-time", "publish", "--prefix", "v2"])
            .await
            .is_ok()
    );

    let app = app.restart(&[]).await;
    let again = json_body(app.push_fixture("order.json").await, "/push", 200).await;
    assert_eq!(
        again["duplicate"], true,
        "the same settings still find the object"
    );
    assert_eq!(app.landed_objects().len(), 1);
    assert_eq!(app.count("order"), 1);
    app.stop().await;
}

async fn redelivered_under_a_stricter_catalog(
    layout: &[&str],
) -> (TestApp, serde_json::Value, serde_json::Value) {
    let app = spawn_app_with(layout).await;
    let first = json_body(app.push_fixture("order.json").await, "/push", 200).await;
    assert_eq!(first["outcome"], "landed");
    let catalog = stricter_order_catalog();
    let mut flags = vec!["--schemas", catalog.path().to_str().unwrap()];
    flags.extend_from_slice(layout);
    let app = app.restart(&flags).await;

    let again = json_body(app.push_fixture("order.json").await, "/push", 200).await;

    // The catalog really refuses such an order now: a new one is a dead letter.
    let mut other = envelope("3000001", &fixture_data("order.json"));
    other["message"]["publishTime"] = json!("2026-11-25T09:14:07.123Z");
    let new = json_body(app.push_json(&other).await, "/push", 200).await;
    assert_eq!(new["outcome"], "dead_lettered");
    assert!(
        new["reason"]
            .as_str()
            .unwrap()
            .contains("channel: is required"),
        "{new}"
    );
    drop(catalog);
    (app, first, again)
}

#[tokio::test]
async fn a_landed_order_redelivered_under_a_stricter_catalog_is_a_duplicate_not_a_dead_letter() {
    let (app, first, again) = redelivered_under_a_stricter_catalog(&[]).await;

    assert_eq!(again["outcome"], "landed", "{again}");
    assert_eq!(again["duplicate"], true);
    assert_eq!(again["event_type"], "order");
    assert_eq!(again["reason"], serde_json::Value::Null);
    assert_eq!(again["landing_uri"], first["landing_uri"]);
    assert_eq!(app.count("order"), 1);
    let dead: Vec<_> = app.query("SELECT message_id FROM dead_letter");
    assert_eq!(
        dead,
        vec![vec![text("3000001")]],
        "only the new order is a dead letter"
    );
    let objects = app.landed_objects();
    assert_eq!(
        objects,
        vec![
            "output/_dead_letter/2026/11/25/09/14/3000001.json".to_string(),
            "output/order/2026/11/25/09/14/order_20261125091403_1000001.json".to_string(),
        ]
    );
    let samples = app.scrape().await;
    assert_eq!(
        sample(
            &samples,
            "landfall_dead_letters_total",
            &[("event_type", "order"), ("rule", "required")]
        ),
        Some(1.0),
        "the redelivery is not counted as a dead letter"
    );
    app.stop().await;
}

#[tokio::test]
async fn in_the_batch_layout_the_row_decides_and_no_dead_letter_row_is_written() {
    let (app, _, again) =
        redelivered_under_a_stricter_catalog(&["--landing-layout", "batch"]).await;

    assert_eq!(again["outcome"], "landed", "{again}");
    assert_eq!(again["duplicate"], true);
    assert_eq!(app.count("order"), 1);
    assert_eq!(
        app.query("SELECT message_id FROM dead_letter"),
        vec![vec![text("3000001")]]
    );
    // The batch layout keeps every delivery it was given, the refused copy too.
    let lines = app.landed_lines();
    let of_the_order: Vec<_> = lines
        .iter()
        .filter(|(_, l)| l["message_id"] == "1000001")
        .map(|(object, _)| object.split('/').nth(1).unwrap().to_string())
        .collect();
    assert_eq!(of_the_order, ["_dead_letter", "order"]);
    app.stop().await;
}
