//! The whole path through the real Pub/Sub emulator: publish 1,000 mixed messages (some
//! poison), let the push subscription deliver them to landfall, and check that each one ends
//! up exactly once: an object at its exact path with its exact bytes and a row, or a dead
//! letter with its reason. Then the same with the bucket or the warehouse down for ~10 s.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use crate::helpers::event_object;
use chrono::{DateTime, TimeZone, Utc};
use serde_json::json;

use crate::emulators::{BigQuery, PubSub};
use crate::helpers::sample;
use crate::{GoogleStack, google_stack};

const MESSAGES: usize = 1000;

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

async fn ids(bigquery: &BigQuery, sql: &str) -> Vec<String> {
    bigquery
        .query(sql)
        .await
        .into_iter()
        .map(|row| row[0].as_str().unwrap().to_string())
        .collect()
}

async fn run(outage: Outage) {
    let GoogleStack {
        mut gcs,
        mut bigquery,
        app,
        _turn,
    } = google_stack().await;
    let pubsub = PubSub::start().await;
    pubsub
        .push_subscription("events", "landfall-push", &format!("{}/push", app.address))
        .await;
    let expected: Vec<Expected> = (0..MESSAGES).map(message).collect();
    let payloads: Vec<Vec<u8>> = expected.iter().map(|e| e.payload.clone()).collect();

    let mut message_ids = pubsub.publish("events", &payloads[..MESSAGES / 2]).await;
    match outage {
        Outage::None => {}
        Outage::Bucket => gcs.stop(),
        Outage::Warehouse => bigquery.stop(),
    }
    message_ids.extend(pubsub.publish("events", &payloads[MESSAGES / 2..]).await);
    if !matches!(outage, Outage::None) {
        tokio::time::sleep(Duration::from_secs(10)).await;
        match outage {
            Outage::Bucket => gcs.restart().await,
            Outage::Warehouse => bigquery.restart().await,
            Outage::None => {}
        }
    }

    // Wait for every message to have its object and its row.
    let started = Instant::now();
    let total_rows = "SELECT (SELECT COUNT(*) FROM raw.`order`) + (SELECT COUNT(*) FROM raw.inventory) \
                      + (SELECT COUNT(*) FROM raw.user_activity) + (SELECT COUNT(*) FROM raw.dead_letter)";
    loop {
        let objects = gcs.objects().len();
        let rows = bigquery.count(total_rows).await as usize;
        if objects >= MESSAGES && rows >= MESSAGES {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(240),
            "after {:?}: {objects} objects and {rows} rows of {MESSAGES}",
            started.elapsed()
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    // Settled: every message acknowledged by landfall's own count, none stored anew twice,
    // and nothing in flight, so no redelivery is still on its way to add anything. A write
    // that succeeded while its answer was lost in the outage is acknowledged on redelivery
    // as a duplicate: it counts as acknowledged, not as stored anew.
    let settled = Instant::now();
    loop {
        let samples = app.scrape().await;
        let total = |outcome: &str| -> f64 {
            samples
                .iter()
                .filter(|s| s.name == "landfall_pushes_total" && s.labels["outcome"] == outcome)
                .map(|s| s.value.as_f64().unwrap())
                .sum()
        };
        let in_flight = sample(&samples, "landfall_in_flight_pushes", &[]).unwrap();
        let stored = total("landed") + total("dead_lettered");
        assert!(
            stored <= MESSAGES as f64,
            "a message was stored twice: {stored}"
        );
        let acknowledged = stored + total("duplicate");
        if acknowledged >= MESSAGES as f64 && in_flight == 0.0 {
            if matches!(outage, Outage::Bucket | Outage::Warehouse) {
                assert!(
                    total("unavailable") > 0.0,
                    "pushes were refused while a sink was down"
                );
            }
            break;
        }
        assert!(
            settled.elapsed() < Duration::from_secs(120),
            "never settled: {acknowledged} acknowledged, {in_flight} in flight"
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
    }

    let objects: BTreeSet<String> = gcs.objects().into_iter().collect();
    assert_eq!(objects.len(), MESSAGES, "exactly one object per message");
    let (mut events, mut poison) = (BTreeSet::new(), BTreeSet::new());
    for (expected, id) in expected.iter().zip(&message_ids) {
        match expected.outcome {
            Ok((event_type, time)) => {
                let name = event_object(event_type, &time, id);
                assert!(objects.contains(&name), "no object {name}");
                assert_eq!(
                    gcs.object(&name),
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
            &bigquery,
            &format!("SELECT message_id FROM raw.`{table}` ORDER BY message_id"),
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
    let dead = bigquery
        .query("SELECT message_id, reason FROM raw.dead_letter")
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
    app.stop().await;
}

#[tokio::test]
async fn a_thousand_published_messages_each_land_exactly_once() {
    run(Outage::None).await;
}

#[tokio::test]
async fn a_bucket_outage_mid_stream_loses_and_duplicates_nothing() {
    run(Outage::Bucket).await;
}

#[tokio::test]
async fn a_warehouse_outage_mid_stream_loses_and_duplicates_nothing() {
    run(Outage::Warehouse).await;
}
