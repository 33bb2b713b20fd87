#!/bin/sh
# Runs this module's tests with every argument passed to `go test`, from
# the module's directory. The parity test:
#
#   tools/gofaceparity/run.sh -v -run GoFace
#
# The benchmarks (go-face's are in ./gofacedump, Visage's in ., so name
# both packages):
#
#   tools/gofaceparity/run.sh -run '^$' -bench . -benchtime 60x ./...
#
# go-face links with -lcblas, and no Debian package ships libcblas.so
# (Debian's BLAS builds put the CBLAS symbols in libblas.so.3). So this
# script keeps a directory holding libcblas.so -> libblas.so.3 in the user's
# cache (never in the repository) and hands it to the linker through
# CGO_LDFLAGS. It is idempotent; nothing else on the system is touched.
#
# Prerequisites (apt): libdlib-dev libblas-dev liblapack-dev
# libjpeg62-turbo-dev, and a C++ compiler; libblas.so.3 itself comes with
# libblas3 (a dependency of libdlib). The tests read the model directory
# from $VISAGE_MODELS (default ~/.local/share/visage/models) that the
# project's set-up script prepares, and the photos from ../shared.
set -eu

here=$(cd "$(dirname "$0")" && pwd)

# Every library go-face's "-ldlib -lblas -lcblas -llapack -ljpeg" needs,
# except libcblas. Ask the compiler driver where it finds each one: it
# prints the bare name back when it finds none.
missing=
for lib in libdlib.so libblas.so liblapack.so libjpeg.so libblas.so.3; do
	found=$(c++ -print-file-name="$lib")
	if [ "$found" = "$lib" ] || [ ! -e "$found" ]; then
		missing="$missing $lib"
	fi
done
if [ -n "$missing" ]; then
	echo "run.sh: the linker cannot find:$missing" >&2
	echo "run.sh: install them with: apt-get install libdlib-dev libblas-dev liblapack-dev libjpeg62-turbo-dev" >&2
	exit 1
fi

# Point at libblas.so.3 itself rather than the file it resolves to: that
# name is Debian's alternatives link, so the choice of BLAS (OpenBLAS when
# installed) is followed without re-creating anything.
blas=$(realpath -s "$(c++ -print-file-name=libblas.so.3)")
libdir="${XDG_CACHE_HOME:-$HOME/.cache}/visage/gofaceparity/lib"
mkdir -p "$libdir"
ln -sfn "$blas" "$libdir/libcblas.so"

# go-face compiles dlib's headers with -march=native, which lets the
# compiler fuse multiply-adds (FMA) in the inlined HOG code; Visage is built
# for baseline x86-64, which has no FMA. The rounding differs just enough to
# move an occasional face box by a pixel (2 of 51 faces in the shared
# photos), and with it that face's landmarks and descriptor. Forbidding
# contraction (-ffp-contract=off, which changes nothing in Visage's
# baseline build) makes the two compute the same numbers, so the parity
# test compares pipelines rather than compilers. Vectorisation is kept, and
# with it go-face's speed (dlib's HOG alone: 53 ms per shared photo with or
# without contraction, 67 ms built for baseline x86-64). A CGO_CXXFLAGS
# that already says -ffp-contract is left as it is.
#
# Keep the flag text identical from run to run: cgo flags are part of the
# build cache key, and changed flags recompile the dlib translation units
# of both packages (minutes).
case " ${CGO_LDFLAGS:-} " in
*" -L$libdir "*) ;;
*) CGO_LDFLAGS="$(go env CGO_LDFLAGS) -L$libdir" ;;
esac
case " ${CGO_CXXFLAGS:-} " in
*" -ffp-contract="*) ;;
*) CGO_CXXFLAGS="$(go env CGO_CXXFLAGS) -ffp-contract=off" ;;
esac
export CGO_LDFLAGS CGO_CXXFLAGS

cd "$here"
exec go test "$@"
