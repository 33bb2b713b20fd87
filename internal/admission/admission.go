// Package admission bounds the memory that requests may hold at once.
//
// A Pool is a budget of bytes. Work that is about to allocate a known
// amount (a request body, the pixels of a decoded image) reserves it first
// and returns it when done; when the budget is spent, it waits a short
// while for others to finish and then gives up with ErrBusy, which the
// HTTP layer answers 503 with Retry-After. The process's peak memory is
// then its idle footprint plus the budgets, whatever the load.
//
// Waiters are not served in arrival order: whoever fits in what was just
// freed goes first. A FIFO queue would let one reservation the size of the
// whole budget hold back every small request behind it, and a small
// identification must not wait for a flood of 40-megapixel uploads to
// drain. Large reservations may therefore wait longer under load; they
// time out and are refused rather than served late.
package admission

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"
)

// ErrBusy means the budget stayed spent for the whole wait.
var ErrBusy = errors.New("server busy: memory budget in use")

// DefaultWait is how long a reservation waits for room by default.
const DefaultWait = 2 * time.Second

// Pool is a budget of bytes shared by concurrent work.
type Pool struct {
	name     string
	capacity int64
	wait     time.Duration

	mu    sync.Mutex
	used  int64
	freed chan struct{} // closed and replaced whenever bytes are released
	peak  int64
}

// NewPool returns a budget of capacity bytes whose reservations wait at
// most wait for room (DefaultWait when zero). A capacity ≤ 0 means no
// budget: every reservation succeeds at once.
func NewPool(name string, capacity int64, wait time.Duration) *Pool {
	if wait <= 0 {
		wait = DefaultWait
	}
	return &Pool{name: name, capacity: capacity, wait: wait, freed: make(chan struct{})}
}

// Capacity is the pool's budget in bytes (≤ 0: unbounded).
func (p *Pool) Capacity() int64 { return p.capacity }

// Wait is how long a reservation waits for room.
func (p *Pool) Wait() time.Duration { return p.wait }

// Stats are a pool's use.
type Stats struct {
	Used, Peak, Capacity int64
}

// Stats returns what is reserved now and the most ever reserved.
func (p *Pool) Stats() Stats {
	p.mu.Lock()
	defer p.mu.Unlock()
	return Stats{Used: p.used, Peak: p.peak, Capacity: p.capacity}
}

type waitKey struct{}

// WithWait returns a context under which reservations wait up to d rather
// than the pool's default: background work (import jobs) would rather
// wait for room than fail an item.
func WithWait(ctx context.Context, d time.Duration) context.Context {
	return context.WithValue(ctx, waitKey{}, d)
}

// Reservation is bytes taken from a pool; Release returns them.
type Reservation struct {
	pool *Pool
	n    int64
	once sync.Once
}

// Release returns the bytes; calling it again does nothing. A nil
// Reservation's Release is a no-op, so callers may defer it
// unconditionally.
func (r *Reservation) Release() {
	if r == nil || r.pool == nil {
		return
	}
	r.once.Do(func() { r.pool.release(r.n) })
}

// Acquire reserves n bytes, waiting for room up to the pool's wait (or the
// context's, see WithWait). A reservation larger than the whole budget
// takes the whole budget, so that it runs alone rather than never. It
// returns ErrBusy when no room was made in time and the context's error if
// the context ended first.
func (p *Pool) Acquire(ctx context.Context, n int64) (*Reservation, error) {
	if p == nil || p.capacity <= 0 || n <= 0 {
		return &Reservation{}, nil
	}
	n = min(n, p.capacity)
	wait := p.wait
	if d, ok := ctx.Value(waitKey{}).(time.Duration); ok {
		wait = d
	}
	var timer <-chan time.Time
	for {
		p.mu.Lock()
		if p.used+n <= p.capacity {
			p.used += n
			p.peak = max(p.peak, p.used)
			p.mu.Unlock()
			return &Reservation{pool: p, n: n}, nil
		}
		freed := p.freed
		p.mu.Unlock()
		if timer == nil {
			t := time.NewTimer(wait)
			defer t.Stop()
			timer = t.C
		}
		select {
		case <-freed:
		case <-timer:
			return nil, fmt.Errorf("reserve %d MiB of %s: %w", n>>20, p.name, ErrBusy)
		case <-ctx.Done():
			return nil, fmt.Errorf("reserve %s: %w", p.name, ctx.Err())
		}
	}
}

func (p *Pool) release(n int64) {
	p.mu.Lock()
	p.used -= n
	close(p.freed)
	p.freed = make(chan struct{})
	p.mu.Unlock()
}
