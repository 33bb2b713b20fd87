#!/usr/bin/env bash
# Identification latency in a gallery of 1,000 lfw-open people, where the
# open-set decision does all its work (cohort searches, second looks):
# starts visaged on a fresh data directory, enrolls the first photo of
# 1,000 people (a tree of links to ../shared/testdata/lfw-open), then
# times one client identifying a stranger's photo and an enrolled
# person's other photo, each sent as it is (250×250 JPEG).
# Usage: scripts/loadtest-openset.sh [DURATION]   (default 20s per probe)
# VISAGED=FILE runs that server binary (default ./bin/visaged), to compare
# builds in one run; the load comes from ./bin/visage.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/env.sh
VISAGED="${VISAGED:-./bin/visaged}"
SHARED="${VISAGE_SHARED:-../shared}"
images="$SHARED/testdata/lfw-open/images"
dir=$(mktemp -d)
mkdir "$dir/tree"
# People by name: the first 1,000 with two or more photos or one, minus
# the two probes' own (the stranger is never enrolled).
people="$SHARED/testdata/lfw-open/people.tsv"   # person, fold, images
stranger=$(awk -F'\t' 'NR > 1 && $3 == 1 { p = $1 } END { print p }' "$people")
mated=$(awk -F'\t' 'NR > 1 && $3 >= 2 && !p { p = $1 } END { print p }' "$people")
ls "$images" | awk -v s="$stranger" '$0 != s && n < 1000 { print; n++ }' | while read -r p; do
  mkdir "$dir/tree/$p"
  ln -s "$(realpath "$images/$p/$(ls "$images/$p" | head -1)")" "$dir/tree/$p/"
done
port=$((20000 + RANDOM % 20000))
key="loadtest-$(head -c 18 /dev/urandom | base64 | tr -d '/+=')"
VISAGE_BOOTSTRAP_ADMIN_KEY="$key" "$VISAGED" --addr "127.0.0.1:$port" --data "$dir/data" --rate-limit 0 --log-level warn &
pid=$!
trap 'kill $pid 2>/dev/null; wait $pid 2>/dev/null; rm -rf "$dir"' EXIT
until curl -fs "http://127.0.0.1:$port/readyz" >/dev/null; do sleep 0.2; done
VISAGE_KEY="$key" ./bin/visage bench http --url "http://127.0.0.1:$port" --collection lfw --enroll "$dir/tree" \
  --image "$images/$stranger/$(ls "$images/$stranger" | head -1)" --size "" --clients 1 --duration "${1:-20s}" | sed 's/^/stranger /'
VISAGE_KEY="$key" ./bin/visage bench http --url "http://127.0.0.1:$port" --collection lfw \
  --image "$images/$mated/$(ls "$images/$mated" | sed -n 2p)" --size "" --clients 1 --duration "${1:-20s}" | sed 's/^/enrolled /'
