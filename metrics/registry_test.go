package metrics

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
)

// Two sources in one registry: each series carries its source, the
// process's collectors are there once, and /metrics serves both.
func TestRegistrySources(t *testing.T) {
	c := &clock{t: time.Date(2026, 11, 23, 13, 0, 0, 0, time.UTC)}
	r := newRegistry(c.now)
	a, b := r.Source("erp_a"), r.Source("erp.b")
	a.AddEvents("public", "sale_order", "insert", 3)
	b.AddEvents("public", "sale_order", "insert", 2)
	a.AddTransactions(1)
	want := `
# HELP cdcaudit_events_total Row events (insert, update, delete, truncate) stored, by table and operation.
# TYPE cdcaudit_events_total counter
cdcaudit_events_total{op="insert",schema="public",source="erp.b",table="sale_order"} 2
cdcaudit_events_total{op="insert",schema="public",source="erp_a",table="sale_order"} 3
# HELP cdcaudit_transactions_total Transactions whose events are durable in the store.
# TYPE cdcaudit_transactions_total counter
cdcaudit_transactions_total{source="erp.b"} 0
cdcaudit_transactions_total{source="erp_a"} 1
`
	if err := testutil.GatherAndCompare(r.Gatherer(), strings.NewReader(want), "cdcaudit_events_total", "cdcaudit_transactions_total"); err != nil {
		t.Fatal(err)
	}
	mfs, err := r.Gatherer().Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		name := mf.GetName()
		for _, m := range mf.GetMetric() {
			src := ""
			for _, l := range m.GetLabel() {
				if l.GetName() == "source" {
					src = l.GetValue()
				}
			}
			if strings.HasPrefix(name, "cdcaudit_") && src == "" {
				t.Errorf("%s has a series without source", name)
			}
			if !strings.HasPrefix(name, "cdcaudit_") && src != "" {
				t.Errorf("%s (a process series) carries source %q", name, src)
			}
		}
	}
	goSeries := 0
	for _, mf := range mfs {
		if mf.GetName() == "go_goroutines" {
			goSeries = len(mf.GetMetric())
		}
	}
	if goSeries != 1 {
		t.Errorf("go_goroutines has %d series, want 1", goSeries)
	}
	rec := httptest.NewRecorder()
	r.Handler().ServeHTTP(rec, httptest.NewRequest("GET", "/metrics", nil))
	if body := rec.Body.String(); !strings.Contains(body, `source="erp_a"`) || !strings.Contains(body, `source="erp.b"`) {
		t.Errorf("/metrics lacks a source:\n%.2000s", body)
	}

	defer func() {
		if recover() == nil {
			t.Error("a source registered twice did not panic")
		}
	}()
	r.Source("erp_a")
}

// /healthz with several sources: 503 when any is unhealthy, naming it.
func TestRegistryHealth(t *testing.T) {
	c := &clock{t: time.Date(2026, 11, 23, 13, 0, 0, 0, time.UTC)}
	r := newRegistry(c.now)
	a, b := r.Source("erp_a"), r.Source("erp_b")
	a.SetConnected(true)
	b.SetConnected(true)
	get := func() (int, string) {
		rec := httptest.NewRecorder()
		r.HealthHandler().ServeHTTP(rec, httptest.NewRequest("GET", "/healthz", nil))
		return rec.Code, rec.Body.String()
	}
	if code, body := get(); code != http.StatusOK || body != "erp_a: ok\nerp_b: ok\n" {
		t.Fatalf("healthy: %d %q", code, body)
	}
	b.SlotStatus("lost", 0, 0)
	if code, body := get(); code != http.StatusServiceUnavailable || !strings.Contains(body, "erp_b: replication slot wal_status is lost") ||
		!strings.Contains(body, "erp_a: ok") {
		t.Fatalf("erp_b lost: %d %q", code, body)
	}
	if r.Behind() {
		t.Error("behind with no backlog")
	}
	a.SetConnected(true)
	a.ServerWALEnd(BehindBytes * 2)
	if !r.Behind() {
		t.Error("not behind while erp_a has a backlog")
	}

	// One source: its own reason, unprefixed (as before sources existed).
	one := newRegistry(c.now)
	m := one.Source("erp")
	m.SetConnected(true)
	rec := httptest.NewRecorder()
	one.HealthHandler().ServeHTTP(rec, httptest.NewRequest("GET", "/healthz", nil))
	if rec.Code != http.StatusOK || rec.Body.String() != "ok\n" {
		t.Fatalf("one source: %d %q", rec.Code, rec.Body.String())
	}
}
