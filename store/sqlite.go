package store

import (
	"context"
	"database/sql"
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"runtime"
	"strings"
	"time"

	"modernc.org/sqlite"
	sqlite3 "modernc.org/sqlite/lib"
)

// SQLite is the embedded metadata store: one database file in WAL mode.
//
// SQLite admits one writer at a time whatever the number of connections,
// so all writes go through a pool of exactly one connection whose
// transactions start with BEGIN IMMEDIATE: writers queue in Go instead of
// failing with SQLITE_BUSY half-way through a transaction. Reads use a
// separate pool of read-only connections, which WAL never blocks.
type SQLite struct {
	write *sql.DB
	read  *sql.DB
	// now is the clock; a field rather than a package variable so that
	// tests can pin it per store.
	now func() time.Time
	// deleteBatch is the number of rows DeleteCollection removes per
	// statement (defaultDeleteBatch; tests lower it).
	deleteBatch int
	// keysChunk is the number of keys IndexedKeys reads per statement
	// (defaultKeysChunk; tests lower it).
	keysChunk int
}

// busyTimeoutMS is how long a connection waits for a lock held by another
// process (or, while migrating, another opener) before giving up.
const busyTimeoutMS = 10000

// defaultDeleteBatch is the number of faces DeleteCollection deletes per
// statement. A face costs about 40 µs of CPU to delete (four indexes, two
// of them on random UUIDs) whatever the batch size, from 2000 to 200000
// rows, so the batch size only sets how long other writers wait: about a
// quarter of a second here. See BenchmarkDeleteCollection1M.
const defaultDeleteBatch = 5000

// defaultKeysChunk: see IndexedKeys.
const defaultKeysChunk = 100000

// mmapBytes is the most of the database file each connection maps.
const mmapBytes = 1 << 30

// writeCacheKiB is the page cache of the write connection.
const writeCacheKiB = 64 << 10

// inBatch is the number of values bound in one IN (...) list: well under
// SQLite's variable limit (32766 here, 999 in old builds) and Postgres's.
const inBatch = 500

// OpenSQLite opens (creating it if absent) the database file at path,
// configures it for durability (WAL, synchronous=FULL: an acknowledged
// write survives a crash of the process or the machine) and applies the
// missing migrations. Several processes may open the same file at once.
func OpenSQLite(ctx context.Context, path string) (*SQLite, error) {
	if path == "" || path == ":memory:" {
		// Each connection would get its own empty in-memory database.
		return nil, fmt.Errorf("open sqlite: %w: a file path is required", ErrInvalid)
	}
	// Every connection: wait for locks rather than fail, enforce foreign
	// keys, fsync the WAL at each commit, keep statement journals (written
	// for every multi-index insert) in memory instead of temporary files,
	// and read the file through mmap, which saves a pread system call per
	// page on full-collection scans.
	common := fmt.Sprintf("_busy_timeout=%d&_foreign_keys=1&_synchronous=FULL"+
		"&_pragma=temp_store(memory)&_pragma=mmap_size(%d)", busyTimeoutMS, mmapBytes)
	// The writer gets a larger page cache: a random-UUID unique index at
	// 1M faces does not fit the default 2 MiB, and then every insert
	// rereads index pages.
	write, err := sql.Open("sqlite", sqliteURI(path)+"?"+common+
		fmt.Sprintf("&_pragma=cache_size(-%d)&_txlock=immediate", writeCacheKiB))
	if err != nil {
		return nil, fmt.Errorf("open sqlite: %w", err)
	}
	write.SetMaxOpenConns(1)
	write.SetMaxIdleConns(1)
	write.SetConnMaxLifetime(0)
	write.SetConnMaxIdleTime(0)
	// The write connection is opened first so that the file exists and is
	// in WAL mode before any reader looks at it.
	if err := setWAL(ctx, write); err != nil {
		_ = write.Close()
		return nil, fmt.Errorf("open sqlite %s: %w", path, err)
	}
	read, err := sql.Open("sqlite", sqliteURI(path)+"?"+common+"&_query_only=1")
	if err != nil {
		_ = write.Close()
		return nil, fmt.Errorf("open sqlite: %w", err)
	}
	readers := max(4, runtime.GOMAXPROCS(0))
	read.SetMaxOpenConns(readers)
	read.SetMaxIdleConns(readers)
	s := &SQLite{write: write, read: read, now: time.Now, deleteBatch: defaultDeleteBatch, keysChunk: defaultKeysChunk}
	if err := s.checkPragmas(ctx); err != nil {
		_ = s.Close()
		return nil, err
	}
	if err := migrateSQLite(ctx, write, s.now); err != nil {
		_ = s.Close()
		return nil, err
	}
	return s, nil
}

// setWAL switches the database to write-ahead logging. The journal mode
// is stored in the file, so new connections inherit it. While another
// connection (another process opening a new file at the same time) holds
// the lock the switch needs, SQLite answers SQLITE_BUSY at once, without
// waiting busy_timeout, so the switch is retried here for as long.
func setWAL(ctx context.Context, db *sql.DB) error {
	deadline := time.Now().Add(busyTimeoutMS * time.Millisecond)
	for {
		var mode string
		err := db.QueryRowContext(ctx, "PRAGMA journal_mode = WAL").Scan(&mode)
		if err == nil {
			if !strings.EqualFold(mode, "wal") {
				return fmt.Errorf("set journal mode: got %q, want wal", mode)
			}
			return nil
		}
		if sqliteCode(err)&0xff != sqlite3.SQLITE_BUSY || time.Now().After(deadline) {
			return fmt.Errorf("set journal mode: %w", err)
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("set journal mode: %w", ctx.Err())
		case <-time.After(10 * time.Millisecond):
		}
	}
}

// sqliteURI turns a file path into a file: URI so that any path works,
// including one with '?' or '#' in it, which would otherwise start the
// DSN's parameters.
func sqliteURI(path string) string {
	r := strings.NewReplacer("%", "%25", "?", "%3f", "#", "%23")
	return "file:" + r.Replace(path)
}

// checkPragmas verifies that the durability settings took effect: a
// journal mode silently left at "delete" (say, on a file system without
// shared memory) would change the crash guarantees.
func (s *SQLite) checkPragmas(ctx context.Context) error {
	var mode string
	var syncLevel, fk int
	conn, err := s.write.Conn(ctx)
	if err != nil {
		return fmt.Errorf("check pragmas: %w", err)
	}
	defer func() { _ = conn.Close() }()
	if err := conn.QueryRowContext(ctx, "PRAGMA journal_mode").Scan(&mode); err != nil {
		return fmt.Errorf("check journal mode: %w", err)
	}
	if err := conn.QueryRowContext(ctx, "PRAGMA synchronous").Scan(&syncLevel); err != nil {
		return fmt.Errorf("check synchronous: %w", err)
	}
	if err := conn.QueryRowContext(ctx, "PRAGMA foreign_keys").Scan(&fk); err != nil {
		return fmt.Errorf("check foreign keys: %w", err)
	}
	const full = 2
	if !strings.EqualFold(mode, "wal") || syncLevel != full || fk != 1 {
		return fmt.Errorf("check pragmas: journal_mode=%s synchronous=%d foreign_keys=%d, want wal, 2, 1", mode, syncLevel, fk)
	}
	return nil
}

// Close closes both connection pools.
func (s *SQLite) Close() error {
	return errors.Join(s.read.Close(), s.write.Close())
}

// inTx runs fn in a write transaction (BEGIN IMMEDIATE), committing if it
// returns nil. fn must not use s.write itself: the pool has one
// connection, which the transaction holds.
func (s *SQLite) inTx(ctx context.Context, fn func(tx *sql.Tx) error) error {
	tx, err := s.write.BeginTx(ctx, nil)
	if err != nil {
		return err
	}
	if err := fn(tx); err != nil {
		return errors.Join(err, rollback(tx))
	}
	return tx.Commit()
}

// inReadTx runs fn in a read transaction, so that its queries see one
// snapshot of the database.
func (s *SQLite) inReadTx(ctx context.Context, fn func(tx *sql.Tx) error) error {
	tx, err := s.read.BeginTx(ctx, &sql.TxOptions{ReadOnly: true})
	if err != nil {
		return err
	}
	if err := fn(tx); err != nil {
		return errors.Join(err, rollback(tx))
	}
	return tx.Commit()
}

// rollback rolls tx back, ignoring the error of a transaction that is
// already finished (for instance by a cancelled context).
func rollback(tx *sql.Tx) error {
	if err := tx.Rollback(); err != nil && !errors.Is(err, sql.ErrTxDone) {
		return err
	}
	return nil
}

// timestamp returns the current time as stored: UTC, nanoseconds, no
// monotonic reading, so that it compares equal to what is read back.
func (s *SQLite) timestamp() time.Time {
	return fromNanos(s.now().UnixNano())
}

// toNanos is the storage form of a time.
func toNanos(t time.Time) int64 { return t.UnixNano() }

// fromNanos is the inverse of toNanos.
func fromNanos(n int64) time.Time { return time.Unix(0, n).UTC() }

// nullNanos maps a nullable stored time to a *time.Time.
func nullNanos(n sql.NullInt64) *time.Time {
	if !n.Valid {
		return nil
	}
	t := fromNanos(n.Int64)
	return &t
}

// nullString stores "" as NULL, which UNIQUE constraints ignore.
func nullString(s string) sql.NullString {
	return sql.NullString{String: s, Valid: s != ""}
}

// nullJSON stores an empty JSON value as NULL and anything else as TEXT
// (binding a []byte would store a BLOB).
func nullJSON(b []byte) sql.NullString {
	return sql.NullString{String: string(b), Valid: len(b) > 0}
}

// rawJSON is the inverse of nullJSON.
func rawJSON(s sql.NullString) []byte {
	if !s.Valid || s.String == "" {
		return nil
	}
	return []byte(s.String)
}

// encodeDescriptor packs a descriptor as little-endian float32s.
func encodeDescriptor(d []float32) []byte {
	b := make([]byte, 4*len(d))
	for i, v := range d {
		binary.LittleEndian.PutUint32(b[4*i:], math.Float32bits(v))
	}
	return b
}

// decodeDescriptor unpacks what encodeDescriptor packed.
func decodeDescriptor(b []byte) ([]float32, error) {
	if len(b)%4 != 0 {
		return nil, fmt.Errorf("descriptor of %d bytes is not a float32 array", len(b))
	}
	d := make([]float32, len(b)/4)
	for i := range d {
		d[i] = math.Float32frombits(binary.LittleEndian.Uint32(b[4*i:]))
	}
	return d, nil
}

// sqliteCode returns the extended result code of a SQLite error, or 0.
func sqliteCode(err error) int {
	var e *sqlite.Error
	if errors.As(err, &e) {
		return e.Code()
	}
	return 0
}

// isUniqueViolation reports whether err is a UNIQUE or PRIMARY KEY
// constraint failure.
func isUniqueViolation(err error) bool {
	c := sqliteCode(err)
	return c == sqlite3.SQLITE_CONSTRAINT_UNIQUE || c == sqlite3.SQLITE_CONSTRAINT_PRIMARYKEY
}

// isForeignKeyViolation reports whether err is a foreign key failure: the
// parent row is gone.
func isForeignKeyViolation(err error) bool {
	return sqliteCode(err) == sqlite3.SQLITE_CONSTRAINT_FOREIGNKEY
}

// notFound maps sql.ErrNoRows to ErrNotFound.
func notFound(err error) error {
	if errors.Is(err, sql.ErrNoRows) {
		return ErrNotFound
	}
	return err
}

// placeholders returns "?, ?, ..." with n markers.
func placeholders(n int) string {
	if n <= 0 {
		return ""
	}
	return strings.Repeat("?, ", n-1) + "?"
}

// keyArgs converts keys to bind arguments. Keys come from SQLite's
// INTEGER PRIMARY KEY, so they fit in an int64.
func keyArgs(keys []uint64) []any {
	args := make([]any, len(keys))
	for i, k := range keys {
		args[i] = int64(k)
	}
	return args
}

// batches calls fn with consecutive slices of at most inBatch keys.
func batches(keys []uint64, fn func(part []uint64) error) error {
	for len(keys) > 0 {
		n := min(len(keys), inBatch)
		if err := fn(keys[:n]); err != nil {
			return err
		}
		keys = keys[n:]
	}
	return nil
}
