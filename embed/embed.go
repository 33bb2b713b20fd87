// Package embed turns aligned face chips into 128-D descriptors with
// dlib's ResNet: a pool of networks (one per worker, each single-threaded)
// that batches chips across concurrent callers, and the model's identity
// so that descriptors of different models or variants are never mixed.
package embed

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"strconv"
	"strings"
	"sync"

	"github.com/visage/visage/internal/dlib"
)

// Dim is the descriptor dimension.
const Dim = dlib.DescriptorLen

// Descriptor is a face embedding; faces of one person lie close in
// Euclidean distance.
type Descriptor [Dim]float32

// Distance is the Euclidean distance between two descriptors (not
// squared: dlib's 0.6 is on this scale).
func Distance(a, b Descriptor) float64 {
	var s float64
	for i := range a {
		d := float64(a[i] - b[i])
		s += d * d
	}
	return math.Sqrt(s)
}

// Variant is the test-time augmentation applied to every chip. Each
// variant has its own distance scale: calibrate thresholds per variant.
type Variant struct {
	// Mirror averages the descriptors of the chip and its mirror image.
	Mirror bool
	// Jitter, when > 0, averages the descriptors of that many randomly
	// jittered copies (dlib's jitter_image, fixed seed).
	Jitter int
	// Normalize scales descriptors to unit length.
	Normalize bool
}

// String names the variant, e.g. "plain", "mirror+l2", "jitter20+l2".
func (v Variant) String() string {
	s := "plain"
	switch {
	case v.Jitter > 0 && v.Mirror:
		s = "mirror+jitter" + strconv.Itoa(v.Jitter)
	case v.Jitter > 0:
		s = "jitter" + strconv.Itoa(v.Jitter)
	case v.Mirror:
		s = "mirror"
	}
	if v.Normalize {
		s += "+l2"
	}
	return s
}

// ParseVariant reads the String form.
func ParseVariant(s string) (Variant, error) {
	var v Variant
	rest := s
	if len(rest) > 3 && rest[len(rest)-3:] == "+l2" {
		v.Normalize = true
		rest = rest[:len(rest)-3]
	}
	switch {
	case rest == "plain":
	case rest == "mirror":
		v.Mirror = true
	case len(rest) > 13 && rest[:13] == "mirror+jitter":
		n, err := strconv.Atoi(rest[13:])
		if err != nil || n < 1 {
			return v, fmt.Errorf("parse variant %q: bad jitter count", s)
		}
		v.Mirror, v.Jitter = true, n
	case len(rest) > 6 && rest[:6] == "jitter":
		n, err := strconv.Atoi(rest[6:])
		if err != nil || n < 1 {
			return v, fmt.Errorf("parse variant %q: bad jitter count", s)
		}
		v.Jitter = n
	default:
		return v, fmt.Errorf("parse variant %q: want plain, mirror, jitterN or mirror+jitterN, optionally +l2", s)
	}
	return v, nil
}

// Base is the variant without augmentation: plain, with v's
// normalisation. Augmented descriptors (mirror, jitter) lie in the same
// space as their base variant's and may be compared with them; descriptors
// of different normalisations may not.
func (v Variant) Base() Variant { return Variant{Normalize: v.Normalize} }

// Combine averages descriptors of one face (raw network outputs, e.g. the
// passes of a chip and of its mirror image) and normalises if v asks: the
// same arithmetic the pool applies to a variant's passes.
func (v Variant) Combine(raw ...Descriptor) Descriptor {
	ds := make([][Dim]float32, len(raw))
	for i, r := range raw {
		ds[i] = r
	}
	return v.combine(ds)
}

// Mirror returns a chip's mirror image (left and right swapped).
func Mirror(chip []byte) []byte { return mirror(chip) }

// passes is the number of network passes per face.
func (v Variant) passes() int {
	n := 1
	if v.Jitter > 0 {
		n = v.Jitter
	}
	if v.Mirror {
		n *= 2
	}
	return n
}

// jitterSeed fixes jitter so that a face always gets the same descriptor.
const jitterSeed = 0

// augment returns the chips to run for one face under v.
func (v Variant) augment(chip []byte) ([]byte, error) {
	base := chip
	if v.Jitter > 0 {
		j, err := dlib.Jitter(chip, v.Jitter, jitterSeed)
		if err != nil {
			return nil, err
		}
		base = j
	}
	if !v.Mirror {
		return base, nil
	}
	out := make([]byte, 0, 2*len(base))
	out = append(out, base...)
	for off := 0; off < len(base); off += dlib.ChipBytes {
		out = append(out, mirror(base[off:off+dlib.ChipBytes])...)
	}
	return out, nil
}

// combine averages a face's pass descriptors and normalises if asked.
func (v Variant) combine(ds [][Dim]float32) Descriptor {
	var sum [Dim]float64
	for _, d := range ds {
		for i, x := range d {
			sum[i] += float64(x)
		}
	}
	var out Descriptor
	var norm float64
	for i := range sum {
		m := sum[i] / float64(len(ds))
		out[i] = float32(m)
		norm += m * m
	}
	if v.Normalize && norm > 0 {
		inv := 1 / math.Sqrt(norm)
		for i := range out {
			out[i] = float32(float64(out[i]) * inv)
		}
	}
	return out
}

func mirror(chip []byte) []byte {
	const side = dlib.ChipSize
	out := make([]byte, len(chip))
	for y := 0; y < side; y++ {
		row := y * side * 3
		for x := 0; x < side; x++ {
			s, d := row+3*x, row+3*(side-1-x)
			copy(out[d:d+3], chip[s:s+3])
		}
	}
	return out
}

// Model identifies a network file: descriptors are comparable only within
// one model and one descriptor space (see Variant.Base).
type Model struct {
	// Path is the .dat file.
	Path string
	// SHA256 is the file's hex digest.
	SHA256 string
}

// ModelFile is the ResNet's file name in the model directory (go-face's).
const ModelFile = "dlib_face_recognition_resnet_model_v1.dat"

// ID is the model identity stored with every descriptor, e.g.
// "dlib-resnet-v1@b413e420d684/mirror+l2".
func (m Model) ID(v Variant) string {
	return "dlib-resnet-v1@" + m.SHA256[:12] + "/" + v.String()
}

// Space is the identity of the descriptor space a variant's descriptors
// lie in: the ID of its base variant, e.g.
// "dlib-resnet-v1@b413e420d684/plain+l2" for mirror+l2 as for plain+l2.
// Vectors of one space may share an index and be compared; the face's own
// ID still says how it was made.
func (m Model) Space(v Variant) string { return m.ID(v.Base()) }

// SpaceOf returns the space of a stored model ID (see Model.Space); an ID
// that does not parse is its own space, comparable with nothing else.
func SpaceOf(id string) string {
	i := strings.LastIndexByte(id, '/')
	if i < 0 {
		return id
	}
	v, err := ParseVariant(id[i+1:])
	if err != nil {
		return id
	}
	return id[:i+1] + v.Base().String()
}

// Comparable reports whether descriptors of two model IDs may be compared.
func Comparable(a, b string) bool { return SpaceOf(a) == SpaceOf(b) }

// IdentifyModel hashes a network file.
func IdentifyModel(path string) (Model, error) {
	f, err := os.Open(path)
	if err != nil {
		return Model{}, fmt.Errorf("identify model: %w", err)
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		return Model{}, fmt.Errorf("identify model %s: %w", path, err)
	}
	return Model{Path: path, SHA256: hex.EncodeToString(h.Sum(nil))}, nil
}

// Options configure a Pool.
type Options struct {
	// Workers is the number of networks, each run on one thread.
	Workers int
	// MaxBatch caps the chips one forward pass takes across callers.
	MaxBatch int
	// Variant is the augmentation Embed applies; EmbedAs takes another.
	Variant Variant
}

// ErrClosed is returned by Embed after Close.
var ErrClosed = errors.New("embedder closed")

// Pool embeds chips with a fixed set of networks; safe for concurrent use.
// Chips queued by concurrent callers are batched into one forward pass.
type Pool struct {
	model Model
	opts  Options
	jobs  chan *job
	wg    sync.WaitGroup
	once  sync.Once
	quit  chan struct{}
}

type job struct {
	chips   []byte // all passes of one face
	variant Variant
	done    chan result
}

type result struct {
	desc Descriptor
	err  error
}

// NewPool loads opts.Workers copies of the network at model.Path.
func NewPool(model Model, opts Options) (*Pool, error) {
	if opts.Workers < 1 {
		opts.Workers = 1
	}
	if opts.MaxBatch < 1 {
		opts.MaxBatch = 8
	}
	p := &Pool{model: model, opts: opts, jobs: make(chan *job, 64*opts.Workers), quit: make(chan struct{})}
	nets := make([]*dlib.Net, 0, opts.Workers)
	for i := 0; i < opts.Workers; i++ {
		n, err := dlib.LoadNet(model.Path)
		if err != nil {
			for _, n := range nets {
				n.Close()
			}
			return nil, err
		}
		nets = append(nets, n)
	}
	for _, n := range nets {
		p.wg.Add(1)
		go p.work(n)
	}
	return p, nil
}

// Model is the network's identity.
func (p *Pool) Model() Model { return p.model }

// Variant is the augmentation in use.
func (p *Pool) Variant() Variant { return p.opts.Variant }

// ModelID is the identity string stored with descriptors.
func (p *Pool) ModelID() string { return p.model.ID(p.opts.Variant) }

// Workers is the number of networks.
func (p *Pool) Workers() int { return p.opts.Workers }

// Embed returns one descriptor per 150×150 chip, of the pool's variant.
func (p *Pool) Embed(ctx context.Context, chips [][]byte) ([]Descriptor, error) {
	return p.EmbedAs(ctx, chips, p.opts.Variant)
}

// EmbedAs returns one descriptor per 150×150 chip, of variant v. Calls of
// different variants share batches; a face's descriptor does not depend
// on what else was in its batch.
func (p *Pool) EmbedAs(ctx context.Context, chips [][]byte, v Variant) ([]Descriptor, error) {
	jobs := make([]*job, len(chips))
	for i, c := range chips {
		if len(c) != dlib.ChipBytes {
			return nil, fmt.Errorf("embed: chip %d has %d bytes, want %d", i, len(c), dlib.ChipBytes)
		}
		aug, err := v.augment(c)
		if err != nil {
			return nil, fmt.Errorf("embed: %w", err)
		}
		jobs[i] = &job{chips: aug, variant: v, done: make(chan result, 1)}
		select {
		case p.jobs <- jobs[i]:
		case <-p.quit:
			return nil, ErrClosed
		case <-ctx.Done():
			return nil, fmt.Errorf("embed: %w", ctx.Err())
		}
	}
	out := make([]Descriptor, len(chips))
	for i, j := range jobs {
		select {
		case r := <-j.done:
			if r.err != nil {
				return nil, r.err
			}
			out[i] = r.desc
		case <-p.quit:
			return nil, ErrClosed
		case <-ctx.Done():
			// The worker still finishes the job into its buffered channel.
			return nil, fmt.Errorf("embed: %w", ctx.Err())
		}
	}
	return out, nil
}

// work runs one network: it takes a job, adds whatever else is queued
// while the batch stays within MaxBatch chips, and runs them as one batch.
// A job larger than MaxBatch (a jittered face) runs alone.
func (p *Pool) work(n *dlib.Net) {
	defer p.wg.Done()
	defer n.Close()
	var held *job // taken from the queue but too large for the last batch
	for {
		var batch []*job
		if held != nil {
			batch, held = append(batch, held), nil
		} else {
			select {
			case j := <-p.jobs:
				batch = append(batch, j)
			case <-p.quit:
				return
			}
		}
		size := len(batch[0].chips)
	fill:
		for size < p.opts.MaxBatch*dlib.ChipBytes {
			select {
			case j := <-p.jobs:
				if size+len(j.chips) > p.opts.MaxBatch*dlib.ChipBytes {
					held = j
					break fill
				}
				batch = append(batch, j)
				size += len(j.chips)
			default:
				break fill
			}
		}
		chips := make([]byte, 0, size)
		for _, j := range batch {
			chips = append(chips, j.chips...)
		}
		ds, err := n.Embed(chips)
		at := 0
		for _, j := range batch {
			passes := len(j.chips) / dlib.ChipBytes
			if err != nil {
				j.done <- result{err: err}
				continue
			}
			j.done <- result{desc: j.variant.combine(ds[at : at+passes])}
			at += passes
		}
	}
}

// Close stops the workers after the batches in progress; queued work that
// has not started is abandoned.
func (p *Pool) Close() {
	p.once.Do(func() { close(p.quit) })
	p.wg.Wait()
}
