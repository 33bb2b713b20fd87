#!/usr/bin/env bash
# Measures the engine and prints every figure of docs/benchmarks.md in one
# run: stage and end-to-end benchmarks, the img2col comparison, Visage
# against go-face on the same photos, the CLI's throughput/memory/recall
# report, and the LFW development fold per descriptor variant.
# Then the vector index: `visage bench index` on random unit vectors and
# on descriptor-like vectors fitted to the LFW development fold's
# descriptors, against exact search and faiss's HNSW (Debian's
# python3-faiss, installed here). VISAGE_BENCH_INDEX_N sets the number of
# vectors (default 1000000: about an hour per kind on 2 cores, most of it
# building faiss's graph; 0 skips the section). Then the hostile burst
# (scripts/hostile.sh) and, when VISAGE_BENCH_SOAK is set (e.g. 10m), the
# soak of each deployment.
# Usage: ./scripts/bench.sh [output file] (default: bench-<date>.txt)
set -euo pipefail
cd "$(dirname "$0")/.."
VISAGE_EXTRA_APT="${VISAGE_EXTRA_APT:-} python3-faiss python3-numpy" ./scripts/setup.sh
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
  echo "## Open-set identification on lfw-open (one enrollment photo per person)"
  ./bin/visage eval identification --images "$shared"/lfw-open/images --gallery 1 2>/dev/null
  ./bin/visage eval identification --images "$shared"/lfw-open/images --sizes 10,30,100,300,1000,2000,2900 2>/dev/null
  echo "## Hostile burst (64 clients, worst images and bodies) against visaged"
  scripts/hostile.sh 30s 64 2>/dev/null
  if [ -n "${VISAGE_BENCH_SOAK:-}" ]; then
    echo "## Soak, each deployment, $VISAGE_BENCH_SOAK"
    go test ./cmd/visaged -run '^$' -bench Soak -benchtime 1x -soak "$VISAGE_BENCH_SOAK" -timeout 2h | grep '^soak'
  fi
  index_n="${VISAGE_BENCH_INDEX_N:-1000000}"
  if [ "$index_n" -gt 0 ]; then
    descriptors=$(mktemp --suffix .jsonl)
    trap 'rm -f "$descriptors"' EXIT
    ./bin/visage detect --descriptors --workers 2 "$shared"/lfw-dev/images/*/* >"$descriptors" 2>/dev/null
    echo "## visage bench index, random unit vectors"
    ./bin/visage bench index --kind random --n "$index_n" --faiss
    echo "## visage bench index, descriptor-like vectors"
    ./bin/visage bench index --kind descriptors --descriptors "$descriptors" --n "$index_n" --faiss
  fi
} 2>&1 | tee "$out"
