// C interface between Go and dlib. Every function that can fail returns
// a malloc'd error string (freed by the caller) or NULL; none throws.
#ifndef VISAGE_DLIB_H
#define VISAGE_DLIB_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

// A read-only view of packed 8-bit RGB pixels owned by the caller.
typedef struct {
	const uint8_t* pix;
	long width;
	long height;
} vs_image;

typedef struct {
	long left, top, right, bottom;
	double score;
	int kind; // HOG: sub-detector index (0 frontal, 1 left, 2 right, 3/4 rotated); CNN: 0
} vs_rect;

// JPEG decoding with libjpeg (the same library and defaults as dlib's
// loader, so pixels match what dlib and go-face see) into the caller's
// buffer of width*height*3 bytes; the image must have exactly that size.
// Returns NULL, or an error string starting with "cmyk:" (caller decodes
// another way) or "corrupt:".
char* vs_jpeg_decode(const uint8_t* data, size_t len, uint8_t* pix, long width, long height);

// HOG frontal face detector (dlib's get_frontal_face_detector); not safe
// for concurrent use.
void* vs_hog_new(void);
void vs_hog_free(void* d);
// Detects on img resized to (width, height) when they differ from the
// image's; rects are in the resized frame. Returns the count or -1.
int vs_hog_detect(void* d, vs_image img, long width, long height, double adjust_threshold,
                  vs_rect* out, int max_out, char** err);

// CNN (MMOD) face detector; not safe for concurrent use.
void* vs_cnn_load(const char* path, char** err);
void vs_cnn_free(void* d);
int vs_cnn_detect(void* d, vs_image img, long width, long height, double adjust_threshold,
                  vs_rect* out, int max_out, char** err);

// Shape predictor; safe for concurrent use (dlib's operator() is const).
void* vs_sp_load(const char* path, int* num_parts, char** err);
void vs_sp_free(void* sp);
// Writes num_parts (x, y) pairs into points.
char* vs_sp_predict(void* sp, vs_image img, vs_rect box, long* points);

// Extracts the aligned chip (size×size×3) for a 5- or 68-point shape.
char* vs_chip(vs_image img, vs_rect box, const long* points, int num_parts,
              long size, double padding, uint8_t* chip);

// dlib's jitter_image on a 150×150 chip, n times, deterministic per seed.
char* vs_jitter(const uint8_t* chip, int n, uint64_t seed, uint8_t* out);

// ResNet face recognition network (dlib's anet_type); not safe for
// concurrent use.
void* vs_net_load(const char* path, char** err);
void vs_net_free(void* n);
// chips: n 150×150 RGB chips back to back; out: n×128 floats.
char* vs_net_embed(void* n, const uint8_t* chips, int count, float* out);
// Builds the network from weights in the face-api manifest order
// (values: every tensor dequantised, concatenated; sizes: element count of
// each of the 117 tensors) and serialises it to path in dlib's format.
char* vs_net_build(const float* values, const long* sizes, int num_tensors, const char* path);

#ifdef __cplusplus
}
#endif

#endif
