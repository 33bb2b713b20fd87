// Package index holds Visage's vector indexes: descriptors of enrolled
// faces, searched by Euclidean distance. Vectors live in named spaces (the
// gallery keeps one per collection) under uint64 keys (the store's face
// keys). The metadata store keeps every descriptor and is the source of
// truth; an index is derived from it and can be rebuilt, and Keys lets the
// gallery reconcile the two after a crash.
//
// Flat is the exact index: the baseline the approximate ones are measured
// against, and a correct choice for small galleries. HNSW is the embedded
// approximate index (hnswlib, through internal/dlib), with snapshots on
// disk; docs/benchmarks.md ("Vector index") has its figures and the
// reasons for DefaultHNSWParams. Qdrant keeps the vectors in a Qdrant
// server or cluster, for stateless replicas (one shared collection, a
// payload filter per space; see its doc).
//
// Every implementation passes the conformance suite in index/indextest;
// index/qdranttest is an in-process Qdrant for tests.
package index
