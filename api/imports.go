package api

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"time"

	"github.com/gin-gonic/gin"
	"github.com/google/uuid"

	"github.com/visage/visage/gallery"
	"github.com/visage/visage/internal/archive"
	"github.com/visage/visage/internal/csvsafe"
	"github.com/visage/visage/store"
)

// ImportJobs is what the import endpoints read of the metadata store.
type ImportJobs interface {
	GetImportJob(ctx context.Context, id string) (store.ImportJob, error)
	ListImportJobs(ctx context.Context, collection string, limit int) ([]store.ImportJob, error)
	ImportItems(ctx context.Context, jobID string, states []store.ItemState, afterSeq, limit int) ([]store.ImportItem, error)
}

// ImportConfig says where uploaded imports go and which server-local
// directories admins may import from.
type ImportConfig struct {
	// Dir holds each job's extracted upload (<Dir>/<job>/); it must not
	// be served or shared with anything else.
	Dir string
	// Root, when set, is the directory under which admin keys may name a
	// server-local tree, manifest or archive; empty disables that.
	Root string
	// MaxUploadBytes caps an uploaded archive (default 16 GiB).
	MaxUploadBytes int64
	// Archive bounds what an archive may expand to.
	Archive archive.Limits
}

type importService struct {
	importer *gallery.Importer
	jobs     ImportJobs
	cfg      ImportConfig
}

// ServeImports enables the import endpoints; call it before Ready.
// Without it they answer 404.
func (s *Server) ServeImports(im *gallery.Importer, jobs ImportJobs, cfg ImportConfig) {
	if cfg.MaxUploadBytes <= 0 {
		cfg.MaxUploadBytes = 16 << 30
	}
	s.imports.Store(&importService{importer: im, jobs: jobs, cfg: cfg})
}

// importsRoute is the route that takes uploads larger than the body limit.
const importsRoute = "/v1/collections/:name/imports"

// bodyLimit is the largest body a route accepts.
func (s *Server) bodyLimit(route string) int64 {
	if route == importsRoute {
		if is := s.imports.Load(); is != nil {
			return is.cfg.MaxUploadBytes
		}
	}
	return s.cfg.MaxBodyBytes
}

// importJobJSON is a job with its rate and the time left, derived from its
// counts and times.
type importJobJSON struct {
	store.ImportJob
	FacesPerSecond float64  `json:"faces_per_second"`
	ETASeconds     *float64 `json:"eta_seconds,omitempty"`
}

func toImportJob(j store.ImportJob, now time.Time) importJobJSON {
	j.Source = withoutServerPaths(j.Source)
	out := importJobJSON{ImportJob: j}
	if j.StartedAt == nil {
		return out
	}
	end := now
	if j.FinishedAt != nil {
		end = *j.FinishedAt
	}
	if secs := end.Sub(*j.StartedAt).Seconds(); secs > 0 {
		out.FacesPerSecond = float64(j.Done) / secs
	}
	if !j.State.Finished() && out.FacesPerSecond > 0 {
		eta := float64(j.Total-j.Done) / out.FacesPerSecond
		out.ETASeconds = &eta
	}
	return out
}

// withoutServerPaths drops an absolute "root" from a job's source: jobs
// record their root relative to the import root or directory, but jobs
// recorded before did not, and read keys see the JSON.
func withoutServerPaths(source json.RawMessage) json.RawMessage {
	var m map[string]json.RawMessage
	if json.Unmarshal(source, &m) != nil {
		return source
	}
	var root string
	if json.Unmarshal(m["root"], &root) != nil || !filepath.IsAbs(root) {
		return source
	}
	delete(m, "root")
	out, err := json.Marshal(m)
	if err != nil {
		return source
	}
	return out
}

// errImportsDisabled answers the import endpoints of a server without
// ServeImports.
var errImportsDisabled = fmt.Errorf("imports are not enabled on this server: %w", store.ErrNotFound)

func (s *Server) importsOr404(c *gin.Context) *importService {
	is := s.imports.Load()
	if is == nil {
		s.failErr(c, errImportsDisabled)
	}
	return is
}

// startImport takes an archive (the raw body, or a multipart "archive"
// file) or, for admin keys, {"path": ...} under the configured root.
func (s *Server) startImport(c *gin.Context) {
	is := s.importsOr404(c)
	if is == nil {
		return
	}
	ctx := c.Request.Context()
	collection := c.Param("name")
	if _, err := s.svc().Store().GetCollection(ctx, collection); err != nil {
		s.failErr(c, err)
		return
	}
	id := uuid.NewString()
	work := filepath.Join(is.cfg.Dir, id)
	var (
		src      gallery.Source
		describe map[string]any
	)
	ct, _, _ := mime.ParseMediaType(c.GetHeader("Content-Type"))
	if ct == "application/json" && key(c).Role != store.RoleAdmin {
		fail(c, newProblem(TypeForbidden, "only admin keys may import from the server's disk"))
		return
	}
	// The job's slot is taken before the upload is read and extracted:
	// beyond the server's limit, nothing is written to disk.
	slot, err := is.importer.Reserve()
	if err != nil {
		s.failErr(c, err)
		return
	}
	defer slot.Release() // once Start succeeds, the job's until it ends
	switch ct {
	case "application/json":
		src, describe, err = s.importLocal(c, is, work)
	case "multipart/form-data":
		src, describe, err = s.importMultipart(c, is, work)
	case "application/zip", "application/x-tar", "application/gzip", "application/x-gzip", "application/octet-stream":
		src, describe, err = s.importUpload(ctx, is, work, c.Request.Body, c.Query("name"))
	default:
		err = invalid("Content-Type", "an archive (application/zip, application/x-tar, application/gzip), multipart/form-data with an \"archive\" file, or application/json with a \"path\"")
	}
	if err != nil {
		_ = os.RemoveAll(work)
		s.failErr(c, err)
		return
	}
	job, err := slot.Start(ctx, key(c).ID, collection, src, describe)
	if err != nil {
		_ = os.RemoveAll(work)
		s.failErr(c, err)
		return
	}
	c.Header("Location", "/v1/collections/"+collection+"/imports/"+job.ID)
	c.JSON(http.StatusAccepted, toImportJob(job, time.Now()))
}

// importLocal opens a server-local source named relative to the root.
func (s *Server) importLocal(c *gin.Context, is *importService, work string) (gallery.Source, map[string]any, error) {
	if is.cfg.Root == "" {
		return gallery.Source{}, nil, invalid("path", "server-local imports are disabled (no import root is configured)")
	}
	var req struct {
		Path string `json:"path"`
	}
	if err := decodeJSON(c, &req); err != nil {
		return gallery.Source{}, nil, err
	}
	// Sealed in the root: no link is followed, and a bad path is a
	// *gallery.SourcePathError, which problemFor makes a 400.
	src, err := gallery.OpenSourceIn(c.Request.Context(), is.cfg.Root, req.Path, is.cfg.Archive, work)
	if err != nil {
		return gallery.Source{}, nil, err
	}
	// An archive was extracted into work, the job's own copy.
	return src, map[string]any{"path": req.Path, "owned": src.Archive != ""}, nil
}

func (s *Server) importMultipart(c *gin.Context, is *importService, work string) (gallery.Source, map[string]any, error) {
	mr, err := c.Request.MultipartReader()
	if err != nil {
		return gallery.Source{}, nil, invalid("body", "malformed multipart form: "+err.Error())
	}
	for {
		part, err := mr.NextPart()
		if errors.Is(err, io.EOF) {
			return gallery.Source{}, nil, invalid("archive", "a file part named \"archive\" is required")
		}
		if err != nil {
			if tooLarge(err) {
				return gallery.Source{}, nil, errBodyTooLarge
			}
			return gallery.Source{}, nil, invalid("body", "malformed multipart form: "+err.Error())
		}
		if part.FormName() == "archive" {
			return s.importUpload(c.Request.Context(), is, work, part, part.FileName())
		}
	}
}

// importUpload streams an archive to disk, extracts it into work and
// opens it.
func (s *Server) importUpload(ctx context.Context, is *importService, work string, body io.Reader, name string) (gallery.Source, map[string]any, error) {
	if err := os.MkdirAll(is.cfg.Dir, 0o700); err != nil {
		return gallery.Source{}, nil, fmt.Errorf("create import directory: %w", err)
	}
	f, err := os.CreateTemp(is.cfg.Dir, "upload-*")
	if err != nil {
		return gallery.Source{}, nil, fmt.Errorf("store upload: %w", err)
	}
	defer os.Remove(f.Name())
	defer f.Close()
	n, err := io.Copy(f, body)
	if err != nil {
		if tooLarge(err) {
			return gallery.Source{}, nil, errBodyTooLarge
		}
		return gallery.Source{}, nil, fmt.Errorf("store upload: %w", err)
	}
	if n == 0 {
		return gallery.Source{}, nil, invalid("archive", "empty upload")
	}
	src, err := gallery.OpenSource(ctx, f.Name(), is.cfg.Archive, work)
	if err != nil {
		return gallery.Source{}, nil, err
	}
	return src, map[string]any{"name": filepath.Base(name), "bytes": n, "owned": true}, nil
}

func (s *Server) listImports(c *gin.Context) {
	is := s.importsOr404(c)
	if is == nil {
		return
	}
	jobs, err := is.jobs.ListImportJobs(c.Request.Context(), c.Param("name"), 100)
	if err != nil {
		s.failErr(c, err)
		return
	}
	now := time.Now()
	out := make([]importJobJSON, len(jobs))
	for i, j := range jobs {
		out[i] = toImportJob(j, now)
	}
	c.JSON(http.StatusOK, gin.H{"imports": out})
}

// jobOf reads the job of the request's path, in its collection.
func (s *Server) jobOf(c *gin.Context, is *importService) (store.ImportJob, bool) {
	j, err := is.jobs.GetImportJob(c.Request.Context(), c.Param("job"))
	if err == nil && j.Collection != c.Param("name") {
		err = fmt.Errorf("import %q: %w", c.Param("job"), store.ErrNotFound)
	}
	if err != nil {
		s.failErr(c, err)
		return store.ImportJob{}, false
	}
	return j, true
}

func (s *Server) getImport(c *gin.Context) {
	is := s.importsOr404(c)
	if is == nil {
		return
	}
	if j, ok := s.jobOf(c, is); ok {
		c.JSON(http.StatusOK, toImportJob(j, time.Now()))
	}
}

func (s *Server) cancelImport(c *gin.Context) {
	is := s.importsOr404(c)
	if is == nil {
		return
	}
	if _, ok := s.jobOf(c, is); !ok {
		return
	}
	j, err := is.importer.Cancel(c.Request.Context(), c.Param("job"))
	if err != nil {
		s.failErr(c, err)
		return
	}
	c.JSON(http.StatusOK, toImportJob(j, time.Now()))
}

// importFailures writes the job's failed and skipped photos as CSV.
func (s *Server) importFailures(c *gin.Context) {
	is := s.importsOr404(c)
	if is == nil {
		return
	}
	j, ok := s.jobOf(c, is)
	if !ok {
		return
	}
	c.Header("Content-Type", "text/csv; charset=utf-8")
	c.Header("Content-Disposition", `attachment; filename="import-`+j.ID+`-failures.csv"`)
	c.Status(http.StatusOK)
	// Paths, ids and reasons come from uploads and manifests: escaped so
	// that a spreadsheet opening the file runs none of them.
	w := csvsafe.NewWriter(c.Writer)
	_ = w.Write([]string{"seq", "path", "external_id", "state", "code", "reason"})
	after := -1
	for {
		items, err := is.jobs.ImportItems(c.Request.Context(), j.ID, []store.ItemState{store.ItemFailed, store.ItemSkipped}, after, 1000)
		if err != nil {
			s.log.ErrorContext(c.Request.Context(), "list import failures", "job", j.ID, "err", err)
			break
		}
		if len(items) == 0 {
			break
		}
		for _, it := range items {
			_ = w.Write([]string{strconv.Itoa(it.Seq), it.Path, it.ExternalID, string(it.State), it.Code, it.Reason})
		}
		after = items[len(items)-1].Seq
	}
	w.Flush()
}
