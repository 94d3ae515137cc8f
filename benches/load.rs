//! Load benchmark for `POST /push` on the embedded sinks: acked events per second and
//! latency percentiles at several concurrency levels, over real HTTP on loopback.
//!
//!     cargo bench --bench load
//!     cargo bench --bench load -- --requests 50000 --concurrency 64,256 --auth none,oidc
//!
//! The server runs on its own 2-thread runtime and the load generator on another, in one
//! process on the same machine, so the figures include the client's cost too.

#[path = "../tests/support/oidc.rs"]
mod oidc;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use base64::Engine;
use bytes::Bytes;
use clap::Parser;
use landfall::config::Cli;
use landfall::startup::Application;
use serde_json::{Value, json};

struct Options {
    requests: usize,
    concurrency: Vec<usize>,
    auth: Vec<String>,
}

fn options() -> Options {
    let mut options = Options {
        requests: 40_000,
        concurrency: vec![64, 256],
        auth: vec!["none".into(), "oidc".into()],
    };
    let args: Vec<String> = std::env::args().skip(1).collect();
    let list = |v: &String| v.split(',').map(str::to_string).collect::<Vec<_>>();
    for pair in args.windows(2) {
        match pair[0].as_str() {
            "--requests" => options.requests = pair[1].parse().expect("--requests N"),
            "--concurrency" => {
                options.concurrency = list(&pair[1]).iter().map(|c| c.parse().unwrap()).collect()
            }
            "--auth" => options.auth = list(&pair[1]),
            _ => {}
        }
    }
    options
}

fn payloads() -> Vec<Vec<u8>> {
    let fixtures = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures");
    ["order.json", "inventory.json", "user-activity.json"]
        .iter()
        .map(|name| {
            let envelope: Value =
                serde_json::from_slice(&std::fs::read(format!("{fixtures}/{name}")).unwrap())
                    .unwrap();
            base64::engine::general_purpose::STANDARD
                .decode(envelope["message"]["data"].as_str().unwrap())
                .unwrap()
        })
        .collect()
}

/// Envelopes with unique message ids, built before the clock starts.
fn envelopes(run: &str, count: usize, payloads: &[Vec<u8>]) -> Arc<Vec<Bytes>> {
    let b64 = base64::engine::general_purpose::STANDARD;
    Arc::new(
        (0..count)
            .map(|i| {
                let data = &payloads[i % payloads.len()];
                Bytes::from(
                    json!({
                        "message": {"data": b64.encode(data), "messageId": format!("{run}-{i}"),
                                    "publishTime": "2026-11-25T10:00:00Z", "attributes": {}},
                        "subscription": "projects/bench/subscriptions/landfall",
                    })
                    .to_string(),
                )
            })
            .collect(),
    )
}

struct Level {
    acked: usize,
    failed: usize,
    elapsed: Duration,
    latencies: Vec<Duration>,
}

async fn run_level(
    url: &str,
    token: Option<&str>,
    concurrency: usize,
    bodies: Arc<Vec<Bytes>>,
) -> Level {
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(concurrency)
        .build()
        .unwrap();
    let next = Arc::new(AtomicUsize::new(0));
    let started = Instant::now();
    let workers: Vec<_> = (0..concurrency)
        .map(|_| {
            let (client, next, bodies) = (client.clone(), next.clone(), bodies.clone());
            let url = url.to_string();
            let auth = token.map(|t| format!("Bearer {t}"));
            tokio::spawn(async move {
                let (mut acked, mut failed, mut latencies) = (0, 0, Vec::new());
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    let Some(body) = bodies.get(i) else { break };
                    let mut request = client.post(&url).body(body.clone());
                    if let Some(auth) = &auth {
                        request = request.header("authorization", auth);
                    }
                    let sent = Instant::now();
                    let ok = match request.send().await {
                        Ok(response) => response.status() == 200 && response.bytes().await.is_ok(),
                        Err(_) => false,
                    };
                    latencies.push(sent.elapsed());
                    if ok { acked += 1 } else { failed += 1 }
                }
                (acked, failed, latencies)
            })
        })
        .collect();
    let mut level = Level {
        acked: 0,
        failed: 0,
        elapsed: Duration::ZERO,
        latencies: Vec::new(),
    };
    for worker in workers {
        let (acked, failed, latencies) = worker.await.unwrap();
        level.acked += acked;
        level.failed += failed;
        level.latencies.extend(latencies);
    }
    level.elapsed = started.elapsed();
    level.latencies.sort();
    level
}

fn percentile(sorted: &[Duration], p: f64) -> f64 {
    let index = ((sorted.len() as f64 * p).ceil() as usize).clamp(1, sorted.len()) - 1;
    sorted[index].as_secs_f64() * 1000.0
}

fn main() {
    landfall::startup::install_crypto_provider();
    let options = options();
    let server_rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let client_rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let payloads = payloads();
    println!(
        "| auth | concurrency | requests | acked | failed | acked events/s | p50 ms | p99 ms |"
    );
    println!("|---|---|---|---|---|---|---|---|");
    for auth in &options.auth {
        let data_dir = tempfile::tempdir().unwrap();
        let key = oidc::TestKey::generate("bench-key");
        let jwks = server_rt.block_on(oidc::JwksServer::start(vec![key.jwk.clone()], true));
        let mut argv: Vec<String> = [
            "landfall",
            "--host",
            "127.0.0.1",
            "--port",
            "0",
            "--auth",
            auth,
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        argv.extend(["--data-dir".into(), data_dir.path().display().to_string()]);
        argv.extend(["--oidc-audience".into(), oidc::AUDIENCE.into()]);
        argv.extend([
            "--oidc-allowed-email".into(),
            oidc::PUSHER.into(),
            "--oidc-jwks-url".into(),
            jwks.url.clone(),
        ]);
        let config = Cli::try_parse_from(argv)
            .unwrap()
            .settings
            .resolve()
            .unwrap();
        let app = server_rt.block_on(Application::build(config)).unwrap();
        let url = format!("http://127.0.0.1:{}/push", app.port());
        server_rt.spawn(app.run_until_stopped(std::future::pending()));
        let token = (auth == "oidc").then(|| key.sign(&oidc::google_claims()));
        // Wait until the keys are loaded (readyz), then warm up connections and caches.
        client_rt.block_on(async {
            let ready = url.replace("/push", "/readyz");
            while reqwest::get(&ready)
                .await
                .map(|r| r.status() != 200)
                .unwrap_or(true)
            {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            run_level(
                &url,
                token.as_deref(),
                64,
                envelopes(&format!("{auth}-warmup"), 2_000, &payloads),
            )
            .await;
        });
        for &concurrency in &options.concurrency {
            let bodies = envelopes(
                &format!("{auth}-{concurrency}"),
                options.requests,
                &payloads,
            );
            let level = client_rt.block_on(run_level(&url, token.as_deref(), concurrency, bodies));
            println!(
                "| {auth} | {concurrency} | {} | {} | {} | {:.0} | {:.2} | {:.2} |",
                options.requests,
                level.acked,
                level.failed,
                level.acked as f64 / level.elapsed.as_secs_f64(),
                percentile(&level.latencies, 0.50),
                percentile(&level.latencies, 0.99),
            );
        }
    }
}
