//! The real `landfall` binary, from outside: started on port 0 with JSON logs and driven over
//! HTTP, signalled, killed; or run to completion as a command. It never sees the settings of
//! the environment the tests run in, only the ones a test gives it.

use std::io::{BufRead, BufReader, Read};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::Value;

use super::{metrics, poll};

pub const BINARY: &str = env!("CARGO_BIN_EXE_landfall");

/// A command for the binary with every variable a setting reads removed, so the caller's
/// `LANDFALL_*`, `PORT` or emulator hosts cannot change what a test runs.
pub fn command() -> Command {
    let mut command = Command::new(BINARY);
    for variable in landfall::config::variables() {
        command.env_remove(variable);
    }
    command.env_remove("RUST_LOG");
    command
}

/// Runs the real binary to completion.
pub fn landfall(args: &[&str]) -> Output {
    landfall_with_env(args, &[])
}

/// How long a command may run: one that should stop but serves instead must fail the test,
/// not hang it.
const COMMAND_DEADLINE: Duration = Duration::from_secs(180);

/// Runs the real binary to completion with these environment variables set.
pub fn landfall_with_env(args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut command = command();
    command.args(args).envs(env.iter().copied());
    command.stdout(Stdio::piped()).stderr(Stdio::piped());
    let mut child = command.spawn().expect("landfall runs");
    let stdout = read_all(child.stdout.take().expect("piped"));
    let stderr = read_all(child.stderr.take().expect("piped"));
    let exited = poll::until_blocking_or(COMMAND_DEADLINE, || child.try_wait().unwrap());
    let Some(status) = exited else {
        let _ = child.kill();
        let _ = child.wait();
        let stderr = String::from_utf8_lossy(&stderr.join().unwrap()).into_owned();
        panic!("landfall {args:?} did not exit within {COMMAND_DEADLINE:?}: {stderr}");
    };
    Output {
        status,
        stdout: stdout.join().unwrap(),
        stderr: stderr.join().unwrap(),
    }
}

fn read_all(mut pipe: impl Read + Send + 'static) -> std::thread::JoinHandle<Vec<u8>> {
    std::thread::spawn(move || {
        let mut bytes = Vec::new();
        let _ = pipe.read_to_end(&mut bytes);
        bytes
    })
}

/// The real `landfall` binary serving on a free port with JSON logs, its log lines collected.
pub struct Binary {
    pub child: Child,
    pub address: String,
    logs: Arc<Mutex<Vec<Value>>>,
    stderr: Arc<Mutex<String>>,
    stderr_reader: Option<std::thread::JoinHandle<()>>,
}

impl Binary {
    /// Starts `landfall ARGS` serving on 127.0.0.1, port 0, and waits until it serves.
    pub fn start(args: &[&str], env: &[(&str, &str)]) -> Self {
        Self::start_under(&[], args, env)
    }

    /// The same, run by a wrapper command (`prlimit --nofile=256:256 --`, say).
    pub fn start_under(wrapper: &[&str], args: &[&str], env: &[(&str, &str)]) -> Self {
        let mut command = match wrapper.split_first() {
            Some((program, rest)) => {
                let landfall = command();
                let mut outer = Command::new(program);
                outer.args(rest).arg(landfall.get_program());
                for (name, value) in landfall.get_envs() {
                    match value {
                        Some(value) => outer.env(name, value),
                        None => outer.env_remove(name),
                    };
                }
                outer
            }
            None => command(),
        };
        let mut child = command
            .args(["--host", "127.0.0.1", "--port", "0", "--log-format", "json"])
            .args(args)
            .envs(env.iter().copied())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("landfall starts");
        let stderr = Arc::new(Mutex::new(String::new()));
        let mut errors = child.stderr.take().unwrap();
        let collected = stderr.clone();
        let stderr_reader = std::thread::spawn(move || {
            let mut text = String::new();
            let _ = errors.read_to_string(&mut text);
            collected.lock().unwrap().push_str(&text);
        });
        let logs = Arc::new(Mutex::new(Vec::new()));
        let (address_tx, address_rx) = std::sync::mpsc::channel();
        let lines = BufReader::new(child.stdout.take().unwrap()).lines();
        let collected = logs.clone();
        std::thread::spawn(move || {
            let mut address = Some(address_tx);
            for line in lines.map_while(Result::ok) {
                // A line that is not JSON is kept as it is: the test that cares says so.
                let entry: Value = serde_json::from_str(&line)
                    .unwrap_or_else(|_| serde_json::json!({ "unparsed": line }));
                if entry["message"] == "landfall is serving"
                    && let Some(tx) = address.take()
                {
                    let _ = tx.send(entry["address"].as_str().unwrap_or_default().to_string());
                }
                collected.lock().unwrap().push(entry);
            }
        });
        let address = match address_rx.recv_timeout(Duration::from_secs(60)) {
            Ok(address) => address,
            Err(_) => {
                let _ = child.kill();
                let _ = child.wait();
                std::thread::sleep(Duration::from_millis(100));
                panic!(
                    "landfall did not start serving: {}\n{:#?}",
                    stderr.lock().unwrap(),
                    logs.lock().unwrap()
                );
            }
        };
        Binary {
            child,
            address,
            logs,
            stderr,
            stderr_reader: Some(stderr_reader),
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.address)
    }

    /// Every log line so far.
    pub fn logs(&self) -> Vec<Value> {
        self.logs.lock().unwrap().clone()
    }

    /// What the process wrote to stderr (all of it once [`Binary::wait`] has returned).
    pub fn stderr(&self) -> String {
        self.stderr.lock().unwrap().clone()
    }

    /// The first log line that `wanted` picks, waiting for it to be written (the line of a
    /// push is written as its answer leaves, and read here from another thread).
    pub fn wait_for_log(&self, wanted: impl Fn(&Value) -> bool) -> Value {
        poll::until_blocking("the log line", Duration::from_secs(20), || {
            let logs = self.logs();
            logs.iter()
                .find(|l| wanted(l))
                .cloned()
                .ok_or_else(|| format!("{logs:#?}"))
        })
    }

    /// Waits until `/metrics` shows this many pushes in flight.
    pub async fn wait_for_in_flight(&self, pushes: f64) {
        metrics::wait_for_in_flight(&self.url("/metrics"), pushes).await;
    }

    /// `/metrics`, read by the official Prometheus parser.
    pub async fn scrape(&self) -> Vec<metrics::Sample> {
        metrics::scrape(&self.url("/metrics")).await
    }

    pub async fn wait_until_ready(&self) {
        let client = reqwest::Client::new();
        poll::until("the binary is ready", Duration::from_secs(20), || async {
            let response = client
                .get(self.url("/readyz"))
                .send()
                .await
                .map_err(|e| e.to_string())?;
            match response.status().as_u16() {
                200 => Ok(()),
                other => Err(format!(
                    "{other}: {}",
                    response.text().await.unwrap_or_default()
                )),
            }
        })
        .await
    }

    /// Sends a signal (`TERM`, `KILL`) to the process.
    pub fn send(&self, signal: &str) {
        let sent = Command::new("kill")
            .args([format!("-{signal}"), self.child.id().to_string()])
            .status()
            .unwrap();
        assert!(sent.success());
    }

    /// Waits for the process to exit, and for its stderr to be read to the end.
    pub fn wait(&mut self) -> ExitStatus {
        let status = self.child.wait().unwrap();
        if let Some(reader) = self.stderr_reader.take() {
            reader.join().unwrap();
        }
        status
    }
}

impl Drop for Binary {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
