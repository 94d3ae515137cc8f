//! `/metrics`: a known mix of pushes is counted exactly, in an exposition that the official
//! Prometheus client's parser accepts.

use crate::auth::spawn_oidc_app_with;
use crate::support::oidc::{AUDIENCE, JwksServer, TestKey, google_claims};
use crate::support::*;

#[tokio::test]
async fn a_known_mix_of_pushes_is_counted_exactly() {
    let key = TestKey::generate("k1");
    let jwks = JwksServer::start(vec![key.jwk.clone()], true).await;
    // One request at a time; a push waits for a held warehouse as long as the test holds it.
    let app = spawn_oidc_app_with(
        &jwks,
        &[
            "--max-concurrency",
            "1",
            "--sqlite-busy-timeout-ms",
            "30000",
            "--max-body-bytes",
            "4096",
        ],
    )
    .await;
    app.wait_until_ready().await;
    let token = format!("Bearer {}", key.sign(&google_claims()));
    let push = |body: Vec<u8>, authorization: String| {
        let (client, url) = (app.client.clone(), format!("{}/push", app.address));
        async move {
            client
                .post(url)
                .header("authorization", authorization)
                .body(body)
                .send()
                .await
                .unwrap()
                .status()
                .as_u16()
        }
    };

    assert_eq!(push(fixture("order.json"), token.clone()).await, 200);
    assert_eq!(push(fixture("inventory.json"), token.clone()).await, 200);
    assert_eq!(
        push(fixture("order.json"), token.clone()).await,
        200,
        "a redelivery"
    );
    assert_eq!(
        push(fixture("invalid-order.json"), token.clone()).await,
        200,
        "poison"
    );
    assert_eq!(push(b"not an envelope".to_vec(), token.clone()).await, 400);
    assert_eq!(
        push(fixture("order.json"), "Bearer not-a-token".into()).await,
        401
    );
    assert_eq!(push(vec![b' '; 5000], token.clone()).await, 413);
    let stranger = key.sign(
        &serde_json::json!({"email": "someone@else.iam.gserviceaccount.com",
        "email_verified": true, "iss": "https://accounts.google.com", "aud": AUDIENCE,
        "iat": crate::support::oidc::now(), "exp": crate::support::oidc::now() + 3600}),
    );
    assert_eq!(
        push(fixture("order.json"), format!("Bearer {stranger}")).await,
        403
    );
    let lock = crate::support::app::WarehouseLock::take(app.data_dir.path());
    let slow = tokio::spawn(push(fixture("user-activity.json"), token.clone()));
    app.wait_for_in_flight(1.0).await;
    assert_eq!(push(fixture("inventory.json"), token.clone()).await, 429);
    lock.release();
    assert_eq!(slow.await.unwrap(), 200);

    let samples = app.scrape().await;
    let kinds = [
        ("landfall_pushes", "counter"),
        ("landfall_push_duration_seconds", "histogram"),
        ("landfall_delivery_lag_seconds", "histogram"),
        ("landfall_sink_batch_size", "histogram"),
        ("landfall_sink_write_duration_seconds", "histogram"),
        ("landfall_sink_errors", "counter"),
        ("landfall_dead_letters", "counter"),
        ("landfall_landing_objects", "counter"),
        ("landfall_landing_events_per_object", "histogram"),
        ("landfall_in_flight_pushes", "gauge"),
        ("landfall_oidc_keys_age_seconds", "gauge"),
        ("landfall_build_info", "gauge"),
    ];
    for (family, kind) in kinds {
        let found = samples.iter().find(|s| s.family == family);
        assert_eq!(found.map(|s| s.kind.as_str()), Some(kind), "{family}");
    }
    let value = |name: &str, labels: &[(&str, &str)]| {
        sample(&samples, name, labels).unwrap_or_else(|| panic!("no {name}{labels:?}"))
    };
    let pushes = [
        ("landed", "order", 1.0),
        ("landed", "inventory", 1.0),
        ("landed", "user_activity", 1.0),
        ("duplicate", "order", 1.0),
        ("dead_lettered", "order", 1.0),
        ("bad_request", "", 1.0),
        ("unauthorized", "", 1.0),
        ("too_large", "", 1.0),
        ("forbidden", "", 1.0),
        ("overloaded", "", 1.0),
    ];
    for (outcome, event_type, count) in pushes {
        assert_eq!(
            value(
                "landfall_pushes_total",
                &[("outcome", outcome), ("event_type", event_type)]
            ),
            count,
            "{outcome} {event_type}"
        );
    }
    let counted: f64 = samples
        .iter()
        .filter(|s| s.name == "landfall_pushes_total")
        .map(|s| s.value.as_f64().unwrap())
        .sum();
    assert_eq!(counted, 10.0, "no other push was counted");
    for (outcome, count) in [
        ("landed", 3.0),
        ("duplicate", 1.0),
        ("dead_lettered", 1.0),
        ("bad_request", 1.0),
        ("unauthorized", 1.0),
        ("too_large", 1.0),
        ("forbidden", 1.0),
        ("overloaded", 1.0),
    ] {
        assert_eq!(
            value(
                "landfall_push_duration_seconds_count",
                &[("outcome", outcome)]
            ),
            count,
            "{outcome}"
        );
    }
    assert_eq!(
        value(
            "landfall_push_duration_seconds_bucket",
            &[("outcome", "landed"), ("le", "+Inf")]
        ),
        3.0
    );
    assert_eq!(
        value(
            "landfall_dead_letters_total",
            &[("event_type", "order"), ("rule", "minimum")]
        ),
        1.0
    );
    for (event_type, count) in [("order", 3.0), ("inventory", 1.0), ("user_activity", 1.0)] {
        assert_eq!(
            value(
                "landfall_delivery_lag_seconds_count",
                &[("event_type", event_type)]
            ),
            count,
            "{event_type}"
        );
    }
    // Five pushes reached the sinks, one at a time: five batches of one in each sink.
    for sink in ["landing", "warehouse"] {
        assert_eq!(
            value("landfall_sink_batch_size_count", &[("sink", sink)]),
            5.0,
            "{sink}"
        );
        assert_eq!(
            value("landfall_sink_batch_size_sum", &[("sink", sink)]),
            5.0,
            "{sink}"
        );
        assert_eq!(
            value(
                "landfall_sink_write_duration_seconds_count",
                &[("sink", sink)]
            ),
            5.0,
            "{sink}"
        );
        for kind in ["batch_failed", "row_rejected"] {
            assert_eq!(
                value(
                    "landfall_sink_errors_total",
                    &[("sink", sink), ("kind", kind)]
                ),
                0.0
            );
        }
    }
    // Four of them were new: four objects of one message each (the redelivery found its own).
    assert_eq!(
        value("landfall_landing_objects_total", &[("sink", "landing")]),
        4.0
    );
    assert_eq!(
        value(
            "landfall_landing_events_per_object_count",
            &[("sink", "landing")]
        ),
        4.0
    );
    assert_eq!(
        value(
            "landfall_landing_events_per_object_sum",
            &[("sink", "landing")]
        ),
        4.0
    );
    assert_eq!(value("landfall_in_flight_pushes", &[]), 0.0);
    assert_eq!(
        value(
            "landfall_build_info",
            &[("version", env!("CARGO_PKG_VERSION"))]
        ),
        1.0
    );
    let age = value("landfall_oidc_keys_age_seconds", &[]);
    assert!((0.0..60.0).contains(&age), "keys age {age}");
    app.stop().await;
}

#[tokio::test]
async fn a_failed_batch_is_counted_as_a_sink_error() {
    let app = spawn_app_with(&["--sqlite-busy-timeout-ms", "50"]).await;
    let blocker = rusqlite::Connection::open(app.data_dir.path().join("warehouse.db")).unwrap();
    blocker.execute_batch("BEGIN IMMEDIATE").unwrap();

    json_body(app.push_fixture("order.json").await, "/push", 503).await;

    let samples = app.scrape().await;
    let errors = |kind| {
        sample(
            &samples,
            "landfall_sink_errors_total",
            &[("sink", "warehouse"), ("kind", kind)],
        )
    };
    assert_eq!(errors("batch_failed"), Some(1.0));
    assert_eq!(errors("row_rejected"), Some(0.0));
    assert_eq!(
        sample(
            &samples,
            "landfall_pushes_total",
            &[("outcome", "unavailable"), ("event_type", "order")]
        ),
        Some(1.0)
    );
    blocker.execute_batch("ROLLBACK").unwrap();
    app.stop().await;
}

#[tokio::test]
async fn metrics_can_be_turned_off() {
    let app = spawn_app_with(&["--metrics", "false"]).await;
    json_body(app.push_fixture("order.json").await, "/push", 200).await;
    let response = app.get("/metrics").await;
    let body = json_body(response, "/metrics", 404).await;
    assert_eq!(body["error"], "not_found");
    app.stop().await;
}
