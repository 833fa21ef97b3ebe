package api

import (
	"encoding/json"
	"net/http"
	"slices"
	"testing"
	"time"

	"github.com/cdcaudit/cdcaudit/access"
	"github.com/cdcaudit/cdcaudit/dbsessions"
	"github.com/cdcaudit/cdcaudit/sink"
)

// addDBSessions stores, as the sampler does, three database sessions: two
// open (psql, then a later script), one closed (pgAdmin). It returns their
// ids in the list's order.
func addDBSessions(t testing.TB, store *sink.Store) []string {
	t.Helper()
	at := func(m int) *time.Time { x := t0.Add(time.Duration(m) * time.Minute); return &x }
	list := []dbsessions.Session{
		{PID: 4242, Role: "odoo", Client: "192.0.2.50", Application: "psql", Start: *at(5), State: "idle", StateChange: at(69)},
		{PID: 5151, Role: "report", Client: dbsessions.Local, Application: "nightly \x1b[31mscript", Start: *at(100), State: "active", StateChange: at(101)},
		{PID: 777, Role: "postgres", Client: "2001:db8::7", Application: "pgAdmin 4", Start: *at(1), State: "idle", StateChange: at(2), Closed: at(20)},
	}
	var b sink.Batch
	var ids []string
	for i := range list {
		s := &list[i]
		s.ID = dbsessions.SessionID(s.PID, s.Start)
		v, err := json.Marshal(s)
		if err != nil {
			t.Fatal(err)
		}
		b.State = append(b.State, sink.StateRecord{Bucket: dbsessions.Bucket, Key: s.ID, Value: v})
	}
	if _, err := store.Append([]sink.Batch{b}); err != nil {
		t.Fatal(err)
	}
	for _, i := range []int{1, 0, 2} {
		ids = append(ids, list[i].ID)
	}
	return ids
}

type dbSessionsPage struct {
	Sessions   []dbsessions.Session `json:"db_sessions"`
	NextCursor string               `json:"next_cursor"`
}

func (p dbSessionsPage) ids() []string {
	var out []string
	for _, s := range p.Sessions {
		out = append(out, s.ID)
	}
	return out
}

// Admins and viewers list the database sessions, open first, a page at a
// time and by state; a self principal is refused.
func TestDBSessionsRoute(t *testing.T) {
	f := newFixture(t)
	var empty dbSessionsPage
	if a := f.get(t, &admin, "/api/v1/db-sessions"); a.status != 200 {
		t.Fatalf("no sessions stored: %d %s", a.status, a.body)
	} else if a.json(t, &empty); empty.Sessions == nil || len(empty.Sessions) != 0 || empty.NextCursor != "" {
		t.Fatalf("no sessions stored: %s", a.body)
	}
	ids := addDBSessions(t, f.store)
	for _, p := range []*access.Principal{&admin, &viewer} {
		var all dbSessionsPage
		a := f.get(t, p, "/api/v1/db-sessions")
		a.json(t, &all)
		if a.status != 200 || !slices.Equal(all.ids(), ids) || all.NextCursor != "" {
			t.Errorf("as %v: %d %v, want %v", p, a.status, all.ids(), ids)
		}
	}
	var walked []string
	for target := "/api/v1/db-sessions?limit=1"; ; {
		var pg dbSessionsPage
		f.get(t, &admin, target).json(t, &pg)
		walked = append(walked, pg.ids()...)
		if pg.NextCursor == "" {
			break
		}
		target = "/api/v1/db-sessions?limit=1&cursor=" + pg.NextCursor
	}
	if !slices.Equal(walked, ids) {
		t.Errorf("paged: %v, want %v", walked, ids)
	}
	for state, want := range map[string][]string{"open": ids[:2], "closed": ids[2:]} {
		var pg dbSessionsPage
		f.get(t, &viewer, "/api/v1/db-sessions?state="+state).json(t, &pg)
		if !slices.Equal(pg.ids(), want) {
			t.Errorf("state=%s: %v, want %v", state, pg.ids(), want)
		}
	}
	for target, status := range map[string]int{"/api/v1/db-sessions?state=ended": 400, "/api/v1/db-sessions?cursor=x": 400} {
		if a := f.get(t, &admin, target); a.status != status {
			t.Errorf("%s: %d, want %d", target, a.status, status)
		}
	}
	if a := f.get(t, &self, "/api/v1/db-sessions"); a.status != http.StatusForbidden {
		t.Errorf("self: %d %s, want 403", a.status, a.body)
	}
}
