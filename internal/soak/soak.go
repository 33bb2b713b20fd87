// Package soak drives a visaged with mixed traffic for a long time —
// enrollments, identifications, deletions, subject listings and import
// jobs — and samples the server's resident memory, goroutines and open
// files with each kind's latency at fixed intervals, so that growth shows
// as a trend rather than hides in a single figure.
package soak

import (
	"archive/zip"
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"mime/multipart"
	"net/http"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/visage/visage/internal/hostile"
)

// Photo is one face photo of a person.
type Photo struct {
	Person string
	Data   []byte
}

// Config is one soak.
type Config struct {
	URL, Key   string
	Collection string // created if missing
	// Photos are enrolled and identified: each enrollment takes one photo
	// of a person, identifications probe with any photo.
	Photos   []Photo
	Duration time.Duration
	Interval time.Duration // between samples
	Clients  int           // concurrent traffic loops
	// ImportEvery starts an import job (a zip of a few photos) this often;
	// 0: none.
	ImportEvery time.Duration
	PID         int       // the server process, sampled from /proc
	Out         io.Writer // one line per sample
	Seed        uint64
}

// Kinds of traffic.
const (
	Enroll   = "enroll"
	Identify = "identify"
	Delete   = "delete"
	List     = "list"
	Import   = "import"
)

var kinds = []string{Enroll, Identify, Delete, List, Import}

// Sample is the server's state at one moment and the traffic since the
// previous sample.
type Sample struct {
	At         time.Duration
	RSS        int64 // bytes
	Goroutines int
	OpenFiles  int
	// Faces is the collection's size: memory may grow with it.
	Faces int64
	// Requests and Failures (5xx and transport errors) by kind since the
	// previous sample, and the latencies' median and 99th percentile.
	Requests, Failures map[string]int
	P50, P99           map[string]time.Duration
}

type tally struct {
	mu       sync.Mutex
	lat      map[string][]time.Duration
	failures map[string]int
}

func (t *tally) add(kind string, d time.Duration, failed bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.lat[kind] = append(t.lat[kind], d)
	if failed {
		t.failures[kind]++
	}
}

// take returns what was tallied and starts afresh.
func (t *tally) take() (map[string][]time.Duration, map[string]int) {
	t.mu.Lock()
	defer t.mu.Unlock()
	lat, f := t.lat, t.failures
	t.lat, t.failures = map[string][]time.Duration{}, map[string]int{}
	return lat, f
}

type client struct {
	hc   *http.Client
	cfg  Config
	mu   sync.Mutex
	subs []string // subjects the soak enrolled and has not deleted
}

// Run soaks the server and returns one sample per interval (and one at
// the start).
func Run(ctx context.Context, cfg Config) ([]Sample, error) {
	if len(cfg.Photos) == 0 {
		return nil, fmt.Errorf("soak: no photos")
	}
	c := &client{hc: &http.Client{Timeout: time.Minute}, cfg: cfg}
	defer c.hc.CloseIdleConnections()
	body, _ := json.Marshal(map[string]any{"name": cfg.Collection})
	if st, out, err := c.do(ctx, "POST", "/v1/collections", "application/json", body); err != nil || (st != http.StatusCreated && st != http.StatusConflict) {
		return nil, fmt.Errorf("soak: create collection: %d %s %v", st, out, err)
	}

	t := &tally{lat: map[string][]time.Duration{}, failures: map[string]int{}}
	var samples []Sample
	first, err := c.sample(ctx, 0, t)
	if err != nil {
		return nil, err
	}
	samples = append(samples, first)
	c.print(first)

	run, stop := context.WithTimeout(ctx, cfg.Duration)
	defer stop()
	var wg sync.WaitGroup
	for i := range max(cfg.Clients, 1) {
		rng := rand.New(rand.NewPCG(cfg.Seed, uint64(i)))
		wg.Go(func() { c.loop(run, rng, t) })
	}
	if cfg.ImportEvery > 0 {
		rng := rand.New(rand.NewPCG(cfg.Seed, 1000))
		wg.Go(func() {
			tick := time.NewTicker(cfg.ImportEvery)
			defer tick.Stop()
			for n := 0; ; n++ {
				select {
				case <-run.Done():
					return
				case <-tick.C:
				}
				start := time.Now()
				st, err := c.startImport(run, rng, n)
				t.add(Import, time.Since(start), err != nil || st >= 500)
			}
		})
	}
	start := time.Now()
	tick := time.NewTicker(cfg.Interval)
	defer tick.Stop()
	for run.Err() == nil {
		select {
		case <-run.Done():
		case <-tick.C:
			s, err := c.sample(ctx, time.Since(start), t)
			if err != nil {
				stop()
				wg.Wait()
				return samples, err
			}
			samples = append(samples, s)
			c.print(s)
		}
	}
	wg.Wait()
	return samples, nil
}

// loop sends traffic until ctx ends: half identifications, a quarter
// enrollments, the rest deletions and listings.
func (c *client) loop(ctx context.Context, rng *rand.Rand, t *tally) {
	for ctx.Err() == nil {
		var kind string
		var status int
		var err error
		start := time.Now()
		switch r := rng.IntN(100); {
		case r < 50:
			kind = Identify
			status, err = c.identify(ctx, rng)
		case r < 75:
			kind = Enroll
			status, err = c.enroll(ctx, rng)
		case r < 90:
			kind = Delete
			status, err = c.deleteOne(ctx, rng)
		default:
			kind = List
			status, _, err = c.do(ctx, "GET", "/v1/collections/"+c.cfg.Collection+"/subjects?limit=50", "", nil)
		}
		if ctx.Err() != nil {
			return
		}
		t.add(kind, time.Since(start), err != nil || status >= 500)
	}
}

func (c *client) do(ctx context.Context, method, path, ct string, body []byte) (int, []byte, error) {
	req, err := http.NewRequestWithContext(ctx, method, c.cfg.URL+path, bytes.NewReader(body))
	if err != nil {
		return 0, nil, err
	}
	req.Header.Set("Authorization", "Bearer "+c.cfg.Key)
	if ct != "" {
		req.Header.Set("Content-Type", ct)
	}
	resp, err := c.hc.Do(req)
	if err != nil {
		return 0, nil, err
	}
	defer resp.Body.Close()
	out, err := io.ReadAll(resp.Body)
	return resp.StatusCode, out, err
}

func imageBody(img []byte) ([]byte, string) {
	var buf bytes.Buffer
	w := multipart.NewWriter(&buf)
	fw, _ := w.CreateFormFile("image", "photo")
	fw.Write(img)
	w.Close()
	return buf.Bytes(), w.FormDataContentType()
}

func (c *client) identify(ctx context.Context, rng *rand.Rand) (int, error) {
	p := c.cfg.Photos[rng.IntN(len(c.cfg.Photos))]
	body, ct := imageBody(p.Data)
	st, _, err := c.do(ctx, "POST", "/v1/collections/"+c.cfg.Collection+"/identify", ct, body)
	return st, err
}

func (c *client) enroll(ctx context.Context, rng *rand.Rand) (int, error) {
	p := c.cfg.Photos[rng.IntN(len(c.cfg.Photos))]
	body, _ := json.Marshal(map[string]any{"external_id": fmt.Sprintf("%s-%d", p.Person, rng.Uint32()), "display_name": p.Person})
	st, out, err := c.do(ctx, "POST", "/v1/collections/"+c.cfg.Collection+"/subjects", "application/json", body)
	if err != nil || st != http.StatusCreated {
		return st, err
	}
	var sub struct {
		ID string `json:"id"`
	}
	if err := json.Unmarshal(out, &sub); err != nil {
		return st, err
	}
	img, ct := imageBody(p.Data)
	st, _, err = c.do(ctx, "POST", "/v1/collections/"+c.cfg.Collection+"/subjects/"+sub.ID+"/faces", ct, img)
	c.mu.Lock()
	c.subs = append(c.subs, sub.ID)
	c.mu.Unlock()
	return st, err
}

func (c *client) deleteOne(ctx context.Context, rng *rand.Rand) (int, error) {
	c.mu.Lock()
	if len(c.subs) == 0 {
		c.mu.Unlock()
		return http.StatusNoContent, nil
	}
	i := rng.IntN(len(c.subs))
	id := c.subs[i]
	c.subs = slices.Delete(c.subs, i, i+1)
	c.mu.Unlock()
	st, _, err := c.do(ctx, "DELETE", "/v1/collections/"+c.cfg.Collection+"/subjects/"+id, "", nil)
	return st, err
}

// startImport uploads a zip of four photos, each in a folder of its own
// subject, as an import job.
func (c *client) startImport(ctx context.Context, rng *rand.Rand, n int) (int, error) {
	var buf bytes.Buffer
	zw := zip.NewWriter(&buf)
	for i := range 4 {
		p := c.cfg.Photos[rng.IntN(len(c.cfg.Photos))]
		w, err := zw.Create(fmt.Sprintf("import-%d-%d-%s/photo.jpg", n, i, p.Person))
		if err != nil {
			return 0, err
		}
		w.Write(p.Data)
	}
	if err := zw.Close(); err != nil {
		return 0, err
	}
	st, _, err := c.do(ctx, "POST", "/v1/collections/"+c.cfg.Collection+"/imports", "application/zip", buf.Bytes())
	return st, err
}

func (c *client) sample(ctx context.Context, at time.Duration, t *tally) (Sample, error) {
	s := Sample{At: at, Requests: map[string]int{}, Failures: map[string]int{}, P50: map[string]time.Duration{}, P99: map[string]time.Duration{}}
	lat, failures := t.take()
	for k, l := range lat {
		slices.Sort(l)
		s.Requests[k] = len(l)
		s.P50[k] = l[len(l)/2]
		s.P99[k] = l[min(len(l)-1, len(l)*99/100)]
	}
	s.Failures = failures
	if c.cfg.PID > 0 {
		rss, _, err := hostile.Memory(c.cfg.PID)
		if err != nil {
			return s, err
		}
		s.RSS = rss
		fds, err := os.ReadDir(fmt.Sprintf("/proc/%d/fd", c.cfg.PID))
		if err != nil {
			return s, fmt.Errorf("count open files: %w", err)
		}
		s.OpenFiles = len(fds)
	}
	g, err := c.goroutines(ctx)
	if err != nil {
		return s, err
	}
	s.Goroutines = g
	st, out, err := c.do(ctx, "GET", "/v1/collections/"+c.cfg.Collection+"/stats", "", nil)
	if err != nil || st != http.StatusOK {
		return s, fmt.Errorf("read stats: %d %v", st, err)
	}
	var stats struct {
		Faces int64 `json:"faces"`
	}
	if err := json.Unmarshal(out, &stats); err != nil {
		return s, fmt.Errorf("read stats: %w", err)
	}
	s.Faces = stats.Faces
	return s, nil
}

// goroutines reads go_goroutines from the server's /metrics.
func (c *client) goroutines(ctx context.Context) (int, error) {
	st, out, err := c.do(ctx, "GET", "/metrics", "", nil)
	if err != nil || st != http.StatusOK {
		return 0, fmt.Errorf("read /metrics: %d %v", st, err)
	}
	sc := bufio.NewScanner(bytes.NewReader(out))
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), "go_goroutines "); ok {
			f, err := strconv.ParseFloat(v, 64)
			return int(f), err
		}
	}
	return 0, fmt.Errorf("read /metrics: no go_goroutines")
}

func (c *client) print(s Sample) {
	if c.cfg.Out == nil {
		return
	}
	var b strings.Builder
	fmt.Fprintf(&b, "soak t=%4.0fs faces=%d rss_mb=%.0f goroutines=%d open_files=%d", s.At.Seconds(), s.Faces, float64(s.RSS)/(1<<20), s.Goroutines, s.OpenFiles)
	for _, k := range kinds {
		if n := s.Requests[k]; n > 0 {
			fmt.Fprintf(&b, " %s=%d/%d:p50_ms=%.0f,p99_ms=%.0f", k, n, s.Failures[k], ms(s.P50[k]), ms(s.P99[k]))
		}
	}
	fmt.Fprintln(c.cfg.Out, b.String())
}

func ms(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }
