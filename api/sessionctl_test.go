package api

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"testing"
	"time"

	"github.com/getkin/kin-openapi/openapi3filter"

	"github.com/cdcaudit/cdcaudit/access"
	"github.com/cdcaudit/cdcaudit/sessionctl"
	"github.com/cdcaudit/cdcaudit/sessions"
	"github.com/cdcaudit/cdcaudit/sink"
)

type sessionList []sessions.Session

func (l sessionList) Sessions() []sessions.Session { return l }

// The end routes, with a real controller ending sessions through a real
// webhook: admins only, every answer as openapi.json says, each outcome in
// the access log.
func TestSessionEndRoutes(t *testing.T) {
	f := newFixture(t)
	var calls atomic.Int32
	hook := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { calls.Add(1) }))
	defer hook.Close()
	ctl, err := sessionctl.New(sessionctl.Config{Webhook: hook.URL, Now: func() time.Time { return f.now }}, f.store)
	if err != nil {
		t.Fatal(err)
	}
	ctl.SetSessions(sessionList{{ID: f.alice, UserID: 6, Login: "alice@example.com", LastActivity: f.now}})
	w := sink.NewWriter(f.store, sink.WriterOptions{Queue: 1})
	defer w.Close()
	ctl.SetState(func(ctx context.Context, recs []sink.StateRecord) error {
		if err := w.Submit(ctx, sink.Batch{State: recs}); err != nil {
			return err
		}
		return w.Flush(ctx)
	})

	router := openAPIRouter(t)
	post := func(ends SessionEnder, p *access.Principal, target string, want int) answer {
		t.Helper()
		h, err := New(Options{Sources: []Source{{Name: "odoo", Store: f.store, Sessions: ends}}, Now: func() time.Time { return f.now }})
		if err != nil {
			t.Fatal(err)
		}
		req := httptest.NewRequest(http.MethodPost, target, nil)
		req.RemoteAddr = "192.0.2.7:4000"
		if p != nil {
			req = req.WithContext(access.NewContext(req.Context(), *p))
		}
		a := serve(h, req)
		if a.status != want {
			t.Fatalf("POST %s as %v: %d %s, want %d", target, p, a.status, a.body, want)
		}
		vreq := httptest.NewRequest(http.MethodPost, target, nil)
		route, params, err := router.FindRoute(vreq)
		if err != nil {
			t.Fatalf("%s: not in openapi.json: %v", target, err)
		}
		in := &openapi3filter.RequestValidationInput{Request: vreq, PathParams: params, Route: route,
			Options: &openapi3filter.Options{AuthenticationFunc: openapi3filter.NoopAuthenticationFunc, IncludeResponseStatus: true}}
		if err := openapi3filter.ValidateResponse(t.Context(), &openapi3filter.ResponseValidationInput{
			RequestValidationInput: in, Status: a.status, Header: a.header, Body: io.NopCloser(bytes.NewReader(a.body)), Options: in.Options}); err != nil {
			t.Errorf("POST %s: answer %d does not fit the document: %v\n%s", target, a.status, err, a.body)
		}
		return a
	}
	one := "/api/v1/sessions/" + f.alice + "/end"
	user := "/api/v1/users/alice@example.com/sessions/end"
	post(ctl, nil, one, http.StatusUnauthorized)
	post(ctl, &viewer, one, http.StatusForbidden)
	post(ctl, &self, one, http.StatusForbidden)
	post(ctl, &self, user, http.StatusForbidden)
	if calls.Load() != 0 {
		t.Fatal("a refused request ended something")
	}
	a := post(ctl, &admin, one, http.StatusOK)
	var body endBody
	if err := json.Unmarshal(a.body, &body); err != nil || len(body.Outcomes) != 1 || body.Outcomes[0].Result != sessionctl.ResultOK || calls.Load() != 1 {
		t.Fatalf("end: %s (%d calls)", a.body, calls.Load())
	}
	a = post(ctl, &admin, user, http.StatusOK)
	if json.Unmarshal(a.body, &body); len(body.Outcomes) != 1 || calls.Load() != 2 {
		t.Errorf("user end: %s", a.body)
	}
	post(ctl, &admin, "/api/v1/sessions/s%2F..%2F..%2Fxxxxxxxxxxxxxxxxxxx/end", http.StatusBadRequest)
	post(ctl, &admin, "/api/v1/sessions/nope/end", http.StatusBadRequest)
	post(ctl, &admin, "/api/v1/users/nobody/sessions/end", http.StatusNotFound)
	post(nil, &admin, one, http.StatusNotImplemented)
	hook.Close()
	a = post(ctl, &admin, one, http.StatusBadGateway)
	if json.Unmarshal(a.body, &body); body.Outcomes[0].Result != sessionctl.ResultFailed {
		t.Errorf("failed end: %s", a.body)
	}
	// GET is no way to end a session.
	h, _ := New(Options{Sources: []Source{{Name: "odoo", Store: f.store, Sessions: ctl}}})
	req := httptest.NewRequest(http.MethodGet, one, nil).WithContext(access.NewContext(t.Context(), admin))
	if a := serve(h, req); a.status == http.StatusOK {
		t.Errorf("GET %s: %d", one, a.status)
	}

	// The access log: admin's three ends (ok, ok, failed), with who and from where.
	var entries []map[string]any
	f.store.AccessLog(t.Context(), 0, false, 0, func(rec sink.AccessRecord) error {
		var m map[string]any
		json.Unmarshal(rec.Record, &m)
		if m["action"] == sessionctl.Action {
			entries = append(entries, m)
		}
		return nil
	})
	if len(entries) != 3 || entries[0]["via"] != "token:ops" || entries[0]["address"] != "192.0.2.7" || entries[2]["result"] != sessionctl.ResultFailed {
		t.Errorf("access log: %v", entries)
	}
}
