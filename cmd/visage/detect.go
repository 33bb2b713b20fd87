package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"math"
	"os"

	"github.com/visage/visage/align"
	"github.com/visage/visage/gallery"
)

// faceJSON is the CLI's JSON form of a face.
type faceJSON struct {
	Box        [4]int        `json:"box"` // left, top, right, bottom (exclusive)
	Score      float64       `json:"score"`
	Detector   string        `json:"detector"`
	Landmarks  [][2]int      `json:"landmarks"`
	Quality    align.Quality `json:"quality"`
	Descriptor []float32     `json:"descriptor,omitempty"`
}

type imageJSON struct {
	Image  string     `json:"image"`
	Width  int        `json:"width,omitempty"`
	Height int        `json:"height,omitempty"`
	Faces  []faceJSON `json:"faces"`
	Error  string     `json:"error,omitempty"`
	Code   string     `json:"code,omitempty"`
	TimeMS float64    `json:"time_ms"`
}

func toFaceJSON(f gallery.Face, withDescriptor bool) faceJSON {
	out := faceJSON{
		Box:   [4]int{f.Box.Min.X, f.Box.Min.Y, f.Box.Max.X, f.Box.Max.Y},
		Score: round(f.Score, 4), Detector: f.Detector, Quality: f.Quality.Rounded(),
	}
	for _, p := range f.Landmarks {
		out.Landmarks = append(out.Landmarks, [2]int{p.X, p.Y})
	}
	if withDescriptor {
		out.Descriptor = f.Descriptor[:]
	}
	return out
}

func round(v float64, digits int) float64 {
	p := math.Pow(10, float64(digits))
	return math.Round(v*p) / p
}

func runDetect(ctx context.Context, env *cliEnv, args []string) error {
	fs := flag.NewFlagSet("detect", flag.ContinueOnError)
	fs.SetOutput(env.stderr)
	var ef engineFlags
	ef.register(fs, 1)
	withDesc := fs.Bool("descriptors", false, "include the 128-D descriptors")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() == 0 {
		return fmt.Errorf("usage: visage detect [flags] IMAGE...")
	}
	eng, err := ef.open()
	if err != nil {
		return err
	}
	defer eng.Close()
	// One JSON object per image and line, so several images stream well
	// into other tools (jq, line-oriented scripts).
	enc := json.NewEncoder(env.stdout)
	failed := 0
	for _, path := range fs.Args() {
		out := imageJSON{Image: path, Faces: []faceJSON{}}
		data, err := os.ReadFile(path)
		if err == nil {
			var res *gallery.Result
			res, err = eng.Faces(ctx, data)
			if err == nil {
				out.Width, out.Height = res.Width, res.Height
				t := res.Timings
				out.TimeMS = round(float64(t.Decode+t.Detect+t.Align+t.Embed)/1e6, 2)
				for _, f := range res.Faces {
					out.Faces = append(out.Faces, toFaceJSON(f, *withDesc))
				}
			}
		}
		if err != nil {
			failed++
			out.Error, out.Code = err.Error(), gallery.ErrorCode(err)
		}
		if err := enc.Encode(out); err != nil {
			return err
		}
	}
	if failed > 0 {
		return fmt.Errorf("%d of %d images failed", failed, fs.NArg())
	}
	return nil
}

func runCompare(ctx context.Context, env *cliEnv, args []string) error {
	fs := flag.NewFlagSet("compare", flag.ContinueOnError)
	fs.SetOutput(env.stderr)
	var ef engineFlags
	ef.register(fs, 1)
	threshold := fs.Float64("threshold", 0, "same/different threshold (0: the variant's calibrated default)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() != 2 {
		return fmt.Errorf("usage: visage compare [flags] IMAGE_A IMAGE_B")
	}
	eng, err := ef.open()
	if err != nil {
		return err
	}
	defer eng.Close()
	var faces [2]gallery.Face
	for i, path := range fs.Args() {
		data, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		res, err := eng.Faces(ctx, data)
		if err != nil {
			return fmt.Errorf("%s: %w", path, err)
		}
		largest, err := gallery.Largest(res.Faces, 0)
		if err != nil {
			return fmt.Errorf("%s: %w", path, err)
		}
		faces[i] = largest[0]
	}
	th := *threshold
	if th == 0 {
		if th, err = gallery.ThresholdFor(eng.Embedder.Variant()); err != nil {
			return err
		}
	}
	d := gallery.Distance(faces[0], faces[1])
	decision := "different"
	if d <= th {
		decision = "same"
	}
	fmt.Fprintf(env.stdout, "distance=%.4f threshold=%.3f decision=%s\n", d, th, decision)
	return nil
}
