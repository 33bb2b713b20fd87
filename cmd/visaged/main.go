// Command visaged is Visage's HTTP server. With no configuration it runs
// the embedded default: SQLite metadata and an HNSW vector index in one
// data directory.
package main

import (
	"cmp"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"path/filepath"
	"runtime/debug"
	"strconv"
	"strings"
	"syscall"
	"time"

	"golang.org/x/net/netutil"

	"github.com/visage/visage/api"
	"github.com/visage/visage/gallery"
	"github.com/visage/visage/internal/admission"
	"github.com/visage/visage/internal/archive"
	"github.com/visage/visage/internal/backend"
	"github.com/visage/visage/internal/config"
	"github.com/visage/visage/internal/imageio"
	"github.com/visage/visage/store"
)

// settings is visaged's configuration: flags, each defaulting to an
// environment variable, each defaulting to a built-in value.
type settings struct {
	addr             string
	dataDir          string
	models           string
	workers          int
	index            string
	maxBodyBytes     int64
	maxPixels        int64
	rateLimit        float64
	rateBurst        int
	trustedProxies   string
	logLevel         string
	logFormat        string
	snapshotInterval time.Duration
	reconcileEvery   time.Duration
	reconcileRetry   time.Duration
	shutdownTimeout  time.Duration
	backend          backend.Config
	importDir        string
	importRoot       string
	importMaxBytes   int64
	decodeBudget     int64
	bodyBudget       int64
	admissionWait    time.Duration
	bodyTimeout      time.Duration
	minBodyRate      int64
	maxConns         int
	memoryLimit      int64
	authFailRate     float64
	authFailBurst    int
	metrics          string
	metricsAddr      string
	metricsPerColl   bool
	importMaxExtract int64
	importMinFree    int64
	importMaxJobs    int
}

func env(name, def string) string {
	if v, ok := os.LookupEnv(name); ok {
		return v
	}
	return def
}

func envInt(name string, def int64) int64 {
	if v, err := strconv.ParseInt(os.Getenv(name), 10, 64); err == nil {
		return v
	}
	return def
}

func envFloat(name string, def float64) float64 {
	if v, err := strconv.ParseFloat(os.Getenv(name), 64); err == nil {
		return v
	}
	return def
}

func envBool(name string, def bool) bool {
	if v, err := strconv.ParseBool(os.Getenv(name)); err == nil {
		return v
	}
	return def
}

func envDuration(name string, def time.Duration) time.Duration {
	if v, err := time.ParseDuration(os.Getenv(name)); err == nil {
		return v
	}
	return def
}

func parseSettings(args []string, stderr io.Writer) (settings, error) {
	var s settings
	def := api.DefaultConfig()
	fs := flag.NewFlagSet("visaged", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.StringVar(&s.addr, "addr", env("VISAGE_ADDR", "127.0.0.1:8080"), "listen address ($VISAGE_ADDR)")
	fs.StringVar(&s.dataDir, "data", env("VISAGE_DATA_DIR", config.DataDir("")), "data directory: SQLite file and index snapshots ($VISAGE_DATA_DIR)")
	fs.StringVar(&s.models, "models", env("VISAGE_MODELS", ""), "model directory ($VISAGE_MODELS; default ~/.local/share/visage/models)")
	fs.IntVar(&s.workers, "workers", int(envInt("VISAGE_WORKERS", 2)), "engine workers: detectors and networks ($VISAGE_WORKERS)")
	fs.StringVar(&s.index, "index", env("VISAGE_INDEX", "hnsw"), "embedded vector index: hnsw or flat ($VISAGE_INDEX)")
	s.backend.RegisterFlags(fs)
	fs.StringVar(&s.importDir, "import-dir", env("VISAGE_IMPORT_DIR", ""), "where uploaded imports are extracted until their job ends (default <data>/imports) ($VISAGE_IMPORT_DIR)")
	fs.StringVar(&s.importRoot, "import-root", env("VISAGE_IMPORT_ROOT", ""), "directory under which admin keys may import server-local trees, manifests and archives; empty disables it ($VISAGE_IMPORT_ROOT)")
	fs.Int64Var(&s.importMaxBytes, "import-max-bytes", envInt("VISAGE_IMPORT_MAX_BYTES", 16<<30), "largest uploaded import archive ($VISAGE_IMPORT_MAX_BYTES)")
	fs.Int64Var(&s.importMaxExtract, "import-max-extract-bytes", envInt("VISAGE_IMPORT_MAX_EXTRACT_BYTES", archive.DefaultMaxTotalBytes),
		"most bytes one import archive (uploaded or server-local) may extract to ($VISAGE_IMPORT_MAX_EXTRACT_BYTES)")
	fs.Int64Var(&s.importMinFree, "import-min-free-bytes", envInt("VISAGE_IMPORT_MIN_FREE_BYTES", archive.DefaultMinFreeBytes),
		"free disk space an archive's extraction must leave on the import directory's file system ($VISAGE_IMPORT_MIN_FREE_BYTES)")
	fs.IntVar(&s.importMaxJobs, "import-max-jobs", int(envInt("VISAGE_IMPORT_MAX_JOBS", gallery.DefaultMaxImportJobs)),
		"import jobs running or being prepared at once; more are answered 429 ($VISAGE_IMPORT_MAX_JOBS)")
	fs.Int64Var(&s.maxBodyBytes, "max-body-bytes", envInt("VISAGE_MAX_BODY_BYTES", def.MaxBodyBytes), "largest request body ($VISAGE_MAX_BODY_BYTES)")
	fs.Int64Var(&s.maxPixels, "max-pixels", envInt("VISAGE_MAX_PIXELS", imageio.DefaultMaxPixels), "largest decoded image in pixels ($VISAGE_MAX_PIXELS)")
	fs.Int64Var(&s.decodeBudget, "decode-budget", envInt("VISAGE_DECODE_BUDGET", 512<<20), "bytes that images being decoded and scanned may hold at once, 0 for no bound ($VISAGE_DECODE_BUDGET)")
	fs.Int64Var(&s.bodyBudget, "body-budget", envInt("VISAGE_BODY_BUDGET", def.BodyBudget), "bytes that request bodies being parsed may hold at once, 0 for no bound ($VISAGE_BODY_BUDGET)")
	fs.DurationVar(&s.admissionWait, "admission-wait", envDuration("VISAGE_ADMISSION_WAIT", admission.DefaultWait), "how long a request waits for room in a budget before it is answered 503 busy ($VISAGE_ADMISSION_WAIT)")
	fs.DurationVar(&s.bodyTimeout, "body-timeout", envDuration("VISAGE_BODY_TIMEOUT", def.BodyTimeout), "time a request body may take to arrive, plus its length at --min-body-rate ($VISAGE_BODY_TIMEOUT)")
	fs.Int64Var(&s.minBodyRate, "min-body-rate", envInt("VISAGE_MIN_BODY_RATE", def.MinBodyRate), "slowest accepted upload rate, bytes per second ($VISAGE_MIN_BODY_RATE)")
	fs.Int64Var(&s.memoryLimit, "memory-limit", envInt("VISAGE_MEMORY_LIMIT", 0), "soft limit of the Go heap, bytes; 0 derives it from the budgets (their sum plus 256 MiB) unless $GOMEMLIMIT is set, -1 sets none ($VISAGE_MEMORY_LIMIT)")
	fs.Float64Var(&s.authFailRate, "auth-failure-rate", envFloat("VISAGE_AUTH_FAILURE_RATE", def.AuthFailureRate), "failed authentications per second a client address recovers after --auth-failure-burst; beyond, 429; 0 for no throttle ($VISAGE_AUTH_FAILURE_RATE)")
	fs.IntVar(&s.authFailBurst, "auth-failure-burst", int(envInt("VISAGE_AUTH_FAILURE_BURST", int64(def.AuthFailureBurst))), "failed authentications a client address may make in a row ($VISAGE_AUTH_FAILURE_BURST)")
	fs.StringVar(&s.metrics, "metrics", env("VISAGE_METRICS", ""), "who may read /metrics on --addr: key (unscoped admin or read keys), open, or off; default key, or off with --metrics-addr ($VISAGE_METRICS)")
	fs.StringVar(&s.metricsAddr, "metrics-addr", env("VISAGE_METRICS_ADDR", ""), "also serve /metrics, without a key, on this address of its own, e.g. one only the scraper reaches ($VISAGE_METRICS_ADDR)")
	fs.BoolVar(&s.metricsPerColl, "metrics-collections", envBool("VISAGE_METRICS_COLLECTIONS", true), "label gallery sizes with each collection's name; false exports totals only ($VISAGE_METRICS_COLLECTIONS)")
	fs.IntVar(&s.maxConns, "max-connections", int(envInt("VISAGE_MAX_CONNECTIONS", 1024)), "open client connections at most; more wait to be accepted ($VISAGE_MAX_CONNECTIONS)")
	fs.Float64Var(&s.rateLimit, "rate-limit", envFloat("VISAGE_RATE_LIMIT", def.RateLimit), "requests per second per key, 0 for none ($VISAGE_RATE_LIMIT)")
	fs.IntVar(&s.rateBurst, "rate-burst", int(envInt("VISAGE_RATE_BURST", int64(def.RateBurst))), "burst per key ($VISAGE_RATE_BURST)")
	fs.StringVar(&s.trustedProxies, "trusted-proxies", env("VISAGE_TRUSTED_PROXIES", ""), "comma-separated proxy IPs/CIDRs whose X-Forwarded-For is trusted; empty trusts none ($VISAGE_TRUSTED_PROXIES)")
	fs.StringVar(&s.logLevel, "log-level", env("VISAGE_LOG_LEVEL", "info"), "debug, info, warn or error ($VISAGE_LOG_LEVEL)")
	fs.StringVar(&s.logFormat, "log-format", env("VISAGE_LOG_FORMAT", "json"), "json or text ($VISAGE_LOG_FORMAT)")
	fs.DurationVar(&s.snapshotInterval, "snapshot-interval", envDuration("VISAGE_SNAPSHOT_INTERVAL", 5*time.Minute), "how often changed index spaces are saved ($VISAGE_SNAPSHOT_INTERVAL)")
	fs.DurationVar(&s.reconcileEvery, "reconcile-interval", envDuration("VISAGE_RECONCILE_INTERVAL", 10*time.Minute), "how often the index is checked against the store ($VISAGE_RECONCILE_INTERVAL)")
	fs.DurationVar(&s.reconcileRetry, "reconcile-retry", envDuration("VISAGE_RECONCILE_RETRY", 15*time.Second), "how soon work an unavailable vector store or database left behind is retried ($VISAGE_RECONCILE_RETRY)")
	fs.DurationVar(&s.shutdownTimeout, "shutdown-timeout", envDuration("VISAGE_SHUTDOWN_TIMEOUT", 30*time.Second), "time in-flight requests get to finish ($VISAGE_SHUTDOWN_TIMEOUT)")
	if err := fs.Parse(args); err != nil {
		return s, err
	}
	if s.metrics == "" {
		s.metrics = string(api.MetricsKey)
		if s.metricsAddr != "" {
			s.metrics = string(api.MetricsOff)
		}
	}
	if !api.MetricsAccess(s.metrics).Valid() {
		return s, fmt.Errorf("--metrics must be key, open or off, not %q", s.metrics)
	}
	s.backend.FromEnv()
	s.backend.DataDir, s.backend.Index = s.dataDir, s.index
	if err := s.backend.Validate(); err != nil {
		return s, err
	}
	return s, nil
}

// goMemoryLimit is the soft limit of the Go heap: with the budgets bounding
// what requests hold, it makes the collector run before the heap doubles
// past them (GOGC's default), so that peak memory stays near the idle
// footprint plus the budgets under a flood of large images. 0: leave the
// runtime's setting.
func (s settings) goMemoryLimit() int64 {
	switch {
	case s.memoryLimit > 0:
		return s.memoryLimit
	case s.memoryLimit < 0, os.Getenv("GOMEMLIMIT") != "", s.decodeBudget <= 0, s.bodyBudget <= 0:
		return 0
	}
	return s.decodeBudget + s.bodyBudget + 256<<20
}

func newLogger(s settings, w io.Writer) (*slog.Logger, error) {
	var lvl slog.Level
	if err := lvl.UnmarshalText([]byte(s.logLevel)); err != nil {
		return nil, fmt.Errorf("--log-level: %w", err)
	}
	opts := &slog.HandlerOptions{Level: lvl}
	if s.logFormat == "text" {
		return slog.New(slog.NewTextHandler(w, opts)), nil
	}
	return slog.New(slog.NewJSONHandler(w, opts)), nil
}

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, os.Args[1:], os.Stdout, os.Stderr); err != nil {
		fmt.Fprintf(os.Stderr, "visaged: %v\n", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	s, err := parseSettings(args, stderr)
	if err != nil {
		return err
	}
	log, err := newLogger(s, stderr)
	if err != nil {
		return err
	}
	if lim := s.goMemoryLimit(); lim > 0 {
		debug.SetMemoryLimit(lim)
		log.Info("go memory limit", "mib", lim>>20)
	}
	if s.backend.EmbeddedIndex() {
		unlock, err := backend.LockDataDir(s.dataDir)
		if err != nil {
			return err
		}
		defer unlock()
	}
	st, err := backend.OpenStore(ctx, s.backend)
	if err != nil {
		return err
	}
	defer st.Close()
	if err := bootstrapAdmin(ctx, st, os.Getenv("VISAGE_BOOTSTRAP_ADMIN_KEY"), stdout, log); err != nil {
		return err
	}

	metrics := api.NewMetrics(st, s.metricsPerColl, log)
	var proxies []string
	for _, p := range strings.Split(s.trustedProxies, ",") {
		if p = strings.TrimSpace(p); p != "" {
			proxies = append(proxies, p)
		}
	}
	srv, err := api.New(st, metrics, api.Config{MaxBodyBytes: s.maxBodyBytes, RateLimit: s.rateLimit, RateBurst: s.rateBurst, TrustedProxies: proxies,
		BodyBudget: s.bodyBudget, AdmissionWait: s.admissionWait, BodyTimeout: s.bodyTimeout, MinBodyRate: s.minBodyRate,
		AuthFailureRate: s.authFailRate, AuthFailureBurst: s.authFailBurst, Metrics: api.MetricsAccess(s.metrics)}, log)
	if err != nil {
		return err
	}
	ln, err := net.Listen("tcp", s.addr)
	if err != nil {
		return fmt.Errorf("listen: %w", err)
	}
	if s.maxConns > 0 {
		ln = netutil.LimitListener(ln, s.maxConns)
	}
	// Header and idle timeouts bound what an idle or slow client holds;
	// the body's deadline is set per request (api.Config.BodyTimeout).
	httpSrv := &http.Server{Handler: srv.Handler(), ReadHeaderTimeout: 10 * time.Second, IdleTimeout: time.Minute,
		MaxHeaderBytes: 64 << 10}
	served := make(chan error, 1)
	go func() { served <- httpSrv.Serve(ln) }()
	if s.metricsAddr != "" {
		mln, err := net.Listen("tcp", s.metricsAddr)
		if err != nil {
			_ = httpSrv.Close()
			return fmt.Errorf("listen for metrics: %w", err)
		}
		mux := http.NewServeMux()
		mux.Handle("GET /metrics", metrics.Handler())
		metricsSrv := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second, IdleTimeout: time.Minute}
		go func() {
			if err := metricsSrv.Serve(mln); err != nil && !errors.Is(err, http.ErrServerClosed) {
				log.Error("serve metrics", "err", err)
			}
		}()
		defer metricsSrv.Close()
		log.Info("metrics listening", "addr", mln.Addr().String())
	}
	log.Info("listening", "addr", ln.Addr().String(), "backends", s.backend.Describe(), "data", s.dataDir)

	// Load the engine and the index while /healthz already answers.
	t0 := time.Now()
	cfg := gallery.DefaultEngineConfig(config.ModelDir(s.models))
	cfg.Workers = max(s.workers, 1)
	cfg.Limits = imageio.Limits{MaxBytes: s.maxBodyBytes, MaxPixels: s.maxPixels}
	cfg.DecodeBudget, cfg.AdmissionWait = s.decodeBudget, s.admissionWait
	model, err := gallery.SpaceID(cfg)
	if err != nil {
		_ = httpSrv.Close()
		return err
	}
	// The networks and the index (an HNSW snapshot, or Qdrant's checks)
	// load in parallel: each takes seconds, on different cores.
	type loadedEngine struct {
		eng *gallery.Engine
		err error
	}
	engCh := make(chan loadedEngine, 1)
	go func() {
		eng, err := gallery.OpenEngine(cfg)
		log.Info("engine loaded", "ms", time.Since(t0).Milliseconds())
		engCh <- loadedEngine{eng, err}
	}()
	idx, idxErr := backend.OpenIndex(ctx, s.backend, model)
	if idxErr == nil {
		log.Info("index loaded", "kind", idx.Kind, "ms", time.Since(t0).Milliseconds())
		defer idx.Close()
	}
	le := <-engCh
	if le.err == nil {
		defer le.eng.Close()
	}
	if err := errors.Join(le.err, idxErr); err != nil {
		_ = httpSrv.Close()
		return err
	}
	eng := le.eng
	svc := gallery.NewService(eng, st, idx, gallery.DefaultServiceConfig(), log)
	defer svc.Close()
	importDir := cmp.Or(s.importDir, filepath.Join(s.dataDir, "imports"))
	imCfg := gallery.DefaultImportConfig(cfg.Workers)
	imCfg.ImportRoot, imCfg.ImportDir, imCfg.MaxJobs = s.importRoot, importDir, s.importMaxJobs
	importer := gallery.NewImporter(svc, st, imCfg, log)
	defer importer.Close()
	srv.ServeImports(importer, st, api.ImportConfig{Dir: importDir, Root: s.importRoot, MaxUploadBytes: s.importMaxBytes,
		Archive: archive.Limits{MaxTotalBytes: s.importMaxExtract, MinFreeBytes: s.importMinFree}})
	t1 := time.Now()
	rep, err := svc.Reconcile(ctx)
	if err != nil {
		_ = httpSrv.Close()
		return err
	}
	log.Info("reconciled", "ms", time.Since(t1).Milliseconds())
	srv.Ready(svc)
	log.Info("ready", "ms", time.Since(t0).Milliseconds(), "model", eng.ModelID(), "reconciled", rep)
	if n, err := importer.Resume(ctx); err != nil {
		log.Error("resume import jobs", "err", err)
	} else if n > 0 {
		log.Info("resumed import jobs", "jobs", n)
	}

	bg, stopBG := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		maintain(bg, svc, idx, s, log)
	}()

	select {
	case err := <-served:
		stopBG()
		<-done
		return fmt.Errorf("serve: %w", err)
	case <-ctx.Done():
	}
	log.Info("shutting down: finishing in-flight requests", "timeout", s.shutdownTimeout)
	sctx, cancel := context.WithTimeout(context.Background(), s.shutdownTimeout)
	defer cancel()
	shutErr := httpSrv.Shutdown(sctx)
	srv.Unready()
	// Running imports stop here; they resume at the next start.
	importer.Close()
	stopBG()
	<-done
	if err := idx.Save(context.Background()); err != nil {
		log.Error("save index", "err", err)
	}
	log.Info("stopped")
	if shutErr != nil && !errors.Is(shutErr, http.ErrServerClosed) {
		return fmt.Errorf("shutdown: %w", shutErr)
	}
	return nil
}

// maintain saves index snapshots and reconciles periodically until ctx
// ends; work an unreachable vector store or database left behind is
// retried sooner.
func maintain(ctx context.Context, svc *gallery.Service, idx *backend.Index, s settings, log *slog.Logger) {
	snap := time.NewTicker(positive(s.snapshotInterval))
	defer snap.Stop()
	rec := time.NewTicker(positive(s.reconcileEvery))
	defer rec.Stop()
	retry := time.NewTicker(positive(s.reconcileRetry))
	defer retry.Stop()
	reconcile := func() {
		rep, err := svc.Reconcile(ctx)
		if err != nil {
			log.Error("reconcile", "err", err)
			return
		}
		if rep != (gallery.ReconcileReport{}) {
			log.Warn("reconcile repaired drift", "report", rep)
		}
	}
	for {
		select {
		case <-ctx.Done():
			return
		case <-snap.C:
			if err := idx.Save(ctx); err != nil {
				log.Error("save index", "err", err)
			}
		case <-rec.C:
			reconcile()
		case <-retry.C:
			if svc.Reconciler().Unfinished() {
				reconcile()
			}
		}
	}
}

func positive(d time.Duration) time.Duration {
	if d <= 0 {
		return time.Hour
	}
	return d
}

// keyCreator is the part of the store the first start needs.
type keyCreator interface {
	CountKeys(ctx context.Context) (int, error)
	CreateKey(ctx context.Context, k store.APIKey) (store.APIKey, error)
}

// bootstrapAdmin creates the first admin key on an empty key table: the
// operator's secret from the environment, or a fresh one printed once.
func bootstrapAdmin(ctx context.Context, st keyCreator, secret string, stdout io.Writer, log *slog.Logger) error {
	n, err := st.CountKeys(ctx)
	if err != nil {
		return err
	}
	if n > 0 {
		return nil
	}
	if secret != "" {
		if len(secret) < api.MinBootstrapKeyLen {
			return fmt.Errorf("VISAGE_BOOTSTRAP_ADMIN_KEY must be at least %d characters", api.MinBootstrapKeyLen)
		}
		id := api.KeyID(secret)
		_, err := st.CreateKey(ctx, store.APIKey{ID: id, Name: "bootstrap admin", Hash: api.HashToken(secret), Role: store.RoleAdmin})
		if errors.Is(err, store.ErrConflict) {
			// Another replica, starting at the same time, created it.
			return nil
		}
		if err != nil {
			return fmt.Errorf("create bootstrap key: %w", err)
		}
		log.Info("created the first admin key from VISAGE_BOOTSTRAP_ADMIN_KEY", "key", id)
		return nil
	}
	id, token := api.NewKeyToken()
	if _, err := st.CreateKey(ctx, store.APIKey{ID: id, Name: "first admin", Hash: api.HashToken(token), Role: store.RoleAdmin}); err != nil {
		return fmt.Errorf("create first admin key: %w", err)
	}
	fmt.Fprintf(stdout, "\nThe first admin API key (shown only this once; only its hash is stored):\n\n    %s\n\nUse it as: Authorization: Bearer <key>. Create narrower keys with `visage keys create`.\n\n", token)
	log.Info("created the first admin key", "key", id)
	return nil
}
