//! Load benchmark for `POST /push`: acked events per second, latency percentiles and the
//! server's peak memory. The server runs in its own process, as deployed; the load comes from
//! this one over loopback, one keep-alive connection per simulated pusher.
//!
//!     cargo bench --bench load                                    # embedded and ceiling, 256 connections
//!     cargo bench --bench load -- --modes embedded,ceiling --connections 256,1000 --rounds 3
//!     cargo bench --bench load -- --modes embedded --metrics on,off
//!     cargo bench --bench load -- --modes embedded,baseline --baseline-bin /tmp/landfall-before
//!     cargo bench --bench load -- --modes google --requests 3000 --connections 64 --replay
//!     cargo bench --bench load -- --modes google --write-apis storage,insert-all --requests 3000
//!
//! Modes: `embedded` (the landfall binary, folder + SQLite), `ceiling` (the same server stack
//! with sinks that store nothing: what HTTP, decoding and validation alone allow), `google`
//! (fake-gcs-server + local-bigquery, installed by `.ci/tools.sh`), `baseline` (another
//! landfall binary, e.g. an older build, run like `embedded`, or like `google` with
//! `--baseline-google`). Every measured level gets a fresh server; modes alternate within a
//! round (reversed every other round), so that the machine's drift hits them alike: compare
//! figures of one run only.
//! Servers log as in production (JSON, one line per push).

#[path = "../tests/support/mod.rs"]
mod support;

use support::grpc_proxy::GrpcProxy;
use support::{emulators, oidc};

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use base64::Engine;
use bytes::Bytes;
use clap::{Parser, ValueEnum};
use landfall::pipeline::build::SinkSet;
use landfall::schema::{Catalog, CatalogSource};
use landfall::sink::{Entry, Layer, Receipt, Sink, SinkError, Written};
use landfall::startup::Application;
use serde_json::{Value, json};

/// The same allocator as the `landfall` binary, for the ceiling server this process becomes.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Mode {
    Embedded,
    Ceiling,
    Google,
    Baseline,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Payload {
    /// One inventory event, a fresh message id per push.
    Inventory,
    /// The three fixtures in turn.
    Mixed,
}

#[derive(Debug, Parser)]
struct Options {
    #[arg(long, value_delimiter = ',', default_values = ["embedded", "ceiling"])]
    modes: Vec<Mode>,
    #[arg(long, value_delimiter = ',', default_values_t = [256])]
    connections: Vec<usize>,
    #[arg(long, default_value_t = 40_000)]
    requests: usize,
    #[arg(long, default_value_t = 2)]
    rounds: usize,
    /// `on`, `off` or both: whether the server records Prometheus metrics.
    #[arg(long, value_delimiter = ',', default_values = ["on"])]
    metrics: Vec<String>,
    #[arg(long, default_value = "none")]
    auth: String,
    #[arg(long, value_enum, default_value_t = Payload::Inventory)]
    payload: Payload,
    /// Another landfall binary for the `baseline` mode.
    #[arg(long)]
    baseline_bin: Option<PathBuf>,
    /// Run the baseline against the emulators instead of the embedded sinks.
    #[arg(long)]
    baseline_google: bool,
    /// After each google level, push every message again and report the replay's latency.
    #[arg(long)]
    replay: bool,
    /// Landing layouts to measure (`event`, `batch`), side by side; the ceiling has none.
    #[arg(long, value_delimiter = ',', default_values = ["event"])]
    layouts: Vec<String>,
    /// `--bigquery-write-api` of the Google mode's servers, each a level of its own.
    #[arg(long, value_delimiter = ',', default_values = ["storage"])]
    write_apis: Vec<String>,
    /// `--landing-batch-linger-ms` for the batch layout (its default when unset).
    #[arg(long)]
    batch_linger_ms: Option<u64>,
    /// `--landing-batch-idle-ms` for the batch layout (its default when unset).
    #[arg(long)]
    batch_idle_ms: Option<u64>,
    /// Offer the pushes at this rate (per second, Poisson arrivals, as from many independent
    /// publishers) instead of as fast as the connections are answered.
    #[arg(long)]
    rate: Option<f64>,
    /// After each google level: `landfall backfill` of what it landed into an empty dataset,
    /// then again (every row present), beside a plain list and download of the same objects.
    #[arg(long)]
    backfill: bool,
    /// Instead of serving: classify this many deliveries in this process (route, validate,
    /// type the row; the catalog's whole cost) and report the time per event.
    #[arg(long)]
    classify_only: Option<usize>,
    /// Instead of the load levels: this many maximum-size messages pushed at once (10 MB of
    /// data each, in the `--shapes` in turn), for each number given, against the embedded
    /// binary: how each was answered and its peak resident memory.
    #[arg(long, value_delimiter = ',')]
    large_messages: Vec<usize>,
    /// The shapes of `--large-messages`, in turn.
    #[arg(long, value_enum, value_delimiter = ',', default_values = ["order", "bytes", "zeros"])]
    shapes: Vec<Shape>,
    /// Flags for the server of `--large-messages` (e.g. `--memory-budget-mb=256`).
    #[arg(long, allow_hyphen_values = true)]
    server_flag: Vec<String>,
    /// cargo bench passes this; ignored.
    #[arg(long, hide = true)]
    bench: bool,
}

fn main() {
    landfall::process::install_crypto_provider();
    // The ceiling server takes landfall's own flags, not these.
    if std::env::args().any(|a| a == "--serve-ceiling") {
        return serve_ceiling();
    }
    let options = Options::parse();
    if let Some(count) = options.classify_only {
        return classify_only(count, options.payload);
    }
    if !options.large_messages.is_empty() {
        return large_messages(
            &options.large_messages,
            &options.shapes,
            &options.server_flag,
        );
    }
    let client = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let google = client.block_on(Google::start_if(&options));
    let jwks = client.block_on(Jwks::start());
    println!(
        "| round | mode | layout | metrics | connections | requests | acked | failed | acked events/s | ÷ ceiling | p50 ms | p99 ms | CPU µs / push | objects / 1000 | peak RSS MB | BigQuery writes / 1000 | queries / 1000 |"
    );
    println!("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|");
    for round in 1..=options.rounds {
        for &connections in &options.connections {
            for metrics in &options.metrics {
                // Every other round in reverse, so that drift (emulators filling up, the
                // machine's speed) does not always favour the same mode.
                let mut levels: Vec<(Mode, &str, &str)> = Vec::new();
                for &mode in &options.modes {
                    let apis: Vec<&str> = match mode {
                        Mode::Google => options.write_apis.iter().map(String::as_str).collect(),
                        _ => vec!["-"],
                    };
                    match mode {
                        Mode::Ceiling => levels.push((mode, "-", "-")),
                        _ => {
                            for layout in &options.layouts {
                                levels.extend(apis.iter().map(|api| (mode, layout.as_str(), *api)));
                            }
                        }
                    }
                }
                if round % 2 == 0 {
                    levels.reverse();
                }
                let mut rows = Vec::new();
                for (mode, layout, api) in levels {
                    let mut server = Server::start(
                        mode,
                        (layout, api),
                        &options,
                        metrics == "on",
                        &jwks,
                        google.as_ref(),
                    );
                    let result = client.block_on(measure(
                        &mut server,
                        &options,
                        connections,
                        google.as_ref(),
                        &jwks,
                    ));
                    if options.backfill && mode == Mode::Google {
                        let google = google.as_ref().expect("google mode starts the emulators");
                        client.block_on(backfill(google, layout, &server.prefix));
                    }
                    let replay_rss = server.peak_rss_mb();
                    let name = match api {
                        "-" => format!("{mode:?}"),
                        api => format!("{mode:?} {api}"),
                    };
                    rows.push((mode, name, layout, result, replay_rss));
                }
                let ceiling = rows
                    .iter()
                    .find(|(mode, ..)| *mode == Mode::Ceiling)
                    .map(|(_, _, _, r, _)| r.first.rate());
                for (_, mode, layout, result, replay_rss) in &rows {
                    let ratio =
                        ceiling.map_or("-".into(), |c| format!("{:.2}", result.first.rate() / c));
                    print_row(
                        round,
                        mode,
                        layout,
                        metrics,
                        connections,
                        &options,
                        &result.first,
                        &ratio,
                        result.first_rss,
                        result.insert_calls,
                        None,
                    );
                    if let Some(replay) = &result.replay {
                        let slower = format!(
                            "p50 × {:.1}, p99 × {:.1}",
                            replay.level.percentile(0.50) / result.first.percentile(0.50),
                            replay.level.percentile(0.99) / result.first.percentile(0.99)
                        );
                        print_row(
                            round,
                            &format!("{mode} replay"),
                            layout,
                            metrics,
                            connections,
                            &options,
                            &replay.level,
                            &slower,
                            *replay_rss,
                            None,
                            replay.queries,
                        );
                    }
                }
            }
        }
    }
}

#[allow(clippy::too_many_arguments)]
fn print_row(
    round: usize,
    mode: &str,
    layout: &str,
    metrics: &str,
    connections: usize,
    options: &Options,
    level: &Level,
    ratio: &str,
    rss: f64,
    inserts: Option<f64>,
    queries: Option<f64>,
) {
    let per_1000 = |n: Option<f64>| n.map_or("-".into(), |c| format!("{c:.1}"));
    println!(
        "| {round} | {mode} | {layout} | {metrics} | {connections} | {} | {} | {} | {:.0} | {ratio} | {:.1} | {:.1} | {} | {} | {rss:.0} | {} | {} |",
        options.requests,
        level.acked,
        level.failed,
        level.rate(),
        level.percentile(0.50),
        level.percentile(0.99),
        level.cpu_per_push.map_or("-".into(), |c| format!("{c:.0}")),
        per_1000(level.objects_per_1000),
        per_1000(inserts),
        per_1000(queries),
    );
}

/// A server process: the landfall binary, or this benchmark as the ceiling server.
struct Server {
    child: Child,
    /// How it was started, to start it again the same way.
    command: Command,
    address: String,
    /// Its landing prefix (each level lands under its own).
    prefix: String,
}

/// Every level's data folder, removed only when the benchmark ends: ext4 makes inode
/// allocation slow for minutes after a mass deletion, which would slow the levels after it.
static DATA: std::sync::Mutex<Vec<tempfile::TempDir>> = std::sync::Mutex::new(Vec::new());

impl Server {
    fn start(
        mode: Mode,
        (layout, api): (&str, &str),
        options: &Options,
        metrics: bool,
        jwks: &Jwks,
        google: Option<&Google>,
    ) -> Self {
        let data = tempfile::tempdir().unwrap();
        let program = match mode {
            Mode::Ceiling => std::env::current_exe().unwrap(),
            Mode::Baseline => options.baseline_bin.clone().expect("--baseline-bin"),
            Mode::Embedded | Mode::Google => PathBuf::from(env!("CARGO_BIN_EXE_landfall")),
        };
        let mut command = Command::new(program);
        if mode == Mode::Ceiling {
            command.args(["--serve-ceiling", "--bench"]);
        }
        command
            .args(["--host", "127.0.0.1", "--port", "0", "--log-format", "json"])
            .arg("--data-dir")
            .arg(data.path())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit());
        if mode != Mode::Baseline {
            command.env("LANDFALL_METRICS", metrics.to_string());
        }
        // Its own prefix per level: a bucket holds one layout per prefix.
        static LEVEL: AtomicUsize = AtomicUsize::new(0);
        let prefix = format!("bench{}", LEVEL.fetch_add(1, Ordering::Relaxed));
        if matches!(mode, Mode::Embedded | Mode::Google) {
            command.args(["--landing-layout", layout, "--prefix", &prefix]);
            if let (Some(linger), "batch") = (options.batch_linger_ms, layout) {
                command.args(["--landing-batch-linger-ms", &linger.to_string()]);
            }
            if let (Some(idle), "batch") = (options.batch_idle_ms, layout) {
                command.args(["--landing-batch-idle-ms", &idle.to_string()]);
            }
        }
        if options.auth == "oidc" {
            command
                .args(["--auth", "oidc", "--oidc-audience", oidc::AUDIENCE])
                .args([
                    "--oidc-allowed-email",
                    oidc::PUSHER,
                    "--oidc-jwks-url",
                    &jwks.server.url,
                ]);
        }
        let google_sinks =
            mode == Mode::Google || (mode == Mode::Baseline && options.baseline_google);
        if google_sinks {
            let google = google.expect("google mode starts the emulators");
            command
                .args([
                    "--gcs-bucket",
                    BUCKET,
                    "--storage-emulator-host",
                    &google.gcs.url(),
                ])
                .args([
                    "--bigquery-project",
                    emulators::PROJECT,
                    "--bigquery-emulator-host",
                    &google.bigquery.url(),
                    "--bigquery-storage-emulator-host",
                    &google.grpc.url,
                ]);
            if api != "-" {
                command.args(["--bigquery-write-api", api]);
            }
            if options.auth != "oidc" {
                command.args(["--auth", "none"]);
            }
        }
        let (child, address) = spawn(&mut command);
        DATA.lock().unwrap().push(data);
        Server {
            child,
            command,
            address,
            prefix,
        }
    }

    /// Stops it and starts it again with the same settings, data and prefix: a fresh process
    /// that knows nothing of what the last one wrote, as another replica or after a restart.
    fn restart(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        (self.child, self.address) = spawn(&mut self.command);
    }

    /// User and system CPU the server has used so far, in microseconds.
    fn cpu_micros(&self) -> f64 {
        let stat =
            std::fs::read_to_string(format!("/proc/{}/stat", self.child.id())).unwrap_or_default();
        // After the command name's closing parenthesis: fields 14 and 15 (utime, stime) are
        // the 12th and 13th.
        let after = stat.rsplit_once(')').map_or("", |(_, rest)| rest);
        let fields: Vec<&str> = after.split_whitespace().collect();
        let ticks: f64 = fields.get(11).and_then(|f| f.parse().ok()).unwrap_or(0.0)
            + fields
                .get(12)
                .and_then(|f| f.parse::<f64>().ok())
                .unwrap_or(0.0);
        ticks * 1e6 / clock_ticks_per_second()
    }

    /// Objects the server has created in its landing layer so far, by its own metrics (read
    /// with the Prometheus client's parser).
    async fn objects(&self) -> f64 {
        let Ok(response) = reqwest::get(format!("http://{}/metrics", self.address)).await else {
            return 0.0;
        };
        let text = response.text().await.unwrap_or_default();
        support::parse_exposition(&text)
            .iter()
            .filter(|s| s.name == "landfall_landing_objects_total")
            .filter_map(|s| s.value.as_f64())
            .sum()
    }

    fn peak_rss_mb(&self) -> f64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id()))
            .unwrap_or_default();
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmHWM:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
            .map_or(0.0, |kb| kb / 1024.0)
    }
}

/// Starts a server and waits for the address it serves on.
fn spawn(command: &mut Command) -> (Child, String) {
    let mut child = command.spawn().unwrap();
    let stdout = child.stdout.take().unwrap();
    let mut lines = BufReader::new(stdout).lines();
    let address = loop {
        let line = lines.next().expect("the server logs its address").unwrap();
        let Ok(entry) = serde_json::from_str::<Value>(&line) else {
            continue;
        };
        if entry["message"] == "landfall is serving" {
            break entry["address"].as_str().unwrap().to_string();
        }
    };
    // Keep draining its log so the server never blocks on a full pipe.
    std::thread::spawn(move || for _ in lines {});
    (child, address)
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The ceiling: landfall's own server stack (router, auth, limits, envelope, catalog
/// validation, group commit) over sinks that acknowledge without storing anything.
fn serve_ceiling() {
    struct Discard(Layer, &'static str);

    #[async_trait]
    impl Sink for Discard {
        fn name(&self) -> &'static str {
            self.1
        }
        fn layer(&self) -> Layer {
            self.0
        }
        async fn write(&self, batch: &[Entry]) -> Vec<Result<Written, SinkError>> {
            let written = match self.0 {
                Layer::Landing => Written::Landed(Receipt {
                    uri: "file:///discarded".into(),
                    before: Some(false),
                }),
                Layer::Warehouse => Written::Created,
            };
            batch.iter().map(|_| Ok(written.clone())).collect()
        }
        async fn check(&self) -> Result<(), SinkError> {
            Ok(())
        }
    }

    landfall::process::tune_allocator();
    let args: Vec<String> = std::env::args()
        .filter(|a| a != "--serve-ceiling" && a != "--bench")
        .collect();
    let config = landfall::config::serve_config(args).unwrap();
    landfall::telemetry::init(config.log_format, None, landfall::telemetry::LogTo::Stdout);
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(async {
        let catalog = Arc::new(Catalog::load(&CatalogSource::Shipped).unwrap());
        let sinks = SinkSet {
            sinks: vec![
                Arc::new(Discard(Layer::Landing, "landing")),
                Arc::new(Discard(Layer::Warehouse, "warehouse")),
            ],
            stores: Vec::new(),
        };
        let app = Application::with_sinks(config, catalog, sinks)
            .await
            .unwrap();
        app.run_until_stopped(std::future::pending()).await.unwrap();
    });
}

/// The largest message Pub/Sub sends: 10 MB of data, in one of the shapes that cost the
/// most memory to classify.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Shape {
    /// An order of ~100,000 items: a valid event with a deep row.
    Order,
    /// Bytes that are no JSON at all: a dead letter, its data in base64.
    Bytes,
    /// An order whose items are five million zeros: the most JSON values 10 MB can hold (a
    /// dead letter, but only once all of them are read).
    Zeros,
}

fn largest_message(shape: Shape) -> Vec<u8> {
    const DATA: usize = 10 * 1000 * 1000;
    let head = r#"{"event_type":"order","order_id":"O-big","customer_id":"C1","order_date":"2026-11-25T10:00:00Z","status":"pending","shipping_address":{"street":"1 Quay","city":"Bergen","country":"NO"},"total_amount":1.5,"items":["#;
    match shape {
        Shape::Bytes => return (0..DATA).map(|i| (i % 251) as u8).collect(),
        Shape::Zeros => {
            let mut order = head.to_string();
            while order.len() + 4 < DATA {
                order.push_str("0,");
            }
            order.push_str("0]}");
            return order.into_bytes();
        }
        Shape::Order => {}
    }
    let item = r#"{"product_id":"P-0000000","product_name":"A product name of some length","quantity":3,"price":12.5},"#;
    let mut order = head.to_string();
    while order.len() + item.len() + 2 < DATA {
        order.push_str(item);
    }
    order.pop();
    order.push_str("]}");
    order.into_bytes()
}

fn large_messages(levels: &[usize], shapes: &[Shape], flags: &[String]) {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let bodies: Vec<Bytes> = shapes
        .iter()
        .map(|&shape| {
            let data = base64::engine::general_purpose::STANDARD.encode(largest_message(shape));
            Bytes::from(
                json!({"message": {"data": data, "messageId": "ID", "publishTime": "2026-11-25T10:00:00Z"}})
                    .to_string(),
            )
        })
        .collect();
    println!(
        "| messages at once | shapes | server flags | 200 | 429 | 503 | other | seconds | peak RSS MB |"
    );
    println!("|---|---|---|---|---|---|---|---|---|");
    for &at_once in levels {
        let data = tempfile::tempdir().unwrap();
        let mut command = Command::new(env!("CARGO_BIN_EXE_landfall"));
        command
            .args(["--host", "127.0.0.1", "--port", "0", "--log-format", "json"])
            .args(["--request-timeout-secs", "120", "--data-dir"])
            .arg(data.path())
            .args(flags)
            .env("RUST_LOG", "warn,landfall::startup=info")
            .stdout(Stdio::piped());
        let (child, address) = spawn(&mut command);
        let url = format!("http://{address}/push");
        let started = Instant::now();
        let statuses: Vec<u16> = runtime.block_on(async {
            let client = reqwest::Client::new();
            let pushes = (0..at_once).map(|i| {
                let body = bodies[i % bodies.len()].clone();
                let body = Bytes::from(String::from_utf8(body.to_vec()).unwrap().replacen(
                    "\"ID\"",
                    &format!("\"{}\"", 900_000 + i),
                    1,
                ));
                let (client, url) = (client.clone(), url.clone());
                async move {
                    match client.post(&url).body(body).send().await {
                        Ok(response) => response.status().as_u16(),
                        Err(_) => 0,
                    }
                }
            });
            futures::future::join_all(pushes).await
        });
        let seconds = started.elapsed().as_secs_f64();
        let server = Server {
            child,
            command,
            address,
            prefix: String::new(),
        };
        let count = |status: u16| statuses.iter().filter(|s| **s == status).count();
        println!(
            "| {at_once} | {shapes:?} | {} | {} | {} | {} | {} | {seconds:.1} | {:.0} |",
            flags.join(" "),
            count(200),
            count(429),
            count(503),
            at_once - count(200) - count(429) - count(503),
            server.peak_rss_mb()
        );
    }
}

/// The catalog's cost per event, alone: routing, validation and the typed row.
fn classify_only(count: usize, kind: Payload) {
    use landfall::envelope::Delivery;
    use landfall::event::route::Routing;
    use landfall::event::{Classifier, PartitionTime};
    let classifier = Classifier {
        catalog: Arc::new(Catalog::load(&CatalogSource::Shipped).unwrap()),
        routing: Routing::default(),
        partition: PartitionTime::Event,
    };
    let deliveries: Vec<Delivery> = payloads(kind)
        .into_iter()
        .enumerate()
        .map(|(i, data)| Delivery {
            message_id: i.to_string(),
            publish_time: chrono::Utc::now(),
            subscription: Some("projects/bench/subscriptions/landfall".into()),
            attributes: Default::default(),
            ordering_key: None,
            delivery_attempt: None,
            data: Bytes::from(data),
        })
        .collect();
    let now = chrono::Utc::now();
    let started = Instant::now();
    let mut landed = 0;
    for i in 0..count {
        let record = classifier.classify(deliveries[i % deliveries.len()].clone(), now);
        landed += usize::from(!record.is_dead_letter());
    }
    let per_event = started.elapsed().as_secs_f64() * 1e6 / count as f64;
    assert_eq!(landed, count, "every payload is a valid event");
    println!("classify {kind:?}: {count} events, {per_event:.2} µs per event (one thread)");
}

fn clock_ticks_per_second() -> f64 {
    static TICKS: std::sync::OnceLock<f64> = std::sync::OnceLock::new();
    *TICKS.get_or_init(|| {
        let output = Command::new("getconf").arg("CLK_TCK").output().unwrap();
        String::from_utf8_lossy(&output.stdout)
            .trim()
            .parse()
            .unwrap()
    })
}

/// The bucket the Google mode lands in.
const BUCKET: &str = "landing";

struct Google {
    gcs: emulators::Gcs,
    bigquery: emulators::BigQuery,
    /// In front of the Storage Write API, counting its requests (it injects no fault here).
    grpc: GrpcProxy,
}

impl Google {
    async fn start_if(options: &Options) -> Option<Self> {
        let needed = options.modes.contains(&Mode::Google)
            || (options.modes.contains(&Mode::Baseline) && options.baseline_google);
        if !needed {
            return None;
        }
        let gcs = emulators::Gcs::start().await;
        gcs.create_bucket(BUCKET).await;
        let bigquery = emulators::BigQuery::start().await;
        let status = Command::new(env!("CARGO_BIN_EXE_landfall"))
            .args(["schema", "apply", "--bigquery-project", emulators::PROJECT])
            .args(["--bigquery-emulator-host", &bigquery.url()])
            .stdout(Stdio::null())
            .status()
            .unwrap();
        assert!(status.success(), "schema apply against the emulator");
        let grpc = GrpcProxy::start(&bigquery.grpc_url());
        Some(Google {
            gcs,
            bigquery,
            grpc,
        })
    }

    /// insertAll calls and Storage Write API requests so far.
    fn write_calls(&self) -> usize {
        self.bigquery.log().matches("/insertAll").count() + self.grpc.requests()
    }

    fn query_calls(&self) -> usize {
        self.bigquery.log().matches("/queries").count()
    }
}

/// `landfall backfill` of a level's objects into a new, empty dataset, then again with every
/// row present, each beside a plain list and download of the same objects (what any reader of
/// the bucket pays), all in the same run.
async fn backfill(google: &Google, layout: &str, prefix: &str) {
    static DATASET: AtomicUsize = AtomicUsize::new(0);
    let dataset = format!("backfill{}", DATASET.fetch_add(1, Ordering::Relaxed));
    let (gcs, bigquery) = (google.gcs.url(), google.bigquery.url());
    let applied = Command::new(env!("CARGO_BIN_EXE_landfall"))
        .args([
            "schema",
            "apply",
            "--bigquery-project",
            emulators::PROJECT,
            "--bigquery-dataset",
            &dataset,
        ])
        .args([
            "--bigquery-curated-dataset",
            &format!("{dataset}_curated"),
            "--bigquery-emulator-host",
            &bigquery,
        ])
        .stdout(Stdio::null())
        .status()
        .unwrap();
    assert!(applied.success());
    let backfill = |dry_run: bool| {
        let started = Instant::now();
        let output = Command::new(env!("CARGO_BIN_EXE_landfall"))
            .arg("backfill")
            .args(dry_run.then_some("--dry-run"))
            .args([
                "--output",
                "json",
                "--prefix",
                prefix,
                "--landing-layout",
                layout,
            ])
            .args(["--gcs-bucket", BUCKET, "--storage-emulator-host", &gcs])
            .args([
                "--bigquery-project",
                emulators::PROJECT,
                "--bigquery-dataset",
                &dataset,
            ])
            .args(["--bigquery-emulator-host", &bigquery])
            .args(["--bigquery-storage-emulator-host", &google.grpc.url])
            .env("RUST_LOG", "warn")
            .output()
            .unwrap();
        assert!(
            output.status.success(),
            "{}",
            String::from_utf8_lossy(&output.stderr)
        );
        let stdout = String::from_utf8(output.stdout).unwrap();
        let summary: Value = serde_json::from_str(stdout.lines().last().unwrap()).unwrap();
        (summary, started.elapsed())
    };
    let (plain, plain_elapsed) = list_and_download(&gcs, prefix).await;
    let (dry, dry_elapsed) = backfill(true);
    let (first, first_elapsed) = backfill(false);
    let (again, again_elapsed) = backfill(false);
    let plain_rate = plain as f64 / plain_elapsed.as_secs_f64();
    let objects = first["objects"].as_f64().unwrap();
    let messages = first["examined"].as_f64().unwrap();
    let describe = |elapsed: Duration| {
        let rate = objects / elapsed.as_secs_f64();
        format!(
            "{rate:.0} objects/s ({:.2} of it; {:.0} messages/s)",
            rate / plain_rate,
            messages / elapsed.as_secs_f64()
        )
    };
    println!(
        "backfill, {layout} layout, {objects} objects ({messages} messages): list + download {plain_rate:.0} objects/s; \
         --dry-run (read and classify) {}; into an empty dataset {} ({} rows written); \
         again, every row present, {}",
        describe(dry_elapsed),
        describe(first_elapsed),
        first["landed"],
        describe(again_elapsed),
    );
    assert_eq!(
        dry["landed"], first["landed"],
        "a dry run counts what a run writes"
    );
    assert_eq!(again["landed"], 0, "a second backfill writes nothing");
}

/// Lists the objects of every event type under `prefix` (the JSON API, pages of 1,000) and
/// downloads each, sixteen at a time; how many, and how long it took.
async fn list_and_download(gcs: &str, prefix: &str) -> (usize, Duration) {
    use futures::StreamExt;
    let client = reqwest::Client::new();
    let started = Instant::now();
    let mut names = Vec::new();
    for kind in ["order", "inventory", "user_activity"] {
        let mut token: Option<String> = None;
        loop {
            let mut query = vec![
                ("prefix", format!("{prefix}/{kind}/")),
                ("maxResults", "1000".into()),
            ];
            if let Some(token) = &token {
                query.push(("pageToken", token.clone()));
            }
            let page: Value = client
                .get(format!("{gcs}/storage/v1/b/{}/o", BUCKET))
                .query(&query)
                .send()
                .await
                .unwrap()
                .json()
                .await
                .unwrap();
            for item in page["items"].as_array().into_iter().flatten() {
                names.push(item["name"].as_str().unwrap().to_string());
            }
            match page["nextPageToken"].as_str() {
                Some(next) => token = Some(next.to_string()),
                None => break,
            }
        }
    }
    let downloads = futures::stream::iter(names.iter().map(|name| {
        let client = client.clone();
        let url = format!(
            "{gcs}/storage/v1/b/{}/o/{}",
            BUCKET,
            name.replace('/', "%2F")
        );
        async move {
            client
                .get(url)
                .query(&[("alt", "media")])
                .send()
                .await
                .unwrap()
                .bytes()
                .await
                .unwrap()
                .len()
        }
    }))
    .buffer_unordered(16);
    let read: Vec<usize> = downloads.collect().await;
    (read.len(), started.elapsed())
}

struct Jwks {
    server: oidc::JwksServer,
    token: String,
}

impl Jwks {
    async fn start() -> Self {
        let key = oidc::TestKey::generate("bench-key");
        let server = oidc::JwksServer::start(vec![key.jwk.clone()], true).await;
        Jwks {
            server,
            token: key.sign(&oidc::google_claims()),
        }
    }
}

struct Measured {
    first: Level,
    /// The server's peak RSS during the first deliveries, in MB.
    first_rss: f64,
    replay: Option<Replay>,
    insert_calls: Option<f64>,
}

struct Replay {
    level: Level,
    /// Lookup queries per 1,000 replayed pushes.
    queries: Option<f64>,
}

async fn measure(
    server: &mut Server,
    options: &Options,
    connections: usize,
    google: Option<&Google>,
    jwks: &Jwks,
) -> Measured {
    let token = (options.auth == "oidc").then_some(jwks.token.as_str());
    wait_until_ready(&server.address).await;
    run(
        &server.address,
        token,
        64,
        envelopes("warmup", 2_000, options.payload),
        None,
    )
    .await;
    let schedule = options.rate.map(|rate| poisson(rate, options.requests));
    static RUN: AtomicUsize = AtomicUsize::new(0);
    let run_id = format!("run{}", RUN.fetch_add(1, Ordering::Relaxed));
    let bodies = envelopes(&run_id, options.requests, options.payload);
    let calls_before = google.map(Google::write_calls);
    let first = run_counted(server, token, connections, bodies.clone(), schedule.clone()).await;
    let insert_calls = google
        .zip(calls_before)
        .map(|(g, before)| (g.write_calls() - before) as f64 * 1000.0 / first.acked.max(1) as f64);
    let first_rss = server.peak_rss_mb();
    let replay = if options.replay {
        // Replayed to a fresh process, so that what it finds it finds by asking.
        server.restart();
        wait_until_ready(&server.address).await;
        let queries_before = google.map(Google::query_calls);
        let level = run_counted(server, token, connections, bodies, schedule).await;
        let queries = google.zip(queries_before).map(|(g, before)| {
            (g.query_calls() - before) as f64 * 1000.0 / level.acked.max(1) as f64
        });
        Some(Replay { level, queries })
    } else {
        None
    };
    Measured {
        first,
        first_rss,
        replay,
        insert_calls,
    }
}

/// A run, with the server's CPU per acknowledged push and its landing objects per 1,000.
async fn run_counted(
    server: &Server,
    token: Option<&str>,
    connections: usize,
    bodies: Arc<Vec<Bytes>>,
    schedule: Option<Arc<Vec<Duration>>>,
) -> Level {
    let (cpu, objects) = (server.cpu_micros(), server.objects().await);
    let mut level = run(&server.address, token, connections, bodies, schedule).await;
    let acked = level.acked.max(1) as f64;
    level.cpu_per_push = Some((server.cpu_micros() - cpu) / acked);
    level.objects_per_1000 = Some((server.objects().await - objects) * 1000.0 / acked);
    level
}

async fn wait_until_ready(address: &str) {
    let url = format!("http://{address}/readyz");
    for _ in 0..600 {
        if reqwest::get(&url).await.is_ok_and(|r| r.status() == 200) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("the server at {address} never became ready");
}

fn payloads(kind: Payload) -> Vec<Vec<u8>> {
    let names: &[&str] = match kind {
        Payload::Inventory => &["inventory.json"],
        Payload::Mixed => &["order.json", "inventory.json", "user-activity.json"],
    };
    names
        .iter()
        .map(|name| {
            let path = Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("tests/fixtures")
                .join(name);
            let envelope: Value = serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap();
            base64::engine::general_purpose::STANDARD
                .decode(envelope["message"]["data"].as_str().unwrap())
                .unwrap()
        })
        .collect()
}

/// Envelopes with unique message ids, built before the clock starts.
fn envelopes(run: &str, count: usize, kind: Payload) -> Arc<Vec<Bytes>> {
    let payloads = payloads(kind);
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

#[derive(Default)]
struct Level {
    acked: usize,
    failed: usize,
    elapsed: Duration,
    latencies: Vec<Duration>,
    /// The server's user and system CPU per acknowledged push, in µs.
    cpu_per_push: Option<f64>,
    objects_per_1000: Option<f64>,
}

impl Level {
    fn rate(&self) -> f64 {
        self.acked as f64 / self.elapsed.as_secs_f64()
    }

    fn percentile(&self, p: f64) -> f64 {
        if self.latencies.is_empty() {
            return 0.0;
        }
        let index =
            ((self.latencies.len() as f64 * p).ceil() as usize).clamp(1, self.latencies.len()) - 1;
        self.latencies[index].as_secs_f64() * 1000.0
    }
}

/// When each of `count` pushes is due, for Poisson arrivals at `rate` per second.
fn poisson(rate: f64, count: usize) -> Arc<Vec<Duration>> {
    use rand::Rng;
    let mut rng = rand::rng();
    let mut at = 0.0;
    Arc::new(
        (0..count)
            .map(|_| {
                // An exponential gap: -ln(U) / rate, with U in (0, 1].
                at += -(1.0 - rng.random::<f64>()).ln() / rate;
                Duration::from_secs_f64(at)
            })
            .collect(),
    )
}

/// Speaks just enough HTTP/1.1 to send a request and read its answer: a general-purpose
/// client would spend more of these two cores than the server under test. With a
/// `schedule`, each push waits for its time (a connection must be free by then).
async fn run(
    address: &str,
    token: Option<&str>,
    connections: usize,
    bodies: Arc<Vec<Bytes>>,
    schedule: Option<Arc<Vec<Duration>>>,
) -> Level {
    let auth = token
        .map(|t| format!("authorization: Bearer {t}\r\n"))
        .unwrap_or_default();
    let next = Arc::new(AtomicUsize::new(0));
    let started = Instant::now();
    let workers: Vec<_> = (0..connections)
        .map(|_| {
            let (next, bodies, address, auth) = (next.clone(), bodies.clone(), address.to_string(), auth.clone());
            let schedule = schedule.clone();
            tokio::spawn(async move {
                let mut level = Level::default();
                let mut stream = tokio::net::TcpStream::connect(&address).await.unwrap();
                stream.set_nodelay(true).unwrap();
                let mut buffer = Vec::with_capacity(4096);
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    let Some(body) = bodies.get(i) else { break };
                    if let Some(due) = schedule.as_ref().map(|s| s[i]) {
                        tokio::time::sleep_until((started + due).into()).await;
                    }
                    let head = format!(
                        "POST /push HTTP/1.1\r\nhost: {address}\r\ncontent-type: application/json\r\n{auth}content-length: {}\r\n\r\n",
                        body.len()
                    );
                    let mut request = head.into_bytes();
                    request.extend_from_slice(body);
                    let sent = Instant::now();
                    let status = exchange(&mut stream, &request, &mut buffer).await;
                    level.latencies.push(sent.elapsed());
                    if status == 200 {
                        level.acked += 1;
                    } else {
                        level.failed += 1;
                    }
                }
                level
            })
        })
        .collect();
    let mut total = Level::default();
    for worker in workers {
        let level = worker.await.unwrap();
        total.acked += level.acked;
        total.failed += level.failed;
        total.latencies.extend(level.latencies);
    }
    total.elapsed = started.elapsed();
    total.latencies.sort();
    total
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
