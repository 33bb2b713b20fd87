package main

import (
	"flag"
	"fmt"

	"github.com/visage/visage/embed"
	"github.com/visage/visage/gallery"
	"github.com/visage/visage/internal/config"
)

// engineFlags are the engine settings every engine-running command takes.
type engineFlags struct {
	models    string
	workers   int
	variant   string
	enroll    string
	detector  string
	maxSide   int
	upsample  float64
	landmarks int
	retry     bool
}

func (f *engineFlags) register(fs *flag.FlagSet, workers int) {
	fs.StringVar(&f.models, "models", "", "model directory (default $VISAGE_MODELS or ~/.local/share/visage/models)")
	fs.IntVar(&f.workers, "workers", workers, "engine workers (one network and detector each)")
	fs.StringVar(&f.variant, "variant", gallery.DefaultVariant().String(), "descriptor variant: plain, mirror, jitterN, mirror+jitterN, each optionally +l2")
	fs.StringVar(&f.enroll, "enroll-variant", gallery.DefaultEnrollVariant().String(), "descriptor variant of enrolled faces (same normalisation as --variant)")
	fs.StringVar(&f.detector, "detector", "hog", "face detector: hog or cnn")
	fs.IntVar(&f.maxSide, "max-side", 0, "longest side of the detector's scan copy (0: the default)")
	fs.Float64Var(&f.upsample, "upsample", 0, "largest upsampling factor for small images (0: the default)")
	fs.IntVar(&f.landmarks, "landmarks", 0, "landmark model: 5 or 68 (0: 68 when present)")
	fs.BoolVar(&f.retry, "detect-retry", true, "scan an image without a face once more, enlarged and with a lower threshold")
}

func (f *engineFlags) config() (gallery.EngineConfig, error) {
	cfg := gallery.DefaultEngineConfig(config.ModelDir(f.models))
	v, err := embed.ParseVariant(f.variant)
	if err != nil {
		return cfg, err
	}
	cfg.Variant = v
	if f.enroll != "" {
		if cfg.EnrollVariant, err = embed.ParseVariant(f.enroll); err != nil {
			return cfg, err
		}
	} else {
		cfg.EnrollVariant = v
	}
	cfg.Workers = f.workers
	cfg.Detector = f.detector
	cfg.Landmarks = f.landmarks
	if f.maxSide < 0 {
		return cfg, fmt.Errorf("--max-side must be >= 0")
	}
	if f.maxSide > 0 {
		cfg.Detect.MaxSide = f.maxSide
	}
	if f.upsample > 0 {
		cfg.Detect.MaxUpsample = f.upsample
	}
	cfg.Detect.Retry = f.retry
	return cfg, nil
}

func (f *engineFlags) open() (*gallery.Engine, error) {
	cfg, err := f.config()
	if err != nil {
		return nil, err
	}
	return gallery.OpenEngine(cfg)
}
