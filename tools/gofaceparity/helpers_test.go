package gofaceparity

import (
	"bytes"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"testing"

	"github.com/visage/visage/detect"
	"github.com/visage/visage/embed"
	"github.com/visage/visage/gallery"
	"github.com/visage/visage/tools/gofaceparity/internal/fixture"
)

// engines are opened once per process and shared by tests and benchmarks:
// loading the networks takes seconds, and the benchmark harness calls each
// benchmark function more than once.
var engines struct {
	sync.Mutex
	open map[gallery.EngineConfig]*gallery.Engine
}

// TestMain frees the engines after the run.
func TestMain(m *testing.M) {
	code := m.Run()
	for _, e := range engines.open {
		e.Close()
	}
	os.Exit(code)
}

// goFaceConfig is Visage configured to work as go-face does: HOG on the
// full-resolution image (no downscaled scan copy, no upsampling),
// 68-point landmarks, plain descriptors (no mirror, jitter or
// normalisation), with the given number of workers.
func goFaceConfig(models string, workers int) gallery.EngineConfig {
	cfg := gallery.DefaultEngineConfig(models)
	cfg.Workers = workers
	cfg.Detector = detect.HOGName
	cfg.Detect = detect.Options{MaxSide: 0, MaxUpsample: 1}
	cfg.Landmarks = 68
	cfg.Variant = embed.Variant{}
	cfg.EnrollVariant = embed.Variant{}
	return cfg
}

// engine returns the process's engine for cfg, opening it on first use.
func engine(tb testing.TB, cfg gallery.EngineConfig) *gallery.Engine {
	tb.Helper()
	engines.Lock()
	defer engines.Unlock()
	if e, ok := engines.open[cfg]; ok {
		return e
	}
	e, err := gallery.OpenEngine(cfg)
	if err != nil {
		tb.Fatalf("open Visage engine: %v", err)
	}
	if engines.open == nil {
		engines.open = make(map[gallery.EngineConfig]*gallery.Engine)
	}
	engines.open[cfg] = e
	return e
}

// goFaceResults builds ./gofacedump and runs it on the images: go-face
// must run in a process of its own, because Visage's dlib package, linked
// into this test binary, replaces one of libdlib's functions for the whole
// process. The build uses this process's environment, so the cgo flags
// run.sh sets apply to it.
func goFaceResults(t *testing.T, imgs []fixture.Image) map[string]fixture.GoFaceResult {
	t.Helper()
	goTool, err := exec.LookPath("go")
	if err != nil {
		t.Fatalf("the go command is needed to build gofacedump: %v", err)
	}
	bin := filepath.Join(t.TempDir(), "gofacedump")
	build := exec.Command(goTool, "build", "-o", bin, "./gofacedump")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("build gofacedump (run the tests through run.sh, which provides libcblas.so): %v\n%s", err, out)
	}
	args := []string{fixture.GoFaceModelDir(t)}
	for _, im := range imgs {
		args = append(args, im.Path)
	}
	var stdout, stderr bytes.Buffer
	run := exec.Command(bin, args...)
	run.Stdout, run.Stderr = &stdout, &stderr
	if err := run.Run(); err != nil {
		t.Fatalf("gofacedump: %v\n%s", err, stderr.Bytes())
	}
	var results []fixture.GoFaceResult
	if err := json.Unmarshal(stdout.Bytes(), &results); err != nil {
		t.Fatalf("read gofacedump's output: %v", err)
	}
	byPath := make(map[string]fixture.GoFaceResult, len(results))
	for _, r := range results {
		byPath[r.File] = r
	}
	return byPath
}
