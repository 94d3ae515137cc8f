//! The curated layer in the embedded warehouse: views derived from the catalog, made anew at
//! every start — one row per message, the latest version per key, one row per item.

use rusqlite::types::Value as SqlValue;
use serde_json::json;

use crate::support::*;

fn order(id: &str, date: &str, status: &str, items: &[(&str, i64)]) -> Vec<u8> {
    let items: Vec<_> = items
        .iter()
        .map(|(p, q)| json!({"product_id": p, "product_name": format!("{p} name"), "quantity": q, "price": 2.5}))
        .collect();
    json!({"event_type": "order", "order_id": id, "customer_id": "C1", "order_date": date, "status": status,
           "items": items, "shipping_address": {"street": "1 Quay", "city": "Bergen", "country": "NO"},
           "total_amount": 10.0})
    .to_string()
    .into_bytes()
}

async fn push(app: &TestApp, id: &str, data: &[u8]) {
    let ack = json_body(app.push_json(&envelope(id, data)).await, "/push", 200).await;
    assert_eq!(ack["outcome"], "landed", "{ack}");
}

#[tokio::test]
async fn the_latest_version_of_each_order_and_only_its_items() {
    let app = spawn_app().await;
    // Three versions of O1, published out of order, and O2 with two items.
    push(
        &app,
        "1",
        &order(
            "O1",
            "2026-11-25T10:05:00Z",
            "shipped",
            &[("P1", 1), ("P2", 2)],
        ),
    )
    .await;
    push(
        &app,
        "2",
        &order("O1", "2026-11-25T10:00:00Z", "pending", &[("P1", 1)]),
    )
    .await;
    push(
        &app,
        "3",
        &order(
            "O1",
            "2026-11-25T10:09:00.5Z",
            "delivered",
            &[("P1", 1), ("P2", 2), ("P3", 3)],
        ),
    )
    .await;
    push(
        &app,
        "4",
        &order("O1", "2026-11-25T10:09:00Z", "processing", &[("P9", 9)]),
    )
    .await;
    push(
        &app,
        "5",
        &order(
            "O2",
            "2026-11-25T11:00:00Z",
            "pending",
            &[("P7", 7), ("P8", 8)],
        ),
    )
    .await;

    assert_eq!(app.count("curated_order"), 5, "one row per message");
    assert_eq!(
        app.query(
            "SELECT order_id, status, message_id FROM curated_order_latest ORDER BY order_id"
        ),
        vec![
            vec![text("O1"), text("delivered"), text("3")],
            vec![text("O2"), text("pending"), text("5")],
        ],
        "the latest by order_date, read as times (10:09:00.5 is after 10:09:00)"
    );
    assert_eq!(
        app.query("SELECT order_id, order_date, position, product_id, quantity FROM curated_order_items ORDER BY order_id, position"),
        vec![
            vec![text("O1"), text("2026-11-25T10:09:00.500Z"), SqlValue::Integer(0), text("P1"), SqlValue::Integer(1)],
            vec![text("O1"), text("2026-11-25T10:09:00.500Z"), SqlValue::Integer(1), text("P2"), SqlValue::Integer(2)],
            vec![text("O1"), text("2026-11-25T10:09:00.500Z"), SqlValue::Integer(2), text("P3"), SqlValue::Integer(3)],
            vec![text("O2"), text("2026-11-25T11:00:00Z"), SqlValue::Integer(0), text("P7"), SqlValue::Integer(7)],
            vec![text("O2"), text("2026-11-25T11:00:00Z"), SqlValue::Integer(1), text("P8"), SqlValue::Integer(8)],
        ]
    );
    // Types without a key have no _latest view; user_activity has no curated block at all.
    assert_eq!(app.count("curated_inventory_latest"), 0);
    assert_eq!(app.count("curated_user_activity"), 0);
    app.stop().await;
}

#[tokio::test]
async fn ties_on_latest_by_are_broken_by_publish_time_then_message_id() {
    let app = spawn_app().await;
    let same = "2026-11-25T10:00:00Z";
    let mut later = envelope("10", &order("O1", same, "shipped", &[]));
    later["message"]["publishTime"] = json!("2026-11-25T10:00:02Z");
    json_body(app.push_json(&later).await, "/push", 200).await;
    let mut earlier = envelope("11", &order("O1", same, "pending", &[]));
    earlier["message"]["publishTime"] = json!("2026-11-25T10:00:01Z");
    json_body(app.push_json(&earlier).await, "/push", 200).await;
    push(&app, "9", &order("O2", same, "pending", &[])).await;
    push(&app, "8", &order("O2", same, "shipped", &[])).await;

    assert_eq!(
        app.query("SELECT order_id, status FROM curated_order_latest ORDER BY order_id"),
        vec![
            vec![text("O1"), text("shipped")],
            vec![text("O2"), text("pending")]
        ],
        "the later publish time wins; on the same one, the greater message id"
    );
    app.stop().await;
}

#[tokio::test]
async fn a_new_field_reaches_the_views_at_the_next_start() {
    let app = spawn_app().await;
    push(
        &app,
        "1",
        &order("O1", "2026-11-25T10:00:00Z", "pending", &[]),
    )
    .await;
    let mut wider = shipped_schema("order");
    wider["properties"]["channel"] = json!({"type": "string"});
    let catalog = catalog_dir(&[
        ("order.json", wider.to_string()),
        ("inventory.json", shipped_schema("inventory").to_string()),
        (
            "user_activity.json",
            shipped_schema("user_activity").to_string(),
        ),
    ]);
    let app = app
        .restart(&["--schemas", catalog.path().to_str().unwrap()])
        .await;
    let mut with_channel: serde_json::Value =
        serde_json::from_slice(&order("O1", "2026-11-25T10:01:00Z", "shipped", &[])).unwrap();
    with_channel["channel"] = json!("web");
    push(&app, "2", with_channel.to_string().as_bytes()).await;

    assert_eq!(
        app.query("SELECT message_id, channel FROM curated_order ORDER BY message_id"),
        vec![
            vec![text("1"), SqlValue::Null],
            vec![text("2"), text("web")]
        ]
    );
    assert_eq!(
        app.query("SELECT channel FROM curated_order_latest"),
        vec![vec![text("web")]]
    );
    app.stop().await;
}

#[tokio::test]
async fn the_dead_letter_view_forgets_a_message_once_it_landed_as_an_event() {
    let app = spawn_app().await;
    json_body(app.push_fixture("invalid-order.json").await, "/push", 200).await;
    json_body(app.push_fixture("order.json").await, "/push", 200).await;
    assert_eq!(
        app.query("SELECT message_id FROM curated_dead_letter"),
        vec![vec![text("1000004")]]
    );

    // As a redrive would: the same message id lands as an event.
    let mut fixed: serde_json::Value =
        serde_json::from_slice(&fixture_data("invalid-order.json")).unwrap();
    fixed["items"][1]["quantity"] = json!(1);
    let ack = json_body(
        app.push_json(&envelope("1000004", fixed.to_string().as_bytes()))
            .await,
        "/push",
        200,
    )
    .await;
    assert_eq!(ack["outcome"], "landed");

    assert_eq!(
        app.count("dead_letter"),
        1,
        "the raw dead letter stays as history"
    );
    assert_eq!(app.count("curated_dead_letter"), 0);
    app.stop().await;
}
