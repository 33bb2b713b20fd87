package index_test

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"net"
	"os"
	"strconv"
	"testing"
	"time"

	"github.com/qdrant/go-client/qdrant"
	"github.com/visage/visage/index"
	"github.com/visage/visage/index/indextest"
	"github.com/visage/visage/index/qdranttest"
)

const dim = 128

func TestFlatConformance(t *testing.T) {
	indextest.Run(t, dim, func(t *testing.T) index.Index { return index.NewFlat(dim) })
}

func TestHNSWConformance(t *testing.T) {
	indextest.Run(t, dim, func(t *testing.T) index.Index {
		// An ef above the suite's space sizes makes the search exhaustive,
		// so exact.
		h, err := index.NewHNSW(dim, index.HNSWParams{M: 16, EfConstruction: 100, EfSearch: 2000})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { h.Close() })
		return h
	})
}

func TestQdrantConformance(t *testing.T) {
	srv := qdranttest.Start(t, qdranttest.Options{})
	indextest.Run(t, dim, func(t *testing.T) index.Index {
		return openQdrant(t, index.QdrantConfig{
			Addr:       srv.Addr(),
			Collection: uniqueCollection(t),
			Dim:        dim,
			Model:      "test-model",
		})
	})
	if n := srv.UnwaitedWrites(); n != 0 {
		t.Errorf("%d writes did not wait to be applied", n)
	}
}

// TestQdrantConformanceRealServer runs the suite against a real Qdrant at
// QDRANT_ADDR (gRPC host:port), with QDRANT_API_KEY if set and TLS if
// QDRANT_TLS=1, each case in a new collection it deletes afterwards.
func TestQdrantConformanceRealServer(t *testing.T) {
	addr := os.Getenv("QDRANT_ADDR")
	if addr == "" {
		t.Skip("needs a real Qdrant: set QDRANT_ADDR (gRPC host:port) and, if it wants one, QDRANT_API_KEY")
	}
	cfg := index.QdrantConfig{
		Addr:   addr,
		APIKey: os.Getenv("QDRANT_API_KEY"),
		UseTLS: os.Getenv("QDRANT_TLS") == "1",
		Dim:    dim,
		Model:  "conformance",
	}
	indextest.Run(t, dim, func(t *testing.T) index.Index {
		c := cfg
		c.Collection = uniqueCollection(t)
		q := openQdrant(t, c)
		t.Cleanup(func() { deleteCollection(t, c) })
		return q
	})
}

// openQdrant opens a Qdrant index that fails fast, closed when the test
// ends.
func openQdrant(t *testing.T, cfg index.QdrantConfig) *index.Qdrant {
	t.Helper()
	if cfg.Retry == (index.QdrantRetry{}) {
		cfg.Retry = fastRetry()
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	q, err := index.OpenQdrant(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { q.Close() })
	return q
}

// uniqueCollection names a Qdrant collection for one test.
func uniqueCollection(t *testing.T) string {
	b := make([]byte, 6)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return "visage_test_" + hex.EncodeToString(b)
}

// newRawClient is a plain go-client connection to the server cfg names.
func newRawClient(t *testing.T, cfg index.QdrantConfig) *qdrant.Client {
	t.Helper()
	host, portText, err := net.SplitHostPort(cfg.Addr)
	if err != nil {
		t.Fatal(err)
	}
	port, err := strconv.Atoi(portText)
	if err != nil {
		t.Fatal(err)
	}
	c, err := qdrant.NewClient(&qdrant.Config{Host: host, Port: port, APIKey: cfg.APIKey, UseTLS: cfg.UseTLS, SkipCompatibilityCheck: true, PoolSize: 1})
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// rawClient is newRawClient's connection, closed when the test ends.
func rawClient(t *testing.T, cfg index.QdrantConfig) *qdrant.Client {
	t.Helper()
	c := newRawClient(t, cfg)
	t.Cleanup(func() { c.Close() })
	return c
}

func deleteCollection(t *testing.T, cfg index.QdrantConfig) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	c := newRawClient(t, cfg)
	defer c.Close()
	if err := c.DeleteCollection(ctx, cfg.Collection); err != nil {
		t.Errorf("delete collection %s: %v", cfg.Collection, err)
	}
}
