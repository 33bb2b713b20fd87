package api

import (
	"context"
	"io"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/visage/visage/store"
)

type fixedStats map[string]store.CollectionStats

func (f fixedStats) ListCollections(context.Context) ([]store.Collection, error) {
	var out []store.Collection
	for name := range f {
		out = append(out, store.Collection{Name: name})
	}
	return out, nil
}

func (f fixedStats) CollectionStats(_ context.Context, name string) (store.CollectionStats, error) {
	return f[name], nil
}

// TestGalleryMetricsLabels: with collection labels turned off, the gallery
// gauges are totals and no collection name reaches the scraper.
func TestGalleryMetricsLabels(t *testing.T) {
	src := fixedStats{"secret-project": {Subjects: 2, Faces: 3}, "staff": {Subjects: 4, Faces: 5, PendingFaces: 1}}
	scrape := func(perCollection bool) string {
		rec := httptest.NewRecorder()
		NewMetrics(src, perCollection, quietLog()).Handler().ServeHTTP(rec, httptest.NewRequest("GET", "/metrics", nil))
		b, _ := io.ReadAll(rec.Body)
		return string(b)
	}
	for _, tc := range []struct {
		perCollection bool
		want, absent  []string
	}{
		{true, []string{`visage_gallery_faces{collection="secret-project"} 3`, `visage_gallery_subjects{collection="staff"} 4`}, nil},
		{false, []string{"visage_gallery_faces 8", "visage_gallery_subjects 6", "visage_gallery_pending_faces 1"}, []string{"secret-project", "collection="}},
	} {
		m := scrape(tc.perCollection)
		for _, w := range tc.want {
			if !strings.Contains(m, w) {
				t.Errorf("perCollection=%v: no %q", tc.perCollection, w)
			}
		}
		for _, a := range tc.absent {
			if strings.Contains(m, a) {
				t.Errorf("perCollection=%v: %q exported", tc.perCollection, a)
			}
		}
	}
}
