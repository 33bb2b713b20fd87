// Package index will hold the vector index interface and its embedded and
// Qdrant implementations (see ../shared/DESIGN.md). It is empty until the
// gallery service issue: the engine stops at descriptors.
package index
