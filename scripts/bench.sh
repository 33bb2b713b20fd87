#!/usr/bin/env bash
# Measures the engine and prints every figure of docs/benchmarks.md in one
# run: stage and end-to-end benchmarks, the img2col comparison, Visage
# against go-face on the same photos, the CLI's throughput/memory/recall
# report, and the LFW development fold per descriptor variant.
# Usage: ./scripts/bench.sh [output file] (default: bench-<date>.txt)
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/setup.sh
. scripts/env.sh
out="${1:-bench-$(date +%Y%m%d-%H%M).txt}"
shared=../shared/testdata
photos=("$shared"/faces/bbt/bbt{1,2,3,4,5}.jpg "$shared"/faces/misc/two_people.jpg "$shared"/faces/misc/obama.jpg
        "$shared"/faces/misc/lennon-1.jpg "$shared"/faces/knn/test/obama_and_biden.jpg)
{
  echo "# $(date -u +%FT%TZ) $(uname -m) $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2) GOAMD64=${GOAMD64:-v1}"
  echo "## go test -bench (engine stages, end to end, throughput)"
  go test -run '^$' -bench . -benchtime 20x ./gallery/ ./internal/dlib/ ./internal/imageio/
  echo "## Visage vs go-face, same photos, one run"
  tools/gofaceparity/run.sh -run '^$' -bench . -benchtime 60x -count 1 -timeout 30m ./...
  echo "## visage bench engine (2 workers)"
  ./bin/visage bench engine --workers 2 --seconds 20 "${photos[@]}"
  echo "## LFW development fold"
  ./bin/visage eval lfw --images "$shared"/lfw-dev/images --pairs "$shared"/lfw-dev/pairs.txt \
    --variants plain+l2,plain,mirror,mirror+l2,jitter10+l2 2>/dev/null
} 2>&1 | tee "$out"
