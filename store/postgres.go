package store

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math"
	"math/rand/v2"
	"net"
	"strconv"
	"strings"
	"sync/atomic"
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

// defaultConnectTimeout bounds one connection attempt (the dial, TLS and
// authentication) unless the URL's connect_timeout sets another bound.
// Without one a request made while the server's host is unreachable would
// wait for the kernel's TCP timeout, minutes, instead of failing with
// ErrUnavailable in seconds.
const defaultConnectTimeout = 5 * time.Second

// OpenPostgres connects to the database at url (a postgres:// URL or a
// key=value connection string; pool settings such as pool_max_conns may
// be given in it) and applies the missing migrations. Several replicas may
// open one database at once: the migrations run under an advisory lock.
// The database's role needs the right to create tables in its schema.
//
// The store outlives outages of the database: while it cannot be reached
// every method fails at once with ErrUnavailable, and once it is back the
// pool opens new connections by itself (the first statement that fails
// for the outage closes the idle connections, see outageReset).
func OpenPostgres(ctx context.Context, url string) (*Postgres, error) {
	cfg, err := pgxpool.ParseConfig(url)
	if err != nil {
		// The URL may hold a password: pgx's parse errors do not repeat it.
		return nil, fmt.Errorf("open postgres: %w", err)
	}
	if cfg.ConnConfig.ConnectTimeout == 0 {
		cfg.ConnConfig.ConnectTimeout = defaultConnectTimeout
	}
	p := &Postgres{now: time.Now, deleteBatch: defaultDeleteBatch}
	if err := migratePostgres(ctx, cfg.ConnConfig.Copy(), p.now); err != nil {
		// Only an outage is classified: pgError would reduce a migration's
		// constraint violation to a bare ErrConflict.
		return nil, fmt.Errorf("open postgres: %w", markUnavailable(err))
	}
	reset := &outageReset{}
	cfg.ConnConfig.Tracer = reset
	p.pool, err = pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("open postgres: %w", err)
	}
	reset.pool.Store(p.pool)
	return p, nil
}

// outageReset is the pool's tracer: a statement that fails for want of
// the server (pgUnavailable) resets the pool, closing its idle
// connections, which the same outage broke. Otherwise, once the server is
// back, each of them would fail one more request before the pool dropped
// it: a connection idle for less than a second is handed out without a
// ping. Connections in use are closed when released. Every statement
// passes here, the transactions' BEGIN included.
type outageReset struct {
	pool atomic.Pointer[pgxpool.Pool] // set once the pool exists
}

func (r *outageReset) TraceQueryStart(ctx context.Context, _ *pgx.Conn, _ pgx.TraceQueryStartData) context.Context {
	return ctx
}

func (r *outageReset) TraceQueryEnd(_ context.Context, _ *pgx.Conn, data pgx.TraceQueryEndData) {
	r.failed(data.Err)
}

func (r *outageReset) TraceCopyFromStart(ctx context.Context, _ *pgx.Conn, _ pgx.TraceCopyFromStartData) context.Context {
	return ctx
}

func (r *outageReset) TraceCopyFromEnd(_ context.Context, _ *pgx.Conn, data pgx.TraceCopyFromEndData) {
	r.failed(data.Err)
}

func (r *outageReset) failed(err error) {
	if pool := r.pool.Load(); pool != nil && pgUnavailable(err) {
		pool.Reset()
	}
}

// Close closes the connection pool, waiting for connections in use to be
// released. It returns no error of its own; the signature is SQLite's, so
// that callers close either store alike.
func (p *Postgres) Close() error {
	p.pool.Close()
	return nil
}

// Ping checks that the database answers, on a connection of the pool:
// ErrUnavailable while it cannot be reached. Readiness probes call it.
func (p *Postgres) Ping(ctx context.Context) error {
	if err := p.pool.Ping(ctx); err != nil {
		return fmt.Errorf("ping: %w", pgError(err))
	}
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

	// A server that is not there for now: the connection failed or broke
	// (class 08), the server is shutting down or ended the session
	// (57P01 admin_shutdown, 57P02 crash_shutdown), is starting up or in
	// recovery (57P03 cannot_connect_now), or has no connection slot left
	// (53300 too_many_connections).
	pgConnectionExceptionClass = "08"
	pgAdminShutdown            = "57P01"
	pgCrashShutdown            = "57P02"
	pgCannotConnectNow         = "57P03"
	pgTooManyConnections       = "53300"
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

// pgError maps PostgreSQL's errors to the store's sentinels: a database
// that cannot be reached is ErrUnavailable (see pgUnavailable); a unique
// violation is ErrConflict; a foreign key violation means that the parent
// row went away meanwhile (ErrNotFound); a value PostgreSQL cannot take
// though SQLite would, such as text with a NUL byte or invalid UTF-8 (an
// id from a URL, say), is ErrInvalid rather than an internal error, in
// reads as in writes. Other errors are returned as they are. The server's
// details (constraint and column names) stay out of the message, which
// the API shows to clients. Every method passes its errors through it:
// it is the one place where the store classifies them.
func pgError(err error) error {
	if pgUnavailable(err) {
		return markUnavailable(err)
	}
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

// pgUnavailable reports whether err means that the database cannot be
// reached now, rather than that it refused the operation:
//
//   - an error the server sent decides by its SQLSTATE alone (see
//     pgConnectionExceptionClass): a failed authentication or a missing
//     database is a configuration error, not an outage, even while
//     connecting;
//   - otherwise a failed connection attempt (refused, no socket, no
//     answer within the connect timeout) and a connection that broke
//     (reset, closed, EOF in the middle of a message) are;
//   - a caller that gave up (context.Canceled) is not, nor a deadline
//     that passed outside a connection attempt: the server was there.
func pgUnavailable(err error) bool {
	if err == nil {
		return false
	}
	var pe *pgconn.PgError
	if errors.As(err, &pe) {
		switch pe.Code {
		case pgAdminShutdown, pgCrashShutdown, pgCannotConnectNow, pgTooManyConnections:
			return true
		}
		return strings.HasPrefix(pe.Code, pgConnectionExceptionClass)
	}
	if errors.Is(err, context.Canceled) {
		return false
	}
	var ce *pgconn.ConnectError
	if errors.As(err, &ce) {
		return true
	}
	if errors.Is(err, context.DeadlineExceeded) {
		// Not connecting: a slow statement, or a pool that stayed full
		// (context.DeadlineExceeded is a net.Error, hence this test first).
		return false
	}
	var ne net.Error
	return errors.As(err, &ne) || errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) ||
		errors.Is(err, pgconn.ErrConnClosed)
}

// markUnavailable wraps err in ErrUnavailable if pgUnavailable holds. The
// cause stays in the chain, for the log; the API shows a fixed detail.
func markUnavailable(err error) error {
	if errors.Is(err, ErrUnavailable) || !pgUnavailable(err) {
		return err // classified already (inside a transaction), or no outage
	}
	return fmt.Errorf("%w: %w", ErrUnavailable, err)
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
