package store

import (
	"cmp"
	"context"
	"database/sql"
	"fmt"
	"io/fs"
	"path"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/visage/visage/migrations"
)

// migration is one schema migration file.
type migration struct {
	version int64
	name    string
	body    string
}

// readMigrations lists the NNNN_description.sql files at the top of fsys
// in version order. Other files are ignored; two files with one version
// are an error.
func readMigrations(fsys fs.FS) ([]migration, error) {
	entries, err := fs.ReadDir(fsys, ".")
	if err != nil {
		return nil, fmt.Errorf("read migrations: %w", err)
	}
	var ms []migration
	for _, e := range entries {
		name := e.Name()
		if e.IsDir() || path.Ext(name) != ".sql" {
			continue
		}
		prefix, _, ok := strings.Cut(name, "_")
		if !ok {
			return nil, fmt.Errorf("read migrations: %s: name is not NNNN_description.sql", name)
		}
		v, err := strconv.ParseInt(prefix, 10, 64)
		if err != nil || v <= 0 {
			return nil, fmt.Errorf("read migrations: %s: version %q is not a positive number", name, prefix)
		}
		body, err := fs.ReadFile(fsys, name)
		if err != nil {
			return nil, fmt.Errorf("read migrations: %w", err)
		}
		ms = append(ms, migration{version: v, name: name, body: string(body)})
	}
	slices.SortFunc(ms, func(a, b migration) int { return cmp.Compare(a.version, b.version) })
	for i := 1; i < len(ms); i++ {
		if ms[i].version == ms[i-1].version {
			return nil, fmt.Errorf("read migrations: %s and %s share version %d", ms[i-1].name, ms[i].name, ms[i].version)
		}
	}
	return ms, nil
}

// migrateSQLite applies the embedded SQLite migrations that db lacks.
func migrateSQLite(ctx context.Context, db *sql.DB, now func() time.Time) error {
	fsys, err := fs.Sub(migrations.SQLite, "sqlite")
	if err != nil {
		return fmt.Errorf("migrate: %w", err)
	}
	ms, err := readMigrations(fsys)
	if err != nil {
		return fmt.Errorf("migrate: %w", err)
	}
	return applySQLiteMigrations(ctx, db, ms, now)
}

// applySQLiteMigrations applies each migration db has not recorded, in
// order, each in its own transaction together with its record in
// schema_migrations. db's transactions must start with BEGIN IMMEDIATE:
// the write lock is then taken before the version is checked, so of two
// processes opening a new file at once one applies a migration and the
// other, once it gets the lock, sees it recorded and skips it.
func applySQLiteMigrations(ctx context.Context, db *sql.DB, ms []migration, now func() time.Time) error {
	const create = `CREATE TABLE IF NOT EXISTS schema_migrations (
		version    INTEGER NOT NULL PRIMARY KEY,
		applied_at INTEGER NOT NULL
	)`
	if _, err := db.ExecContext(ctx, create); err != nil {
		return fmt.Errorf("create schema_migrations: %w", err)
	}
	if len(ms) > 0 {
		var newest sql.NullInt64
		if err := db.QueryRowContext(ctx, `SELECT max(version) FROM schema_migrations`).Scan(&newest); err != nil {
			return fmt.Errorf("read schema version: %w", err)
		}
		// A newer binary migrated this file; this one would run against a
		// schema it does not know.
		if newest.Valid && newest.Int64 > ms[len(ms)-1].version {
			return fmt.Errorf("migrate: database schema version %d is newer than this program's %d", newest.Int64, ms[len(ms)-1].version)
		}
	}
	for _, m := range ms {
		if err := applySQLiteMigration(ctx, db, m, now); err != nil {
			return err
		}
	}
	return nil
}

// applySQLiteMigration applies m unless it is recorded already.
func applySQLiteMigration(ctx context.Context, db *sql.DB, m migration, now func() time.Time) error {
	tx, err := db.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("migrate %s: %w", m.name, err)
	}
	var n int
	err = tx.QueryRowContext(ctx, `SELECT count(*) FROM schema_migrations WHERE version = ?`, m.version).Scan(&n)
	if err == nil && n > 0 {
		return rollback(tx)
	}
	if err == nil {
		_, err = tx.ExecContext(ctx, m.body)
	}
	if err == nil {
		_, err = tx.ExecContext(ctx, `INSERT INTO schema_migrations (version, applied_at) VALUES (?, ?)`,
			m.version, now().UnixNano())
	}
	if err != nil {
		_ = rollback(tx)
		return fmt.Errorf("migrate %s: %w", m.name, err)
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("migrate %s: commit: %w", m.name, err)
	}
	return nil
}
