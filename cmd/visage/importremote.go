package main

import (
	"bytes"
	"context"
	"encoding/csv"
	"encoding/json"
	"fmt"
	"io"
	"net/url"
	"os"
	"path/filepath"
	"time"

	"github.com/visage/visage/store"
)

// remoteJob is the server's view of an import job.
type remoteJob struct {
	store.ImportJob
	FacesPerSecond float64  `json:"faces_per_second"`
	ETASeconds     *float64 `json:"eta_seconds"`
}

// importRemote hands the whole import to the server: it uploads an
// archive (--archive) or names a tree, manifest or archive under the
// server's import root (--server-path, admin keys), then follows the job
// until it ends and fetches its failures. Interrupting the command leaves
// the job running on the server, which survives its own restarts.
func importRemote(ctx context.Context, env *cliEnv, cfg importConfig) error {
	if cfg.maxAttempts == 0 {
		cfg.maxAttempts = 8
	}
	if cfg.retryBase == 0 {
		cfg.retryBase = 250 * time.Millisecond
	}
	if cfg.progressEvery == 0 {
		cfg.progressEvery = 5 * time.Second
	}
	c := newAPIClient(cfg, make(chan struct{}))
	// As the local import does: --create-collection creates it, and a
	// missing collection is named before anything is uploaded.
	if err := (&importer{cfg: cfg, client: c}).checkCollection(ctx); err != nil {
		return err
	}
	base := "/v1/collections/" + url.PathEscape(cfg.collection) + "/imports"
	var body *requestBody
	path := base
	if cfg.archive != "" {
		fi, err := os.Stat(cfg.archive)
		if err != nil {
			return fmt.Errorf("%w: %w", errAbort, err)
		}
		name := cfg.archive
		body = &requestBody{contentType: "application/octet-stream", open: func() (io.ReadCloser, int64, error) {
			f, err := os.Open(name)
			if err != nil {
				return nil, 0, &localError{err: err}
			}
			return f, fi.Size(), nil
		}}
		path += "?name=" + url.QueryEscape(filepath.Base(cfg.archive))
		fmt.Fprintf(env.stderr, "uploading %s (%d bytes)\n", cfg.archive, fi.Size())
	} else {
		b, _ := json.Marshal(map[string]string{"path": cfg.serverPath})
		body = jsonBody(b)
	}
	data, err := c.do(ctx, "POST", path, body)
	if err != nil {
		return fmt.Errorf("start the import: %w", err)
	}
	var job remoteJob
	if err := json.Unmarshal(data, &job); err != nil {
		return fmt.Errorf("start the import: %w", err)
	}
	fmt.Fprintf(env.stderr, "import job %s started (%d files)\n", job.ID, job.Total)
	live := isTerminal(env.stderr)
	if cfg.terminal != nil {
		live = *cfg.terminal
	}
	lastLine := time.Time{}
	tick := time.NewTicker(min(cfg.progressEvery, time.Second))
	defer tick.Stop()
	for !job.State.Finished() {
		select {
		case <-ctx.Done():
			fmt.Fprintf(env.stderr, "\nstopped following; the job continues on the server: GET %s/%s (DELETE cancels it)\n", base, job.ID)
			return fmt.Errorf("%w: %w", errInterrupted, ctx.Err())
		case <-tick.C:
		}
		data, err := c.do(ctx, "GET", base+"/"+job.ID, nil)
		if err != nil {
			return fmt.Errorf("follow the import: %w", err)
		}
		if err := json.Unmarshal(data, &job); err != nil {
			return fmt.Errorf("follow the import: %w", err)
		}
		line := remoteProgress(job)
		switch {
		case live:
			fmt.Fprintf(env.stderr, "\r%s\x1b[K", line)
		case time.Since(lastLine) >= cfg.progressEvery:
			fmt.Fprintln(env.stderr, line)
			lastLine = time.Now()
		}
	}
	if live {
		fmt.Fprintln(env.stderr)
	}
	data, err = c.do(ctx, "GET", base+"/"+job.ID+"/failures", nil)
	if err != nil {
		return fmt.Errorf("fetch the failures: %w", err)
	}
	// The server's columns are seq,path,external_id,state,code,reason;
	// the file has the columns of a local import's.
	recs, err := csv.NewReader(bytes.NewReader(data)).ReadAll()
	if err != nil || len(recs) == 0 {
		return fmt.Errorf("read the failures: %v", err)
	}
	var rows []failureRow
	for _, r := range recs[1:] {
		if len(r) == 6 {
			rows = append(rows, failureRow{path: r[1], externalID: r[2], reason: r[4], detail: r[5]})
		}
	}
	if err := writeFailures(cfg.failuresPath, rows); err != nil {
		return err
	}
	secs := 0.0
	if job.StartedAt != nil && job.FinishedAt != nil {
		secs = job.FinishedAt.Sub(*job.StartedAt).Seconds()
	}
	fmt.Fprintf(env.stdout, "import job=%s state=%s total=%d enrolled=%d skipped=%d failed=%d seconds=%.1f photos_per_second=%.1f\n",
		job.ID, job.State, job.Total, job.Enrolled, job.Skipped, job.Failed, secs, job.FacesPerSecond)
	if job.State != store.ImportDone {
		return fmt.Errorf("%w: the job ended %s %s", errAbort, job.State, job.Error)
	}
	return nil
}

// remoteProgress is one progress line of a server-side job.
func remoteProgress(j remoteJob) string {
	frac := 0.0
	if j.Total > 0 {
		frac = float64(j.Done) / float64(j.Total)
	}
	eta := "-"
	if j.ETASeconds != nil {
		eta = formatETA(time.Duration(*j.ETASeconds * float64(time.Second)))
	}
	return fmt.Sprintf("%s %d/%d %3.0f%% %.1f photos/s ETA %s enrolled %d skipped %d failed %d",
		bar(frac), j.Done, j.Total, 100*frac, j.FacesPerSecond, eta, j.Enrolled, j.Skipped, j.Failed)
}
