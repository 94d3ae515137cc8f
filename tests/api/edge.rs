//! The edge, tried as an attacker and an unlucky operator would: every message Pub/Sub can
//! send is landed, dead-lettered or refused in words; memory and connections are bounded; a
//! storage fault outside the process is never acknowledged. Faults come from outside where
//! they happen outside: a small ext4 filesystem, a file deleted under the server, a lock held
//! by another process, an open-file limit, clients that send a byte at a time.

use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::support::app::{WarehouseLock, query, text_of};
use crate::support::filesystem::Ext4;
use crate::support::oidc::{JwksServer, TestKey};
use crate::support::raw;
use crate::support::*;

/// An unwrapped push of the inventory fixture carrying these attribute headers, and the
/// transport headers Pub/Sub and Cloud Run's front end add.
fn unwrapped(app: &TestApp, id: &str, attributes: &[(String, String)]) -> reqwest::RequestBuilder {
    let mut request = app
        .client
        .post(format!("{}/push", app.address))
        .header("x-goog-pubsub-message-id", id)
        .header("x-goog-pubsub-publish-time", "2026-11-25T09:20:01Z")
        .header(
            "x-goog-pubsub-subscription-name",
            "projects/p/subscriptions/s",
        )
        .body(fixture("unwrapped-inventory.json"));
    for (name, value) in front_end_headers() {
        request = request.header(name, value);
    }
    for (name, value) in attributes {
        request = request.header(name, value);
    }
    request
}

/// What arrives beside the attributes through Pub/Sub and Cloud Run's front end.
fn front_end_headers() -> Vec<(&'static str, &'static str)> {
    vec![
        ("authorization", "Bearer not-checked-here"),
        ("x-forwarded-for", "203.0.113.9"),
        ("x-forwarded-proto", "https"),
        (
            "x-cloud-trace-context",
            "105445aa7843bc8bf206b120001000/1;o=1",
        ),
        (
            "traceparent",
            "00-105445aa7843bc8bf206b12000100000-0000000000000001-01",
        ),
        ("forwarded", "for=\"203.0.113.9\";proto=https"),
        ("via", "1.1 google"),
        (
            "user-agent",
            "APIs-Google; (+https://developers.google.com/webmasters/APIs-Google.html)",
        ),
        ("accept", "application/json"),
        ("accept-encoding", "gzip, deflate, br"),
        ("x-goog-pubsub-ordering-key", "cart-7"),
        ("x-goog-iap-jwt-assertion", "not-kept"),
        ("x-goog-pubsub-delivery-attempt", "1"),
        ("content-type", "application/x-www-form-urlencoded"),
        ("x-envoy-expected-rq-timeout-ms", "600000"),
        ("x-appengine-region", "europe-west1"),
    ]
}

fn attributes(count: usize, value_bytes: usize) -> Vec<(String, String)> {
    (0..count)
        .map(|i| (format!("attr-{i:03}"), "v".repeat(value_bytes)))
        .collect()
}

#[tokio::test]
async fn every_attribute_pubsub_allows_is_landed_and_more_is_refused_in_words() {
    let app = spawn_app().await;

    let hundred = attributes(100, 1024);
    let ack = json_body(
        unwrapped(&app, "4100", &hundred).send().await.unwrap(),
        "/push",
        200,
    )
    .await;
    assert_eq!(ack["outcome"], "landed", "{ack}");
    let stored = app.query("SELECT attributes FROM inventory");
    let kept: Value = serde_json::from_str(&text_of(&stored[0][0])).unwrap();
    assert_eq!(
        kept.as_object().unwrap().len(),
        100,
        "every attribute, no transport header"
    );
    let object = ack["landing_uri"]
        .as_str()
        .unwrap()
        .strip_prefix("file://")
        .unwrap();
    let mut buffer = vec![0u8; 64 * 1024];
    let len = rustix::fs::getxattr(object, "user.landfall", &mut buffer[..]).unwrap();
    let metadata: Value = serde_json::from_slice(&buffer[..len]).unwrap();
    assert_eq!(
        metadata["ordering_key"], "cart-7",
        "Google's name for the ordering key"
    );

    let too_many = attributes(101, 1);
    let refused = json_body(
        unwrapped(&app, "4101", &too_many).send().await.unwrap(),
        "/push",
        400,
    )
    .await;
    assert_eq!(
        refused["message"],
        "headers: holds 101 attributes; Pub/Sub sends at most 100"
    );

    let address = app.address.trim_start_matches("http://");
    let headers: String = (0..300).map(|i| format!("h{i}: v\r\n")).collect();
    let (status, body) = raw::exchange(
        address,
        format!("POST /push HTTP/1.1\r\nhost: x\r\n{headers}content-length: 2\r\n\r\n{{}}")
            .as_bytes(),
    )
    .await;
    assert_eq!(status, 431);
    assert_eq!(body["error"], "headers_too_large");
    assert_matches_openapi("/push", "post", 431, &body);
    let (status, body) = raw::exchange(
        address,
        b"POST /push HTTP/1.1\r\nhost: x\r\ncontent-length: twelve\r\n\r\n{}",
    )
    .await;
    assert_eq!(status, 400);
    assert_eq!(body["error"], "malformed_request");
    assert_matches_openapi("/push", "post", 400, &body);
    app.stop().await;
}

#[tokio::test]
async fn attributes_too_large_for_a_files_metadata_land_and_say_what_was_left_out() {
    let Some(disk) = Ext4::mount(32) else { return };
    let data_dir = disk.folder("data");
    let config = crate::support::config(&data_dir, &[]);
    let app = spawn_with_config(config, tempfile::tempdir().unwrap()).await;
    // About 5 KiB of attribute JSON: within a bucket's 8 KiB, beyond ext4's 4 KiB per file.
    let large = attributes(7, 700);

    let ack = json_body(
        unwrapped(&app, "4200", &large).send().await.unwrap(),
        "/push",
        200,
    )
    .await;
    assert_eq!(ack["outcome"], "landed", "{ack}");
    let mut poison = unwrapped(&app, "4201", &large)
        .body("{not json")
        .send()
        .await
        .unwrap();
    poison = poison.error_for_status().unwrap();
    let dead = json_body(poison, "/push", 200).await;
    assert_eq!(dead["outcome"], "dead_lettered", "{dead}");

    let object = ack["landing_uri"]
        .as_str()
        .unwrap()
        .strip_prefix("file://")
        .unwrap();
    let mut buffer = vec![0u8; 16 * 1024];
    let len = rustix::fs::getxattr(object, "user.landfall", &mut buffer[..]).unwrap();
    let metadata: Value = serde_json::from_slice(&buffer[..len]).unwrap();
    assert_eq!(metadata["attributes_omitted"], "true", "{metadata}");
    assert_eq!(
        metadata["message_id"], "4200",
        "the rest is kept: {metadata}"
    );
    let rows = query(&data_dir, "SELECT attributes FROM inventory");
    let kept: Value = serde_json::from_str(&text_of(&rows[0][0])).unwrap();
    assert_eq!(
        kept.as_object().unwrap().len(),
        7,
        "the row holds every attribute"
    );
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clients_that_send_a_byte_at_a_time_cannot_stop_the_server_answering() {
    let data = tempfile::tempdir().unwrap();
    let landfall = Binary::start_under(
        &["prlimit", "--nofile=256:256", "--"],
        &[
            "--data-dir",
            data.path().to_str().unwrap(),
            "--header-timeout-secs",
            "2",
        ],
        &[("RUST_LOG", "info")],
    );
    landfall.wait_for_log(|l| {
        l["message"]
            .as_str()
            .is_some_and(|m| m.starts_with("open-file limit: about 192 connections"))
    });
    // More slow clients than the process may hold files: each sends its head a byte a second.
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let address = landfall.address.clone();
    let slow: Vec<_> = (0..400)
        .map(|_| {
            let (address, stop) = (address.clone(), stop.clone());
            std::thread::spawn(move || {
                use std::io::Write;
                let head = b"POST /push HTTP/1.1\r\nhost: x\r\ncontent-length: 2\r\n\r\n{}";
                let Ok(mut socket) = std::net::TcpStream::connect(&address) else {
                    return;
                };
                for byte in head {
                    if stop.load(std::sync::atomic::Ordering::Relaxed)
                        || socket.write_all(&[*byte]).is_err()
                    {
                        return;
                    }
                    std::thread::sleep(Duration::from_secs(1));
                }
            })
        })
        .collect();
    std::thread::sleep(Duration::from_secs(1));

    let started = Instant::now();
    let response = reqwest::Client::new()
        .post(landfall.url("/push"))
        .timeout(Duration::from_secs(20))
        .body(fixture("order.json"))
        .send()
        .await
        .expect("a real push is answered while slow clients hold connections");
    assert_eq!(response.status(), 200);
    assert!(started.elapsed() < Duration::from_secs(20));
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    for client in slow {
        let _ = client.join();
    }
}

#[tokio::test]
async fn a_warehouse_deleted_under_the_server_is_refused_not_acknowledged() {
    let app = spawn_app().await;
    json_body(app.push_fixture("order.json").await, "/push", 200).await;
    for suffix in ["", "-wal", "-shm"] {
        let _ = std::fs::remove_file(app.data_dir.path().join(format!("warehouse.db{suffix}")));
    }

    let refused = json_body(app.push_fixture("inventory.json").await, "/push", 503).await;
    assert_eq!(refused["error"], "sink_unavailable");
    let not_ready = json_body(app.get("/readyz").await, "/readyz", 503).await;
    let warehouse = &not_ready["checks"][1];
    assert_eq!(warehouse["name"], "warehouse");
    assert!(
        warehouse["error"]
            .as_str()
            .unwrap()
            .contains("is gone or was replaced"),
        "{not_ready}"
    );
    app.stop().await;
}

#[tokio::test]
async fn a_data_folder_moved_under_the_server_is_refused_not_acknowledged() {
    let parent = tempfile::tempdir().unwrap();
    let data_dir = parent.path().join("data");
    let config = crate::support::config(&data_dir, &[]);
    let app = spawn_with_config(config, tempfile::tempdir().unwrap()).await;
    json_body(app.push_fixture("order.json").await, "/push", 200).await;
    std::fs::rename(&data_dir, parent.path().join("moved")).unwrap();

    json_body(app.push_fixture("inventory.json").await, "/push", 503).await;
    assert!(
        !data_dir.exists(),
        "nothing was written where the folder was"
    );
    json_body(app.get("/readyz").await, "/readyz", 503).await;
    app.stop().await;
}

#[tokio::test]
async fn readiness_tells_a_full_disk_and_a_held_lock_within_its_timeout() {
    let Some(disk) = Ext4::mount(16) else { return };
    let data_dir = disk.folder("data");
    let config = crate::support::config(&data_dir, &["--sqlite-busy-timeout-ms", "10000"]);
    let app = spawn_with_config(config, tempfile::tempdir().unwrap()).await;
    app.wait_until_ready().await;

    let lock = WarehouseLock::take(&data_dir);
    let started = Instant::now();
    let locked = json_body(app.get("/readyz").await, "/readyz", 503).await;
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "{:?}",
        started.elapsed()
    );
    assert!(
        locked.to_string().contains("cannot take a write lock"),
        "{locked}"
    );
    lock.release();
    app.wait_until_ready().await;

    disk.fill(64 * 1024);
    let order: Value = serde_json::from_slice(&fixture_data("order.json")).unwrap();
    let mut big = order.clone();
    big["items"] = json!(
        (0..2000)
            .map(|_| order["items"][0].clone())
            .collect::<Vec<_>>()
    );
    let push = app
        .push_json(&envelope("4300", big.to_string().as_bytes()))
        .await;
    assert_eq!(push.status(), 503, "a full disk acknowledges nothing");
    let started = Instant::now();
    let full = json_body(app.get("/readyz").await, "/readyz", 503).await;
    assert!(started.elapsed() < Duration::from_secs(2));
    assert!(full.to_string().contains("full"), "{full}");
    app.stop().await;
}

#[tokio::test]
async fn times_beyond_9999_and_keys_named_twice_are_poison_or_refused() {
    let app = spawn_app().await;
    let inventory = |timestamp: &str| {
        format!(
            r#"{{"event_type":"inventory","inventory_id":"I","product_id":"P","warehouse_id":"W","quantity_change":1,"reason":"sale","timestamp":"{timestamp}"}}"#
        )
    };
    let late = inventory("9999-12-31T23:59:59-01:00");
    let ack = json_body(
        app.push_json(&envelope("4400", late.as_bytes())).await,
        "/push",
        200,
    )
    .await;
    assert_eq!(ack["outcome"], "dead_lettered", "{ack}");
    assert!(
        ack["reason"]
            .as_str()
            .unwrap()
            .starts_with("inventory.timestamp:"),
        "{ack}"
    );

    let twice = inventory("2026-11-25T10:00:00Z").replace(
        r#""quantity_change":1"#,
        r#""quantity_change":500,"quantity_change":1"#,
    );
    let ack = json_body(
        app.push_json(&envelope("4401", twice.as_bytes())).await,
        "/push",
        200,
    )
    .await;
    assert_eq!(ack["outcome"], "dead_lettered");
    assert!(
        ack["reason"].as_str().unwrap().starts_with(
            r#"payload is not valid JSON: the key "quantity_change" appears twice in one object"#
        ),
        "{ack}"
    );
    let envelope_twice =
        r#"{"message":{"messageId":"1","messageId":"2","publishTime":"2026-11-25T10:00:00Z"}}"#;
    let refused = json_body(app.post_push(envelope_twice).await, "/push", 400).await;
    assert!(
        refused["message"]
            .as_str()
            .unwrap()
            .contains(r#"the key "messageId" appears twice"#)
    );
    assert_eq!(app.count("inventory"), 0);
    assert_eq!(
        app.landed_objects()
            .iter()
            .filter(|o| o.starts_with("output/_dead_letter/"))
            .count(),
        2
    );
    app.stop().await;
}

#[tokio::test]
async fn pushes_beyond_the_memory_budget_wait_then_get_429_and_one_that_never_fits_is_kept_unread()
{
    let app = spawn_app_with(&[
        "--memory-budget-mb",
        "1",
        "--max-body-bytes",
        "200000",
        "--sqlite-busy-timeout-ms",
        "30000",
    ])
    .await;
    // Two pushes of ~100 KB hold most of the megabyte while the warehouse is held.
    let order: Value = serde_json::from_slice(&fixture_data("order.json")).unwrap();
    let mut big = order.clone();
    big["customer_id"] = json!("C".repeat(70_000));
    let lock = WarehouseLock::take(app.data_dir.path());
    let held: Vec<_> = (0..2)
        .map(|i| {
            let body = envelope(&format!("450{i}"), big.to_string().as_bytes()).to_string();
            let (client, url) = (app.client.clone(), format!("{}/push", app.address));
            tokio::spawn(async move { client.post(url).body(body).send().await.unwrap() })
        })
        .collect();
    app.wait_for_in_flight(2.0).await;

    let refused = app
        .push_json(&envelope("4510", big.to_string().as_bytes()))
        .await;
    assert_eq!(refused.headers()["retry-after"], "1");
    let refused = json_body(refused, "/push", 429).await;
    assert_eq!(refused["error"], "overloaded");
    assert!(
        refused["message"].as_str().unwrap().contains("memory"),
        "{refused}"
    );
    lock.release();
    for push in held {
        json_body(push.await.unwrap(), "/push", 200).await;
    }

    // 60,000 values would take more than the whole budget: kept as received, not read.
    let zeros = format!("[{}0]", "0,".repeat(60_000));
    let ack = json_body(
        app.push_json(&envelope("4520", zeros.as_bytes())).await,
        "/push",
        200,
    )
    .await;
    assert_eq!(ack["outcome"], "dead_lettered");
    assert!(
        ack["reason"]
            .as_str()
            .unwrap()
            .starts_with("payload is too large to read here: its 60002 JSON values"),
        "{ack}"
    );
    let budget = app.scrape().await;
    assert_eq!(
        sample(&budget, "landfall_push_memory_budget_bytes", &[]),
        Some((1 << 20) as f64)
    );
    assert_eq!(
        sample(&budget, "landfall_push_memory_reserved_bytes", &[]),
        Some(0.0)
    );
    app.stop().await;
}

#[tokio::test]
async fn a_key_set_too_large_to_be_one_is_not_read() {
    let key = TestKey::generate("k1");
    let jwks = JwksServer::start(vec![key.jwk.clone()], true).await;
    jwks.set_padding(2 << 20);
    let app = crate::auth::spawn_oidc_app_with(&jwks, &[]).await;
    // A set that loaded would be kept for its max-age (an hour): a second fetch means the
    // first was refused.
    until(
        "the key set is fetched again",
        Duration::from_secs(10),
        || async {
            if jwks.hits() >= 2 {
                Ok(())
            } else {
                Err(format!("{} fetches", jwks.hits()))
            }
        },
    )
    .await;
    let not_ready = json_body(app.get("/readyz").await, "/readyz", 503).await;
    assert_eq!(
        not_ready["checks"].as_array().unwrap().last().unwrap()["name"],
        "auth"
    );
    jwks.set_padding(0);
    app.wait_until_ready().await;
    app.stop().await;
}
