//! `/metrics` read by the official Prometheus Python client's parser, which refuses a malformed
//! exposition. One parser process serves the whole test binary: starting an interpreter per
//! scrape would cost more than the scrape.

use std::io::{BufRead, BufReader, Write};
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};
use std::sync::Mutex;

use serde_json::Value;

use super::tools::tool;

/// One sample of a parsed exposition.
#[derive(Debug, Clone, serde::Deserialize)]
pub struct Sample {
    pub family: String,
    #[serde(rename = "type")]
    pub kind: String,
    pub name: String,
    pub labels: std::collections::BTreeMap<String, String>,
    pub value: Value,
}

struct Parser {
    _child: Child,
    stdin: ChildStdin,
    stdout: BufReader<ChildStdout>,
}

impl Parser {
    fn start() -> Self {
        let python = tool("prometheus", "PROMETHEUS_PYTHON");
        let script = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/support/parse_metrics.py"
        );
        let mut child = Command::new(&python)
            .arg(script)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("{python} {script}: {e}"));
        Parser {
            stdin: child.stdin.take().unwrap(),
            stdout: BufReader::new(child.stdout.take().unwrap()),
            _child: child,
        }
    }

    fn parse(&mut self, text: &str) -> Value {
        write!(self.stdin, "{}\n{text}", text.len()).unwrap();
        self.stdin.flush().unwrap();
        let mut line = String::new();
        self.stdout.read_line(&mut line).unwrap();
        serde_json::from_str(&line).unwrap_or_else(|e| panic!("the parser said {line:?}: {e}"))
    }
}

/// Every sample of a Prometheus text exposition; fails the test when the official parser
/// refuses it.
pub fn parse_exposition(text: &str) -> Vec<Sample> {
    static PARSER: Mutex<Option<Parser>> = Mutex::new(None);
    let mut parser = PARSER.lock().unwrap_or_else(|p| p.into_inner());
    let answer = parser.get_or_insert_with(Parser::start).parse(text);
    if let Some(error) = answer.get("error") {
        panic!("the Prometheus parser refused the exposition: {error}\n{text}");
    }
    serde_json::from_value(answer["samples"].clone()).unwrap()
}

/// The value of the sample with this name and exactly these labels.
pub fn sample(samples: &[Sample], name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    let wanted: std::collections::BTreeMap<String, String> = labels
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    samples
        .iter()
        .find(|s| s.name == name && s.labels == wanted)
        .map(|s| s.value.as_f64().unwrap_or(f64::NAN))
}

/// The sum of a counter over every label set where `label` is `value`.
pub fn total(samples: &[Sample], name: &str, label: &str, value: &str) -> f64 {
    samples
        .iter()
        .filter(|s| s.name == name && s.labels.get(label).map(String::as_str) == Some(value))
        .map(|s| s.value.as_f64().unwrap_or(f64::NAN))
        .sum()
}

/// Scrapes a `/metrics` URL.
pub async fn scrape(url: &str) -> Vec<Sample> {
    let response = reqwest::get(url).await.unwrap();
    assert_eq!(response.status(), 200, "{url}");
    assert_eq!(
        response.headers()["content-type"],
        "text/plain; version=0.0.4; charset=utf-8"
    );
    parse_exposition(&response.text().await.unwrap())
}

/// Pushes in flight now, by `landfall_in_flight_pushes`.
pub async fn in_flight(url: &str) -> f64 {
    sample(&scrape(url).await, "landfall_in_flight_pushes", &[]).unwrap()
}

/// Waits until `landfall_in_flight_pushes` at this `/metrics` URL reaches `pushes`.
pub async fn wait_for_in_flight(url: &str, pushes: f64) {
    super::poll::until(
        &format!("{pushes} pushes in flight"),
        std::time::Duration::from_secs(20),
        || async {
            let now = in_flight(url).await;
            if now >= pushes {
                Ok(())
            } else {
                Err(format!("{now}"))
            }
        },
    )
    .await
}
