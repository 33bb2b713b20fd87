#!/usr/bin/env bash
# Sets up Visage and runs every test: the main module under the race
# detector, then the go-face parity module. Photos are read from
# ../shared/testdata beside the repository.
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/setup.sh
. scripts/env.sh
go vet ./...
go test -race -count=1 -timeout 40m ./... "$@"
# The dashboard's browser tests leave a screenshot of each page here.
if [ -d artifacts/dashboard ]; then
  echo "dashboard screenshots: $(pwd)/artifacts/dashboard: $(ls artifacts/dashboard | tr '\n' ' ')"
fi
if [ -x tools/gofaceparity/run.sh ]; then
  tools/gofaceparity/run.sh -count=1 -timeout 20m ./...
fi
