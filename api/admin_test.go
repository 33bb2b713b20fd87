package api_test

import (
	"net/http"
	"strings"
	"testing"

	"github.com/visage/visage/internal/testenv"
	"github.com/visage/visage/store"
)

func TestKeysAPI(t *testing.T) {
	h := newHarness(t, harnessOptions{})
	h.must(http.StatusCreated, http.MethodPost, "/v1/collections", h.admin, ptr(jsonBody(map[string]any{"name": "staff"})))

	type newKey struct {
		Key   store.APIKey `json:"key"`
		Token string       `json:"token"`
	}
	var made newKey
	h.must(http.StatusCreated, http.MethodPost, "/v1/admin/keys", h.admin,
		ptr(jsonBody(map[string]any{"name": "door camera", "role": "identify", "collection": "staff"}))).decode(t, &made)
	if made.Key.Name != "door camera" || made.Key.Role != store.RoleIdentify || made.Key.Collection != "staff" ||
		!strings.HasPrefix(made.Token, "vsk_"+made.Key.ID+"_") {
		t.Fatalf("created %+v", made)
	}

	t.Run("the token works with its role and scope", func(t *testing.T) {
		h.must(http.StatusOK, http.MethodGet, "/v1/collections/staff", made.Token, nil)
		h.must(http.StatusForbidden, http.MethodPost, "/v1/collections/staff/subjects", made.Token,
			ptr(jsonBody(map[string]any{"external_id": "x"})))
		h.must(http.StatusForbidden, http.MethodGet, "/v1/admin/keys", made.Token, nil)
	})

	t.Run("listed without secrets", func(t *testing.T) {
		r := h.must(http.StatusOK, http.MethodGet, "/v1/admin/keys", h.admin, nil)
		if strings.Contains(string(r.raw), made.Token) || strings.Contains(string(r.raw), "hash") {
			t.Errorf("the key list shows a secret: %s", r.raw)
		}
		var list struct {
			Keys []store.APIKey `json:"keys"`
		}
		r.decode(t, &list)
		found := false
		for _, k := range list.Keys {
			found = found || k.ID == made.Key.ID
		}
		if !found || len(list.Keys) < 2 {
			t.Errorf("keys %+v lack the new one", list.Keys)
		}
	})

	t.Run("refused", func(t *testing.T) {
		tests := []struct {
			name   string
			body   map[string]any
			status int
		}{
			{"no name", map[string]any{"role": "read"}, http.StatusBadRequest},
			{"unknown role", map[string]any{"name": "x", "role": "root"}, http.StatusBadRequest},
			{"unknown collection", map[string]any{"name": "x", "role": "read", "collection": "nowhere"}, http.StatusNotFound},
		}
		for _, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				h.must(tt.status, http.MethodPost, "/v1/admin/keys", h.admin, ptr(jsonBody(tt.body)))
			})
		}
		scoped := h.newKey(store.RoleAdmin, "staff")
		h.must(http.StatusForbidden, http.MethodPost, "/v1/admin/keys", scoped, ptr(jsonBody(map[string]any{"name": "escape", "role": "admin"})))
		h.must(http.StatusForbidden, http.MethodGet, "/v1/admin/keys", scoped, nil)
		h.must(http.StatusNotFound, http.MethodDelete, "/v1/admin/keys/nosuchkey", h.admin, nil)
	})

	t.Run("revoke", func(t *testing.T) {
		h.must(http.StatusNoContent, http.MethodDelete, "/v1/admin/keys/"+made.Key.ID, h.admin, nil)
		h.must(http.StatusUnauthorized, http.MethodGet, "/v1/collections/staff", made.Token, nil)
		var events struct {
			Events []store.Event `json:"events"`
		}
		h.must(http.StatusOK, http.MethodGet, "/v1/admin/events?kind=key", h.admin, nil).decode(t, &events)
		outcomes := map[string]bool{}
		for _, e := range events.Events {
			if strings.Contains(string(e.Detail), made.Key.ID) {
				outcomes[e.Outcome] = true
			}
		}
		if !outcomes["created"] || !outcomes["revoked"] {
			t.Errorf("audit events of the key: %v, want created and revoked", outcomes)
		}
	})
}

func TestIdentificationStatsAPI(t *testing.T) {
	h := newHarness(t, harnessOptions{})
	h.enrolledGallery()
	// Two identifications: penny alone (one face, a match) and the group
	// photo (several faces).
	single := h.identify("bbt", portrait(t, "penny", 5))
	group := h.identify("bbt", testenv.ReadShared(t, "testdata/faces/bbt/bbt1.jpg"))
	faces := len(single.Faces) + len(group.Faces)

	var st struct {
		Hours []struct {
			Count int64 `json:"count"`
			Faces int64 `json:"faces"`
		} `json:"hours"`
		Threshold float64 `json:"threshold"`
		BinWidth  float64 `json:"bin_width"`
		Distances []struct {
			From  float64 `json:"from"`
			Count int64   `json:"count"`
		} `json:"distances"`
		Identifications int64 `json:"identifications"`
		Faces           int64 `json:"faces"`
	}
	h.must(http.StatusOK, http.MethodGet, "/v1/admin/collections/bbt/identifications?hours=2", h.admin, nil).decode(t, &st)
	if st.Identifications != 2 || st.Faces != int64(faces) || len(st.Hours) == 0 {
		t.Fatalf("stats %+v, want 2 identifications of %d faces", st, faces)
	}
	var binned int64
	for _, b := range st.Distances {
		binned += b.Count
	}
	if binned != int64(faces) || st.BinWidth != 0.05 || st.Threshold <= 0 {
		t.Errorf("%d distances binned (width %v, threshold %v), want one per face: %d", binned, st.BinWidth, st.Threshold, faces)
	}
	// Penny's photo matched, so a distance under the threshold is counted.
	if len(single.Faces) != 1 || single.Faces[0].Match == nil {
		t.Fatalf("penny5.png: %+v, want one matched face", single.Faces)
	}
	var under int64
	for _, b := range st.Distances {
		if b.From < st.Threshold {
			under += b.Count
		}
	}
	if under == 0 {
		t.Errorf("no distance under the threshold %v: %+v", st.Threshold, st.Distances)
	}
	h.must(http.StatusForbidden, http.MethodGet, "/v1/admin/collections/bbt/identifications", h.newKey(store.RoleRead, ""), nil)
	h.must(http.StatusNotFound, http.MethodGet, "/v1/admin/collections/nowhere/identifications", h.admin, nil)
	h.must(http.StatusBadRequest, http.MethodGet, "/v1/admin/collections/bbt/identifications?hours=0", h.admin, nil)
}
