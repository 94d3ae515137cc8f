//! `landfall redrive` and `landfall backfill`: the sink and catalog flags of `serve`, a time
//! range and how to report; resolved into [`crate::repair::RepairConfig`].

use std::time::Duration;

use chrono::{DateTime, Utc};
use clap::{Args, ValueEnum};

use super::args::{LogArgs, SinkArgs, at_least_one, checked};
use super::{ConfigErrors, Given};
use crate::landing::reader::Range;
use crate::pipeline::PipelineConfig;
use crate::repair::{Output, RepairConfig, Shard};
use crate::time::parse_timestamp;

#[derive(Debug, Clone, Args)]
pub struct RepairArgs {
    #[command(flatten)]
    pub sinks: SinkArgs,
    #[command(flatten)]
    pub range: RangeArgs,
    #[command(flatten)]
    pub run: RunArgs,
    #[command(flatten)]
    pub shard: ShardArgs,
    #[command(flatten)]
    pub logging: LogArgs,
}

#[derive(Debug, Clone, Args)]
pub struct BackfillArgs {
    #[command(flatten)]
    pub repair: RepairArgs,
    /// Only these event types (comma-separated); every type of the catalog by default.
    #[arg(
        long,
        env = "LANDFALL_TYPES",
        value_delimiter = ',',
        help_heading = "Repair"
    )]
    pub types: Vec<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum OutputFormat {
    Text,
    Json,
}

#[derive(Debug, Clone, Args)]
#[command(next_help_heading = "Repair")]
pub struct RangeArgs {
    /// The first minute folder to read (RFC 3339; the landing layout's time); from the start by default.
    #[arg(long)]
    pub since: Option<String>,
    /// The minute folder to stop before (RFC 3339); to the end by default.
    #[arg(long)]
    pub until: Option<String>,
}

/// How one run goes: whether it writes, how it reports, how much it does at once.
#[derive(Debug, Clone, Args)]
#[command(next_help_heading = "Repair")]
pub struct RunArgs {
    /// Read and classify, and write nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// `json`: the last line of stdout is the summary as one JSON object.
    #[arg(long, value_enum, default_value_t = OutputFormat::Text)]
    pub output: OutputFormat,
    /// Records being written at once.
    #[arg(long, env = "LANDFALL_REPAIR_CONCURRENCY", default_value_t = 256)]
    pub concurrency: usize,
    /// Deadline for one write, retries included.
    #[arg(long, env = "LANDFALL_REQUEST_TIMEOUT_SECS", default_value_t = 30)]
    pub request_timeout_secs: u64,
}

/// This run's share of the work when several tasks split it.
#[derive(Debug, Clone, Args)]
#[command(next_help_heading = "Repair")]
pub struct ShardArgs {
    /// This task's share when run as several (a Cloud Run job with `--tasks N` sets it).
    #[arg(long, env = "CLOUD_RUN_TASK_INDEX", default_value_t = 0)]
    pub task_index: u32,
    /// How many tasks share the work.
    #[arg(long, env = "CLOUD_RUN_TASK_COUNT", default_value_t = 1)]
    pub task_count: u32,
}

fn time(flag: &str, text: &Option<String>, problems: &mut Vec<String>) -> Option<DateTime<Utc>> {
    let text = text.as_ref()?;
    let parsed = parse_timestamp(text);
    if parsed.is_none() {
        problems.push(format!(
            "{flag} {text:?} is not an RFC 3339 timestamp (e.g. 2026-11-25T09:00:00Z)"
        ));
    }
    parsed
}

impl RangeArgs {
    fn resolve(&self, problems: &mut Vec<String>) -> Range {
        let since = time(&setting!(RangeArgs, since), &self.since, problems);
        let until = time(&setting!(RangeArgs, until), &self.until, problems);
        if let (Some(since), Some(until)) = (since, until)
            && since >= until
        {
            problems.push(format!(
                "{} must be before {}",
                setting!(RangeArgs, since),
                setting!(RangeArgs, until)
            ));
        }
        Range { since, until }
    }
}

impl RepairArgs {
    pub fn resolve(self, given: &Given) -> Result<RepairConfig, ConfigErrors> {
        self.resolve_with(given, Vec::new())
    }

    fn resolve_with(self, given: &Given, types: Vec<String>) -> Result<RepairConfig, ConfigErrors> {
        let mut problems = Vec::new();
        let mut warnings = Vec::new();
        let (run, shard) = (&self.run, &self.shard);
        at_least_one(
            &mut problems,
            &[
                (run.concurrency, setting!(RunArgs, concurrency)),
                (shard.task_count as usize, setting!(ShardArgs, task_count)),
                (
                    run.request_timeout_secs as usize,
                    setting!(RunArgs, request_timeout_secs),
                ),
            ],
        );
        if shard.task_index >= shard.task_count.max(1) {
            problems.push(format!(
                "{} {} must be below {} {}",
                setting!(ShardArgs, task_index),
                shard.task_index,
                setting!(ShardArgs, task_count),
                shard.task_count
            ));
        }
        let range = self.range.resolve(&mut problems);
        let deadline = Duration::from_secs(run.request_timeout_secs);
        let sinks = self
            .sinks
            .resolve(deadline, given, &mut problems, &mut warnings);
        let routing = self.sinks.routing.routing(&mut problems);
        let config = RepairConfig {
            pipeline: PipelineConfig {
                catalog: self.sinks.catalog.source(),
                routing,
                sinks,
            },
            range,
            dry_run: run.dry_run,
            output: match run.output {
                OutputFormat::Text => Output::Text,
                OutputFormat::Json => Output::Json,
            },
            concurrency: run.concurrency,
            shard: Shard {
                index: shard.task_index,
                count: shard.task_count.max(1),
            },
            types,
            log_format: self.logging.log_format,
            warnings,
        };
        checked(config, problems)
    }
}

impl BackfillArgs {
    pub fn resolve(self, given: &Given) -> Result<RepairConfig, ConfigErrors> {
        let types = self
            .types
            .iter()
            .map(|t| t.trim().to_string())
            .filter(|t| !t.is_empty())
            .collect();
        self.repair.resolve_with(given, types)
    }
}
