//! The commands beside `serve`: `landfall schema check | print | apply` (the catalog and its
//! tables), and `landfall redrive | backfill` (repair from the landing layer).

use anyhow::Context;

use crate::config::{ApplyArgs, CatalogArgs, CheckArgs, PrintArgs, SchemaCommand};
use crate::repair::{self, Kind, Output, RepairConfig};
use crate::schema::{Catalog, bigquery, curated};
use crate::sink::Unusable;
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
        SchemaCommand::Check(args) => check(&args).await,
        SchemaCommand::Print(args) => print(&args),
        SchemaCommand::Apply(args) => apply(&args).await,
    }
}

fn load(args: &CatalogArgs) -> anyhow::Result<Catalog> {
    Ok(Catalog::load(&args.source())?)
}

async fn check(args: &CheckArgs) -> anyhow::Result<()> {
    let catalog = load(&args.catalog)?;
    describe_catalog(&catalog);
    let mut conflicts = Vec::new();
    if let Some(dir) = &args.data_dir {
        conflicts.extend(check_embedded(dir, &catalog)?);
    }
    if let Some(target) = args.bigquery.target() {
        conflicts.extend(check_bigquery(&target, &catalog).await?);
    }
    if conflicts.is_empty() {
        Ok(())
    } else {
        Err(Unusable(format!(
            "serve would refuse to start:\n  {}",
            conflicts.join("\n  ")
        ))
        .into())
    }
}

/// What `serve` would do to the embedded warehouse in `dir`.
fn check_embedded(dir: &std::path::Path, catalog: &Catalog) -> anyhow::Result<Vec<String>> {
    let path = dir.join("warehouse.db");
    if !path.exists() {
        println!("{}: none yet; serve creates every table", path.display());
        return Ok(Vec::new());
    }
    let flags = rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY;
    let connection = rusqlite::Connection::open_with_flags(&path, flags)
        .with_context(|| format!("failed to open {}", path.display()))?;
    let plan = crate::sink::sqlite::plan(&connection, catalog)?;
    if plan.changes.is_empty() && plan.conflicts.is_empty() {
        println!("{}: every table matches the catalog", path.display());
    }
    for change in &plan.changes {
        println!("{}: {change}", path.display());
    }
    for conflict in &plan.conflicts {
        println!("{}: cannot be changed in place: {conflict}", path.display());
    }
    Ok(plan.conflicts)
}

async fn check_bigquery(
    target: &crate::sink::bigquery::BigQueryTarget,
    catalog: &Catalog,
) -> anyhow::Result<Vec<String>> {
    let (report, conflicts) = apply::describe(target, catalog).await?;
    for line in report {
        println!("{line}");
    }
    Ok(conflicts)
}

fn describe_catalog(catalog: &Catalog) {
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
}

fn print(args: &PrintArgs) -> anyhow::Result<()> {
    let catalog = load(&args.catalog)?;
    let qualified = |dataset: &str| match &args.bigquery_project {
        Some(project) => format!("{project}.{dataset}"),
        None => dataset.to_string(),
    };
    if let Some(into) = &args.materialise_into {
        let project = args.bigquery_project.as_deref().unwrap_or("PROJECT");
        let views = &args.bigquery_curated_dataset;
        print!(
            "{}",
            curated::bigquery_materialise(project, views, into, args.lookback_days, &catalog)
        );
    } else if args.curated {
        let project = args.bigquery_project.as_deref().unwrap_or("PROJECT");
        let (raw, views) = (&args.bigquery_dataset, &args.bigquery_curated_dataset);
        print!("{}", curated::bigquery_ddl(project, raw, views, &catalog));
    } else {
        print!(
            "{}",
            bigquery::ddl(&qualified(&args.bigquery_dataset), &catalog)
        );
    }
    Ok(())
}

async fn apply(args: &ApplyArgs) -> anyhow::Result<()> {
    let catalog = load(&args.catalog)?;
    let target = args.bigquery.target().ok_or_else(|| {
        let project = crate::config::setting!(crate::config::BigQueryArgs, bigquery_project);
        Unusable(format!("schema apply needs {project}"))
    })?;
    for line in apply::apply(&target, &args.bigquery.bigquery_curated_dataset, &catalog).await? {
        println!("{line}");
    }
    Ok(())
}
