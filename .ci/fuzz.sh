#!/usr/bin/env bash
# Runs every cargo-fuzz target for SECONDS each (default 30), each seeded from tests/fixtures,
# with the nightly toolchain cargo-fuzz needs. Usage: .ci/fuzz.sh [SECONDS] [TARGET...]
# The fuzz crate is tests/fuzz; crashes are kept in tests/fuzz/artifacts/TARGET/, and the run
# fails on the first one.
set -euo pipefail
cd "$(dirname "$0")/.."
seconds="${1:-30}"
shift || true
targets=("${@:-envelope classify catalog token}")
command -v cargo-fuzz >/dev/null || cargo install cargo-fuzz --version 0.13.2 --locked
corpus() {
  local target="$1" dir="tests/fuzz/corpus/$1"
  mkdir -p "$dir"
  case "$target" in
    envelope) cp tests/fixtures/*.json "$dir/" ;;
    classify)
      for envelope in tests/fixtures/*.json; do
        python3 -c 'import base64, json, sys; m = json.load(open(sys.argv[1])).get("message", {}); sys.stdout.buffer.write(base64.b64decode(m.get("data", "")))' \
          "$envelope" > "$dir/$(basename "$envelope")" 2>/dev/null || true
      done
      cp tests/fixtures/unwrapped-inventory.json "$dir/" ;;
    catalog) cp schemas/*.json tests/fixtures/catalog/*.json "$dir/" ;;
    token) cp tests/fixtures/tokens/*.jwt "$dir/" ;;
  esac
}
# No sanitizer: the targets are safe Rust, and an instrumented build of every dependency
# would double the build for nothing they could find.
cargo +nightly fuzz build --fuzz-dir tests/fuzz --sanitizer none
for target in ${targets[*]}; do
  corpus "$target"
  echo "fuzz: $target for ${seconds}s" >&2
  cargo +nightly fuzz run --fuzz-dir tests/fuzz --sanitizer none "$target" "tests/fuzz/corpus/$target" -- \
    -max_total_time="$seconds" -print_final_stats=1 2>&1 | tail -n 12
done
