#!/usr/bin/env bash
# Sets up Visage and runs every test: the main module under the race
# detector, then the go-face parity module. Photos are read from
# ../shared/testdata beside the repository.
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/setup.sh
export VISAGE_MODELS="${VISAGE_MODELS:-${XDG_DATA_HOME:-$HOME/.local/share}/visage/models}"
if ! command -v go >/dev/null 2>&1; then export PATH="/usr/local/go/bin:$PATH"; fi
go vet ./...
go test -race -count=1 -timeout 40m ./... "$@"
if [ -x tools/gofaceparity/run.sh ]; then
  tools/gofaceparity/run.sh -count=1 -timeout 20m ./...
fi
