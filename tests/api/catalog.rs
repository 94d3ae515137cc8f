//! The event catalog is data: a type defined only in a test catalog lands with a typed row,
//! every rule of its schema is enforced, routing can use an attribute, a new field becomes a
//! column of an existing warehouse, and a broken catalog is refused alike by `schema check`
//! and by `serve`.

use rusqlite::types::Value as SqlValue;
use serde_json::{Value, json};

use crate::support::*;

fn payment() -> Value {
    json!({
        "event_type": "payment", "payment_id": "PAY-1", "order_id": "ORD-7", "amount": 25.5,
        "currency": "EUR", "method": "card", "installments": 3, "paid_at": "2026-11-25T11:30:00+01:00",
        "settled_on": "2026-11-27", "captured": true, "fee_ratio": 0.0125,
        "card": {"last4": "4242", "brand": "visa", "country": "NO"},
        "tags": ["web", "first-order"],
        "refunds": [{"amount": 5, "at": "2026-11-26T08:00:00Z"}],
        "extra": {"acquirer": "nets"},
        "campaign": "black-friday"
    })
}

fn payment_catalog() -> tempfile::TempDir {
    catalog_dir(&[("payment.json", catalog_fixture("payment").to_string())])
}

async fn spawn_payment_app() -> (TestApp, tempfile::TempDir) {
    let catalog = payment_catalog();
    let app = spawn_app_with(&["--schemas", catalog.path().to_str().unwrap()]).await;
    (app, catalog)
}

#[tokio::test]
async fn a_type_defined_only_in_a_catalog_file_lands_with_a_typed_row() {
    let (app, _catalog) = spawn_payment_app().await;
    let data = payment().to_string();

    let ack = json_body(
        app.push_json(&envelope("9001", data.as_bytes())).await,
        "/push",
        200,
    )
    .await;

    assert_eq!(ack["outcome"], "landed");
    assert_eq!(ack["event_type"], "payment");
    // 11:30+01:00 is 10:30 UTC.
    let object = "output/payment/2026/11/25/10/30/payment_20261125103000_9001.json";
    assert_eq!(app.landed_objects(), vec![object.to_string()]);
    assert_eq!(app.read_object(object), data.as_bytes());
    let rows = app.query(
        "SELECT payment_id, amount, currency, method, installments, paid_at, settled_on, captured, \
         fee_ratio, card, tags, refunds, extra, message_id, raw FROM payment",
    );
    assert_eq!(
        rows,
        vec![vec![
            text("PAY-1"),
            SqlValue::Real(25.5),
            text("EUR"),
            text("card"),
            SqlValue::Integer(3),
            text("2026-11-25T10:30:00Z"),
            text("2026-11-27"),
            SqlValue::Integer(1),
            SqlValue::Real(0.0125),
            // The record keeps its declared fields; `country` survives in `raw`.
            text(r#"{"last4":"4242","brand":"visa"}"#),
            text(r#"["web","first-order"]"#),
            text(r#"[{"amount":5,"at":"2026-11-26T08:00:00Z"}]"#),
            text(r#"{"acquirer":"nets"}"#),
            text("9001"),
            text(&data),
        ]]
    );
    app.stop().await;
}

#[tokio::test]
async fn every_rule_of_the_catalog_schema_dead_letters_with_the_field_named() {
    let (app, _catalog) = spawn_payment_app().await;
    let with = |pointer: &str, value: Value| {
        let mut p = payment();
        *p.pointer_mut(pointer).unwrap() = value;
        p
    };
    let cases = [
        (
            with("/card/last4", json!("12a4")),
            r#"payment.card.last4: "12a4" does not match ^[0-9]{4}$"#,
        ),
        (
            with("/installments", json!(30)),
            "payment.installments: 30 is greater than the maximum of 24",
        ),
        (
            with("/method", json!("cash")),
            r#"payment.method: "cash" is not one of "card", "paypal", "voucher""#,
        ),
        (
            with("/paid_at", json!("yesterday")),
            r#"payment.paid_at: "yesterday" is not a "date-time""#,
        ),
        (
            with("/settled_on", json!("2026-02-30")),
            r#"payment.settled_on: "2026-02-30" is not a "date""#,
        ),
        (
            with("/tags/1", json!(7)),
            r#"payment.tags[1]: 7 is not of type "string""#,
        ),
        (
            with("/refunds/0", json!({"amount": 1})),
            "payment.refunds[0].at: is required",
        ),
        (
            with("/amount", json!(0)),
            "payment.amount: 0 is less than or equal to the minimum of 0",
        ),
        (
            with("/card", json!({"last4": "4242"})),
            "payment.card.brand: is required",
        ),
    ];
    for (i, (data, reason)) in cases.into_iter().enumerate() {
        let id = format!("bad-{i}");
        let ack = json_body(
            app.push_json(&envelope(&id, data.to_string().as_bytes()))
                .await,
            "/push",
            200,
        )
        .await;
        assert_eq!(ack["outcome"], "dead_lettered", "{reason}");
        assert_eq!(ack["reason"], reason);
        assert_eq!(ack["event_type"], "payment");
    }
    assert_eq!(app.count("payment"), 0);
    assert_eq!(app.count("dead_letter"), 9);
    app.stop().await;
}

#[tokio::test]
async fn routing_by_attribute_takes_the_type_from_the_message_not_the_payload() {
    let app = spawn_app_with(&["--event-type-attribute", "type"]).await;
    let inventory = fixture_data("inventory.json");

    let routed = envelope_with_attributes("a-1", &inventory, json!({"type": "inventory"}));
    let ack = json_body(app.push_json(&routed).await, "/push", 200).await;
    assert_eq!(ack["event_type"], "inventory");
    assert_eq!(app.count("inventory"), 1);

    let unrouted = envelope("a-2", &inventory);
    let ack = json_body(app.push_json(&unrouted).await, "/push", 200).await;
    assert_eq!(ack["outcome"], "dead_lettered");
    assert_eq!(ack["reason"], "attribute type: is required");

    // The attribute names the type; the payload must still be valid for it.
    let wrong = envelope_with_attributes("a-3", &inventory, json!({"type": "order"}));
    let ack = json_body(app.push_json(&wrong).await, "/push", 200).await;
    assert_eq!(ack["event_type"], "order");
    assert_eq!(ack["outcome"], "dead_lettered");
    assert!(
        ack["reason"].as_str().unwrap().starts_with("order."),
        "{ack}"
    );
    app.stop().await;
}

#[tokio::test]
async fn a_field_added_to_order_becomes_a_column_of_the_existing_warehouse() {
    let data_dir = tempfile::tempdir().unwrap();
    let before =
        spawn_with_config(config(data_dir.path(), &[]), tempfile::tempdir().unwrap()).await;
    json_body(before.push_fixture("order.json").await, "/push", 200).await;
    before.stop().await;

    let mut order = shipped_schema("order");
    order["properties"]["coupon"] = json!({"type": "string", "description": "Coupon code."});
    let files: Vec<(&str, String)> = vec![
        ("order.json", order.to_string()),
        ("inventory.json", shipped_schema("inventory").to_string()),
        (
            "user_activity.json",
            shipped_schema("user_activity").to_string(),
        ),
    ];
    let catalog = catalog_dir(&files);
    let after = spawn_with_config(
        config(
            data_dir.path(),
            &["--schemas", catalog.path().to_str().unwrap()],
        ),
        tempfile::tempdir().unwrap(),
    )
    .await;
    let mut coupon: Value = serde_json::from_slice(&fixture_data("order.json")).unwrap();
    coupon["coupon"] = json!("BLACKFRIDAY");
    json_body(
        after
            .push_json(&envelope("2", coupon.to_string().as_bytes()))
            .await,
        "/push",
        200,
    )
    .await;

    // An existing warehouse made by the shipped catalog …
    let db = rusqlite::Connection::open(data_dir.path().join("warehouse.db")).unwrap();
    let rows: Vec<(String, Option<String>)> = db
        .prepare("SELECT message_id, coupon FROM \"order\" ORDER BY message_id")
        .unwrap()
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
        .unwrap()
        .map(Result::unwrap)
        .collect();
    assert_eq!(
        rows,
        vec![
            ("1000001".to_string(), None),
            ("2".to_string(), Some("BLACKFRIDAY".to_string()))
        ]
    );
    after.stop().await;
}

#[test]
fn a_change_sqlite_cannot_make_in_place_stops_serve_naming_the_column() {
    let data_dir = tempfile::tempdir().unwrap();
    let data = data_dir.path().to_str().unwrap();
    let mut order = shipped_schema("order");
    order["properties"]["total_amount"] = json!({"type": "string"});
    let catalog = catalog_dir(&[("order.json", order.to_string())]);
    let db = rusqlite::Connection::open(data_dir.path().join("warehouse.db")).unwrap();
    let shipped =
        landfall::schema::Catalog::load(&landfall::schema::CatalogSource::Shipped).unwrap();
    for table in shipped.tables() {
        db.execute_batch(&landfall::schema::sqlite::create_table(table))
            .unwrap();
    }
    drop(db);

    // … and a catalog that turns a REAL column into TEXT.
    let output = landfall(&[
        "--port",
        "0",
        "--data-dir",
        data,
        "--schemas",
        catalog.path().to_str().unwrap(),
    ]);

    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success());
    assert!(
        stderr.contains(
            "column order.total_amount is REAL in the database, the catalog makes it TEXT"
        ),
        "{stderr}"
    );
    assert!(
        !stderr.contains("panicked") && !stderr.contains("Stack backtrace"),
        "{stderr}"
    );
}

#[test]
fn schema_check_prints_each_type_and_the_json_columns_it_chose() {
    let catalog = payment_catalog();

    let output = landfall(&[
        "schema",
        "check",
        "--schemas",
        catalog.path().to_str().unwrap(),
    ]);

    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let file = catalog.path().join("payment.json").display().to_string();
    assert!(
        stdout.contains(&format!(
            "payment → table payment: partitioned by DATE(paid_at), clustered by method, order_id ({file})"
        )),
        "{stdout}"
    );
    assert!(
        stdout.contains(&format!(
            "note: {file}#/properties/extra: becomes a JSON column: an object without `properties` (a map)"
        )),
        "{stdout}"
    );
    let shipped = landfall(&["schema", "check"]);
    let stdout = String::from_utf8_lossy(&shipped.stdout);
    assert!(stdout.contains("order → table order: partitioned by DATE(order_date), clustered by status, customer_id (schemas/order.json)"), "{stdout}");
    assert!(stdout.contains("3 event types, all valid"), "{stdout}");
}

/// A catalog with one broken file, and what both commands must say about it.
struct Broken {
    name: &'static str,
    files: Vec<(&'static str, String)>,
    /// The file, the JSON pointer and the message, as printed.
    expected: &'static str,
}

fn broken_catalogs() -> Vec<Broken> {
    let order = shipped_schema("order");
    let changed = |change: &dyn Fn(&mut Value)| {
        let mut schema = order.clone();
        change(&mut schema);
        schema.to_string()
    };
    vec![
        Broken {
            name: "not JSON",
            files: vec![("order.json", "{\"type\": \"object\",".into())],
            expected: "order.json: not JSON: EOF while parsing",
        },
        Broken {
            name: "not a valid 2020-12 schema",
            files: vec![(
                "order.json",
                changed(&|s| s["properties"]["order_id"]["minLength"] = json!("one")),
            )],
            expected: "order.json#/properties/order_id/minLength: not a valid 2020-12 schema",
        },
        Broken {
            name: "another draft",
            files: vec![(
                "order.json",
                changed(&|s| s["$schema"] = json!("http://json-schema.org/draft-07/schema#")),
            )],
            expected: "order.json#/$schema: landfall reads JSON Schema draft 2020-12",
        },
        Broken {
            name: "no time_field",
            files: vec![(
                "order.json",
                changed(&|s| {
                    s["x-landfall"]
                        .as_object_mut()
                        .unwrap()
                        .remove("time_field");
                }),
            )],
            expected: "order.json#/x-landfall: is not a landfall block: missing field `time_field`",
        },
        Broken {
            name: "time_field not a required date-time",
            files: vec![(
                "order.json",
                changed(&|s| s["x-landfall"]["time_field"] = json!("status")),
            )],
            expected: "order.json#/x-landfall/time_field: \"status\" must be a required, non-null string with \"format\": \"date-time\"",
        },
        Broken {
            name: "time_field unknown",
            files: vec![(
                "order.json",
                changed(&|s| s["x-landfall"]["time_field"] = json!("placed_at")),
            )],
            expected: "order.json#/x-landfall/time_field: \"placed_at\" is not a top-level property",
        },
        Broken {
            name: "cluster_by a record",
            files: vec![(
                "order.json",
                changed(&|s| s["x-landfall"]["cluster_by"] = json!(["shipping_address"])),
            )],
            expected: "order.json#/x-landfall/cluster_by/0: \"shipping_address\" is a nested, repeated, JSON or FLOAT64 column",
        },
        Broken {
            name: "cluster_by a repeated field",
            files: vec![(
                "order.json",
                changed(&|s| s["x-landfall"]["cluster_by"] = json!(["items"])),
            )],
            expected: "order.json#/x-landfall/cluster_by/0: \"items\" is a nested, repeated",
        },
        Broken {
            name: "cluster_by unknown",
            files: vec![(
                "order.json",
                changed(&|s| s["x-landfall"]["cluster_by"] = json!(["store"])),
            )],
            expected: "order.json#/x-landfall/cluster_by/0: \"store\" is not a top-level property",
        },
        Broken {
            name: "cluster_by more than 4",
            files: vec![(
                "order.json",
                changed(&|s| {
                    s["x-landfall"]["cluster_by"] = json!([
                        "status",
                        "customer_id",
                        "order_id",
                        "order_date",
                        "event_type"
                    ])
                }),
            )],
            expected: "order.json#/x-landfall/cluster_by: names 5 columns; BigQuery clusters on at most 4",
        },
        Broken {
            name: "two files, one event type",
            files: vec![
                ("order.json", order.to_string()),
                (
                    "order_v2.json",
                    changed(&|s| s["x-landfall"]["table"] = json!("order_v2")),
                ),
            ],
            expected: "order_v2.json#/x-landfall/event_type: event type \"order\" is also defined by",
        },
        Broken {
            name: "two files, one table",
            files: vec![
                ("order.json", order.to_string()),
                (
                    "refund.json",
                    changed(&|s| s["x-landfall"]["event_type"] = json!("refund")),
                ),
            ],
            expected: "refund.json#/x-landfall/table: table \"order\" is also written by",
        },
        Broken {
            name: "a property that cannot be a column",
            files: vec![(
                "order.json",
                changed(&|s| s["properties"]["gift-wrap"] = json!({"type": "boolean"})),
            )],
            expected: "order.json#/properties/gift-wrap: property name \"gift-wrap\" cannot be a column name",
        },
        Broken {
            name: "a property landfall adds itself",
            files: vec![(
                "order.json",
                changed(&|s| s["properties"]["message_id"] = json!({"type": "string"})),
            )],
            expected: "order.json#/properties/message_id: \"message_id\" is a column landfall adds to every row",
        },
        Broken {
            name: "a curated key that is not a top-level scalar",
            files: vec![(
                "order.json",
                changed(&|s| {
                    s["x-landfall"]["curated"]["key"] = json!(["order_id", "shipping_address"])
                }),
            )],
            expected: "order.json#/x-landfall/curated/key/1: \"shipping_address\" is a nested, repeated or JSON column; a key is a top-level scalar",
        },
        Broken {
            name: "a curated key that is unknown",
            files: vec![(
                "order.json",
                changed(&|s| s["x-landfall"]["curated"]["key"] = json!(["order_number"])),
            )],
            expected: "order.json#/x-landfall/curated/key/0: \"order_number\" is not a top-level property",
        },
        Broken {
            name: "a latest_by that cannot order versions",
            files: vec![(
                "order.json",
                changed(&|s| s["x-landfall"]["curated"]["latest_by"] = json!("status")),
            )],
            expected: "order.json#/x-landfall/curated/latest_by: \"status\" must be a top-level timestamp, date or number to order versions by",
        },
        Broken {
            name: "a flatten column that is not a repeated record",
            files: vec![(
                "order.json",
                changed(&|s| s["x-landfall"]["curated"]["flatten"] = json!(["shipping_address"])),
            )],
            expected: "order.json#/x-landfall/curated/flatten/0: \"shipping_address\" is not an array of objects (a repeated record), so there are no element rows to make",
        },
        Broken {
            name: "a curated block with an unknown member",
            files: vec![(
                "order.json",
                changed(&|s| s["x-landfall"]["curated"]["dedupe"] = json!(true)),
            )],
            expected: "order.json#/x-landfall: is not a landfall block: unknown field `dedupe`",
        },
    ]
}

#[test]
fn every_class_of_broken_catalog_is_refused_by_schema_check_and_by_serve_alike() {
    for broken in broken_catalogs() {
        let dir = catalog_dir(&broken.files);
        let schemas = dir.path().to_str().unwrap();
        let data = tempfile::tempdir().unwrap();

        let check = landfall(&["schema", "check", "--schemas", schemas]);
        let serve = landfall(&[
            "serve",
            "--port",
            "0",
            "--data-dir",
            data.path().to_str().unwrap(),
            "--schemas",
            schemas,
        ]);

        for (command, output) in [("schema check", &check), ("serve", &serve)] {
            let stderr = String::from_utf8_lossy(&output.stderr);
            assert!(
                !output.status.success(),
                "{}: {command} accepted it",
                broken.name
            );
            let expected = format!("{}/{}", dir.path().display(), broken.expected);
            assert!(
                stderr.contains(&expected),
                "{}: {command} said\n{stderr}\nexpected {expected}",
                broken.name
            );
            assert!(!stderr.contains("panicked"), "{stderr}");
        }
    }
}

#[tokio::test]
async fn a_field_no_longer_required_is_relaxed_in_the_embedded_warehouse_keeping_its_rows() {
    let app = spawn_app().await;
    json_body(app.push_fixture("order.json").await, "/push", 200).await;
    let mut relaxed = shipped_schema("order");
    relaxed["required"]
        .as_array_mut()
        .unwrap()
        .retain(|r| r != "total_amount");
    let catalog = catalog_dir(&[
        ("order.json", relaxed.to_string()),
        ("inventory.json", shipped_schema("inventory").to_string()),
        (
            "user_activity.json",
            shipped_schema("user_activity").to_string(),
        ),
    ]);
    let schemas = catalog.path().to_str().unwrap();

    let mut app = app;
    app.stop_in_place().await;
    let data = app.data_dir.path().to_str().unwrap();
    let check = landfall(&["schema", "check", "--schemas", schemas, "--data-dir", data]);
    let stdout = String::from_utf8_lossy(&check.stdout);
    assert!(
        check.status.success(),
        "{}",
        String::from_utf8_lossy(&check.stderr)
    );
    assert!(
        stdout.contains("warehouse.db: table order: relaxes to nullable total_amount"),
        "schema check tells before the restart: {stdout}"
    );

    let app = app.restart(&["--schemas", schemas]).await;
    let mut without: Value = serde_json::from_slice(&fixture_data("order.json")).unwrap();
    without.as_object_mut().unwrap().remove("total_amount");
    let ack = json_body(
        app.push_json(&envelope("2", without.to_string().as_bytes()))
            .await,
        "/push",
        200,
    )
    .await;
    assert_eq!(ack["outcome"], "landed", "{ack}");
    assert_eq!(
        app.query("SELECT message_id, total_amount FROM \"order\" ORDER BY message_id"),
        vec![
            vec![text("1000001"), rusqlite::types::Value::Real(59.99)],
            vec![text("2"), rusqlite::types::Value::Null],
        ]
    );
    let not_null: i64 = match &app
        .query("SELECT \"notnull\" FROM pragma_table_info('order') WHERE name = 'total_amount'")[0]
        [0]
    {
        rusqlite::types::Value::Integer(n) => *n,
        other => panic!("{other:?}"),
    };
    assert_eq!(not_null, 0);
    app.stop().await;
}

#[test]
fn schema_check_names_what_serve_would_add_or_refuse_in_the_embedded_warehouse() {
    let data_dir = tempfile::tempdir().unwrap();
    let db = rusqlite::Connection::open(data_dir.path().join("warehouse.db")).unwrap();
    let shipped =
        landfall::schema::Catalog::load(&landfall::schema::CatalogSource::Shipped).unwrap();
    for table in shipped.tables() {
        db.execute_batch(&landfall::schema::sqlite::create_table(table))
            .unwrap();
    }
    drop(db);
    let mut order = shipped_schema("order");
    order["properties"]["channel"] = json!({"type": "string"});
    order["properties"]["total_amount"] = json!({"type": "string"});
    let catalog = catalog_dir(&[("order.json", order.to_string())]);

    let output = landfall(&[
        "schema",
        "check",
        "--schemas",
        catalog.path().to_str().unwrap(),
        "--data-dir",
        data_dir.path().to_str().unwrap(),
    ]);

    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success(), "{stdout}");
    assert!(
        stdout.contains("table order: adds columns channel"),
        "{stdout}"
    );
    assert!(
        stderr.contains("serve would refuse to start:")
            && stderr.contains(
                "column order.total_amount is REAL in the database, the catalog makes it TEXT"
            ),
        "{stderr}"
    );
}

#[test]
fn a_schemas_folder_that_is_not_there_is_named_as_a_folder() {
    let missing = tempfile::tempdir().unwrap().path().join("nowhere");
    let missing = missing.to_str().unwrap();
    let output = landfall(&["schema", "check", "--schemas", missing]);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success());
    assert!(
        stderr.contains(&format!("  {missing}: no such folder\n")),
        "{stderr}"
    );
}
