//! Readiness of a remote sink, remembered for a while so that frequent probes do not turn
//! into a stream of API calls (and a flapping probe does not flap the service).

use std::future::Future;
use std::time::Duration;

use tokio::sync::Mutex;
use tokio::time::Instant;

use super::SinkError;

pub struct CachedCheck {
    ttl: Duration,
    last: Mutex<Option<(Instant, Result<(), SinkError>)>>,
}

impl CachedCheck {
    pub fn new(ttl: Duration) -> Self {
        Self {
            ttl,
            last: Mutex::new(None),
        }
    }

    /// The cached result while fresh, otherwise runs `probe` (one at a time) and caches it.
    pub async fn get<F: Future<Output = Result<(), SinkError>>>(
        &self,
        probe: F,
    ) -> Result<(), SinkError> {
        let mut last = self.last.lock().await;
        if let Some((at, result)) = last.as_ref()
            && at.elapsed() < self.ttl
        {
            return result.clone();
        }
        let result = probe.await;
        *last = Some((Instant::now(), result.clone()));
        result
    }
}
