//! Group commit: concurrent requests queue their record, one worker per sink takes whatever
//! has queued (up to `max_events`, waiting at most `linger` for more), writes it as one batch
//! and answers each request with its own result. Under load the batches grow by themselves,
//! so the durable step's cost is shared instead of paid per event.

use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::{Semaphore, mpsc, oneshot};
use tokio::task::JoinHandle;
use tokio::time::timeout_at;

use super::{Entry, Sink, SinkError, Written};
use crate::telemetry::metrics::SinkMetrics;

#[derive(Debug, Clone, Copy)]
pub struct BatchConfig {
    pub max_events: usize,
    pub linger: Duration,
}

struct Job {
    entry: Entry,
    reply: oneshot::Sender<Result<Written, SinkError>>,
}

/// A handle that submits records to one sink's batching worker.
#[derive(Clone)]
pub struct GroupCommit {
    sink: &'static str,
    jobs: mpsc::Sender<Job>,
}

impl GroupCommit {
    /// Starts the worker. It runs until every handle is dropped, then finishes the batches it
    /// holds; await the returned task to know they are done.
    pub fn spawn(
        sink: Arc<dyn Sink>,
        config: BatchConfig,
        metrics: SinkMetrics,
    ) -> (Self, JoinHandle<()>) {
        let (jobs, rx) = mpsc::channel(config.max_events.max(1) * 4);
        let handle = GroupCommit {
            sink: sink.name(),
            jobs,
        };
        (handle, tokio::spawn(run(sink, config, metrics, rx)))
    }

    pub async fn submit(&self, entry: Entry) -> Result<Written, SinkError> {
        let stopped = || SinkError {
            sink: self.sink,
            message: "the sink's writer has stopped".into(),
        };
        let (reply, answer) = oneshot::channel();
        self.jobs
            .send(Job { entry, reply })
            .await
            .map_err(|_| stopped())?;
        answer.await.map_err(|_| stopped())?
    }
}

async fn run(
    sink: Arc<dyn Sink>,
    config: BatchConfig,
    metrics: SinkMetrics,
    mut rx: mpsc::Receiver<Job>,
) {
    let in_flight = sink.batches_in_flight().max(1);
    let config = BatchConfig {
        max_events: config.max_events.min(sink.max_batch_events()).max(1),
        ..config
    };
    let slots = Arc::new(Semaphore::new(in_flight));
    while let Some(first) = rx.recv().await {
        let jobs = collect(first, &mut rx, &config).await;
        let slot = slots
            .clone()
            .acquire_owned()
            .await
            .expect("the semaphore is never closed");
        let (sink, metrics) = (sink.clone(), metrics.clone());
        tokio::spawn(async move {
            write(sink.as_ref(), &metrics, jobs).await;
            drop(slot);
        });
    }
    // Every slot back means every batch taken from the queue has been answered.
    let _ = slots.acquire_many(in_flight as u32).await;
}

async fn collect(first: Job, rx: &mut mpsc::Receiver<Job>, config: &BatchConfig) -> Vec<Job> {
    let mut jobs = vec![first];
    let deadline = tokio::time::Instant::now() + config.linger;
    while jobs.len() < config.max_events {
        match rx.try_recv() {
            Ok(job) => jobs.push(job),
            Err(mpsc::error::TryRecvError::Disconnected) => break,
            Err(mpsc::error::TryRecvError::Empty) => match timeout_at(deadline, rx.recv()).await {
                Ok(Some(job)) => jobs.push(job),
                Ok(None) | Err(_) => break,
            },
        }
    }
    jobs
}

async fn write(sink: &dyn Sink, metrics: &SinkMetrics, jobs: Vec<Job>) {
    let (entries, replies): (Vec<Entry>, Vec<_>) =
        jobs.into_iter().map(|j| (j.entry, j.reply)).unzip();
    metrics.batch_size.observe(entries.len() as f64);
    let started = Instant::now();
    let results = sink.write(&entries).await;
    metrics
        .write_duration
        .observe(started.elapsed().as_secs_f64());
    debug_assert_eq!(
        results.len(),
        entries.len(),
        "{} broke the Sink contract",
        sink.name()
    );
    let mut failed = false;
    let mut results = results.into_iter();
    for reply in replies {
        let result = results.next().unwrap_or_else(|| {
            Err(SinkError {
                sink: sink.name(),
                message: "no result for this record".into(),
            })
        });
        match &result {
            Err(_) => failed = true,
            Ok(Written::Rejected(_)) => {
                metrics.row_rejected.inc();
            }
            Ok(_) => {}
        }
        // The request may have timed out and gone; its record is stored all the same.
        let _ = reply.send(result);
    }
    if failed {
        metrics.batch_failed.inc();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::testing::record;
    use async_trait::async_trait;
    use std::sync::Mutex;

    /// Records the size of each batch it is given; a test double for batching only.
    struct CountingSink(Mutex<Vec<usize>>);

    #[async_trait]
    impl Sink for CountingSink {
        fn name(&self) -> &'static str {
            "counting"
        }
        fn layer(&self) -> super::super::Layer {
            super::super::Layer::Landing
        }
        async fn write(&self, batch: &[Entry]) -> Vec<Result<Written, SinkError>> {
            self.0.lock().unwrap().push(batch.len());
            batch.iter().map(|_| Ok(Written::Created)).collect()
        }
        async fn check(&self) -> Result<(), SinkError> {
            Ok(())
        }
    }

    #[tokio::test(start_paused = true)]
    async fn concurrent_submissions_share_batches_capped_at_max_events() {
        let sink = Arc::new(CountingSink(Mutex::new(Vec::new())));
        let config = BatchConfig {
            max_events: 4,
            linger: Duration::from_millis(5),
        };
        let metrics = SinkMetrics::detached();
        let (queue, worker) = GroupCommit::spawn(sink.clone(), config, metrics.clone());
        let submissions: Vec<_> = (0..10)
            .map(|i| {
                let queue = queue.clone();
                let entry = Entry {
                    record: record(&i.to_string(), b"{}"),
                    landed_before: None,
                };
                tokio::spawn(async move { queue.submit(entry).await })
            })
            .collect();
        for s in submissions {
            assert_eq!(s.await.unwrap(), Ok(Written::Created));
        }
        drop(queue);
        worker.await.unwrap();
        assert_eq!(*sink.0.lock().unwrap(), vec![4, 4, 2]);
        assert_eq!(metrics.batch_failed.get(), 0);
    }
}
