// Package gofaceparity checks Visage's face pipeline against
// github.com/Kagami/go-face, the library the design card names, and
// benchmarks the two side by side. It holds only tests.
//
// It is a separate module so that go-face (a second cgo copy of dlib's
// headers, built with -march=native and linked with a libcblas.so that no
// Debian package ships) never enters the production module's build list
// or binary.
//
// go-face never runs in the same process as Visage: Visage's dlib package
// replaces one of libdlib's functions (img2col) for the whole process and
// pins OpenBLAS to one thread, so in-process go-face would be neither
// measured nor checked as its users run it. The parity test therefore
// reads go-face's results from the gofacedump command, and go-face's
// benchmarks live in that command's package.
//
// run.sh provides the library directory and compiler flags and runs the
// tests; see it for the prerequisites.
package gofaceparity
