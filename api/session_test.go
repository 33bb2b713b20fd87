package api_test

import (
	"bytes"
	"io"
	"net/http"
	"regexp"
	"strings"
	"testing"

	"github.com/visage/visage/store"
)

// browser is a client holding a dashboard session: its cookie and CSRF
// token.
type browser struct {
	h      *harness
	cookie *http.Cookie
	csrf   string
}

// call sends a request the way the dashboard does: the session cookie, no
// Authorization header, and csrf (if any) as X-CSRF-Token.
func (b *browser) call(method, path, csrf string, bd *body) response {
	b.h.t.Helper()
	var rd io.Reader
	if bd != nil {
		rd = bytes.NewReader(bd.data)
	}
	req, err := http.NewRequest(method, b.h.url+path, rd)
	if err != nil {
		b.h.t.Fatal(err)
	}
	if bd != nil {
		req.Header.Set("Content-Type", bd.ct)
	}
	if b.cookie != nil {
		req.AddCookie(b.cookie)
	}
	if csrf != "" {
		req.Header.Set("X-CSRF-Token", csrf)
	}
	resp, err := b.h.client.Do(req)
	if err != nil {
		b.h.t.Fatal(err)
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(resp.Body)
	if err != nil {
		b.h.t.Fatal(err)
	}
	if strings.HasPrefix(path, "/admin/session") || strings.HasPrefix(path, "/v1/") {
		b.h.validate(req, bd, resp, raw)
	}
	return response{status: resp.StatusCode, header: resp.Header, raw: raw}
}

type sessionResponse struct {
	KeyID      string     `json:"key_id"`
	KeyName    string     `json:"key_name"`
	Role       store.Role `json:"role"`
	Collection string     `json:"collection"`
	CSRFToken  string     `json:"csrf_token"`
}

// signIn signs a browser in with key and checks the cookie's attributes.
func signIn(t *testing.T, h *harness, key string) (*browser, sessionResponse) {
	t.Helper()
	b := &browser{h: h}
	r := b.call(http.MethodPost, "/admin/session", "", ptr(jsonBody(map[string]string{"key": key})))
	if r.status != http.StatusOK {
		t.Fatalf("sign in: %d %s", r.status, truncate(r.raw))
	}
	var s sessionResponse
	r.decode(t, &s)
	resp := http.Response{Header: r.header}
	for _, c := range resp.Cookies() {
		if c.Name == "visage_session" {
			b.cookie = &http.Cookie{Name: c.Name, Value: c.Value}
			if !c.HttpOnly || c.SameSite != http.SameSiteStrictMode || c.Path != "/" || c.MaxAge <= 0 || c.Value == "" {
				t.Errorf("session cookie %+v: want HttpOnly, SameSite=Strict, Path=/, a Max-Age", c)
			}
			if strings.Contains(c.Value, key) {
				t.Error("the cookie carries the key")
			}
		}
	}
	if b.cookie == nil {
		t.Fatalf("no session cookie in %v", r.header)
	}
	b.csrf = s.CSRFToken
	return b, s
}

func TestDashboardSession(t *testing.T) {
	h := newHarness(t, harnessOptions{})

	t.Run("page", func(t *testing.T) {
		for _, p := range []string{"/admin/", "/admin/app.js", "/admin/app.css"} {
			r := (&browser{h: h}).call(http.MethodGet, p, "", nil)
			if r.status != http.StatusOK || len(r.raw) == 0 {
				t.Fatalf("GET %s: %d", p, r.status)
			}
			if csp := r.header.Get("Content-Security-Policy"); !strings.Contains(csp, "script-src 'self'") || !strings.Contains(csp, "frame-ancestors 'none'") {
				t.Errorf("GET %s: Content-Security-Policy %q", p, csp)
			}
			if r.header.Get("X-Content-Type-Options") != "nosniff" {
				t.Errorf("GET %s: no nosniff", p)
			}
		}
	})

	t.Run("caching", func(t *testing.T) {
		get := func(t *testing.T, path, ifNoneMatch string) *http.Response {
			t.Helper()
			req, err := http.NewRequest(http.MethodGet, h.url+path, nil)
			if err != nil {
				t.Fatal(err)
			}
			if ifNoneMatch != "" {
				req.Header.Set("If-None-Match", ifNoneMatch)
			}
			resp, err := h.client.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { resp.Body.Close() })
			return resp
		}
		page := (&browser{h: h}).call(http.MethodGet, "/admin/", "", nil)
		for _, name := range []string{"app.js", "app.css"} {
			m := regexp.MustCompile(regexp.QuoteMeta(name) + `\?v=([0-9a-f]{12})"`).FindSubmatch(page.raw)
			if m == nil {
				t.Fatalf("the page does not name %s by version:\n%s", name, page.raw)
			}
			current := get(t, "/admin/"+name+"?v="+string(m[1]), "")
			if cc := current.Header.Get("Cache-Control"); current.StatusCode != http.StatusOK || !strings.Contains(cc, "immutable") {
				t.Errorf("GET %s by its version: %d, Cache-Control %q", name, current.StatusCode, cc)
			}
			for _, v := range []string{"", "?v=000000000000"} {
				if r := get(t, "/admin/"+name+v, ""); r.StatusCode != http.StatusOK || r.Header.Get("Cache-Control") != "no-cache" {
					t.Errorf("GET %s%s: %d, Cache-Control %q, want no-cache", name, v, r.StatusCode, r.Header.Get("Cache-Control"))
				}
			}
			etag := current.Header.Get("ETag")
			for header, want := range map[string]int{etag: 304, "W/" + etag: 304, `"other", ` + etag: 304, "*": 304, `"other"`: 200} {
				r := get(t, "/admin/"+name, header)
				body, _ := io.ReadAll(r.Body)
				if r.StatusCode != want || (want == 304) != (len(body) == 0) {
					t.Errorf("GET %s, If-None-Match %s: %d with %d bytes, want %d", name, header, r.StatusCode, len(body), want)
				}
			}
		}
		if etag := page.header.Get("ETag"); etag == "" || page.header.Get("Cache-Control") != "no-cache" {
			t.Errorf("the page: ETag %q, Cache-Control %q", etag, page.header.Get("Cache-Control"))
		} else if r := get(t, "/admin/", etag); r.StatusCode != http.StatusNotModified {
			t.Errorf("the page again: %d, want 304", r.StatusCode)
		}
	})

	t.Run("admin key", func(t *testing.T) {
		b, s := signIn(t, h, h.admin)
		if s.Role != store.RoleAdmin || s.KeyName != "test admin" || s.CSRFToken == "" {
			t.Fatalf("session %+v", s)
		}
		var again sessionResponse
		b.call(http.MethodGet, "/admin/session", "", nil).decode(t, &again)
		if again != s {
			t.Errorf("GET /admin/session = %+v, want %+v", again, s)
		}
		// Reads need the cookie only; changes need the CSRF token too.
		if r := b.call(http.MethodGet, "/v1/collections", "", nil); r.status != http.StatusOK {
			t.Fatalf("list collections by cookie: %d %s", r.status, truncate(r.raw))
		}
		create := ptr(jsonBody(map[string]any{"name": "via-dashboard"}))
		if r := b.call(http.MethodPost, "/v1/collections", "", create); r.status != http.StatusForbidden {
			t.Errorf("create without CSRF token: %d, want 403", r.status)
		}
		if r := b.call(http.MethodPost, "/v1/collections", "wrong", create); r.status != http.StatusForbidden {
			t.Errorf("create with a wrong CSRF token: %d, want 403", r.status)
		}
		if r := b.call(http.MethodPost, "/v1/collections", b.csrf, create); r.status != http.StatusCreated {
			t.Fatalf("create with the CSRF token: %d %s", r.status, truncate(r.raw))
		}
		// Sign out needs the token too; afterwards the cookie is dead.
		if r := b.call(http.MethodDelete, "/admin/session", "", nil); r.status != http.StatusForbidden {
			t.Errorf("sign out without CSRF token: %d, want 403", r.status)
		}
		r := b.call(http.MethodDelete, "/admin/session", b.csrf, nil)
		if r.status != http.StatusNoContent {
			t.Fatalf("sign out: %d", r.status)
		}
		if c := (&http.Response{Header: r.header}).Cookies(); len(c) != 1 || c[0].MaxAge >= 0 {
			t.Errorf("sign out cookies %v: want the session cookie cleared", c)
		}
		for _, p := range []string{"/admin/session", "/v1/collections"} {
			if r := b.call(http.MethodGet, p, "", nil); r.status != http.StatusUnauthorized {
				t.Errorf("GET %s after sign-out: %d, want 401", p, r.status)
			}
		}
	})

	t.Run("read key sees, cannot change", func(t *testing.T) {
		b, s := signIn(t, h, h.newKey(store.RoleRead, ""))
		if s.Role != store.RoleRead {
			t.Fatalf("role %s", s.Role)
		}
		if r := b.call(http.MethodGet, "/v1/collections", "", nil); r.status != http.StatusOK {
			t.Errorf("read by cookie: %d", r.status)
		}
		if r := b.call(http.MethodPost, "/v1/collections", b.csrf, ptr(jsonBody(map[string]any{"name": "nope"}))); r.status != http.StatusForbidden {
			t.Errorf("read key creating a collection: %d, want 403", r.status)
		}
	})

	t.Run("refused keys", func(t *testing.T) {
		tests := []struct {
			name string
			key  string
			want int
		}{
			{"unknown", "vsk_aaaaaaaaaaaa_" + strings.Repeat("b", 52), http.StatusUnauthorized},
			{"garbage", "not a key at all, but long enough", http.StatusUnauthorized},
			{"enroll role", h.newKey(store.RoleEnroll, ""), http.StatusForbidden},
			{"identify role", h.newKey(store.RoleIdentify, ""), http.StatusForbidden},
		}
		for _, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				r := (&browser{h: h}).call(http.MethodPost, "/admin/session", "", ptr(jsonBody(map[string]string{"key": tt.key})))
				if r.status != tt.want {
					t.Errorf("sign in: %d, want %d", r.status, tt.want)
				}
				if len((&http.Response{Header: r.header}).Cookies()) != 0 {
					t.Error("a refused sign-in set a cookie")
				}
			})
		}
		if r := (&browser{h: h}).call(http.MethodPost, "/admin/session", "", ptr(jsonBody(map[string]string{}))); r.status != http.StatusBadRequest {
			t.Errorf("sign in without a key: %d, want 400", r.status)
		}
		// A form of another site can post text/plain that is valid JSON:
		// refused, so that no site signs the browser in with its own key.
		plain := &body{data: []byte(`{"key":"` + h.admin + `"}`), ct: "text/plain"}
		r := (&browser{h: h}).call(http.MethodPost, "/admin/session", "", plain)
		if r.status != http.StatusBadRequest || len((&http.Response{Header: r.header}).Cookies()) != 0 {
			t.Errorf("sign in with a text/plain body: %d, cookies %v; want 400 and none", r.status, r.header.Values("Set-Cookie"))
		}
	})

	t.Run("forged or ended sessions", func(t *testing.T) {
		forged := &browser{h: h, cookie: &http.Cookie{Name: "visage_session", Value: "made-up"}}
		if r := forged.call(http.MethodGet, "/v1/collections", "", nil); r.status != http.StatusUnauthorized {
			t.Errorf("forged cookie: %d, want 401", r.status)
		}
		token := h.newKey(store.RoleAdmin, "")
		b, _ := signIn(t, h, token)
		if err := h.store.RevokeKey(t.Context(), strings.Split(token, "_")[1]); err != nil {
			t.Fatal(err)
		}
		if r := b.call(http.MethodGet, "/v1/collections", "", nil); r.status != http.StatusUnauthorized {
			t.Errorf("session of a revoked key: %d, want 401", r.status)
		}
	})

	t.Run("a bearer key still works beside a cookie", func(t *testing.T) {
		h.must(http.StatusOK, http.MethodGet, "/v1/collections", h.admin, nil)
	})
}
