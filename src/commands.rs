//! The commands beside `serve`: `landfall schema check | print | apply` (the catalog and its
//! tables), and `landfall redrive | backfill` (repair from the landing layer).

use anyhow::Context;

use crate::config::{ApplyArgs, CatalogArgs, CheckArgs, PrintArgs, SchemaCommand};
use crate::repair::{self, Kind, Output, RepairConfig};
use crate::schema::{Catalog, bigquery};
use crate::sink::bigquery::apply;
use crate::telemetry::{self, LogTo};

pub async fn redrive(config: RepairConfig) -> anyhow::Result<()> {
    run_repair(Kind::Redrive, config).await
}

pub async fn backfill(config: RepairConfig) -> anyhow::Result<()> {
    run_repair(Kind::Backfill, config).await
}

/// Logs go to stderr; stdout holds the summary alone. Fails (exit 1) when anything failed.
async fn run_repair(kind: Kind, config: RepairConfig) -> anyhow::Result<()> {
    telemetry::init(config.log_format, None, LogTo::Stderr);
    let output = config.output;
    let summary = repair::run(kind, config).await?;
    match output {
        Output::Json => println!("{}", summary.json()),
        Output::Text => println!("{}", summary.text()),
    }
    if summary.succeeded() {
        Ok(())
    } else {
        anyhow::bail!(
            "{} of the messages or objects failed; run the same command again to finish",
            summary.failed
        )
    }
}

/// Runs one schema command; what it prints goes to stdout.
pub async fn schema(command: SchemaCommand) -> anyhow::Result<()> {
    match command {
        SchemaCommand::Check(args) => check(&args),
        SchemaCommand::Print(args) => print(&args),
        SchemaCommand::Apply(args) => apply(&args).await,
    }
}

fn load(args: &CatalogArgs) -> anyhow::Result<Catalog> {
    Ok(Catalog::load(&args.source())?)
}

fn check(args: &CheckArgs) -> anyhow::Result<()> {
    let catalog = load(&args.catalog)?;
    for event_type in catalog.event_types() {
        let table = &event_type.table;
        let clustering = if table.cluster_by.is_empty() {
            "not clustered".to_string()
        } else {
            format!("clustered by {}", table.cluster_by.join(", "))
        };
        println!(
            "{} → table {}: partitioned by DATE({}), {clustering} ({})",
            event_type.name, table.name, table.partition_by, event_type.file
        );
        for note in &event_type.notes {
            println!(
                "  note: {}#{}: {}",
                event_type.file, note.pointer, note.message
            );
        }
    }
    let count = catalog.event_types().len();
    println!(
        "{count} event type{}, all valid; dead letters go to table {}",
        if count == 1 { "" } else { "s" },
        catalog.dead_letter().name
    );
    Ok(())
}

fn print(args: &PrintArgs) -> anyhow::Result<()> {
    let catalog = load(&args.catalog)?;
    let qualified = |dataset: &str| match &args.bigquery_project {
        Some(project) => format!("{project}.{dataset}"),
        None => dataset.to_string(),
    };
    print!(
        "{}",
        bigquery::ddl(&qualified(&args.bigquery_dataset), &catalog)
    );
    Ok(())
}

async fn apply(args: &ApplyArgs) -> anyhow::Result<()> {
    let catalog = load(&args.catalog)?;
    let target = args
        .bigquery
        .target()
        .context("schema apply needs --bigquery-project (LANDFALL_BIGQUERY_PROJECT)")?;
    for line in apply::apply(&target, &catalog).await? {
        println!("{line}");
    }
    Ok(())
}
