package api

import (
	"encoding/json"
	"net/url"
	"testing"
	"time"

	"github.com/cdcaudit/cdcaudit/access"
	"github.com/cdcaudit/cdcaudit/applog"
	"github.com/cdcaudit/cdcaudit/sink"
)

// fixtureLogins are logins as the app-log tailer records them: alice's,
// mallory's failures (no such user) and a failure typed as alice's login.
func fixtureLogins() []sink.StateRecord {
	var out []sink.StateRecord
	for i, l := range []applog.Login{
		{Time: t0, Result: applog.ResultOK, DB: "erp", Login: "alice@example.com", IP: "81.2.69.142"},
		{Time: t0.Add(time.Minute), Result: applog.ResultFailed, DB: "erp", Login: "mallory", IP: "192.0.2.66"},
		{Time: t0.Add(2 * time.Minute), Result: applog.ResultFailed, DB: "erp", Login: "mallory", IP: "192.0.2.66"},
		{Time: t0.Add(3 * time.Minute), Result: applog.ResultFailed, DB: "erp", Login: "alice@example.com", IP: "192.0.2.66"},
	} {
		out = append(out, applog.LoginRecord(l, 7, int64(100*i)))
	}
	return out
}

func TestLogins(t *testing.T) {
	f := newFixture(t)
	list := func(p *access.Principal, q string) loginPage {
		t.Helper()
		a := f.get(t, p, "/api/v1/logins"+q)
		var page loginPage
		if a.status != 200 || json.Unmarshal(a.body, &page) != nil {
			t.Fatalf("%s as %v: %d %s", q, p, a.status, a.body)
		}
		return page
	}
	logins := func(page loginPage) (out []string) {
		for _, l := range page.Logins {
			out = append(out, l.Login.Login+"/"+l.Result)
		}
		return out
	}
	eq := func(got []string, want ...string) bool {
		if len(got) != len(want) {
			return false
		}
		for i := range got {
			if got[i] != want[i] {
				return false
			}
		}
		return true
	}
	if got := logins(list(&viewer, "")); !eq(got, "alice@example.com/failed", "mallory/failed", "mallory/failed", "alice@example.com/ok") {
		t.Errorf("newest first: %v", got)
	}
	// Self sees the attempts made with its own login, nobody else's.
	if got := logins(list(&self, "")); !eq(got, "alice@example.com/failed", "alice@example.com/ok") {
		t.Errorf("self: %v", got)
	}
	if got := logins(list(&self, "?login=mallory")); len(got) != 0 {
		t.Errorf("self asking for another login: %v", got)
	}
	if got := logins(list(&admin, "?result=failed&ip=192.0.2.66&until="+url.QueryEscape(t0.Add(3*time.Minute).Format(time.RFC3339)))); !eq(got, "mallory/failed", "mallory/failed") {
		t.Errorf("filters: %v", got)
	}
	// Pages.
	p1 := list(&admin, "?limit=3")
	p2 := list(&admin, "?limit=3&cursor="+p1.NextCursor)
	if len(p1.Logins) != 3 || p1.NextCursor == "" || !eq(logins(p2), "alice@example.com/ok") || p2.NextCursor != "" {
		t.Errorf("pages: %v %q then %v %q", logins(p1), p1.NextCursor, logins(p2), p2.NextCursor)
	}
}
