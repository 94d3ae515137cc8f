//! The one way tests wait: ask until the answer is `Ok` or a deadline passes, then fail naming
//! what never happened and the last thing seen. No test sleeps for a fixed time instead.

use std::future::Future;
use std::time::{Duration, Instant};

/// Asks `check` until it answers `Ok`, backing off from 10 ms to 500 ms between asks.
pub async fn until<T, F, Fut>(what: &str, within: Duration, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, String>>,
{
    let started = Instant::now();
    let deadline = started + within;
    let mut pause = Duration::from_millis(10);
    loop {
        match check().await {
            Ok(value) => {
                if std::env::var_os("TEST_TIMING").is_some() {
                    eprintln!("waited {:.1?} for: {what}", started.elapsed());
                }
                return value;
            }
            Err(seen) => assert!(
                Instant::now() < deadline,
                "{what}: not within {within:?}; last seen: {seen}"
            ),
        }
        tokio::time::sleep(pause).await;
        pause = (pause * 2).min(Duration::from_millis(500));
    }
}

/// The same on a plain thread, for what is read from another thread (a process's log).
pub fn until_blocking<T>(
    what: &str,
    within: Duration,
    mut check: impl FnMut() -> Result<T, String>,
) -> T {
    let mut seen = String::new();
    let answer = until_blocking_or(within, || check().map_err(|last| seen = last).ok());
    answer.unwrap_or_else(|| panic!("{what}: not within {within:?}; last seen: {seen}"))
}

/// Asks `check` on this thread until it answers `Some`, at most `within`; `None` when it never
/// did, for a caller that must clean up before it fails.
pub fn until_blocking_or<T>(within: Duration, mut check: impl FnMut() -> Option<T>) -> Option<T> {
    let deadline = Instant::now() + within;
    loop {
        if let Some(value) = check() {
            return Some(value);
        }
        if Instant::now() >= deadline {
            return None;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}
