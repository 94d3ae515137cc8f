//! Readiness of a remote sink, remembered for a while so that frequent probes do not turn
//! into a stream of API calls (and a flapping probe does not flap the service).

use std::future::Future;
use std::time::Duration;

use tokio::sync::Mutex;
use tokio::time::Instant;

use super::SinkError;

/// How long one probe may take before the sink counts as unreachable.
const PROBE_TIMEOUT: Duration = Duration::from_secs(5);
/// How long a probe's answer is reused.
const TTL: Duration = Duration::from_secs(10);

pub struct CachedCheck {
    sink: &'static str,
    /// What a failure means, e.g. "bucket b is not reachable".
    failure: String,
    last: Mutex<Option<(Instant, Result<(), SinkError>)>>,
}

impl CachedCheck {
    pub fn new(sink: &'static str, failure: String) -> Self {
        Self {
            sink,
            failure,
            last: Mutex::new(None),
        }
    }

    /// The cached result while fresh, otherwise runs `probe` (one at a time, bounded by
    /// [`PROBE_TIMEOUT`]) and caches it.
    pub async fn get<F: Future<Output = anyhow::Result<()>>>(
        &self,
        probe: F,
    ) -> Result<(), SinkError> {
        let mut last = self.last.lock().await;
        if let Some((at, result)) = last.as_ref()
            && at.elapsed() < TTL
        {
            return result.clone();
        }
        let result = match tokio::time::timeout(PROBE_TIMEOUT, probe).await {
            Ok(result) => result,
            Err(_) => Err(anyhow::anyhow!("timed out after {PROBE_TIMEOUT:?}")),
        }
        .map_err(|e| SinkError::new(self.sink, &e.context(self.failure.clone())));
        *last = Some((Instant::now(), result.clone()));
        result
    }
}
