package hostile

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"mime/multipart"
	"net/http"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"
)

func multipartPayload(name string, img []byte) Payload {
	var buf bytes.Buffer
	w := multipart.NewWriter(&buf)
	fw, _ := w.CreateFormFile("image", name)
	fw.Write(img)
	w.Close()
	return Payload{Name: name, ContentType: w.FormDataContentType(), Body: buf.Bytes()}
}

// ImageBody is a multipart identify body holding img.
func ImageBody(img []byte) Payload { return multipartPayload("probe", img) }

// Config is one burst.
type Config struct {
	URL, Key   string
	Collection string // identified against by the attack and the probe
	// Concurrency clients send Payloads in turn, each as soon as its
	// previous request was answered, for Duration.
	Concurrency int
	Duration    time.Duration
	Payloads    []Payload
	// Probe is a normal photo identified every ProbeEvery meanwhile.
	Probe      []byte
	ProbeEvery time.Duration
	// PID is the server process whose memory is sampled (0: none).
	PID int
}

// Result is what a burst measured.
type Result struct {
	// Status counts the answers to each payload by HTTP status; 0 counts
	// transport errors (connection reset, timeout).
	Status map[string]map[int]int
	// Probes are the normal identifications' latencies, in order, and
	// ProbeStatus their answers.
	Probes      []time.Duration
	ProbeStatus map[int]int
	// RSSBefore is the server's resident memory before the burst and
	// RSSPeak its high-water mark during it (VmHWM after resetting it, or
	// the largest sample where the kernel refuses the reset), in bytes.
	RSSBefore, RSSPeak int64
}

// ProbeQuantile returns the q-quantile of the probes' latencies.
func (r Result) ProbeQuantile(q float64) time.Duration {
	if len(r.Probes) == 0 {
		return 0
	}
	s := slices.Clone(r.Probes)
	slices.Sort(s)
	return s[min(len(s)-1, int(q*float64(len(s))))]
}

// Run sends the burst and returns what it measured.
func Run(ctx context.Context, cfg Config) (Result, error) {
	res := Result{Status: map[string]map[int]int{}, ProbeStatus: map[int]int{}}
	for _, p := range cfg.Payloads {
		res.Status[p.Name] = map[int]int{}
	}
	hc := &http.Client{Timeout: 2 * time.Minute, Transport: &http.Transport{MaxIdleConnsPerHost: cfg.Concurrency + 1}}
	defer hc.CloseIdleConnections()
	path := cfg.URL + "/v1/collections/" + cfg.Collection + "/identify"

	if cfg.PID > 0 {
		rss, _, err := Memory(cfg.PID)
		if err != nil {
			return res, err
		}
		res.RSSBefore = rss
		// Writing 5 to clear_refs resets VmHWM (Linux ≥ 4.0), so that the
		// peak read afterwards is the burst's, not the start-up's.
		_ = os.WriteFile(fmt.Sprintf("/proc/%d/clear_refs", cfg.PID), []byte("5"), 0)
	}

	ctx, cancel := context.WithTimeout(ctx, cfg.Duration)
	defer cancel()
	var mu sync.Mutex
	var wg sync.WaitGroup
	for i := range cfg.Concurrency {
		wg.Go(func() {
			for n := i; ctx.Err() == nil; n++ {
				p := cfg.Payloads[n%len(cfg.Payloads)]
				status := send(hc, path, cfg.Key, p)
				if ctx.Err() != nil && status == 0 {
					return
				}
				mu.Lock()
				res.Status[p.Name][status]++
				mu.Unlock()
			}
		})
	}
	if cfg.Probe != nil {
		probe := ImageBody(cfg.Probe)
		wg.Go(func() {
			t := time.NewTicker(cfg.ProbeEvery)
			defer t.Stop()
			for {
				select {
				case <-ctx.Done():
					return
				case <-t.C:
				}
				start := time.Now()
				status := send(hc, path, cfg.Key, probe)
				mu.Lock()
				res.Probes = append(res.Probes, time.Since(start))
				res.ProbeStatus[status]++
				mu.Unlock()
			}
		})
	}
	var sampled int64
	if cfg.PID > 0 {
		wg.Go(func() {
			t := time.NewTicker(50 * time.Millisecond)
			defer t.Stop()
			for {
				if rss, _, err := Memory(cfg.PID); err == nil {
					mu.Lock()
					sampled = max(sampled, rss)
					mu.Unlock()
				}
				select {
				case <-ctx.Done():
					return
				case <-t.C:
				}
			}
		})
	}
	wg.Wait()
	if cfg.PID > 0 {
		_, hwm, err := Memory(cfg.PID)
		if err != nil {
			return res, err
		}
		res.RSSPeak = max(hwm, sampled)
	}
	return res, nil
}

// send posts one payload and returns the status, 0 for a transport error.
func send(hc *http.Client, url, key string, p Payload) int {
	req, err := http.NewRequest(http.MethodPost, url, bytes.NewReader(p.Body))
	if err != nil {
		return 0
	}
	req.Header.Set("Authorization", "Bearer "+key)
	req.Header.Set("Content-Type", p.ContentType)
	resp, err := hc.Do(req)
	if err != nil {
		return 0
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp.StatusCode
}

// Memory reads a process's resident set and its high-water mark, in
// bytes, from /proc.
func Memory(pid int) (rss, hwm int64, err error) {
	f, err := os.Open(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, 0, fmt.Errorf("read process memory: %w", err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		name, val, ok := strings.Cut(sc.Text(), ":")
		if !ok || (name != "VmRSS" && name != "VmHWM") {
			continue
		}
		kb, err := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(val), " kB"), 10, 64)
		if err != nil {
			return 0, 0, fmt.Errorf("parse %s: %w", name, err)
		}
		if name == "VmRSS" {
			rss = kb << 10
		} else {
			hwm = kb << 10
		}
	}
	return rss, hwm, sc.Err()
}
