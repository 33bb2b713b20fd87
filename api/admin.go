package api

import (
	"context"
	"encoding/json"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/gin-gonic/gin"

	"github.com/visage/visage/gallery"
	"github.com/visage/visage/store"
)

// keyAdmin refuses key management to a collection-scoped admin key: it
// could otherwise create an unscoped admin key and leave its scope.
func keyAdmin(c *gin.Context) {
	if key(c).Collection != "" {
		fail(c, newProblem(TypeForbidden, "a collection-scoped key may not manage keys"))
		return
	}
	c.Next()
}

func (s *Server) listKeys(c *gin.Context) {
	keys, err := s.keys.ListKeys(c.Request.Context())
	if err != nil {
		s.failErr(c, err)
		return
	}
	if keys == nil {
		keys = []store.APIKey{}
	}
	c.JSON(http.StatusOK, gin.H{"keys": keys})
}

// createKey makes a key and answers its token, the only time it is shown:
// the store keeps its hash.
func (s *Server) createKey(c *gin.Context) {
	var req struct {
		Name       string     `json:"name"`
		Role       store.Role `json:"role"`
		Collection string     `json:"collection"`
	}
	if err := c.ShouldBindJSON(&req); err != nil {
		s.failErr(c, bodyError(err, `a JSON object {"name", "role", "collection"}: `))
		return
	}
	req.Name = strings.TrimSpace(req.Name)
	switch {
	case gallery.CheckKeyName(req.Name) != nil:
		s.failErr(c, gallery.CheckKeyName(req.Name))
		return
	case !req.Role.Valid():
		s.failErr(c, invalid("role", "admin, enroll, identify or read"))
		return
	}
	ctx := c.Request.Context()
	if req.Collection != "" {
		if _, err := s.svc().Store().GetCollection(ctx, req.Collection); err != nil {
			s.failErr(c, err)
			return
		}
	}
	id, token := NewKeyToken()
	k, err := s.keys.CreateKey(ctx, store.APIKey{ID: id, Name: req.Name, Hash: HashToken(token), Role: req.Role, Collection: req.Collection})
	if err != nil {
		s.failErr(c, err)
		return
	}
	s.auditKey(ctx, c, "created", k)
	c.JSON(http.StatusCreated, gin.H{"key": k, "token": token})
}

func (s *Server) revokeKey(c *gin.Context) {
	ctx := c.Request.Context()
	k, err := s.keys.GetKey(ctx, c.Param("id"))
	if err != nil {
		s.failErr(c, err)
		return
	}
	if err := s.keys.RevokeKey(ctx, k.ID); err != nil {
		s.failErr(c, err)
		return
	}
	s.auditKey(ctx, c, "revoked", k)
	c.Status(http.StatusNoContent)
}

// auditKey records a change of keys in the audit trail.
func (s *Server) auditKey(ctx context.Context, c *gin.Context, outcome string, k store.APIKey) {
	detail, _ := json.Marshal(map[string]any{"key": k.ID, "name": k.Name, "role": k.Role, "collection": k.Collection})
	if _, err := s.svc().Store().AppendEvent(context.WithoutCancel(ctx), store.Event{Kind: store.EventKey, KeyID: key(c).ID,
		Collection: k.Collection, Outcome: outcome, Detail: detail}); err != nil {
		s.log.ErrorContext(ctx, "append audit event", "kind", "key", "err", err)
	}
}

// identifications answers a collection's identifications per UTC hour over
// the last hours (the current one included) and the distribution of the
// best candidate's distance, with the collection's threshold, from the
// audit trail.
func (s *Server) identifications(c *gin.Context) {
	hours := 48
	if v := c.Query("hours"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > 24*366 {
			s.failErr(c, invalid("hours", "an integer in [1, 8784]"))
			return
		}
		hours = n
	}
	ctx := c.Request.Context()
	coll, err := s.svc().Collection(ctx, c.Param("name"))
	if err != nil {
		s.failErr(c, err)
		return
	}
	since := time.Now().UTC().Truncate(time.Hour).Add(-time.Duration(hours-1) * time.Hour)
	st, err := s.svc().Store().IdentificationStats(ctx, coll.Name, since)
	if err != nil {
		s.failErr(c, err)
		return
	}
	if st.Hours == nil {
		st.Hours = []store.HourCount{}
	}
	if st.Distances == nil {
		st.Distances = []store.DistanceBin{}
	}
	d := toDecision(coll.Operating, coll.Calibration)
	c.JSON(http.StatusOK, gin.H{"since": since, "hours": st.Hours, "threshold": d.Threshold, "decision": d, "bin_width": store.DistanceBinWidth,
		"distances": st.Distances, "identifications": st.Identifications, "faces": st.Faces})
}
