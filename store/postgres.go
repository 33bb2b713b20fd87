package store

import (
	"context"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"
)

// Postgres is the scale-out metadata store: the same methods, errors,
// orderings and idempotency as SQLite, on a PostgreSQL database that any
// number of replicas share.
//
// Rows are stored as in the SQLite schema (see migrations/README.md):
// times as bigint Unix nanoseconds, descriptors as bytea of little-endian
// float32, face keys from an identity column. Writes run at READ
// COMMITTED and are retried when PostgreSQL aborts them for a
// serialization failure or a deadlock; multi-statement reads run in a
// REPEATABLE READ READ ONLY transaction, which sees one snapshot as
// SQLite's read transactions do.
type Postgres struct {
	pool *pgxpool.Pool
	// now is the clock; a field rather than a package variable so that
	// tests can pin it per store.
	now func() time.Time
	// deleteBatch is the number of rows DeleteCollection removes per
	// statement (defaultDeleteBatch; tests lower it).
	deleteBatch int
}

// OpenPostgres connects to the database at url (a postgres:// URL or a
// key=value connection string; pool settings such as pool_max_conns may
// be given in it) and applies the missing migrations. Several replicas may
// open one database at once: the migrations run under an advisory lock.
// The database's role needs the right to create tables in its schema.
func OpenPostgres(ctx context.Context, url string) (*Postgres, error) {
	cfg, err := pgxpool.ParseConfig(url)
	if err != nil {
		// The URL may hold a password: pgx's parse errors do not repeat it.
		return nil, fmt.Errorf("open postgres: %w", err)
	}
	p := &Postgres{now: time.Now, deleteBatch: defaultDeleteBatch}
	if err := migratePostgres(ctx, cfg.ConnConfig.Copy(), p.now); err != nil {
		return nil, fmt.Errorf("open postgres: %w", err)
	}
	p.pool, err = pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("open postgres: %w", err)
	}
	return p, nil
}

// Close closes the connection pool, waiting for connections in use to be
// released. It returns no error of its own; the signature is SQLite's, so
// that callers close either store alike.
func (p *Postgres) Close() error {
	p.pool.Close()
	return nil
}

// maxTxAttempts bounds the runs of one transaction that PostgreSQL keeps
// aborting for serialization failures or deadlocks.
const maxTxAttempts = 10

// retry runs op until it succeeds, fails with an error other than a
// serialization failure or a deadlock, or has run maxTxAttempts times. op
// must be a whole transaction (or one statement outside any): PostgreSQL
// has rolled back the failed attempt, so running it again is safe. The
// waits between attempts grow and are randomised so that the transactions
// that collided do not collide again.
func retry(ctx context.Context, op func() error) error {
	for attempt := 1; ; attempt++ {
		err := op()
		if err == nil || !isRetryable(err) || attempt == maxTxAttempts {
			return err
		}
		wait := time.Duration(rand.Int64N(int64(time.Millisecond) << min(attempt, 7)))
		select {
		case <-ctx.Done():
			return errors.Join(err, ctx.Err())
		case <-time.After(wait):
		}
	}
}

// inTx runs fn in a READ COMMITTED write transaction, committing if it
// returns nil, and runs it again if the transaction is aborted for a
// serialization failure or a deadlock: fn must set its results afresh on
// each run.
func (p *Postgres) inTx(ctx context.Context, fn func(tx pgx.Tx) error) error {
	return retry(ctx, func() error {
		return pgx.BeginTxFunc(ctx, p.pool, pgx.TxOptions{IsoLevel: pgx.ReadCommitted}, fn)
	})
}

// inReadTx runs fn in a read-only transaction, so that its queries see
// one snapshot of the database. A REPEATABLE READ READ ONLY transaction
// is never aborted for serialization failures.
func (p *Postgres) inReadTx(ctx context.Context, fn func(tx pgx.Tx) error) error {
	return pgx.BeginTxFunc(ctx, p.pool, pgx.TxOptions{IsoLevel: pgx.RepeatableRead, AccessMode: pgx.ReadOnly}, fn)
}

// exec runs one write statement outside any transaction, retried like a
// transaction (a server whose default isolation is SERIALIZABLE can abort
// even that), and returns the number of rows it affected.
func (p *Postgres) exec(ctx context.Context, query string, args ...any) (int64, error) {
	var tag pgconn.CommandTag
	err := retry(ctx, func() error {
		var err error
		tag, err = p.pool.Exec(ctx, query, args...)
		return err
	})
	return tag.RowsAffected(), err
}

// timestamp returns the current time as stored: UTC, nanoseconds, no
// monotonic reading, so that it compares equal to what is read back.
func (p *Postgres) timestamp() time.Time {
	return fromNanos(p.now().UnixNano())
}

// pgQuerier is what a pool and a transaction have in common.
type pgQuerier interface {
	Exec(ctx context.Context, sql string, args ...any) (pgconn.CommandTag, error)
	Query(ctx context.Context, sql string, args ...any) (pgx.Rows, error)
	QueryRow(ctx context.Context, sql string, args ...any) pgx.Row
}

// pgArgs numbers the arguments of a query built piece by piece.
type pgArgs []any

// add appends v and returns its placeholder.
func (a *pgArgs) add(v any) string {
	*a = append(*a, v)
	return "$" + strconv.Itoa(len(*a))
}

// SQLSTATE codes the store acts on.
const (
	pgUniqueViolation      = "23505"
	pgForeignKeyViolation  = "23503"
	pgSerializationFailure = "40001"
	pgDeadlockDetected     = "40P01"
	pgProgramLimitExceeded = "54000"
	pgDataExceptionClass   = "22"
)

// pgCode returns the SQLSTATE of a PostgreSQL error, or "".
func pgCode(err error) string {
	var e *pgconn.PgError
	if errors.As(err, &e) {
		return e.Code
	}
	return ""
}

// retryableError is an error after which the store runs the whole
// transaction again, as after a serialization failure: a race it lost
// that a new snapshot resolves.
type retryableError struct{ err error }

func (e *retryableError) Error() string { return e.err.Error() }
func (e *retryableError) Unwrap() error { return e.err }

// isRetryable reports whether err aborted a transaction that may succeed
// when run again.
func isRetryable(err error) bool {
	var r *retryableError
	c := pgCode(err)
	return c == pgSerializationFailure || c == pgDeadlockDetected || errors.As(err, &r)
}

// pgError maps PostgreSQL's errors to the store's sentinels: a unique
// violation is ErrConflict; a foreign key violation means that the parent
// row went away meanwhile (ErrNotFound); a value PostgreSQL cannot take
// though SQLite would, such as text with a NUL byte or invalid UTF-8 (an
// id from a URL, say), is ErrInvalid rather than an internal error, in
// reads as in writes. Other errors are returned as they are. The server's
// details (constraint and column names) stay out of the message, which
// the API shows to clients.
func pgError(err error) error {
	var e *pgconn.PgError
	if !errors.As(err, &e) {
		return err
	}
	switch {
	case e.Code == pgUniqueViolation:
		return ErrConflict
	case e.Code == pgForeignKeyViolation:
		return ErrNotFound
	case e.Code == pgProgramLimitExceeded || strings.HasPrefix(e.Code, pgDataExceptionClass):
		return fmt.Errorf("%s: %w", e.Message, ErrInvalid)
	}
	return err
}

// pgNotFound maps pgx.ErrNoRows to ErrNotFound.
func pgNotFound(err error) error {
	if errors.Is(err, pgx.ErrNoRows) {
		return ErrNotFound
	}
	return err
}

// pgKeys converts keys to a bigint[] argument. Keys come from a bigint
// identity column; a larger value names no face, and as -1 matches none.
func pgKeys(keys []uint64) []int64 {
	out := make([]int64, len(keys))
	for i, k := range keys {
		out[i] = keyArg(k)
	}
	return out
}

// keyArg converts one key; see pgKeys.
func keyArg(k uint64) int64 {
	if k > math.MaxInt64 {
		return -1
	}
	return int64(k)
}

// pgText stores "" as NULL, which UNIQUE constraints ignore.
func pgText(s string) *string {
	if s == "" {
		return nil
	}
	return &s
}

// pgJSON stores an empty JSON value as NULL.
func pgJSON(b []byte) []byte {
	if len(b) == 0 {
		return nil
	}
	return b
}

// textOf is the inverse of pgText.
func textOf(s *string) string {
	if s == nil {
		return ""
	}
	return *s
}

// timeOf maps a nullable stored time to a *time.Time.
func timeOf(n *int64) *time.Time {
	if n == nil {
		return nil
	}
	t := fromNanos(*n)
	return &t
}
