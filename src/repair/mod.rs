//! Repair from the landing layer: `landfall redrive` and `landfall backfill`.
//!
//! Both read the landing layer back hour folder by hour folder ([`crate::landing::reader`]:
//! a range never lists the whole bucket), classify each message again with the current
//! catalog and hand it to the same [`Pipeline`] as `/push`: one pipeline, never a second copy
//! of its rules. Both are idempotent: what is already there is found (create-only objects,
//! unique rows, the replay lookup), so a second run writes nothing and a run that failed
//! part-way is finished by running it again.
//!
//! - redrive: dead letters that now pass land as events, under their original message id and
//!   receipt time; those still refused stay where they are.
//! - backfill: events whose warehouse row is missing get it, naming the object it is in.
//!
//! A refusal by a warehouse is what it is for `/push`: the message is dead-lettered.

mod progress;
mod summary;

use std::sync::Arc;

use futures::StreamExt;

pub use summary::Summary;

use crate::landing::layout::DEAD_LETTER_FOLDER;
use crate::landing::reader::{Found, Range, first_copies};
use crate::landing::{LayoutKind, Reader};
use crate::pipeline::{Handling, Pipeline, PipelineConfig};
use crate::sink::{Access, Probe, Unusable};
use crate::telemetry::LogFormat;
use crate::telemetry::metrics::Metrics;
use crate::telemetry::said::said;
use progress::Progress;

/// Everything a repair run needs, validated (by [`crate::config`]).
#[derive(Debug, Clone)]
pub struct RepairConfig {
    pub pipeline: PipelineConfig,
    /// The minute folders read: those that overlap the range.
    pub range: Range,
    pub dry_run: bool,
    pub output: Output,
    /// Records being written at once.
    pub concurrency: usize,
    pub shard: Shard,
    /// Backfill: the event types to read; every type of the catalog when empty.
    pub types: Vec<String>,
    pub log_format: LogFormat,
    pub warnings: Vec<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Output {
    Text,
    Json,
}

/// One task's share of the objects, when several tasks run the same repair (a Cloud Run job
/// with `--tasks N`): disjoint, and together all of them, with no coordination.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Shard {
    pub index: u32,
    pub count: u32,
}

impl Shard {
    pub fn takes(&self, object: &str) -> bool {
        crc32fast::hash(object.as_bytes()) % self.count == self.index
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Redrive,
    Backfill,
}

impl Kind {
    fn name(self) -> &'static str {
        match self {
            Kind::Redrive => "redrive",
            Kind::Backfill => "backfill",
        }
    }
}

/// What a run works with.
struct Run<'a> {
    kind: Kind,
    pipeline: &'a Pipeline,
    reader: &'a Reader,
    config: &'a RepairConfig,
}

/// Runs one repair over the configured range; the summary says what it did.
pub async fn run(kind: Kind, config: RepairConfig) -> anyhow::Result<Summary> {
    for warning in &config.warnings {
        tracing::warn!("{warning}");
    }
    let access = match config.dry_run {
        true => Access::ReadOnly,
        false => Access::Repair,
    };
    let metrics = Arc::new(Metrics::new(config.pipeline.sinks.deadline, false));
    let catalog = crate::schema::Catalog::load(&config.pipeline.catalog)?;
    let kinds = kinds(kind, &config, &catalog)?;
    let (pipeline, writers) = Pipeline::build(&config.pipeline, metrics, access).await?;
    // The landing layer is read where rows say it is: the first store.
    let reader = pipeline.reader().ok_or_else(|| {
        Unusable(
            "repair reads the landing layer: configure --gcs-bucket or the embedded sinks".into(),
        )
    })?;
    if kind == Kind::Backfill && !pipeline.has_warehouse() {
        return Err(Unusable(
            "backfill writes warehouse rows: configure --bigquery-project or the embedded sinks"
                .into(),
        )
        .into());
    }
    let run = Run {
        kind,
        pipeline: &pipeline,
        reader,
        config: &config,
    };
    let hours = reader.hours(&kinds, config.range).await?;
    let mut summary = Summary::new(kind.name(), config.dry_run, config.shard);
    let progress = Progress::new(kind.name(), hours.len());
    for hour in hours {
        repair_folder(&run, &hour, &mut summary).await;
        progress.folder_done(&summary);
    }
    progress.finish(&summary);
    // Every record is answered; let the writers finish before the process ends.
    drop(pipeline);
    writers.finish(std::time::Duration::MAX).await;
    Ok(summary)
}

/// The folders a run reads: the dead letter's for redrive, the event types' for backfill.
fn kinds(
    kind: Kind,
    config: &RepairConfig,
    catalog: &crate::schema::Catalog,
) -> anyhow::Result<Vec<String>> {
    let known = catalog.names();
    if let Some(unknown) = config.types.iter().find(|t| !known.contains(&t.as_str())) {
        return Err(Unusable(format!(
            "the catalog has no event type {unknown:?} (it has {})",
            known.join(", ")
        ))
        .into());
    }
    Ok(match kind {
        Kind::Redrive => vec![DEAD_LETTER_FOLDER.to_string()],
        Kind::Backfill if config.types.is_empty() => {
            known.into_iter().map(str::to_string).collect()
        }
        Kind::Backfill => config.types.clone(),
    })
}

/// Every object of one hour folder in range and in this task's share.
async fn repair_folder(run: &Run<'_>, hour: &str, summary: &mut Summary) {
    let shard = run.config.shard;
    let mut objects = Vec::new();
    for object in run
        .reader
        .objects(hour, run.config.range, |name| shard.takes(name))
        .await
    {
        match object {
            Ok(object) => objects.push(object),
            Err(e) => summary.failure(None, &said(&e)),
        }
    }
    let reads = futures::stream::iter(objects.into_iter().map(|(listed, named)| async move {
        let read = run.reader.messages(&listed, &named).await;
        (listed, read)
    }))
    .buffered(16);
    let reads: Vec<_> = reads.collect().await;
    let mut found = Vec::new();
    for (listed, read) in reads {
        summary.objects += 1;
        match read {
            Ok(messages) => found.extend(messages),
            Err(e) => summary.failure(
                None,
                &format!("{}: {}", run.reader.uri(&listed.name), said(&e)),
            ),
        }
    }
    summary.repeated += first_copies(&mut found);
    for chunk in found.chunks(500) {
        repair_chunk(run, chunk, summary).await;
    }
}

/// Classifies a chunk again and writes what is to be written: the events a dead letter now
/// is (redrive), the rows of landed events (backfill).
async fn repair_chunk(run: &Run<'_>, chunk: &[Found], summary: &mut Summary) {
    let mut events = Vec::new();
    for found in chunk {
        summary.examined += 1;
        let message = &found.message;
        let record = run
            .pipeline
            .classify(message.delivery.clone(), message.received_at);
        match record.rule() {
            Some(rule) => {
                if run.kind == Kind::Backfill {
                    tracing::warn!(message_id = record.message_id(), reason = record.reason(), object = %found.uri, "the current catalog refuses this landed event; left as it is");
                }
                summary.not_written(rule);
            }
            None => events.push((record, found.uri.clone())),
        }
    }
    // Asked first where writing could not tell: a dry run writes nothing, and the batch
    // layout holds no record of an earlier delivery that a redrive would find.
    let must_ask = run.config.dry_run
        || (run.kind == Kind::Redrive && run.reader.layout.kind == LayoutKind::Batch);
    if must_ask && !events.is_empty() {
        let probes: Vec<Probe> = events.iter().map(|(r, _)| Probe::of(r)).collect();
        match run.pipeline.find(&probes).await {
            Some(Ok(present)) => {
                let before = events.len();
                events.retain(|(r, _)| !present.contains(r.message_id()));
                summary.already_present += (before - events.len()) as u64;
            }
            Some(Err(e)) => {
                for (record, _) in &events {
                    summary.failure(Some(record.message_id()), &e.to_string());
                }
                return;
            }
            None => {}
        }
    }
    if run.config.dry_run {
        summary.landed += events.len() as u64;
        return;
    }
    let writes = futures::stream::iter(events.into_iter().map(|(record, uri)| async move {
        let id = record.message_id().to_string();
        let handled = match run.kind {
            Kind::Redrive => run.pipeline.land(record).await,
            Kind::Backfill => run.pipeline.restore(record, uri).await,
        };
        (id, handled)
    }))
    .buffer_unordered(run.config.concurrency);
    let results: Vec<_> = writes.collect().await;
    for (id, handled) in results {
        match handled {
            // A warehouse refused the event: it is a dead letter, as it would be for /push.
            Ok(handled) if handled.record.rule().is_some() => {
                tracing::warn!(message_id = %id, reason = handled.record.reason(), "the warehouse refuses this event; it is dead-lettered");
                summary.not_written(handled.record.rule().unwrap_or_default());
            }
            Ok(handled) => match handled.handling {
                Handling::Stored => summary.landed += 1,
                Handling::Duplicate | Handling::EarlierEvent => summary.already_present += 1,
            },
            Err(e) => summary.failure(Some(&id), &e.to_string()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shards_are_disjoint_and_cover_every_object() {
        let names: Vec<String> = (0..3000)
            .map(|i| format!("output/order/2026/11/25/10/00/o_{i}.json"))
            .collect();
        let shards: Vec<Shard> = (0..3).map(|index| Shard { index, count: 3 }).collect();
        for name in &names {
            let takers = shards.iter().filter(|s| s.takes(name)).count();
            assert_eq!(takers, 1, "{name}");
        }
        let first = names.iter().filter(|n| shards[0].takes(n)).count();
        assert!((800..1200).contains(&first), "an even share: {first}");
    }
}
