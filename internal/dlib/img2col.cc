// A faster replacement for dlib::cpu::img2col, the im2col step of dlib's
// CPU convolution, which took 31% of the ResNet's time in Debian's libdlib
// (a per-element bounds check on every tap, built without vectorisation).
//
// The function is exported by libdlib.so and called through the PLT, so
// this definition in the executable interposes it (the link exports it with
// --export-dynamic-symbol; see dlib.go). It writes exactly the same matrix
// (same layout, same values), so results are bit-identical with or without
// it: internal/dlib's tests switch to the library's own version (found
// with dlsym(RTLD_NEXT)) and compare descriptors bit for bit.
#include <dlfcn.h>

#include <algorithm>
#include <atomic>

#include <dlib/cuda/tensor.h>

#include "visage_dlib.h"

namespace {
// use_library selects dlib's own img2col (for tests and benchmarks).
std::atomic<bool> use_library{false};
// fast_calls counts calls that took this implementation, so tests can
// tell that the interposition is in effect.
std::atomic<long> fast_calls{0};
}  // namespace

extern "C" void vs_use_library_img2col(int on) { use_library.store(on != 0); }
extern "C" long vs_fast_img2col_calls(void) { return fast_calls.load(); }

namespace dlib {
namespace cpu {

// img2col lays the n-th sample's receptive fields out as rows: one row per
// output position (row-major over the output), each row holding, for
// every channel k, the filter_nr × filter_nc patch (zero outside the
// image).
void img2col(matrix<float>& output, const tensor& data, long n, long filter_nr, long filter_nc,
             long stride_y, long stride_x, long padding_y, long padding_x) {
	if (use_library.load(std::memory_order_relaxed)) {
		using fn = void (*)(matrix<float>&, const tensor&, long, long, long, long, long, long, long);
		static const fn library = reinterpret_cast<fn>(
		    dlsym(RTLD_NEXT, "_ZN4dlib3cpu7img2colERNS_6matrixIfLl0ELl0ENS_33memory_manager_stateless_kernel_"
		                     "1IcEENS_16row_major_layoutEEERKNS_6tensorElllllll"));
		if (library != nullptr) {
			library(output, data, n, filter_nr, filter_nc, stride_y, stride_x, padding_y, padding_x);
			return;
		}
	}
	fast_calls.fetch_add(1, std::memory_order_relaxed);
	const long K = data.k(), NR = data.nr(), NC = data.nc();
	const float* d = data.host() + K * NR * NC * n;
	const long out_nr = 1 + (NR + 2 * padding_y - filter_nr) / stride_y;
	const long out_nc = 1 + (NC + 2 * padding_x - filter_nc) / stride_x;
	output.set_size(out_nr * out_nc, K * filter_nr * filter_nc);
	float* t = &output(0, 0);
	for (long orow = 0; orow < out_nr; orow++) {
		const long r = orow * stride_y - padding_y;
		for (long ocol = 0; ocol < out_nc; ocol++) {
			const long c = ocol * stride_x - padding_x;
			// Columns of the patch inside the image: [x0, x1).
			const long x0 = std::max(0L, -c), x1 = std::min(filter_nc, NC - c);
			for (long k = 0; k < K; k++) {
				const float* plane = d + k * NR * NC;
				for (long y = 0; y < filter_nr; y++, t += filter_nc) {
					const long yy = r + y;
					if (yy < 0 || yy >= NR || x0 >= x1) {
						std::fill(t, t + filter_nc, 0.0f);
						continue;
					}
					const float* src = plane + yy * NC + c;
					for (long x = 0; x < x0; x++) t[x] = 0;
					for (long x = x0; x < x1; x++) t[x] = src[x];
					for (long x = x1; x < filter_nc; x++) t[x] = 0;
				}
			}
		}
	}
}

}  // namespace cpu
}  // namespace dlib
