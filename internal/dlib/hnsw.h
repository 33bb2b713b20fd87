// C interface between Go and hnswlib's HierarchicalNSW<float> over squared
// Euclidean distance. Functions that can fail return a malloc'd error
// string (freed by the caller) or NULL, or take char** err; none throws.
#ifndef VISAGE_HNSW_H
#define VISAGE_HNSW_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

// Result codes of vs_hnsw_add.
enum { VS_HNSW_OK = 0, VS_HNSW_FULL = 1, VS_HNSW_ERROR = -1 };

// A graph for dim-dimensional vectors with room for max_elements (live or
// deleted) before vs_hnsw_resize. seed fixes the level generator.
void* vs_hnsw_new(int dim, size_t max_elements, int m, int ef_construction, uint64_t seed, char** err);
// Reads a graph written by vs_hnsw_save; refuses one of another dimension
// or with links that point outside the graph.
void* vs_hnsw_load(const char* path, int dim, size_t max_elements, char** err);
void vs_hnsw_free(void* h);

// Adds or replaces (in place) the vector of label; a deleted label comes
// back. Safe concurrently with other adds, deletes and searches, but not
// with resize, save or free. Returns VS_HNSW_FULL, without changing
// anything, when a new label finds no room.
int vs_hnsw_add(void* h, uint64_t label, const float* vec, char** err);
// Marks label deleted; returns 1 if it was live, 0 if unknown or already
// deleted. Same concurrency as vs_hnsw_add.
int vs_hnsw_delete(void* h, uint64_t label);
// Writes up to k nearest live labels and their squared distances, nearest
// first (equal distances by label), exploring max(ef, k) candidates.
// Returns the count, or -1.
int vs_hnsw_search(void* h, const float* q, int k, int ef, uint64_t* labels, float* dists, char** err);

// Grows (or shrinks to no less than the elements held) the room; needs
// exclusive access.
char* vs_hnsw_resize(void* h, size_t max_elements);
// Writes the graph in hnswlib's format; needs no concurrent add or delete.
char* vs_hnsw_save(void* h, const char* path);

// Live elements, all elements (live and deleted) and room.
size_t vs_hnsw_live(void* h);
size_t vs_hnsw_size(void* h);
size_t vs_hnsw_capacity(void* h);
// Writes up to cap live labels; returns how many it wrote.
size_t vs_hnsw_labels(void* h, uint64_t* out, size_t cap);
// Copies label's vector into out (dim floats); returns 0 if it is not live.
int vs_hnsw_vector(void* h, uint64_t label, float* out);

#ifdef __cplusplus
}
#endif

#endif
