package main

import (
	"bufio"
	"context"
	"flag"
	"fmt"
	"os"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/visage/visage/detect"
	"github.com/visage/visage/gallery"
	"github.com/visage/visage/internal/imageio"
)

func runBench(ctx context.Context, env *cliEnv, args []string) error {
	if len(args) > 0 && args[0] == "startup" {
		return runBenchStartup(ctx, env, args[1:])
	}
	if len(args) > 0 && args[0] == "http" {
		return runBenchHTTP(ctx, env, args[1:])
	}
	if len(args) > 0 && args[0] == "index" {
		return runBenchIndex(ctx, env, args[1:])
	}
	if len(args) > 0 && args[0] == "hostile" {
		return runBenchHostile(ctx, env, args[1:])
	}
	if len(args) > 0 && args[0] == "import" {
		return runBenchImport(ctx, env, args[1:])
	}
	if len(args) == 0 || args[0] != "engine" {
		return fmt.Errorf("usage: visage bench engine [--workers N] [--seconds S] [--repeat R] IMAGE... | visage bench index [flags] | visage bench import --dir DIR [flags] | visage bench hostile --image FILE [flags]")
	}
	fs := flag.NewFlagSet("bench engine", flag.ContinueOnError)
	fs.SetOutput(env.stderr)
	var ef engineFlags
	ef.register(fs, 2)
	seconds := fs.Float64("seconds", 10, "duration of the throughput run")
	repeat := fs.Int("repeat", 5, "single-worker runs per image for the stage timings (median)")
	if err := fs.Parse(args[1:]); err != nil {
		return err
	}
	if fs.NArg() == 0 {
		return fmt.Errorf("no images given")
	}
	eng, err := ef.open()
	if err != nil {
		return err
	}
	defer eng.Close()
	var images [][]byte
	for _, p := range fs.Args() {
		data, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		images = append(images, data)
	}

	// Stage timings, one request at a time (one worker busy: one core).
	full, err := detect.NewHOG(detect.Options{MaxUpsample: 1})
	if err != nil {
		return err
	}
	defer full.Close()
	totalRef, totalKept := 0, 0
	for i, data := range images {
		var runs []gallery.Timings
		var faces int
		for r := 0; r < *repeat+1; r++ {
			res, err := eng.Faces(ctx, data)
			if err != nil {
				return fmt.Errorf("%s: %w", fs.Arg(i), err)
			}
			if r > 0 { // the first run warms caches
				runs = append(runs, res.Timings)
			}
			faces = len(res.Faces)
		}
		img, err := imageio.Decode(data, eng.Limits())
		if err != nil {
			return err
		}
		ref, err := full.Detect(ctx, img)
		if err != nil {
			return err
		}
		got, err := eng.Detector.Detect(ctx, img)
		if err != nil {
			return err
		}
		kept := 0
		for _, r := range ref {
			if detect.Matches(r.Rect, got) {
				kept++
			}
		}
		totalRef += len(ref)
		totalKept += kept
		med := medianTimings(runs)
		fmt.Fprintf(env.stdout, "image=%s size=%dx%d faces=%d decode_ms=%.1f detect_ms=%.1f align_ms=%.1f embed_ms=%.1f total_ms=%.1f fullres_hog_faces=%d kept=%d\n",
			fs.Arg(i), img.Width, img.Height, faces, ms(med.Decode), ms(med.Detect), ms(med.Align), ms(med.Embed),
			ms(med.Decode+med.Detect+med.Align+med.Embed), len(ref), kept)
	}

	// Throughput: as many concurrent requests as workers, for a while.
	workers := eng.Embedder.Workers()
	var facesDone, imagesDone atomic.Int64
	deadline := time.Now().Add(time.Duration(*seconds * float64(time.Second)))
	start := time.Now()
	var wg sync.WaitGroup
	var next atomic.Int64
	errs := make(chan error, workers)
	for w := 0; w < workers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for time.Now().Before(deadline) {
				data := images[int(next.Add(1)-1)%len(images)]
				res, err := eng.Faces(ctx, data)
				if err != nil {
					errs <- err
					return
				}
				facesDone.Add(int64(len(res.Faces)))
				imagesDone.Add(1)
			}
		}()
	}
	wg.Wait()
	close(errs)
	if err := <-errs; err != nil {
		return err
	}
	el := time.Since(start).Seconds()
	rss, hwm := memoryKB()
	fmt.Fprintf(env.stdout, "bench workers=%d variant=%s images_per_s=%.1f faces_per_s=%.1f recall_vs_fullres=%d/%d rss_mb=%.0f peak_rss_mb=%.0f\n",
		workers, eng.Embedder.Variant(), float64(imagesDone.Load())/el, float64(facesDone.Load())/el, totalKept, totalRef, float64(rss)/1024, float64(hwm)/1024)
	return nil
}

func ms(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }

func medianTimings(runs []gallery.Timings) gallery.Timings {
	pick := func(get func(gallery.Timings) time.Duration) time.Duration {
		v := make([]time.Duration, len(runs))
		for i, r := range runs {
			v[i] = get(r)
		}
		sort.Slice(v, func(i, j int) bool { return v[i] < v[j] })
		return v[len(v)/2]
	}
	return gallery.Timings{
		Decode: pick(func(t gallery.Timings) time.Duration { return t.Decode }),
		Detect: pick(func(t gallery.Timings) time.Duration { return t.Detect }),
		Align:  pick(func(t gallery.Timings) time.Duration { return t.Align }),
		Embed:  pick(func(t gallery.Timings) time.Duration { return t.Embed }),
	}
}

// memoryKB reads the process's resident and peak resident memory.
func memoryKB() (rss, hwm int64) {
	f, err := os.Open("/proc/self/status")
	if err != nil {
		return 0, 0
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		var v int64
		line := sc.Text()
		switch {
		case strings.HasPrefix(line, "VmRSS:"):
			fmt.Sscanf(strings.TrimPrefix(line, "VmRSS:"), "%d", &v)
			rss = v
		case strings.HasPrefix(line, "VmHWM:"):
			fmt.Sscanf(strings.TrimPrefix(line, "VmHWM:"), "%d", &v)
			hwm = v
		}
	}
	return rss, hwm
}
