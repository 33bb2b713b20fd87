package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"math"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"runtime/debug"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/visage/visage/index"
)

// benchDim is the descriptors' dimension.
const benchDim = 128

// indexBench holds the settings of `visage bench index`.
type indexBench struct {
	n, queries, k  int
	kind, realPath string
	params         index.HNSWParams
	efs            []int
	seed           uint64
	exactSample    int
	dir            string
	faiss, reuse   bool
	python, script string
}

func runBenchIndex(ctx context.Context, env *cliEnv, args []string) error {
	fs := flag.NewFlagSet("bench index", flag.ContinueOnError)
	fs.SetOutput(env.stderr)
	def := index.DefaultHNSWParams()
	var b indexBench
	fs.IntVar(&b.n, "n", 1_000_000, "vectors in the index")
	fs.IntVar(&b.queries, "queries", 1000, "held-out queries")
	fs.IntVar(&b.k, "k", 10, "neighbours per query (recall@k)")
	fs.StringVar(&b.kind, "kind", "random", "vectors: random (uniform on the unit sphere) or descriptors (Gaussian fitted to real descriptors, L2-normalised)")
	fs.StringVar(&b.realPath, "descriptors", "", "real descriptors for --kind descriptors: raw little-endian float32×128 rows, or the JSON lines of `visage detect --descriptors`")
	fs.IntVar(&b.params.M, "m", def.M, "HNSW M")
	fs.IntVar(&b.params.EfConstruction, "ef-construction", def.EfConstruction, "HNSW efConstruction")
	efList := fs.String("ef", "10,20,40,80,120,160,240,320,480,640,960,1280", "efSearch values to sweep")
	fs.Uint64Var(&b.seed, "seed", 1, "random seed of the vectors and queries")
	fs.IntVar(&b.exactSample, "exact-sample", 100, "queries timed against exact (brute-force) search")
	fs.StringVar(&b.dir, "dir", "", "work directory for the snapshot and the files shared with faiss (default: a temporary one, removed)")
	fs.BoolVar(&b.faiss, "faiss", false, "also run faiss's IndexHNSWFlat with the same parameters (scripts/bench_faiss.py)")
	fs.BoolVar(&b.reuse, "reuse", false, "load the graphs an earlier run with the same --dir, --kind, --n and --seed left, instead of building them (to re-measure searches)")
	fs.StringVar(&b.python, "python", "/usr/bin/python3", "Python with Debian's python3-faiss and python3-numpy")
	fs.StringVar(&b.script, "faiss-script", "scripts/bench_faiss.py", "the faiss peer's script")
	if err := fs.Parse(args); err != nil {
		return err
	}
	var err error
	if b.efs, err = parseInts(*efList); err != nil {
		return fmt.Errorf("--ef: %w", err)
	}
	b.params.EfSearch = b.efs[0]
	switch {
	case b.n < b.k || b.queries < 1 || b.k < 1:
		return fmt.Errorf("need --n >= --k >= 1 and --queries >= 1")
	case b.kind == "descriptors" && b.realPath == "":
		return fmt.Errorf("--kind descriptors needs --descriptors FILE")
	case b.kind != "random" && b.kind != "descriptors":
		return fmt.Errorf("--kind must be random or descriptors")
	}
	if b.dir == "" {
		if b.dir, err = os.MkdirTemp("", "visage-bench-index-"); err != nil {
			return err
		}
		defer os.RemoveAll(b.dir)
	} else if err := os.MkdirAll(b.dir, 0o700); err != nil {
		return err
	}
	return b.run(ctx, env.stdout, env.stderr)
}

func parseInts(s string) ([]int, error) {
	var out []int
	for _, f := range strings.Split(s, ",") {
		v, err := strconv.Atoi(strings.TrimSpace(f))
		if err != nil || v < 1 {
			return nil, fmt.Errorf("parse %q: want positive integers", f)
		}
		out = append(out, v)
	}
	return out, nil
}

// sweepPoint is one efSearch value's measurement.
type sweepPoint struct {
	ef          int
	recall, qps float64
}

func (b *indexBench) run(ctx context.Context, out, errOut io.Writer) error {
	log := slog.New(slog.NewTextHandler(errOut, nil))
	fmt.Fprintf(out, "index_bench kind=%s n=%d dim=%d queries=%d k=%d M=%d ef_construction=%d cpu=%q cores=%d goamd64=%s load1=%s\n",
		b.kind, b.n, benchDim, b.queries, b.k, b.params.M, b.params.EfConstruction, cpuModel(), runtime.NumCPU(), goamd64(), load1())

	start := time.Now()
	base, queries, err := b.vectors()
	if err != nil {
		return err
	}
	fmt.Fprintf(out, "data kind=%s n=%d queries=%d gen_s=%.1f\n", b.kind, b.n, b.queries, time.Since(start).Seconds())

	truth, err := b.exact(ctx, out, log, base, queries)
	if err != nil {
		return err
	}
	if b.faiss {
		if err := writeBenchFiles(b.dir, base, queries, truth); err != nil {
			return err
		}
	}
	ours, err := b.runHNSW(ctx, out, log, base, queries, truth)
	if err != nil {
		return err
	}
	if !b.faiss {
		return nil
	}
	runtime.GC()
	theirs, err := b.runFaiss(ctx, out, errOut)
	if err != nil {
		return err
	}
	for _, target := range []float64{0.90, 0.95, 0.98, 0.99} {
		a, okA := qpsAtRecall(ours, target)
		f, okF := qpsAtRecall(theirs, target)
		if !okA || !okF {
			fmt.Fprintf(out, "equal_recall target=%.2f visage_reached=%t faiss_reached=%t\n", target, okA, okF)
			continue
		}
		fmt.Fprintf(out, "equal_recall target=%.2f visage_qps=%.1f faiss_qps=%.1f qps_ratio=%.2f\n", target, a, f, a/f)
	}
	return nil
}

// qpsAtRecall interpolates the sweep's throughput at exactly the target
// recall, linearly between the two efSearch values around it (the sweep
// is in ascending ef); false if no value reaches the target.
func qpsAtRecall(sweep []sweepPoint, target float64) (float64, bool) {
	for i, p := range sweep {
		if p.recall < target {
			continue
		}
		if i == 0 || p.recall == sweep[i-1].recall {
			return p.qps, true
		}
		lo := sweep[i-1]
		f := (target - lo.recall) / (p.recall - lo.recall)
		return lo.qps + f*(p.qps-lo.qps), true
	}
	return 0, false
}

// exact computes the exact top-k of every query with Flat, the
// product's exact index, on every core, then times it on one core.
func (b *indexBench) exact(ctx context.Context, out io.Writer, log *slog.Logger, base, queries [][]float32) ([][]uint64, error) {
	exact := index.NewFlat(benchDim)
	if err := exact.Upsert(ctx, "bench", items(base)); err != nil {
		return nil, err
	}
	log.Info("exact top-k of every query", "queries", len(queries))
	start := time.Now()
	truth, err := groundTruth(ctx, exact, queries, b.k)
	if err != nil {
		return nil, err
	}
	log.Info("exact top-k done", "s", time.Since(start).Seconds())
	lat, err := timeSearches(ctx, exact, queries[:min(b.exactSample, len(queries))], b.k)
	if err != nil {
		return nil, err
	}
	fmt.Fprintf(out, "search impl=exact recall%d=1.0000 p50_ms=%.3f p99_ms=%.3f qps_1core=%.1f load1=%s\n", b.k, pct(lat, 50), pct(lat, 99), qps(lat), load1())
	return truth, nil
}

// runHNSW builds, sweeps, saves and reloads Visage's HNSW index.
func (b *indexBench) runHNSW(ctx context.Context, out io.Writer, log *slog.Logger, base, queries [][]float32, truth [][]uint64) ([]sweepPoint, error) {
	snapDir := filepath.Join(b.dir, "hnsw")
	if !b.reuse {
		if err := os.RemoveAll(snapDir); err != nil {
			return nil, err
		}
	}
	h, err := index.OpenHNSW(snapDir, benchDim, b.params)
	if err != nil {
		return nil, err
	}
	defer h.Close()
	if n, _ := h.Len(ctx, "bench"); b.reuse && n == len(base) {
		fmt.Fprintf(out, "build impl=visage-hnsw reused=%s\n", snapDir)
	} else {
		if err := b.build(ctx, out, log, h, items(base)); err != nil {
			return nil, err
		}
	}

	var sweep []sweepPoint
	for _, ef := range b.efs {
		h.SetEfSearch(ef)
		p, lat, err := measure(ctx, h, queries, truth, b.k)
		if err != nil {
			return nil, err
		}
		p.ef = ef
		sweep = append(sweep, p)
		fmt.Fprintf(out, "search impl=visage-hnsw ef=%d recall%d=%.4f p50_ms=%.3f p99_ms=%.3f qps_1core=%.1f load1=%s\n",
			ef, b.k, p.recall, pct(lat, 50), pct(lat, 99), p.qps, load1())
	}

	// A reused graph is unchanged: its Save writes nothing.
	start := time.Now()
	if err := h.Save(ctx); err != nil {
		return nil, err
	}
	save := fmt.Sprintf("%.2f", time.Since(start).Seconds())
	if b.reuse {
		save = "unchanged"
	}
	size := dirSize(snapDir)
	// Results from the reloaded index must equal the built one's.
	h.SetEfSearch(b.params.EfSearch)
	before := make([][]index.Match, min(100, len(queries)))
	for i := range before {
		if before[i], err = h.Search(ctx, "bench", queries[i], b.k); err != nil {
			return nil, err
		}
	}
	h.Close()
	runtime.GC()
	start = time.Now()
	loaded, err := index.OpenHNSW(snapDir, benchDim, b.params)
	if err != nil {
		return nil, err
	}
	defer loaded.Close()
	load := time.Since(start)
	start = time.Now()
	keys, err := loaded.Keys(ctx, "bench")
	if err != nil {
		return nil, err
	}
	keysTime := time.Since(start)
	same := 0
	for i := range before {
		got, err := loaded.Search(ctx, "bench", queries[i], b.k)
		if err != nil {
			return nil, err
		}
		if slices.Equal(got, before[i]) {
			same++
		}
	}
	rss, _ := memoryKB()
	fmt.Fprintf(out, "snapshot impl=visage-hnsw save_s=%s load_s=%.2f keys_s=%.3f keys=%d file_mb=%.0f same_results=%d/%d rss_after_load_mb=%.0f load1=%s\n",
		save, load.Seconds(), keysTime.Seconds(), len(keys), float64(size)/(1<<20), same, len(before), float64(rss)/1024, load1())
	return sweep, nil
}

// build inserts every vector with all cores, in chunks so that progress
// shows.
func (b *indexBench) build(ctx context.Context, out io.Writer, log *slog.Logger, h *index.HNSW, all []index.Item) error {
	start := time.Now()
	const chunk = 100_000
	for i := 0; i < len(all); i += chunk {
		if err := h.Upsert(ctx, "bench", all[i:min(i+chunk, len(all))]); err != nil {
			return err
		}
		log.Info("hnsw build", "done", min(i+chunk, len(all)), "of", len(all), "s", time.Since(start).Seconds())
	}
	build := time.Since(start)
	rss, _ := memoryKB()
	fmt.Fprintf(out, "build impl=visage-hnsw threads=%d s=%.1f per_s=%.0f rss_mb=%.0f load1=%s\n",
		runtime.GOMAXPROCS(0), build.Seconds(), float64(len(all))/build.Seconds(), float64(rss)/1024, load1())
	return nil
}

// measure runs every query once, one at a time (one core), and scores
// recall@k against the exact answers.
func measure(ctx context.Context, idx index.Index, queries [][]float32, truth [][]uint64, k int) (sweepPoint, []time.Duration, error) {
	lat := make([]time.Duration, len(queries))
	hits := 0
	for i, q := range queries {
		start := time.Now()
		got, err := idx.Search(ctx, "bench", q, k)
		lat[i] = time.Since(start)
		if err != nil {
			return sweepPoint{}, nil, err
		}
		for _, m := range got {
			if slices.Contains(truth[i], m.Key) {
				hits++
			}
		}
	}
	return sweepPoint{recall: float64(hits) / float64(k*len(queries)), qps: qps(lat)}, lat, nil
}

func timeSearches(ctx context.Context, idx index.Index, queries [][]float32, k int) ([]time.Duration, error) {
	lat := make([]time.Duration, len(queries))
	for i, q := range queries {
		start := time.Now()
		if _, err := idx.Search(ctx, "bench", q, k); err != nil {
			return nil, err
		}
		lat[i] = time.Since(start)
	}
	return lat, nil
}

// groundTruth is the exact top-k keys of every query, computed on every
// core.
func groundTruth(ctx context.Context, exact *index.Flat, queries [][]float32, k int) ([][]uint64, error) {
	truth := make([][]uint64, len(queries))
	errs := make([]error, runtime.GOMAXPROCS(0))
	var wg sync.WaitGroup
	for w := range errs {
		wg.Go(func() {
			for i := w; i < len(queries); i += len(errs) {
				ms, err := exact.Search(ctx, "bench", queries[i], k)
				if err != nil {
					errs[w] = err
					return
				}
				for _, m := range ms {
					truth[i] = append(truth[i], m.Key)
				}
			}
		})
	}
	wg.Wait()
	return truth, errors.Join(errs...)
}

// runFaiss runs the faiss peer on the files writeBenchFiles wrote,
// echoes its key=value lines and returns its sweep.
func (b *indexBench) runFaiss(ctx context.Context, out, errOut io.Writer) ([]sweepPoint, error) {
	efs := make([]string, len(b.efs))
	for i, ef := range b.efs {
		efs[i] = strconv.Itoa(ef)
	}
	args := []string{b.script, "--dir", b.dir, "--m", strconv.Itoa(b.params.M),
		"--ef-construction", strconv.Itoa(b.params.EfConstruction), "--ef", strings.Join(efs, ","), "--k", strconv.Itoa(b.k)}
	if b.reuse {
		args = append(args, "--reuse")
	}
	cmd := exec.CommandContext(ctx, b.python, args...)
	cmd.Stderr = errOut
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("run faiss peer: %w", err)
	}
	var sweep []sweepPoint
	sc := bufio.NewScanner(stdout)
	for sc.Scan() {
		line := sc.Text()
		fmt.Fprintln(out, line)
		kv := keyValues(line)
		if !strings.HasPrefix(line, "search ") || kv["impl"] != "faiss-hnsw" {
			continue
		}
		var p sweepPoint
		p.ef, _ = strconv.Atoi(kv["ef"])
		p.recall, _ = strconv.ParseFloat(kv["recall"+strconv.Itoa(b.k)], 64)
		p.qps, _ = strconv.ParseFloat(kv["qps_1core"], 64)
		sweep = append(sweep, p)
	}
	if err := cmd.Wait(); err != nil {
		return nil, fmt.Errorf("run faiss peer: %w", err)
	}
	return sweep, sc.Err()
}

func keyValues(line string) map[string]string {
	kv := map[string]string{}
	for _, f := range strings.Fields(line) {
		if k, v, ok := strings.Cut(f, "="); ok {
			kv[k] = v
		}
	}
	return kv
}

// writeBenchFiles writes what the faiss peer reads: base.f32 and
// queries.f32 (little-endian float32 rows) and truth.u64 (the exact
// top-k row numbers of each query, little-endian uint64).
func writeBenchFiles(dir string, base, queries [][]float32, truth [][]uint64) error {
	write := func(name string, put func(w *bufio.Writer) error) error {
		f, err := os.Create(filepath.Join(dir, name))
		if err != nil {
			return err
		}
		w := bufio.NewWriterSize(f, 1<<20)
		if err := put(w); err != nil {
			f.Close()
			return fmt.Errorf("write %s: %w", name, err)
		}
		if err := w.Flush(); err != nil {
			f.Close()
			return fmt.Errorf("write %s: %w", name, err)
		}
		return f.Close()
	}
	vectors := func(rows [][]float32) func(w *bufio.Writer) error {
		return func(w *bufio.Writer) error {
			for _, r := range rows {
				if err := binary.Write(w, binary.LittleEndian, r); err != nil {
					return err
				}
			}
			return nil
		}
	}
	if err := write("base.f32", vectors(base)); err != nil {
		return err
	}
	if err := write("queries.f32", vectors(queries)); err != nil {
		return err
	}
	return write("truth.u64", func(w *bufio.Writer) error {
		for _, t := range truth {
			if err := binary.Write(w, binary.LittleEndian, t); err != nil {
				return err
			}
		}
		return nil
	})
}

// vectors generates the base vectors and the held-out queries (rows of
// one backing array each).
func (b *indexBench) vectors() (base, queries [][]float32, err error) {
	var gen sampler
	switch b.kind {
	case "random":
		gen = func(r *rand.Rand, v []float32) {
			for i := range v {
				v[i] = float32(r.NormFloat64())
			}
			normalise(v)
		}
	case "descriptors":
		descs, err := readDescriptors(b.realPath)
		if err != nil {
			return nil, nil, err
		}
		if gen, err = gaussianLike(descs); err != nil {
			return nil, nil, err
		}
	}
	base = generate(b.n, b.seed, gen)
	queries = generate(b.queries, b.seed+1<<32, gen)
	return base, queries, nil
}

// sampler fills v with one vector drawn from r.
type sampler func(r *rand.Rand, v []float32)

// generate draws n vectors on every core; chunk c always uses the stream
// (seed, c), so the vectors do not depend on the number of cores.
func generate(n int, seed uint64, gen sampler) [][]float32 {
	const chunk = 4096
	backing := make([]float32, n*benchDim)
	rows := make([][]float32, n)
	for i := range rows {
		rows[i] = backing[i*benchDim : (i+1)*benchDim : (i+1)*benchDim]
	}
	var wg sync.WaitGroup
	workers := runtime.GOMAXPROCS(0)
	for w := range workers {
		wg.Go(func() {
			for c := w; c*chunk < n; c += workers {
				r := rand.New(rand.NewPCG(seed, uint64(c)))
				for i := c * chunk; i < min((c+1)*chunk, n); i++ {
					gen(r, rows[i])
				}
			}
		})
	}
	wg.Wait()
	return rows
}

func normalise(v []float32) {
	var s float64
	for _, x := range v {
		s += float64(x) * float64(x)
	}
	if s == 0 {
		return
	}
	inv := 1 / math.Sqrt(s)
	for i := range v {
		v[i] = float32(float64(v[i]) * inv)
	}
}

// gaussianLike fits a Gaussian to the real descriptors (their mean and
// full covariance) and returns a sampler of it whose draws are
// L2-normalised, as the engine's default plain+l2 descriptors are. It
// keeps the descriptors' spread and correlations (their effective
// dimension), not their clustering by identity.
func gaussianLike(descs [][]float32) (sampler, error) {
	if len(descs) <= benchDim {
		return nil, fmt.Errorf("fit descriptors: %d vectors, need more than %d", len(descs), benchDim)
	}
	mean := make([]float64, benchDim)
	for _, v := range descs {
		for i, x := range v {
			mean[i] += float64(x)
		}
	}
	for i := range mean {
		mean[i] /= float64(len(descs))
	}
	cov := make([]float64, benchDim*benchDim)
	for _, v := range descs {
		for i := range benchDim {
			di := float64(v[i]) - mean[i]
			for j := 0; j <= i; j++ {
				cov[i*benchDim+j] += di * (float64(v[j]) - mean[j])
			}
		}
	}
	for i := range benchDim {
		for j := 0; j <= i; j++ {
			cov[i*benchDim+j] /= float64(len(descs) - 1)
		}
	}
	l, err := cholesky(cov, benchDim)
	if err != nil {
		return nil, fmt.Errorf("fit descriptors: %w", err)
	}
	return func(r *rand.Rand, v []float32) {
		var z [benchDim]float64
		for i := range z {
			z[i] = r.NormFloat64()
		}
		for i := range benchDim {
			s := mean[i]
			row := l[i*benchDim : i*benchDim+i+1]
			for j, lij := range row {
				s += lij * z[j]
			}
			v[i] = float32(s)
		}
		normalise(v)
	}, nil
}

// cholesky factors the symmetric positive definite matrix whose lower
// triangle a holds (n×n, row-major) into L with L·Lᵀ = a.
func cholesky(a []float64, n int) ([]float64, error) {
	l := make([]float64, n*n)
	for i := range n {
		for j := 0; j <= i; j++ {
			s := a[i*n+j]
			for k := range j {
				s -= l[i*n+k] * l[j*n+k]
			}
			if i == j {
				if s <= 0 {
					return nil, fmt.Errorf("covariance is not positive definite")
				}
				l[i*n+i] = math.Sqrt(s)
			} else {
				l[i*n+j] = s / l[j*n+j]
			}
		}
	}
	return l, nil
}

// readDescriptors reads real descriptors: raw little-endian float32 rows
// of 128, or the JSON lines `visage detect --descriptors` prints.
func readDescriptors(path string) ([][]float32, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read descriptors: %w", err)
	}
	var out [][]float32
	if bytes.HasPrefix(bytes.TrimSpace(data), []byte("{")) {
		dec := json.NewDecoder(bytes.NewReader(data))
		for {
			var img struct {
				Faces []struct {
					Descriptor []float32 `json:"descriptor"`
				} `json:"faces"`
			}
			if err := dec.Decode(&img); err == io.EOF {
				break
			} else if err != nil {
				return nil, fmt.Errorf("read descriptors %s: %w", path, err)
			}
			for _, f := range img.Faces {
				if len(f.Descriptor) == benchDim {
					out = append(out, f.Descriptor)
				}
			}
		}
	} else {
		if len(data)%(4*benchDim) != 0 {
			return nil, fmt.Errorf("read descriptors %s: %d bytes is not a whole number of %d-float rows", path, len(data), benchDim)
		}
		flat := make([]float32, len(data)/4)
		if err := binary.Read(bytes.NewReader(data), binary.LittleEndian, flat); err != nil {
			return nil, fmt.Errorf("read descriptors %s: %w", path, err)
		}
		for i := 0; i < len(flat); i += benchDim {
			out = append(out, flat[i:i+benchDim])
		}
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("read descriptors %s: none found", path)
	}
	return out, nil
}

func items(rows [][]float32) []index.Item {
	out := make([]index.Item, len(rows))
	for i, r := range rows {
		out[i] = index.Item{Key: uint64(i), Vector: r}
	}
	return out
}

func pct(lat []time.Duration, p int) float64 {
	s := slices.Clone(lat)
	slices.Sort(s)
	return float64(s[min(len(s)-1, len(s)*p/100)].Nanoseconds()) / 1e6
}

func qps(lat []time.Duration) float64 {
	var total time.Duration
	for _, l := range lat {
		total += l
	}
	return float64(len(lat)) / total.Seconds()
}

func dirSize(dir string) int64 {
	var n int64
	entries, _ := os.ReadDir(dir)
	for _, e := range entries {
		if info, err := e.Info(); err == nil {
			n += info.Size()
		}
	}
	return n
}

// load1 is the one-minute load average: the machine is shared, and a
// figure measured beside other work says so.
func load1() string {
	data, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return "unknown"
	}
	if f := strings.Fields(string(data)); len(f) > 0 {
		return f[0]
	}
	return "unknown"
}

func cpuModel() string {
	data, err := os.ReadFile("/proc/cpuinfo")
	if err != nil {
		return runtime.GOARCH
	}
	for _, line := range strings.Split(string(data), "\n") {
		if k, v, ok := strings.Cut(line, ":"); ok && strings.TrimSpace(k) == "model name" {
			return strings.TrimSpace(v)
		}
	}
	return runtime.GOARCH
}

// goamd64 is the x86-64 level the binary was built for: hnswlib's
// distances use AVX only at v3.
func goamd64() string {
	if info, ok := debug.ReadBuildInfo(); ok {
		for _, s := range info.Settings {
			if s.Key == "GOAMD64" {
				return s.Value
			}
		}
	}
	return "v1"
}
