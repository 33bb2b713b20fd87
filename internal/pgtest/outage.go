package pgtest

import (
	"errors"
	"fmt"
	"os"
	"sync"
	"syscall"
	"testing"
)

// Cluster is a private PostgreSQL server of one test, which the test may
// stop and start again to see what its clients do while the database is
// down. It is not the server New creates databases on: stopping it
// disturbs no other test.
//
// It always runs the local binaries, also when EnvURL names a server (a
// test cannot stop that one), and it needs no Main: the test's clean-up
// stops it and removes its directory.
type Cluster struct {
	mu sync.Mutex // serialises Stop and Start
	c  *cluster
}

// NewCluster starts a private cluster for the calling test. It fails the
// test if the server cannot start, in particular with "PostgreSQL not
// installed: run ./scripts/setup.sh" when the binaries are missing.
func NewCluster(t testing.TB) *Cluster {
	t.Helper()
	c, err := startCluster()
	if err != nil {
		t.Fatalf("pgtest: %v", err)
	}
	cl := &Cluster{c: c}
	t.Cleanup(func() {
		cl.mu.Lock()
		defer cl.mu.Unlock()
		if err := cl.c.stop(); err != nil {
			t.Errorf("pgtest: %v", err)
		}
	})
	return cl
}

// URL is the postgres:// URL of the cluster's database "postgres", over
// its Unix socket. It stays the same across Stop and Start.
func (cl *Cluster) URL() string { return cl.c.url().String() }

// Stop shuts the server down the way an operator's restart does, with a
// fast shutdown: PostgreSQL refuses new connections, ends the sessions
// (their open transactions roll back, their clients read 57P01
// admin_shutdown), writes a checkpoint and exits. Stop returns once the
// server has exited; the data stays for Start. Stopping a stopped cluster
// does nothing.
func (cl *Cluster) Stop() error {
	cl.mu.Lock()
	defer cl.mu.Unlock()
	if err := cl.c.halt(syscall.SIGINT); err != nil {
		return fmt.Errorf("fast shutdown: %w", err)
	}
	return nil
}

// Start starts a stopped server again on the same data directory and
// socket, and returns once it accepts connections. Starting a running
// cluster is an error.
func (cl *Cluster) Start() error {
	cl.mu.Lock()
	defer cl.mu.Unlock()
	if !cl.c.hasExited() {
		return errors.New("pgtest: the cluster is running")
	}
	if _, err := os.Stat(cl.c.dir); err != nil {
		return fmt.Errorf("pgtest: the cluster is gone: %w", err)
	}
	return cl.c.launch()
}
