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
VISAGE_BOOTSTRAP_ADMIN_KEY="$key" "${VISAGED:-./bin/visaged}" --addr "127.0.0.1:$port" --data "$dir" --rate-limit 0 --log-level warn &
pid=$!
trap 'kill $pid 2>/dev/null; wait $pid 2>/dev/null; rm -rf "$dir"' EXIT
until curl -fs "http://127.0.0.1:$port/readyz" >/dev/null; do sleep 0.2; done
probe="$SHARED/testdata/faces/misc/obama-480p.jpg"
VISAGE_KEY="$key" ./bin/visage bench http --url "http://127.0.0.1:$port" --collection bbt \
  --enroll "$SHARED/testdata/faces/bbt" --image "$probe" \
  --size 640x480 --clients 1,2,4 --duration "${1:-20s}"
# The server's own CPU time per identification, which a busy machine does
# not inflate: 2 cores / this = the throughput both cores can give.
cpu() { awk '{print $14 + $15}' "/proc/$pid/stat"; }
before=$(cpu)
VISAGE_KEY="$key" ./bin/visage bench http --url "http://127.0.0.1:$port" --collection bbt \
  --image "$probe" --size 640x480 --clients 2 --warmup 0s --duration "${1:-20s}" | tee /tmp/loadtest-cpu.$$ >&2
after=$(cpu)
n=$(sed -n 's/.* requests=\([0-9]*\).*/\1/p' /tmp/loadtest-cpu.$$); rm -f /tmp/loadtest-cpu.$$
awk -v t=$((after - before)) -v hz="$(getconf CLK_TCK)" -v n="$n" \
  'BEGIN { c = t / hz / (n + 1); printf "visaged cpu_ms_per_identify=%.1f capacity_2_cores_rps=%.1f\n", c * 1000, 2 / c }'

