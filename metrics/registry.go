package metrics

import (
	"fmt"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// Registry is the process's registry: the Go runtime, process and
// build-info collectors once, and the Metrics of each source.
type Registry struct {
	reg *prometheus.Registry
	now func() time.Time

	mu      sync.Mutex
	sources []*Metrics
}

// NewRegistry returns a registry with the process's collectors and no
// source yet.
func NewRegistry() *Registry { return newRegistry(time.Now) }

func newRegistry(now func() time.Time) *Registry {
	r := &Registry{reg: prometheus.NewRegistry(), now: now}
	r.reg.MustRegister(
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
		collectors.NewBuildInfoCollector(),
	)
	return r
}

// Source adds the Metrics of one source: its series carry the label
// source=name ("": none, for a process with one unnamed source). A name
// given twice panics, as registering a collector twice does.
func (r *Registry) Source(name string) *Metrics {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, m := range r.sources {
		if m.source == name {
			panic(fmt.Sprintf("metrics: source %q registered twice", name))
		}
	}
	m := newSource(r.reg, name, r.now)
	r.sources = append(r.sources, m)
	return m
}

func (r *Registry) list() []*Metrics {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]*Metrics(nil), r.sources...)
}

// Gatherer returns the registry itself, for tests and further collectors.
func (r *Registry) Gatherer() *prometheus.Registry { return r.reg }

// Handler serves every source's series in the Prometheus exposition
// formats.
func (r *Registry) Handler() http.Handler { return handler(r.reg) }

func handler(reg *prometheus.Registry) http.Handler {
	return promhttp.HandlerFor(reg, promhttp.HandlerOpts{
		Registry:          reg, // promhttp_metric_handler_errors_total
		EnableOpenMetrics: true,
	})
}

// Behind reports whether any source's ingest is working through a backlog
// (Metrics.Behind): readers of any store give way to recording then.
func (r *Registry) Behind() bool {
	for _, m := range r.list() {
		if m.Behind() {
			return true
		}
	}
	return false
}

// Healthy reports whether every source is healthy. With one source the
// reason is its own (Metrics.Healthy); with several it is one line per
// source, "name: reason", so a 503 names the sources that are not.
func (r *Registry) Healthy() (ok bool, reason string) {
	list := r.list()
	if len(list) == 1 {
		return list[0].Healthy()
	}
	ok = true
	lines := make([]string, 0, len(list))
	for _, m := range list {
		good, why := m.Healthy()
		ok = ok && good
		lines = append(lines, m.source+": "+why)
	}
	return ok, strings.Join(lines, "\n")
}

// HealthHandler serves Healthy: 200 with the reason, or 503 with it.
func (r *Registry) HealthHandler() http.Handler { return healthHandler(r.Healthy) }

func healthHandler(healthy func() (bool, string)) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		ok, reason := healthy()
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		w.Header().Set("Cache-Control", "no-store")
		if !ok {
			w.WriteHeader(http.StatusServiceUnavailable)
		}
		if req.Method != http.MethodHead {
			fmt.Fprintln(w, reason)
		}
	})
}
