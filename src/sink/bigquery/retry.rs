//! Which BigQuery failures are worth retrying, and retrying them only while the push request
//! can still be answered: past its deadline Pub/Sub has given up and will redeliver anyway.
//! Pauses grow exponentially with full jitter (as Vector's retry logic does).

use std::future::Future;
use std::time::Duration;

use gcp_bigquery_client::error::BQError;
use tokio::time::Instant;

const FIRST_BACKOFF: Duration = Duration::from_millis(100);
const MAX_BACKOFF: Duration = Duration::from_secs(2);

/// 408, 429 and 5xx, and failures to reach the service, may succeed on a second try; any
/// other answer would be the same again.
pub fn is_transient(error: &BQError) -> bool {
    match error {
        BQError::RequestError(_) => true,
        BQError::ResponseError { error } => {
            matches!(error.error.code, 408 | 429) || (500..600).contains(&error.error.code)
        }
        _ => false,
    }
}

/// 404: the dataset, table or view is not there (yet), which `schema apply` creates rather
/// than retries.
pub fn is_not_found(error: &BQError) -> bool {
    matches!(error, BQError::ResponseError { error } if error.error.code == 404)
}

/// Runs `attempt` until it succeeds, fails for good, or the deadline leaves no room for
/// another try (each try is itself cut off at the deadline).
pub async fn within<T, F, Fut>(deadline: Duration, mut attempt: F) -> anyhow::Result<T>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, BQError>>,
{
    let deadline = Instant::now() + deadline;
    let mut backoff = FIRST_BACKOFF;
    loop {
        let error = match tokio::time::timeout_at(deadline, attempt()).await {
            Ok(Ok(value)) => return Ok(value),
            Ok(Err(error)) => error,
            Err(_) => anyhow::bail!("no answer before the request deadline"),
        };
        // Full jitter: many instances retrying one overloaded API do not retry in step.
        let pause = backoff.mul_f64(fastrand::f64());
        if !is_transient(&error) || Instant::now() + pause >= deadline {
            return Err(anyhow::Error::from(error));
        }
        tracing::debug!(error = %error, pause_ms = pause.as_millis() as u64, "retrying BigQuery call");
        tokio::time::sleep(pause).await;
        backoff = (backoff * 2).min(MAX_BACKOFF);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicU32, Ordering};

    fn response_error(code: i64) -> BQError {
        let error = serde_json::from_value(serde_json::json!({
            "error": {"code": code, "errors": [], "message": "m", "status": ""}
        }))
        .unwrap();
        BQError::ResponseError { error }
    }

    #[test]
    fn only_timeouts_throttling_and_server_errors_are_transient() {
        for code in [408, 429, 500, 503] {
            assert!(is_transient(&response_error(code)), "{code}");
        }
        for code in [400, 403, 404] {
            assert!(!is_transient(&response_error(code)), "{code}");
        }
    }

    #[tokio::test(start_paused = true)]
    async fn transient_errors_are_retried_until_success() {
        let tries = AtomicU32::new(0);
        let result = within(Duration::from_secs(10), || {
            let n = tries.fetch_add(1, Ordering::SeqCst);
            async move {
                if n < 3 {
                    Err(response_error(503))
                } else {
                    Ok(n)
                }
            }
        })
        .await;
        assert_eq!(result.unwrap(), 3);
    }

    #[tokio::test(start_paused = true)]
    async fn permanent_errors_and_exhausted_deadlines_stop_the_retries() {
        let tries = AtomicU32::new(0);
        let permanent = within(Duration::from_secs(10), || {
            tries.fetch_add(1, Ordering::SeqCst);
            async { Err::<(), _>(response_error(404)) }
        })
        .await;
        assert!(permanent.is_err());
        assert_eq!(tries.load(Ordering::SeqCst), 1);

        tries.store(0, Ordering::SeqCst);
        let started = Instant::now();
        let storm = within(Duration::from_secs(1), || {
            tries.fetch_add(1, Ordering::SeqCst);
            async { Err::<(), _>(response_error(503)) }
        })
        .await;
        assert!(storm.is_err());
        // Jittered pauses are at most 100, 200, 400 ms…: at least four tries fit in a second,
        // and the last answer comes before it ends.
        assert!(tries.load(Ordering::SeqCst) >= 4);
        assert!(started.elapsed() < Duration::from_secs(1));
    }
}
