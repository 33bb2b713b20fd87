// Package config resolves Visage's settings from flags, environment and
// documented defaults.
package config

import (
	"os"
	"path/filepath"
)

// EnvModels names the model directory when --models is not given.
const EnvModels = "VISAGE_MODELS"

// ModelDir returns flagValue if set, else $VISAGE_MODELS, else
// $XDG_DATA_HOME/visage/models (~/.local/share/visage/models).
func ModelDir(flagValue string) string {
	if flagValue != "" {
		return flagValue
	}
	if v := os.Getenv(EnvModels); v != "" {
		return v
	}
	return filepath.Join(dataHome(), "visage", "models")
}

// CacheDir is where set-up keeps downloaded packages:
// $XDG_CACHE_HOME/visage (~/.cache/visage).
func CacheDir() string {
	if v := os.Getenv("XDG_CACHE_HOME"); v != "" {
		return filepath.Join(v, "visage")
	}
	home, err := os.UserHomeDir()
	if err != nil {
		return filepath.Join(os.TempDir(), "visage-cache")
	}
	return filepath.Join(home, ".cache", "visage")
}

func dataHome() string {
	if v := os.Getenv("XDG_DATA_HOME"); v != "" {
		return v
	}
	home, err := os.UserHomeDir()
	if err != nil {
		return os.TempDir()
	}
	return filepath.Join(home, ".local", "share")
}

// EnvDataDir names visaged's data directory when --data is not given.
const EnvDataDir = "VISAGE_DATA_DIR"

// DataDir returns flagValue if set, else $VISAGE_DATA_DIR, else
// $XDG_DATA_HOME/visage/data (~/.local/share/visage/data).
func DataDir(flagValue string) string {
	if flagValue != "" {
		return flagValue
	}
	if v := os.Getenv(EnvDataDir); v != "" {
		return v
	}
	return filepath.Join(dataHome(), "visage", "data")
}
