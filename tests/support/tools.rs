//! The local stand-ins and tools tests run against, installed on first use by
//! `.ci/tools.sh` (which prints `NAME=path` lines) and looked up by variable name.

use std::collections::HashMap;
use std::process::{Command, Stdio};
use std::sync::Mutex;

/// The path `.ci/tools.sh TOOL` printed for `variable`, installing the tool if needed.
pub fn tool(tool: &str, variable: &str) -> String {
    static INSTALLED: Mutex<Option<HashMap<String, String>>> = Mutex::new(None);
    let mut installed = INSTALLED.lock().unwrap_or_else(|p| p.into_inner());
    let known = installed.get_or_insert_with(HashMap::new);
    if !known.contains_key(variable) {
        let script = concat!(env!("CARGO_MANIFEST_DIR"), "/.ci/tools.sh");
        let output = Command::new("bash")
            .args([script, tool])
            .stderr(Stdio::inherit())
            .output()
            .expect("bash runs");
        assert!(
            output.status.success(),
            "{script} {tool} failed: see the README for what the tests need"
        );
        for line in String::from_utf8(output.stdout).unwrap().lines() {
            if let Some((k, v)) = line.split_once('=') {
                known.insert(k.to_string(), v.to_string());
            }
        }
    }
    known
        .get(variable)
        .unwrap_or_else(|| panic!("{tool} did not provide {variable}"))
        .clone()
}

/// Runs `python` on one of `tests/support`'s scripts with `input` on its stdin; its output.
pub fn run_support_script(python: &str, script: &str, input: &[u8]) -> std::process::Output {
    use std::io::Write;
    let path = format!("{}/tests/support/{script}", env!("CARGO_MANIFEST_DIR"));
    let mut child = Command::new(python)
        .arg(&path)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("{python} {path}: {e}"));
    child.stdin.take().unwrap().write_all(input).unwrap();
    child.wait_with_output().unwrap()
}
