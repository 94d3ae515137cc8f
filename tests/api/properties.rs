//! Properties that cut across the envelope, the catalog and the sinks, on generated input:
//! any body gets an answer in the documented shape, never a 5xx from the decoder; a valid
//! event lands with its exact bytes in the landing layer and its exact values in its row.

use base64::Engine;
use proptest::prelude::*;
use rusqlite::types::Value as SqlValue;
use serde_json::{Value, json};

use crate::support::*;

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

/// JSON values of any shape, a few levels deep.
fn any_json() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(|n| json!(n)),
        any::<f64>()
            .prop_filter("finite", |f| f.is_finite())
            .prop_map(|f| json!(f)),
        ".{0,20}".prop_map(Value::String),
    ];
    leaf.prop_recursive(3, 24, 4, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
            prop::collection::btree_map("[a-zA-Z_]{1,10}", inner, 0..4)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

/// Bodies that come close to an envelope, and bodies that do not.
fn body() -> impl Strategy<Value = Vec<u8>> {
    let near = (
        prop::option::of(prop_oneof!["[0-9]{1,12}", ".{0,8}"]),
        prop::option::of(prop_oneof![
            Just("2026-11-25T10:00:00Z".to_string()),
            ".{0,30}"
        ]),
        prop::option::of(prop_oneof![
            prop::collection::vec(any::<u8>(), 0..64)
                .prop_map(|b| base64::engine::general_purpose::STANDARD.encode(b)),
            ".{0,12}"
        ]),
        any_json(),
    )
        .prop_map(|(id, time, data, extra)| {
            let mut message = serde_json::Map::new();
            if let Some(id) = id {
                message.insert("messageId".into(), json!(id));
            }
            if let Some(time) = time {
                message.insert("publishTime".into(), json!(time));
            }
            if let Some(data) = data {
                message.insert("data".into(), json!(data));
            }
            message.insert("attributes".into(), extra);
            json!({"message": message}).to_string().into_bytes()
        });
    prop_oneof![
        near,
        any_json().prop_map(|v| v.to_string().into_bytes()),
        prop::collection::vec(any::<u8>(), 0..256),
    ]
}

#[test]
fn any_body_gets_a_documented_answer_and_never_a_5xx_from_the_decoder() {
    let runtime = runtime();
    let app = runtime.block_on(spawn_app());
    proptest!(ProptestConfig::with_cases(400), |(body in body())| {
        let (status, answer) = runtime.block_on(async {
            let response = app.post_push(body.clone()).await;
            let status = response.status().as_u16();
            (status, response.json::<Value>().await.expect("every answer is JSON"))
        });
        prop_assert!(matches!(status, 200 | 400), "{status}: {answer}");
        assert_matches_openapi("/push", "post", status, &answer);
        if status == 400 {
            prop_assert_eq!(&answer["error"], "bad_envelope");
            let message = answer["message"].as_str().unwrap();
            prop_assert!(!message.contains("struct") && !message.contains("Wrapped"), "{}", message);
        }
    });
    runtime.block_on(app.stop());
}

/// A valid inventory event, its fields drawn from what the catalog allows.
#[derive(Debug, Clone)]
struct Inventory {
    inventory_id: String,
    product_id: String,
    warehouse_id: String,
    quantity_change: i64,
    reason: &'static str,
    timestamp: String,
    /// Whitespace between the members: the landing layer must keep it.
    spacing: &'static str,
}

fn inventory() -> impl Strategy<Value = Inventory> {
    (
        "[A-Za-z0-9][A-Za-z0-9 ._\u{e9}\u{4e2d}-]{0,20}",
        "[A-Za-z0-9]{1,12}",
        "[A-Z]{1,4}-[0-9]{1,3}",
        -100i64..=100,
        prop::sample::select(vec!["restock", "sale", "return", "damage"]),
        (
            2000u32..2099,
            1u32..=12,
            1u32..=28,
            0u32..24,
            0u32..60,
            0u32..60,
            0u32..1000,
        ),
        prop::sample::select(vec!["", " ", "\n  ", "\t"]),
    )
        .prop_map(
            |(
                inventory_id,
                product_id,
                warehouse_id,
                quantity_change,
                reason,
                (y, mo, d, h, mi, s, ms),
                spacing,
            )| Inventory {
                inventory_id,
                product_id,
                warehouse_id,
                quantity_change,
                reason,
                timestamp: format!("{y}-{mo:02}-{d:02}T{h:02}:{mi:02}:{s:02}.{ms:03}Z"),
                spacing,
            },
        )
}

impl Inventory {
    fn bytes(&self) -> Vec<u8> {
        let s = self.spacing;
        format!(
            "{{{s}\"event_type\":{s}\"inventory\",{s}\"inventory_id\":{},\"product_id\":{},\"warehouse_id\":{},\"quantity_change\":{},\"reason\":\"{}\",\"timestamp\":\"{}\"{s}}}",
            json!(self.inventory_id), json!(self.product_id), json!(self.warehouse_id), self.quantity_change, self.reason, self.timestamp
        )
        .into_bytes()
    }
}

#[test]
fn a_valid_event_lands_with_its_exact_bytes_and_its_exact_values() {
    let runtime = runtime();
    let app = runtime.block_on(spawn_app());
    let n = std::sync::atomic::AtomicU64::new(0);
    proptest!(ProptestConfig::with_cases(200), |(event in inventory())| {
        let id = format!("p{}", n.fetch_add(1, std::sync::atomic::Ordering::Relaxed));
        let bytes = event.bytes();
        let ack = runtime.block_on(async { json_body(app.push_json(&envelope(&id, &bytes)).await, "/push", 200).await });
        prop_assert_eq!(&ack["outcome"], "landed", "{}", ack);
        let object = ack["landing_uri"].as_str().unwrap().strip_prefix(&format!("file://{}/", app.landing_root().display())).unwrap().to_string();
        prop_assert_eq!(app.read_object(&object), bytes);
        let row = app.query(&format!(
            "SELECT inventory_id, product_id, warehouse_id, quantity_change, reason, timestamp FROM inventory WHERE message_id = '{id}'"
        ));
        let stored = chrono::DateTime::parse_from_rfc3339(&event.timestamp).unwrap().to_utc();
        prop_assert_eq!(row, vec![vec![
            text(&event.inventory_id),
            text(&event.product_id),
            text(&event.warehouse_id),
            SqlValue::Integer(event.quantity_change),
            text(event.reason),
            text(&landfall::time::format_timestamp(&stored)),
        ]]);
    });
    runtime.block_on(app.stop());
}
