//! Poison payloads are stored in the dead letter with a reason naming the field and the rule,
//! then acked: nacking them would slow the whole subscription forever.

use serde_json::{Value, json};

use crate::support::*;

fn valid_order() -> Value {
    serde_json::from_slice(&fixture_data("order.json")).unwrap()
}

async fn dead_letter_reason(data: &[u8]) -> String {
    let app = spawn_app().await;
    let ack = json_body(app.push_json(&envelope("555", data)).await, "/push", 200).await;
    assert_eq!(ack["outcome"], "dead_lettered");
    assert_eq!(app.count("order"), 0);
    let rows = app.query("SELECT reason, data, data_encoding, message_id FROM dead_letter");
    assert_eq!(rows.len(), 1);
    let reason = match &rows[0][0] {
        rusqlite::types::Value::Text(reason) => reason.clone(),
        other => panic!("reason is {other:?}"),
    };
    assert_eq!(ack["reason"], reason.as_str());
    // The data as sent (all of these are text), and the message it came in.
    assert_eq!(rows[0][1], text(std::str::from_utf8(data).unwrap()));
    assert_eq!(rows[0][2], text("utf-8"));
    assert_eq!(rows[0][3], text("555"));
    app.stop().await;
    reason
}

#[tokio::test]
async fn every_class_of_poison_gets_a_reason_that_names_the_field_and_rule() {
    let with = |pointer: &str, value: Value| {
        let mut order = valid_order();
        *order.pointer_mut(pointer).unwrap() = value;
        order.to_string().into_bytes()
    };
    let without = |field: &str| {
        let mut order = valid_order();
        order.as_object_mut().unwrap().remove(field);
        order.to_string().into_bytes()
    };
    let cases: Vec<(Vec<u8>, &str)> = vec![
        (b"{not json".to_vec(), "payload is not valid JSON: "),
        (b"[1, 2]".to_vec(), "payload is not a JSON object"),
        (br#"{"order_id": "x"}"#.to_vec(), "event_type: is required"),
        (
            br#"{"event_type": "refund"}"#.to_vec(),
            "event_type: unknown value \"refund\", expected one of inventory, order, user_activity",
        ),
        (without("customer_id"), "order.customer_id: is required"),
        (
            with("/status", json!("lost")),
            r#"order.status: "lost" is not one of "pending", "processing", "shipped", "delivered""#,
        ),
        (
            with("/items/1/quantity", json!(-1)),
            "order.items[1].quantity: -1 is less than the minimum of 0",
        ),
        (
            with("/items/0/price", json!("12.50")),
            r#"order.items[0].price: "12.50" is not of type "number""#,
        ),
        (
            with("/order_date", json!("25/11/2026")),
            r#"order.order_date: "25/11/2026" is not a "date-time""#,
        ),
        (
            with("/shipping_address", json!("Bergen")),
            r#"order.shipping_address: "Bergen" is not of type "object""#,
        ),
        (
            with("/order_id", json!("")),
            r#"order.order_id: "" is shorter than 1 character"#,
        ),
    ];
    for (data, expected) in cases {
        let reason = dead_letter_reason(&data).await;
        assert!(
            reason.starts_with(expected),
            "expected {expected:?}, got {reason:?}"
        );
    }
}

#[tokio::test]
async fn a_dead_letter_file_keeps_the_original_data_and_the_reason() {
    let app = spawn_app().await;

    let ack = json_body(app.push_fixture("invalid-order.json").await, "/push", 200).await;

    let object = "output/_dead_letter/2026/11/25/09/15/1000004.json";
    assert_eq!(ack["event_type"], "order");
    assert_eq!(app.landed_objects(), vec![object.to_string()]);
    let file: Value = serde_json::from_slice(&app.read_object(object)).unwrap();
    let reason = "order.items[1].quantity: -1 is less than the minimum of 0";
    assert_eq!(file["reason"], reason);
    assert_eq!(file["message_id"], "1000004");
    assert_eq!(file["event_type"], "order");
    assert_eq!(file["data_encoding"], "utf-8");
    assert_eq!(
        file["data"].as_str().unwrap().as_bytes(),
        fixture_data("invalid-order.json")
    );
    let rows = app.query("SELECT message_id, publish_time, subscription, event_type, reason, landing_uri FROM dead_letter");
    assert_eq!(
        rows,
        vec![vec![
            text("1000004"),
            text("2026-11-25T09:15:00Z"),
            text("projects/shop-data/subscriptions/landfall-push"),
            text("order"),
            text(reason),
            text(&format!("file://{}/{object}", app.landing_root().display())),
        ]]
    );
    app.stop().await;
}

#[tokio::test]
async fn binary_data_is_dead_lettered_as_base64() {
    let app = spawn_app().await;

    json_body(
        app.push_json(&envelope("556", &[0xff, 0xfe, 0x00])).await,
        "/push",
        200,
    )
    .await;

    assert_eq!(
        app.query("SELECT data, data_encoding FROM dead_letter"),
        vec![vec![text("//4A"), text("base64")]]
    );
    app.stop().await;
}
