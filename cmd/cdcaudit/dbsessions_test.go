package main

import (
	"encoding/json"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/cdcaudit/cdcaudit/dbsessions"
	"github.com/cdcaudit/cdcaudit/sink"
)

// dbSessionsStore is a store holding, as the sampler stores them, an open
// psql session, an open script whose application_name carries a terminal
// escape, and a closed pgAdmin session.
func dbSessionsStore(t *testing.T) (dir string, ids []string) {
	t.Helper()
	t0 := time.Date(2026, 11, 23, 9, 0, 0, 0, time.UTC)
	at := func(m int) *time.Time { x := t0.Add(time.Duration(m) * time.Minute); return &x }
	list := []dbsessions.Session{
		{PID: 4242, Role: "odoo", Client: "192.0.2.50", Application: "psql", Start: *at(5), State: "idle", StateChange: at(69)},
		{PID: 5151, Role: "report", Client: dbsessions.Local, Application: "nightly\x1b[31m", Start: *at(100), State: "active", StateChange: at(101)},
		{PID: 777, Role: "postgres", Client: "2001:db8::7", Application: "pgAdmin 4", Start: *at(1), State: "idle", Closed: at(20)},
	}
	dir = t.TempDir()
	store, err := sink.Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	var b sink.Batch
	for i := range list {
		s := &list[i]
		s.ID = dbsessions.SessionID(s.PID, s.Start)
		v, _ := json.Marshal(s)
		b.State = append(b.State, sink.StateRecord{Bucket: dbsessions.Bucket, Key: s.ID, Value: v})
	}
	if _, err := store.Append([]sink.Batch{b}); err != nil {
		t.Fatal(err)
	}
	store.Close()
	return dir, []string{list[1].ID, list[0].ID, list[2].ID}
}

func TestSessionsDB(t *testing.T) {
	fixNow(t, time.Date(2026, 11, 23, 12, 0, 0, 0, time.UTC))
	dir, ids := dbSessionsStore(t)
	out, errOut, code := runCLI(t, nil, "sessions", "--data-dir", dir, "--db")
	if code != exitOK || errOut != "" {
		t.Fatalf("exit %d: %s", code, errOut)
	}
	lines := strings.Split(out, "\n")
	if !strings.HasPrefix(lines[0], "SESSION") || !strings.Contains(lines[0], "APPLICATION") {
		t.Fatalf("header: %q", lines[0])
	}
	for i, id := range ids {
		if !strings.HasPrefix(lines[i+1], id+" ") {
			t.Errorf("line %d: %q, want %s first", i+1, lines[i+1], id)
		}
	}
	if !strings.Contains(lines[2], "psql") || !strings.Contains(lines[2], "192.0.2.50") || !strings.HasSuffix(strings.TrimSpace(lines[2]), "open") ||
		!strings.Contains(lines[3], "2026-11-23 09:20:00") {
		t.Errorf("table:\n%s", out)
	}
	if strings.Contains(out, "\x1b") {
		t.Errorf("a terminal escape from the database reached the table:\n%q", out)
	}
	if !strings.Contains(out, "3 database sessions: 2 open, 1 closed") {
		t.Errorf("summary:\n%s", out)
	}

	out, _, _ = runCLI(t, nil, "sessions", "--data-dir", dir, "--db", "--active", "--format", "json")
	var list []dbsessions.Session
	if err := json.Unmarshal([]byte(out), &list); err != nil {
		t.Fatalf("json: %v\n%s", err, out)
	}
	var got []string
	for _, s := range list {
		got = append(got, s.ID)
	}
	if !slices.Equal(got, ids[:2]) || list[1].Application != "psql" || list[0].Client != "local" {
		t.Errorf("--active json: %s", out)
	}

	if _, errOut, code := runCLI(t, nil, "sessions", "--data-dir", dir, "--db", "--user", "alice"); code != exitUsage || !strings.Contains(errOut, "--user") {
		t.Errorf("--db --user: exit %d %s", code, errOut)
	}
	empty := t.TempDir()
	if s, err := sink.Open(empty); err != nil {
		t.Fatal(err)
	} else {
		s.Close()
	}
	if out, _, code := runCLI(t, nil, "sessions", "--data-dir", empty, "--db", "--format", "json"); code != exitOK || strings.TrimSpace(out) != "[]" {
		t.Errorf("empty store json: %d %q", code, out)
	}
}
