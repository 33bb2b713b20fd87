package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"

	"github.com/visage/visage/gallery"
	"github.com/visage/visage/internal/backend"
	"github.com/visage/visage/internal/config"
)

// backendFlags are the settings of commands that open a deployment's
// store and index: its data directory and shared backends.
type backendFlags struct {
	cfg     backend.Config
	data    string
	models  string
	variant string
}

func (f *backendFlags) register(fs *flag.FlagSet) {
	fs.StringVar(&f.data, "data", "", "visaged's data directory (default $VISAGE_DATA_DIR or ~/.local/share/visage/data)")
	fs.StringVar(&f.cfg.Index, "index", "hnsw", "the embedded index: hnsw (the flat index lives in visaged's memory only)")
	fs.StringVar(&f.models, "models", "", "model directory, for the model identity (default $VISAGE_MODELS or ~/.local/share/visage/models)")
	fs.StringVar(&f.variant, "variant", gallery.DefaultVariant().String(), "descriptor variant visaged runs with")
	f.cfg.RegisterFlags(fs)
}

// parse parses a command's flags (the backend flags and those extra
// registers) and opens the store and the index.
func (f *backendFlags) parse(ctx context.Context, env *cliEnv, name string, args []string, extra func(*flag.FlagSet), usage string) (*gallery.Reconciler, func(), error) {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(env.stderr)
	f.register(fs)
	if extra != nil {
		extra(fs)
	}
	fs.Usage = func() {
		fmt.Fprintln(env.stderr, usage)
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		return nil, nil, err
	}
	return f.open(ctx)
}

// open opens the store and the index, with the lock of an embedded index.
func (f *backendFlags) open(ctx context.Context) (*gallery.Reconciler, func(), error) {
	f.cfg.FromEnv()
	f.cfg.DataDir = config.DataDir(f.data)
	if err := f.cfg.Validate(); err != nil {
		return nil, nil, err
	}
	if f.cfg.EmbeddedIndex() && f.cfg.Index == "flat" {
		return nil, nil, errors.New("the flat index lives in visaged's memory only; there is nothing to check or rebuild")
	}
	ef := engineFlags{models: f.models, variant: f.variant}
	ecfg, err := ef.config()
	if err != nil {
		return nil, nil, err
	}
	model, err := gallery.SpaceID(ecfg)
	if err != nil {
		return nil, nil, err
	}
	var closers []func()
	closeAll := func() {
		for i := len(closers) - 1; i >= 0; i-- {
			closers[i]()
		}
	}
	if f.cfg.EmbeddedIndex() {
		unlock, err := backend.LockDataDir(f.cfg.DataDir)
		if err != nil {
			return nil, nil, err
		}
		closers = append(closers, func() { _ = unlock() })
	}
	st, err := backend.OpenStore(ctx, f.cfg)
	if err != nil {
		closeAll()
		return nil, nil, err
	}
	closers = append(closers, func() { _ = st.Close() })
	idx, err := backend.OpenIndex(ctx, f.cfg, model)
	if err != nil {
		closeAll()
		return nil, nil, err
	}
	closers = append(closers, func() { _ = idx.Close() })
	save := func() {
		if err := idx.Save(context.WithoutCancel(ctx)); err != nil {
			slog.Error("save index", "err", err)
		}
	}
	// Saved before closing: a repair or rebuild of the embedded index
	// lives in its snapshot.
	closers = append(closers, save)
	return gallery.NewReconciler(st, idx, model, slog.New(slog.NewTextHandler(io.Discard, nil))), closeAll, nil
}

// doctorOutput is what doctor prints: the drift found (after the repair,
// with --repair) and what the repair did.
type doctorOutput struct {
	Drift    int                      `json:"drift"`
	Backends string                   `json:"backends"`
	Report   gallery.DriftReport      `json:"report"`
	Repaired *gallery.ReconcileReport `json:"repaired,omitempty"`
}

// errDrift makes doctor exit with status 1 when drift remains.
var errDrift = errors.New("the store and the index disagree (see the report)")

// runDoctor reports the drift between the metadata store and the vector
// index, and with --repair reconciles them first.
func runDoctor(ctx context.Context, env *cliEnv, args []string) error {
	var bf backendFlags
	repair := false
	rec, closeAll, err := bf.parse(ctx, env, "doctor", args, func(fs *flag.FlagSet) {
		fs.BoolVar(&repair, "repair", false, "finish interrupted work and repair the drift before reporting")
	}, "usage: visage doctor [--repair] [--data DIR | --database-url URL --qdrant-addr HOST:PORT] [flags]\n\n"+
		"Prints one JSON report of the drift between the metadata store and the vector index; exits 1 if any\n"+
		"remains. With the embedded index, stop visaged first (its index lives in its memory until saved).")
	if err != nil {
		return err
	}
	defer closeAll()
	out := doctorOutput{Backends: bf.cfg.Describe()}
	if repair {
		rep, err := rec.Reconcile(ctx)
		if err != nil {
			return err
		}
		out.Repaired = &rep
	}
	if out.Report, err = rec.Check(ctx); err != nil {
		return err
	}
	out.Drift = out.Report.Drift()
	enc := json.NewEncoder(env.stdout)
	enc.SetIndent("", "  ")
	if err := enc.Encode(out); err != nil {
		return err
	}
	if out.Drift > 0 {
		return errDrift
	}
	return nil
}

// runReindex rebuilds the vector index from the metadata store.
func runReindex(ctx context.Context, env *cliEnv, args []string) error {
	var bf backendFlags
	rec, closeAll, err := bf.parse(ctx, env, "reindex", args, nil,
		"usage: visage reindex [--data DIR | --database-url URL --qdrant-addr HOST:PORT] [flags]\n\n"+
			"Writes every stored face's descriptor into the vector index and removes what the store does not hold:\n"+
			"after switching index backends, or to rebuild a lost index. Refuses if the stored faces were made by\n"+
			"another model than --models/--variant give (or by several).")
	if err != nil {
		return err
	}
	defer closeAll()
	rep, err := rec.Reindex(ctx, func(collection string, done int) {
		fmt.Fprintf(env.stderr, "reindex: %s: %d vectors\n", collection, done)
	})
	if err != nil {
		return err
	}
	enc := json.NewEncoder(env.stdout)
	enc.SetIndent("", "  ")
	return enc.Encode(struct {
		Backends string                  `json:"backends"`
		Reindex  gallery.ReconcileReport `json:"reindex"`
	}{bf.cfg.Describe(), rep})
}
