#!/usr/bin/env bash
# Sets up Visage and starts visaged on the embedded default: SQLite and
# the HNSW index in ~/.local/share/visage/data ($VISAGE_DATA_DIR), no
# database to install. On the first start it prints the one-time admin
# key. Arguments are passed to visaged (e.g. --addr 0.0.0.0:8080).
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/setup.sh >&2
. scripts/env.sh
exec ./bin/visaged "$@"
