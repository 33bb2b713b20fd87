#!/usr/bin/env bash
# Sets up Visage and runs its main job on a sample photo: the faces found,
# with boxes, landmarks and quality, as JSON.
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/setup.sh >&2
CACHE_DIR="${XDG_CACHE_HOME:-$HOME/.cache}/visage"
sample="$CACHE_DIR/sample.jpg"
if [ ! -s "$sample" ]; then
  # A photo of several people from the same npm package as the weights.
  tar -xzOf "$CACHE_DIR/vladmandic-face-api-1.7.15.tgz" package/demo/sample1.jpg >"$sample"
fi
exec ./bin/visage detect "${@:-$sample}"
