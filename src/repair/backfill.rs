//! `landfall backfill`: each event in the landing layer is classified with the current
//! catalog and its row written where it is missing, naming the object it is in. The rows go
//! through the warehouse sinks as redeliveries (the object exists), so a row already there
//! is found and left alone: SQLite by its unique message id, BigQuery by the replay lookup.
//! An event the current catalog refuses is reported and left where it is.

use std::sync::Arc;

use futures::StreamExt;

use super::{Found, Run, Summary};
use crate::event::Outcome;
use crate::sink::{Fate, Probe, Receipt};

pub async fn chunk(run: &Run, chunk: &[Found], summary: &mut Summary) {
    let mut events = Vec::new();
    for found in chunk {
        summary.examined += 1;
        let record = run
            .classifier
            .classify(found.landed.delivery.clone(), found.landed.received_at);
        match &record.outcome {
            Outcome::DeadLetter { rule, reason, .. } => {
                tracing::warn!(message_id = record.message_id(), %reason, object = %found.uri, "the current catalog refuses this landed event; left as it is");
                summary.refused += 1;
                summary.broke(rule);
            }
            Outcome::Event { .. } => events.push((record, found.uri.clone())),
        }
    }
    if run.dry_run {
        let probes: Vec<Probe> = events.iter().map(|(r, _)| Probe::of(r)).collect();
        match run.sinks.find(&probes).await {
            Some(Ok(present)) => {
                let there = events
                    .iter()
                    .filter(|(r, _)| present.contains(r.message_id()))
                    .count();
                summary.already_present += there as u64;
                summary.landed += (events.len() - there) as u64;
            }
            Some(Err(e)) => {
                for (record, _) in &events {
                    summary.failure(Some(record.message_id()), &e.to_string());
                }
            }
            None => summary.landed += events.len() as u64,
        }
        return;
    }
    let writes = futures::stream::iter(events.into_iter().map(|(record, uri)| async move {
        let id = record.message_id().to_string();
        let receipt = Receipt {
            uri: Arc::from(uri),
            before: Some(true),
        };
        (id, run.sinks.warehouse(record, Some(receipt)).await)
    }))
    .buffer_unordered(run.concurrency);
    let results: Vec<_> = writes.collect().await;
    for (id, result) in results {
        match result {
            Ok(landed) => match landed.fate {
                Fate::Stored => summary.landed += 1,
                Fate::Duplicate | Fate::EarlierEvent => summary.already_present += 1,
                Fate::Rejected(reason) => {
                    tracing::warn!(message_id = %id, %reason, "the warehouse refuses this landed event; left as it is");
                    summary.refused += 1;
                    summary.broke("warehouse_rejected");
                }
            },
            Err(e) => summary.failure(Some(&id), &e.to_string()),
        }
    }
}
