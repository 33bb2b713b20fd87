// Package index holds Visage's vector indexes: descriptors of enrolled
// faces, searched by Euclidean distance within a collection. The metadata
// store keeps every descriptor and is the source of truth; an index is
// derived from it and can be rebuilt.
//
// Flat is the exact index: the baseline that approximate indexes (the
// embedded HNSW and Qdrant, still to come) are measured against, and a
// correct choice for small galleries.
package index
