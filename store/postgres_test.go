package store

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/visage/visage/internal/pgtest"
)

// Tests of the Postgres store's own machinery: its migration runner and
// lock, its retries, its query plans and schema. Its behaviour is tested
// by the conformance suite (conformance_test.go), against both stores.

// openTestPostgres opens a store on a fresh database and closes it when
// the test ends.
func openTestPostgres(t *testing.T) *Postgres {
	t.Helper()
	s, err := OpenPostgres(context.Background(), pgtest.New(t))
	if err != nil {
		t.Fatalf("OpenPostgres: %v", err)
	}
	t.Cleanup(func() { _ = s.Close() })
	return s
}

// connectTest opens a plain connection to the database at url, closed
// when the test ends.
func connectTest(t *testing.T, url string) *pgx.Conn {
	t.Helper()
	conn, err := pgx.Connect(context.Background(), url)
	noErr(t, "connect", err)
	t.Cleanup(func() { _ = conn.Close(context.Background()) })
	return conn
}

// TestOpenPostgresErrors: a URL that does not parse, or names no server,
// is an error, which never shows the URL's password (errors are logged).
func TestOpenPostgresErrors(t *testing.T) {
	const password = "s3cret-pw"
	for _, url := range []string{
		"postgres://visage:" + password + "@[::1",
		"postgres://visage:" + password + "@host:notaport/visage",
		"postgres://visage:" + password + "@host/visage?sslmode=bogus",
		"host=db password=" + password + " port=abc",
		"postgres://visage:" + password + "@/visage?host=" + t.TempDir() + "&connect_timeout=5",
	} {
		s, err := OpenPostgres(context.Background(), url)
		if err == nil {
			_ = s.Close()
			t.Errorf("OpenPostgres(%q) succeeded", url)
			continue
		}
		if strings.Contains(err.Error(), password) {
			t.Errorf("error shows the password: %v", err)
		}
	}
}

// TestPostgresMigrationWaitsForTheLock holds the migration lock from
// another session: OpenPostgres on an empty database must wait for it
// rather than migrate beside it, and finish once it is released.
func TestPostgresMigrationWaitsForTheLock(t *testing.T) {
	ctx := context.Background()
	url := pgtest.New(t)
	holder := connectTest(t, url)
	_, err := holder.Exec(ctx, `SELECT pg_advisory_lock($1)`, migrationLockKey)
	noErr(t, "take lock", err)

	type result struct {
		s   *Postgres
		err error
	}
	opened := make(chan result, 1)
	go func() {
		s, err := OpenPostgres(ctx, url)
		opened <- result{s, err}
	}()
	// The opener connects, then waits for the advisory lock.
	waitForLockWaitOn(t, holder, "advisory")
	select {
	case r := <-opened:
		if r.s != nil {
			_ = r.s.Close()
		}
		t.Fatalf("OpenPostgres finished while the lock was held: %v", r.err)
	default:
	}
	var tables int
	noErr(t, "count tables", holder.QueryRow(ctx,
		`SELECT count(*) FROM pg_tables WHERE schemaname = current_schema()`).Scan(&tables))
	if tables != 0 {
		t.Fatalf("%d tables created while the lock was held", tables)
	}
	_, err = holder.Exec(ctx, `SELECT pg_advisory_unlock($1)`, migrationLockKey)
	noErr(t, "release lock", err)
	r := <-opened
	noErr(t, "OpenPostgres after the lock was released", r.err)
	defer func() { _ = r.s.Close() }()
	mustCollection(t, r.s, "c")
}

// TestPostgresMigrationCancelled: an opener waiting for the lock gives up
// with its context, and leaves no lock behind.
func TestPostgresMigrationCancelled(t *testing.T) {
	ctx := context.Background()
	url := pgtest.New(t)
	holder := connectTest(t, url)
	_, err := holder.Exec(ctx, `SELECT pg_advisory_lock($1)`, migrationLockKey)
	noErr(t, "take lock", err)
	short, cancel := context.WithTimeout(ctx, 300*time.Millisecond)
	defer cancel()
	if s, err := OpenPostgres(short, url); err == nil {
		_ = s.Close()
		t.Fatal("OpenPostgres succeeded while the lock was held")
	}
	_, err = holder.Exec(ctx, `SELECT pg_advisory_unlock($1)`, migrationLockKey)
	noErr(t, "release lock", err)
	s := openTestPostgresAt(t, url)
	mustCollection(t, s, "c")
}

func openTestPostgresAt(t *testing.T, url string) *Postgres {
	t.Helper()
	s, err := OpenPostgres(context.Background(), url)
	noErr(t, "OpenPostgres", err)
	t.Cleanup(func() { _ = s.Close() })
	return s
}

func TestPostgresFailedMigrationRollsBack(t *testing.T) {
	ctx := context.Background()
	conn := connectTest(t, pgtest.New(t))
	good := migration{version: 1, name: "0001_a.sql", body: "CREATE TABLE a (x integer);"}
	bad := migration{version: 2, name: "0002_b.sql", body: "CREATE TABLE b (x integer); INSERT INTO nowhere VALUES (1);"}

	err := applyPostgresMigrations(ctx, conn, []migration{good, bad}, time.Now)
	if err == nil || !strings.Contains(err.Error(), "0002_b.sql") {
		t.Fatalf("applying a broken migration: error %v, want one naming 0002_b.sql", err)
	}
	tables := func() []string {
		rows, err := conn.Query(ctx, `SELECT tablename::text FROM pg_tables WHERE schemaname = current_schema() ORDER BY 1`)
		noErr(t, "list tables", err)
		names, err := pgx.CollectRows(rows, pgx.RowTo[string])
		noErr(t, "list tables", err)
		return names
	}
	if got, want := tables(), []string{"a", "schema_migrations"}; !slices.Equal(got, want) {
		t.Fatalf("tables after the failure: %v, want %v (b rolled back)", got, want)
	}

	fixed := migration{version: 2, name: "0002_b.sql", body: "CREATE TABLE b (x integer);"}
	noErr(t, "apply fixed", applyPostgresMigrations(ctx, conn, []migration{good, fixed}, time.Now))
	if got, want := tables(), []string{"a", "b", "schema_migrations"}; !slices.Equal(got, want) {
		t.Fatalf("tables: %v, want %v", got, want)
	}
}

// TestPostgresReconcilerQueriesUseTheirIndex checks that the planner can
// answer the reconciler's queries from the partial index face_unsettled
// alone. Sequential scans are disabled because on a small table the
// planner rightly prefers them; what matters is that the index is usable.
func TestPostgresReconcilerQueriesUseTheirIndex(t *testing.T) {
	ctx := context.Background()
	s := openTestPostgres(t)
	for name, q := range map[string]string{"pending": pgPendingFacesQuery, "deleting": pgDeletingFacesQuery} {
		t.Run(name, func(t *testing.T) {
			var plan []string
			err := pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
				if _, err := tx.Exec(ctx, `SET LOCAL enable_seqscan = off`); err != nil {
					return err
				}
				rows, err := tx.Query(ctx, "EXPLAIN "+q, 10)
				if err != nil {
					return err
				}
				plan, err = pgx.CollectRows(rows, pgx.RowTo[string])
				return err
			})
			noErr(t, "explain", err)
			text := strings.Join(plan, "\n")
			if !strings.Contains(text, "face_unsettled") || strings.Contains(text, "Sort") {
				t.Fatalf("plan:\n%s\nwant a scan of face_unsettled, in key order", text)
			}
		})
	}
}

// TestPostgresImportItemQueriesUseTheirIndex checks that the import
// runner's queue and the failures listing seek into the partial index
// import_item_open, one range per state in seq order, with nothing to
// sort but the merge of those ranges. Sequential scans are disabled as in
// TestPostgresReconcilerQueriesUseTheirIndex.
func TestPostgresImportItemQueriesUseTheirIndex(t *testing.T) {
	ctx := context.Background()
	s := openTestPostgres(t)
	failures, failuresArgs := pgImportItemsQuery("j", []ItemState{ItemFailed, ItemSkipped}, -1, 10)
	failed, failedArgs := pgImportItemsQuery("j", []ItemState{ItemFailed}, -1, 10)
	for _, tt := range []struct {
		name   string
		query  string
		args   []any
		ranges int
	}{
		{"pending", pgPendingImportItemsQuery, []any{"j", int32(-1), 10}, 1},
		{"failed", failed, failedArgs, 1},
		{"failed and skipped", failures, failuresArgs, 2},
	} {
		t.Run(tt.name, func(t *testing.T) {
			var plan []string
			err := pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
				if _, err := tx.Exec(ctx, `SET LOCAL enable_seqscan = off`); err != nil {
					return err
				}
				rows, err := tx.Query(ctx, "EXPLAIN "+tt.query, tt.args...)
				if err != nil {
					return err
				}
				plan, err = pgx.CollectRows(rows, pgx.RowTo[string])
				return err
			})
			noErr(t, "explain", err)
			text := strings.Join(plan, "\n")
			seeks := strings.Count(text, "Index Scan using import_item_open")
			sorts := 0
			for _, line := range plan {
				// A sort node, not a Merge Append's "Sort Key".
				if l := strings.TrimLeft(line, " ->"); strings.HasPrefix(l, "Sort  (") || strings.HasPrefix(l, "Incremental Sort  (") {
					sorts++
				}
			}
			if seeks != tt.ranges || sorts != 0 || !strings.Contains(text, "(seq >") {
				t.Fatalf("plan:\n%s\nwant %d index scans of import_item_open bounded by seq, no sort", text, tt.ranges)
			}
		})
	}
}

// TestPostgresSchemaCollations checks that the text the store orders,
// compares to page cursors or keeps unique uses byte order, whatever the
// database's default collation.
func TestPostgresSchemaCollations(t *testing.T) {
	ctx := context.Background()
	s := openTestPostgres(t)
	rows, err := s.pool.Query(ctx, `SELECT table_name::text || '.' || column_name::text
		FROM information_schema.columns
		WHERE table_schema = current_schema() AND data_type = 'text' AND coalesce(collation_name, '') <> 'C'
		ORDER BY 1`)
	noErr(t, "query columns", err)
	got, err := pgx.CollectRows(rows, pgx.RowTo[string])
	noErr(t, "read columns", err)
	// Free text, never ordered or unique: the default collation is right.
	want := []string{
		"api_key.name", "api_key.role", "collection.state", "event.outcome",
		"face.model_id", "face.state", "import_item.display_name", "import_item.reason", "import_item.state",
		"import_job.error", "import_job.state", "subject.display_name",
	}
	if !slices.Equal(got, want) {
		t.Fatalf("text columns without COLLATE \"C\": %v, want only %v", got, want)
	}
}

// TestPostgresRefusesWhatItCannotStore: text PostgreSQL cannot hold (a
// NUL byte, invalid UTF-8) is ErrInvalid, in writes (SQLite stores it)
// and in reads (SQLite finds nothing), not an internal error.
func TestPostgresRefusesWhatItCannotStore(t *testing.T) {
	ctx := context.Background()
	s := openTestPostgres(t)
	mustCollection(t, s, "c")
	for _, text := range []string{"nul\x00byte", "bad \xff utf-8"} {
		_, err := s.CreateSubject(ctx, Subject{Collection: "c", DisplayName: text})
		wantErr(t, fmt.Sprintf("CreateSubject(%q)", text), err, ErrInvalid)
		_, err = s.GetSubject(ctx, "c", text)
		wantErr(t, fmt.Sprintf("GetSubject(%q)", text), err, ErrInvalid)
		_, err = s.GetCollection(ctx, text)
		wantErr(t, fmt.Sprintf("GetCollection(%q)", text), err, ErrInvalid)
		_, err = s.ListEvents(ctx, EventQuery{KeyID: text})
		wantErr(t, fmt.Sprintf("ListEvents(%q)", text), err, ErrInvalid)
	}
}

// TestPostgresInsertFaceWaitsForAConcurrentEnrollment replays the race of
// two enrollments of one image deterministically: another transaction
// has inserted the face but not committed when InsertFace looks for it.
// InsertFace must wait for that transaction and, once it commits, return
// its face rather than fail or insert a second one.
func TestPostgresInsertFaceWaitsForAConcurrentEnrollment(t *testing.T) {
	ctx := context.Background()
	s := openTestPostgres(t)
	mustCollection(t, s, "c")
	sub := mustSubject(t, s, "c", "a", "")

	for _, commit := range []bool{true, false} {
		t.Run(fmt.Sprintf("other commits %v", commit), func(t *testing.T) {
			sha := fmt.Sprint("image-", commit)
			other, err := s.pool.Begin(ctx)
			noErr(t, "begin", err)
			defer func() { _ = other.Rollback(ctx) }()
			var otherKey int64
			err = other.QueryRow(ctx, `INSERT INTO face (id, subject_id, collection, descriptor, model_id,
					box_x0, box_y0, box_x1, box_y1, image_sha256, state, created_at)
				VALUES ($1, $2, 'c', $3, 'm', 0, 0, 1, 1, $4, 'pending', 0) RETURNING key`,
				fmt.Sprint("other-", commit), sub.ID, encodeDescriptor(descriptor(1)), sha).Scan(&otherKey)
			noErr(t, "insert in the other transaction", err)

			type result struct {
				f        Face
				inserted bool
				err      error
			}
			done := make(chan result, 1)
			go func() {
				f, inserted, err := s.InsertFace(ctx, Face{SubjectID: sub.ID, Descriptor: descriptor(2), ImageSHA256: sha})
				done <- result{f, inserted, err}
			}()
			// InsertFace waits for the transaction that wrote the conflicting,
			// uncommitted row.
			waitForLockWait(t, s, "transactionid")
			if commit {
				noErr(t, "commit", other.Commit(ctx))
			} else {
				noErr(t, "rollback", other.Rollback(ctx))
			}
			r := <-done
			noErr(t, "InsertFace", r.err)
			if commit && (r.inserted || r.f.Key != uint64(otherKey)) {
				t.Fatalf("InsertFace = key %d, inserted %v; want the other's face %d, not inserted", r.f.Key, r.inserted, otherKey)
			}
			if !commit && (!r.inserted || r.f.Key == uint64(otherKey)) {
				t.Fatalf("InsertFace = key %d, inserted %v; want a new face", r.f.Key, r.inserted)
			}
			if n := countRows(t, s, "face", "subject_id = ? AND image_sha256 = ?", sub.ID, sha); n != 1 {
				t.Fatalf("%d faces of the image, want 1", n)
			}
		})
	}
}

// waitForLockWait waits until a session of s's database waits for a
// lock of the given kind.
func waitForLockWait(t *testing.T, s *Postgres, kind string) {
	t.Helper()
	conn, err := s.pool.Acquire(context.Background())
	noErr(t, "acquire", err)
	defer conn.Release()
	waitForLockWaitOn(t, conn.Conn(), kind)
}

// waitForLockWaitOn waits, asking on conn, until a session of conn's
// database waits for a lock of the given kind (pg_stat_activity's
// wait_event: "advisory", "transactionid"...; "" for any).
func waitForLockWaitOn(t *testing.T, conn *pgx.Conn, kind string) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		var waiting bool
		err := conn.QueryRow(context.Background(), `SELECT EXISTS (SELECT 1 FROM pg_stat_activity
			WHERE datname = current_database() AND wait_event_type = 'Lock' AND ($1 = '' OR wait_event = $1))`,
			kind).Scan(&waiting)
		noErr(t, "pg_stat_activity", err)
		if waiting {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("no session waits for a lock %q", kind)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// TestPostgresRetriesDeadlocks makes two transactions lock two rows in
// opposite orders: PostgreSQL aborts one with a deadlock, which inTx runs
// again, so both succeed.
func TestPostgresRetriesDeadlocks(t *testing.T) {
	ctx := context.Background()
	s := openTestPostgres(t)
	mustCollection(t, s, "a")
	mustCollection(t, s, "b")
	var bothLocked sync.WaitGroup
	bothLocked.Add(2)
	var runs atomic.Int32
	lockBoth := func(first, second string) error {
		var once sync.Once
		return s.inTx(ctx, func(tx pgx.Tx) error {
			runs.Add(1)
			if _, err := tx.Exec(ctx, `UPDATE collection SET threshold = threshold + 1 WHERE name = $1`, first); err != nil {
				return err
			}
			// The first run of each waits until both hold their first row.
			once.Do(func() { bothLocked.Done(); bothLocked.Wait() })
			_, err := tx.Exec(ctx, `UPDATE collection SET threshold = threshold + 1 WHERE name = $1`, second)
			return err
		})
	}
	errs := make([]error, 2)
	var wg sync.WaitGroup
	wg.Go(func() { errs[0] = lockBoth("a", "b") })
	wg.Go(func() { errs[1] = lockBoth("b", "a") })
	wg.Wait()
	noErr(t, "a then b", errs[0])
	noErr(t, "b then a", errs[1])
	if n := runs.Load(); n != 3 {
		t.Errorf("%d transaction runs, want 3 (one retried after the deadlock)", n)
	}
	for _, name := range []string{"a", "b"} {
		c, err := s.GetCollection(ctx, name)
		noErr(t, "GetCollection", err)
		if c.Threshold != 0.6+2 {
			t.Errorf("collection %s threshold %v, want %v (both transactions applied once)", name, c.Threshold, 0.6+2)
		}
	}
}

func TestRetry(t *testing.T) {
	serialization := &pgconn.PgError{Code: pgSerializationFailure}
	other := errors.New("boom")
	tests := []struct {
		name string
		errs []error // returned by successive runs; nil after the last
		ctx  func() context.Context
		runs int
		want error
	}{
		{name: "success", runs: 1},
		{name: "serialization failures, then success", errs: []error{serialization, &pgconn.PgError{Code: pgDeadlockDetected}}, runs: 3},
		{name: "lost race", errs: []error{&retryableError{other}}, runs: 2},
		{name: "other error", errs: []error{other}, runs: 1, want: other},
		{name: "gives up", errs: slices.Repeat([]error{serialization}, maxTxAttempts+1), runs: maxTxAttempts, want: serialization},
		{name: "cancelled", errs: []error{serialization, serialization}, runs: 1, want: context.Canceled, ctx: func() context.Context {
			ctx, cancel := context.WithCancel(context.Background())
			cancel()
			return ctx
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ctx := context.Background()
			if tt.ctx != nil {
				ctx = tt.ctx()
			}
			runs := 0
			err := retry(ctx, func() error {
				runs++
				if runs <= len(tt.errs) {
					return tt.errs[runs-1]
				}
				return nil
			})
			if runs != tt.runs {
				t.Errorf("%d runs, want %d", runs, tt.runs)
			}
			if tt.want == nil && err != nil || tt.want != nil && !errors.Is(err, tt.want) {
				t.Errorf("error %v, want %v", err, tt.want)
			}
		})
	}
}
