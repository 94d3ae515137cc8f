//! Valid events land as one byte-exact file and one row, in both envelope forms.

use rusqlite::types::Value as SqlValue;

use crate::support::*;

#[tokio::test]
async fn an_order_lands_as_its_exact_bytes_and_one_typed_row() {
    let app = spawn_app().await;

    let ack = json_body(app.push_fixture("order.json").await, "/push", 200).await;

    let object = "output/order/2026/11/25/09/14/order_20261125091403_1000001.json";
    assert_eq!(ack["outcome"], "landed");
    assert_eq!(ack["duplicate"], false);
    assert_eq!(ack["event_type"], "order");
    let uri = format!("file://{}/{object}", app.landing_root().display());
    assert_eq!(ack["landing_uri"], uri.as_str());
    assert_eq!(app.landed_objects(), vec![object.to_string()]);
    assert_eq!(app.read_object(object), fixture_data("order.json"));
    let rows = app.query(
        "SELECT event_type, order_id, customer_id, order_date, status, items, shipping_address, \
         total_amount, message_id, publish_time, subscription, attributes, delivery_attempt, \
         landing_uri, raw FROM \"order\"",
    );
    assert_eq!(
        rows,
        vec![vec![
            text("order"),
            text("ORD-20261125-0001"),
            text("CUST-4471"),
            text("2026-11-25T09:14:03Z"),
            text("processing"),
            text(
                r#"[{"product_id":"SKU-1001","product_name":"Espresso cups (set of 2)","quantity":2,"price":12.5},{"product_id":"SKU-2203","product_name":"Milk frother","quantity":1,"price":34.99}]"#
            ),
            text(r#"{"street":"12 Harbour Road","city":"Bergen","country":"NO"}"#),
            SqlValue::Real(59.99),
            text("1000001"),
            text("2026-11-25T09:14:07.123Z"),
            text("projects/shop-data/subscriptions/landfall-push"),
            text(r#"{"source":"checkout-service"}"#),
            SqlValue::Null,
            text(&uri),
            text(std::str::from_utf8(&fixture_data("order.json")).unwrap()),
        ]]
    );
    app.stop().await;
}

#[tokio::test]
async fn an_inventory_event_lands_with_its_signed_quantity() {
    let app = spawn_app().await;

    json_body(app.push_fixture("inventory.json").await, "/push", 200).await;

    let object = "output/inventory/2026/11/25/09/14/inventory_20261125091405_1000002.json";
    assert_eq!(app.landed_objects(), vec![object.to_string()]);
    assert_eq!(app.read_object(object), fixture_data("inventory.json"));
    let rows = app.query(
        "SELECT inventory_id, product_id, warehouse_id, quantity_change, reason, timestamp, message_id FROM inventory",
    );
    assert_eq!(
        rows,
        vec![vec![
            text("INV-88120"),
            text("SKU-1001"),
            text("WH-OSL-1"),
            SqlValue::Integer(-2),
            text("sale"),
            text("2026-11-25T09:14:05.250Z"),
            text("1000002"),
        ]]
    );
    app.stop().await;
}

#[tokio::test]
async fn user_activity_is_partitioned_in_utc_and_keeps_unknown_fields_in_raw() {
    let app = spawn_app().await;

    json_body(app.push_fixture("user-activity.json").await, "/push", 200).await;

    // The event says 09:13:58+01:00, which is 08:13:58 UTC.
    let object = "output/user_activity/2026/11/25/08/13/user_activity_20261125081358_1000003.json";
    assert_eq!(app.landed_objects(), vec![object.to_string()]);
    assert_eq!(app.read_object(object), fixture_data("user-activity.json"));
    let rows = app.query(
        "SELECT user_id, activity_type, ip_address, timestamp, metadata, raw FROM user_activity",
    );
    let raw = String::from_utf8(fixture_data("user-activity.json")).unwrap();
    assert!(raw.contains(r#""campaign":"black-friday""#));
    assert_eq!(
        rows,
        vec![vec![
            text("USR-31337"),
            text("add_to_cart"),
            text("203.0.113.42"),
            text("2026-11-25T08:13:58Z"),
            text(r#"{"session_id":"SESS-7f3a","platform":"web"}"#),
            text(&raw),
        ]]
    );
    app.stop().await;
}

#[tokio::test]
async fn an_unwrapped_push_reads_metadata_and_attributes_from_headers() {
    let app = spawn_app().await;

    let response = app
        .client
        .post(format!("{}/push", app.address))
        .header("content-type", "application/x-www-form-urlencoded")
        .header("x-goog-pubsub-message-id", "2000001")
        .header("x-goog-pubsub-publish-time", "2026-11-25T09:20:01.500Z")
        .header(
            "x-goog-pubsub-subscription-name",
            "projects/shop-data/subscriptions/landfall-raw",
        )
        .header("source", "warehouse-scanner")
        .body(fixture("unwrapped-inventory.json"))
        .send()
        .await
        .unwrap();

    let ack = json_body(response, "/push", 200).await;
    assert_eq!(ack["event_type"], "inventory");
    let object = "output/inventory/2026/11/25/09/20/inventory_20261125092000_2000001.json";
    assert_eq!(app.landed_objects(), vec![object.to_string()]);
    assert_eq!(app.read_object(object), fixture("unwrapped-inventory.json"));
    let rows = app.query("SELECT inventory_id, quantity_change, message_id, publish_time, subscription, attributes FROM inventory");
    assert_eq!(
        rows,
        vec![vec![
            text("INV-88121"),
            SqlValue::Integer(40),
            text("2000001"),
            text("2026-11-25T09:20:01.500Z"),
            text("projects/shop-data/subscriptions/landfall-raw"),
            text(r#"{"source":"warehouse-scanner"}"#),
        ]]
    );
    app.stop().await;
}

#[tokio::test]
async fn publish_time_partitioning_and_a_custom_prefix_shape_the_path() {
    let app = spawn_app_with(&["--partition-time", "publish", "--prefix", "landing/v1"]).await;

    json_body(app.push_fixture("order.json").await, "/push", 200).await;

    assert_eq!(
        app.landed_objects(),
        vec!["landing/v1/order/2026/11/25/09/14/order_20261125091407_1000001.json".to_string()]
    );
    app.stop().await;
}

#[tokio::test]
async fn delivery_attempt_is_recorded_when_the_subscription_sends_it() {
    let app = spawn_app().await;
    let mut body: serde_json::Value = serde_json::from_slice(&fixture("inventory.json")).unwrap();
    body["deliveryAttempt"] = 3.into();

    json_body(app.push_json(&body).await, "/push", 200).await;

    assert_eq!(
        app.query("SELECT delivery_attempt FROM inventory"),
        vec![vec![SqlValue::Integer(3)]]
    );
    app.stop().await;
}

/// Where `open(O_TMPFILE)` fails (some network and FUSE filesystems), files are staged under
/// hidden temporary names instead: the same objects land once, nothing temporary stays, and
/// what a crash left staged is swept at the start.
#[tokio::test]
async fn without_o_tmpfile_files_are_staged_under_temporary_names_and_land_the_same() {
    use crate::support::filesystem::WithoutTmpfile;
    let Some(disk) = WithoutTmpfile::mount() else {
        return;
    };
    let left = disk
        .source()
        .join("landing/output/order/.order_1.json.77-3.tmp");
    std::fs::create_dir_all(left.parent().unwrap()).unwrap();
    std::fs::write(&left, "half a file a crash left").unwrap();
    let data_dir = tempfile::tempdir().unwrap();
    std::os::unix::fs::symlink(disk.path().join("landing"), data_dir.path().join("landing"))
        .unwrap();
    let app = spawn_with_config(crate::support::config(data_dir.path(), &[]), data_dir).await;

    assert!(!left.exists(), "what a crash left staged is swept");
    let ready = json_body(app.get("/readyz").await, "/readyz", 200).await;
    assert_eq!(ready["checks"][0]["ok"], true, "{ready}");
    let ack = json_body(app.push_fixture("order.json").await, "/push", 200).await;
    assert_eq!(ack["duplicate"], false, "{ack}");
    let again = json_body(app.push_fixture("order.json").await, "/push", 200).await;
    assert_eq!(again["duplicate"], true, "{again}");
    let object = "output/order/2026/11/25/09/14/order_20261125091403_1000001.json";
    assert_eq!(
        app.landed_objects(),
        [object],
        "one object, nothing temporary"
    );
    assert_eq!(app.read_object(object), fixture_data("order.json"));
    assert_eq!(app.count("order"), 1);
    app.stop().await;
}
