package dlib

import (
	"errors"
	"os"
	"path/filepath"
	"slices"
	"testing"
)

func vec(dim int, x float32) []float32 {
	v := make([]float32, dim)
	for i := range v {
		v[i] = x + float32(i%3)
	}
	return v
}

// TestHNSWGraph covers the wrapper's own contract: a full graph refuses
// new labels without throwing and takes them after Resize, updates need
// no room, deletion and re-addition, and the snapshot round trip.
func TestHNSWGraph(t *testing.T) {
	const dim = 8
	g, err := NewHNSW(dim, 2, 4, 20, 1)
	if err != nil {
		t.Fatal(err)
	}
	defer g.Free()
	for i := range 2 {
		if err := g.Add(uint64(i), vec(dim, float32(i))); err != nil {
			t.Fatal(err)
		}
	}
	if err := g.Add(2, vec(dim, 2)); !errors.Is(err, ErrGraphFull) {
		t.Fatalf("Add to a full graph: %v, want ErrGraphFull", err)
	}
	if err := g.Add(1, vec(dim, 5)); err != nil {
		t.Fatalf("updating a label of a full graph: %v", err)
	}
	if err := g.Resize(4); err != nil {
		t.Fatal(err)
	}
	if err := g.Add(2, vec(dim, 2)); err != nil {
		t.Fatalf("Add after Resize: %v", err)
	}
	if err := g.Add(3, make([]float32, dim-1)); err == nil {
		t.Error("Add accepted a vector of the wrong dimension")
	}

	if !g.Delete(0) || g.Delete(0) || g.Delete(99) {
		t.Error("Delete should report true once for a live label, false otherwise")
	}
	if g.Live() != 2 || g.Size() != 3 || g.Capacity() != 4 {
		t.Errorf("Live/Size/Capacity = %d/%d/%d, want 2/3/4", g.Live(), g.Size(), g.Capacity())
	}
	labels, dists := make([]uint64, 5), make([]float32, 5)
	n, err := g.Search(vec(dim, 0), 10, labels, dists)
	if err != nil {
		t.Fatal(err)
	}
	if got := labels[:n]; !slices.Equal(got, []uint64{2, 1}) {
		t.Errorf("Search after deleting 0 = %v (squared %v), want [2 1]", got, dists[:n])
	}
	got := make([]float32, dim)
	if g.Vector(0, got) || !g.Vector(1, got) || !slices.Equal(got, vec(dim, 5)) {
		t.Errorf("Vector: deleted label readable, or label 1 not updated (%v)", got)
	}
	if err := g.Add(0, vec(dim, 0)); err != nil || g.Live() != 3 {
		t.Errorf("re-adding a deleted label: %v, Live = %d", err, g.Live())
	}
	if err := g.Resize(1); err == nil {
		t.Error("Resize below the elements held succeeded")
	}

	path := filepath.Join(t.TempDir(), "g")
	if err := g.Save(path); err != nil {
		t.Fatal(err)
	}
	g.Delete(2)
	if err := g.Save(path + "2"); err != nil {
		t.Fatal(err)
	}
	loaded, err := LoadHNSW(path+"2", dim, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer loaded.Free()
	if l := loaded.Labels(); loaded.Live() != 2 || !slices.Equal(l, []uint64{0, 1}) {
		t.Errorf("loaded graph: Live = %d, Labels = %v; want 2, [0 1]", loaded.Live(), l)
	}
	if _, err := LoadHNSW(path, dim*2, 0); err == nil {
		t.Error("a graph of another dimension loaded")
	}
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	// hnswlib's header is 96 bytes; element 0's first link follows its
	// 4-byte list header. A link out of range would be read by searches.
	bad := slices.Clone(data)
	copy(bad[96+4:], []byte{0, 0, 0, 0x7f})
	if err := os.WriteFile(path, bad, 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := LoadHNSW(path, dim, 0); err == nil {
		t.Error("a graph with a link outside it loaded")
	}
	if err := os.WriteFile(path, data[:len(data)-3], 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := LoadHNSW(path, dim, 0); err == nil {
		t.Error("a truncated graph loaded")
	}
	if _, err := LoadHNSW(filepath.Join(t.TempDir(), "none"), dim, 0); err == nil {
		t.Error("a missing file loaded")
	}
}
