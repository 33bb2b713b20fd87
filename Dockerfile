# visaged (and the visage CLI) on Debian 12, with the prepared model directory.
#
#   docker build -t visage/visaged .
#   docker build --build-arg GOAMD64=v3 -t visage/visaged .   # AVX2/FMA hosts only: faster HOG
#
# Scale-out deployment (Postgres + Qdrant): see docker-compose.yml.

# Builder: the official Go image, which is Debian 12 (bookworm) based, so the
# -dev packages and the runtime libraries below are the same Debian release.
# Debian 12's own golang-go is 1.19, too old for go.mod (go 1.26) and for
# toolchain switching (Go >= 1.21), so the Go toolchain comes from this image.
ARG GO_VERSION=1.26.8
FROM golang:${GO_VERSION}-bookworm AS build

# Build packages as in scripts/setup.sh, plus g++ for cgo (internal/dlib).
RUN apt-get update \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
      g++ pkg-config \
      libdlib-dev libdlib-data \
      libopenblas0-pthread libblas-dev liblapack-dev \
      libjpeg62-turbo-dev libhnswlib-dev \
      bzip2 ca-certificates npm \
 && rm -rf /var/lib/apt/lists/*

# The ResNet weights ship in this npm package (checked by sha256 when the
# model directory is prepared).
ARG FACEAPI_VERSION=1.7.15
RUN mkdir -p /faceapi && cd /faceapi \
 && npm pack --silent "@vladmandic/face-api@${FACEAPI_VERSION}" \
 && ls -l /faceapi

# x86-64 baseline by default: an image may run on any amd64 host. v3 builds
# refuse to start on CPUs without AVX2/FMA/BMI2 (see scripts/env.sh).
ARG GOAMD64=v1
ENV CGO_ENABLED=1 GOTOOLCHAIN=local GOAMD64=${GOAMD64}
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY . .
RUN go build -trimpath -o /out/visage ./cmd/visage \
 && go build -trimpath -o /out/visaged ./cmd/visaged \
 && /out/visage models --models /out/models \
      --faceapi "/faceapi/vladmandic-face-api-${FACEAPI_VERSION}.tgz"

# Runtime: only the shared libraries the binaries link against (ldd: libdlib,
# OpenBLAS as libblas.so.3/liblapack.so.3 with libgfortran5, libjpeg,
# libpng16; libstdc++6, libgcc-s1, zlib1g are in the base image), and CA
# certificates for TLS connections to a managed Postgres or Qdrant.
FROM debian:bookworm-slim

RUN apt-get update \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
      libdlib19.1 libopenblas0-pthread libjpeg62-turbo libpng16-16 ca-certificates \
 && rm -rf /var/lib/apt/lists/*

COPY --from=build /out/visage /out/visaged /usr/local/bin/

# libdlib19.1 depends on libdlib-data, which already holds the 68-point
# landmark model (95 MB): link it instead of keeping a second copy, copy the
# converted ResNet, and let `visage models` check both sha256 sums and write
# SHA256SUMS (the build fails if Debian's file ever differs).
ENV VISAGE_MODELS=/opt/visage/models
COPY --from=build /out/models/dlib_face_recognition_resnet_model_v1.dat /opt/visage/models/
RUN ln -s /usr/share/dlib/shape_predictor_68_face_landmarks.dat /opt/visage/models/ \
 && visage models --models /opt/visage/models

# Non-root, fixed uid (for runAsNonRoot). The data directory serves the
# embedded mode only (mount a volume there); with VISAGE_DATABASE_URL and
# VISAGE_QDRANT_ADDR visaged is stateless.
RUN groupadd --gid 10001 visage \
 && useradd --uid 10001 --gid visage --create-home --home-dir /var/lib/visage \
      --shell /usr/sbin/nologin visage \
 && mkdir -p /var/lib/visage/data && chown visage:visage /var/lib/visage/data
ENV VISAGE_ADDR=0.0.0.0:8080 VISAGE_DATA_DIR=/var/lib/visage/data
WORKDIR /var/lib/visage
USER 10001:10001
EXPOSE 8080
ENTRYPOINT ["visaged"]
