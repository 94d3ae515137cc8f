//! Group commit: concurrent requests queue their record, one worker per sink takes whatever
//! has queued (up to `max_events` and `max_bytes`, waiting at most `linger` for more), writes
//! it as one batch and answers each request with its own result. Under load the batches grow
//! by themselves, so the durable step's cost is shared instead of paid per event.

use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::{Semaphore, mpsc, oneshot};
use tokio::task::JoinHandle;
use tokio::time::timeout_at;

use super::{Entry, Sink, SinkError, Written};
use crate::telemetry::metrics::SinkMetrics;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BatchConfig {
    pub max_events: usize,
    /// Most payload bytes in one batch.
    pub max_bytes: usize,
    /// The longest a batch waits for more, from its first record.
    pub linger: Duration,
    /// A batch is also cut once nothing has joined it for this long. Pub/Sub keeps a window
    /// of pushes outstanding and sends more only as they are acknowledged: once that window
    /// has arrived nothing more comes, and waiting out the rest of `linger` would only slow
    /// every push down.
    pub idle: Option<Duration>,
}

impl BatchConfig {
    pub fn new(max_events: usize, linger: Duration) -> Self {
        Self {
            max_events,
            max_bytes: usize::MAX,
            linger,
            idle: None,
        }
    }
}

struct Job {
    entry: Entry,
    reply: oneshot::Sender<Result<Written, SinkError>>,
}

impl Job {
    /// What the job adds to a batch's bytes: its payload, and room for what goes around it.
    fn size(&self) -> usize {
        self.entry.record.delivery.data.len() + 256
    }
}

/// A handle that submits records to one sink's batching worker.
#[derive(Clone)]
pub struct GroupCommit {
    sink: &'static str,
    jobs: mpsc::Sender<Job>,
}

impl GroupCommit {
    /// Starts the worker, cutting batches as `config` says (the sink's
    /// [`Sink::batch_config`] or [`Sink::replay_lane`]). It runs until every handle is
    /// dropped, then finishes the batches it holds; await the returned task to know they are
    /// done.
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
        max_events: config.max_events.max(1),
        ..config
    };
    let slots = Arc::new(Semaphore::new(in_flight));
    let mut carried = None;
    loop {
        let first = match carried.take() {
            Some(job) => job,
            None => match rx.recv().await {
                Some(job) => job,
                None => break,
            },
        };
        let jobs = collect(first, &mut rx, &config, &mut carried).await;
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

/// A batch: `first`, then whatever comes before the linger ends or a limit is reached. A job
/// that would take the batch past `max_bytes` starts the next one instead.
async fn collect(
    first: Job,
    rx: &mut mpsc::Receiver<Job>,
    config: &BatchConfig,
    carried: &mut Option<Job>,
) -> Vec<Job> {
    let mut bytes = first.size();
    let mut jobs = vec![first];
    let deadline = tokio::time::Instant::now() + config.linger;
    while jobs.len() < config.max_events && bytes < config.max_bytes {
        let job = match rx.try_recv() {
            Ok(job) => job,
            Err(mpsc::error::TryRecvError::Disconnected) => break,
            Err(mpsc::error::TryRecvError::Empty) => {
                let until = match config.idle {
                    Some(idle) => deadline.min(tokio::time::Instant::now() + idle),
                    None => deadline,
                };
                match timeout_at(until, rx.recv()).await {
                    Ok(Some(job)) => job,
                    Ok(None) | Err(_) => break,
                }
            }
        };
        if bytes + job.size() > config.max_bytes {
            *carried = Some(job);
            break;
        }
        bytes += job.size();
        jobs.push(job);
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

    /// Submits records of `payload` in waves (how many, after how long a pause), waits for
    /// every answer, and returns the sizes of the batches the sink was given.
    async fn batches_of(config: BatchConfig, payload: &[u8], waves: &[(usize, u64)]) -> Vec<usize> {
        let sink = Arc::new(CountingSink(Mutex::new(Vec::new())));
        let metrics = SinkMetrics::detached();
        let (queue, worker) = GroupCommit::spawn(sink.clone(), config, metrics.clone());
        let mut submissions = Vec::new();
        for &(records, pause_ms) in waves {
            tokio::time::sleep(Duration::from_millis(pause_ms)).await;
            for _ in 0..records {
                let queue = queue.clone();
                let entry = Entry {
                    record: record(&submissions.len().to_string(), payload),
                    landing: None,
                };
                submissions.push(tokio::spawn(async move { queue.submit(entry).await }));
            }
        }
        for s in submissions {
            assert_eq!(s.await.unwrap(), Ok(Written::Created));
        }
        drop(queue);
        worker.await.unwrap();
        assert_eq!(metrics.batch_failed.get(), 0);
        sink.0.lock().unwrap().clone()
    }

    fn idle(idle: Option<u64>) -> BatchConfig {
        BatchConfig {
            idle: idle.map(Duration::from_millis),
            ..BatchConfig::new(100, Duration::from_secs(1))
        }
    }

    /// At most `max_bytes`, and a linger long enough for every record to join.
    fn bytes(max_bytes: usize) -> BatchConfig {
        BatchConfig {
            max_bytes,
            ..BatchConfig::new(100, Duration::from_millis(50))
        }
    }

    #[tokio::test(start_paused = true)]
    async fn concurrent_submissions_share_batches_capped_at_max_events() {
        let config = BatchConfig::new(4, Duration::from_millis(5));
        assert_eq!(batches_of(config, b"{}", &[(10, 0)]).await, vec![4, 4, 2]);
    }

    #[tokio::test(start_paused = true)]
    async fn a_batch_is_cut_once_nothing_has_joined_it_for_the_idle_time() {
        // Three records at once, then one 200 ms later, under a linger of a second.
        let burst_then_straggler = [(3, 0), (1, 200)];
        assert_eq!(
            batches_of(idle(Some(50)), b"{}", &burst_then_straggler).await,
            vec![3, 1]
        );
        assert_eq!(
            batches_of(idle(None), b"{}", &burst_then_straggler).await,
            vec![4],
            "without an idle time the linger is waited out"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_record_that_joins_within_the_idle_time_shares_the_batch() {
        assert_eq!(
            batches_of(idle(Some(50)), b"{}", &[(1, 0), (1, 20)]).await,
            vec![2]
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_batch_stops_before_it_would_pass_max_bytes() {
        // Each job is 1,000 bytes of payload and 256 of room: three fit in 4,000.
        let payload = vec![b' '; 1000];
        assert_eq!(
            batches_of(bytes(4_000), &payload, &[(7, 0)]).await,
            vec![3, 3, 1]
        );
    }

    #[tokio::test(start_paused = true)]
    async fn records_that_fill_max_bytes_exactly_share_a_batch() {
        // Two jobs of 1,000 bytes and 256 of room are 2,512 bytes: exactly the limit.
        let payload = vec![b' '; 1000];
        assert_eq!(
            batches_of(bytes(2_512), &payload, &[(4, 0)]).await,
            vec![2, 2]
        );
    }
}
