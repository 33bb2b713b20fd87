package api_test

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/visage/visage/api"
)

// rawConn opens a TCP connection to the harness's server.
func (h *harness) rawConn(t *testing.T) net.Conn {
	t.Helper()
	u, err := url.Parse(h.url)
	if err != nil {
		t.Fatal(err)
	}
	c, err := net.Dial("tcp", u.Host)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// readAnswer reads one response from c within d.
func readAnswer(t *testing.T, c net.Conn, d time.Duration) *http.Response {
	t.Helper()
	c.SetReadDeadline(time.Now().Add(d))
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		t.Fatalf("no answer within %v: %v", d, err)
	}
	t.Cleanup(func() { resp.Body.Close() })
	return resp
}

// closedWithin reports whether the server closes c within d.
func closedWithin(c net.Conn, d time.Duration) bool {
	c.SetReadDeadline(time.Now().Add(d))
	_, err := io.Copy(io.Discard, c)
	return err == nil // EOF: closed; a timeout is an error
}

// TestSlowBodies: a request that will be refused is answered before its
// body is read and its connection closed, and an admitted body that
// trickles in is cut at its read deadline.
func TestSlowBodies(t *testing.T) {
	cfg := api.DefaultConfig()
	cfg.RateLimit = 0
	cfg.BodyTimeout = time.Second
	h := newHarness(t, harnessOptions{cfg: &cfg})

	// The reproduction: without a key, a chunked body sent a few
	// bytes at a time used to be drained (256 KiB) before the 401 left.
	for _, tc := range []struct {
		name, auth string
		want       int
	}{
		{"no key", "", http.StatusUnauthorized},
		{"unknown key", "Bearer vsk_nobody_secret", http.StatusUnauthorized},
		{"read key may not identify", "Bearer " + h.newKey("read", ""), http.StatusForbidden},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := h.rawConn(t)
			hdr := "POST /v1/collections/any/identify HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n"
			if tc.auth != "" {
				hdr += "Authorization: " + tc.auth + "\r\n"
			}
			if _, err := io.WriteString(c, hdr+"\r\n4\r\n{\"im\r\n"); err != nil {
				t.Fatal(err)
			}
			start := time.Now()
			resp := readAnswer(t, c, 3*time.Second)
			if resp.StatusCode != tc.want {
				t.Fatalf("status %d, want %d", resp.StatusCode, tc.want)
			}
			if !resp.Close {
				t.Error("the refusal keeps the connection open: the server would read the rest of the body")
			}
			t.Logf("answered %d after %v with 4 body bytes sent", resp.StatusCode, time.Since(start).Round(time.Millisecond))
		})
	}

	t.Run("admitted body trickling in is cut at its deadline", func(t *testing.T) {
		c := h.rawConn(t)
		fmt.Fprintf(c, "POST /v1/collections/any/identify HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer %s\r\nContent-Type: application/json\r\nContent-Length: 1000\r\n\r\n{\"image\":\"", h.admin)
		stop := make(chan struct{})
		defer close(stop)
		go func() { // one byte every 100 ms: 100 s for the whole body
			for {
				select {
				case <-stop:
					return
				case <-time.After(100 * time.Millisecond):
					if _, err := c.Write([]byte("A")); err != nil {
						return
					}
				}
			}
		}()
		resp := readAnswer(t, c, 10*time.Second)
		if resp.StatusCode != http.StatusRequestTimeout {
			b, _ := io.ReadAll(resp.Body)
			t.Fatalf("status %d (%s), want 408", resp.StatusCode, b)
		}
		if !closedWithin(c, 5*time.Second) {
			t.Error("connection still open after the body deadline")
		}
	})
}

// TestBodyBudget: while bodies hold the whole body budget, another
// request waits the admission wait and is answered 503 unavailable/busy
// with Retry-After; once the budget frees, the same request is served.
func TestBodyBudget(t *testing.T) {
	cfg := api.DefaultConfig()
	cfg.RateLimit = 0
	cfg.BodyBudget = 1 << 20
	cfg.AdmissionWait = 200 * time.Millisecond
	cfg.BodyTimeout = 30 * time.Second
	h := newHarness(t, harnessOptions{cfg: &cfg})
	h.must(http.StatusCreated, "POST", "/v1/collections", h.admin, ptr(jsonBody(map[string]any{"name": "budget"})))
	probe := jsonBody(map[string]any{"image": portrait(t, "penny", 1)})

	// A JSON body declaring 400 KB is charged three times that: more than
	// the whole budget, so it takes all of it while it trickles in.
	hog := h.rawConn(t)
	fmt.Fprintf(hog, "POST /v1/collections/budget/identify HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer %s\r\nContent-Type: application/json\r\nContent-Length: 400000\r\n\r\n{\"image\":\"", h.admin)
	deadline := time.Now().Add(5 * time.Second)
	var r response
	for time.Now().Before(deadline) {
		if r = h.do("POST", "/v1/collections/budget/identify", h.admin, &probe); r.status == http.StatusServiceUnavailable {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	var p api.Problem
	r.decode(t, &p)
	if r.status != http.StatusServiceUnavailable || p.Type != api.TypeUnavailable || p.Code != api.CodeBusy {
		t.Fatalf("while the budget is held: %d %s, want 503 unavailable/busy", r.status, r.raw)
	}
	if ra := r.header.Get("Retry-After"); ra == "" {
		t.Error("503 busy without Retry-After")
	}

	hog.Close() // the server reads EOF, fails the hog and frees its budget
	deadline = time.Now().Add(5 * time.Second)
	for time.Now().Before(deadline) {
		if r = h.do("POST", "/v1/collections/budget/identify", h.admin, &probe); r.status != http.StatusServiceUnavailable {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	if r.status != http.StatusOK {
		t.Fatalf("after the budget freed: %d %s, want 200", r.status, truncate(r.raw))
	}
	if !bytes.Contains(r.raw, []byte(`"faces"`)) || strings.Contains(string(r.raw), "busy") {
		t.Fatalf("unexpected answer %s", truncate(r.raw))
	}
}

// TestFailedAuthenticationThrottled: an address that keeps failing to
// authenticate (bearer keys or dashboard sign-ins) is refused 429 with
// Retry-After before any key is looked up, until its allowance recovers.
func TestFailedAuthenticationThrottled(t *testing.T) {
	cfg := api.DefaultConfig()
	cfg.RateLimit = 0
	cfg.AuthFailureRate, cfg.AuthFailureBurst = 4, 3
	h := newHarness(t, harnessOptions{cfg: &cfg})

	for i := range 3 {
		if r := h.do("GET", "/v1/collections", fmt.Sprintf("vsk_guess%d_secret", i), nil); r.status != http.StatusUnauthorized {
			t.Fatalf("guess %d: %d, want 401", i, r.status)
		}
	}
	r := h.do("GET", "/v1/collections", "vsk_guess9_secret", nil)
	if r.status != http.StatusTooManyRequests || r.problemType() != api.TypeRateLimited || r.header.Get("Retry-After") == "" {
		t.Fatalf("fourth guess: %d %s (Retry-After %q), want 429 rate_limited with Retry-After", r.status, r.raw, r.header.Get("Retry-After"))
	}
	if r := h.do("GET", "/v1/collections", h.admin, nil); r.status != http.StatusTooManyRequests {
		t.Fatalf("the address is throttled, yet a request was looked up: %d", r.status)
	}
	req, _ := http.NewRequest("POST", h.url+"/admin/session", strings.NewReader(`{"key":"vsk_guess_secret"}`))
	req.Header.Set("Content-Type", "application/json")
	resp, err := h.client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusTooManyRequests {
		t.Fatalf("sign-in while throttled: %d, want 429", resp.StatusCode)
	}

	time.Sleep(300 * time.Millisecond) // one failure's worth at 4 per second
	h.must(http.StatusOK, "GET", "/v1/collections", h.admin, nil)
}

// TestInputRules: the API refuses the text an import
// refuses (control and bidirectional formatting characters).
func TestInputRules(t *testing.T) {
	h := newHarness(t, harnessOptions{})
	h.must(http.StatusCreated, "POST", "/v1/collections", h.admin, ptr(jsonBody(map[string]any{"name": "rules"})))
	for _, tc := range []struct {
		name string
		body map[string]any
	}{
		{"NUL in external id", map[string]any{"external_id": "a\x00b"}},
		{"newline in external id", map[string]any{"external_id": "a\nb"}},
		{"override in display name", map[string]any{"external_id": "ok", "display_name": "\u202egnp.exe"}},
		{"control character in metadata", map[string]any{"external_id": "ok2", "metadata": map[string]any{"note": "x\u0007"}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := h.do("POST", "/v1/collections/rules/subjects", h.admin, ptr(jsonBody(tc.body)))
			if r.status != http.StatusBadRequest || r.problemType() != api.TypeInvalidRequest {
				t.Fatalf("%d %s, want 400 invalid_request", r.status, r.raw)
			}
		})
	}
	r := h.do("POST", "/v1/admin/keys", h.admin, ptr(jsonBody(map[string]any{"name": "door\u2066", "role": "read"})))
	if r.status != http.StatusBadRequest {
		t.Fatalf("key name with an isolate: %d %s, want 400", r.status, r.raw)
	}
	h.must(http.StatusCreated, "POST", "/v1/collections/rules/subjects", h.admin, ptr(jsonBody(map[string]any{"external_id": "Zoë Ångström", "display_name": "زوي"})))
}
