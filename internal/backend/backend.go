// Package backend opens the metadata store and the vector index a Visage
// deployment is configured with: the embedded default (SQLite and an HNSW
// index in one data directory) or scale-out (PostgreSQL and Qdrant,
// shared by stateless replicas). visaged and the visage tool's doctor,
// reindex and keys commands open them alike.
package backend

import (
	"cmp"
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"syscall"
	"time"

	"github.com/visage/visage/embed"
	"github.com/visage/visage/gallery"
	"github.com/visage/visage/index"
	"github.com/visage/visage/store"
)

// Config selects the backends. The store is PostgreSQL when DatabaseURL
// is set, else SQLite in DataDir; the index is Qdrant when Qdrant.Addr is
// set, else the embedded index in DataDir. Replicas need both shared
// backends; one process may mix them (say, PostgreSQL with the embedded
// index).
type Config struct {
	// DataDir holds the embedded backends: visage.db and hnsw/.
	DataDir string
	// Index is the embedded index: "hnsw" (default, saved in DataDir) or
	// "flat" (exact, in memory, rebuilt from the store at start-up).
	Index string
	// DatabaseURL is a PostgreSQL connection URL.
	DatabaseURL string
	// Qdrant is the Qdrant server.
	Qdrant Qdrant
}

// Qdrant is where the Qdrant index lives.
type Qdrant struct {
	// Addr is the gRPC endpoint, host:port (port 6334 by default).
	Addr string
	// APIKey is sent with every request when set.
	APIKey string
	// TLS connects with TLS, verified against the system roots or CAFile.
	TLS    bool
	CAFile string
	// Collection is the Qdrant collection (default visage_faces).
	Collection string
}

// Validate checks the choice of backends.
func (c Config) Validate() error {
	switch c.Index {
	case "", "hnsw", "flat":
	default:
		return fmt.Errorf("index must be hnsw or flat, not %q", c.Index)
	}
	if c.DataDir == "" && (c.DatabaseURL == "" || c.Qdrant.Addr == "") {
		return errors.New("no data directory for the embedded backends")
	}
	return nil
}

// Describe names the backends for logs, e.g. "postgres+qdrant".
func (c Config) Describe() string {
	st, ix := "sqlite", cmp.Or(c.Index, "hnsw")
	if c.DatabaseURL != "" {
		st = "postgres"
	}
	if c.Qdrant.Addr != "" {
		ix = "qdrant"
	}
	return st + "+" + ix
}

// EmbeddedIndex reports whether the index lives in this process (and, for
// hnsw, in DataDir): only one process may then use it.
func (c Config) EmbeddedIndex() bool { return c.Qdrant.Addr == "" }

// Store is the metadata store as Visage's programs use it.
type Store interface {
	gallery.Store
	gallery.ImportStore
	ListImportJobs(ctx context.Context, collection string, limit int) ([]store.ImportJob, error)
	ImportItems(ctx context.Context, jobID string, states []store.ItemState, afterSeq, limit int) ([]store.ImportItem, error)
	GetKey(ctx context.Context, id string) (store.APIKey, error)
	TouchKey(ctx context.Context, id string, at time.Time) error
	CountKeys(ctx context.Context) (int, error)
	CreateKey(ctx context.Context, k store.APIKey) (store.APIKey, error)
	ListKeys(ctx context.Context) ([]store.APIKey, error)
	RevokeKey(ctx context.Context, id string) error
	CreateSession(ctx context.Context, sess store.Session) (store.Session, error)
	GetSession(ctx context.Context, idHash []byte) (store.SessionKey, error)
	DeleteSession(ctx context.Context, idHash []byte) error
	Close() error
}

var (
	_ Store = (*store.SQLite)(nil)
	_ Store = (*store.Postgres)(nil)
)

// OpenStore opens (and migrates) the configured metadata store.
func OpenStore(ctx context.Context, c Config) (Store, error) {
	if c.DatabaseURL != "" {
		return store.OpenPostgres(ctx, c.DatabaseURL)
	}
	if err := os.MkdirAll(c.DataDir, 0o700); err != nil {
		return nil, fmt.Errorf("create data directory: %w", err)
	}
	return store.OpenSQLite(ctx, filepath.Join(c.DataDir, "visage.db"))
}

// Index is an open vector index.
type Index struct {
	index.Index
	// Kind is "hnsw", "flat" or "qdrant".
	Kind  string
	save  func(context.Context) error
	close func() error
}

// Save persists what must survive a restart (the HNSW snapshots); the
// other indexes have nothing to save.
func (i *Index) Save(ctx context.Context) error { return i.save(ctx) }

// Close releases the index.
func (i *Index) Close() error { return i.close() }

// OpenIndex opens the configured vector index; model is the identity of
// the descriptors it holds (Qdrant keeps each model's vectors apart).
func OpenIndex(ctx context.Context, c Config, model string) (*Index, error) {
	nothing := func(context.Context) error { return nil }
	switch {
	case c.Qdrant.Addr != "":
		q, err := index.OpenQdrant(ctx, index.QdrantConfig{
			Addr: c.Qdrant.Addr, APIKey: c.Qdrant.APIKey, UseTLS: c.Qdrant.TLS, CAFile: c.Qdrant.CAFile,
			Collection: c.Qdrant.Collection, Dim: embed.Dim, Model: model,
		})
		if err != nil {
			return nil, err
		}
		return &Index{Index: q, Kind: "qdrant", save: nothing, close: q.Close}, nil
	case c.Index == "flat":
		return &Index{Index: index.NewFlat(embed.Dim), Kind: "flat", save: nothing, close: func() error { return nil }}, nil
	default:
		h, err := index.OpenHNSW(filepath.Join(c.DataDir, "hnsw"), embed.Dim, index.DefaultHNSWParams())
		if err != nil {
			return nil, fmt.Errorf("open index: %w", err)
		}
		return &Index{Index: h, Kind: "hnsw", save: h.Save, close: h.Close}, nil
	}
}

// ErrLocked means another process uses the data directory's embedded
// index.
var ErrLocked = errors.New("the data directory's index is in use by another process (is visaged running?)")

// LockDataDir takes the data directory's lock, which the embedded index's
// user holds: visaged, or a doctor or reindex run while it is stopped.
// The lock goes with the process, however it ends.
func LockDataDir(dir string) (unlock func() error, err error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("create data directory: %w", err)
	}
	f, err := os.OpenFile(filepath.Join(dir, "index.lock"), os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("lock data directory: %w", err)
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		_ = f.Close()
		if errors.Is(err, syscall.EWOULDBLOCK) {
			return nil, fmt.Errorf("lock %s: %w", dir, ErrLocked)
		}
		return nil, fmt.Errorf("lock data directory: %w", err)
	}
	return f.Close, nil
}

// RegisterFlags registers the shared backends' flags on fs, each
// defaulting to its environment variable. The Qdrant API key is a secret
// and comes from $VISAGE_QDRANT_API_KEY only (flags show in the process
// list); call FromEnv after parsing.
func (c *Config) RegisterFlags(fs *flag.FlagSet) {
	fs.StringVar(&c.DatabaseURL, "database-url", os.Getenv("VISAGE_DATABASE_URL"), "PostgreSQL URL of the metadata store; empty uses SQLite in the data directory ($VISAGE_DATABASE_URL)")
	fs.StringVar(&c.Qdrant.Addr, "qdrant-addr", os.Getenv("VISAGE_QDRANT_ADDR"), "Qdrant gRPC address host:port for the vectors; empty uses the embedded index ($VISAGE_QDRANT_ADDR)")
	tlsDefault, _ := strconv.ParseBool(os.Getenv("VISAGE_QDRANT_TLS"))
	fs.BoolVar(&c.Qdrant.TLS, "qdrant-tls", tlsDefault, "connect to Qdrant with TLS ($VISAGE_QDRANT_TLS)")
	fs.StringVar(&c.Qdrant.CAFile, "qdrant-ca-file", os.Getenv("VISAGE_QDRANT_CA_FILE"), "PEM CA bundle for Qdrant's certificate; default the system roots ($VISAGE_QDRANT_CA_FILE)")
	fs.StringVar(&c.Qdrant.Collection, "qdrant-collection", cmp.Or(os.Getenv("VISAGE_QDRANT_COLLECTION"), index.DefaultQdrantCollection), "Qdrant collection holding every gallery's vectors ($VISAGE_QDRANT_COLLECTION)")
}

// FromEnv fills in the settings that come from the environment only.
func (c *Config) FromEnv() {
	c.Qdrant.APIKey = os.Getenv("VISAGE_QDRANT_API_KEY")
}
