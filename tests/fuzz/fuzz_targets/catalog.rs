//! Arbitrary bytes as a catalog file: refused with problems that name the file, or loaded,
//! and then every table's DDL (SQLite and BigQuery) and the curated views derive without a
//! panic.

#![no_main]

use libfuzzer_sys::fuzz_target;

use landfall::schema::curated::{self, Dialect};
use landfall::schema::{Catalog, bigquery, sqlite};

fuzz_target!(|bytes: &[u8]| {
    let Ok(text) = std::str::from_utf8(bytes) else {
        return;
    };
    match Catalog::from_files(vec![("fuzz.json".into(), text.into())]) {
        Ok(catalog) => {
            for table in catalog.tables() {
                let _ = sqlite::create_table(table);
                let _ = bigquery::create_table("raw", table);
            }
            let _ = curated::views(&Dialect::Sqlite, &catalog);
            let _ = curated::views(&Dialect::BigQuery { project: "p", raw: "raw", curated: "curated" }, &catalog);
        }
        Err(error) => {
            assert!(!error.problems.is_empty());
            assert!(error.problems.iter().all(|p| p.file == "fuzz.json"));
        }
    }
});
