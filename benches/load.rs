//! Load benchmark for `POST /push` on the embedded sinks: acked events per second and
//! latency percentiles at several concurrency levels, over real HTTP on loopback.
//!
//!     cargo bench --bench load
//!     cargo bench --bench load -- --requests 50000 --concurrency 64,256 --auth none,oidc
//!     cargo bench --bench load -- --sinks google --requests 5000 --concurrency 64 --auth none
//!
//! `--sinks google` lands in fake-gcs-server and local-bigquery (installed by
//! `.ci/emulators.sh`) and also reports BigQuery insertAll calls per 1,000 events, counted in
//! the emulator's access log.
//!
//! The server runs on its own 2-thread runtime and the load generator on another, in one
//! process on the same machine, so the figures include the client's cost too.

#[path = "../tests/google/emulators.rs"]
#[allow(dead_code)]
mod emulators;
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

/// The same allocator as the `landfall` binary, since the server runs in this process.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

struct Options {
    requests: usize,
    concurrency: Vec<usize>,
    auth: Vec<String>,
    google: bool,
}

fn options() -> Options {
    let mut options = Options {
        requests: 40_000,
        concurrency: vec![64, 256],
        auth: vec!["none".into(), "oidc".into()],
        google: false,
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
            "--sinks" => options.google = pair[1] == "google",
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

/// One keep-alive HTTP/1.1 connection per simulated pusher, speaking just enough HTTP to
/// send a request and read its answer: a general-purpose client would spend more of these
/// two cores than the server under test.
async fn run_level(
    url: &str,
    token: Option<&str>,
    concurrency: usize,
    bodies: Arc<Vec<Bytes>>,
) -> Level {
    let address = url
        .trim_start_matches("http://")
        .split('/')
        .next()
        .unwrap()
        .to_string();
    let auth = token
        .map(|t| format!("authorization: Bearer {t}\r\n"))
        .unwrap_or_default();
    let next = Arc::new(AtomicUsize::new(0));
    let started = Instant::now();
    let workers: Vec<_> = (0..concurrency)
        .map(|_| {
            let (next, bodies, address, auth) = (next.clone(), bodies.clone(), address.clone(), auth.clone());
            tokio::spawn(async move {
                let mut stream = tokio::net::TcpStream::connect(&address).await.unwrap();
                stream.set_nodelay(true).unwrap();
                let (mut acked, mut failed, mut latencies) = (0, 0, Vec::new());
                let mut buffer = Vec::with_capacity(4096);
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    let Some(body) = bodies.get(i) else { break };
                    let head = format!(
                        "POST /push HTTP/1.1\r\nhost: {address}\r\ncontent-type: application/json\r\n{auth}content-length: {}\r\n\r\n",
                        body.len()
                    );
                    let mut request = head.into_bytes();
                    request.extend_from_slice(body);
                    let sent = Instant::now();
                    let status = exchange(&mut stream, &request, &mut buffer).await;
                    latencies.push(sent.elapsed());
                    if status == 200 { acked += 1 } else { failed += 1 }
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

/// Writes one request and reads one response; returns its status (0 when the exchange broke).
async fn exchange(stream: &mut tokio::net::TcpStream, request: &[u8], buffer: &mut Vec<u8>) -> u16 {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    if stream.write_all(request).await.is_err() {
        return 0;
    }
    buffer.clear();
    let mut chunk = [0u8; 4096];
    loop {
        if let Some(end) = buffer.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&buffer[..end]).to_ascii_lowercase();
            let status = head.get(9..12).and_then(|s| s.parse().ok()).unwrap_or(0);
            let length: usize = head
                .lines()
                .find_map(|l| l.strip_prefix("content-length:"))
                .and_then(|v| v.trim().parse().ok())
                .unwrap_or(0);
            while buffer.len() < end + 4 + length {
                match stream.read(&mut chunk).await {
                    Ok(n) if n > 0 => buffer.extend_from_slice(&chunk[..n]),
                    _ => return 0,
                }
            }
            return status;
        }
        match stream.read(&mut chunk).await {
            Ok(n) if n > 0 => buffer.extend_from_slice(&chunk[..n]),
            _ => return 0,
        }
    }
}

fn percentile(sorted: &[Duration], p: f64) -> f64 {
    let index = ((sorted.len() as f64 * p).ceil() as usize).clamp(1, sorted.len()) - 1;
    sorted[index].as_secs_f64() * 1000.0
}

/// Emulators for `--sinks google`, with the schema applied; `None` for the embedded sinks.
fn google_sinks(
    runtime: &tokio::runtime::Runtime,
    enabled: bool,
) -> Option<(emulators::Gcs, emulators::BigQuery)> {
    if !enabled {
        return None;
    }
    runtime.block_on(async {
        let gcs = emulators::Gcs::start().await;
        let bigquery = emulators::BigQuery::start().await;
        let target = landfall::config::BigQueryTarget {
            project: emulators::PROJECT.into(),
            dataset: "raw".into(),
            emulator: Some(bigquery.url()),
        };
        landfall::sink::bigquery::apply::apply(&target)
            .await
            .expect("schema applies");
        Some((gcs, bigquery))
    })
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
    let google = google_sinks(&server_rt, options.google);
    let sinks = if google.is_some() {
        "gcs+bigquery (emulators)"
    } else {
        "folder+sqlite"
    };
    println!(
        "| sinks | auth | concurrency | requests | acked | failed | acked events/s | p50 ms | p99 ms | insertAll calls / 1000 events |"
    );
    println!("|---|---|---|---|---|---|---|---|---|---|");
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
        if let Some((gcs, bigquery)) = &google {
            argv.extend([
                "--gcs-bucket".into(),
                emulators::BUCKET.into(),
                "--storage-emulator-host".into(),
                gcs.url(),
            ]);
            argv.extend(["--bigquery-project".into(), emulators::PROJECT.into()]);
            argv.extend(["--bigquery-emulator-host".into(), bigquery.url()]);
        }
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
            let calls_before = insert_calls(&google);
            let level = client_rt.block_on(run_level(&url, token.as_deref(), concurrency, bodies));
            let calls = insert_calls(&google).map(|after| {
                let per_thousand =
                    (after - calls_before.unwrap()) as f64 * 1000.0 / level.acked as f64;
                format!("{per_thousand:.1}")
            });
            println!(
                "| {sinks} | {auth} | {concurrency} | {} | {} | {} | {:.0} | {:.2} | {:.2} | {} |",
                options.requests,
                level.acked,
                level.failed,
                level.acked as f64 / level.elapsed.as_secs_f64(),
                percentile(&level.latencies, 0.50),
                percentile(&level.latencies, 0.99),
                calls.unwrap_or_else(|| "-".into()),
            );
        }
    }
}

fn insert_calls(google: &Option<(emulators::Gcs, emulators::BigQuery)>) -> Option<usize> {
    google
        .as_ref()
        .map(|(_, bigquery)| bigquery.log().matches("/insertAll").count())
}
