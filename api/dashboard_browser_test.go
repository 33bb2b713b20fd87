package api_test

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	"github.com/chromedp/chromedp/kb"

	"github.com/visage/visage/internal/testenv"
	"github.com/visage/visage/store"
)

// screenshotDir is where the browser tests leave a screenshot of each
// page they visit (git ignores /artifacts/; CI keeps it).
const screenshotDir = "../artifacts/dashboard"

// newChromium starts a headless Chromium (Debian's, installed by the set-up
// script) at a window width, and returns its context.
func newChromium(t testing.TB, width, height int) context.Context {
	t.Helper()
	path, err := exec.LookPath("chromium")
	if err != nil {
		t.Fatalf("chromium is not installed (./scripts/setup.sh installs it): %v", err)
	}
	opts := append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(path),
		chromedp.NoSandbox, // CI runs as root
		chromedp.Flag("disable-dev-shm-usage", true),
		chromedp.WindowSize(width, height),
	)
	alloc, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	ctx, cancelCtx := chromedp.NewContext(alloc)
	ctx, cancelTimeout := context.WithTimeout(ctx, 3*time.Minute)
	t.Cleanup(func() {
		cancelTimeout()
		cancelCtx()
		cancelAlloc()
	})
	if err := chromedp.Do(ctx); err != nil {
		t.Fatalf("start chromium: %v", err)
	}
	return ctx
}

// run runs browser actions, failing the test with what was being done.
func run(t testing.TB, ctx context.Context, what string, actions ...chromedp.Action[chromedp.Void]) {
	t.Helper()
	if err := chromedp.Do(ctx, actions...); err != nil {
		t.Fatalf("%s: %v", what, err)
	}
}

// get runs one browser action that returns a value.
func get[T any](t testing.TB, ctx context.Context, what string, a chromedp.Action[T]) T {
	t.Helper()
	v, err := chromedp.Run(ctx, a)
	if err != nil {
		t.Fatalf("%s: %v", what, err)
	}
	return v
}

// screenshot saves the page as artifacts/dashboard/<name>.png.
func screenshot(t testing.TB, ctx context.Context, name string) {
	t.Helper()
	png := get(t, ctx, "screenshot "+name, chromedp.FullScreenshot(100))
	if err := os.MkdirAll(screenshotDir, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(screenshotDir, name+".png"), png, 0o644); err != nil {
		t.Fatal(err)
	}
}

// count returns how many elements match a CSS selector.
func count(t testing.TB, ctx context.Context, selector string) int {
	t.Helper()
	return get(t, ctx, "count "+selector, chromedp.Evaluate[int](fmt.Sprintf(`document.querySelectorAll(%q).length`, selector)))
}

// number reads an element's text as a number ("1,234" → 1234).
func number(t testing.TB, ctx context.Context, selector string) int {
	t.Helper()
	s := get(t, ctx, "read "+selector, chromedp.Text(chromedp.CSS(selector)))
	n, err := strconv.Atoi(strings.Map(func(r rune) rune {
		if r >= '0' && r <= '9' {
			return r
		}
		return -1
	}, s))
	if err != nil {
		t.Fatalf("%s: %q is not a number", selector, s)
	}
	return n
}

// signInPage opens the dashboard and signs in with key.
func signInPage(t testing.TB, ctx context.Context, h *harness, key string) {
	t.Helper()
	run(t, ctx, "sign in",
		chromedp.Navigate(h.url+"/admin/"),
		chromedp.WaitVisible(chromedp.CSS("#login-key")),
		chromedp.SendKeys(chromedp.CSS("#login-key"), key),
		chromedp.Click(chromedp.CSS("#login-submit")),
		chromedp.WaitVisible(chromedp.CSS("#whoami")),
	)
}

func TestDashboardInBrowser(t *testing.T) {
	h := newHarness(t, harnessOptions{})
	ids := h.enrolledGallery()
	ctx := newChromium(t, 1280, 900)

	t.Run("a wrong key is refused", func(t *testing.T) {
		run(t, ctx, "sign in with a wrong key",
			chromedp.Navigate(h.url+"/admin/"),
			chromedp.WaitVisible(chromedp.CSS("#login-key")),
			chromedp.SendKeys(chromedp.CSS("#login-key"), "vsk_aaaaaaaaaaaa_"+strings.Repeat("b", 52)),
			chromedp.Click(chromedp.CSS("#login-submit")),
			chromedp.WaitVisible(chromedp.CSS("#login-error")),
		)
		msg := get(t, ctx, "read the error", chromedp.Text(chromedp.CSS("#login-error")))
		if !strings.Contains(msg, "unknown or revoked key") {
			t.Errorf("sign-in error %q", msg)
		}
		shown := get(t, ctx, "is the app shown?", chromedp.Evaluate[bool](`!!document.querySelector("#whoami") && document.querySelector("#whoami").offsetParent !== null`))
		if shown {
			t.Error("the app is shown after a refused sign-in")
		}
		screenshot(t, ctx, "signin-refused")
	})

	t.Run("overview shows what the API reports", func(t *testing.T) {
		signInPage(t, ctx, h, h.admin)
		card := `.collection-card[data-collection="bbt"]`
		run(t, ctx, "overview", chromedp.WaitVisible(chromedp.CSS(card+" .stat-faces")),
			chromedp.WaitVisible(chromedp.CSS("#chart-enrollments rect.bar")))
		var stats store.CollectionStats
		h.must(http.StatusOK, http.MethodGet, "/v1/collections/bbt/stats", h.admin, nil).decode(t, &stats)
		if got := number(t, ctx, card+" .stat-subjects"); got != int(stats.Subjects) {
			t.Errorf("subjects shown %d, API %d", got, stats.Subjects)
		}
		if got := number(t, ctx, card+" .stat-faces"); got != int(stats.Faces) {
			t.Errorf("faces shown %d, API %d", got, stats.Faces)
		}
		screenshot(t, ctx, "overview")
	})

	t.Run("search a subject, delete it", func(t *testing.T) {
		row := `tr.subject-row[data-external-id="ext-penny"]`
		run(t, ctx, "search penny",
			chromedp.Navigate(h.url+"/admin/#/subjects?c=bbt"),
			chromedp.WaitVisible(chromedp.CSS("#subject-search")),
			chromedp.SendKeys(chromedp.CSS("#subject-search"), "penny\n"),
			chromedp.WaitVisible(chromedp.CSS(row)),
		)
		if n := count(t, ctx, "tr.subject-row"); n != 1 {
			t.Errorf("%d rows for penny, want 1", n)
		}
		screenshot(t, ctx, "subjects")
		run(t, ctx, "open penny", chromedp.Click(chromedp.CSS(row+" a")), chromedp.WaitVisible(chromedp.CSS("tr.face-row")))
		if n := count(t, ctx, "tr.face-row"); n != 4 {
			t.Errorf("%d faces shown for penny, want 4", n)
		}
		screenshot(t, ctx, "subject")
		run(t, ctx, "delete penny",
			chromedp.Click(chromedp.CSS("#delete-subject")),
			chromedp.WaitVisible(chromedp.CSS("#confirm-yes")),
			chromedp.Click(chromedp.CSS("#confirm-yes")),
			chromedp.WaitVisible(chromedp.CSS("#subject-search")),
		)
		run(t, ctx, "search penny again",
			chromedp.Navigate(h.url+"/admin/#/subjects?c=bbt&q=penny"),
			chromedp.WaitVisible(chromedp.CSS("p.empty")),
		)
		if n := count(t, ctx, "tr.subject-row"); n != 0 {
			t.Errorf("%d rows for penny after the deletion, want 0", n)
		}
		id := h.identify("bbt", portrait(t, "penny", 5))
		for _, f := range id.Faces {
			if f.Match != nil && f.Match.SubjectID == ids["penny"] {
				t.Errorf("identification still names penny: %+v", f.Match)
			}
		}
	})

	t.Run("keys: create, the secret once, revoke", func(t *testing.T) {
		run(t, ctx, "create a key",
			chromedp.Navigate(h.url+"/admin/#/keys"),
			chromedp.WaitVisible(chromedp.CSS("tr.key-row")),
			chromedp.SendKeys(chromedp.CSS("#key-name"), "door camera"),
			chromedp.SetValue(chromedp.CSS("#key-role"), "identify"),
			chromedp.Click(chromedp.CSS("#key-create")),
			chromedp.WaitVisible(chromedp.CSS("#key-secret input")),
		)
		token := get(t, ctx, "read the secret", chromedp.Value(chromedp.CSS("#key-secret input")))
		if !strings.HasPrefix(token, "vsk_") {
			t.Fatalf("secret shown %q", token)
		}
		h.must(http.StatusOK, http.MethodGet, "/v1/collections", token, nil)
		id := strings.Split(token, "_")[1]
		row := `tr.key-row[data-key-id="` + id + `"]`
		run(t, ctx, "the new key is listed", chromedp.WaitVisible(chromedp.CSS(row)))
		screenshot(t, ctx, "keys")
		run(t, ctx, "revoke it",
			chromedp.Click(chromedp.CSS(row+" .revoke-key")),
			chromedp.WaitVisible(chromedp.CSS("#confirm-yes")),
			chromedp.Click(chromedp.CSS("#confirm-yes")),
			chromedp.WaitNotPresent(chromedp.CSS(row+" .revoke-key")),
		)
		h.must(http.StatusUnauthorized, http.MethodGet, "/v1/collections", token, nil)
		// Leaving the page forgets the secret.
		run(t, ctx, "leave and come back",
			chromedp.Navigate(h.url+"/admin/#/overview"),
			chromedp.WaitVisible(chromedp.CSS(".collection-card")),
			chromedp.Navigate(h.url+"/admin/#/keys"),
			chromedp.WaitVisible(chromedp.CSS("tr.key-row")),
		)
		if n := count(t, ctx, "#key-secret input"); n != 0 {
			t.Error("the secret is still shown after leaving the page")
		}
	})

	t.Run("try it with a group photo", func(t *testing.T) {
		photo := testenv.Shared(t, "testdata/faces/bbt/bbt1.jpg")
		want := h.identify("bbt", testenv.ReadShared(t, "testdata/faces/bbt/bbt1.jpg"))
		run(t, ctx, "identify the group photo",
			chromedp.Navigate(h.url+"/admin/#/try?c=bbt"),
			chromedp.WaitVisible(chromedp.CSS("#try-form")),
			chromedp.SetUploadFiles(chromedp.CSS("#try-image"), []string{photo}),
			chromedp.Click(chromedp.CSS("#try-submit")),
			chromedp.WaitVisible(chromedp.CSS("#try-result rect.face-box")),
		)
		if got := count(t, ctx, "#try-result rect.face-box"); got != len(want.Faces) || got < 2 {
			t.Errorf("%d boxes drawn, the API found %d faces", got, len(want.Faces))
		}
		if got := count(t, ctx, "li.face-result"); got != len(want.Faces) {
			t.Errorf("%d face results listed, want %d", got, len(want.Faces))
		}
		screenshot(t, ctx, "try-it")
	})

	t.Run("identifications on the overview", func(t *testing.T) {
		run(t, ctx, "overview charts",
			chromedp.Navigate(h.url+"/admin/#/overview?c=bbt"),
			chromedp.WaitVisible(chromedp.CSS("#chart-identifications rect.bar")),
			chromedp.WaitVisible(chromedp.CSS("#chart-distances line.threshold")),
		)
		screenshot(t, ctx, "overview-identifications")
	})

	t.Run("events", func(t *testing.T) {
		run(t, ctx, "audit events",
			chromedp.Navigate(h.url+"/admin/#/events"),
			chromedp.WaitVisible(chromedp.CSS("tr.event-row")),
			chromedp.SetValue(chromedp.CSS("#events-kind"), "identify"),
			chromedp.Click(chromedp.CSS("#events-apply")),
			chromedp.Sleep(300*time.Millisecond),
			chromedp.WaitVisible(chromedp.CSS("tr.event-row")),
		)
		var api struct {
			Events []store.Event `json:"events"`
		}
		h.must(http.StatusOK, http.MethodGet, "/v1/admin/events?kind=identify&limit=50", h.admin, nil).decode(t, &api)
		if got := count(t, ctx, "tr.event-row"); got != len(api.Events) {
			t.Errorf("%d identify events shown, the API lists %d", got, len(api.Events))
		}
		screenshot(t, ctx, "events")
	})

	t.Run("imports", func(t *testing.T) {
		dir := filepath.Join(h.importRoot, "tree", "leonard")
		if err := os.MkdirAll(dir, 0o755); err != nil {
			t.Fatal(err)
		}
		for n := 5; n <= 5; n++ {
			if err := os.WriteFile(filepath.Join(dir, fmt.Sprintf("%d.png", n)), portrait(t, "leonard", n), 0o644); err != nil {
				t.Fatal(err)
			}
		}
		if err := os.WriteFile(filepath.Join(dir, "blank.png"), testenv.BlankPNG(), 0o644); err != nil {
			t.Fatal(err)
		}
		var job struct {
			ID string `json:"id"`
		}
		h.must(http.StatusAccepted, http.MethodPost, "/v1/collections/bbt/imports", h.admin, ptr(jsonBody(map[string]any{"path": "tree"}))).decode(t, &job)
		run(t, ctx, "imports page",
			chromedp.Navigate(h.url+"/admin/#/imports?c=bbt"),
			chromedp.WaitVisible(chromedp.CSS(`tr.import-row[data-job-id="`+job.ID+`"]`)),
		)
		for deadline := time.Now().Add(time.Minute); ; time.Sleep(100 * time.Millisecond) {
			var j struct {
				State string `json:"state"`
			}
			h.must(http.StatusOK, http.MethodGet, "/v1/collections/bbt/imports/"+job.ID, h.admin, nil).decode(t, &j)
			if j.State == "done" {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("import job still %s after a minute", j.State)
			}
		}
		run(t, ctx, "the finished job",
			chromedp.Navigate(h.url+"/admin/#/imports/bbt/"+job.ID),
			chromedp.WaitVisible(chromedp.CSS("a#failures-csv")),
			chromedp.WaitVisible(chromedp.CSS("tr.failure-row")),
		)
		if got := count(t, ctx, "tr.failure-row"); got != 1 {
			t.Errorf("%d failures listed, want 1 (the blank photo)", got)
		}
		screenshot(t, ctx, "import-job")
	})

	t.Run("a read key sees no write controls", func(t *testing.T) {
		run(t, ctx, "sign out", chromedp.Click(chromedp.CSS("#signout")), chromedp.WaitVisible(chromedp.CSS("#login-key")))
		signInPage(t, ctx, h, h.newKey(store.RoleRead, ""))
		row := `tr.subject-row[data-external-id="ext-amy"]`
		run(t, ctx, "open amy",
			chromedp.Navigate(h.url+"/admin/#/subjects?c=bbt&q=amy"),
			chromedp.WaitVisible(chromedp.CSS(row)),
			chromedp.Click(chromedp.CSS(row+" a")),
			chromedp.WaitVisible(chromedp.CSS("tr.face-row")),
		)
		if n := count(t, ctx, "#delete-subject, .delete-face"); n != 0 {
			t.Errorf("a read key's page has %d delete controls", n)
		}
		shown := get(t, ctx, "admin-only nav links shown", chromedp.Evaluate[int](
			`[...document.querySelectorAll("#nav-keys, #nav-events")].filter(e => e.offsetParent !== null).length`))
		if shown != 0 {
			t.Errorf("a read key sees %d admin-only nav links", shown)
		}
		screenshot(t, ctx, "subject-read-key")
	})

	t.Run("narrow screen", func(t *testing.T) {
		narrow := newChromium(t, 390, 844)
		signInPage(t, narrow, h, h.admin)
		for _, p := range []struct{ name, hash, ready string }{
			{"overview", "#/overview?c=bbt", `.collection-card[data-collection="bbt"]`},
			{"subjects", "#/subjects?c=bbt", "tr.subject-row"},
			{"subject", "#/subjects/bbt/" + ids["amy"], "tr.face-row"},
			{"events", "#/events", "tr.event-row"},
			{"imports", "#/imports?c=bbt", "tr.import-row"},
			{"keys", "#/keys", "tr.key-row"},
			{"try-it", "#/try?c=bbt", "#try-form"},
		} {
			run(t, narrow, p.name, chromedp.Navigate(h.url+"/admin/"+p.hash), chromedp.WaitVisible(chromedp.CSS(p.ready)))
			// Wide tables scroll inside their own box; the page itself
			// must not.
			if get(t, narrow, "measure "+p.name, chromedp.Evaluate[bool](`document.documentElement.scrollWidth > window.innerWidth + 1`)) {
				t.Errorf("%s is wider than a 390 px screen", p.name)
			}
			screenshot(t, narrow, p.name+"-390px")
		}
	})

	t.Run("keyboard: sign in and move between pages", func(t *testing.T) {
		kbd := newChromium(t, 1280, 900)
		run(t, kbd, "sign in by keyboard",
			chromedp.Navigate(h.url+"/admin/"),
			chromedp.WaitVisible(chromedp.CSS("#login-key")),
			chromedp.Focus(chromedp.CSS("#login-key")),
			chromedp.SendKeys(chromedp.CSS("#login-key"), h.admin+"\r"),
			chromedp.WaitVisible(chromedp.CSS("#whoami")),
		)
		// Every control of the shell is reachable with Tab: links, the
		// collection selector and sign-out are focusable elements.
		focusable := get(t, kbd, "focusable", chromedp.Evaluate[int](
			`[...document.querySelectorAll("#nav-overview, #nav-subjects, #nav-events, #nav-imports, #nav-keys, #nav-try, #collection, #signout")].filter(e => e.tabIndex >= 0 && e.offsetParent !== null).length`))
		if focusable != 8 {
			t.Errorf("%d of the shell's 8 controls are focusable", focusable)
		}
		// The first page is drawn before the keyboard moves on: drawing
		// it moves the focus to its heading.
		run(t, kbd, "open Subjects with the keyboard",
			chromedp.WaitVisible(chromedp.CSS(`.collection-card[data-collection="bbt"]`)),
			chromedp.WaitNotPresent(chromedp.CSS("#view[aria-busy]")),
			chromedp.Focus(chromedp.CSS("#nav-subjects")),
			chromedp.KeyEvent("\r"),
			chromedp.WaitVisible(chromedp.CSS("#subject-search")),
		)

		// Search, open a subject, and delete one of its faces with the
		// keyboard alone: Tab to each control, Enter to use it, and the
		// confirmation dialog by keyboard (Escape cancels, Tab, Enter).
		// The fresh page starts with the focus on its heading.
		run(t, kbd, "subjects page", chromedp.Navigate(h.url+"/admin/#/subjects?c=bbt"), chromedp.WaitVisible(chromedp.CSS("tr.subject-row")),
			chromedp.WaitNotPresent(chromedp.CSS("#view[aria-busy]")))
		tabTo(t, kbd, "#subject-search")
		run(t, kbd, "type a search", chromedp.KeyEvent("amy\r"), chromedp.WaitVisible(chromedp.CSS(`tr.subject-row[data-external-id="ext-amy"]`)),
			chromedp.WaitNotPresent(chromedp.CSS("#view[aria-busy]")))
		if n := count(t, kbd, "tr.subject-row"); n != 1 {
			t.Errorf("%d rows after searching amy by keyboard, want 1", n)
		}
		tabTo(t, kbd, `tr.subject-row[data-external-id="ext-amy"] a`)
		wantFocusVisible(t, kbd)
		run(t, kbd, "open amy", chromedp.KeyEvent("\r"), chromedp.WaitVisible(chromedp.CSS("tr.face-row")),
			chromedp.WaitNotPresent(chromedp.CSS("#view[aria-busy]")))
		faces := count(t, kbd, "tr.face-row")
		tabTo(t, kbd, "button.delete-face")
		wantFocusVisible(t, kbd)
		run(t, kbd, "ask to delete a face", chromedp.KeyEvent("\r"), chromedp.WaitVisible(chromedp.CSS("#confirm-yes")))
		wantFocus(t, kbd, "#confirm-no", "the dialog opens on Cancel")
		run(t, kbd, "Escape", chromedp.KeyEvent(kb.Escape), chromedp.WaitNotVisible(chromedp.CSS("#confirm")))
		wantFocus(t, kbd, "button.delete-face", "Escape returns to the button")
		if n := count(t, kbd, "tr.face-row"); n != faces {
			t.Fatalf("%d faces after Escape, want %d", n, faces)
		}
		screenshot(t, kbd, "keyboard-subject")
		run(t, kbd, "ask again", chromedp.KeyEvent("\r"), chromedp.WaitVisible(chromedp.CSS("#confirm-yes")))
		tabTo(t, kbd, "#confirm-yes")
		run(t, kbd, "confirm", chromedp.KeyEvent("\r"), chromedp.WaitNotVisible(chromedp.CSS("#confirm")))
		for deadline := time.Now().Add(10 * time.Second); count(t, kbd, "tr.face-row") != faces-1; time.Sleep(100 * time.Millisecond) {
			if time.Now().After(deadline) {
				t.Fatalf("%d faces after deleting one by keyboard, want %d", count(t, kbd, "tr.face-row"), faces-1)
			}
		}
		if get(t, kbd, "focus after deletion", chromedp.Evaluate[bool](`document.activeElement === document.body || document.activeElement === null`)) {
			t.Error("the focus is lost after deleting a face")
		}

		// Create a key and revoke it with the keyboard alone; the role is
		// chosen with the arrow keys.
		run(t, kbd, "keys page", chromedp.Navigate(h.url+"/admin/#/keys"), chromedp.WaitVisible(chromedp.CSS("tr.key-row")),
			chromedp.WaitNotPresent(chromedp.CSS("#view[aria-busy]")))
		tabTo(t, kbd, "#key-name")
		run(t, kbd, "name the key", chromedp.KeyEvent("kiosk"))
		tabTo(t, kbd, "#key-role")
		run(t, kbd, "choose the role below read", chromedp.KeyEvent(kb.ArrowUp))
		if role := get(t, kbd, "role", chromedp.Value(chromedp.CSS("#key-role"))); role != "identify" {
			t.Errorf("role %q after ArrowUp from read, want identify", role)
		}
		tabTo(t, kbd, "#key-create")
		run(t, kbd, "create", chromedp.KeyEvent("\r"), chromedp.WaitVisible(chromedp.CSS("#key-secret input")))
		wantFocus(t, kbd, "#key-secret-token", "the new secret has the focus")
		token := get(t, kbd, "read the secret", chromedp.Value(chromedp.CSS("#key-secret input")))
		id := strings.Split(token, "_")[1]
		revoke := `tr.key-row[data-key-id="` + id + `"] .revoke-key`
		run(t, kbd, "the new key is listed", chromedp.WaitVisible(chromedp.CSS(revoke)))
		h.must(http.StatusOK, http.MethodGet, "/v1/collections", token, nil)
		// Backwards: the list is above the form.
		tabTo(t, kbd, revoke, backwards)
		run(t, kbd, "ask to revoke", chromedp.KeyEvent("\r"), chromedp.WaitVisible(chromedp.CSS("#confirm-yes")))
		tabTo(t, kbd, "#confirm-yes")
		run(t, kbd, "revoke", chromedp.KeyEvent("\r"), chromedp.WaitNotPresent(chromedp.CSS(revoke)))
		h.must(http.StatusUnauthorized, http.MethodGet, "/v1/collections", token, nil)
		screenshot(t, kbd, "keyboard-keys")
	})
}

// backwards makes tabTo press Shift+Tab.
const backwards = true

// tabTo presses Tab (Shift+Tab if back) until the focus is on an element
// matching selector, the way a keyboard user reaches it, and fails if 100
// presses do not get there.
func tabTo(t testing.TB, ctx context.Context, selector string, back ...bool) {
	t.Helper()
	press := chromedp.KeyEvent("\t")
	if len(back) > 0 && back[0] {
		press = chromedp.KeyEvent("\t", chromedp.KeyModifiers(chromedp.ModifierShift))
	}
	for range 100 {
		if get(t, ctx, "where is the focus", chromedp.Evaluate[bool](fmt.Sprintf(
			`!!document.activeElement && document.activeElement.matches(%q)`, selector))) {
			return
		}
		run(t, ctx, "Tab", press)
	}
	t.Fatalf("100 presses of Tab never reach %s; the focus is on %s", selector, get(t, ctx, "focus",
		chromedp.Evaluate[string](`document.activeElement ? document.activeElement.outerHTML.slice(0, 120) : "nothing"`)))
}

// wantFocus fails unless the focus is on an element matching selector.
func wantFocus(t testing.TB, ctx context.Context, selector, what string) {
	t.Helper()
	if !get(t, ctx, "where is the focus", chromedp.Evaluate[bool](fmt.Sprintf(
		`!!document.activeElement && document.activeElement.matches(%q)`, selector))) {
		t.Errorf("%s: the focus is on %s, not %s", what, get(t, ctx, "focus",
			chromedp.Evaluate[string](`document.activeElement ? document.activeElement.outerHTML.slice(0, 120) : "nothing"`)), selector)
	}
}

// wantFocusVisible fails unless the focused element is drawn with an
// outline, so that a keyboard user sees where they are.
func wantFocusVisible(t testing.TB, ctx context.Context) {
	t.Helper()
	style := get(t, ctx, "focus outline", chromedp.Evaluate[string](
		`(() => { const s = getComputedStyle(document.activeElement); return s.outlineStyle + " " + s.outlineWidth; })()`))
	if strings.HasPrefix(style, "none") || strings.HasSuffix(style, " 0px") {
		t.Errorf("the focused element has no visible outline (%s)", style)
	}
}
