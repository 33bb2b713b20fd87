package main

import (
	"context"
	"encoding/binary"
	"flag"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"runtime"
	"sort"
	"strings"
	"sync/atomic"

	"github.com/visage/visage/gallery"
)

// dirList is a repeatable string flag.
type dirList []string

func (d *dirList) String() string     { return strings.Join(*d, ",") }
func (d *dirList) Set(v string) error { *d = append(*d, v); return nil }

// runEvalMatching compares the match modes by open-set identification on
// photo folders laid out as DIR/<person>/<photo>.
func runEvalMatching(ctx context.Context, env *cliEnv, args []string) error {
	fs := flag.NewFlagSet("eval matching", flag.ContinueOnError)
	fs.SetOutput(env.stderr)
	var ef engineFlags
	ef.register(fs, runtime.NumCPU())
	var dirs dirList
	fs.Var(&dirs, "dir", "folder of <person>/<photo> (repeatable)")
	dump := fs.String("dump", "", "also write every descriptor as raw little-endian float32 rows to FILE")
	threshold := fs.Float64("threshold", 0, "operating threshold (0: the variant's calibrated one)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if len(dirs) == 0 {
		return fmt.Errorf("usage: visage eval matching --dir DIR [--dir DIR...] [--dump FILE]")
	}
	cfg, err := ef.config()
	if err != nil {
		return err
	}
	if *threshold == 0 {
		if *threshold, err = gallery.ThresholdFor(cfg.Variant); err != nil {
			return err
		}
	}
	type photo struct{ person, path string }
	var photos []photo
	for _, dir := range dirs {
		people, err := os.ReadDir(dir)
		if err != nil {
			return err
		}
		for _, p := range people {
			if !p.IsDir() {
				continue
			}
			files, err := os.ReadDir(filepath.Join(dir, p.Name()))
			if err != nil {
				return err
			}
			for _, f := range files {
				photos = append(photos, photo{filepath.Base(dir) + "/" + p.Name(), filepath.Join(dir, p.Name(), f.Name())})
			}
		}
	}
	eng, err := gallery.OpenEngine(cfg)
	if err != nil {
		return err
	}
	defer eng.Close()
	samples := make([]*gallery.Labeled, len(photos))
	var noFace, done atomic.Int64
	prog := newProgress(env, "embed", len(photos))
	err = gallery.Concurrently(ctx, cfg.Workers, photos, func(ctx context.Context, i int, ph photo) error {
		data, err := os.ReadFile(ph.path)
		if err != nil {
			return err
		}
		res, err := eng.Faces(ctx, data)
		if err != nil {
			return fmt.Errorf("%s: %w", ph.path, err)
		}
		prog.tick(done.Add(1))
		top, err := gallery.Largest(res.Faces, 0)
		if err != nil {
			noFace.Add(1)
			return nil
		}
		samples[i] = &gallery.Labeled{Person: ph.person, Desc: top[0].Descriptor}
		return nil
	})
	if err != nil {
		return err
	}
	prog.finish()
	var list []gallery.Labeled
	for _, s := range samples {
		if s != nil {
			list = append(list, *s)
		}
	}
	sort.SliceStable(list, func(i, j int) bool { return list[i].Person < list[j].Person })
	if *dump != "" {
		buf := make([]byte, 0, len(list)*4*len(list[0].Desc))
		for _, s := range list {
			for _, v := range s.Desc {
				buf = binary.LittleEndian.AppendUint32(buf, math.Float32bits(v))
			}
		}
		if err := os.WriteFile(*dump, buf, 0o644); err != nil {
			return err
		}
	}
	for _, mode := range []gallery.MatchMode{gallery.MatchFaces, gallery.MatchTemplate} {
		r := gallery.EvaluateIdentification(list, mode, *threshold)
		fmt.Fprintf(env.stdout, "matching mode=%s photos=%d no_face=%d mated=%d non_mated=%d rank1=%.4f threshold=%.3f fnir=%.4f fpir=%.4f fnir@fpir1%%=%.4f (t=%.3f) fnir@fpir5%%=%.4f (t=%.3f)\n",
			r.Mode, len(list), noFace.Load(), r.Mated, r.NonMated, r.Rank1, r.Threshold, r.FNIR, r.FPIR, r.FNIRAtFPIR1, r.ThresholdAtFPIR1, r.FNIRAtFPIR5, r.ThresholdAtFPIR5)
	}
	return nil
}
