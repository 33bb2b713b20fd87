package store

import (
	"context"
	"database/sql"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"testing/fstest"
	"time"

	"github.com/google/uuid"
)

// Tests of the SQLite store's own machinery: its pragmas, its file, its
// migration runner and its query plans. Its behaviour is tested by the
// conformance suite (conformance_test.go), against both stores.

// openTestStore opens a store on a new file in a temporary directory.
func openTestStore(t *testing.T) *SQLite {
	t.Helper()
	s, err := OpenSQLite(context.Background(), filepath.Join(t.TempDir(), "visage.db"))
	if err != nil {
		t.Fatalf("OpenSQLite: %v", err)
	}
	t.Cleanup(func() {
		if err := s.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
	})
	return s
}

func TestOpenSQLite(t *testing.T) {
	ctx := context.Background()

	t.Run("durability pragmas", func(t *testing.T) {
		s := openTestStore(t)
		conn, err := s.write.Conn(ctx)
		noErr(t, "Conn", err)
		defer func() { _ = conn.Close() }()
		for _, p := range []struct{ pragma, want string }{
			{"journal_mode", "wal"}, {"synchronous", "2"}, {"foreign_keys", "1"}, {"temp_store", "2"},
		} {
			var got string
			noErr(t, p.pragma, conn.QueryRowContext(ctx, "PRAGMA "+p.pragma).Scan(&got))
			if got != p.want {
				t.Errorf("PRAGMA %s = %s, want %s", p.pragma, got, p.want)
			}
		}
		_, err = s.read.ExecContext(ctx, `INSERT INTO collection (name, threshold, created_at) VALUES ('x', 1, 0)`)
		if err == nil {
			t.Error("a write through the read pool succeeded")
		}
	})

	t.Run("no in-memory database", func(t *testing.T) {
		for _, p := range []string{"", ":memory:"} {
			_, err := OpenSQLite(ctx, p)
			wantErr(t, fmt.Sprintf("OpenSQLite(%q)", p), err, ErrInvalid)
		}
	})

	t.Run("path with URI characters", func(t *testing.T) {
		path := filepath.Join(t.TempDir(), "a?b#c%20d.db")
		s, err := OpenSQLite(ctx, path)
		noErr(t, "OpenSQLite", err)
		mustCollection(t, s, "c")
		noErr(t, "Close", s.Close())
		if _, err := os.Stat(path); err != nil {
			t.Fatalf("database not at %s: %v", path, err)
		}
	})
}

func TestReadMigrations(t *testing.T) {
	tests := []struct {
		name     string
		files    fstest.MapFS
		versions []int64
		wantErr  bool
	}{
		{
			name: "ordered by number, not by name",
			files: fstest.MapFS{
				"0010_later.sql": {Data: []byte("SELECT 10;")},
				"0002_b.sql":     {Data: []byte("SELECT 2;")},
				"0001_a.sql":     {Data: []byte("SELECT 1;")},
				"README.md":      {Data: []byte("not a migration")},
			},
			versions: []int64{1, 2, 10},
		},
		{name: "no underscore", files: fstest.MapFS{"0001.sql": {}}, wantErr: true},
		{name: "not a number", files: fstest.MapFS{"one_init.sql": {}}, wantErr: true},
		{name: "version zero", files: fstest.MapFS{"0000_init.sql": {}}, wantErr: true},
		{name: "duplicate version", files: fstest.MapFS{"0001_a.sql": {}, "1_b.sql": {}}, wantErr: true},
		{name: "empty", files: fstest.MapFS{}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ms, err := readMigrations(tt.files)
			if (err != nil) != tt.wantErr {
				t.Fatalf("error %v, want error %v", err, tt.wantErr)
			}
			var got []int64
			for _, m := range ms {
				got = append(got, m.version)
			}
			if !slices.Equal(got, tt.versions) {
				t.Fatalf("versions %v, want %v", got, tt.versions)
			}
		})
	}
}

func TestFailedMigrationRollsBack(t *testing.T) {
	ctx := context.Background()
	db, err := sql.Open("sqlite", "file:"+filepath.Join(t.TempDir(), "m.db")+"?_txlock=immediate")
	noErr(t, "open", err)
	defer func() { _ = db.Close() }()
	db.SetMaxOpenConns(1)
	good := migration{version: 1, name: "0001_a.sql", body: "CREATE TABLE a (x INTEGER);"}
	bad := migration{version: 2, name: "0002_b.sql", body: "CREATE TABLE b (x INTEGER); INSERT INTO nowhere VALUES (1);"}

	err = applySQLiteMigrations(ctx, db, []migration{good, bad}, time.Now)
	if err == nil || !strings.Contains(err.Error(), "0002_b.sql") {
		t.Fatalf("applying a broken migration: error %v, want one naming 0002_b.sql", err)
	}
	tables := func() []string {
		rows, err := db.QueryContext(ctx, `SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name`)
		noErr(t, "list tables", err)
		defer func() { _ = rows.Close() }()
		var names []string
		for rows.Next() {
			var n string
			noErr(t, "scan", rows.Scan(&n))
			names = append(names, n)
		}
		return names
	}
	if got, want := tables(), []string{"a", "schema_migrations"}; !slices.Equal(got, want) {
		t.Fatalf("tables after the failure: %v, want %v (b rolled back)", got, want)
	}

	fixed := migration{version: 2, name: "0002_b.sql", body: "CREATE TABLE b (x INTEGER);"}
	noErr(t, "apply fixed", applySQLiteMigrations(ctx, db, []migration{good, fixed}, time.Now))
	if got, want := tables(), []string{"a", "b", "schema_migrations"}; !slices.Equal(got, want) {
		t.Fatalf("tables: %v, want %v", got, want)
	}
}

func TestReconcilerQueriesUseTheirIndex(t *testing.T) {
	s := openTestStore(t)
	for name, q := range map[string]string{"pending": pendingFacesQuery, "deleting": deletingFacesQuery} {
		t.Run(name, func(t *testing.T) {
			rows, err := s.read.Query("EXPLAIN QUERY PLAN "+q, 10)
			noErr(t, "explain", err)
			defer func() { _ = rows.Close() }()
			var plan []string
			for rows.Next() {
				var id, parent, unused int
				var detail string
				noErr(t, "scan", rows.Scan(&id, &parent, &unused, &detail))
				plan = append(plan, detail)
			}
			noErr(t, "rows", rows.Err())
			if len(plan) != 1 || !strings.Contains(plan[0], "INDEX face_unsettled") {
				t.Fatalf("plan %q, want a search of face_unsettled alone", plan)
			}
		})
	}
}

// TestImportItemQueriesUseTheirIndex checks that the import runner's
// queue and the failures listing seek into the partial index
// import_item_open, one range per state, rather than walk the job's items
// through the primary key.
func TestImportItemQueriesUseTheirIndex(t *testing.T) {
	s := openTestStore(t)
	failures, failuresArgs := importItemsQuery("j", []ItemState{ItemFailed, ItemSkipped}, -1, 10)
	failed, failedArgs := importItemsQuery("j", []ItemState{ItemFailed}, -1, 10)
	for _, tt := range []struct {
		name   string
		query  string
		args   []any
		ranges int
	}{
		{"pending", pendingImportItemsQuery, []any{"j", -1, 10}, 1},
		{"failed", failed, failedArgs, 1},
		{"failed and skipped", failures, failuresArgs, 2},
	} {
		t.Run(tt.name, func(t *testing.T) {
			rows, err := s.read.Query("EXPLAIN QUERY PLAN "+tt.query, tt.args...)
			noErr(t, "explain", err)
			defer func() { _ = rows.Close() }()
			var plan []string
			seeks := 0
			for rows.Next() {
				var id, parent, unused int
				var detail string
				noErr(t, "scan", rows.Scan(&id, &parent, &unused, &detail))
				plan = append(plan, detail)
				if strings.Contains(detail, "import_item") {
					if !strings.Contains(detail, "SEARCH import_item USING INDEX import_item_open (job_id=? AND state=? AND seq>?)") {
						t.Fatalf("plan %q: %q is not a seek into import_item_open", plan, detail)
					}
					seeks++
				}
			}
			noErr(t, "rows", rows.Err())
			if seeks != tt.ranges {
				t.Fatalf("plan %q: %d seeks into import_item_open, want %d", plan, seeks, tt.ranges)
			}
		})
	}
}

// bulkFaces adds nSubjects subjects with perSubject faces each to
// collection (which must exist), in one transaction with prepared
// statements, the way an import would, and returns the face keys. States
// cycle through states, one face after the other.
func bulkFaces(tb testing.TB, s *SQLite, collection string, nSubjects, perSubject int, states ...FaceState) []uint64 {
	tb.Helper()
	if len(states) == 0 {
		states = []FaceState{FaceIndexed}
	}
	ctx := context.Background()
	rng := rand.New(rand.NewPCG(uint64(nSubjects), uint64(perSubject)))
	keys := make([]uint64, 0, nSubjects*perSubject)
	tx, err := s.write.BeginTx(ctx, nil)
	if err != nil {
		tb.Fatal(err)
	}
	defer func() { _ = rollback(tx) }()
	subStmt, err := tx.PrepareContext(ctx, `INSERT INTO subject
		(id, collection, external_id, display_name, name_fold, metadata, created_at, updated_at)
		VALUES (?, ?, ?, ?, ?, '{}', ?, ?)`)
	if err != nil {
		tb.Fatal(err)
	}
	faceStmt, err := tx.PrepareContext(ctx, `INSERT INTO face (id, subject_id, collection, descriptor, model_id,
		box_x0, box_y0, box_x1, box_y1, image_sha256, state, created_at)
		VALUES (?, ?, ?, ?, 'bench', 0, 0, 100, 100, ?, ?, ?)`)
	if err != nil {
		tb.Fatal(err)
	}
	d := make([]float32, 128)
	now := time.Now().UnixNano()
	n := 0
	for i := range nSubjects {
		sid := uuid.NewString()
		name := fmt.Sprintf("Person %d", i)
		if _, err := subStmt.ExecContext(ctx, sid, collection, fmt.Sprintf("ext-%d", i), name, foldName(name), now+int64(i), now+int64(i)); err != nil {
			tb.Fatal(err)
		}
		for j := range perSubject {
			for k := range d {
				d[k] = rng.Float32()
			}
			res, err := faceStmt.ExecContext(ctx, uuid.NewString(), sid, collection, encodeDescriptor(d),
				fmt.Sprintf("sha-%d-%d", i, j), string(states[n%len(states)]), now+int64(n))
			if err != nil {
				tb.Fatal(err)
			}
			key, err := res.LastInsertId()
			if err != nil {
				tb.Fatal(err)
			}
			keys = append(keys, uint64(key))
			n++
		}
	}
	if err := tx.Commit(); err != nil {
		tb.Fatal(err)
	}
	return keys
}
