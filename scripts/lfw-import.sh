#!/usr/bin/env bash
# The batch import's acceptance run (docs/benchmarks.md): a fresh visaged
# (embedded, in a temporary directory), then the LFW development tree
# through `visage import` on a pseudo-terminal (the live bar), then the
# same tree as a server job (--server-path). Prints both summaries and
# the collections' /stats; the files stay in $OUT (default /tmp/lfw-import).
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/env.sh
OUT=${OUT:-/tmp/lfw-import}
SHARED=$(cd ../shared/testdata && pwd)
PORT=${PORT:-18080}
rm -rf "$OUT" && mkdir -p "$OUT"
go build -o "$OUT/visage" ./cmd/visage
go build -o "$OUT/visaged" ./cmd/visaged
VISAGE_BOOTSTRAP_ADMIN_KEY=lfw-import-$(od -An -N24 -tx1 /dev/urandom | tr -d ' \n')
export VISAGE_BOOTSTRAP_ADMIN_KEY VISAGE_API_KEY=$VISAGE_BOOTSTRAP_ADMIN_KEY
"$OUT/visaged" --data "$OUT/data" --addr 127.0.0.1:$PORT --rate-limit 0 --import-root "$SHARED" >"$OUT/visaged.log" 2>&1 &
pid=$!
trap 'kill $pid 2>/dev/null; wait $pid 2>/dev/null || true' EXIT
for _ in $(seq 120); do curl -sf localhost:$PORT/readyz >/dev/null && break; sleep 1; done
server=http://127.0.0.1:$PORT
script -qfec "$OUT/visage import --server $server --collection lfw --create-collection --dir $SHARED/lfw-dev/images --state $OUT/lfw.state --failures $OUT/lfw-failures.csv" "$OUT/tty.log" >/dev/null
tr '\r' '\n' <"$OUT/tty.log" | grep -E '^import' | tail -3
"$OUT/visage" import --server $server --collection lfwjob --create-collection --server-path lfw-dev/images --failures "$OUT/lfwjob-failures.csv" 2>"$OUT/job.err"
for c in lfw lfwjob; do
	curl -s -H "Authorization: Bearer $VISAGE_API_KEY" localhost:$PORT/v1/collections/$c/stats
	echo
done
