// Package migrations embeds Visage's SQL schema migrations so that the
// binaries carry them and the store applies them at start-up.
//
// Each dialect has its own directory of files named NNNN_description.sql;
// the numeric prefix is the version, applied in ascending order, each file
// exactly once. Files are never edited once released: a schema change is
// a new file.
package migrations

import "embed"

// SQLite holds the migrations of the embedded SQLite store, under the
// directory "sqlite".
//
//go:embed sqlite/*.sql
var SQLite embed.FS

// Postgres holds the migrations of the scale-out PostgreSQL store, under
// the directory "postgres".
//
//go:embed postgres/*.sql
var Postgres embed.FS
