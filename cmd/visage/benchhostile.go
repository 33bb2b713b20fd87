package main

import (
	"context"
	"flag"
	"fmt"
	"net/http"
	"os"
	"sort"
	"strings"
	"time"

	"github.com/visage/visage/internal/hostile"
)

// runBenchHostile sends the hardening issue's worst-case requests (the
// truncated 6324² JPEG, the all-zero 40 MP PNG and a large JSON body) from
// many clients at once, identifies a normal photo meanwhile, and prints
// the server's peak memory and the normal identification's latency.
func runBenchHostile(ctx context.Context, env *cliEnv, args []string) error {
	fs := flag.NewFlagSet("bench hostile", flag.ContinueOnError)
	fs.SetOutput(env.stderr)
	url := fs.String("url", "http://127.0.0.1:8080", "visaged's base URL")
	keyFile := fs.String("key-file", "", "file holding an API key (default $VISAGE_KEY)")
	pid := fs.Int("pid", 0, "visaged's process id, whose memory is sampled (0: not measured)")
	collection := fs.String("collection", "hostile", "collection to identify against")
	enrollDir := fs.String("enroll", "", "first create the collection and enroll DIR/<person>/<photo> into it")
	imagePath := fs.String("image", "", "normal probe photo, identified every --probe-every during the burst")
	probeEvery := fs.Duration("probe-every", 250*time.Millisecond, "interval of the normal identifications")
	concurrency := fs.Int("concurrency", 64, "hostile clients")
	duration := fs.Duration("duration", 30*time.Second, "length of the burst")
	jsonMB := fs.Int("json-mb", 60, "size of the JSON body, in MB")
	if err := fs.Parse(args); err != nil {
		return err
	}
	key, err := benchKey(*keyFile)
	if err != nil {
		return err
	}
	if key == "" || *imagePath == "" {
		return fmt.Errorf("usage: visage bench hostile --image FILE [--key-file FILE | $VISAGE_KEY] [--url URL] [--pid PID] [--enroll DIR]")
	}
	probe, err := os.ReadFile(*imagePath)
	if err != nil {
		return err
	}
	c := &loadClient{http: &http.Client{Timeout: time.Minute}, url: strings.TrimRight(*url, "/"), key: key}
	if *enrollDir != "" {
		if _, err := c.enrollDir(ctx, *collection, *enrollDir); err != nil {
			return err
		}
	}
	if _, err := c.identify(ctx, *collection, probe); err != nil {
		return fmt.Errorf("identify before the burst: %w", err)
	}
	res, err := hostile.Run(ctx, hostile.Config{URL: c.url, Key: key, Collection: *collection,
		Concurrency: *concurrency, Duration: *duration, Payloads: hostile.Payloads(*jsonMB * 1_000_000),
		Probe: probe, ProbeEvery: *probeEvery, PID: *pid})
	if err != nil {
		return err
	}
	for _, p := range []string{"truncated-jpeg", "zero-png", "big-json"} {
		fmt.Fprintf(env.stdout, "hostile payload=%s answers=%s\n", p, statusCounts(res.Status[p]))
	}
	fmt.Fprintf(env.stdout, "hostile concurrency=%d seconds=%.0f rss_before_mb=%.0f peak_rss_mb=%.0f probes=%d probe_answers=%s probe_p50_ms=%.0f probe_p99_ms=%.0f probe_max_ms=%.0f\n",
		*concurrency, duration.Seconds(), mb(res.RSSBefore>>10), mb(res.RSSPeak>>10), len(res.Probes), statusCounts(res.ProbeStatus),
		ms(res.ProbeQuantile(0.5)), ms(res.ProbeQuantile(0.99)), ms(res.ProbeQuantile(1)))
	return nil
}

// statusCounts prints {200:3 503:10}, 0 standing for transport errors.
func statusCounts(m map[int]int) string {
	var codes []int
	for c := range m {
		codes = append(codes, c)
	}
	sort.Ints(codes)
	var parts []string
	for _, c := range codes {
		parts = append(parts, fmt.Sprintf("%d:%d", c, m[c]))
	}
	return "{" + strings.Join(parts, ",") + "}"
}
