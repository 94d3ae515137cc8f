//! Requests that are not Pub/Sub push envelopes get a 4xx with a JSON body naming the problem.

use crate::support::*;

async fn rejected(app: &TestApp, body: &str, expected_status: u16) -> serde_json::Value {
    json_body(
        app.post_push(body.to_string()).await,
        "/push",
        expected_status,
    )
    .await
}

#[tokio::test]
async fn envelope_problems_are_400_with_the_problem_named() {
    let app = spawn_app().await;
    let cases = [
        (
            "not json at all",
            "body is not a Pub/Sub push envelope: it is not JSON: a value is expected here and something else is (line 1, column 2, byte 1)",
        ),
        ("[1,2]", "body: must be an object, not an array"),
        (r#"{"hello": "world"}"#, "body: has no `message`"),
        (
            r#"{"message": {"data": "e30=", "publishTime": "2026-11-25T10:00:00Z"}}"#,
            "message: has no `messageId` (nor `message_id`)",
        ),
        (
            r#"{"message": {"data": "%%%", "messageId": "1", "publishTime": "2026-11-25T10:00:00Z"}}"#,
            "message.data: must be standard base64 with padding",
        ),
        (
            r#"{"message": {"data": "e30=", "messageId": "1"}}"#,
            "message: has no `publishTime` (nor `publish_time`)",
        ),
        (
            r#"{"message": {"data": "e30=", "messageId": "1", "publishTime": "yesterday"}}"#,
            "message.publishTime: must be an RFC 3339 timestamp in the years 2000 to 2099",
        ),
        (
            r#"{"message": {"data": "e30=", "messageId": "../../etc", "publishTime": "2026-11-25T10:00:00Z"}}"#,
            "message.messageId: must be 1 to 128 letters, digits",
        ),
        (
            r#"{"message": {"data": "e30=", "messageId": "", "publishTime": "2026-11-25T10:00:00Z"}}"#,
            "message.messageId: must be 1 to 128 letters, digits",
        ),
    ];
    for (body, message) in cases {
        let error = rejected(&app, body, 400).await;
        assert_eq!(error["error"], "bad_envelope", "{body}");
        assert!(
            error["message"].as_str().unwrap().starts_with(message),
            "{body}: {error}"
        );
    }
    assert!(app.landed_objects().is_empty());
    app.stop().await;
}

#[tokio::test]
async fn an_unwrapped_push_without_publish_time_is_400() {
    let app = spawn_app().await;
    let response = app
        .client
        .post(format!("{}/push", app.address))
        .header("x-goog-pubsub-message-id", "9")
        .body("{}")
        .send()
        .await
        .unwrap();
    let error = json_body(response, "/push", 400).await;
    assert_eq!(
        error["message"],
        "message: has no header x-goog-pubsub-publish-time"
    );
    app.stop().await;
}

#[tokio::test]
async fn a_body_over_the_limit_is_413_whether_or_not_its_length_is_declared() {
    let app = spawn_app_with(&["--max-body-bytes", "1024"]).await;
    let big = envelope("1", &vec![b'x'; 4096]).to_string();

    let declared = app.post_push(big.clone()).await;
    let error = json_body(declared, "/push", 413).await;
    assert_eq!(error["error"], "payload_too_large");

    let chunks: Vec<Result<String, std::io::Error>> =
        vec![Ok(big[..600].to_string()), Ok(big[600..].to_string())];
    let streamed = app
        .post_push(reqwest::Body::wrap_stream(futures::stream::iter(chunks)))
        .await;
    json_body(streamed, "/push", 413).await;
    assert!(app.landed_objects().is_empty());
    app.stop().await;
}

#[tokio::test]
async fn arbitrary_bytes_never_crash_the_service() {
    let app = spawn_app().await;
    // A deterministic pseudo-random stream: the same inputs on every run.
    let mut seed: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut next = || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed
    };
    for i in 0..200u64 {
        let len = (next() % 300) as usize;
        let data: Vec<u8> = (0..len).map(|_| next() as u8).collect();
        let status = if i % 2 == 0 {
            app.post_push(data).await.status().as_u16()
        } else {
            // Valid envelopes around random payloads: these must all be dead-lettered.
            let response = app.push_json(&envelope(&format!("r{i}"), &data)).await;
            response.status().as_u16()
        };
        assert!(
            (i % 2 == 0 && status == 400) || (i % 2 == 1 && status == 200),
            "input {i} got {status}"
        );
    }
    assert_eq!(app.count("dead_letter"), 100);
    assert_eq!(app.get("/healthz").await.status(), 200);
    app.stop().await;
}

#[tokio::test]
async fn a_body_exactly_at_the_limit_is_taken_and_one_byte_more_is_413() {
    let limit = 2048;
    let app = spawn_app_with(&["--max-body-bytes", &limit.to_string()]).await;
    let body = |len: usize| {
        let mut envelope = envelope("77", &fixture_data("inventory.json")).to_string();
        let padding = len - envelope.len();
        // Whitespace inside the JSON object: the same envelope, as long as wanted.
        envelope.insert_str(1, &" ".repeat(padding));
        assert_eq!(envelope.len(), len);
        envelope
    };

    let at = json_body(app.post_push(body(limit)).await, "/push", 200).await;
    assert_eq!(at["outcome"], "landed");
    let over = json_body(app.post_push(body(limit + 1)).await, "/push", 413).await;
    assert_eq!(
        over["message"],
        format!("request body is larger than {limit} bytes")
    );
    app.stop().await;
}

#[tokio::test]
async fn a_push_past_its_deadline_is_a_503_timed_out() {
    let app = spawn_app_with(&[
        "--request-timeout-secs",
        "1",
        "--sqlite-busy-timeout-ms",
        "5000",
    ])
    .await;
    let blocker = rusqlite::Connection::open(app.data_dir.path().join("warehouse.db")).unwrap();
    blocker.execute_batch("BEGIN IMMEDIATE").unwrap();

    let error = json_body(app.push_fixture("order.json").await, "/push", 503).await;

    assert_eq!(error["error"], "timed_out");
    let samples = app.scrape().await;
    assert_eq!(
        sample(
            &samples,
            "landfall_pushes_total",
            &[("outcome", "unavailable"), ("event_type", "")]
        ),
        Some(1.0)
    );
    blocker.execute_batch("ROLLBACK").unwrap();
    app.stop().await;
}
