//! `landfall schema check | print | apply`: the catalog and its tables, from the command line.

use anyhow::Context;

use crate::config::{ApplyArgs, CatalogArgs, PrintArgs, SchemaCommand};
use crate::schema::{Catalog, bigquery};
use crate::sink::bigquery::apply;

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

fn check(args: &CatalogArgs) -> anyhow::Result<()> {
    let catalog = load(args)?;
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
    let dataset = args.bigquery.target().map_or_else(
        || args.bigquery.bigquery_dataset.clone(),
        |t| format!("{}.{}", t.project, t.dataset),
    );
    print!("{}", bigquery::ddl(&dataset, &catalog));
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
