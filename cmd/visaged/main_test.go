package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"mime/multipart"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/visage/visage/internal/testenv"
)

// daemon is a visaged process started by a test.
type daemon struct {
	t    testing.TB
	cmd  *exec.Cmd
	url  string
	key  string
	logs *syncBuffer
	out  *syncBuffer
}

// syncBuffer collects a process's output while the test reads it.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// buildVisaged compiles the server once per test binary run.
func buildVisaged(t testing.TB) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "visaged")
	cmd := exec.Command("go", "build", "-o", bin, ".")
	cmd.Stderr = os.Stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("build visaged: %v", err)
	}
	return bin
}

func freeAddr(t testing.TB) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

// start runs visaged on a data directory and waits until it is ready.
func start(t testing.TB, bin, dataDir string, env ...string) *daemon {
	t.Helper()
	addr := freeAddr(t)
	d := &daemon{t: t, url: "http://" + addr, logs: &syncBuffer{}, out: &syncBuffer{}}
	d.cmd = exec.Command(bin, "--addr", addr, "--data", dataDir, "--models", testenv.ModelDir(t), "--log-format", "text")
	d.cmd.Env = append(os.Environ(), env...)
	d.cmd.Stdout, d.cmd.Stderr = d.out, d.logs
	if err := d.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if d.cmd.ProcessState == nil {
			d.cmd.Process.Kill()
			d.cmd.Wait()
		}
	})
	deadline := time.Now().Add(60 * time.Second)
	for time.Now().Before(deadline) {
		resp, err := http.Get(d.url + "/readyz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return d
			}
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Fatalf("visaged not ready after 60 s; logs:\n%s", d.logs)
	return nil
}

func (d *daemon) call(method, path string, body io.Reader, ct string) (int, []byte) {
	d.t.Helper()
	req, _ := http.NewRequest(method, d.url+path, body)
	req.Header.Set("Authorization", "Bearer "+d.key)
	if ct != "" {
		req.Header.Set("Content-Type", ct)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		d.t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, b
}

func (d *daemon) jsonCall(want int, method, path string, v any) []byte {
	d.t.Helper()
	b, _ := json.Marshal(v)
	status, out := d.call(method, path, bytes.NewReader(b), "application/json")
	if status != want {
		d.t.Fatalf("%s %s: %d %s", method, path, status, out)
	}
	return out
}

func imageBody(img []byte) (io.Reader, string) {
	var buf bytes.Buffer
	w := multipart.NewWriter(&buf)
	fw, _ := w.CreateFormFile("image", "image")
	fw.Write(img)
	w.Close()
	return &buf, w.FormDataContentType()
}

var people = []string{"amy", "bernadette", "howard", "leonard", "penny", "raj", "sheldon", "stuart"}

// TestFirstStartPrintsAnAdminKey checks there is no default credential:
// the first start prints one admin key, which works; a second start
// prints none.
func TestFirstStartPrintsAnAdminKey(t *testing.T) {
	bin := buildVisaged(t)
	data := t.TempDir()
	d := start(t, bin, data)
	var key string
	for _, f := range strings.Fields(d.out.String()) {
		if strings.HasPrefix(f, "vsk_") {
			key = f
		}
	}
	if key == "" {
		t.Fatalf("no key printed; stdout:\n%s", d.out)
	}
	status, _ := d.call("GET", "/v1/collections", nil, "")
	if status != http.StatusUnauthorized {
		t.Errorf("without the key: %d, want 401", status)
	}
	d.key = key
	d.jsonCall(http.StatusOK, "GET", "/v1/collections", nil)
	if strings.Contains(d.logs.String(), key) {
		t.Error("the key appears in the logs")
	}
	d.cmd.Process.Signal(syscall.SIGTERM)
	d.cmd.Wait()
	again := start(t, bin, data)
	if strings.Contains(again.out.String(), "vsk_") {
		t.Errorf("second start printed a key:\n%s", again.out)
	}
}

// TestKill9KeepsAcknowledgedEnrollments enrolls, kills the server with
// SIGKILL before any index snapshot, restarts it and identifies everyone.
// Then it checks that SIGTERM lets an in-flight request finish.
func TestKill9KeepsAcknowledgedEnrollments(t *testing.T) {
	bin := buildVisaged(t)
	data := t.TempDir()
	secret := "test-bootstrap-secret-0123456789"
	env := "VISAGE_BOOTSTRAP_ADMIN_KEY=" + secret
	d := start(t, bin, data, env)
	d.key = secret
	d.jsonCall(http.StatusCreated, "POST", "/v1/collections", map[string]any{"name": "k"})
	ids := map[string]string{}
	for _, p := range people {
		var sub struct{ ID string }
		json.Unmarshal(d.jsonCall(http.StatusCreated, "POST", "/v1/collections/k/subjects", map[string]any{"external_id": p}), &sub)
		ids[p] = sub.ID
		body, ct := imageBody(testenv.ReadShared(t, fmt.Sprintf("testdata/faces/bbt/%s/%s1.png", p, p)))
		if status, out := d.call("POST", "/v1/collections/k/subjects/"+sub.ID+"/faces", body, ct); status != http.StatusCreated {
			t.Fatalf("enroll %s: %d %s", p, status, out)
		}
	}
	if err := d.cmd.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	d.cmd.Wait()

	d = start(t, bin, data, env)
	d.key = secret
	for _, p := range people {
		body, ct := imageBody(testenv.ReadShared(t, fmt.Sprintf("testdata/faces/bbt/%s/%s5.png", p, p)))
		status, out := d.call("POST", "/v1/collections/k/identify", body, ct)
		// The enrollment survived when its subject is the first candidate
		// (whether the policy answers match for a profile portrait against
		// one enrolled photo is another question).
		var res struct {
			Faces []struct {
				Candidates []struct {
					SubjectID string `json:"subject_id"`
				} `json:"candidates"`
			} `json:"faces"`
		}
		json.Unmarshal(out, &res)
		if status != http.StatusOK || len(res.Faces) != 1 || len(res.Faces[0].Candidates) == 0 || res.Faces[0].Candidates[0].SubjectID != ids[p] {
			t.Errorf("%s after kill -9: %d %s", p, status, out)
		}
	}

	// Graceful shutdown: a request in flight when SIGTERM arrives is
	// answered, then the process exits cleanly.
	group := testenv.ReadShared(t, "testdata/faces/bbt/bbt1.jpg")
	done := make(chan int, 1)
	body, ct := imageBody(group)
	req, _ := http.NewRequest("POST", d.url+"/v1/collections/k/identify", body)
	req.Header.Set("Authorization", "Bearer "+secret)
	req.Header.Set("Content-Type", ct)
	go func() {
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			done <- 0
			return
		}
		resp.Body.Close()
		done <- resp.StatusCode
	}()
	time.Sleep(30 * time.Millisecond)
	d.cmd.Process.Signal(syscall.SIGTERM)
	if status := <-done; status != http.StatusOK {
		t.Errorf("in-flight request during shutdown: %d", status)
	}
	if err := d.cmd.Wait(); err != nil {
		t.Errorf("exit after SIGTERM: %v\n%s", err, d.logs)
	}
}
