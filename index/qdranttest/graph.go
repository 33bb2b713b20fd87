package qdranttest

import (
	"slices"

	"github.com/qdrant/go-client/qdrant"
)

// Qdrant's defaults for a collection's HNSW index (its configuration
// file's storage.hnsw_index).
const (
	DefaultM                   = 16
	DefaultEfConstruct         = 100
	DefaultFullScanThresholdKB = 10_000
)

// hnswConfig is the HNSW configuration of a collection or vector.
type hnswConfig struct {
	m, efConstruct, fullScanKB uint64
	payloadM                   *uint64
}

// with applies a configuration diff (as sent at creation).
func (h hnswConfig) with(d *qdrant.HnswConfigDiff) hnswConfig {
	if d.M != nil {
		h.m = d.GetM()
	}
	if d.EfConstruct != nil {
		h.efConstruct = d.GetEfConstruct()
	}
	if d.FullScanThreshold != nil {
		h.fullScanKB = d.GetFullScanThreshold()
	}
	if d.PayloadM != nil {
		h.payloadM = qdrant.PtrOf(d.GetPayloadM())
	}
	return h
}

func (h hnswConfig) proto() *qdrant.HnswConfigDiff {
	return &qdrant.HnswConfigDiff{
		M:                  &h.m,
		EfConstruct:        &h.efConstruct,
		FullScanThreshold:  &h.fullScanKB,
		MaxIndexingThreads: qdrant.PtrOf(uint64(0)),
		OnDisk:             qdrant.PtrOf(false),
		PayloadM:           h.payloadM,
	}
}

// vectorHNSWConfig is the configuration the vector is indexed with: the
// collection's, with the vector's own overrides.
func (c *collection) vectorHNSWConfig() hnswConfig {
	if c.vectorHNSW == nil {
		return c.hnsw
	}
	return c.hnsw.with(c.vectorHNSW)
}

// fullScanPoints is the full-scan threshold in points: Qdrant measures
// it in kilobytes of vectors (1 KB is one 256-dimensional float32
// vector).
func (c *collection) fullScanPoints() int {
	return int(c.vectorHNSWConfig().fullScanKB * 1024 / uint64(4*c.size))
}

// graph is an HNSW graph over a collection's points: the bottom layer of
// Qdrant's (2m links a node, each node linked to the nearest of the
// ef_construct candidates a search for it finds, a node's links pruned to
// its 2m nearest), built in point-id order so that it is the same in
// every run. The upper layers, which only find a good entry point faster,
// are left out: the search enters at the first node.
type graph struct {
	version uint64
	nodes   []*point
	links   [][]int32
}

// candidate is a node and its score for a query.
type candidate struct {
	node  int32
	score float32
}

// buildGraph indexes the collection's points as they are now.
func (c *collection) buildGraph() *graph {
	cfg := c.vectorHNSWConfig()
	nodes := make([]*point, 0, len(c.points))
	for _, p := range c.points {
		nodes = append(nodes, p)
	}
	slices.SortFunc(nodes, func(a, b *point) int { return a.id.compare(b.id) })
	g := &graph{version: c.version, nodes: nodes, links: make([][]int32, len(nodes))}
	m0 := int(2 * cfg.m)
	efc := max(int(cfg.efConstruct), 1)
	all := func(int32) bool { return true }
	for i := 1; i < len(nodes); i++ {
		near := g.search(c, nodes[i].vector, 0, efc, all, i)
		for _, n := range near[:min(m0, len(near))] {
			g.links[i] = append(g.links[i], n.node)
			g.links[n.node] = append(g.links[n.node], int32(i))
			if len(g.links[n.node]) > m0 {
				g.prune(c, n.node, m0)
			}
		}
	}
	return g
}

// prune keeps a node's m0 nearest links.
func (g *graph) prune(c *collection, node int32, m0 int) {
	v := g.nodes[node].vector
	ls := make([]candidate, len(g.links[node]))
	for i, l := range g.links[node] {
		ls[i] = candidate{l, c.score(v, g.nodes[l].vector)}
	}
	slices.SortFunc(ls, c.rank)
	g.links[node] = g.links[node][:0]
	for _, l := range ls[:m0] {
		g.links[node] = append(g.links[node], l.node)
	}
}

// rank orders candidates best first, equal scores by node.
func (c *collection) rank(a, b candidate) int {
	switch {
	case c.better(a.score, b.score):
		return -1
	case c.better(b.score, a.score):
		return 1
	}
	return int(a.node - b.node)
}

// search is HNSW's beam search of width ef from entry among the first n
// nodes, following links only to nodes that pass ok, as Qdrant's
// filtered search does: nodes the filter leaves out are neither returned
// nor walked through, so the nodes found may be fewer than ef, and fewer
// than the filter passes. The result is best first.
func (g *graph) search(c *collection, q []float32, entry int32, ef int, ok func(int32) bool, n int) []candidate {
	visited := make([]bool, n)
	visited[entry] = true
	first := candidate{entry, c.score(q, g.nodes[entry].vector)}
	// frontier: best on top; found: worst on top, at most ef.
	frontier := candidateHeap{less: func(a, b candidate) bool { return c.rank(a, b) < 0 }, items: []candidate{first}}
	found := candidateHeap{less: func(a, b candidate) bool { return c.rank(a, b) > 0 }, items: []candidate{first}}
	for len(frontier.items) > 0 {
		cur := frontier.pop()
		if len(found.items) >= ef && c.rank(cur, found.items[0]) > 0 {
			break
		}
		for _, nb := range g.links[cur.node] {
			if int(nb) >= n || visited[nb] {
				continue
			}
			visited[nb] = true
			if !ok(nb) {
				continue
			}
			cand := candidate{nb, c.score(q, g.nodes[nb].vector)}
			if len(found.items) < ef || c.rank(cand, found.items[0]) < 0 {
				frontier.push(cand)
				found.push(cand)
				if len(found.items) > ef {
					found.pop()
				}
			}
		}
	}
	out := found.items
	slices.SortFunc(out, c.rank)
	return out
}

// candidateHeap is a binary heap of candidates, the least by less on
// top.
type candidateHeap struct {
	less  func(a, b candidate) bool
	items []candidate
}

func (h *candidateHeap) push(x candidate) {
	h.items = append(h.items, x)
	for i := len(h.items) - 1; i > 0; {
		parent := (i - 1) / 2
		if !h.less(h.items[i], h.items[parent]) {
			break
		}
		h.items[i], h.items[parent] = h.items[parent], h.items[i]
		i = parent
	}
}

func (h *candidateHeap) pop() candidate {
	top := h.items[0]
	last := len(h.items) - 1
	h.items[0] = h.items[last]
	h.items = h.items[:last]
	for i := 0; ; {
		least, l, r := i, 2*i+1, 2*i+2
		if l < last && h.less(h.items[l], h.items[least]) {
			least = l
		}
		if r < last && h.less(h.items[r], h.items[least]) {
			least = r
		}
		if least == i {
			break
		}
		h.items[i], h.items[least] = h.items[least], h.items[i]
		i = least
	}
	return top
}

// approximate searches the graph (built for the collection as it is now)
// for want points that pass the filter (pass, by node), with ef as Qdrant
// takes it: hnsw_ef if given, else the graph's ef_construct, and never
// less than the points asked for. The search enters at the first node
// that passes, as Qdrant's filtered search enters at a point that does.
func (c *collection) approximate(q []float32, pass []bool, hnswEf *uint64, want int) []candidate {
	entry := slices.Index(pass, true)
	if entry < 0 {
		return nil
	}
	ef := int(c.vectorHNSWConfig().efConstruct)
	if hnswEf != nil {
		ef = int(*hnswEf)
	}
	ef = max(ef, want, 1)
	g := c.graph
	return g.search(c, q, int32(entry), ef, func(n int32) bool { return pass[n] }, len(g.nodes))
}
