# Sourced by the other scripts: the build environment.
if ! command -v go >/dev/null 2>&1 && [ -x /usr/local/go/bin/go ]; then
  export PATH="/usr/local/go/bin:$PATH"
fi
# x86-64-v3 (AVX2, FMA) code when this CPU runs it: faster HOG detection
# and Go code. Binaries built so refuse to start on older CPUs; set
# GOAMD64=v1 to build for any x86-64.
if [ -z "${GOAMD64:-}" ] && [ "$(uname -m)" = x86_64 ] &&
   grep -qw avx2 /proc/cpuinfo && grep -qw fma /proc/cpuinfo && grep -qw bmi2 /proc/cpuinfo; then
  export GOAMD64=v3
fi
export VISAGE_MODELS="${VISAGE_MODELS:-${XDG_DATA_HOME:-$HOME/.local/share}/visage/models}"
