package api

import (
	"encoding/json"
	"net/http"
	"strings"
	"testing"
)

// Admins read the access log newest first, page by page; nobody else does.
func TestAccessLogForAdminsOnly(t *testing.T) {
	f := newFixture(t)
	type page struct {
		Entries []struct {
			ID, Action, Result string
			Login              *string
		} `json:"entries"`
		Next string `json:"next_cursor"`
	}
	read := func(target string) page {
		t.Helper()
		a := f.get(t, &admin, target)
		var p page
		if a.status != 200 || json.Unmarshal(a.body, &p) != nil {
			t.Fatalf("%s: %d %s", target, a.status, a.body)
		}
		return p
	}
	p := read("/api/v1/access-log?limit=2")
	if len(p.Entries) != 2 || p.Entries[0].Action != "export" || p.Entries[1].Result != "ok" || p.Next == "" {
		t.Fatalf("first page, newest first: %+v", p)
	}
	p = read("/api/v1/access-log?limit=2&cursor=" + p.Next)
	if len(p.Entries) != 1 || p.Entries[0].Result != "refused" || *p.Entries[0].Login != "mallory" || p.Next != "" {
		t.Fatalf("second page: %+v", p)
	}
	// Each reading was recorded (an admin action), after what it read.
	p = read("/api/v1/access-log?order=asc")
	if len(p.Entries) != 5 || !strings.HasSuffix(p.Entries[0].ID, "1") {
		t.Fatalf("oldest first: %+v", p)
	}
	for _, e := range p.Entries[3:] {
		if e.Action != "access_log" || e.Result != "ok" {
			t.Fatalf("the readings of the access log are not recorded in it: %+v", p.Entries[3:])
		}
	}
	if p := read("/api/v1/access-log?limit=1"); p.Entries[0].Action != "access_log" {
		t.Fatalf("the newest entry is not the reading before: %+v", p)
	}
	if a := f.get(t, &viewer, "/api/v1/access-log"); a.status != http.StatusForbidden {
		t.Errorf("viewer: %d %s", a.status, a.body)
	}
	if a := f.get(t, &self, "/api/v1/access-log"); a.status != http.StatusForbidden || strings.Contains(string(a.body), "mallory") {
		t.Errorf("self: %d %s", a.status, a.body)
	}
}
