#!/usr/bin/env bash
# Load test of visaged on the embedded default: starts a server on a fresh
# data directory, enrolls the 40 bbt portraits, then identifies a
# 640×480 one-face JPEG (obama-480p.jpg, centre-cropped) from 1, 2 and 4
# concurrent clients. Prints one line per level (p50/p90/p99, requests/s).
# Usage: scripts/loadtest.sh [DURATION]   (default 20s per level)
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/env.sh
SHARED="${VISAGE_SHARED:-../shared}"
dir=$(mktemp -d)
port=$((20000 + RANDOM % 20000))
key="loadtest-$(head -c 18 /dev/urandom | base64 | tr -d '/+=')"
VISAGE_BOOTSTRAP_ADMIN_KEY="$key" ./bin/visaged --addr "127.0.0.1:$port" --data "$dir" --rate-limit 0 --log-level warn &
pid=$!
trap 'kill $pid 2>/dev/null; wait $pid 2>/dev/null; rm -rf "$dir"' EXIT
until curl -fs "http://127.0.0.1:$port/readyz" >/dev/null; do sleep 0.2; done
VISAGE_KEY="$key" ./bin/visage bench http --url "http://127.0.0.1:$port" --collection bbt \
  --enroll "$SHARED/testdata/faces/bbt" --image "$SHARED/testdata/faces/misc/obama-480p.jpg" \
  --size 640x480 --clients 1,2,4 --duration "${1:-20s}"
