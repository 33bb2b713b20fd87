//go:build amd64.v3

package dlib

// Built with GOAMD64=v3 (AVX2 and FMA; scripts/env.sh sets it when the CPU
// has them), dlib's header-only HOG code compiles to AVX2 and detection
// runs about 30% faster (docs/benchmarks.md). Such a binary refuses to
// start, with a clear message, on a CPU without them.

// #cgo CXXFLAGS: -march=x86-64-v3
import "C"
