package store

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/visage/visage/migrations"
)

// migrationLockKey is the pg_advisory_lock key the migration runner holds.
// It is fixed (the ASCII of "visage"), the same in every replica and every
// version of the program, so that all openers of one database exclude each
// other; no other code takes advisory locks in this database.
const migrationLockKey int64 = 0x766973616765

// closeTimeout bounds closing the migration connection, which must happen
// even when the caller's context is already cancelled.
const closeTimeout = 5 * time.Second

// migratePostgres applies the embedded PostgreSQL migrations that the
// database lacks, holding the migration lock on a connection of its own.
//
// Without the lock, two replicas starting on an empty database would both
// find version 1 missing, and one would fail half-way (CREATE TABLE IF NOT
// EXISTS itself is not safe against a concurrent creation). A session
// lock, rather than one per transaction, covers the creation of
// schema_migrations and the version check too; closing the connection
// releases it even if the unlock is never sent. It needs a session of its
// own: through a pooler in transaction mode the lock would not hold.
func migratePostgres(ctx context.Context, cfg *pgx.ConnConfig, now func() time.Time) error {
	fsys, err := fs.Sub(migrations.Postgres, "postgres")
	if err != nil {
		return fmt.Errorf("migrate: %w", err)
	}
	ms, err := readMigrations(fsys)
	if err != nil {
		return fmt.Errorf("migrate: %w", err)
	}
	conn, err := pgx.ConnectConfig(ctx, cfg)
	if err != nil {
		return fmt.Errorf("connect: %w", err)
	}
	defer func() {
		closeCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), closeTimeout)
		defer cancel()
		_ = conn.Close(closeCtx)
	}()
	if _, err := conn.Exec(ctx, `SELECT pg_advisory_lock($1)`, migrationLockKey); err != nil {
		return fmt.Errorf("migrate: take lock: %w", err)
	}
	err = applyPostgresMigrations(ctx, conn, ms, now)
	if _, unlockErr := conn.Exec(ctx, `SELECT pg_advisory_unlock($1)`, migrationLockKey); unlockErr != nil && err == nil {
		err = fmt.Errorf("migrate: release lock: %w", unlockErr)
	}
	return err
}

// applyPostgresMigrations applies each migration the database has not
// recorded, in order, each in its own transaction together with its
// record in schema_migrations (PostgreSQL's DDL is transactional, so a
// failed migration leaves nothing behind). The caller holds the migration
// lock.
func applyPostgresMigrations(ctx context.Context, conn *pgx.Conn, ms []migration, now func() time.Time) error {
	const create = `CREATE TABLE IF NOT EXISTS schema_migrations (
		version    bigint NOT NULL PRIMARY KEY,
		applied_at bigint NOT NULL
	)`
	if _, err := conn.Exec(ctx, create); err != nil {
		return fmt.Errorf("create schema_migrations: %w", err)
	}
	if len(ms) > 0 {
		var newest *int64
		if err := conn.QueryRow(ctx, `SELECT max(version) FROM schema_migrations`).Scan(&newest); err != nil {
			return fmt.Errorf("read schema version: %w", err)
		}
		// A newer binary migrated this database; this one would run against
		// a schema it does not know.
		if newest != nil && *newest > ms[len(ms)-1].version {
			return fmt.Errorf("migrate: database schema version %d is newer than this program's %d", *newest, ms[len(ms)-1].version)
		}
	}
	for _, m := range ms {
		if err := applyPostgresMigration(ctx, conn, m, now); err != nil {
			return err
		}
	}
	return nil
}

// errApplied ends the transaction of a migration found recorded already.
var errApplied = errors.New("migration applied already")

// applyPostgresMigration applies m unless it is recorded already.
func applyPostgresMigration(ctx context.Context, conn *pgx.Conn, m migration, now func() time.Time) error {
	err := pgx.BeginFunc(ctx, conn, func(tx pgx.Tx) error {
		var applied bool
		err := tx.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM schema_migrations WHERE version = $1)`, m.version).Scan(&applied)
		if err != nil {
			return err
		}
		if applied {
			return errApplied
		}
		// Without arguments pgx sends the file in one simple-protocol
		// message, which may hold several statements.
		if _, err := tx.Exec(ctx, m.body); err != nil {
			return err
		}
		_, err = tx.Exec(ctx, `INSERT INTO schema_migrations (version, applied_at) VALUES ($1, $2)`,
			m.version, now().UnixNano())
		return err
	})
	if err != nil && !errors.Is(err, errApplied) {
		return fmt.Errorf("migrate %s: %w", m.name, err)
	}
	return nil
}
