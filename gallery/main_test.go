package gallery

import (
	"testing"

	"github.com/visage/visage/internal/pgtest"
)

// The gallery's tests and benchmarks get their PostgreSQL databases from
// pgtest, which starts its private cluster only when one first asks for a
// database: a run of tests that need none starts no server.
func TestMain(m *testing.M) { pgtest.Main(m) }
