//! `landfall redrive`: each dead letter is classified again; one that now passes lands as the
//! event it is, under its original message id and receipt time, through the same sinks as
//! `/push`. The dead-letter object stays as history; the curated `dead_letter` view stops
//! listing the message once its event row exists.
//!
//! In the `event` layout the event's object is create-only, so a second run finds it and the
//! replay lookup finds its row. The `batch` layout cannot find an earlier line, so the
//! warehouse is asked first which of the chunk's events it already holds.

use futures::StreamExt;

use super::{Found, Run, Summary};
use crate::event::Outcome;
use crate::landing::LayoutKind;
use crate::sink::{Fate, Probe};

pub async fn chunk(run: &Run, chunk: &[Found], summary: &mut Summary) {
    let mut events = Vec::new();
    for found in chunk {
        summary.examined += 1;
        let record = run
            .classifier
            .classify(found.landed.delivery.clone(), found.landed.received_at);
        match &record.outcome {
            Outcome::DeadLetter { rule, .. } => {
                summary.still_dead += 1;
                summary.broke(rule);
            }
            Outcome::Event { .. } => events.push(record),
        }
    }
    if events.is_empty() {
        return;
    }
    let must_ask = run.dry_run || run.reader.layout.kind == LayoutKind::Batch;
    if must_ask && run.sinks.has_warehouse() {
        let probes: Vec<Probe> = events.iter().map(|r| Probe::of(r)).collect();
        match run.sinks.find(&probes).await {
            Some(Ok(present)) => {
                let before = events.len();
                events.retain(|r| !present.contains(r.message_id()));
                summary.already_present += (before - events.len()) as u64;
            }
            Some(Err(e)) => {
                for record in &events {
                    summary.failure(Some(record.message_id()), &e.to_string());
                }
                return;
            }
            None => {}
        }
    }
    if run.dry_run {
        summary.landed += events.len() as u64;
        return;
    }
    let lands = futures::stream::iter(events.into_iter().map(|record| async move {
        let id = record.message_id().to_string();
        (id, run.sinks.land(record).await)
    }))
    .buffer_unordered(run.concurrency);
    let results: Vec<_> = lands.collect().await;
    for (id, result) in results {
        match result {
            Ok(landed) => match landed.fate {
                Fate::Stored => summary.landed += 1,
                Fate::Duplicate | Fate::EarlierEvent => summary.already_present += 1,
                Fate::Rejected(reason) => {
                    tracing::warn!(message_id = %id, %reason, "the warehouse refuses the redriven event; it stays a dead letter");
                    summary.still_dead += 1;
                    summary.broke("warehouse_rejected");
                }
            },
            Err(e) => summary.failure(Some(&id), &e.to_string()),
        }
    }
}
