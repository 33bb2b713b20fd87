package api

import (
	"context"
	"errors"
	"log/slog"
	"net/http"
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/visage/visage/gallery"
	"github.com/visage/visage/store"
)

// StatsSource lists collections and their sizes for the gallery gauges.
type StatsSource interface {
	ListCollections(ctx context.Context) ([]store.Collection, error)
	CollectionStats(ctx context.Context, name string) (store.CollectionStats, error)
}

// Metrics are visaged's Prometheus metrics, on a registry of their own.
type Metrics struct {
	reg      *prometheus.Registry
	requests *prometheus.HistogramVec
	stages   *prometheus.HistogramVec
}

// NewMetrics registers the request, engine-stage, process and gallery
// metrics; gallery sizes are read from src at each scrape, one series per
// collection when perCollection is set, else totals over all collections
// (collection names can be sensitive: a scraper then learns none).
func NewMetrics(src StatsSource, perCollection bool, log *slog.Logger) *Metrics {
	reg := prometheus.NewRegistry()
	m := &Metrics{
		reg: reg,
		requests: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "visage_http_request_duration_seconds",
			Help:    "HTTP request latency by route, method and status.",
			Buckets: []float64{.005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10},
		}, []string{"route", "method", "status"}),
		stages: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "visage_engine_stage_seconds",
			Help:    "Face engine time per image by stage (decode, detect, align, embed, search).",
			Buckets: []float64{.001, .0025, .005, .01, .025, .05, .1, .25, .5, 1},
		}, []string{"stage"}),
	}
	reg.MustRegister(m.requests, m.stages, collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	if src != nil {
		reg.MustRegister(&galleryCollector{src: src, perCollection: perCollection, log: log})
	}
	return m
}

// Handler serves the metrics.
func (m *Metrics) Handler() http.Handler {
	return promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{})
}

func (m *Metrics) observeRequest(method, route string, status int, d time.Duration) {
	m.requests.WithLabelValues(route, method, strconv.Itoa(status)).Observe(d.Seconds())
}

// ObserveTimings records one image's engine stages.
func (m *Metrics) ObserveTimings(t gallery.Timings) {
	if m == nil {
		return
	}
	m.stages.WithLabelValues("decode").Observe(t.Decode.Seconds())
	m.stages.WithLabelValues("detect").Observe(t.Detect.Seconds())
	m.stages.WithLabelValues("align").Observe(t.Align.Seconds())
	m.stages.WithLabelValues("embed").Observe(t.Embed.Seconds())
}

func (m *Metrics) observeSearch(d time.Duration) {
	if m == nil {
		return
	}
	m.stages.WithLabelValues("search").Observe(d.Seconds())
}

// galleryDescs are the gallery gauges, by collection or in total.
func galleryDescs(perCollection bool) (subjects, faces, pending *prometheus.Desc) {
	var labels []string
	of := "over all collections"
	if perCollection {
		labels, of = []string{"collection"}, "per collection"
	}
	return prometheus.NewDesc("visage_gallery_subjects", "Subjects "+of+".", labels, nil),
		prometheus.NewDesc("visage_gallery_faces", "Enrolled faces "+of+".", labels, nil),
		prometheus.NewDesc("visage_gallery_pending_faces", "Faces not yet confirmed in the vector index, "+of+".", labels, nil)
}

// galleryCollector reads gallery sizes at scrape time.
type galleryCollector struct {
	src           StatsSource
	perCollection bool
	log           *slog.Logger
}

func (g *galleryCollector) Describe(ch chan<- *prometheus.Desc) {
	subjects, faces, pending := galleryDescs(g.perCollection)
	ch <- subjects
	ch <- faces
	ch <- pending
}

func (g *galleryCollector) Collect(ch chan<- prometheus.Metric) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	colls, err := g.src.ListCollections(ctx)
	if err != nil {
		g.log.Warn("collect gallery metrics", "err", err)
		return
	}
	subjectsDesc, facesDesc, pendingDesc := galleryDescs(g.perCollection)
	var total store.CollectionStats
	for _, c := range colls {
		st, err := g.src.CollectionStats(ctx, c.Name)
		if errors.Is(err, store.ErrNotFound) {
			continue
		}
		if err != nil {
			g.log.Warn("collect gallery metrics", "collection", c.Name, "err", err)
			return
		}
		if !g.perCollection {
			total.Subjects += st.Subjects
			total.Faces += st.Faces
			total.PendingFaces += st.PendingFaces
			continue
		}
		ch <- prometheus.MustNewConstMetric(subjectsDesc, prometheus.GaugeValue, float64(st.Subjects), c.Name)
		ch <- prometheus.MustNewConstMetric(facesDesc, prometheus.GaugeValue, float64(st.Faces), c.Name)
		ch <- prometheus.MustNewConstMetric(pendingDesc, prometheus.GaugeValue, float64(st.PendingFaces), c.Name)
	}
	if !g.perCollection {
		ch <- prometheus.MustNewConstMetric(subjectsDesc, prometheus.GaugeValue, float64(total.Subjects))
		ch <- prometheus.MustNewConstMetric(facesDesc, prometheus.GaugeValue, float64(total.Faces))
		ch <- prometheus.MustNewConstMetric(pendingDesc, prometheus.GaugeValue, float64(total.PendingFaces))
	}
}
