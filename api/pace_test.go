package api

import (
	"bytes"
	"context"
	"net/http"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/cdcaudit/cdcaudit/access"
	"github.com/cdcaudit/cdcaudit/sink"
)

// watchedPacer counts the works it ran; watchedStore fails a test when the
// store is queried outside one of them.
type watchedPacer struct {
	mu     sync.Mutex
	inside int
	works  atomic.Int64
}

func (p *watchedPacer) Do(_ context.Context, work func() error) error {
	p.works.Add(1)
	p.mu.Lock()
	p.inside++
	p.mu.Unlock()
	defer func() { p.mu.Lock(); p.inside--; p.mu.Unlock() }()
	return work()
}

type watchedStore struct {
	*sink.Store
	pace    *watchedPacer
	outside atomic.Int64
	queries atomic.Int64
}

func (s *watchedStore) Query(ctx context.Context, q sink.Query, fn func(key, record []byte) error) (string, error) {
	s.queries.Add(1)
	s.pace.mu.Lock()
	in := s.pace.inside > 0
	s.pace.mu.Unlock()
	if !in {
		s.outside.Add(1)
	}
	return s.Store.Query(ctx, q, fn)
}

// TestEveryReadIsPaced: each read of events the API makes, and the writing
// of each page of an export, runs through the pacer that gives recording
// priority (readpace).
func TestEveryReadIsPaced(t *testing.T) {
	f := newFixture(t)
	pace := &watchedPacer{}
	st := &watchedStore{Store: f.store, pace: pace}
	h, err := New(Options{Sources: []Source{{Name: "odoo", Store: st, Signer: f.key}}, Now: func() time.Time { return f.now }, Pace: pace})
	if err != nil {
		t.Fatal(err)
	}
	as := func(r *http.Request) *http.Request { return r.WithContext(access.NewContext(r.Context(), admin)) }
	for _, target := range []string{
		"/api/v1/events?limit=2",
		"/api/v1/events/count",
		"/api/v1/summaries/changes?since=2026-11-23T00:00:00Z&until=2026-11-24T00:00:00Z",
		"/api/v1/summaries/users?since=2026-11-23T00:00:00Z&until=2026-11-24T00:00:00Z",
		"/api/v1/users",
	} {
		if a := serve(h, as(newGet(target))); a.status != http.StatusOK {
			t.Fatalf("%s: %d %s", target, a.status, a.body)
		}
	}
	defer func(n int) { exportPageEvents = n }(exportPageEvents)
	exportPageEvents = 2
	before := pace.works.Load()
	e := exportOver(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { h.ServeHTTP(w, as(r)) }), "/api/v1/export?format=jsonl")
	if e.status != http.StatusOK || e.readErr != nil {
		t.Fatalf("export: %d %v", e.status, e.readErr)
	}
	if st.queries.Load() == 0 {
		t.Fatal("no query reached the store")
	}
	if n := st.outside.Load(); n != 0 {
		t.Fatalf("%d of %d store queries ran outside the pacer", n, st.queries.Load())
	}
	// Two events a page: each page is read in one paced work and written in
	// another.
	events := int64(bytes.Count(e.body, []byte("\n")))
	if works := pace.works.Load() - before; works < events {
		t.Fatalf("export of %d events in pages of 2 ran %d paced works, want at least %d (reading and writing each page)", events, works, events)
	}
}
