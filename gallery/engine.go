package gallery

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/visage/visage/align"
	"github.com/visage/visage/detect"
	"github.com/visage/visage/embed"
	"github.com/visage/visage/internal/admission"
	"github.com/visage/visage/internal/imageio"
)

// EngineConfig selects models and resources for OpenEngine.
type EngineConfig struct {
	// ModelDir holds the model files.
	ModelDir string
	// Workers is the number of concurrent detections and networks.
	Workers int
	// MaxBatch caps chips per forward pass.
	MaxBatch int
	// Variant is the descriptor augmentation of probes (identification,
	// verification, and every CLI tool).
	Variant embed.Variant
	// EnrollVariant is that of faces stored by enrollment; it must lie in
	// Variant's descriptor space (embed.Variant.Base).
	EnrollVariant embed.Variant
	// Detector is "hog" (default) or "cnn" (needs embed.CNNFile).
	Detector string
	// Detect tunes the detector's scan size and threshold.
	Detect detect.Options
	// Landmarks is 5 or 68; 0 prefers 68 when present (it aligns as
	// well and also yields expression and pitch cues).
	Landmarks int
	// Limits bound decoded images.
	Limits imageio.Limits
	// DecodeBudget bounds the bytes that images being decoded and
	// scanned for faces may hold at once, across all requests and jobs
	// (0: unbounded); beyond it work waits up to AdmissionWait, then
	// fails with admission.ErrBusy.
	DecodeBudget  int64
	AdmissionWait time.Duration
}

// DefaultEngineConfig returns the defaults used by the CLI and server.
func DefaultEngineConfig(modelDir string) EngineConfig {
	return EngineConfig{
		ModelDir:      modelDir,
		Workers:       2,
		MaxBatch:      8,
		Variant:       DefaultVariant(),
		EnrollVariant: DefaultEnrollVariant(),
		Detector:      detect.HOGName,
		Detect:        detect.DefaultOptions(),
		Limits:        imageio.DefaultLimits(),
	}
}

// Engine is an open pipeline with the resources behind it.
type Engine struct {
	*Pipeline
	Embedder   *embed.Pool
	Detector   *detect.Detector
	Landmarker *align.Landmarker
}

// ErrModelMissing means a model file the configuration needs is absent;
// `visage models` prepares the directory.
var ErrModelMissing = errors.New("model file missing (run `visage models`)")

// OpenEngine loads the models from cfg.ModelDir.
func OpenEngine(cfg EngineConfig) (*Engine, error) {
	if cfg.Workers < 1 {
		cfg.Workers = 1
	}
	need := func(name string) (string, error) {
		p := filepath.Join(cfg.ModelDir, name)
		if _, err := os.Stat(p); err != nil {
			return "", fmt.Errorf("open engine: %s: %w", p, ErrModelMissing)
		}
		return p, nil
	}
	lmName := embed.Landmarks68File
	switch cfg.Landmarks {
	case 5:
		lmName = embed.Landmarks5File
	case 0:
		if _, err := os.Stat(filepath.Join(cfg.ModelDir, embed.Landmarks68File)); err != nil {
			lmName = embed.Landmarks5File
		}
	}
	lmPath, err := need(lmName)
	if err != nil {
		return nil, err
	}
	netPath, err := need(embed.ModelFile)
	if err != nil {
		return nil, err
	}
	model, err := embed.IdentifyModel(netPath)
	if err != nil {
		return nil, err
	}
	dopts := cfg.Detect
	dopts.Workers = cfg.Workers
	var det *detect.Detector
	switch cfg.Detector {
	case "", detect.HOGName:
		det, err = detect.NewHOG(dopts)
	case detect.CNNName:
		var p string
		if p, err = need(embed.CNNFile); err == nil {
			det, err = detect.NewCNN(p, dopts)
		}
	default:
		err = fmt.Errorf("open engine: unknown detector %q", cfg.Detector)
	}
	if err != nil {
		return nil, err
	}
	lm, err := align.NewLandmarker(lmPath)
	if err != nil {
		det.Close()
		return nil, err
	}
	pool, err := embed.NewPool(model, embed.Options{Workers: cfg.Workers, MaxBatch: cfg.MaxBatch, Variant: cfg.Variant})
	if err != nil {
		det.Close()
		lm.Close()
		return nil, err
	}
	pixels := admission.NewPool("decode budget", cfg.DecodeBudget, cfg.AdmissionWait)
	pl, err := NewPipeline(cfg.Limits, pixels, det, lm, pool, Recipes{Model: model, Probe: cfg.Variant, Enroll: cfg.EnrollVariant})
	if err != nil {
		pool.Close()
		det.Close()
		lm.Close()
		return nil, err
	}
	return &Engine{Pipeline: pl, Embedder: pool, Detector: det, Landmarker: lm}, nil
}

// Close frees every model once no call is running.
func (e *Engine) Close() {
	e.Embedder.Close()
	e.Detector.Close()
	e.Landmarker.Close()
}

// SpaceID returns the descriptor space (embed.Model.Space) of an engine
// opened with cfg, without loading the networks: the vector index holds
// one space, and tools that only compare stored descriptors with an index
// (doctor, reindex) need it.
func SpaceID(cfg EngineConfig) (string, error) {
	p := filepath.Join(cfg.ModelDir, embed.ModelFile)
	if _, err := os.Stat(p); err != nil {
		return "", fmt.Errorf("model identity: %s: %w", p, ErrModelMissing)
	}
	model, err := embed.IdentifyModel(p)
	if err != nil {
		return "", err
	}
	return model.Space(cfg.Variant), nil
}
