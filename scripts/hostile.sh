#!/usr/bin/env bash
# Hostile burst against visaged on the embedded default: starts a server on
# a fresh data directory (no rate limit, as an attacker with many keys
# would see it), enrolls the 40 bbt portraits, then sends the truncated
# 6324² JPEG, the all-zero 40 MP PNG and a 60 MB JSON body from 64 clients
# while identifying a normal photo every 250 ms. Prints the answers, the
# server's peak RSS and the normal identification's latency.
# Usage: scripts/hostile.sh [DURATION] [CONCURRENCY]   (default 30s 64)
#        VISAGED=path/to/visaged scripts/hostile.sh    (another build)
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/env.sh
SHARED="${VISAGE_SHARED:-../shared}"
dir=$(mktemp -d)
port=$((20000 + RANDOM % 20000))
key="hostile-$(head -c 18 /dev/urandom | base64 | tr -d '/+=')"
VISAGE_BOOTSTRAP_ADMIN_KEY="$key" "${VISAGED:-./bin/visaged}" --addr "127.0.0.1:$port" --data "$dir" --rate-limit 0 --log-level error ${VISAGED_FLAGS:-} &
pid=$!
trap 'kill $pid 2>/dev/null; wait $pid 2>/dev/null; rm -rf "$dir"' EXIT
until curl -fs "http://127.0.0.1:$port/readyz" >/dev/null; do sleep 0.2; done
VISAGE_KEY="$key" ./bin/visage bench hostile --url "http://127.0.0.1:$port" --pid "$pid" \
  --enroll "$SHARED/testdata/faces/bbt" --image "$SHARED/testdata/faces/bbt/penny/$(ls "$SHARED/testdata/faces/bbt/penny" | head -1)" \
  --duration "${1:-30s}" --concurrency "${2:-64}"
