#!/usr/bin/env bash
# Sets up everything Visage needs on a Debian 12 machine, unattended and
# idempotently: apt packages, the npm package that carries the ResNet
# weights (kept in a cache outside the repository), the Go binaries in
# ./bin and the model directory. Run as root or with sudo available.
#
# Environment: VISAGE_MODELS (model directory, default
# ~/.local/share/visage/models), XDG_CACHE_HOME (cache, default ~/.cache).
set -euo pipefail

cd "$(dirname "$0")/.."

APT_PACKAGES=(
  libdlib-dev libdlib-data        # dlib 19.24 and its 68-point landmark model
  libopenblas0-pthread            # fast BLAS: 13 ms per face instead of 200
  libblas-dev liblapack-dev       # link-time BLAS/LAPACK names
  libjpeg62-turbo-dev             # JPEG decoding (libjpeg-turbo)
  libhnswlib-dev                  # the embedded vector index (header-only HNSW)
  postgresql                      # server binaries for the Postgres store's tests, which run
                                  # their own throwaway cluster (internal/pgtest), not this service
  docker-compose                  # validates docker-compose.yml in the tests; no engine is needed
  pkg-config bzip2 ca-certificates
  curl                            # the README's examples and scripts/lfw-import.sh
  chromium                        # headless browser for the dashboard's tests (chromedp)
)
FACEAPI_VERSION=1.7.15
CACHE_DIR="${XDG_CACHE_HOME:-$HOME/.cache}/visage"
FACEAPI_TGZ="$CACHE_DIR/vladmandic-face-api-$FACEAPI_VERSION.tgz"

log() { printf 'setup: %s\n' "$*" >&2; }

as_root() {
  if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi
}

install_apt() {
  local missing=()
  for p in "$@"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
  done
  if [ ${#missing[@]} -gt 0 ]; then
    log "apt: installing ${missing[*]}"
    as_root env DEBIAN_FRONTEND=noninteractive apt-get update -qq
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  fi
}

install_apt "${APT_PACKAGES[@]}" ${VISAGE_EXTRA_APT:-}
if ! command -v npm >/dev/null 2>&1; then install_apt npm; fi
. scripts/env.sh
command -v go >/dev/null 2>&1 || { log "Go 1.26 is required (go not found)"; exit 1; }

# The ResNet weights ship in the npm package; npm pack keeps the tarball
# only, outside the repository. Its two weight files are checked by sha256
# when the model directory is prepared.
mkdir -p "$CACHE_DIR"
if [ ! -s "$FACEAPI_TGZ" ]; then
  log "npm: fetching @vladmandic/face-api@$FACEAPI_VERSION"
  tmp=$(mktemp -d)
  (cd "$tmp" && npm pack --silent "@vladmandic/face-api@$FACEAPI_VERSION" >/dev/null)
  mv "$tmp"/vladmandic-face-api-"$FACEAPI_VERSION".tgz "$FACEAPI_TGZ"
  rm -rf "$tmp"
fi

log "go: building ./bin/visage and ./bin/visaged"
mkdir -p bin
go build -o bin/visage ./cmd/visage
go build -o bin/visaged ./cmd/visaged

./bin/visage models --faceapi "$FACEAPI_TGZ"
