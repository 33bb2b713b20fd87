package store

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"reflect"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/visage/visage/internal/pgtest"
)

// outageFailFast bounds a call made while the database is down: refused
// at once (no socket), with room for a loaded machine.
const outageFailFast = 5 * time.Second

// TestPgUnavailable: connection-class failures are outages; what the
// server answered about the statement, a failed login, a missing
// database and a caller that gave up are not.
func TestPgUnavailable(t *testing.T) {
	pgErr := func(code string) error {
		return fmt.Errorf("query: %w", &pgconn.PgError{Severity: "FATAL", Code: code})
	}
	refused := &net.OpError{Op: "dial", Net: "tcp", Err: os.NewSyscallError("connect", syscall.ECONNREFUSED)}
	reset := &net.OpError{Op: "read", Net: "tcp", Err: os.NewSyscallError("read", syscall.ECONNRESET)}
	for _, c := range []struct {
		name string
		err  error
		want bool
	}{
		{"admin shutdown", pgErr("57P01"), true},
		{"crash shutdown", pgErr("57P02"), true},
		{"starting up", pgErr("57P03"), true},
		{"too many connections", pgErr("53300"), true},
		{"connection failure", pgErr("08006"), true},
		{"connection does not exist", pgErr("08003"), true},
		{"connection refused", fmt.Errorf("dial: %w", refused), true},
		{"connection reset", reset, true},
		{"unexpected EOF", fmt.Errorf("receive message: %w", io.ErrUnexpectedEOF), true},
		{"EOF", io.EOF, true},
		{"closed connection", fmt.Errorf("exec: %w", pgconn.ErrConnClosed), true},
		{"unique violation", pgErr(pgUniqueViolation), false},
		{"serialization failure", pgErr(pgSerializationFailure), false},
		{"invalid text", pgErr("22021"), false},
		{"wrong password", pgErr("28P01"), false},
		{"no such database", pgErr("3D000"), false},
		{"query cancelled by the server", pgErr("57014"), false},
		{"no rows", pgx.ErrNoRows, false},
		{"caller gave up", fmt.Errorf("exec: %w", context.Canceled), false},
		{"deadline of a statement", context.DeadlineExceeded, false},
		{"something else", errors.New("boom"), false},
		{"nil", nil, false},
	} {
		t.Run(c.name, func(t *testing.T) {
			if got := pgUnavailable(c.err); got != c.want {
				t.Errorf("pgUnavailable(%v) = %v, want %v", c.err, got, c.want)
			}
			if c.err == nil {
				return
			}
			if got := errors.Is(pgError(c.err), ErrUnavailable); got != c.want {
				t.Errorf("pgError(%v) is ErrUnavailable: %v, want %v", c.err, got, c.want)
			}
		})
	}

	t.Run("connect error", func(t *testing.T) {
		// A real failed attempt: nothing listens on the socket.
		url := "postgres://postgres@/postgres?sslmode=disable&host=" + t.TempDir()
		_, err := pgx.Connect(context.Background(), url)
		var ce *pgconn.ConnectError
		if !errors.As(err, &ce) {
			t.Fatalf("connect to no server: %v, want a *pgconn.ConnectError", err)
		}
		if !pgUnavailable(err) {
			t.Errorf("pgUnavailable(%v) = false", err)
		}
		ctx, cancel := context.WithCancel(context.Background())
		cancel()
		if _, err := pgx.Connect(ctx, url); err == nil || pgUnavailable(err) {
			t.Errorf("connect with a cancelled context: %v, want an error that is no outage", err)
		}
	})

	t.Run("classified once", func(t *testing.T) {
		// pgError runs inside a transaction and again at the method's
		// boundary.
		err := pgError(fmt.Errorf("insert: %w", pgError(pgErr("57P01"))))
		if !errors.Is(err, ErrUnavailable) || strings.Count(err.Error(), ErrUnavailable.Error()) != 1 {
			t.Errorf("%v: want ErrUnavailable, once", err)
		}
		var pe *pgconn.PgError
		if !errors.As(err, &pe) || pe.Code != "57P01" {
			t.Errorf("%v lost its cause", err)
		}
	})
}

// TestOpenPostgresConnectTimeout: a server that accepts connections and
// never answers (a hung host) is given up after the default connect
// timeout, as an outage, rather than waited for as long as the kernel
// keeps the connection.
func TestOpenPostgresConnectTimeout(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = ln.Close() })
	go func() {
		var held []net.Conn
		defer func() {
			for _, c := range held {
				_ = c.Close()
			}
		}()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			held = append(held, c)
		}
	}()
	start := time.Now()
	s, err := OpenPostgres(context.Background(), "postgres://visage@"+ln.Addr().String()+"/visage?sslmode=disable")
	took := time.Since(start)
	if err == nil {
		_ = s.Close()
		t.Fatal("OpenPostgres of a silent server succeeded")
	}
	if !errors.Is(err, ErrUnavailable) {
		t.Errorf("OpenPostgres of a silent server: %v, want ErrUnavailable", err)
	}
	if took < defaultConnectTimeout || took > defaultConnectTimeout+outageFailFast {
		t.Errorf("OpenPostgres of a silent server gave up after %v, want about %v", took, defaultConnectTimeout)
	}
}

// TestPostgresOutage stops the store's PostgreSQL (a fast shutdown) and
// starts it again: meanwhile a statement in flight and every call fail at
// once with ErrUnavailable (never an unclassified error, never a hang),
// and afterwards the same store, not reopened, works again.
func TestPostgresOutage(t *testing.T) {
	ctx := context.Background()
	cl := pgtest.NewCluster(t)
	s, err := OpenPostgres(ctx, cl.URL())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Close() })
	if _, err := s.CreateCollection(ctx, Collection{Name: "c", Threshold: 0.5}); err != nil {
		t.Fatal(err)
	}
	sub, err := s.CreateSubject(ctx, Subject{Collection: "c", ExternalID: "e"})
	if err != nil {
		t.Fatal(err)
	}

	// A session busy when the server goes down: PostgreSQL ends it with
	// 57P01 admin_shutdown.
	inFlight := make(chan error, 1)
	go func() {
		_, err := s.pool.Exec(ctx, `SELECT pg_sleep(60)`)
		inFlight <- pgError(err)
	}()
	waitForActiveQuery(t, s)
	if err := cl.Stop(); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-inFlight:
		if !errors.Is(err, ErrUnavailable) {
			t.Errorf("statement in flight at the shutdown: %v, want ErrUnavailable", err)
		}
	case <-time.After(outageFailFast):
		t.Fatal("the statement in flight outlived the shutdown")
	}

	t.Run("every method", func(t *testing.T) {
		unavailable := 0
		v := reflect.ValueOf(s)
		for i := range v.NumMethod() {
			m := v.Type().Method(i)
			if m.Name == "Close" {
				continue
			}
			start := time.Now()
			out := v.Method(i).Call(outageArgs(v.Method(i).Type()))
			took := time.Since(start)
			err, _ := out[len(out)-1].Interface().(error)
			switch {
			case took > outageFailFast:
				t.Errorf("%s took %v while the database is down", m.Name, took)
			case errors.Is(err, ErrUnavailable):
				unavailable++
			case err != nil && !errors.Is(err, ErrInvalid) && !errors.Is(err, ErrNotFound):
				// Refusing the arguments without asking the server is
				// fine; an unclassified error would be a 500.
				t.Errorf("%s: %v, want ErrUnavailable", m.Name, err)
			}
		}
		t.Logf("%d of %d methods answered ErrUnavailable; the others refused their arguments or had nothing to ask", unavailable, v.NumMethod()-1)
		if unavailable < v.NumMethod()*3/4 {
			t.Errorf("%d of %d methods answered ErrUnavailable: too few reached the database", unavailable, v.NumMethod())
		}
	})
	if _, err := s.GetCollection(ctx, "c"); errors.Is(err, ErrNotFound) || !errors.Is(err, ErrUnavailable) {
		t.Errorf("GetCollection while down: %v, want ErrUnavailable and not ErrNotFound", err)
	}
	cancelled, cancel := context.WithCancel(ctx)
	cancel()
	if _, err := s.GetCollection(cancelled, "c"); err == nil || errors.Is(err, ErrUnavailable) {
		t.Errorf("GetCollection with a cancelled context: %v, want an error other than ErrUnavailable", err)
	}
	if err := s.Ping(ctx); !errors.Is(err, ErrUnavailable) {
		t.Errorf("Ping while down: %v, want ErrUnavailable", err)
	}

	if err := cl.Start(); err != nil {
		t.Fatal(err)
	}
	// The pool reconnects by itself: the first call after the restart
	// already succeeds (broken connections were dropped, idle ones are
	// checked when acquired).
	if err := s.Ping(ctx); err != nil {
		t.Errorf("Ping after the restart: %v", err)
	}
	if got, err := s.GetSubject(ctx, "c", sub.ID); err != nil || got.ExternalID != "e" {
		t.Errorf("GetSubject after the restart: %+v, %v", got, err)
	}
	if _, err := s.CreateSubject(ctx, Subject{Collection: "c", ExternalID: "e"}); !errors.Is(err, ErrConflict) {
		t.Errorf("CreateSubject of a taken external id after the restart: %v, want ErrConflict", err)
	}
	if _, err := s.GetCollection(ctx, "nope"); !errors.Is(err, ErrNotFound) {
		t.Errorf("GetCollection of a missing collection after the restart: %v, want ErrNotFound", err)
	}
}

// waitForActiveQuery waits until a statement of the store's runs.
func waitForActiveQuery(t *testing.T, s *Postgres) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		var n int
		err := s.pool.QueryRow(context.Background(),
			`SELECT count(*) FROM pg_stat_activity WHERE query = 'SELECT pg_sleep(60)' AND state = 'active'`).Scan(&n)
		if err != nil {
			t.Fatal(err)
		}
		if n > 0 {
			return
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatal("the statement never started")
}

// outageArgs are arguments for a store method that reach the database
// where they can: a context, a name, a key, a limit of 1.
func outageArgs(fn reflect.Type) []reflect.Value {
	args := make([]reflect.Value, fn.NumIn())
	for i := range fn.NumIn() {
		in := fn.In(i)
		v := reflect.New(in).Elem()
		switch {
		case in == reflect.TypeFor[context.Context]():
			v.Set(reflect.ValueOf(context.Background()))
		case in == reflect.TypeFor[time.Time]():
			v.Set(reflect.ValueOf(time.Now()))
		case in.Kind() == reflect.String:
			v.SetString("x")
		case in.Kind() == reflect.Int || in.Kind() == reflect.Int64:
			v.SetInt(1)
		case in.Kind() == reflect.Uint64:
			v.SetUint(1)
		case in.Kind() == reflect.Float64:
			v.SetFloat(0.5)
		case in == reflect.TypeFor[[]uint64]():
			v.Set(reflect.ValueOf([]uint64{1}))
		case in == reflect.TypeFor[[]byte]():
			v.SetBytes([]byte("x"))
		}
		args[i] = v
	}
	return args
}

// TestPostgresQuickRestart restarts the server between two calls, faster
// than the pool pings idle connections (a second): the pool still holds
// connections the restart broke. The first call may fail on one of them,
// with ErrUnavailable; it closes the others, so the next calls succeed.
func TestPostgresQuickRestart(t *testing.T) {
	ctx := context.Background()
	cl := pgtest.NewCluster(t)
	s, err := OpenPostgres(ctx, cl.URL())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Close() })
	// Four connections at once leave four idle ones.
	const conns = 4
	var wg sync.WaitGroup
	for range conns {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if _, err := s.pool.Exec(ctx, `SELECT pg_sleep(0.1)`); err != nil {
				t.Error(err)
			}
		}()
	}
	wg.Wait()
	if idle := s.pool.Stat().IdleConns(); idle < 2 {
		t.Fatalf("%d idle connections, want several", idle)
	}
	if err := cl.Stop(); err != nil {
		t.Fatal(err)
	}
	if err := cl.Start(); err != nil {
		t.Fatal(err)
	}
	for i := range conns + 1 {
		_, err := s.GetCollection(ctx, "c")
		switch {
		case errors.Is(err, ErrNotFound):
		case i == 0 && errors.Is(err, ErrUnavailable):
			// The stale connection it drew; the others are closed now.
		default:
			t.Errorf("call %d after the restart: %v, want ErrNotFound", i+1, err)
		}
	}
}
