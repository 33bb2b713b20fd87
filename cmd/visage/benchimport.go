package main

import (
	"context"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"runtime"
	"runtime/pprof"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/visage/visage/embed"
	"github.com/visage/visage/gallery"
	"github.com/visage/visage/index"
	"github.com/visage/visage/internal/archive"
	"github.com/visage/visage/store"
)

// runBenchImport measures whether an import job keeps the engine busy:
// the engine alone over a folder tree's photos (its own throughput, the
// peer), then import jobs of the same tree into fresh collections of an
// embedded store and index (SQLite + HNSW, as visaged runs by default),
// one after the other in this process, with the process's memory after
// each.
//
// "Faces per second" is the same count in both phases: photos that give
// an enrolled face, i.e. for the engine, photos whose largest face
// enrollment would accept (unique within the tie ratio and passing the
// quality gates); for the import, photos enrolled. The engine is
// deterministic, so both phases count the same photos and the ratio of
// the rates is the ratio of the times.
func runBenchImport(ctx context.Context, env *cliEnv, args []string) error {
	fs := flag.NewFlagSet("bench import", flag.ContinueOnError)
	fs.SetOutput(env.stderr)
	var ef engineFlags
	ef.register(fs, 2)
	dir := fs.String("dir", "", "folder tree to import, <subject external id>/<images> (the LFW development images: ../shared/testdata/lfw-dev/images)")
	repeat := fs.Int("repeat", 1, "import the tree this many times (10: ten times the photos)")
	into := fs.String("into", "many", "many: each repetition into a new collection; one: all into one collection, the subjects of repetition N named rN-<folder>, so that it grows by the tree each time")
	data := fs.String("data", "", "data directory for the store and index (default: a temporary one, removed)")
	importWorkers := fs.Int("import-workers", 0, "photos in flight per import job (0: gallery.DefaultImportConfig's, twice the engine workers)")
	concurrency := fs.String("engine-concurrency", "", "concurrent engine calls tried for the engine's own throughput, comma-separated (default: workers and twice workers); the best counts")
	engineAfter := fs.Bool("engine-after", true, "measure the engine again after the imports (the peer is the mean of before and after)")
	interleave := fs.Bool("interleave", false, "also run the engine alone after each import job, at the best concurrency before the imports, and compare each job with the engine passes on either side of it: the machine's speed drifts over minutes, and this puts both sides under the same drift")
	cpuProfile := fs.String("cpuprofile", "", "write a CPU profile of the import phase to this file")
	engineProfile := fs.String("engine-cpuprofile", "", "write a CPU profile of the engine's runs before the imports to this file")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *dir == "" || fs.NArg() > 0 || *repeat < 1 || (*into != "many" && *into != "one") {
		return fmt.Errorf("usage: visage bench import --dir DIR [--repeat N] [--into many|one] [--workers N] [--data DIR] [--import-workers N] [--engine-concurrency LIST] [--engine-after=false] [--interleave] [--cpuprofile FILE] [--engine-cpuprofile FILE]")
	}
	levels, err := concurrencyLevels(*concurrency, max(ef.workers, 1))
	if err != nil {
		return err
	}
	src, err := gallery.OpenSource(ctx, *dir, archive.Limits{}, "")
	if err != nil {
		return err
	}
	if src.Kind != gallery.SourceTree {
		return fmt.Errorf("%s is not a folder tree", *dir)
	}
	if len(src.Entries) == 0 {
		return fmt.Errorf("%s: no photos", *dir)
	}
	photos := make([][]byte, len(src.Entries))
	subjects := map[string]bool{}
	for i, e := range src.Entries {
		if photos[i], err = os.ReadFile(filepath.Join(src.Root, filepath.FromSlash(e.Path))); err != nil {
			return err
		}
		subjects[e.ExternalID] = true
	}

	cfg, err := ef.config()
	if err != nil {
		return err
	}
	eng, err := gallery.OpenEngine(cfg)
	if err != nil {
		return err
	}
	defer eng.Close()
	if *data == "" {
		tmp, err := os.MkdirTemp("", "visage-bench-import-")
		if err != nil {
			return err
		}
		defer os.RemoveAll(tmp)
		*data = tmp
	} else if err := os.MkdirAll(*data, 0o700); err != nil {
		return err
	}
	st, err := store.OpenSQLite(ctx, filepath.Join(*data, "visage.db"))
	if err != nil {
		return err
	}
	defer st.Close()
	idx, err := index.OpenHNSW(filepath.Join(*data, "hnsw"), embed.Dim, index.DefaultHNSWParams())
	if err != nil {
		return err
	}
	defer idx.Close()
	// Warnings are counted: the importer logs one per retried photo.
	warnings := &countingHandler{Handler: slog.NewTextHandler(env.stderr, &slog.HandlerOptions{Level: slog.LevelWarn}), n: new(atomic.Int64)}
	log := slog.New(warnings)
	svc := gallery.NewService(eng, st, idx, gallery.DefaultServiceConfig(), log)
	if _, err := svc.Reconcile(ctx); err != nil {
		return err
	}
	icfg := gallery.DefaultImportConfig(cfg.Workers)
	if *importWorkers > 0 {
		icfg.Workers = *importWorkers
	}
	im := gallery.NewImporter(svc, st, icfg, log)
	defer im.Close()

	fmt.Fprintf(env.stdout, "bench-import dir=%s photos=%d subjects=%d skipped_files=%d workers=%d import_workers=%d repeat=%d into=%s nproc=%d gomaxprocs=%d load1=%s\n",
		*dir, len(photos), len(subjects), len(src.Skipped), cfg.Workers, icfg.Workers, *repeat, *into, runtime.NumCPU(), runtime.GOMAXPROCS(0), load1())

	// Warm-up: the first calls of each worker allocate its buffers.
	warm := min(len(photos), 4*cfg.Workers)
	if _, err := engineRun(ctx, eng, svc.Config(), photos[:warm], 2*cfg.Workers); err != nil {
		return err
	}

	// Phase 1: the engine alone, every photo once per concurrency level.
	stopProfile, err := startProfile(*engineProfile)
	if err != nil {
		return err
	}
	defer func() { _ = stopProfile() }() // on an early return
	before := make([]engineRunResult, len(levels))
	for i, c := range levels {
		r, err := engineRun(ctx, eng, svc.Config(), photos, c)
		if err != nil {
			return err
		}
		before[i] = r
		printEngineRun(env, "before", r)
	}
	if err := stopProfile(); err != nil {
		return err
	}

	// Phase 2: the imports.
	if stopProfile, err = startProfile(*cpuProfile); err != nil {
		return err
	}
	prefix := "bench-import-" + strconv.FormatInt(time.Now().Unix(), 36)
	type repResult struct {
		enrolled, total int
		seconds         float64
		rssKB, hwmKB    int64
	}
	var reps []repResult
	// With --interleave: the engine passes between the jobs, the first
	// being the best of before's.
	var between []engineRunResult
	if *interleave {
		between = append(between, bestRun(before))
	}
	var totalEnrolled, totalPhotos, totalFailed, totalSkipped int
	var totalSeconds, totalCPU float64
	for rep := 1; rep <= *repeat; rep++ {
		coll := fmt.Sprintf("%s-%d", prefix, rep)
		if *into == "one" {
			coll = prefix
		}
		if rep == 1 || *into == "many" {
			if _, err := svc.CreateCollection(ctx, coll, gallery.Policy{}); err != nil {
				return err
			}
		}
		cpu0, sys0, busy0, warn0 := cpuSeconds(), sysSeconds(), machineBusySeconds(), warnings.n.Load()
		t0 := time.Now()
		// The tree is scanned for every job, as the API does.
		s, err := gallery.OpenSource(ctx, *dir, archive.Limits{}, "")
		if err != nil {
			return err
		}
		if *into == "one" {
			for i := range s.Entries {
				s.Entries[i].ExternalID = fmt.Sprintf("r%d-%s", rep, s.Entries[i].ExternalID)
			}
		}
		job, err := im.Start(ctx, "bench", coll, s, map[string]any{"name": "bench import"})
		if err != nil {
			return err
		}
		im.Wait()
		el := time.Since(t0).Seconds()
		cpu, sys := cpuSeconds()-cpu0, sysSeconds()-sys0
		others := max(0, machineBusySeconds()-busy0-cpu)
		job, err = st.GetImportJob(ctx, job.ID)
		if err != nil {
			return err
		}
		if job.State != store.ImportDone {
			return fmt.Errorf("import %d ended %s: %s", rep, job.State, job.Error)
		}
		mem := procStatusKB()
		rss, hwm := mem["VmRSS"], mem["VmHWM"]
		var ms runtime.MemStats
		runtime.ReadMemStats(&ms)
		reps = append(reps, repResult{job.Enrolled, job.Total, el, rss, hwm})
		totalEnrolled += job.Enrolled
		totalPhotos += job.Total
		totalFailed += job.Failed
		totalSkipped += job.Skipped
		totalSeconds += el
		totalCPU += cpu
		fmt.Fprintf(env.stdout, "import rep=%d total=%d enrolled=%d skipped=%d failed=%d seconds=%.2f photos_per_second=%.1f faces_per_second=%.1f cpu_seconds=%.1f cpu_ms_per_photo=%.1f sys_ms_per_photo=%.1f others_cpu_seconds=%.1f warnings=%d rss_mb=%.0f rss_peak_mb=%.0f rss_anon_mb=%.0f rss_file_mb=%.0f go_heap_mb=%.0f go_sys_mb=%.0f db_mb=%.0f load1=%s\n",
			rep, job.Total, job.Enrolled, job.Skipped, job.Failed, el, float64(job.Total)/el, float64(job.Enrolled)/el,
			cpu, 1000*cpu/float64(job.Total), 1000*sys/float64(job.Total), others, warnings.n.Load()-warn0, mb(rss), mb(hwm),
			mb(mem["RssAnon"]), mb(mem["RssFile"]), float64(ms.HeapInuse)/(1<<20), float64(ms.Sys-ms.HeapReleased)/(1<<20), dbMB(*data), load1())
		if *interleave {
			r, err := engineRun(ctx, eng, svc.Config(), photos, between[0].concurrency)
			if err != nil {
				return err
			}
			between = append(between, r)
			printEngineRun(env, fmt.Sprintf("between-%d", rep), r)
			// This job against the engine just before and just after it.
			side := (between[rep-1].facesPerSecond() + r.facesPerSecond()) / 2
			fmt.Fprintf(env.stdout, "interleaved rep=%d import_faces_per_second=%.1f engine_faces_per_second=%.1f ratio=%.3f\n",
				rep, float64(job.Enrolled)/el, side, float64(job.Enrolled)/el/side)
		}
	}
	if err := stopProfile(); err != nil {
		return err
	}

	after := make([]engineRunResult, len(levels))
	if *engineAfter {
		for i, c := range levels {
			r, err := engineRun(ctx, eng, svc.Config(), photos, c)
			if err != nil {
				return err
			}
			after[i] = r
			printEngineRun(env, "after", r)
		}
	}
	// The peer: the best concurrency level, its rate averaged over the
	// runs before and after the imports.
	best, bestRate := 0, 0.0
	for i := range levels {
		rate := before[i].facesPerSecond()
		if *engineAfter {
			rate = (rate + after[i].facesPerSecond()) / 2
		}
		if rate > bestRate {
			best, bestRate = i, rate
		}
	}
	b := before[best]
	fmt.Fprintf(env.stdout, "engine peer concurrency=%d photos=%d faces=%d faces_per_second=%.1f\n",
		b.concurrency, b.photos, b.faces, bestRate)

	rate := float64(totalEnrolled) / totalSeconds
	if *interleave {
		// Time-weighted as the imports' rate is: faces over seconds.
		var faces, seconds float64
		for _, r := range between {
			faces += float64(r.faces)
			seconds += r.seconds
		}
		ratios := make([]float64, len(reps))
		for i, r := range reps {
			ratios[i] = float64(r.enrolled) / r.seconds / ((between[i].facesPerSecond() + between[i+1].facesPerSecond()) / 2)
		}
		slices.Sort(ratios)
		fmt.Fprintf(env.stdout, "interleaved total engine_passes=%d engine_faces_per_second=%.1f import_faces_per_second=%.1f ratio=%.3f rep_ratio_min=%.3f rep_ratio_median=%.3f rep_ratio_max=%.3f\n",
			len(between), faces/seconds, rate, rate/(faces/seconds), ratios[0], ratios[len(ratios)/2], ratios[len(ratios)-1])
	}
	first, last := reps[0], reps[len(reps)-1]
	fmt.Fprintf(env.stdout, "import total reps=%d photos=%d enrolled=%d skipped=%d failed=%d seconds=%.1f faces_per_second=%.1f cpu_ms_per_photo=%.1f ratio_to_engine=%.2f first_rep_ratio=%.2f last_rep_ratio=%.2f rss_mb_after_%d=%.0f rss_mb_after_%d=%.0f rss_peak_mb_after_%d=%.0f rss_peak_mb_after_%d=%.0f\n",
		len(reps), totalPhotos, totalEnrolled, totalSkipped, totalFailed, totalSeconds, rate, 1000*totalCPU/float64(totalPhotos),
		rate/bestRate, float64(first.enrolled)/first.seconds/bestRate, float64(last.enrolled)/last.seconds/bestRate,
		first.total, mb(first.rssKB), totalPhotos, mb(last.rssKB), first.total, mb(first.hwmKB), totalPhotos, mb(last.hwmKB))
	if totalEnrolled != len(reps)*b.faces {
		fmt.Fprintf(env.stdout, "warning: the imports enrolled %d faces, the engine found %d enrollable per pass × %d passes\n",
			totalEnrolled, b.faces, len(reps))
	}
	return nil
}

// startProfile starts a CPU profile into path (nothing if path is
// empty) and returns what stops it.
func startProfile(path string) (stop func() error, err error) {
	if path == "" {
		return func() error { return nil }, nil
	}
	f, err := os.Create(path)
	if err != nil {
		return nil, err
	}
	if err := pprof.StartCPUProfile(f); err != nil {
		f.Close()
		return nil, err
	}
	var once sync.Once
	return func() error {
		var err error
		once.Do(func() {
			pprof.StopCPUProfile()
			err = f.Close()
		})
		return err
	}, nil
}

// engineRunResult is one pass of the engine over every photo.
type engineRunResult struct {
	concurrency int
	photos      int
	withFace    int // photos with at least one face
	found       int // faces found
	faces       int // photos whose largest face enrollment would accept
	seconds     float64
	cpuSeconds  float64
	// othersSeconds is the CPU time the rest of the machine used
	// meanwhile: the machine is shared.
	othersSeconds float64
}

func (r engineRunResult) facesPerSecond() float64 { return float64(r.faces) / r.seconds }

// bestRun is the run of the highest rate.
func bestRun(runs []engineRunResult) engineRunResult {
	best := runs[0]
	for _, r := range runs[1:] {
		if r.facesPerSecond() > best.facesPerSecond() {
			best = r
		}
	}
	return best
}

func printEngineRun(env *cliEnv, phase string, r engineRunResult) {
	fmt.Fprintf(env.stdout, "engine phase=%s concurrency=%d photos=%d faces=%d with_face=%d faces_found=%d seconds=%.2f photos_per_second=%.1f faces_per_second=%.1f cpu_ms_per_photo=%.1f others_cpu_seconds=%.1f load1=%s\n",
		phase, r.concurrency, r.photos, r.faces, r.withFace, r.found, r.seconds, float64(r.photos)/r.seconds, r.facesPerSecond(),
		1000*r.cpuSeconds/float64(r.photos), r.othersSeconds, load1())
}

// engineRun runs the engine over every photo once from n goroutines and
// counts the photos enrollment would accept: what an import of them
// enrolls, without the store, the index and the import's bookkeeping.
func engineRun(ctx context.Context, eng *gallery.Engine, cfg gallery.ServiceConfig, photos [][]byte, n int) (engineRunResult, error) {
	var next, withFace, found, faces atomic.Int64
	var wg sync.WaitGroup
	errs := make(chan error, n)
	cpu0, busy0 := cpuSeconds(), machineBusySeconds()
	t0 := time.Now()
	for range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := int(next.Add(1) - 1)
				if i >= len(photos) {
					return
				}
				res, err := eng.Faces(ctx, photos[i])
				if err != nil {
					if gallery.ErrorCode(err) == "internal" {
						errs <- err
						return
					}
					continue // a photo the engine refuses: enrollment would too
				}
				if len(res.Faces) == 0 {
					continue
				}
				withFace.Add(1)
				found.Add(int64(len(res.Faces)))
				top, err := gallery.Largest(res.Faces, cfg.TieRatio)
				if err == nil && len(top) == 1 && len(cfg.Gates.Check(top[0].Quality)) == 0 {
					faces.Add(1)
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	if err := <-errs; err != nil {
		return engineRunResult{}, err
	}
	cpu := cpuSeconds() - cpu0
	return engineRunResult{concurrency: n, photos: len(photos), withFace: int(withFace.Load()), found: int(found.Load()),
		faces: int(faces.Load()), seconds: time.Since(t0).Seconds(), cpuSeconds: cpu, othersSeconds: max(0, machineBusySeconds()-busy0-cpu)}, nil
}

// concurrencyLevels parses --engine-concurrency.
func concurrencyLevels(s string, workers int) ([]int, error) {
	if s == "" {
		return []int{workers, 2 * workers}, nil
	}
	var out []int
	for _, f := range strings.Split(s, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(f))
		if err != nil || n < 1 {
			return nil, fmt.Errorf("--engine-concurrency: %q is not a positive integer", f)
		}
		out = append(out, n)
	}
	return out, nil
}

// cpuSeconds is the CPU time (user + system) this process has used.
func cpuSeconds() float64 {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano()).Seconds()
}

// sysSeconds is the system CPU time this process has used.
func sysSeconds() float64 {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Stime.Nano()).Seconds()
}

// machineBusySeconds is the CPU time all processes have used since boot
// (/proc/stat, in the kernel's 100 ticks per second), so that the CPU
// other processes took during a measurement is its difference less ours.
func machineBusySeconds() float64 {
	data, err := os.ReadFile("/proc/stat")
	if err != nil {
		return 0
	}
	line, _, _ := strings.Cut(string(data), "\n")
	f := strings.Fields(line)
	if len(f) < 9 || f[0] != "cpu" {
		return 0
	}
	var busy int64
	for i, v := range f[1:9] { // user nice system idle iowait irq softirq steal
		if i == 3 || i == 4 {
			continue
		}
		n, _ := strconv.ParseInt(v, 10, 64)
		busy += n
	}
	return float64(busy) / 100
}

// procStatusKB reads the kB figures of /proc/self/status (VmRSS, VmHWM,
// RssAnon, RssFile, ...).
func procStatusKB() map[string]int64 {
	m := map[string]int64{}
	data, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return m
	}
	for _, line := range strings.Split(string(data), "\n") {
		k, v, ok := strings.Cut(line, ":")
		if f := strings.Fields(v); ok && len(f) == 2 && f[1] == "kB" {
			if n, err := strconv.ParseInt(f[0], 10, 64); err == nil {
				m[k] = n
			}
		}
	}
	return m
}

// dbMB is the size of the SQLite database and its WAL in dir.
func dbMB(dir string) float64 {
	var n int64
	for _, name := range []string{"visage.db", "visage.db-wal"} {
		if fi, err := os.Stat(filepath.Join(dir, name)); err == nil {
			n += fi.Size()
		}
	}
	return float64(n) / (1 << 20)
}

// countingHandler counts the warnings logged through it.
type countingHandler struct {
	slog.Handler
	n *atomic.Int64
}

func (h *countingHandler) Handle(ctx context.Context, r slog.Record) error {
	if r.Level >= slog.LevelWarn {
		h.n.Add(1)
	}
	return h.Handler.Handle(ctx, r)
}

func (h *countingHandler) WithAttrs(attrs []slog.Attr) slog.Handler {
	return &countingHandler{Handler: h.Handler.WithAttrs(attrs), n: h.n}
}

func (h *countingHandler) WithGroup(name string) slog.Handler {
	return &countingHandler{Handler: h.Handler.WithGroup(name), n: h.n}
}

func mb(kb int64) float64 { return float64(kb) / 1024 }
