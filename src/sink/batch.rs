//! Group commit: concurrent requests queue their record, one worker per sink takes
//! whatever has queued (up to `max_events`, waiting at most `linger` for more), writes it as
//! one batch and answers each request with its own result. Under load the batches grow by
//! themselves, so the durable step's cost is shared instead of paid per event.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{Semaphore, mpsc, oneshot};
use tokio::task::JoinHandle;
use tokio::time::{Instant, timeout_at};

use super::{Sink, SinkError, Written};
use crate::event::Record;

#[derive(Debug, Clone, Copy)]
pub struct BatchConfig {
    pub max_events: usize,
    pub linger: Duration,
}

struct Job {
    record: Arc<Record>,
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
    pub fn spawn(sink: Arc<dyn Sink>, config: BatchConfig) -> (Self, JoinHandle<()>) {
        let (jobs, rx) = mpsc::channel(config.max_events.max(1) * 4);
        let handle = GroupCommit {
            sink: sink.name(),
            jobs,
        };
        (handle, tokio::spawn(run(sink, config, rx)))
    }

    pub async fn submit(&self, record: Arc<Record>) -> Result<Written, SinkError> {
        let stopped = || SinkError {
            sink: self.sink,
            message: "the sink's writer has stopped".into(),
        };
        let (reply, answer) = oneshot::channel();
        self.jobs
            .send(Job { record, reply })
            .await
            .map_err(|_| stopped())?;
        answer.await.map_err(|_| stopped())?
    }
}

async fn run(sink: Arc<dyn Sink>, config: BatchConfig, mut rx: mpsc::Receiver<Job>) {
    let in_flight = sink.batches_in_flight().max(1);
    let slots = Arc::new(Semaphore::new(in_flight));
    while let Some(first) = rx.recv().await {
        let jobs = collect(first, &mut rx, &config).await;
        let slot = slots
            .clone()
            .acquire_owned()
            .await
            .expect("the semaphore is never closed");
        let sink = sink.clone();
        tokio::spawn(async move {
            write(sink.as_ref(), jobs).await;
            drop(slot);
        });
    }
    // Every slot back means every batch taken from the queue has been answered.
    let _ = slots.acquire_many(in_flight as u32).await;
}

async fn collect(first: Job, rx: &mut mpsc::Receiver<Job>, config: &BatchConfig) -> Vec<Job> {
    let mut jobs = vec![first];
    let deadline = Instant::now() + config.linger;
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

async fn write(sink: &dyn Sink, jobs: Vec<Job>) {
    let records: Vec<Arc<Record>> = jobs.iter().map(|j| j.record.clone()).collect();
    let results = sink.write(&records).await;
    debug_assert_eq!(
        results.len(),
        jobs.len(),
        "{} broke the Sink contract",
        sink.name()
    );
    let mut results = results.into_iter();
    for job in jobs {
        let result = results.next().unwrap_or_else(|| {
            Err(SinkError {
                sink: sink.name(),
                message: "no result for this record".into(),
            })
        });
        // The request may have timed out and gone; its record is stored all the same.
        let _ = job.reply.send(result);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::envelope::Delivery;
    use crate::event::{Landing, PartitionTime, classify};
    use async_trait::async_trait;
    use std::sync::Mutex;

    /// Records the size of each batch it is given; a test double for batching only.
    struct CountingSink(Mutex<Vec<usize>>);

    #[async_trait]
    impl Sink for CountingSink {
        fn name(&self) -> &'static str {
            "counting"
        }
        async fn write(&self, batch: &[Arc<Record>]) -> Vec<Result<Written, SinkError>> {
            self.0.lock().unwrap().push(batch.len());
            batch.iter().map(|_| Ok(Written::Created)).collect()
        }
        async fn check(&self) -> Result<(), SinkError> {
            Ok(())
        }
    }

    fn record(id: usize) -> Arc<Record> {
        let delivery = Delivery {
            message_id: id.to_string(),
            publish_time: chrono::Utc::now(),
            subscription: None,
            attributes: Default::default(),
            ordering_key: None,
            delivery_attempt: None,
            data: bytes::Bytes::from_static(b"{}"),
        };
        let landing = Landing {
            base_uri: Some("file:///x".into()),
            prefix: "p".into(),
            partition: PartitionTime::Publish,
        };
        classify(&delivery, chrono::Utc::now(), &landing)
    }

    #[tokio::test(start_paused = true)]
    async fn concurrent_submissions_share_batches_capped_at_max_events() {
        let sink = Arc::new(CountingSink(Mutex::new(Vec::new())));
        let config = BatchConfig {
            max_events: 4,
            linger: Duration::from_millis(5),
        };
        let (queue, worker) = GroupCommit::spawn(sink.clone(), config);
        let submissions: Vec<_> = (0..10)
            .map(|i| {
                let queue = queue.clone();
                tokio::spawn(async move { queue.submit(record(i)).await })
            })
            .collect();
        for s in submissions {
            assert_eq!(s.await.unwrap(), Ok(Written::Created));
        }
        drop(queue);
        worker.await.unwrap();
        assert_eq!(*sink.0.lock().unwrap(), vec![4, 4, 2]);
    }
}
