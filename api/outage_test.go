package api_test

import (
	"context"
	"fmt"
	"net/http"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/visage/visage/api"
	"github.com/visage/visage/internal/pgtest"
	"github.com/visage/visage/store"
)

// Bounds of TestPostgresOutage.
const (
	// outageRequestTimeout is the client's patience: a request that hangs
	// this long while the database is down fails the test.
	outageRequestTimeout = 15 * time.Second
	// outageFailFast bounds the answer to a request made while the
	// database is down: the pool's connect timeout, with room for a
	// loaded machine.
	outageFailFast = 6 * time.Second
	// outageLength is how long the database stays down at least: longer
	// than the second after which the pool pings an idle connection
	// before handing it out.
	outageLength = 2 * time.Second
	// outageRecovery bounds the time from the database accepting
	// connections again to every kind of request succeeding.
	outageRecovery = 30 * time.Second
)

// outcome is one request of the outage test's traffic.
type outcome struct {
	op         string // "enroll", "identify" or "list"
	start, end time.Time
	status     int
	typ        string // the problem type, if any
	retryAfter string
	err        error // no answer at all (a timeout, a reset)
}

func (o outcome) String() string {
	if o.err != nil {
		return fmt.Sprintf("%s after %v: %v", o.op, o.end.Sub(o.start).Round(time.Millisecond), o.err)
	}
	return fmt.Sprintf("%s → %d %s (Retry-After %q) in %v", o.op, o.status, o.typ, o.retryAfter, o.end.Sub(o.start).Round(time.Millisecond))
}

func (o outcome) ok() bool { return o.err == nil && o.status < 300 }

// unavailable reports whether o is the answer a client may retry: 503
// unavailable with a Retry-After.
func (o outcome) unavailable() bool {
	return o.err == nil && o.status == http.StatusServiceUnavailable && o.typ == api.TypeUnavailable && o.retryAfter != ""
}

// traffic is the log of the outage test's requests.
type traffic struct {
	mu  sync.Mutex
	log []outcome
}

func (tr *traffic) add(o outcome) {
	tr.mu.Lock()
	tr.log = append(tr.log, o)
	tr.mu.Unlock()
}

func (tr *traffic) snapshot() []outcome {
	tr.mu.Lock()
	defer tr.mu.Unlock()
	return slices.Clone(tr.log)
}

// until waits, up to limit, until every op has a request started after
// since for which want holds at least n times.
func (tr *traffic) until(since time.Time, n int, want func(outcome) bool, limit time.Duration) bool {
	deadline := time.Now().Add(limit)
	for time.Now().Before(deadline) {
		counts := map[string]int{}
		for _, o := range tr.snapshot() {
			if o.start.After(since) && want(o) {
				counts[o.op]++
			}
		}
		if counts["enroll"] >= n && counts["identify"] >= n && counts["list"] >= n {
			return true
		}
		time.Sleep(50 * time.Millisecond)
	}
	return false
}

// TestPostgresOutage stops the scale-out deployment's PostgreSQL (a fast
// shutdown, as an operator's restart or a failover does) while clients
// enroll, identify and list subjects, and starts it again:
//
//   - while it is down every request is answered at once with 503
//     unavailable and a Retry-After, never 500 internal and never a hang,
//     and /readyz says not ready;
//   - once it is back the same server, not restarted, serves every kind
//     of request again within a bounded wait: the pool reconnects;
//   - nothing is half-written: no stored face lacks its vector and no
//     vector lacks its face, and what an interrupted enrollment left
//     pending the reconciler is due to finish.
func TestPostgresOutage(t *testing.T) {
	cl := pgtest.NewCluster(t)
	h := newHarness(t, harnessOptions{scaleOut: true, database: cl.URL()})
	h.client = &http.Client{Transport: h.client.Transport, Timeout: outageRequestTimeout}

	const coll = "outage"
	people := []string{"amy", "howard", "penny", "raj"}
	h.must(http.StatusCreated, "POST", "/v1/collections", h.admin, ptr(jsonBody(map[string]any{"name": coll})))
	subjects := map[string]string{}
	photos := map[string][][]byte{}
	for _, p := range people {
		var sub store.Subject
		h.must(http.StatusCreated, "POST", "/v1/collections/"+coll+"/subjects", h.admin,
			ptr(jsonBody(map[string]any{"external_id": "ext-" + p, "display_name": p}))).decode(t, &sub)
		subjects[p] = sub.ID
		for n := 1; n <= 5; n++ {
			photos[p] = append(photos[p], portrait(t, p, n))
		}
		h.must(http.StatusCreated, "POST", "/v1/collections/"+coll+"/subjects/"+sub.ID+"/faces", h.admin,
			ptr(multipartBody(images(photos[p][0])...)))
	}

	// Two clients: each enrolls one of portraits 2–5 (new faces until
	// every one is enrolled, then "exists"), identifies portrait 5 and
	// lists the subjects, in turn, until told to stop.
	var tr traffic
	quit := make(chan struct{})
	var wg sync.WaitGroup
	for w := range 2 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; ; i++ {
				select {
				case <-quit:
					return
				default:
				}
				p := people[(w+i)%len(people)]
				var (
					op   string
					resp response
					err  error
				)
				start := time.Now()
				switch i % 3 {
				case 0:
					op = "enroll"
					img := photos[p][1+(i/3+w)%4]
					resp, err = h.send("POST", "/v1/collections/"+coll+"/subjects/"+subjects[p]+"/faces", h.admin, ptr(multipartBody(images(img)...)))
				case 1:
					op = "identify"
					resp, err = h.send("POST", "/v1/collections/"+coll+"/identify", h.admin, ptr(multipartBody(part{name: "image", data: photos[p][4]})))
				case 2:
					op = "list"
					resp, err = h.send("GET", "/v1/collections/"+coll+"/subjects", h.admin, nil)
				}
				o := outcome{op: op, start: start, end: time.Now(), err: err}
				if err == nil {
					o.status, o.typ, o.retryAfter = resp.status, resp.problemType(), resp.header.Get("Retry-After")
				}
				tr.add(o)
				if !o.ok() {
					// Failures come at once: do not spin on them.
					time.Sleep(20 * time.Millisecond)
				}
			}
		}()
	}
	stopTraffic := sync.OnceFunc(func() { close(quit); wg.Wait() })
	t.Cleanup(stopTraffic)

	begin := time.Now()
	if !tr.until(begin, 1, outcome.ok, time.Minute) {
		t.Fatalf("the traffic does not succeed before the outage: %v", tr.snapshot())
	}

	if err := cl.Stop(); err != nil {
		t.Fatal(err)
	}
	stopped := time.Now()
	if !tr.until(stopped, 3, func(outcome) bool { return true }, outageRecovery) {
		t.Errorf("too few requests answered while the database is down: %v", tr.snapshot())
	}
	time.Sleep(outageLength - time.Since(stopped))
	ready := h.do("GET", "/readyz", "", nil)
	if ready.status != http.StatusServiceUnavailable || ready.problemType() != api.TypeUnavailable || ready.header.Get("Retry-After") == "" {
		t.Errorf("/readyz while the database is down: %d %s (Retry-After %q), want 503 %s with Retry-After",
			ready.status, ready.raw, ready.header.Get("Retry-After"), api.TypeUnavailable)
	}

	restarting := time.Now()
	if err := cl.Start(); err != nil {
		t.Fatal(err)
	}
	started := time.Now()
	recovered := tr.until(started, 1, outcome.ok, outageRecovery)
	if !recovered {
		t.Errorf("the traffic does not succeed %v after the database is back", outageRecovery)
	}
	recoveredAt := time.Now()
	// A few more rounds after the recovery, which must all succeed.
	tr.until(recoveredAt, 1, func(outcome) bool { return true }, outageRecovery)
	stopTraffic()
	if ready := h.do("GET", "/readyz", "", nil); ready.status != http.StatusOK {
		t.Errorf("/readyz after the database is back: %d %s, want 200", ready.status, ready.raw)
	}

	var down, during, after int
	for _, o := range tr.snapshot() {
		switch {
		case o.err != nil:
			t.Errorf("no answer: %v", o)
		case o.status == http.StatusInternalServerError:
			t.Errorf("500: %v", o)
		case o.start.After(stopped) && o.end.Before(restarting):
			// Wholly inside the outage: refused at once, retryably.
			down++
			if !o.unavailable() {
				t.Errorf("while the database is down: %v, want 503 %s with Retry-After", o, api.TypeUnavailable)
			} else if o.end.Sub(o.start) > outageFailFast {
				t.Errorf("while the database is down: %v, want an answer within %v", o, outageFailFast)
			}
		case recovered && o.start.After(recoveredAt):
			after++
			if !o.ok() {
				t.Errorf("after the recovery: %v, want success", o)
			}
		default:
			// Across the shutdown or the restart: either answer.
			during++
			if !o.ok() && !o.unavailable() {
				t.Errorf("around the outage: %v, want success or 503 %s with Retry-After", o, api.TypeUnavailable)
			}
		}
	}
	t.Logf("requests: %d while down, %d around the stop and the restart, %d after the recovery; recovered %v after the restart",
		down, during, after, recoveredAt.Sub(started).Round(time.Millisecond))

	t.Run("nothing half-written", func(t *testing.T) {
		ctx := context.Background()
		rec := h.svc.Reconciler()
		drift, err := rec.Check(ctx)
		if err != nil {
			t.Fatal(err)
		}
		t.Logf("after the outage: %d faces, %d vectors, %d pending", drift.Faces, drift.Vectors, drift.PendingFaces)
		if drift.MissingVectors != 0 || drift.OrphanVectors != 0 || len(drift.OrphanSpaces) != 0 {
			t.Errorf("after the outage: %+v, want no face without its vector and no vector without its face", drift)
		}
		if drift.PendingFaces > 0 && !rec.Unfinished() {
			t.Errorf("%d enrollments left pending, and the reconciler is not due to finish them", drift.PendingFaces)
		}
		if _, err := h.svc.Reconcile(ctx); err != nil {
			t.Fatal(err)
		}
		if drift, err = rec.Check(ctx); err != nil || drift.Drift() != 0 {
			t.Errorf("after reconciling: %+v, %v; want no drift", drift, err)
		}
		faces, err := h.store.IndexedKeys(ctx, coll)
		if err != nil {
			t.Fatal(err)
		}
		vectors, err := h.idx.Keys(ctx, "faces/"+coll)
		if err != nil {
			t.Fatal(err)
		}
		slices.Sort(faces)
		slices.Sort(vectors)
		if !slices.Equal(faces, vectors) || len(faces) < len(people) {
			t.Errorf("face keys %v, vector keys %v: want the same, at least %d", faces, vectors, len(people))
		}
	})
}
