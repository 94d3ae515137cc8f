//! A scripted sink for the tests of the sinks' fan-out and of the pipeline's decisions.

use std::collections::HashSet;
use std::sync::Arc;

use async_trait::async_trait;

use super::{Entry, Layer, Probe, Receipt, Sink, SinkError, Written};

/// A test double: answers every write with `answer` (dead letters with `dead_letters`, when
/// set), and keeps what the landing layer told it of each record it was given.
pub struct Scripted {
    name: &'static str,
    layer: Layer,
    answer: Result<Written, SinkError>,
    dead_letters: Option<Written>,
    finds: Option<HashSet<String>>,
    told: std::sync::Mutex<Vec<Option<bool>>>,
}

impl Scripted {
    pub fn landing(name: &'static str, uri: &str, before: Option<bool>) -> Arc<Self> {
        Arc::new(Self::new(name, Layer::Landing, Ok(receipt_at(uri, before))))
    }

    pub fn warehouse(name: &'static str, finds: Option<&[&str]>) -> Arc<Self> {
        let finds = finds.map(|ids| ids.iter().map(|id| id.to_string()).collect());
        Arc::new(Self {
            finds,
            ..Self::new(name, Layer::Warehouse, Ok(Written::Created))
        })
    }

    /// A sink of this layer whose every write fails.
    pub fn failing(name: &'static str, layer: Layer) -> Arc<Self> {
        let error = SinkError {
            sink: name,
            message: "down".into(),
        };
        Arc::new(Self::new(name, layer, Err(error)))
    }

    /// A warehouse that refuses every row for its content.
    pub fn refusing(name: &'static str, reason: &str) -> Arc<Self> {
        Arc::new(Self::rejecting(name, reason))
    }

    /// A warehouse that refuses every event's row and stores dead letters.
    pub fn refusing_events(name: &'static str, reason: &str) -> Arc<Self> {
        Arc::new(Self {
            dead_letters: Some(Written::Created),
            ..Self::rejecting(name, reason)
        })
    }

    fn rejecting(name: &'static str, reason: &str) -> Self {
        Self::new(name, Layer::Warehouse, Ok(Written::Rejected(reason.into())))
    }

    fn new(name: &'static str, layer: Layer, answer: Result<Written, SinkError>) -> Self {
        Scripted {
            name,
            layer,
            answer,
            dead_letters: None,
            finds: None,
            told: Default::default(),
        }
    }

    pub fn told(&self) -> Vec<Option<bool>> {
        self.told.lock().unwrap().clone()
    }
}

#[async_trait]
impl Sink for Scripted {
    fn name(&self) -> &'static str {
        self.name
    }

    fn layer(&self) -> Layer {
        self.layer
    }

    async fn write(&self, batch: &[Entry]) -> Vec<Result<Written, SinkError>> {
        let mut told = self.told.lock().unwrap();
        told.extend(batch.iter().map(Entry::landed_before));
        let answer = |entry: &Entry| match &self.dead_letters {
            Some(written) if entry.record.is_dead_letter() => Ok(written.clone()),
            _ => self.answer.clone(),
        };
        batch.iter().map(answer).collect()
    }

    async fn check(&self) -> Result<(), SinkError> {
        Ok(())
    }

    async fn find(&self, _: &[Probe]) -> Option<Result<HashSet<String>, SinkError>> {
        self.finds.clone().map(Ok)
    }
}

fn receipt_at(uri: &str, before: Option<bool>) -> Written {
    Written::Landed(Receipt {
        uri: uri.into(),
        before,
    })
}
