//! Repair from the landing layer: `landfall redrive` and `landfall backfill`.
//!
//! Both read the landing layer back (by kind and time folder, so a range never lists the
//! whole bucket), classify each message again with the current catalog through the same
//! [`Classifier`] as `/push`, and write through the same [`Sinks`]: one pipeline, never a
//! second copy. Both are idempotent: what is already there is found (create-only objects,
//! unique rows, the replay lookup), so a second run writes nothing and a run that failed
//! part-way is finished by running it again.
//!
//! - [`redrive`]: dead letters that now pass land as events under their original message id.
//! - [`backfill`]: events whose warehouse row is missing get it.

mod backfill;
mod folders;
mod progress;
mod redrive;
mod summary;

use std::collections::HashSet;
use std::sync::Arc;

use anyhow::Context;
use chrono::{DateTime, Utc};
use futures::StreamExt;

pub use summary::Summary;

use crate::event::Classifier;
use crate::event::route::Routing;
use crate::landing::format::{self, Landed};
use crate::landing::layout::{DEAD_LETTER_FOLDER, Named};
use crate::landing::{LayoutKind, Listed, Reader};
use crate::schema::{Catalog, CatalogSource};
use crate::sink::Sinks;
use crate::startup::{self, SinkConfig};
use crate::telemetry::LogFormat;
use crate::telemetry::metrics::Metrics;
use progress::Progress;

/// Everything a repair run needs, validated (by [`crate::config`]).
#[derive(Debug, Clone)]
pub struct RepairConfig {
    pub catalog: CatalogSource,
    pub routing: Routing,
    pub sinks: SinkConfig,
    /// The minute folders read: those that overlap `[since, until)`.
    pub since: Option<DateTime<Utc>>,
    pub until: Option<DateTime<Utc>>,
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

/// What a run works with: the current catalog and the configured sinks, as `/push` has them.
pub(crate) struct Run {
    pub classifier: Classifier,
    pub sinks: Sinks,
    pub reader: Reader,
    pub dry_run: bool,
    pub concurrency: usize,
}

/// A message read back, with the object that holds it.
pub(crate) struct Found {
    pub landed: Landed,
    pub uri: String,
}

/// Runs one repair over the configured range; the summary says what it did.
pub async fn run(kind: Kind, config: RepairConfig) -> anyhow::Result<Summary> {
    for warning in &config.warnings {
        tracing::warn!("{warning}");
    }
    let catalog = Arc::new(Catalog::load(&config.catalog)?);
    let metrics = Metrics::disabled(config.sinks.deadline);
    let set = startup::build_sinks(&config.sinks, &catalog, &metrics).await?;
    // The landing layer is read where rows say it is: the first store.
    let store =
        set.stores.first().cloned().context(
            "repair reads the landing layer: configure --gcs-bucket or the embedded sinks",
        )?;
    let (sinks, writers) = startup::start_writers(set, config.sinks.batch, &metrics);
    if kind == Kind::Backfill && !sinks.has_warehouse() {
        anyhow::bail!(
            "backfill writes warehouse rows: configure --bigquery-project or the embedded sinks"
        );
    }
    let run = Run {
        classifier: Classifier {
            catalog: catalog.clone(),
            routing: config.routing.clone(),
            partition: config.sinks.landing.partition,
        },
        sinks,
        reader: Reader {
            layout: config.sinks.landing.clone(),
            store,
        },
        dry_run: config.dry_run,
        concurrency: config.concurrency,
    };
    let kinds = match kind {
        Kind::Redrive => vec![DEAD_LETTER_FOLDER.to_string()],
        Kind::Backfill if config.types.is_empty() => {
            catalog.names().into_iter().map(str::to_string).collect()
        }
        Kind::Backfill => config.types.clone(),
    };
    let hours = folders::hours(&run.reader, &kinds, config.since, config.until).await?;
    let mut summary = Summary::new(kind.name(), config.dry_run, config.shard);
    let progress = Progress::new(kind.name(), hours.len());
    for hour in hours {
        repair_folder(kind, &run, &config, &hour, &mut summary).await;
        progress.folder_done(&summary);
    }
    progress.finish(&summary);
    // Every record is answered; let the writers finish before the process ends.
    drop(run);
    futures::future::join_all(writers).await;
    Ok(summary)
}

/// Every object of one hour folder in range and in this task's share.
async fn repair_folder(
    kind: Kind,
    run: &Run,
    config: &RepairConfig,
    hour: &str,
    summary: &mut Summary,
) {
    let listed: Vec<anyhow::Result<Listed>> =
        run.reader.store.list(hour.to_string()).collect().await;
    let mut objects = Vec::new();
    for item in listed {
        match item {
            Ok(listed) => {
                let in_range = run.reader.layout.parse(&listed.name).filter(|named| {
                    folders::minute_in_range(named.minute, config.since, config.until)
                });
                if let Some(named) = in_range
                    && config.shard.takes(&listed.name)
                {
                    objects.push((listed, named));
                }
            }
            Err(e) => summary.failure(None, &format!("listing {hour} failed: {e:#}")),
        }
    }
    let reads = futures::stream::iter(objects.into_iter().map(|(listed, named)| async move {
        let read = read(run, &listed, &named).await;
        (listed, read)
    }))
    .buffered(16);
    let reads: Vec<_> = reads.collect().await;
    let mut found = Vec::new();
    for (listed, read) in reads {
        summary.objects += 1;
        match read {
            Ok(messages) => {
                let uri = run.reader.uri(&listed.name);
                found.extend(messages.into_iter().map(|landed| Found {
                    landed,
                    uri: uri.clone(),
                }));
            }
            Err(e) => summary.failure(None, &format!("{}: {e:#}", run.reader.uri(&listed.name))),
        }
    }
    let found = first_copies(found, summary);
    for chunk in found.chunks(500) {
        match kind {
            Kind::Redrive => redrive::chunk(run, chunk, summary).await,
            Kind::Backfill => backfill::chunk(run, chunk, summary).await,
        }
    }
}

/// In the batch layout a redelivery is a second line, and always in the same folder as the
/// first (the same time partitions both). Only the earliest received copy goes on, so that a
/// run writes a message once and a dry run counts what a run would write.
fn first_copies(mut found: Vec<Found>, summary: &mut Summary) -> Vec<Found> {
    found.sort_by_key(|f| f.landed.received_at);
    let mut seen = HashSet::new();
    found.retain(|f| {
        let first = seen.insert(f.landed.delivery.message_id.clone());
        if !first {
            summary.repeated += 1;
        }
        first
    });
    found
}

/// The messages one object holds.
async fn read(run: &Run, listed: &Listed, named: &Named) -> anyhow::Result<Vec<Landed>> {
    let body = run
        .reader
        .store
        .read(&listed.name)
        .await?
        .context("the object vanished while it was read")?;
    match (run.reader.layout.kind, &named.message_id) {
        (LayoutKind::Batch, _) => format::read_lines(&body),
        (LayoutKind::Event, _) if named.kind == DEAD_LETTER_FOLDER => {
            Ok(vec![format::read_dead_letter(&body)?])
        }
        (LayoutKind::Event, Some(id)) => Ok(vec![format::read_event_object(
            id,
            &named.kind,
            body,
            &listed.metadata,
            listed.created,
        )]),
        (LayoutKind::Event, None) => anyhow::bail!("not an object of the event layout"),
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
