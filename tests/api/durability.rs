//! "Synced to disk before the ack", seen from outside the process. A SIGKILL cannot show it
//! (the page cache outlives a killed process), so the real binary runs under `strace`, and for
//! each acknowledged push the trace must show, before the `HTTP/1.1 200` is written to the
//! socket: the landing file's contents synced (`syncfs` of the landing folder), the file
//! linked to its name, the link synced (`syncfs` again), then the SQLite commit synced
//! (`fsync`/`fdatasync` of `warehouse.db-wal`).

use std::process::{Child, Command, Stdio};
use std::time::Duration;

use serde_json::json;

use crate::support::*;

/// `strace` attached to every thread of a running process, writing its trace to a file.
struct Strace {
    child: Child,
    log: tempfile::NamedTempFile,
}

impl Strace {
    fn attach(pid: u32) -> Self {
        let log = tempfile::NamedTempFile::new().unwrap();
        let mut child = Command::new("strace")
            .args(["-f", "-y", "-s", "48", "-o"])
            .arg(log.path())
            .args([
                "-e",
                "trace=syncfs,fsync,fdatasync,linkat,write,writev,sendto,sendmsg",
            ])
            .args(["-p", &pid.to_string()])
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("strace is installed (the tests need it)");
        // strace says "Process N attached with K threads" once it has taken them all.
        let stderr = child.stderr.take().unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            use std::io::BufRead;
            for line in std::io::BufReader::new(stderr)
                .lines()
                .map_while(Result::ok)
            {
                let _ = tx.send(line);
            }
        });
        loop {
            let line = rx
                .recv_timeout(Duration::from_secs(20))
                .expect("strace attaches (ptrace must be allowed)");
            assert!(!line.contains("Operation not permitted"), "strace: {line}");
            if line.contains("attached") {
                break;
            }
        }
        Strace { child, log }
    }

    /// Detaches and returns the trace.
    fn finish(mut self) -> String {
        Command::new("kill")
            .args(["-INT", &self.child.id().to_string()])
            .status()
            .unwrap();
        self.child.wait().unwrap();
        std::fs::read_to_string(self.log.path()).unwrap()
    }
}

/// What one acknowledged push did, in the order the trace shows it.
#[derive(Debug, Default)]
struct Steps {
    data_synced: bool,
    linked: bool,
    link_synced: bool,
    commit_synced: bool,
}

/// For each `HTTP/1.1 200` written to a socket, which durable steps came before it (since
/// the previous one). A call strace splits (`<unfinished ...>`) counts where it completes.
fn steps_before_each_ack(trace: &str, landing: &str, objects: &[String]) -> Vec<Steps> {
    let mut answered = Vec::new();
    let mut steps = Steps::default();
    let mut pending: std::collections::HashMap<String, String> = Default::default();
    for line in trace.lines() {
        let (pid, call) = line.split_once(' ').unwrap_or(("", line));
        let call = call.trim_start();
        // A call completes on its own line, or on its `resumed` line.
        let completed = if let Some(rest) = call.strip_prefix("<... ") {
            pending.remove(pid).map(|start| (start, rest.to_string()))
        } else if call.ends_with("<unfinished ...>") {
            pending.insert(pid.to_string(), call.to_string());
            None
        } else {
            Some((call.to_string(), call.to_string()))
        };
        let socket_write = ["sendto(", "write(", "writev(", "sendmsg("]
            .iter()
            .any(|w| call.starts_with(w))
            && (call.contains("<socket:") || call.contains("<TCP"));
        if socket_write && call.contains("HTTP/1.1 200") {
            answered.push(std::mem::take(&mut steps));
            continue;
        }
        let Some((start, end)) = completed else {
            continue;
        };
        if !end.trim_end().ends_with("= 0") {
            continue;
        }
        if start.starts_with("syncfs(") && start.contains(&format!("<{landing}>")) {
            if steps.linked {
                steps.link_synced = true;
            } else {
                steps.data_synced = true;
            }
        } else if start.starts_with("linkat(")
            && objects.iter().any(|o| start.contains(&format!("\"{o}\"")))
        {
            steps.linked = steps.data_synced;
        } else if (start.starts_with("fdatasync(") || start.starts_with("fsync("))
            && start.contains("warehouse.db-wal>")
        {
            steps.commit_synced = steps.link_synced;
        }
    }
    answered
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_ack_follows_the_sync_of_its_file_its_link_and_its_row() {
    let data_dir = tempfile::tempdir().unwrap();
    let data = data_dir.path().to_str().unwrap();
    let landfall = Binary::start(
        &["--data-dir", data],
        &[("RUST_LOG", "warn,landfall::startup=info")],
    );
    let client = reqwest::Client::new();
    // One push before tracing, so that every thread a push uses exists and is traced.
    let warm_up = client
        .post(landfall.url("/push"))
        .body(fixture("order.json"))
        .send()
        .await
        .unwrap();
    assert_eq!(warm_up.status(), 200);
    let strace = Strace::attach(landfall.child.id());

    let mut objects = Vec::new();
    for i in 0..5 {
        let data = json!({"event_type": "inventory", "inventory_id": format!("I{i}"), "product_id": "P", "warehouse_id": "W",
                          "quantity_change": 1, "reason": "sale", "timestamp": "2026-11-25T10:00:00Z"});
        let id = format!("5{i:05}");
        let response = client
            .post(landfall.url("/push"))
            .body(envelope(&id, data.to_string().as_bytes()).to_string())
            .send()
            .await
            .unwrap();
        let ack = json_body(response, "/push", 200).await;
        assert_eq!(ack["outcome"], "landed");
        objects.push(format!("inventory_20261125100000_{id}.json"));
    }
    let trace = strace.finish();

    let landing = data_dir.path().join("landing").display().to_string();
    let answered = steps_before_each_ack(&trace, &landing, &objects);
    assert_eq!(
        answered.len(),
        5,
        "five acknowledgements in the trace:\n{trace}"
    );
    for (i, steps) in answered.iter().enumerate() {
        assert!(
            steps.data_synced && steps.linked && steps.link_synced && steps.commit_synced,
            "push {i} was acknowledged before all was synced: {steps:?}\n{trace}"
        );
    }
}
