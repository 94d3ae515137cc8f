//! Production logs, read from the real binary: one JSON line per push, joined to its trace the
//! way Cloud Logging joins Cloud Run's request log, and never a token or a payload.

use serde_json::Value;

use crate::support::*;

const TRACE_ID: &str = "4bf92f3577b34da6a3ce929d0e0e4736";

fn push_line(logs: &[Value], message_id: &str) -> Value {
    logs.iter()
        .find(|l| l["message_id"] == message_id)
        .unwrap_or_else(|| panic!("no log line for {message_id} in {logs:#?}"))
        .clone()
}

#[tokio::test]
async fn each_push_logs_one_line_with_its_trace_and_a_rounded_latency() {
    let data = tempfile::tempdir().unwrap();
    let landfall = Binary::start(
        &["--data-dir", data.path().to_str().unwrap()],
        &[("GOOGLE_CLOUD_PROJECT", "shop-data")],
    );
    let client = reqwest::Client::new();
    let traced = client
        .post(landfall.url("/push"))
        .header("traceparent", format!("00-{TRACE_ID}-00f067aa0ba902b7-01"))
        .body(fixture("order.json"))
        .send()
        .await
        .unwrap();
    assert_eq!(traced.status(), 200);
    let cloud = client
        .post(landfall.url("/push"))
        .header(
            "x-cloud-trace-context",
            "105445aa7843bc8bf206b12000100000/7;o=1",
        )
        .body(fixture("inventory.json"))
        .send()
        .await
        .unwrap();
    assert_eq!(cloud.status(), 200);
    let poison = client
        .post(landfall.url("/push"))
        .body(fixture("invalid-order.json"))
        .send()
        .await
        .unwrap();
    assert_eq!(poison.status(), 200);
    landfall.wait_for_log(|l| l["message_id"] == "1000004");

    let logs = landfall.logs();
    let line = push_line(&logs, "1000001");
    assert_eq!(line["severity"], "INFO");
    assert_eq!(line["message"], "push acknowledged");
    assert_eq!(line["outcome"], "landed");
    assert_eq!(line["event_type"], "order");
    assert_eq!(line["status"], 200);
    assert_eq!(
        line["logging.googleapis.com/trace"],
        format!("projects/shop-data/traces/{TRACE_ID}")
    );
    assert_eq!(line["logging.googleapis.com/spanId"], "00f067aa0ba902b7");
    assert_eq!(line["logging.googleapis.com/trace_sampled"], true);
    let latency = line["latency_ms"].as_f64().expect("latency_ms is a number");
    assert_eq!(
        (latency * 10.0).round() / 10.0,
        latency,
        "rounded to 0.1 ms: {latency}"
    );
    let cloud = push_line(&logs, "1000002");
    assert_eq!(
        cloud["logging.googleapis.com/trace"],
        "projects/shop-data/traces/105445aa7843bc8bf206b12000100000"
    );
    assert_eq!(cloud["logging.googleapis.com/spanId"], "0000000000000007");
    let poison = push_line(&logs, "1000004");
    assert_eq!(poison["outcome"], "dead_lettered");
    assert_eq!(
        poison["rule"], "minimum",
        "a dead letter's line names its rule"
    );
    let serving = logs
        .iter()
        .find(|l| l["message"] == "landfall is serving")
        .expect("the start is logged");
    let dir = data.path().display();
    assert_eq!(
        serving["landing"],
        format!("{dir}/landing/output (event layout)")
    );
    assert_eq!(serving["warehouse"], format!("SQLite {dir}/warehouse.db"));
    assert_eq!(serving["event_types"], "inventory, order, user_activity");
    assert_eq!(serving["auth"], "none");
    let pushes = logs
        .iter()
        .filter(|l| {
            l["message"]
                .as_str()
                .is_some_and(|m| m.starts_with("push "))
        })
        .count();
    assert_eq!(pushes, 3, "one line per push");
    let text = serde_json::to_string(&logs).unwrap();
    for secret in ["ORD-20261125-0001", "Harbour Road", "eyJldmVudF90eXBl"] {
        assert!(
            !text.contains(secret),
            "a payload reached the log: {secret}"
        );
    }
}

#[tokio::test]
async fn a_push_past_its_deadline_logs_that_the_sinks_did_not_finish() {
    let data = tempfile::tempdir().unwrap();
    let landfall = Binary::start(
        &[
            "--data-dir",
            data.path().to_str().unwrap(),
            "--request-timeout-secs",
            "1",
            "--sqlite-busy-timeout-ms",
            "5000",
        ],
        &[],
    );
    let blocker = rusqlite::Connection::open(data.path().join("warehouse.db")).unwrap();
    blocker.execute_batch("BEGIN IMMEDIATE").unwrap();

    let response = reqwest::Client::new()
        .post(landfall.url("/push"))
        .body(fixture("order.json"))
        .send()
        .await
        .unwrap();

    assert_eq!(response.status(), 503);
    let line = landfall.wait_for_log(|l| l["message"] == "push not acknowledged");
    assert_eq!(line["severity"], "ERROR");
    assert_eq!(line["message_id"], "1000001");
    assert_eq!(
        line["error"],
        "the sinks did not finish within --request-timeout-secs"
    );
    blocker.execute_batch("ROLLBACK").unwrap();
}

#[tokio::test]
async fn a_rejected_token_is_logged_without_the_token() {
    let data = tempfile::tempdir().unwrap();
    let landfall = Binary::start(
        &[
            "--data-dir",
            data.path().to_str().unwrap(),
            "--auth",
            "oidc",
            "--oidc-audience",
            crate::support::oidc::AUDIENCE,
            "--oidc-allowed-email",
            crate::support::oidc::PUSHER,
            "--oidc-jwks-url",
            "http://127.0.0.1:9/certs",
        ],
        &[],
    );
    let token = "eyJhbGciOiJSUzI1NiJ9.eyJzZWNyZXQiOiJ0b2tlbiJ9.c2lnbmF0dXJl";

    let response = reqwest::Client::new()
        .post(landfall.url("/push"))
        .header("authorization", format!("Bearer {token}"))
        .body(fixture("order.json"))
        .send()
        .await
        .unwrap();

    assert_eq!(response.status(), 401);
    let line = landfall.wait_for_log(|l| l["message"] == "push rejected");
    let logs = landfall.logs();
    assert_eq!(line["outcome"], "unauthorized");
    assert_eq!(line["severity"], "WARNING");
    assert!(
        logs.iter().any(|l| l["severity"] == "ERROR"
            && l["message"]
                .as_str()
                .unwrap()
                .starts_with("JWKS fetch failed and no keys were ever fetched")),
        "the missing keys are an error: {logs:#?}"
    );
    let text = serde_json::to_string(&logs).unwrap();
    assert!(
        !text.contains("c2lnbmF0dXJl") && !text.contains("eyJzZWNyZXQi"),
        "the token reached the log"
    );
    assert!(
        !text.contains("keeping cached keys"),
        "no keys were ever fetched, so none are kept: {text}"
    );
}

#[test]
fn text_logs_to_a_pipe_carry_no_colour_codes() {
    use std::io::{BufRead, BufReader};
    let data = tempfile::tempdir().unwrap();
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_landfall"))
        .args(["--port", "0", "--host", "127.0.0.1", "--log-format", "text"])
        .args(["--data-dir", data.path().to_str().unwrap()])
        .env_remove("PORT")
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut seen = Vec::new();
    for line in BufReader::new(child.stdout.take().unwrap()).lines() {
        let line = line.unwrap();
        let serving = line.contains("landfall is serving");
        seen.push(line);
        if serving {
            break;
        }
    }
    let _ = child.kill();
    let _ = child.wait();
    let text = seen.join("\n");
    assert!(text.contains("landfall is serving"), "{text}");
    assert!(!text.contains('\u{1b}'), "colour codes in a pipe: {text:?}");
    // Repair commands log to stderr, their result alone on stdout.
    let output = landfall(&[
        "redrive",
        "--data-dir",
        data.path().to_str().unwrap(),
        "--output",
        "json",
    ]);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{stderr}");
    assert!(!stderr.contains('\u{1b}'), "{stderr:?}");
    let stdout = String::from_utf8(output.stdout).unwrap();
    assert_eq!(stdout.lines().count(), 1, "{stdout}");
}
