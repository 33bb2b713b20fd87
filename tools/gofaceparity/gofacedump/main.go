// Command gofacedump runs go-face's Recognize on JPEG files and writes
// what it found as JSON (a list of fixture.GoFaceResult) to stdout.
//
// The parity test runs it rather than calling go-face in its own process:
// Visage's dlib package replaces one of libdlib's functions (img2col) for
// the whole process, and go-face must be compared as its users run it.
//
// Usage:
//
//	gofacedump MODELDIR FILE...
//
// MODELDIR holds go-face's three model files under go-face's names.
package main

import (
	"encoding/json"
	"fmt"
	"os"

	face "github.com/Kagami/go-face"

	"github.com/visage/visage/tools/gofaceparity/internal/fixture"
)

func main() {
	if err := run(os.Args[1:]); err != nil {
		fmt.Fprintln(os.Stderr, "gofacedump:", err)
		os.Exit(1)
	}
}

func run(args []string) error {
	if len(args) < 2 {
		return fmt.Errorf("usage: gofacedump MODELDIR FILE...")
	}
	rec, err := face.NewRecognizer(args[0])
	if err != nil {
		return fmt.Errorf("load go-face models from %s: %w", args[0], err)
	}
	defer rec.Close()
	out := make([]fixture.GoFaceResult, 0, len(args)-1)
	for _, file := range args[1:] {
		out = append(out, recognize(rec, file))
	}
	enc := json.NewEncoder(os.Stdout)
	return enc.Encode(out)
}

// recognize reports a file's faces, or the error, without stopping the
// run: the test says which image failed.
func recognize(rec *face.Recognizer, file string) fixture.GoFaceResult {
	res := fixture.GoFaceResult{File: file, Faces: []fixture.GoFaceFace{}}
	data, err := os.ReadFile(file)
	if err != nil {
		res.Error = err.Error()
		return res
	}
	faces, err := rec.Recognize(data)
	if err != nil {
		res.Error = err.Error()
		return res
	}
	for _, f := range faces {
		res.Faces = append(res.Faces, fixture.GoFaceFace{
			Rect: f.Rectangle, Shapes: f.Shapes, Descriptor: f.Descriptor,
		})
	}
	return res
}
