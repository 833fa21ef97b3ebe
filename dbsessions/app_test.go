package dbsessions

import (
	"fmt"
	"io"
	"log/slog"
	"testing"
	"time"
)

func TestAppMatcher(t *testing.T) {
	m, err := App{Roles: []string{"odoo"}, Names: []string{"odoo-*"}, Addrs: []string{"10.0.3.0/24", "::ffff:192.0.2.9", "local"}}.matcher()
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		role, name, client string
		want               bool
	}{
		{"odoo", "odoo-28896", "10.0.3.7", true},
		{"odoo", "odoo-28896", "192.0.2.9", true}, // an IPv4-mapped prefix matches the plain address
		{"odoo", "odoo-28896", Local, true},
		{"odoo", "psql", "10.0.3.7", false},      // the DBA, as odoo, from the app server
		{"odoo", "odoo-1", "203.0.113.5", false}, // calls itself odoo, from elsewhere
		{"admin", "odoo-1", "10.0.3.7", false},
		{"odoo", "odoo-1", "not an address", false},
	} {
		if got := m.owns(c.role, c.name, c.client); got != c.want {
			t.Errorf("owns(%q, %q, %q) = %v", c.role, c.name, c.client, got)
		}
	}
	any, _ := App{Names: DefaultAppNames}.matcher()
	if !any.owns("whoever", "odoo-3", "198.51.100.1") || any.owns("odoo", "", Local) {
		t.Error("the default: any role and address named odoo-*")
	}
	if err := (App{}).Validate(); err == nil {
		t.Error("no list at all: every session the application's")
	}
	for _, bad := range []string{"10.0.0.0/33", "host.example", ""} {
		if ValidateAppAddr(bad) == nil {
			t.Errorf("address %q accepted", bad)
		}
	}
	if ValidateAppName("odoo-[") == nil || ValidateAppName("") == nil || ValidateInterval(500*time.Millisecond) == nil || ValidateInterval(0) != nil {
		t.Error("validation")
	}
}

// The book never keeps more than MaxSessions: the closed sessions that
// closed first go; open sessions beyond it are not kept.
func TestDiffBoundsTheSessionsKept(t *testing.T) {
	t0 := time.Date(2026, 11, 23, 9, 0, 0, 0, time.UTC)
	b := NewBook()
	s := &Sampler{book: b, opts: Options{Log: slog.New(slog.NewTextHandler(io.Discard, nil))}}
	mk := func(pid int, closedAt int) *Session {
		x := &Session{PID: int32(pid), Role: "r", Client: Local, Start: t0}
		x.ID = SessionID(x.PID, x.Start)
		if closedAt > 0 {
			c := t0.Add(time.Duration(closedAt) * time.Second)
			x.Closed = &c
		}
		return x
	}
	for i := 1; i <= MaxSessions; i++ {
		b.sessions[mk(i, i).ID] = mk(i, i) // closed at t0+i s
	}
	var seen []Session
	for i := 0; i < 3; i++ {
		seen = append(seen, *mk(MaxSessions+1+i, 0))
	}
	u := s.diff(t0.Add(time.Hour), seen)
	b.apply(u)
	if len(b.sessions) != MaxSessions {
		t.Fatalf("%d kept", len(b.sessions))
	}
	for i := 1; i <= 3; i++ {
		if _, ok := b.sessions[mk(i, i).ID]; ok {
			t.Errorf("session closed %ds after t0 still kept", i)
		}
	}
	if fmt.Sprint(u.dropped) != fmt.Sprint([]string{mk(1, 1).ID, mk(2, 2).ID, mk(3, 3).ID}) {
		t.Errorf("dropped %v", u.dropped)
	}
	// All open now: a newcomer is not kept, nothing open is dropped.
	b2 := NewBook()
	s.book = b2
	for i := 1; i <= MaxSessions; i++ {
		b2.sessions[mk(i, 0).ID] = mk(i, 0)
		seen = append(seen[:0], *mk(i, 0))
	}
	all := make([]Session, 0, MaxSessions+1)
	for i := 1; i <= MaxSessions+1; i++ {
		all = append(all, *mk(i, 0))
	}
	b2.apply(s.diff(t0.Add(time.Hour), all))
	if _, ok := b2.sessions[mk(MaxSessions+1, 0).ID]; ok || len(b2.sessions) != MaxSessions {
		t.Errorf("%d kept; the newcomer kept: %v", len(b2.sessions), ok)
	}
}

// Addresses from the configuration and from pg_stat_activity never panic
// the matcher, and an address accepted as a single IP owns itself.
func FuzzAppAddr(f *testing.F) {
	for _, s := range []string{"10.0.3.0/24", "::ffff:192.0.2.9", "local", "::ffff:10.0.0.0/104", "fe80::1%eth0", "1.2.3.4/0"} {
		f.Add(s, "10.0.3.7")
	}
	f.Fuzz(func(t *testing.T, spec, client string) {
		m, err := App{Addrs: []string{spec}}.matcher()
		if err != nil {
			return
		}
		m.owns("r", "n", client)
		if p, local, _ := parseAddr(spec); !local && p.IsSingleIP() && !m.owns("r", "n", p.Addr().String()) {
			t.Errorf("%q does not own %s", spec, p.Addr())
		}
	})
}
