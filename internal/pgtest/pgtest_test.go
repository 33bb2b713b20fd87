package pgtest

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5"
)

func TestMain(m *testing.M) { Main(m) }

// connect opens a connection to url, closed when the test ends.
func connect(t *testing.T, url string) *pgx.Conn {
	t.Helper()
	conn, err := pgx.Connect(context.Background(), url)
	if err != nil {
		t.Fatalf("connect: %v", err)
	}
	t.Cleanup(func() { _ = conn.Close(context.Background()) })
	return conn
}

// databaseExists reports whether the server of p has a database name.
func databaseExists(t *testing.T, p *provider, name string) bool {
	t.Helper()
	srv, err := p.get()
	if err != nil {
		t.Fatal(err)
	}
	conn := connect(t, srv.base.String())
	var exists bool
	err = conn.QueryRow(context.Background(), `SELECT EXISTS (SELECT 1 FROM pg_database WHERE datname = $1)`, name).Scan(&exists)
	if err != nil {
		t.Fatal(err)
	}
	return exists
}

func TestNewGivesAFreshEmptyDatabase(t *testing.T) {
	ctx := context.Background()
	var names []string
	for range 2 {
		conn := connect(t, New(t))
		var name string
		var tables int
		err := conn.QueryRow(ctx, `SELECT current_database()::text,
			(SELECT count(*) FROM pg_tables WHERE schemaname NOT IN ('pg_catalog', 'information_schema'))`).Scan(&name, &tables)
		if err != nil {
			t.Fatal(err)
		}
		if !strings.HasPrefix(name, dbPrefix) || tables != 0 {
			t.Fatalf("database %q with %d tables, want an empty %s... database", name, tables, dbPrefix)
		}
		if _, err := conn.Exec(ctx, `CREATE TABLE t (x int)`); err != nil {
			t.Fatalf("create a table: %v", err)
		}
		names = append(names, name)
	}
	if names[0] == names[1] {
		t.Fatalf("two tests share database %s", names[0])
	}
}

func TestDatabaseDroppedAfterTheTest(t *testing.T) {
	var name string
	t.Run("user", func(t *testing.T) {
		conn := connect(t, New(t))
		if err := conn.QueryRow(context.Background(), `SELECT current_database()::text`).Scan(&name); err != nil {
			t.Fatal(err)
		}
		// The connection is left open: the drop must end it.
	})
	if name == "" || databaseExists(t, &shared, name) {
		t.Fatalf("database %q still exists after its test", name)
	}
}

// TestServerFromEnvironment points EnvURL at the private cluster: the
// databases are then created on the server it names.
func TestServerFromEnvironment(t *testing.T) {
	srv, err := shared.get()
	if err != nil {
		t.Fatal(err)
	}
	t.Setenv(EnvURL, srv.base.String())
	p := &provider{managed: true}
	var name string
	t.Run("user", func(t *testing.T) {
		url := p.newDatabase(t)
		conn := connect(t, url)
		if err := conn.QueryRow(context.Background(), `SELECT current_database()::text`).Scan(&name); err != nil {
			t.Fatal(err)
		}
		if p.cluster != nil {
			t.Fatal("a cluster was started although the environment names a server")
		}
	})
	if databaseExists(t, p, name) {
		t.Fatalf("database %q still exists after its test", name)
	}
}

func TestServerURL(t *testing.T) {
	srv, err := parseServerURL("postgres://u:p%40ss@db.internal:6432/postgres?sslmode=require")
	if err != nil {
		t.Fatal(err)
	}
	if got, want := srv.url("visage_test_1"), "postgres://u:p%40ss@db.internal:6432/visage_test_1?sslmode=require"; got != want {
		t.Errorf("url = %s, want %s", got, want)
	}
	for _, bad := range []string{"host=db user=u", "mysql://u@db/x", "postgres://u:secret@[::1"} {
		_, err := parseServerURL(bad)
		if err == nil {
			t.Errorf("parseServerURL(%q) accepted", bad)
		} else if strings.Contains(err.Error(), "secret") {
			t.Errorf("error shows the password: %v", err)
		}
	}
}

func TestNewRequiresMain(t *testing.T) {
	_, err := (&provider{}).get()
	if err == nil || !strings.Contains(err.Error(), "pgtest.Main") {
		t.Fatalf("get without Main: %v, want an error naming pgtest.Main", err)
	}
}

func TestFindBinaries(t *testing.T) {
	root := t.TempDir()
	install := func(version string, progs ...string) {
		dir := filepath.Join(root, version, "bin")
		if err := os.MkdirAll(dir, 0o755); err != nil {
			t.Fatal(err)
		}
		for _, p := range progs {
			if err := os.WriteFile(filepath.Join(dir, p), []byte("#!/bin/sh\n"), 0o755); err != nil {
				t.Fatal(err)
			}
		}
	}
	glob := filepath.Join(root, "*", "bin")
	t.Setenv("PATH", t.TempDir())

	_, err := findBinaries(glob)
	if err == nil || !strings.Contains(err.Error(), "PostgreSQL not installed: run ./scripts/setup.sh") {
		t.Fatalf("no installation: %v, want the not-installed message", err)
	}

	install("9.6", "initdb", "postgres")
	install("15", "initdb", "postgres")
	install("16", "initdb") // incomplete
	bin, err := findBinaries(glob)
	if err != nil {
		t.Fatal(err)
	}
	if want := filepath.Join(root, "15", "bin", "postgres"); bin.postgres != want {
		t.Errorf("postgres = %s, want %s (the newest complete version)", bin.postgres, want)
	}
}

// TestClusterStopLeavesNothing starts a second private cluster and stops
// it: no server process and no directory remain.
func TestClusterStopLeavesNothing(t *testing.T) {
	c, err := startCluster()
	if err != nil {
		t.Fatal(err)
	}
	postmaster := c.cmd.Process.Pid
	conn := connect(t, c.url().String())
	var backend int
	if err := conn.QueryRow(context.Background(), `SELECT pg_backend_pid()`).Scan(&backend); err != nil {
		t.Fatal(err)
	}
	children := childrenOf(t, postmaster)
	if len(children) == 0 {
		t.Fatal("the postmaster has no children")
	}
	if err := c.stop(); err != nil {
		t.Fatal(err)
	}
	for _, pid := range append(children, postmaster, backend) {
		if alive(pid) {
			t.Errorf("process %d still runs after stop", pid)
		}
	}
	if _, err := os.Stat(c.dir); !os.IsNotExist(err) {
		t.Errorf("cluster directory %s: %v, want it removed", c.dir, err)
	}
}

// childrenOf lists the processes whose parent is pid.
func childrenOf(t *testing.T, pid int) []int {
	t.Helper()
	stats, err := filepath.Glob("/proc/[0-9]*/stat")
	if err != nil {
		t.Fatal(err)
	}
	var kids []int
	for _, path := range stats {
		b, err := os.ReadFile(path)
		if err != nil {
			continue // the process ended meanwhile
		}
		// pid (comm) state ppid ...; comm may hold spaces and parentheses.
		rest := string(b[strings.LastIndexByte(string(b), ')')+1:])
		fields := strings.Fields(rest)
		if len(fields) > 1 && fields[1] == strconv.Itoa(pid) {
			child, _ := strconv.Atoi(filepath.Base(filepath.Dir(path)))
			kids = append(kids, child)
		}
	}
	return kids
}

func TestRemoveStale(t *testing.T) {
	tmp := t.TempDir()
	// A process that has ended: its id names no running process (until
	// the system reuses it, which a test run will not see).
	gone := exec.Command("true")
	if err := gone.Run(); err != nil {
		t.Fatal(err)
	}
	dirs := map[string]string{
		"dead-owner":  strconv.Itoa(gone.Process.Pid),
		"live-owner":  strconv.Itoa(os.Getpid()),
		"no-owner":    "",
		"dead-server": strconv.Itoa(gone.Process.Pid),
	}
	for name, owner := range dirs {
		dir := filepath.Join(tmp, dirPrefix+name)
		if err := os.MkdirAll(filepath.Join(dir, "data"), 0o755); err != nil {
			t.Fatal(err)
		}
		if owner != "" {
			if err := os.WriteFile(filepath.Join(dir, ownerFile), []byte(owner), 0o644); err != nil {
				t.Fatal(err)
			}
		}
	}
	// A server still running in a dead owner's directory keeps it.
	pm := strconv.Itoa(os.Getpid()) + "\n/data\n"
	if err := os.WriteFile(filepath.Join(tmp, dirPrefix+"dead-server", "data", "postmaster.pid"), []byte(pm), 0o644); err != nil {
		t.Fatal(err)
	}
	removeStale(tmp)
	for name, wantKept := range map[string]bool{"dead-owner": false, "live-owner": true, "no-owner": true, "dead-server": true} {
		_, err := os.Stat(filepath.Join(tmp, dirPrefix+name))
		if kept := err == nil; kept != wantKept {
			t.Errorf("%s: kept %v, want %v", name, kept, wantKept)
		}
	}
}

// TestClusterStopAndStart stops a test's own cluster and starts it again:
// while it is down nobody connects and open sessions are ended; once up
// again the same URL reaches the same data; the clean-up removes it.
func TestClusterStopAndStart(t *testing.T) {
	ctx := context.Background()
	var dir string
	t.Run("user", func(t *testing.T) {
		cl := NewCluster(t)
		dir = cl.c.dir
		conn := connect(t, cl.URL())
		if _, err := conn.Exec(ctx, `CREATE TABLE t (x int); INSERT INTO t VALUES (42)`); err != nil {
			t.Fatal(err)
		}
		if err := cl.Start(); err == nil {
			t.Error("Start of a running cluster succeeded")
		}
		if err := cl.Stop(); err != nil {
			t.Fatal(err)
		}
		if err := cl.Stop(); err != nil {
			t.Errorf("second Stop: %v", err)
		}
		if _, err := conn.Exec(ctx, `SELECT 1`); err == nil {
			t.Error("a session survived the shutdown")
		}
		if c, err := pgx.Connect(ctx, cl.URL()); err == nil {
			_ = c.Close(ctx)
			t.Fatal("connected to a stopped cluster")
		}
		if err := cl.Start(); err != nil {
			t.Fatal(err)
		}
		var x int
		if err := connect(t, cl.URL()).QueryRow(ctx, `SELECT x FROM t`).Scan(&x); err != nil || x != 42 {
			t.Fatalf("after the restart: x = %d, %v; want 42", x, err)
		}
	})
	if _, err := os.Stat(dir); !os.IsNotExist(err) {
		t.Errorf("cluster directory %s: %v, want it removed", dir, err)
	}
}
