//! The reference pages that restate the code — the settings and the metrics — checked against
//! it, so that they cannot drift apart. `UPDATE_DOCS=1` rewrites the settings page.

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::time::Duration;

fn page(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("docs")
        .join(name)
}

#[test]
fn the_settings_page_is_the_command_lines_definition() {
    let expected = landfall::config::reference();
    let path = page("settings.md");
    if std::env::var_os("UPDATE_DOCS").is_some() {
        std::fs::write(&path, &expected).unwrap();
    }
    let written = std::fs::read_to_string(&path).unwrap_or_default();
    let differing: Vec<(usize, &str, &str)> = written
        .lines()
        .zip(expected.lines())
        .enumerate()
        .filter(|(_, (a, b))| a != b)
        .map(|(n, (a, b))| (n + 1, a, b))
        .take(3)
        .collect();
    assert!(
        written == expected,
        "docs/settings.md is not what the command line defines \
         (UPDATE_DOCS=1 cargo test --test api docs:: rewrites it); first differences \
         (line, page, definition): {differing:#?}"
    );
}

/// `(name, type)` of every metric a scrape can show, each family given one sample (a family
/// without samples is not written at all). Names as the samples have them: a counter's with
/// `_total`, the build's with `_info`.
fn registered() -> BTreeSet<(String, String)> {
    let metrics = landfall::telemetry::metrics::Metrics::new(Duration::from_secs(10), true);
    let order: std::sync::Arc<str> = "order".into();
    metrics.push("landed", &order, Duration::ZERO);
    metrics.delivery_lag(&order, Duration::ZERO);
    metrics.dead_letter(&order, "required");
    metrics.withheld_headers(1);
    let (_sink, _landing) = (metrics.sink("bigquery"), metrics.landing("gcs"));
    let text = metrics.encode();
    let samples: BTreeSet<&str> = text
        .lines()
        .filter(|line| !line.starts_with('#'))
        .filter_map(|line| line.split(['{', ' ']).next())
        .collect();
    text.lines()
        .filter_map(|line| line.strip_prefix("# TYPE "))
        .map(|line| {
            let (name, kind) = line.split_once(' ').unwrap();
            // A histogram's samples are `_bucket`, `_sum` and `_count`: it goes by its name.
            let sampled = [
                name.to_string(),
                format!("{name}_total"),
                format!("{name}_info"),
            ]
            .into_iter()
            .find(|candidate| kind == "histogram" || samples.contains(candidate.as_str()))
            .unwrap_or_else(|| panic!("{name} has no sample"));
            (sampled, kind.to_string())
        })
        .collect()
}

#[test]
fn the_metrics_table_lists_every_registered_metric_and_nothing_else() {
    let text = std::fs::read_to_string(page("operate.md")).unwrap();
    let documented: BTreeSet<(String, String)> = text
        .lines()
        .filter(|line| line.starts_with("| `landfall_"))
        .map(|line| {
            let cells: Vec<&str> = line.split('|').map(str::trim).collect();
            (cells[1].trim_matches('`').to_string(), cells[2].to_string())
        })
        .collect();
    assert_eq!(documented, registered(), "docs/operate.md's metrics table");
}
