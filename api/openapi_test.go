package api

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"slices"
	"strings"
	"testing"

	"github.com/cdcaudit/cdcaudit/access"
	"github.com/cdcaudit/cdcaudit/export"
	"github.com/getkin/kin-openapi/openapi3"
	"github.com/getkin/kin-openapi/openapi3filter"
	"github.com/getkin/kin-openapi/routers"
	"github.com/getkin/kin-openapi/routers/gorillamux"
)

// openAPIRouter routes requests to the operations of openapi.json.
func openAPIRouter(t *testing.T) routers.Router {
	t.Helper()
	doc, err := openapi3.NewLoader().LoadFromData(OpenAPI())
	if err != nil {
		t.Fatal(err)
	}
	router, err := gorillamux.NewRouter(doc)
	if err != nil {
		t.Fatal(err)
	}
	return router
}

// TestOpenAPIDescribesEveryAnswer validates real answers of every route —
// successes and errors, for each role — against openapi.json, and checks
// that the document names every route the handler serves (and the
// sign-in routes of package auth).
func TestOpenAPIDescribesEveryAnswer(t *testing.T) {
	loader := openapi3.NewLoader()
	doc, err := loader.LoadFromData(OpenAPI())
	if err != nil {
		t.Fatal(err)
	}
	if err := doc.Validate(loader.Context); err != nil {
		t.Fatalf("openapi.json is not a valid OpenAPI 3 document: %v", err)
	}
	router, err := gorillamux.NewRouter(doc)
	if err != nil {
		t.Fatal(err)
	}
	f := newFixture(t)
	okTargets := append(routes(f)[:len(routes(f))-1],
		"/api/v1/events?user=bob@example.com&table=sale_*,res_*&op=update&op=delete&order=desc&limit=2",
		"/api/v1/events?record="+url.QueryEscape("public.sale_order:42")+"&flag=orm_bypass&since=2026-11-23T09:00:00Z&until=2026-11-24T00:00:00Z",
		"/api/v1/events/count?session="+f.alice,
		"/api/v1/records/history?record=res_partner:7&limit=1",
		"/api/v1/sessions?state=ended&user=bob@example.com&since=2026-11-23T00:00:00Z&until=2026-11-24T00:00:00Z&limit=1",
		"/api/v1/sessions?limit=1",
		"/api/v1/sessions/"+f.alice+"?limit=1&order=desc",
		"/api/v1/users?limit=1",
		"/api/v1/logins?result=failed&login=mallory&ip=192.0.2.66&since=2026-11-23T00:00:00Z&until=2026-11-24T00:00:00Z&limit=1",
		"/api/v1/alerts?kind=new_device&user=alice@example.com&since=2026-11-23T00:00:00Z&until=2026-11-24T00:00:00Z&limit=1",
		"/api/v1/summaries/changes?since=2026-11-23T00:00:00Z&until=2026-11-24T00:00:00Z&table=sale_order&op=update",
		"/api/v1/summaries/orm-bypass?bucket=hour&until=2026-11-24T00:00:00Z",
		"/api/v1/summaries/users?limit=1&since=2026-11-20T00:00:00Z",
		"/api/v1/openapi.json",
	)
	var notFound = []string{"/api/v1/events/00000000FFFFFF00-000001", "/api/v1/sessions/nope"}
	covered := map[string]bool{}
	// validate checks the request and its answer a against the document.
	validate := func(p *access.Principal, req *http.Request, a answer, wantOK bool) answer {
		t.Helper()
		target := req.URL.String()
		route, params, err := router.FindRoute(req)
		if err != nil {
			t.Fatalf("%s: not in openapi.json: %v", target, err)
		}
		covered[route.Path] = true
		in := &openapi3filter.RequestValidationInput{Request: req, PathParams: params, Route: route,
			Options: &openapi3filter.Options{AuthenticationFunc: openapi3filter.NoopAuthenticationFunc, IncludeResponseStatus: true, MultiError: true}}
		if wantOK {
			if a.status != 200 {
				t.Fatalf("%s as %v: %d %s", target, p, a.status, a.body)
			}
			if err := openapi3filter.ValidateRequest(t.Context(), in); err != nil {
				t.Errorf("%s: the request does not fit the document: %v", target, err)
			}
		}
		err = openapi3filter.ValidateResponse(t.Context(), &openapi3filter.ResponseValidationInput{
			RequestValidationInput: in, Status: a.status, Header: a.header, Body: io.NopCloser(bytes.NewReader(a.body)),
			Options: in.Options})
		if err != nil {
			t.Errorf("%s as %v: answer %d does not fit the document: %v\n%.600s", target, p, a.status, err, a.body)
		}
		return a
	}
	check := func(p *access.Principal, target string, wantOK bool) answer {
		t.Helper()
		return validate(p, httptest.NewRequest(http.MethodGet, target, nil), f.get(t, p, target), wantOK)
	}
	for _, p := range []*access.Principal{&admin, &viewer, &self} {
		for _, target := range okTargets {
			check(p, target, true)
		}
	}
	for _, target := range badTargets(f) {
		check(&admin, target, false)
	}
	for _, target := range notFound {
		check(&viewer, target, false)
	}
	// Exports, in each format, and their manifests fetched afterwards.
	for _, ct := range []string{"application/x-ndjson", export.ContentType("xlsx")} {
		openapi3filter.RegisterBodyDecoder(ct, openapi3filter.FileBodyDecoder)
	}
	for _, p := range []*access.Principal{&admin, &viewer, &self} {
		for _, target := range []string{"/api/v1/export", "/api/v1/export?format=csv&table=sale_*&op=update&since=2026-11-23T00:00:00Z",
			"/api/v1/export?format=xlsx&user=alice@example.com&flag=orm_bypass", "/api/v1/export?format=jsonl&record=public.sale_order:42&session=" + f.alice} {
			id := check(p, target, true).header.Get(ExportHeader)
			check(p, "/api/v1/exports/"+id+"/manifest", true)
		}
	}
	check(&admin, "/api/v1/export?format=pdf", false)
	check(&admin, "/api/v1/exports/nope/manifest", false)
	check(&viewer, "/api/v1/exports/0000000000000000-0000000000000000/manifest", false)
	check(nil, "/api/v1/export", false)
	check(&admin, "/api/v1/access-log?limit=2", true)
	check(&admin, "/api/v1/access-log?order=asc&cursor=1", true)
	check(&viewer, "/api/v1/access-log", false)
	check(&admin, "/api/v1/access-log?cursor=x", false)
	addDBSessions(t, f.store)
	check(&admin, "/api/v1/db-sessions?limit=2", true)
	check(&viewer, "/api/v1/db-sessions?state=closed", true)
	check(&self, "/api/v1/db-sessions", false)
	check(&admin, "/api/v1/db-sessions?state=ended", false)
	for _, target := range routes(f)[:len(routes(f))-1] {
		check(nil, target, false)
	}
	// The event stream: a real stream from the start of the store (its
	// events as the Event schema says), and its refusals.
	openapi3filter.RegisterBodyDecoder("text/event-stream", openapi3filter.PlainBodyDecoder)
	eventSchema := doc.Components.Schemas["Event"].Value
	for _, p := range []*access.Principal{&admin, &self} {
		target := "/api/v1/events/stream?table=sale_order,res_partner"
		a := streamUntil(t, f.handler(t, p), target, "0000000000000000-000000", f.ids["alice-bypass-9"])
		req := httptest.NewRequest(http.MethodGet, target, nil)
		req.Header.Set("Last-Event-ID", "0000000000000000-000000")
		validate(p, req, a, true)
		n := 0
		for _, line := range strings.Split(string(a.body), "\n") {
			data, ok := strings.CutPrefix(line, "data: ")
			if !ok {
				continue
			}
			var v any
			if err := json.Unmarshal([]byte(data), &v); err != nil {
				t.Fatalf("stream data %q: %v", data, err)
			}
			if err := eventSchema.VisitJSON(v); err != nil {
				t.Errorf("a streamed event does not fit the Event schema: %v", err)
			}
			n++
		}
		if n == 0 {
			t.Errorf("%s as %v: no event streamed", target, p)
		}
	}
	check(&viewer, "/api/v1/events/stream?limit=3", false)
	check(nil, "/api/v1/events/stream", false)
	documented := doc.Paths.InMatchingOrder()
	for _, path := range documented {
		// Sign-in is auth's; the end routes (POST) are checked by TestSessionEndRoutes.
		if !covered[path] && !slices.Contains([]string{"/api/v1/signin", "/api/v1/signout", "/api/v1/sessions/{id}/end", "/api/v1/users/{login}/sessions/end"}, path) {
			t.Errorf("%s is documented but no test answer was checked against it", path)
		}
	}
	for _, path := range []string{"/api/v1/signin", "/api/v1/signout"} {
		if doc.Paths.Value(path) == nil || doc.Paths.Value(path).Post == nil {
			t.Errorf("the contract's POST %s is not documented", path)
		}
	}
	for _, name := range []string{"bearer", "cookie"} {
		if doc.Components.SecuritySchemes[name] == nil {
			t.Errorf("security scheme %s is not documented", name)
		}
	}
	// Every route the handler serves is documented: the handler's patterns.
	for _, pattern := range servedPatterns() {
		if pattern == Prefix {
			continue
		}
		if !slices.Contains(documented, pattern) {
			t.Errorf("route %s is served but not documented", pattern)
		}
	}
	if t.Failed() {
		return
	}
	t.Logf("%d paths checked: %s", len(covered), strings.Join(documented, " "))
}

// streamUntil serves a stream of target after lastID until its body holds
// the event id until, then ends it as a client that leaves.
func streamUntil(t *testing.T, h http.Handler, target, lastID, until string) answer {
	t.Helper()
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	r := httptest.NewRequestWithContext(ctx, http.MethodGet, target, nil)
	r.Header.Set("Last-Event-ID", lastID)
	w := &cancelOnWrite{ResponseRecorder: httptest.NewRecorder(), marker: []byte("id: " + until + "\n"), cancel: cancel}
	h.ServeHTTP(w, r)
	res := w.Result()
	body, _ := io.ReadAll(res.Body)
	return answer{res.StatusCode, res.Header, body}
}

// cancelOnWrite records an answer and cancels its request once the body
// holds marker.
type cancelOnWrite struct {
	*httptest.ResponseRecorder
	marker []byte
	cancel context.CancelFunc
}

func (c *cancelOnWrite) Write(p []byte) (int, error) {
	n, err := c.ResponseRecorder.Write(p)
	if bytes.Contains(c.Body.Bytes(), c.marker) {
		c.cancel()
	}
	return n, err
}
