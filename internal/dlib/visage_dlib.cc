// All of Visage's C++: dlib's detectors, shape predictor, chip extraction
// and ResNet, plus libjpeg decoding, behind the C interface in
// visage_dlib.h. Kept in one translation unit because including dlib/dnn.h
// costs tens of seconds of compile time.
#include "visage_dlib.h"

#include <csetjmp>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <exception>
#include <fstream>
#include <string>
#include <type_traits>
#include <vector>

#include <dlfcn.h>
#include <malloc.h>
#include <jpeglib.h>

#include <dlib/dnn.h>
#include <dlib/image_processing.h>
#include <dlib/image_processing/frontal_face_detector.h>
#include <dlib/image_transforms.h>

// rgb_view lets dlib read the caller's packed RGB buffer in place (dlib's
// generic image interface, found by argument-dependent lookup), so no copy
// of a full-resolution photo is made.
namespace visage {
struct rgb_view {
	const uint8_t* pix;
	long nc;
	long nr;
};
inline long num_rows(const rgb_view& v) { return v.nr; }
inline long num_columns(const rgb_view& v) { return v.nc; }
inline void* image_data(rgb_view& v) { return const_cast<uint8_t*>(v.pix); }
inline const void* image_data(const rgb_view& v) { return v.pix; }
inline long width_step(const rgb_view& v) { return v.nc * 3; }
}  // namespace visage

namespace dlib {
template <>
struct image_traits<visage::rgb_view> {
	typedef rgb_pixel pixel_type;
};
}  // namespace dlib

using visage::rgb_view;
using namespace dlib;

namespace {

char* dup_error(const std::string& msg) {
	char* s = static_cast<char*>(std::malloc(msg.size() + 1));
	if (s) std::memcpy(s, msg.c_str(), msg.size() + 1);
	return s;
}

rgb_view view_of(const vs_image& img) { return rgb_view{img.pix, img.width, img.height}; }

// The network of dlib's dnn_face_recognition_ex.cpp (ResNet-29, 128-D).
template <template <int, template <typename> class, int, typename> class block, int N,
          template <typename> class BN, typename SUBNET>
using residual = add_prev1<block<N, BN, 1, tag1<SUBNET>>>;
template <template <int, template <typename> class, int, typename> class block, int N,
          template <typename> class BN, typename SUBNET>
using residual_down = add_prev2<avg_pool<2, 2, 2, 2, skip1<tag2<block<N, BN, 2, tag1<SUBNET>>>>>>;
template <int N, template <typename> class BN, int stride, typename SUBNET>
using block = BN<con<N, 3, 3, 1, 1, relu<BN<con<N, 3, 3, stride, stride, SUBNET>>>>>;
template <int N, typename SUBNET>
using ares = relu<residual<block, N, affine, SUBNET>>;
template <int N, typename SUBNET>
using ares_down = relu<residual_down<block, N, affine, SUBNET>>;
template <typename SUBNET>
using alevel0 = ares_down<256, SUBNET>;
template <typename SUBNET>
using alevel1 = ares<256, ares<256, ares_down<256, SUBNET>>>;
template <typename SUBNET>
using alevel2 = ares<128, ares<128, ares_down<128, SUBNET>>>;
template <typename SUBNET>
using alevel3 = ares<64, ares<64, ares<64, ares_down<64, SUBNET>>>>;
template <typename SUBNET>
using alevel4 = ares<32, ares<32, ares<32, SUBNET>>>;
using anet_type = loss_metric<fc_no_bias<
    128, avg_pool_everything<alevel0<alevel1<alevel2<alevel3<alevel4<
             max_pool<3, 3, 2, 2, relu<affine<con<32, 7, 7, 2, 2, input_rgb_image_sized<150>>>>>>>>>>>>>;

// The MMOD CNN detector of dlib's dnn_mmod_face_detection_ex.cpp.
template <long num_filters, typename SUBNET>
using con5d = con<num_filters, 5, 5, 2, 2, SUBNET>;
template <long num_filters, typename SUBNET>
using con5 = con<num_filters, 5, 5, 1, 1, SUBNET>;
template <typename SUBNET>
using downsampler =
    relu<affine<con5d<32, relu<affine<con5d<32, relu<affine<con5d<16, SUBNET>>>>>>>>>;
template <typename SUBNET>
using rcon5 = relu<affine<con5<45, SUBNET>>>;
using mmod_net_type =
    loss_mmod<con<1, 9, 9, 1, 1, rcon5<rcon5<rcon5<downsampler<input_rgb_image_pyramid<pyramid_down<6>>>>>>>>;

rectangle to_rect(const vs_rect& r) { return rectangle(r.left, r.top, r.right, r.bottom); }

// resized returns img scaled to width×height with bilinear interpolation.
matrix<rgb_pixel> resized(const rgb_view& img, long width, long height) {
	matrix<rgb_pixel> out(height, width);
	resize_image(img, out, interpolate_bilinear());
	return out;
}

// jpeg_guard turns libjpeg's fatal errors into a longjmp and counts
// warnings (libjpeg only warns on truncated data and pads with grey).
struct jpeg_guard {
	jpeg_error_mgr pub;
	std::jmp_buf jump;
	char message[JMSG_LENGTH_MAX];
	int warnings;
};

void jpeg_fail(j_common_ptr cinfo) {
	jpeg_guard* g = reinterpret_cast<jpeg_guard*>(cinfo->err);
	(*cinfo->err->format_message)(cinfo, g->message);
	std::longjmp(g->jump, 1);
}

void jpeg_note(j_common_ptr cinfo, int level) {
	if (level < 0) {
		jpeg_guard* g = reinterpret_cast<jpeg_guard*>(cinfo->err);
		if (g->warnings == 0) (*cinfo->err->format_message)(cinfo, g->message);
		g->warnings++;
	}
}

// Type traits that let one visitor tell the network's layer kinds apart.
template <typename T>
struct is_con : std::false_type {};
template <long a, long b, long c, int d, int e, int f, int g>
struct is_con<con_<a, b, c, d, e, f, g>> : std::true_type {};
template <typename T>
struct is_fc : std::false_type {};
template <unsigned long a, fc_bias_mode b>
struct is_fc<fc_<a, b>> : std::true_type {};

// A parameter tensor of the network to fill, in visiting order.
struct layer_ref {
	enum kind_t { conv, scale, fc } kind;
	tensor* params;   // con_ and fc_: filters (++ bias)
	affine_* affine;  // affine_: gamma and beta
	long filters, rows, cols;  // con_ only
};

struct collect_layers {
	std::vector<layer_ref>* out;
	template <typename L>
	void operator()(L& l) const {
		if constexpr (std::is_same<L, affine_>::value) {
			out->push_back(layer_ref{layer_ref::scale, nullptr, &l, 0, 0, 0});
		} else if constexpr (is_con<L>::value) {
			out->push_back(layer_ref{layer_ref::conv, &l.get_layer_params(), nullptr, l.num_filters(),
			                         l.nr(), l.nc()});
		} else if constexpr (is_fc<L>::value) {
			out->push_back(layer_ref{layer_ref::fc, &l.get_layer_params(), nullptr, 0, 0, 0});
		}
	}
};

struct set_conv_mode {
	void operator()(affine_& l) const { l = affine_(CONV_MODE); }
};

// Process-wide settings, applied when the program loads.
//
// Visage parallelises across faces, one network per worker: OpenBLAS's
// own threads would only compete with them (a batch of 8 got slower with
// two). Unless the user set OPENBLAS_NUM_THREADS, pin OpenBLAS to one
// thread when the library loads. dlsym keeps this a no-op with other BLAS.
//
// dlib allocates its convolution scratch matrices (megabytes) anew on every
// layer of every pass. glibc serves blocks that large with mmap and returns
// them on free, so each pass page-faulted its scratch memory in again: 11%
// of the end-to-end time in the kernel. Keeping such blocks on the heap
// (a higher mmap threshold, and no trimming below 256 MiB) reuses them.
struct process_setup {
	process_setup() {
		mallopt(M_MMAP_THRESHOLD, 64 << 20);
		mallopt(M_TRIM_THRESHOLD, 256 << 20);
		if (std::getenv("OPENBLAS_NUM_THREADS") != nullptr) return;
		using setter = void (*)(int);
		if (auto set = reinterpret_cast<setter>(dlsym(RTLD_DEFAULT, "openblas_set_num_threads")))
			set(1);
	}
} const setup;

}  // namespace

extern "C" {

char* vs_jpeg_decode(const uint8_t* data, size_t len, uint8_t* pix, long width, long height) {
	jpeg_decompress_struct cinfo;
	jpeg_guard guard;
	std::memset(&guard, 0, sizeof guard);
	cinfo.err = jpeg_std_error(&guard.pub);
	guard.pub.error_exit = jpeg_fail;
	guard.pub.emit_message = jpeg_note;
	if (setjmp(guard.jump)) {
		jpeg_destroy_decompress(&cinfo);
		return dup_error(std::string("corrupt: ") + guard.message);
	}
	jpeg_create_decompress(&cinfo);
	jpeg_mem_src(&cinfo, const_cast<unsigned char*>(data), static_cast<unsigned long>(len));
	jpeg_read_header(&cinfo, TRUE);
	if (cinfo.jpeg_color_space == JCS_CMYK || cinfo.jpeg_color_space == JCS_YCCK) {
		jpeg_destroy_decompress(&cinfo);
		return dup_error("cmyk: four-component JPEG");
	}
	jpeg_start_decompress(&cinfo);
	const int comps = cinfo.output_components;
	if ((long)cinfo.output_width != width || (long)cinfo.output_height != height ||
	    (comps != 1 && comps != 3)) {
		jpeg_destroy_decompress(&cinfo);
		return dup_error("corrupt: size or components differ from the header");
	}
	std::vector<uint8_t> row(comps == 1 ? (size_t)width : 0);
	while (cinfo.output_scanline < cinfo.output_height) {
		uint8_t* dst = pix + (size_t)cinfo.output_scanline * width * 3;
		JSAMPROW rows[1] = {comps == 3 ? dst : row.data()};
		jpeg_read_scanlines(&cinfo, rows, 1);
		if (comps == 1)
			for (long x = 0; x < width; x++) dst[3 * x] = dst[3 * x + 1] = dst[3 * x + 2] = row[x];
	}
	jpeg_finish_decompress(&cinfo);
	jpeg_destroy_decompress(&cinfo);
	if (guard.warnings > 0) return dup_error(std::string("corrupt: ") + guard.message);
	return nullptr;
}

void* vs_hog_new(void) {
	try {
		return new frontal_face_detector(get_frontal_face_detector());
	} catch (...) {
		return nullptr;
	}
}

void vs_hog_free(void* d) { delete static_cast<frontal_face_detector*>(d); }

int vs_hog_detect(void* d, vs_image img, long width, long height, double adjust_threshold,
                  vs_rect* out, int max_out, char** err) {
	try {
		auto& det = *static_cast<frontal_face_detector*>(d);
		std::vector<rect_detection> dets;
		rgb_view v = view_of(img);
		if (width == img.width && height == img.height) {
			det(v, dets, adjust_threshold);
		} else {
			matrix<rgb_pixel> small = resized(v, width, height);
			det(small, dets, adjust_threshold);
		}
		int n = 0;
		for (const auto& r : dets) {
			if (n == max_out) break;
			out[n++] = vs_rect{r.rect.left(), r.rect.top(), r.rect.right(), r.rect.bottom(),
			                   r.detection_confidence, (int)r.weight_index};
		}
		return n;
	} catch (const std::exception& e) {
		*err = dup_error(e.what());
		return -1;
	}
}

void* vs_cnn_load(const char* path, char** err) {
	try {
		auto* net = new mmod_net_type;
		deserialize(path) >> *net;
		return net;
	} catch (const std::exception& e) {
		*err = dup_error(e.what());
		return nullptr;
	}
}

void vs_cnn_free(void* d) { delete static_cast<mmod_net_type*>(d); }

int vs_cnn_detect(void* d, vs_image img, long width, long height, double adjust_threshold,
                  vs_rect* out, int max_out, char** err) {
	try {
		auto& net = *static_cast<mmod_net_type*>(d);
		matrix<rgb_pixel> m = resized(view_of(img), width, height);
		const std::vector<mmod_rect>& found = net.process(m, adjust_threshold);
		int n = 0;
		for (const auto& r : found) {
			if (n == max_out) break;
			out[n++] = vs_rect{r.rect.left(), r.rect.top(), r.rect.right(), r.rect.bottom(),
			                   r.detection_confidence, 0};
		}
		return n;
	} catch (const std::exception& e) {
		*err = dup_error(e.what());
		return -1;
	}
}

void* vs_sp_load(const char* path, int* num_parts, char** err) {
	try {
		auto* sp = new shape_predictor;
		deserialize(path) >> *sp;
		*num_parts = (int)sp->num_parts();
		return sp;
	} catch (const std::exception& e) {
		*err = dup_error(e.what());
		return nullptr;
	}
}

void vs_sp_free(void* sp) { delete static_cast<shape_predictor*>(sp); }

char* vs_sp_predict(void* sp, vs_image img, vs_rect box, long* points) {
	try {
		const auto& pred = *static_cast<shape_predictor*>(sp);
		full_object_detection shape = pred(view_of(img), to_rect(box));
		for (unsigned long i = 0; i < shape.num_parts(); i++) {
			points[2 * i] = shape.part(i).x();
			points[2 * i + 1] = shape.part(i).y();
		}
		return nullptr;
	} catch (const std::exception& e) {
		return dup_error(e.what());
	}
}

char* vs_chip(vs_image img, vs_rect box, const long* points, int num_parts, long size,
              double padding, uint8_t* chip) {
	try {
		std::vector<point> parts(num_parts);
		for (int i = 0; i < num_parts; i++) parts[i] = point(points[2 * i], points[2 * i + 1]);
		full_object_detection shape(to_rect(box), parts);
		matrix<rgb_pixel> out;
		extract_image_chip(view_of(img), get_face_chip_details(shape, size, padding), out);
		std::memcpy(chip, &out(0, 0), (size_t)size * size * 3);
		return nullptr;
	} catch (const std::exception& e) {
		return dup_error(e.what());
	}
}

char* vs_jitter(const uint8_t* chip, int n, uint64_t seed, uint8_t* out) {
	try {
		matrix<rgb_pixel> src(150, 150);
		std::memcpy(&src(0, 0), chip, 150 * 150 * 3);
		dlib::rand rnd(seed);
		for (int i = 0; i < n; i++) {
			matrix<rgb_pixel> j = jitter_image(src, rnd);
			std::memcpy(out + (size_t)i * 150 * 150 * 3, &j(0, 0), 150 * 150 * 3);
		}
		return nullptr;
	} catch (const std::exception& e) {
		return dup_error(e.what());
	}
}

void* vs_net_load(const char* path, char** err) {
	try {
		auto* net = new anet_type;
		deserialize(path) >> *net;
		return net;
	} catch (const std::exception& e) {
		*err = dup_error(e.what());
		return nullptr;
	}
}

void vs_net_free(void* n) { delete static_cast<anet_type*>(n); }

char* vs_net_embed(void* n, const uint8_t* chips, int count, float* out) {
	try {
		auto& net = *static_cast<anet_type*>(n);
		std::vector<matrix<rgb_pixel>> batch(count);
		for (int i = 0; i < count; i++) {
			batch[i].set_size(150, 150);
			std::memcpy(&batch[i](0, 0), chips + (size_t)i * 150 * 150 * 3, 150 * 150 * 3);
		}
		net(batch, count);
		// Recompute the final fully connected layer with a fixed summation
		// order: BLAS's sgemm rounds differently for different batch
		// sizes, and a face's descriptor must not depend on which other
		// faces shared its batch. Every earlier layer works per sample.
		const tensor& in = layer<2>(net).get_output();
		const tensor& w = layer<1>(net).layer_details().get_layer_params();
		const long dims = in.k() * in.nr() * in.nc();
		if (in.num_samples() != count || (long)w.size() != dims * 128)
			return dup_error("unexpected network layout");
		const float* x = in.host();
		const float* W = w.host();
		for (int n = 0; n < count; n++) {
			for (long j = 0; j < 128; j++) {
				double acc = 0;
				for (long i = 0; i < dims; i++) acc += (double)x[n * dims + i] * (double)W[i * 128 + j];
				out[(size_t)n * 128 + j] = (float)acc;
			}
		}
		return nullptr;
	} catch (const std::exception& e) {
		return dup_error(e.what());
	}
}

char* vs_net_build(const float* values, const long* sizes, int num_tensors, const char* path) {
	try {
		anet_type net;
		visit_computational_layers(net, set_conv_mode{});
		// One forward pass allocates every layer's parameters.
		matrix<rgb_pixel> blank(150, 150);
		blank = rgb_pixel(0, 0, 0);
		net(blank);

		std::vector<layer_ref> layers;
		visit_computational_layers(net, collect_layers{&layers});
		std::reverse(layers.begin(), layers.end());  // dlib visits from the output

		int t = 0;
		size_t off = 0;
		auto take = [&](long want, const char* what) -> const float* {
			if (t >= num_tensors) throw std::runtime_error(std::string("too few tensors at ") + what);
			if (sizes[t] != want)
				throw std::runtime_error("tensor " + std::to_string(t) + " (" + what + ") has " +
				                         std::to_string(sizes[t]) + " values, want " +
				                         std::to_string(want));
			const float* p = values + off;
			off += (size_t)sizes[t];
			t++;
			return p;
		};
		for (size_t li = 0; li < layers.size(); li++) {
			layer_ref& L = layers[li];
			switch (L.kind) {
			case layer_ref::conv: {
				// con_ params: filters O×I×H×W then O biases; face-api
				// stores H×W×I×O (HWIO). No kernel flip.
				tensor& p = *L.params;
				const long O = L.filters, H = L.rows, W = L.cols;
				const long filt = (long)p.size() - O;
				const long I = filt / (O * H * W);
				float* dst = p.host();
				const float* f = take(filt, "conv filters");
				for (long o = 0; o < O; o++)
					for (long i = 0; i < I; i++)
						for (long h = 0; h < H; h++)
							for (long w = 0; w < W; w++)
								dst[((o * I + i) * H + h) * W + w] = f[((h * W + w) * I + i) * O + o];
				const float* b = take(O, "conv bias");
				std::memcpy(dst + filt, b, O * sizeof(float));
				break;
			}
			case layer_ref::scale: {
				auto g = L.affine->get_gamma();
				auto bt = L.affine->get_beta();
				const float* gs = take((long)g.size(), "scale weights");
				std::memcpy(g.host(), gs, g.size() * sizeof(float));
				const float* bs = take((long)bt.size(), "scale biases");
				std::memcpy(bt.host(), bs, bt.size() * sizeof(float));
				break;
			}
			case layer_ref::fc: {
				tensor& p = *L.params;
				const float* f = take((long)p.size(), "fc");
				std::memcpy(p.host(), f, p.size() * sizeof(float));
				break;
			}
			}
		}
		if (t != num_tensors)
			throw std::runtime_error("only " + std::to_string(t) + " of " +
			                         std::to_string(num_tensors) + " tensors used");
		net.clean();
		serialize(path) << net;
		return nullptr;
	} catch (const std::exception& e) {
		return dup_error(e.what());
	}
}

}  // extern "C"
