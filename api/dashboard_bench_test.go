package api_test

import (
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"slices"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/visage/visage/embed"
	"github.com/visage/visage/index/indextest"
	"github.com/visage/visage/store"
)

// bigGallery fills collection "big" with subjects × perSubject faces of
// random unit descriptors the way an import job does (one job of
// subjects × perSubject photos, written in batches of 1,000 with their
// subjects and audit events), indexes them (the reconciler indexes
// pending faces), and adds identifications over the last 48 hours to the
// audit trail.
func bigGallery(tb testing.TB, h *harness, subjects, perSubject, identifications int) (jobID string) {
	tb.Helper()
	ctx := context.Background()
	h.must(201, "POST", "/v1/collections", h.admin, ptr(jsonBody(map[string]any{"name": "big"})))
	rng := rand.New(rand.NewPCG(1, 2))
	items := make([]store.ImportItem, 0, subjects*perSubject)
	for i := range subjects {
		for j := range perSubject {
			items = append(items, store.ImportItem{Path: fmt.Sprintf("emp-%06d/%d.jpg", i, j),
				ExternalID: fmt.Sprintf("emp-%06d", i), DisplayName: fmt.Sprintf("Person %d", i)})
		}
	}
	job, err := h.store.CreateImportJob(ctx, store.ImportJob{Collection: "big", Source: json.RawMessage(`{"kind":"tree","name":"bench"}`)}, items)
	if err != nil {
		tb.Fatal(err)
	}
	if _, err := h.store.StartImportJob(ctx, job.ID); err != nil {
		tb.Fatal(err)
	}
	const batch = 1000
	for start := 0; start < len(items); start += batch {
		var outcomes []store.ImportOutcome
		for seq := start; seq < min(start+batch, len(items)); seq++ {
			outcomes = append(outcomes, store.ImportOutcome{Seq: seq, Face: &store.Face{Descriptor: indextest.RandomUnit(rng, embed.Dim), ModelID: "dlib-resnet-v1",
				Box: [4]int{10, 10, 110, 110}, ImageSHA256: fmt.Sprintf("%064x", seq)}})
		}
		if _, err := h.store.EnrollImportBatch(ctx, job.ID, outcomes); err != nil {
			tb.Fatal(err)
		}
	}
	if _, err := h.store.FinishImportJob(ctx, job.ID, store.ImportDone, ""); err != nil {
		tb.Fatal(err)
	}
	if _, err := h.svc.Reconcile(ctx); err != nil {
		tb.Fatal(err)
	}
	now := time.Now()
	for range identifications {
		at := now.Add(-time.Duration(rng.Int64N(int64(48 * time.Hour))))
		d, _ := json.Marshal(map[string]any{"faces": 1, "matches": 1, "threshold": 0.421, "best_distances": []float64{0.2 + 0.4*rng.Float64()}})
		if _, err := h.svc.Store().AppendEvent(ctx, store.Event{At: at, Kind: store.EventIdentify, KeyID: "door", Collection: "big",
			Outcome: "1/1 matched", Detail: d}); err != nil {
			tb.Fatal(err)
		}
	}
	return job.ID
}

// pageTiming is one dashboard page and how to tell it is drawn.
type pageTiming struct {
	name  string
	hash  string // route, after /admin/
	ready string // CSS selector present once the page shows its data
}

// BenchmarkDashboardPages100k loads each dashboard page in headless
// Chromium against a gallery of 100,000 faces (25,000 subjects × 4,
// random descriptors, loaded by one import job and indexed, with their
// 100,000 enrollment events and 5,000 identifications in the audit trail),
// in both deployments: SQLite and HNSW, PostgreSQL and the in-process
// Qdrant server. One
// op is a full navigation: the page, its script and stylesheet, its API
// calls, and the drawing of their data. Run with
//
//	go test -run '^$' -bench DashboardPages100k -benchtime 20x -timeout 30m ./api/
//
// Metrics: ms/op (chromedp's whole round: blank page, navigation, waiting
// for the page's data to show), page-ms-p50 and page-ms-max (the median
// and the slowest of the page's own time from navigation start to its view
// drawn with its data, the performance mark "visage:view-ready"), api-ms-max (the slowest /v1
// request of the page, from the browser's resource timing; it is logged),
// and switch-ms-p50 and switch-ms-max: ten moves to the page from another
// page of the dashboard, from the hash change to its view drawn.
func BenchmarkDashboardPages100k(b *testing.B) {
	for _, d := range deployments {
		b.Run(d.name, func(b *testing.B) { benchmarkDashboardPages(b, d.opts) })
	}
}

func benchmarkDashboardPages(b *testing.B, opts harnessOptions) {
	h := newHarness(b, opts)
	t0 := time.Now()
	jobID := bigGallery(b, h, 25_000, 4, 5_000)
	b.Logf("gallery of 100,000 faces loaded and indexed in %.0f s", time.Since(t0).Seconds())
	ctx := newChromium(b, 1280, 900)
	signInPage(b, ctx, h, h.admin)
	subs := struct {
		Subjects []store.Subject `json:"subjects"`
	}{}
	h.must(200, "GET", "/v1/collections/big/subjects?external_id=emp-012345", h.admin, nil).decode(b, &subs)
	if len(subs.Subjects) != 1 {
		b.Fatalf("emp-012345: %+v", subs)
	}
	for _, p := range dashboardPageTimings(subs.Subjects[0].ID, jobID) {
		b.Run(p.name, func(b *testing.B) {
			var slowestAPI float64
			var pages []float64
			slowestURL := ""
			for b.Loop() {
				run(b, ctx, "load "+p.name,
					chromedp.Navigate("about:blank"),
					chromedp.Navigate(h.url+"/admin/"+p.hash),
					chromedp.WaitVisible(chromedp.CSS(p.ready)),
				)
				b.StopTimer()
				page := get(b, ctx, "page timing", chromedp.Evaluate[float64](
					`performance.getEntriesByName("visage:view-ready").at(-1).startTime`))
				pages = append(pages, page)
				var api struct {
					URL string  `json:"url"`
					MS  float64 `json:"ms"`
				}
				api = get(b, ctx, "resource timing", chromedp.Evaluate[struct {
					URL string  `json:"url"`
					MS  float64 `json:"ms"`
				}](`performance.getEntriesByType("resource").filter(e => e.name.includes("/v1/")).
					reduce((a, e) => e.duration > a.ms ? {url: e.name, ms: e.duration} : a, {url: "", ms: 0})`))
				if api.MS > slowestAPI {
					slowestAPI, slowestURL = api.MS, api.URL
				}
				b.StartTimer()
			}
			// Where the page's time goes, for the last load.
			b.Log(get(b, ctx, "timeline", chromedp.Evaluate[string](`(() => {
				const n = performance.getEntriesByType("navigation")[0];
				const r = performance.getEntriesByType("resource").map(e =>
					e.name.replace(location.origin, "").split("?")[0] + " " + e.startTime.toFixed(0) + "-" + e.responseEnd.toFixed(0) +
					(e.transferSize === 0 ? " (cached)" : ""));
				const m = performance.getEntriesByType("mark").map(e => e.name.replace("visage:", "") + " " + e.startTime.toFixed(0));
				return "document " + n.responseEnd.toFixed(0) + " domContentLoaded " + n.domContentLoadedEventEnd.toFixed(0) +
					" load " + n.loadEventEnd.toFixed(0) + " | " + r.join(", ") + " | marks " + m.join(", ");
			})()`)))
			// Moving to the page from another one inside the dashboard (a
			// link or the browser's back button: the hash changes, the
			// page's requests and drawing follow), untimed by b.
			b.StopTimer()
			from := "#/overview?c=big"
			if p.name == "overview" {
				from = "#/subjects?c=big"
			}
			var switches []float64
			for range 10 {
				switches = append(switches, get(b, ctx, "switch to "+p.name, chromedp.Evaluate[float64](
					fmt.Sprintf(switchScript, from, p.hash), chromedp.EvalAwaitPromise)))
			}
			b.StartTimer()
			slices.Sort(switches)
			b.ReportMetric(switches[len(switches)/2], "switch-ms-p50")
			b.ReportMetric(switches[len(switches)-1], "switch-ms-max")
			b.ReportMetric(float64(b.Elapsed().Milliseconds())/float64(b.N), "ms/op")
			b.Logf("%s: page ms in load order: %.0f", p.name, pages)
			slices.Sort(pages)
			b.ReportMetric(pages[len(pages)/2], "page-ms-p50")
			b.ReportMetric(pages[len(pages)-1], "page-ms-max")
			b.ReportMetric(slowestAPI, "api-ms-max")
			b.Logf("%s: slowest API request %.0f ms: %s", p.name, slowestAPI, slowestURL)
		})
	}
}

// switchScript goes to the first hash (%[1]q), then times the move to the
// second (%[2]q): from the hash change to the view drawn with its data.
const switchScript = `(async () => {
	const ready = (hash) => new Promise((resolve) => {
		const t0 = performance.now();
		const seen = new PerformanceObserver((list) => {
			for (const e of list.getEntries()) {
				if (e.name === "visage:view-ready" && e.startTime >= t0) {
					seen.disconnect();
					resolve(e.startTime - t0);
				}
			}
		});
		seen.observe({type: "mark"});
		location.hash = hash;
	});
	await ready(%[1]q);
	return ready(%[2]q);
})()`

// dashboardPageTimings are the pages timed, each shown with data of the
// big gallery.
func dashboardPageTimings(subjectID, jobID string) []pageTiming {
	return []pageTiming{
		{"overview", "#/overview?c=big", "#chart-identifications rect.bar"},
		{"subjects", "#/subjects?c=big", "tr.subject-row"},
		{"subject-search", "#/subjects?c=big&q=Person%2012345", `tr.subject-row[data-external-id="emp-012345"]`},
		{"subject", "#/subjects/big/" + subjectID, "tr.face-row"},
		{"events", "#/events", "tr.event-row"},
		{"imports", "#/imports?c=big", "tr.import-row"},
		{"import-job", "#/imports/big/" + jobID, "a#failures-csv"},
		{"keys", "#/keys", "tr.key-row"},
		{"try-it", "#/try?c=big", "#try-form"},
	}
}
