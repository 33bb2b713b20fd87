// Package pgtest gives each test a fresh, empty PostgreSQL database, so
// that code written for Postgres is tested against the real server, never
// a mock.
//
// With VISAGE_TEST_DATABASE_URL set (a postgres:// URL of a server on
// which its role may create databases), every database is created there,
// under a random name, and dropped when its test ends. Otherwise the test
// binary starts one private throwaway cluster on first use: initdb and
// postgres from /usr/lib/postgresql/*/bin (or PATH), in a temporary
// directory, listening only on a Unix socket in that directory, without
// fsync. A package whose tests call New runs them through Main, which
// stops the cluster and removes its directory when they end:
//
//	func TestMain(m *testing.M) { pgtest.Main(m) }
//
// On Linux the server also dies with the test binary when that ends
// abnormally (a panic, a -timeout, a kill), and a later run removes the
// directories such runs left behind.
//
// A test that stops its server, to see what its clients do while the
// database is down, starts one of its own with NewCluster.
package pgtest

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"net/url"
	"os"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
)

// EnvURL names the environment variable holding the URL of a server to
// create the test databases on instead of a private cluster.
const EnvURL = "VISAGE_TEST_DATABASE_URL"

// dbPrefix starts the name of every database New creates, so that stray
// ones (left by a test binary that was killed) are recognisable.
const dbPrefix = "visage_test_"

// adminTimeout bounds creating or dropping one database.
const adminTimeout = time.Minute

// provider holds the server of one test binary. It is the package's only
// state, and process-wide by necessity: the tests of a binary share one
// cluster, started by the first New that needs it and stopped by Main.
type provider struct {
	mu      sync.Mutex
	managed bool     // Main is running the tests
	started bool     // start was attempted; server and err hold its result
	server  *server  // the server databases are created on
	cluster *cluster // the private cluster, if one was started
	err     error
}

var shared provider

// server is where the test databases are created: base is the URL of its
// maintenance database, which New's URLs copy with another database name.
type server struct {
	base *url.URL
}

// Main runs the tests of m, stops the private cluster if one was started
// and exits with the tests' status (failing them if the cluster could not
// be stopped). Call it from TestMain.
func Main(m *testing.M) {
	shared.mu.Lock()
	shared.managed = true
	shared.mu.Unlock()
	code := m.Run()
	if err := shared.stop(); err != nil {
		fmt.Fprintln(os.Stderr, "pgtest:", err)
		if code == 0 {
			code = 1
		}
	}
	os.Exit(code)
}

// New creates an empty database for the calling test, returns its
// postgres:// URL and drops the database when the test ends. It fails the
// test if no server is available, in particular with "PostgreSQL not
// installed: run ./scripts/setup.sh" when the binaries are missing.
func New(t testing.TB) string {
	t.Helper()
	return shared.newDatabase(t)
}

// newDatabase is New on the server of p.
func (p *provider) newDatabase(t testing.TB) string {
	t.Helper()
	srv, err := p.get()
	if err != nil {
		t.Fatalf("pgtest: %v", err)
	}
	name, err := randomName()
	if err != nil {
		t.Fatalf("pgtest: %v", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), adminTimeout)
	defer cancel()
	if err := srv.admin(ctx, "CREATE DATABASE "+pgx.Identifier{name}.Sanitize()); err != nil {
		t.Fatalf("pgtest: create database %s: %v", name, err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), adminTimeout)
		defer cancel()
		// FORCE ends the sessions of a pool the test did not close, which
		// would otherwise keep the database from being dropped.
		if err := srv.admin(ctx, "DROP DATABASE IF EXISTS "+pgx.Identifier{name}.Sanitize()+" WITH (FORCE)"); err != nil {
			t.Errorf("pgtest: drop database %s: %v", name, err)
		}
	})
	return srv.url(name)
}

// get returns the server, starting the private cluster on first use.
func (p *provider) get() (*server, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if !p.managed {
		return nil, errors.New("the test binary must run its tests through pgtest.Main: func TestMain(m *testing.M) { pgtest.Main(m) }")
	}
	if !p.started {
		p.started = true
		p.server, p.cluster, p.err = start()
	}
	return p.server, p.err
}

// stop stops the private cluster, if one was started, and removes it.
func (p *provider) stop() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.cluster == nil {
		return nil
	}
	err := p.cluster.stop()
	p.cluster, p.server = nil, nil
	p.err = errors.New("the private PostgreSQL cluster was stopped")
	return err
}

// start finds the server to use: the one named by EnvURL, or else a new
// private cluster.
func start() (*server, *cluster, error) {
	if raw := os.Getenv(EnvURL); raw != "" {
		srv, err := parseServerURL(raw)
		if err != nil {
			return nil, nil, err
		}
		return srv, nil, nil
	}
	c, err := startCluster()
	if err != nil {
		return nil, nil, err
	}
	return &server{base: c.url()}, c, nil
}

// parseServerURL reads the URL of EnvURL.
func parseServerURL(raw string) (*server, error) {
	u, err := url.Parse(raw)
	if err != nil || (u.Scheme != "postgres" && u.Scheme != "postgresql") {
		// The URL may hold a password: it is not repeated.
		return nil, fmt.Errorf("%s is not a postgres:// URL", EnvURL)
	}
	return &server{base: u}, nil
}

// url returns the URL of database name on the server.
func (s *server) url(name string) string {
	u := *s.base
	u.Path = "/" + name
	u.RawPath = ""
	return u.String()
}

// admin runs one statement on the server's maintenance database (the one
// its URL names, "postgres" by default), on a connection of its own:
// CREATE and DROP DATABASE cannot run inside a transaction or on a
// connection to the database they concern.
func (s *server) admin(ctx context.Context, stmt string) error {
	conn, err := pgx.Connect(ctx, s.base.String())
	if err != nil {
		return fmt.Errorf("connect: %w", err)
	}
	_, err = conn.Exec(ctx, stmt)
	return errors.Join(err, conn.Close(ctx))
}

// randomName returns a new database name.
func randomName() (string, error) {
	b := make([]byte, 8)
	if _, err := rand.Read(b); err != nil {
		return "", fmt.Errorf("generate database name: %w", err)
	}
	return dbPrefix + hex.EncodeToString(b), nil
}
