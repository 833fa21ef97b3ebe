package api

import (
	"bytes"
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/getkin/kin-openapi/openapi3filter"
	"github.com/getkin/kin-openapi/routers"

	"github.com/cdcaudit/cdcaudit/access"
	"github.com/cdcaudit/cdcaudit/manifest"
	"github.com/cdcaudit/cdcaudit/sessionctl"
	"github.com/cdcaudit/cdcaudit/sink"
)

// twoSources is a daemon recording two databases: two real stores, each
// with its own instance key and session control, and one event on a
// table only it holds.
type twoSources struct {
	a, b       *fixture
	aID, bID   string // the event on only_in_a, only_in_b
	aEnd, bEnd *endRecorder
}

func newTwoSources(t *testing.T) *twoSources {
	t.Helper()
	s := &twoSources{a: newFixture(t), b: newFixture(t), aEnd: &endRecorder{}, bEnd: &endRecorder{}}
	s.aID = s.a.storeEvents(t, "only_in_a", "alice")[0]
	s.bID = s.b.storeEvents(t, "only_in_b", "alice")[0]
	return s
}

func (s *twoSources) options() Options {
	return Options{Now: func() time.Time { return s.a.now }, Sources: []Source{
		{Name: "erp_a", Database: "erp_a", Store: s.a.store, Signer: s.a.key, Sessions: s.aEnd},
		{Name: "erp_b", Database: "erp-b-db", Store: s.b.store, Signer: s.b.key, Sessions: s.bEnd},
	}}
}

func (s *twoSources) handler(t testing.TB, p *access.Principal) http.Handler {
	t.Helper()
	h, err := New(s.options())
	if err != nil {
		t.Fatal(err)
	}
	return asPrincipal(h, p)
}

// asPrincipal puts p in every request's context (nil: no principal), as
// sign-in does.
func asPrincipal(h http.Handler, p *access.Principal) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if p != nil {
			r = r.WithContext(access.NewContext(r.Context(), *p))
		}
		h.ServeHTTP(w, r)
	})
}

func (s *twoSources) get(t testing.TB, p *access.Principal, target string) answer {
	t.Helper()
	return serve(s.handler(t, p), newGet(target))
}

// endRecorder is a source's session control: it records what it was asked.
type endRecorder struct {
	mu    sync.Mutex
	calls []string
}

func (e *endRecorder) End(_ context.Context, id string, _ sessionctl.Requester) (sessionctl.Outcome, error) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.calls = append(e.calls, id)
	return sessionctl.Outcome{Session: id, Result: sessionctl.ResultOK}, nil
}

func (e *endRecorder) EndUser(_ context.Context, login string, _ sessionctl.Requester) ([]sessionctl.Outcome, error) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.calls = append(e.calls, "user:"+login)
	return nil, nil
}

func (e *endRecorder) called() []string {
	e.mu.Lock()
	defer e.mu.Unlock()
	return slices.Clone(e.calls)
}

func errorOf(t testing.TB, a answer) string {
	t.Helper()
	var e errorBody
	a.json(t, &e)
	return e.Error
}

// Every route that reads a store reads the one source= names; with
// several sources, one must be named.
func TestSeveralSources(t *testing.T) {
	s := newTwoSources(t)
	targets := []string{"/api/v1/events", "/api/v1/events/count", "/api/v1/events/" + s.a.ids["bob-insert-7"], // in both
		"/api/v1/records/history?record=sale_order:42", "/api/v1/sessions", "/api/v1/sessions/" + s.a.alice,
		"/api/v1/users", "/api/v1/logins", "/api/v1/alerts", "/api/v1/summaries/changes", "/api/v1/summaries/logins",
		"/api/v1/summaries/sessions", "/api/v1/summaries/users", "/api/v1/summaries/orm-bypass", "/api/v1/access-log",
		"/api/v1/db-sessions", "/api/v1/export", "/api/v1/exports/0000000000000000-0000000000000000/manifest", "/api/v1/events/stream"}
	join := func(target, param string) string {
		if strings.Contains(target, "?") {
			return target + "&" + param
		}
		return target + "?" + param
	}
	for _, target := range targets {
		a := s.get(t, &admin, target)
		if a.status != 400 || errorOf(t, a) != "several sources: name one with source= (erp_a, erp_b)" {
			t.Errorf("%s without source=: %d %s", target, a.status, a.body)
		}
		if a := s.get(t, &admin, join(target, "source=erp_c")); a.status != 404 || errorOf(t, a) != `no source "erp_c" (the sources: erp_a, erp_b)` {
			t.Errorf("%s of an unknown source: %d %s", target, a.status, a.body)
		}
		if a := s.get(t, &admin, join(target, "source=erp_a&source=erp_b")); a.status != 400 {
			t.Errorf("%s of two sources: %d %s", target, a.status, a.body)
		}
	}
	for _, target := range targets[:len(targets)-3] { // but the export, a manifest and the stream
		if a := s.get(t, &admin, join(target, "source=erp_b")); a.status != 200 {
			t.Errorf("%s of erp_b: %d %s", target, a.status, a.body)
		}
	}
	// The routes that read no store take no source.
	if a := s.get(t, &viewer, "/api/v1/whoami"); a.status != 200 {
		t.Errorf("whoami: %d %s", a.status, a.body)
	}
	if a := s.get(t, &viewer, "/api/v1/whoami?source=erp_a"); a.status != 400 {
		t.Errorf("whoami with a source: %d %s", a.status, a.body)
	}

	// Each source's events are its own.
	events := func(p *access.Principal, target string) []string {
		t.Helper()
		var pg page
		a := s.get(t, p, target)
		if a.status != 200 {
			t.Fatalf("%s: %d %s", target, a.status, a.body)
		}
		a.json(t, &pg)
		return pg.ids(t)
	}
	if ids := events(&viewer, "/api/v1/events?table=only_in_*&source=erp_b"); !slices.Equal(ids, []string{s.bID}) {
		t.Errorf("erp_b's own events: %q, want %s", ids, s.bID)
	}
	if ids := events(&viewer, "/api/v1/events?source=erp_a&table=only_in_*"); !slices.Equal(ids, []string{s.aID}) {
		t.Errorf("erp_a's own events: %q, want %s", ids, s.aID)
	}
	// A URL-escaped parameter name is the same parameter.
	if ids := events(&viewer, "/api/v1/events?table=only_in_*&%73ource=erp_b"); !slices.Equal(ids, []string{s.bID}) {
		t.Errorf("escaped source=: %q", ids)
	}
	if a := s.get(t, &viewer, "/api/v1/events/"+s.bID+"?source=erp_a"); a.status != 404 {
		t.Errorf("erp_b's event in erp_a: %d", a.status)
	}
	if a := s.get(t, &viewer, "/api/v1/events/"+s.bID+"?source=erp_b"); a.status != 200 || !bytes.Contains(a.body, []byte(`"only_in_b"`)) {
		t.Errorf("erp_b's event: %d %s", a.status, a.body)
	}
	// The route's own parameters are still checked, source= aside.
	if a := s.get(t, &viewer, "/api/v1/events?source=erp_a&nope=1"); a.status != 400 || !strings.Contains(errorOf(t, a), `unknown parameter "nope"`) {
		t.Errorf("an unknown parameter beside source=: %d %s", a.status, a.body)
	}

	var list sourcesBody
	s.get(t, &viewer, "/api/v1/sources").json(t, &list)
	if want := []sourceBody{{"erp_a", "erp_a"}, {"erp_b", "erp-b-db"}}; !slices.Equal(list.Sources, want) {
		t.Errorf("sources %+v, want %+v", list.Sources, want)
	}
	if a := s.get(t, &viewer, "/api/v1/sources?source=erp_a"); a.status != 400 {
		t.Errorf("sources with a source: %d", a.status)
	}
	if a := s.get(t, nil, "/api/v1/sources"); a.status != 401 {
		t.Errorf("sources signed out: %d", a.status)
	}
}

// An export of a source is signed by its instance key, names it, and is
// recorded in its access log, where its manifest route finds it.
func TestExportOfASource(t *testing.T) {
	s := newTwoSources(t)
	before := len(accessEntries(t, s.a.store))
	x := exportOver(t, s.handler(t, &viewer), "/api/v1/export?source=erp_b&table=only_in_b")
	if x.status != 200 || x.readErr != nil {
		t.Fatalf("export: %d %v %s", x.status, x.readErr, x.body)
	}
	id := x.header.Get(ExportHeader)
	if !bytes.Contains(x.body, []byte(s.bID)) {
		t.Errorf("the export lacks erp_b's event:\n%s", x.body)
	}
	if n := len(accessEntries(t, s.a.store)); n != before {
		t.Errorf("erp_a's access log took erp_b's export (%d entries, were %d)", n, before)
	}
	entries := accessEntries(t, s.b.store)
	if last := entries[len(entries)-1]; last["action"] != "export" || last["export"] != id {
		t.Errorf("erp_b's last access entry: %v", last)
	}
	if a := s.get(t, &viewer, "/api/v1/exports/"+id+"/manifest?source=erp_a"); a.status != 404 {
		t.Errorf("erp_b's export's manifest in erp_a: %d", a.status)
	}
	a := s.get(t, &viewer, "/api/v1/exports/"+id+"/manifest?source=erp_b")
	if a.status != 200 {
		t.Fatalf("manifest: %d %s", a.status, a.body)
	}
	m, err := manifest.Parse(a.body)
	if err != nil {
		t.Fatal(err)
	}
	if m.Source != "erp_b" || m.Key != s.b.key.Public() || m.VerifySignature() != nil || m.Events != 1 || m.Digest() != x.trailer.Get(DigestTrailer) {
		t.Errorf("erp_b's manifest: %+v (erp_b's key %s)", m, s.b.key.Public())
	}
}

// The access log and the end routes are the source's.
func TestAdminRoutesOfASource(t *testing.T) {
	s := newTwoSources(t)
	count := func(st *sink.Store, action string) int {
		n := 0
		for _, e := range accessEntries(t, st) {
			if e["action"] == action {
				n++
			}
		}
		return n
	}
	if a := s.get(t, &admin, "/api/v1/access-log?source=erp_b"); a.status != 200 {
		t.Fatalf("access log: %d %s", a.status, a.body)
	}
	if a, b := count(s.a.store, "access_log"), count(s.b.store, "access_log"); a != 0 || b != 1 {
		t.Errorf("reading erp_b's access log was recorded %d times in erp_a's, %d in erp_b's", a, b)
	}
	post := func(target string) answer {
		r := httptest.NewRequest(http.MethodPost, target, nil)
		return serve(s.handler(t, &admin), r)
	}
	if a := post("/api/v1/sessions/" + s.b.alice + "/end"); a.status != 400 {
		t.Errorf("end without source=: %d %s", a.status, a.body)
	}
	if a := post("/api/v1/sessions/" + s.b.alice + "/end?source=erp_b"); a.status != 200 {
		t.Errorf("end: %d %s", a.status, a.body)
	}
	if a := post("/api/v1/users/bob@example.com/sessions/end?source=erp_a"); a.status != 200 {
		t.Errorf("end a user's: %d %s", a.status, a.body)
	}
	if a, b := s.aEnd.called(), s.bEnd.called(); !slices.Equal(a, []string{"user:bob@example.com"}) || !slices.Equal(b, []string{s.b.alice}) {
		t.Errorf("erp_a was asked %q, erp_b %q", a, b)
	}
	if a := post("/api/v1/sessions/" + s.b.alice + "/end?source=erp_c"); a.status != 404 {
		t.Errorf("end in an unknown source: %d", a.status)
	}
}

// A self principal signed in against the first source's users: the others
// are not there for it, as an unknown source is not.
func TestSelfSeesTheFirstSourceOnly(t *testing.T) {
	s := newTwoSources(t)
	var list sourcesBody
	s.get(t, &self, "/api/v1/sources").json(t, &list)
	if want := []sourceBody{{"erp_a", "erp_a"}}; !slices.Equal(list.Sources, want) {
		t.Errorf("self's sources %+v", list.Sources)
	}
	// Its one source needs no naming.
	var pg page
	s.get(t, &self, "/api/v1/events?table=only_in_*").json(t, &pg)
	if ids := pg.ids(t); !slices.Equal(ids, []string{s.aID}) {
		t.Errorf("self's events: %q", ids)
	}
	s.get(t, &self, "/api/v1/events?table=only_in_*&source=erp_a").json(t, &pg)
	if ids := pg.ids(t); !slices.Equal(ids, []string{s.aID}) {
		t.Errorf("self's events in erp_a: %q", ids)
	}
	for _, target := range []string{"/api/v1/events", "/api/v1/events/" + s.bID, "/api/v1/sessions/" + s.b.alice,
		"/api/v1/export", "/api/v1/events/stream", "/api/v1/summaries/changes"} {
		other, unknown := s.get(t, &self, target+"?source=erp_b"), s.get(t, &self, target+"?source=erp_c")
		want := strings.Replace(string(unknown.body), "erp_c", "erp_b", 1)
		if other.status != 404 || unknown.status != 404 || string(other.body) != want {
			t.Errorf("%s: erp_b answers %d %s; an unknown source %d %s", target, other.status, other.body, unknown.status, unknown.body)
		}
	}
	// Viewer and admin see both.
	for _, p := range []*access.Principal{&viewer, &admin} {
		s.get(t, p, "/api/v1/sources").json(t, &list)
		if len(list.Sources) != 2 {
			t.Errorf("%v sees %+v", p, list.Sources)
		}
		if a := s.get(t, p, "/api/v1/events/"+s.bID+"?source=erp_b"); a.status != 200 {
			t.Errorf("%v: erp_b's event: %d", p, a.status)
		}
	}
}

// The stream follows the source it names.
func TestEventStreamOfASource(t *testing.T) {
	s := newTwoSources(t)
	srv := httptest.NewServer(s.handler(t, &viewer))
	t.Cleanup(srv.Close)
	c := openStream(t, srv, "/api/v1/events/stream?source=erp_b&table=live", "")
	if c.status != 200 {
		t.Fatalf("stream: %d %s", c.status, c.body)
	}
	s.a.storeEvents(t, "live", "alice")
	want := s.b.storeEvents(t, "live", "bob")
	if got := c.nextIDs(t, 1); !slices.Equal(got, want) {
		t.Errorf("erp_b's stream sent %q, want %q", got, want)
	}
	if c := openStream(t, srv, "/api/v1/events/stream", ""); c.status != 400 {
		t.Errorf("a stream of no source: %d", c.status)
	}
}

// With one source nothing needs naming, and naming it is allowed.
func TestOneSource(t *testing.T) {
	f := newFixture(t)
	if a := f.get(t, &viewer, "/api/v1/events/"+f.ids["bob-insert-7"]+"?source=odoo"); a.status != 200 {
		t.Errorf("naming the one source: %d %s", a.status, a.body)
	}
	if a := f.get(t, &viewer, "/api/v1/events?source=erp"); a.status != 404 || errorOf(t, a) != `no source "erp" (the sources: odoo)` {
		t.Errorf("another source: %d %s", a.status, a.body)
	}
	var list sourcesBody
	f.get(t, &self, "/api/v1/sources").json(t, &list)
	if want := []sourceBody{{"odoo", ""}}; !slices.Equal(list.Sources, want) {
		t.Errorf("sources %+v", list.Sources)
	}
}

func TestNewRefusesSources(t *testing.T) {
	f := newFixture(t)
	for name, srcs := range map[string][]Source{
		"none":      nil,
		"no name":   {{Store: f.store}},
		"no store":  {{Name: "a"}},
		"same name": {{Name: "a", Store: f.store}, {Name: "a", Store: f.store}},
	} {
		if _, err := New(Options{Sources: srcs}); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
}

// The answers about sources are as openapi.json says.
func TestOpenAPIDescribesSources(t *testing.T) {
	router := openAPIRouter(t)
	s := newTwoSources(t)
	for _, c := range []struct {
		p      *access.Principal
		target string
		status int
	}{
		{&viewer, "/api/v1/sources", 200},
		{&self, "/api/v1/sources", 200},
		{&viewer, "/api/v1/events?source=erp_b&limit=1", 200},
		{&viewer, "/api/v1/events/" + s.bID + "?source=erp_b", 200},
		{&viewer, "/api/v1/sessions/" + s.b.alice + "?source=erp_b", 200},
		{&admin, "/api/v1/access-log?source=erp_a", 200},
		{&viewer, "/api/v1/summaries/users?source=erp_b", 200},
		{&viewer, "/api/v1/events", 400},
		{&viewer, "/api/v1/users?source=erp_c", 404},
		{&viewer, "/api/v1/summaries/logins?source=erp_c", 404},
		{&self, "/api/v1/alerts?source=erp_b", 404},
	} {
		req := newGet(c.target)
		a := serve(s.handler(t, c.p), req)
		if a.status != c.status {
			t.Errorf("%s as %v: %d %s, want %d", c.target, c.p, a.status, a.body, c.status)
			continue
		}
		validateAgainst(t, router, req, a, c.status == 200)
	}
}

// validateAgainst checks a request (when ok) and its answer against the
// document.
func validateAgainst(t *testing.T, router routers.Router, req *http.Request, a answer, ok bool) {
	t.Helper()
	route, params, err := router.FindRoute(req)
	if err != nil {
		t.Fatalf("%s: not in openapi.json: %v", req.URL, err)
	}
	in := &openapi3filter.RequestValidationInput{Request: req, PathParams: params, Route: route,
		Options: &openapi3filter.Options{AuthenticationFunc: openapi3filter.NoopAuthenticationFunc, IncludeResponseStatus: true, MultiError: true}}
	if ok {
		if err := openapi3filter.ValidateRequest(t.Context(), in); err != nil {
			t.Errorf("%s: the request does not fit the document: %v", req.URL, err)
		}
	}
	if err := openapi3filter.ValidateResponse(t.Context(), &openapi3filter.ResponseValidationInput{
		RequestValidationInput: in, Status: a.status, Header: a.header, Body: io.NopCloser(bytes.NewReader(a.body)), Options: in.Options}); err != nil {
		t.Errorf("%s: answer %d does not fit the document: %v\n%.400s", req.URL, a.status, err, a.body)
	}
}
