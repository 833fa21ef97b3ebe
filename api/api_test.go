package api

import (
	"bytes"
	"net/http"
	"net/http/httptest"
	"net/url"
	"slices"
	"strings"
	"testing"

	"github.com/cdcaudit/cdcaudit/access"
)

func (f *fixture) idsOf(names ...string) []string {
	var out []string
	for _, n := range names {
		out = append(out, f.ids[n])
	}
	return out
}

func TestEvents(t *testing.T) {
	f := newFixture(t)
	all := f.idsOf("alice-insert-42", "bob-insert-7", "bob-update-42", "alice-update-42", "bob-bypass-7", "none-bypass-42", "alice-bypass-9", "bob-delete-7")
	for _, c := range []struct {
		query string
		want  []string
	}{
		{"", all},
		{"?order=desc", reversed(all)},
		{"?user=bob@example.com", f.idsOf("bob-insert-7", "bob-update-42", "bob-bypass-7", "bob-delete-7")},
		{"?table=sale_*", f.idsOf("alice-insert-42", "bob-update-42", "alice-update-42", "none-bypass-42")},
		{"?table=public.res_partner&op=insert,delete", f.idsOf("bob-insert-7", "bob-delete-7")},
		{"?op=insert&op=delete", f.idsOf("alice-insert-42", "bob-insert-7", "bob-delete-7")},
		{"?flag=orm_bypass", f.idsOf("bob-bypass-7", "none-bypass-42", "alice-bypass-9")},
		{"?session=" + f.alice, f.idsOf("alice-insert-42", "alice-update-42", "alice-bypass-9")},
		{"?record=" + url.QueryEscape("public.sale_order:42"), f.idsOf("alice-insert-42", "bob-update-42", "alice-update-42", "none-bypass-42")},
		{"?since=2026-11-23T09:30:00Z&until=2026-11-23T10:10:00Z", f.idsOf("bob-update-42", "alice-update-42", "bob-bypass-7")},
	} {
		a := f.get(t, &viewer, "/api/v1/events"+c.query)
		if a.status != 200 {
			t.Fatalf("%s: %d %s", c.query, a.status, a.body)
		}
		var p page
		a.json(t, &p)
		if got := p.ids(t); !slices.Equal(got, c.want) {
			t.Errorf("%s: got %v, want %v", c.query, got, c.want)
		}
		var n countBody
		f.get(t, &viewer, "/api/v1/events/count"+strings.Replace(c.query, "order=desc", "", 1)).json(t, &n)
		if n.Count != uint64(len(c.want)) {
			t.Errorf("count%s = %d, want %d", c.query, n.Count, len(c.want))
		}
	}
}

func reversed(s []string) []string {
	s = slices.Clone(s)
	slices.Reverse(s)
	return s
}

// TestEventsVerbatim: an event comes out byte for byte as stored (and as
// export writes it), by id and in a page.
func TestEventsVerbatim(t *testing.T) {
	f := newFixture(t)
	id := f.ids["alice-insert-42"]
	stored, err := f.store.Get(id)
	if err != nil {
		t.Fatal(err)
	}
	a := f.get(t, &admin, "/api/v1/events/"+id)
	if a.status != 200 || !bytes.Equal(bytes.TrimSuffix(a.body, []byte("\n")), stored) {
		t.Fatalf("by id: %d\n%s\nwant\n%s", a.status, a.body, stored)
	}
	if !bytes.Contains(a.body, []byte(`<&>`)) {
		t.Errorf("values are not as stored: %s", a.body)
	}
	var p page
	f.get(t, &admin, "/api/v1/events?limit=1").json(t, &p)
	if !bytes.Equal(p.Events[0], stored) {
		t.Errorf("in a page:\n%s\nwant\n%s", p.Events[0], stored)
	}
}

func TestEventsPages(t *testing.T) {
	f := newFixture(t)
	for _, order := range []string{"asc", "desc"} {
		var got []string
		cursor := ""
		for pages := 0; ; pages++ {
			if pages > 10 {
				t.Fatal("pages do not end")
			}
			var p page
			a := f.get(t, &admin, "/api/v1/events?limit=3&order="+order+"&cursor="+cursor)
			if a.status != 200 {
				t.Fatalf("%d %s", a.status, a.body)
			}
			a.json(t, &p)
			if len(p.Events) > 3 {
				t.Fatalf("page of %d", len(p.Events))
			}
			got = append(got, p.ids(t)...)
			if p.NextCursor == "" {
				break
			}
			cursor = p.NextCursor
		}
		var want page
		f.get(t, &admin, "/api/v1/events?order="+order).json(t, &want)
		if !slices.Equal(got, want.ids(t)) {
			t.Errorf("%s: pages %v, want %v", order, got, want.ids(t))
		}
	}
	// A cursor of another query.
	var p page
	f.get(t, &admin, "/api/v1/events?limit=2").json(t, &p)
	if a := f.get(t, &admin, "/api/v1/events?limit=2&user=bob@example.com&cursor="+p.NextCursor); a.status != 400 {
		t.Errorf("cursor of another query: %d %s", a.status, a.body)
	}
}

func TestEventByID(t *testing.T) {
	f := newFixture(t)
	for target, status := range map[string]int{
		"/api/v1/events/" + f.ids["bob-insert-7"]:    200,
		"/api/v1/events/00000000FFFFFF00-000001":     404,
		"/api/v1/events/0000000000001100-000000":     404, // a chain record's key
		"/api/v1/events/42":                          400,
		"/api/v1/events/zzzzzzzzzzzzzzzz-000001":     400,
		"/api/v1/events/" + strings.Repeat("A", 600): 400,
	} {
		a := f.get(t, &viewer, target)
		if a.status != status {
			t.Errorf("%s: %d, want %d: %s", target, a.status, status, a.body)
		}
		checkHeaders(t, target, a)
	}
}

func checkHeaders(t *testing.T, what string, a answer) {
	t.Helper()
	for k, v := range map[string]string{"Content-Type": "application/json; charset=utf-8", "Cache-Control": "no-store", "X-Content-Type-Options": "nosniff"} {
		if got := a.header.Get(k); got != v {
			t.Errorf("%s: %s %q, want %q", what, k, got, v)
		}
	}
	if a.status >= 400 {
		var e errorBody
		a.json(t, &e)
		if e.Error == "" {
			t.Errorf("%s: %d without a message: %s", what, a.status, a.body)
		}
	}
}

func TestRecordHistory(t *testing.T) {
	f := newFixture(t)
	want := f.idsOf("alice-insert-42", "bob-update-42", "alice-update-42", "none-bypass-42")
	var got []string
	cursor := ""
	for pages := 0; pages < 10; pages++ {
		a := f.get(t, &admin, "/api/v1/records/history?limit=3&record="+url.QueryEscape("sale_order:42")+"&cursor="+cursor)
		if a.status != 200 {
			t.Fatalf("%d %s", a.status, a.body)
		}
		var p struct {
			page
			Record string `json:"record"`
		}
		a.json(t, &p)
		if p.Record != "public.sale_order:42" {
			t.Errorf("record %q", p.Record)
		}
		got = append(got, p.ids(t)...)
		if cursor = p.NextCursor; cursor == "" {
			break
		}
	}
	if !slices.Equal(got, want) {
		t.Errorf("history %v, want %v", got, want)
	}
	var other page
	f.get(t, &admin, "/api/v1/records/history?limit=1&record=res_partner:7").json(t, &other)
	for q, status := range map[string]int{
		"":                   400,
		"?record=sale_order": 400,
		"?record=" + url.QueryEscape(`sale_order:{"a":1,"b":2}`): 400, // not the table's key columns
		"?record=sale_order:42&cursor=" + other.NextCursor:       400, // another record's cursor
		"?record=sale_order:42&cursor=%%":                        400,
		"?record=sale_order:42&limit=0":                          400,
		"?record=sale_order:42&bogus=1":                          400,
		"?record=sale_order:4242":                                200,
	} {
		if a := f.get(t, &admin, "/api/v1/records/history"+q); a.status != status {
			t.Errorf("%s: %d, want %d: %s", q, a.status, status, a.body)
		}
	}
}

func TestBadParameters(t *testing.T) {
	f := newFixture(t)
	for _, target := range badTargets(f) {
		a := f.get(t, &admin, target)
		if a.status != 400 {
			t.Errorf("%s: %d, want 400: %s", target, a.status, a.body)
		}
		checkHeaders(t, target, a)
	}
}

// badTargets are requests with a bad parameter, on every route.
func badTargets(f *fixture) []string {
	return []string{
		"/api/v1/events?since=yesterday",
		"/api/v1/logins?result=maybe",
		"/api/v1/logins?cursor=***",
		"/api/v1/events?until=2026-13-01T00:00:00Z",
		"/api/v1/events?since=2026-11-23T10:00:00Z&until=2026-11-23T09:00:00Z",
		"/api/v1/events?table=%5B",
		"/api/v1/events?op=upsert",
		"/api/v1/events?order=sideways",
		"/api/v1/events?limit=1001",
		"/api/v1/events?limit=-1",
		"/api/v1/events?limit=ten",
		"/api/v1/events?cursor=***",
		"/api/v1/events?cursor=AAAA",
		"/api/v1/events?user=a&user=b",
		"/api/v1/events?record=nokey",
		"/api/v1/events?nope=1",
		"/api/v1/events?user=" + strings.Repeat("x", 600),
		"/api/v1/events?" + strings.Repeat("table=a&", 40),
		"/api/v1/events?%zz",
		"/api/v1/events?user=%00",
		"/api/v1/events/count?limit=3",
		"/api/v1/sessions?state=asleep",
		"/api/v1/alerts?kind=nope",
		"/api/v1/alerts?since=today",
		"/api/v1/sessions?cursor=eyJ",
		"/api/v1/sessions?since=now",
		"/api/v1/sessions/" + f.alice + "?order=up",
		"/api/v1/users?cursor=bm9",
		"/api/v1/users?limit=0",
		"/api/v1/whoami?x=1",
		"/api/v1/summaries/changes?since=2026-01-01T00:00:00Z&until=2026-11-23T00:00:00Z",
		"/api/v1/summaries/changes?until=2026-11-23T00:00:00Z&since=2026-11-23T00:00:00Z",
		"/api/v1/summaries/users?limit=101",
		"/api/v1/summaries/orm-bypass?bucket=week",
		"/api/v1/summaries/orm-bypass?bucket=hour&since=2026-01-01T00:00:00Z&until=2026-11-23T00:00:00Z",
		"/api/v1/summaries/logins?since=2020-01-01T00:00:00Z&until=2026-01-01T00:00:00Z",
		"/api/v1/summaries/sessions?until=x",
		"/api/v1/events/42",
		"/api/v1/records/history?record=sale_order:42&limit=0",
	}
}

func TestUnauthenticated(t *testing.T) {
	f := newFixture(t)
	for _, target := range routes(f) {
		a := f.get(t, nil, target)
		if a.status != 401 || a.header.Get("WWW-Authenticate") != "Bearer" {
			t.Errorf("%s without a principal: %d %s", target, a.status, a.body)
		}
		checkHeaders(t, target, a)
	}
	// A principal that is not one (a self without a login).
	bad := access.Principal{Role: access.Self}
	if a := f.get(t, &bad, "/api/v1/events"); a.status != 401 {
		t.Errorf("self without login: %d", a.status)
	}
	// The document is public.
	a := f.get(t, nil, "/api/v1/openapi.json")
	if a.status != 200 || !bytes.Equal(a.body, OpenAPI()) {
		t.Errorf("openapi.json: %d", a.status)
	}
	checkHeaders(t, "openapi.json", a)
}

// routes are a request to every route.
func routes(f *fixture) []string {
	return []string{
		"/api/v1/whoami", "/api/v1/events", "/api/v1/events/count", "/api/v1/events/" + f.ids["alice-insert-42"],
		"/api/v1/records/history?record=sale_order:42", "/api/v1/sessions", "/api/v1/sessions/" + f.alice, "/api/v1/users",
		"/api/v1/summaries/changes", "/api/v1/summaries/logins", "/api/v1/summaries/sessions", "/api/v1/summaries/users",
		"/api/v1/summaries/orm-bypass", "/api/v1/logins", "/api/v1/alerts", "/api/v1/sources", "/api/v1/nothing-here",
	}
}

func TestMethodsAndUnknownRoutes(t *testing.T) {
	f := newFixture(t)
	h := f.handler(t, &admin)
	a := serve(h, httptest.NewRequest(http.MethodPost, "/api/v1/events", strings.NewReader("{}")))
	if a.status != 405 || a.header.Get("Allow") != "GET, HEAD" {
		t.Errorf("POST: %d %v", a.status, a.header)
	}
	checkHeaders(t, "POST", a)
	a = f.get(t, &admin, "/api/v1/nothing-here")
	if a.status != 404 {
		t.Errorf("unknown route: %d", a.status)
	}
	checkHeaders(t, "unknown route", a)
}

func TestWhoami(t *testing.T) {
	f := newFixture(t)
	var w whoamiBody
	f.get(t, &self, "/api/v1/whoami").json(t, &w)
	if w != (whoamiBody{Role: "self", Login: "alice@example.com", Via: "password"}) {
		t.Errorf("whoami %+v", w)
	}
	// A browser session's CSRF token, which sign-in put in the context, is
	// given back so that a reloaded page can still POST.
	r := newGet("/api/v1/whoami")
	r = r.WithContext(access.WithCSRFToken(r.Context(), "csrf-of-the-session"))
	w = whoamiBody{}
	serve(f.handler(t, &self), r).json(t, &w)
	if w.CSRFToken != "csrf-of-the-session" || w.Role != "self" {
		t.Errorf("whoami of a cookie session %+v", w)
	}
}
