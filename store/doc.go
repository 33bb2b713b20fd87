// Package store will hold the metadata store interface and its SQLite and
// Postgres implementations (see ../shared/DESIGN.md). It is empty until
// the gallery service issue.
package store
