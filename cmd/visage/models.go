package main

import (
	"context"
	"flag"
	"fmt"
	"path/filepath"

	"github.com/visage/visage/embed"
	"github.com/visage/visage/internal/config"
)

// stringList is a repeatable string flag.
type stringList []string

func (s *stringList) String() string     { return fmt.Sprint(*s) }
func (s *stringList) Set(v string) error { *s = append(*s, v); return nil }

func runModels(ctx context.Context, env *cliEnv, args []string) error {
	fs := flag.NewFlagSet("models", flag.ContinueOnError)
	fs.SetOutput(env.stderr)
	dir := fs.String("models", "", "model directory (default $VISAGE_MODELS or ~/.local/share/visage/models)")
	tarball := fs.String("faceapi", filepath.Join(config.CacheDir(), "vladmandic-face-api-1.7.15.tgz"),
		"tarball of "+embed.FaceAPIPackage+" (from `npm pack`)")
	lm := fs.String("landmarks68", embed.DebianLandmarks68, "68-point landmark model (Debian package libdlib-data)")
	var extra stringList
	fs.Var(&extra, "add", "an official dlib file to install (5-point predictor, ResNet, CNN detector; .dat or .dat.bz2); repeatable")
	if err := fs.Parse(args); err != nil {
		return err
	}
	extra = append(extra, fs.Args()...)
	target := config.ModelDir(*dir)
	err := embed.Prepare(embed.PrepareConfig{
		Dir: target, FaceAPITarball: *tarball, Landmarks68: *lm, Extra: extra,
		Log: func(format string, a ...any) { fmt.Fprintf(env.stderr, "models: "+format+"\n", a...) },
	})
	if err != nil {
		return err
	}
	fmt.Fprintf(env.stdout, "models ready in %s\n", target)
	return nil
}
