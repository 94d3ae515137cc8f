#!/usr/bin/env bash
# Runs every cargo-fuzz target for SECONDS each (default 30), each seeded from tests/fixtures,
# with the nightly toolchain cargo-fuzz needs. Usage: .ci/fuzz.sh [SECONDS] [TARGET...]
# The fuzz crate is tests/fuzz; crashes are kept in tests/fuzz/artifacts/TARGET/, and the run
# fails on the first one.
set -euo pipefail
cd "$(dirname "$0")/.."
# One pinned nightly, so that its builds are reused from run to run: that nightly, or the
# plain `nightly` when it is that very one (the same day's), else it is installed.
PINNED=nightly-2026-05-20
if rustup run "$PINNED" rustc --version >/dev/null 2>&1; then
  NIGHTLY=$PINNED
elif grep -qs "^date = \"${PINNED#nightly-}\"" \
    "$(rustc +nightly --print sysroot 2>/dev/null)/lib/rustlib/multirust-channel-manifest.toml"; then
  NIGHTLY=nightly
else
  rustup toolchain install "$PINNED" --profile minimal
  NIGHTLY=$PINNED
fi
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
cargo "+$NIGHTLY" fuzz build --fuzz-dir tests/fuzz --sanitizer none
for target in ${targets[*]}; do
  corpus "$target"
  echo "fuzz: $target for ${seconds}s" >&2
  cargo "+$NIGHTLY" fuzz run --fuzz-dir tests/fuzz --sanitizer none "$target" "tests/fuzz/corpus/$target" -- \
    -max_total_time="$seconds" -print_final_stats=1 2>&1 | tail -n 12
done
