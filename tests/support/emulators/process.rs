//! Emulator processes: each in its own process group, killed with everything it spawned when
//! its handle stops it, and by a watcher when the test binary exits without dropping it (the
//! emulators a binary shares live in statics, which are never dropped).

use std::net::TcpListener;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::Mutex;
use std::sync::atomic::{AtomicU16, Ordering};
use std::time::Duration;

/// A port for a server that cannot be told to take any (the emulators are given theirs).
/// Below the kernel's ephemeral range, where no port-0 bind and no outgoing connection is
/// ever placed, starting at an offset of this process's own: what binds here now is free
/// for the emulator to take, and another test binary does not pick the same port.
pub fn reserve_port() -> u16 {
    const FIRST: u16 = 20_000;
    const SPAN: u16 = 12_000;
    static NEXT: AtomicU16 = AtomicU16::new(0);
    let offset = (std::process::id() % 100) as u16 * 120;
    for _ in 0..SPAN {
        let port = FIRST + (offset + NEXT.fetch_add(1, Ordering::Relaxed)) % SPAN;
        if TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
    panic!("no free port from {FIRST}");
}

/// What `start` makes, once it has started: it is tried again (five times in all) when it
/// fails, since a port [`reserve_port`] gave may be taken by someone else before the emulator
/// binds it.
pub async fn on_fresh_ports<T>(start: impl AsyncFn() -> Result<T, String>) -> T {
    let mut last = String::new();
    for _ in 0..5 {
        match start().await {
            Ok(started) => return started,
            Err(e) => last = e,
        }
    }
    panic!("{last}");
}

/// A running emulator.
pub struct Process {
    running: Mutex<Option<(Child, Child)>>,
}

impl Process {
    pub fn idle() -> Self {
        Process {
            running: Mutex::new(None),
        }
    }

    /// Starts `command` (stopping what ran before), its output appended to `log`.
    pub fn start(&self, command: &mut Command, log: &Path) {
        self.stop();
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(log)
            .unwrap();
        let child = command
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .stdin(Stdio::null())
            .process_group(0)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {command:?}: {e}"));
        // Kills the group once this test binary is gone, however it went.
        let watcher = Command::new("sh")
            .arg("-c")
            .arg(format!(
                // dash's `kill` takes no `--`, and reads `-PGID` after the signal as a group.
                "while kill -0 {} 2>/dev/null; do sleep 0.5; done; kill -KILL -{} 2>/dev/null",
                std::process::id(),
                child.id()
            ))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .process_group(0)
            .spawn()
            .expect("sh runs");
        *self.running.lock().unwrap() = Some((child, watcher));
    }

    /// Whether the process has exited (it could not take its port, say).
    pub fn exited(&self) -> bool {
        match self.running.lock().unwrap().as_mut() {
            Some((child, _)) => child.try_wait().unwrap().is_some(),
            None => true,
        }
    }

    pub fn stop(&self) {
        if let Some((mut child, mut watcher)) = self.running.lock().unwrap().take() {
            // `--`: procps kill would read a negative pid as an option.
            let _ = Command::new("kill")
                .args(["-KILL", "--", &format!("-{}", child.id())])
                .status();
            let _ = child.wait();
            let _ = watcher.kill();
            let _ = watcher.wait();
        }
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Waits until `url` answers 2xx, or fails naming `what` (sooner when the process exited).
pub async fn wait_until_up(url: &str, what: &str, process: &Process) -> Result<(), String> {
    let client = reqwest::Client::new();
    for _ in 0..600 {
        if let Ok(response) = client.get(url).send().await
            && response.status().is_success()
        {
            return Ok(());
        }
        if process.exited() {
            return Err(format!("{what} exited before it answered at {url}"));
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    Err(format!("{what} did not come up at {url}"))
}
