package main

import (
	"testing"

	"github.com/visage/visage/internal/pgtest"
)

// TestMain runs the tests through pgtest.Main: the scale-out tests get
// their PostgreSQL databases from a private throwaway cluster, which Main
// stops when the tests end.
func TestMain(m *testing.M) { pgtest.Main(m) }
