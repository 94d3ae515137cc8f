//! The whole path through the real Pub/Sub emulator: publish 120 mixed messages (some
//! poison), let the push subscription deliver them to landfall, and check that each one ends
//! up exactly once: an object at its exact path with its exact bytes and a row, or a dead
//! letter with its reason; and that no row is without its object. Then the same with the
//! bucket or the warehouse down for a few seconds mid-stream.

use std::collections::BTreeSet;
use std::time::Duration;

use chrono::{DateTime, TimeZone, Utc};
use serde_json::json;

use crate::support::emulators::{Google, WriteApi, pubsub};
use crate::support::metrics::total;
use crate::support::{event_object, poll, sample};

/// The emulator pushes one message at a time (about 20 a second here): a few hundred prove
/// no more than this.
const MESSAGES: usize = 120;

/// One published message and what must become of it.
struct Expected {
    payload: Vec<u8>,
    /// `(event_type, event time)` for a valid event; the reason's start for a poison one.
    outcome: Result<(&'static str, DateTime<Utc>), &'static str>,
}

fn message(i: usize) -> Expected {
    let time = Utc.with_ymd_and_hms(2026, 11, 25, 8, 0, 0).unwrap()
        + chrono::Duration::seconds(i as i64 * 7);
    let stamp = time.to_rfc3339();
    let poison: Option<(Vec<u8>, &'static str)> = match i % 20 {
        3 => Some((b"{not json".to_vec(), "payload is not valid JSON")),
        8 => Some((json!({"event_type": "refund", "id": i}).to_string().into_bytes(), "event_type: unknown value")),
        13 => Some((
            json!({"event_type": "inventory", "inventory_id": format!("I{i}"), "product_id": "P", "warehouse_id": "W",
                   "quantity_change": 500, "reason": "sale", "timestamp": stamp}).to_string().into_bytes(),
            "inventory.quantity_change: 500 is greater than the maximum of 100",
        )),
        _ => None,
    };
    if let Some((payload, reason)) = poison {
        return Expected {
            payload,
            outcome: Err(reason),
        };
    }
    let (event_type, payload) = match i % 3 {
        0 => (
            "order",
            json!({"event_type": "order", "order_id": format!("O{i}"), "customer_id": format!("C{}", i % 37),
               "order_date": stamp, "status": "pending",
               "items": [{"product_id": "P1", "product_name": "Kettle", "quantity": i % 5, "price": 24.5}],
               "shipping_address": {"street": "1 Quay", "city": "Bergen", "country": "NO"}, "total_amount": 24.5}),
        ),
        1 => (
            "inventory",
            json!({"event_type": "inventory", "inventory_id": format!("I{i}"), "product_id": "P1",
               "warehouse_id": "W1", "quantity_change": (i % 201) as i64 - 100, "reason": "restock", "timestamp": stamp}),
        ),
        _ => (
            "user_activity",
            json!({"event_type": "user_activity", "user_id": format!("U{i}"), "activity_type": "login",
               "ip_address": "198.51.100.7", "user_agent": "e2e", "timestamp": stamp,
               "metadata": {"session_id": format!("S{i}"), "platform": "mobile"}}),
        ),
    };
    Expected {
        payload: payload.to_string().into_bytes(),
        outcome: Ok((event_type, time)),
    }
}

#[derive(Clone, Copy)]
enum Outage {
    None,
    Bucket,
    Warehouse,
}

async fn ids(google: &Google, sql: &str) -> Vec<String> {
    google
        .query(sql)
        .await
        .into_iter()
        .map(|row| row[0].as_str().unwrap().to_string())
        .collect()
}

async fn run(outage: Outage, api: WriteApi) {
    let google = match outage {
        Outage::None => Google::new().await,
        Outage::Bucket | Outage::Warehouse => Google::private().await,
    }
    .writing_with(api);
    // A short deadline: pushes meet the outage and are refused quickly.
    let app = google.app(&["--request-timeout-secs", "2"]).await;
    let pubsub = pubsub().await;
    let topic = google.name("events");
    pubsub
        .push_subscription(
            &topic,
            &google.name("landfall_push"),
            &format!("{}/push", app.address),
        )
        .await;
    let expected: Vec<Expected> = (0..MESSAGES).map(message).collect();
    let payloads: Vec<Vec<u8>> = expected.iter().map(|e| e.payload.clone()).collect();

    let mut message_ids = pubsub.publish(&topic, &payloads[..MESSAGES / 2]).await;
    match outage {
        Outage::None => {}
        Outage::Bucket => google.gcs.stop(),
        Outage::Warehouse => google.bigquery.stop(),
    }
    message_ids.extend(pubsub.publish(&topic, &payloads[MESSAGES / 2..]).await);
    if !matches!(outage, Outage::None) {
        // The outage lasts until pushes have met it.
        poll::until(
            "pushes refused during the outage",
            Duration::from_secs(60),
            || async {
                let refused = total(
                    &app.scrape().await,
                    "landfall_pushes_total",
                    "outcome",
                    "unavailable",
                );
                if refused >= 3.0 {
                    Ok(())
                } else {
                    Err(format!("{refused} refused"))
                }
            },
        )
        .await;
        match outage {
            Outage::Bucket => google.gcs.restart().await,
            Outage::Warehouse => google.bigquery.restart().await,
            Outage::None => {}
        }
    }

    // Wait for every message to have its object and its row.
    let total_rows = format!(
        "SELECT (SELECT COUNT(*) FROM {}) + (SELECT COUNT(*) FROM {}) + (SELECT COUNT(*) FROM {}) + (SELECT COUNT(*) FROM {})",
        google.table("order"),
        google.table("inventory"),
        google.table("user_activity"),
        google.table("dead_letter")
    );
    poll::until(
        "every message has its object and row",
        Duration::from_secs(240),
        || async {
            let objects = google.objects().len();
            let rows = google.count(&total_rows).await as usize;
            if objects >= MESSAGES && rows >= MESSAGES {
                Ok(())
            } else {
                Err(format!("{objects} objects and {rows} rows of {MESSAGES}"))
            }
        },
    )
    .await;
    // Settled: every message acknowledged by landfall's own count, none stored anew twice,
    // and nothing in flight, so no redelivery is still on its way to add anything. A write
    // that succeeded while its answer was lost in the outage is acknowledged on redelivery
    // as a duplicate: it counts as acknowledged, not as stored anew.
    poll::until(
        "every push acknowledged",
        Duration::from_secs(120),
        || async {
            let samples = app.scrape().await;
            let count =
                |outcome: &str| total(&samples, "landfall_pushes_total", "outcome", outcome);
            let in_flight = sample(&samples, "landfall_in_flight_pushes", &[]).unwrap();
            let stored = count("landed") + count("dead_lettered");
            assert!(
                stored <= MESSAGES as f64,
                "a message was stored twice: {stored}"
            );
            let acknowledged = stored + count("duplicate");
            if acknowledged >= MESSAGES as f64 && in_flight == 0.0 {
                Ok(())
            } else {
                Err(format!(
                    "{acknowledged} acknowledged, {in_flight} in flight"
                ))
            }
        },
    )
    .await;

    let objects: BTreeSet<String> = google.objects().into_iter().collect();
    assert_eq!(objects.len(), MESSAGES, "exactly one object per message");
    let (mut events, mut poison) = (BTreeSet::new(), BTreeSet::new());
    for (expected, id) in expected.iter().zip(&message_ids) {
        match expected.outcome {
            Ok((event_type, time)) => {
                let name = event_object(event_type, &time, id);
                assert!(objects.contains(&name), "no object {name}");
                assert_eq!(
                    google.object(&name),
                    expected.payload,
                    "{name} is not byte-exact"
                );
                events.insert((event_type, id.clone()));
            }
            Err(_) => {
                assert!(
                    objects.iter().any(|o| o.starts_with("output/_dead_letter/")
                        && o.ends_with(&format!("/{id}.json"))),
                    "no dead-letter object for {id}"
                );
                poison.insert(id.clone());
            }
        }
    }
    for table in ["order", "inventory", "user_activity"] {
        let rows = ids(
            &google,
            &format!(
                "SELECT message_id FROM {} ORDER BY message_id",
                google.table(table)
            ),
        )
        .await;
        let want: BTreeSet<String> = events
            .iter()
            .filter(|(t, _)| *t == table)
            .map(|(_, id)| id.clone())
            .collect();
        assert_eq!(
            rows.len(),
            want.len(),
            "{table}: one row per message, no duplicates"
        );
        assert_eq!(rows.into_iter().collect::<BTreeSet<_>>(), want, "{table}");
    }
    let dead = google
        .query(&format!(
            "SELECT message_id, reason FROM {}",
            google.table("dead_letter")
        ))
        .await;
    assert_eq!(
        dead.len(),
        poison.len(),
        "one dead letter per poison message"
    );
    for row in dead {
        let id = row[0].as_str().unwrap();
        let reason = row[1].as_str().unwrap();
        let index = message_ids
            .iter()
            .position(|m| m == id)
            .expect("a published id");
        let want = expected[index].outcome.unwrap_err();
        assert!(
            reason.starts_with(want),
            "{id}: {reason:?} should start with {want:?}"
        );
    }
    google
        .assert_no_row_without_its_object(&["order", "inventory", "user_activity", "dead_letter"])
        .await;
    app.stop().await;
}

#[tokio::test]
async fn published_messages_each_land_exactly_once() {
    run(Outage::None, WriteApi::Storage).await;
}

#[tokio::test]
async fn a_bucket_outage_mid_stream_loses_and_duplicates_nothing() {
    run(Outage::Bucket, WriteApi::Storage).await;
}

with_each_write_api!(a_warehouse_outage_mid_stream_loses_and_duplicates_nothing);

async fn a_warehouse_outage_mid_stream_loses_and_duplicates_nothing(api: WriteApi) {
    run(Outage::Warehouse, api).await;
}
