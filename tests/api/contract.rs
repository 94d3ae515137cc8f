//! The HTTP contract, checked by a tool that did not write it: schemathesis generates
//! requests from `openapi/landfall.yaml` (valid ones and ones that break it) and runs every
//! check it has against the real binary, for `SCHEMATHESIS_SECONDS` (default 90).

use crate::support::Binary;
use crate::support::tools::tool;

#[test]
fn the_server_keeps_the_openapi_contract_under_every_schemathesis_check() {
    let schemathesis = tool("schemathesis", "SCHEMATHESIS");
    let seconds = std::env::var("SCHEMATHESIS_SECONDS").unwrap_or_else(|_| "90".into());
    let data = tempfile::tempdir().unwrap();
    let landfall = Binary::start(
        &["--data-dir", data.path().to_str().unwrap()],
        &[("RUST_LOG", "warn,landfall::startup=info")],
    );
    let spec = concat!(env!("CARGO_MANIFEST_DIR"), "/openapi/landfall.yaml");

    let output = std::process::Command::new(schemathesis)
        .args([
            "--no-color",
            "run",
            spec,
            "--url",
            &landfall.url(""),
            "--checks",
            "all",
        ])
        .args(["--max-time", &seconds])
        // Its example database and reports go to the working directory: not the repository.
        .current_dir(data.path())
        .output()
        .expect("schemathesis runs");

    let report = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "schemathesis found the server and openapi/landfall.yaml apart:\n{report}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(report.contains("generated"), "{report}");
}
