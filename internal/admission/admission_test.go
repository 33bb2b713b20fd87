package admission

import (
	"context"
	"errors"
	"testing"
	"time"
)

func mustAcquire(t *testing.T, p *Pool, ctx context.Context, n int64) *Reservation {
	t.Helper()
	r, err := p.Acquire(ctx, n)
	if err != nil {
		t.Fatalf("acquire %d: %v", n, err)
	}
	return r
}

func TestAcquireWithinCapacity(t *testing.T) {
	p := NewPool("test", 100, 50*time.Millisecond)
	a := mustAcquire(t, p, t.Context(), 60)
	b := mustAcquire(t, p, t.Context(), 40)
	if got := p.Stats(); got.Used != 100 || got.Peak != 100 {
		t.Fatalf("stats %+v, want used 100 peak 100", got)
	}
	a.Release()
	a.Release() // a second release must not return the bytes twice
	b.Release()
	if got := p.Stats().Used; got != 0 {
		t.Fatalf("used %d after releasing everything", got)
	}
}

func TestAcquireTimesOutWithErrBusy(t *testing.T) {
	p := NewPool("test", 100, 50*time.Millisecond)
	held := mustAcquire(t, p, t.Context(), 80)
	defer held.Release()
	start := time.Now()
	_, err := p.Acquire(t.Context(), 30)
	if !errors.Is(err, ErrBusy) {
		t.Fatalf("err = %v, want ErrBusy", err)
	}
	if waited := time.Since(start); waited < 50*time.Millisecond {
		t.Fatalf("gave up after %v, before the pool's wait", waited)
	}
	if got := p.Stats().Used; got != 80 {
		t.Fatalf("a refused reservation left used at %d", got)
	}
}

func TestAcquireWaitsForRelease(t *testing.T) {
	p := NewPool("test", 100, 5*time.Second)
	held := mustAcquire(t, p, t.Context(), 100)
	time.AfterFunc(20*time.Millisecond, held.Release)
	r := mustAcquire(t, p, t.Context(), 100)
	r.Release()
}

// TestSmallReservationsPassALargeWaiter: whoever fits in what is free goes
// first, so that one huge upload cannot hold back small requests.
func TestSmallReservationsPassALargeWaiter(t *testing.T) {
	p := NewPool("test", 100, 5*time.Second)
	held := mustAcquire(t, p, t.Context(), 50)
	bigDone := make(chan error, 1)
	go func() {
		r, err := p.Acquire(t.Context(), 100)
		if err == nil {
			r.Release()
		}
		bigDone <- err
	}()
	time.Sleep(20 * time.Millisecond) // let the large reservation wait
	small := mustAcquire(t, p, t.Context(), 10)
	small.Release()
	held.Release()
	if err := <-bigDone; err != nil {
		t.Fatalf("large reservation after the pool emptied: %v", err)
	}
}

func TestOversizeTakesTheWholePool(t *testing.T) {
	p := NewPool("test", 100, 50*time.Millisecond)
	r := mustAcquire(t, p, t.Context(), 1000)
	if got := p.Stats().Used; got != 100 {
		t.Fatalf("used %d, want the whole pool (100)", got)
	}
	if _, err := p.Acquire(t.Context(), 1); !errors.Is(err, ErrBusy) {
		t.Fatalf("err = %v while the pool is taken, want ErrBusy", err)
	}
	r.Release()
}

func TestWaitFromContextAndCancellation(t *testing.T) {
	p := NewPool("test", 10, 10*time.Millisecond)
	held := mustAcquire(t, p, t.Context(), 10)
	time.AfterFunc(100*time.Millisecond, held.Release)
	// WithWait outlasts the pool's 10 ms: the reservation gets the room.
	r := mustAcquire(t, p, WithWait(t.Context(), 5*time.Second), 10)

	ctx, cancel := context.WithCancel(t.Context())
	time.AfterFunc(20*time.Millisecond, cancel)
	_, err := p.Acquire(WithWait(ctx, time.Minute), 5)
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("err = %v, want context.Canceled", err)
	}
	r.Release()
}

func TestUnboundedPool(t *testing.T) {
	for _, p := range []*Pool{nil, NewPool("off", 0, 0)} {
		r, err := p.Acquire(t.Context(), 1<<40)
		if err != nil {
			t.Fatalf("unbounded pool refused: %v", err)
		}
		r.Release()
	}
}
