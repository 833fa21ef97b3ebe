// Package api is the read side of the HTTP API: JSON under /api/v1 over the
// store's query API and the session state the daemon keeps in it — one
// store per recorded database (a source), which each request names with
// ?source= when there are several. Who is asking comes from the request's
// context (package access, filled by sign-in); a self principal is kept to
// its own login on every route, and to the first source.
//
// Every answer is read in short read transactions (a page at a time) and
// written only once they have ended, so a slow client never holds one open.
package api

import (
	"context"
	_ "embed"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"time"

	"github.com/cdcaudit/cdcaudit/access"
	"github.com/cdcaudit/cdcaudit/history"
	"github.com/cdcaudit/cdcaudit/manifest"
	"github.com/cdcaudit/cdcaudit/sink"
)

// Store is what the API reads (sink.Store implements it): the events
// through the query API, one event by id, and the stages' derived state.
// record, key and value are valid only during fn.
type Store interface {
	history.Source
	Get(id string) ([]byte, error)
	LoadState(bucket string, fn func(key, value []byte) error) error
}

// Options are what New needs.
type Options struct {
	// Sources are the databases the daemon records, each with its own
	// store: at least one. The first is the one password sign-in checks
	// against, and the only one a self principal sees. Every route that
	// reads a store takes ?source=NAME, which may be left out when the
	// principal sees one source.
	Sources []Source
	// Now is the clock session states, durations and the summaries'
	// default ranges are computed with; nil: time.Now.
	Now func() time.Time
	// Log receives the failures a client only sees as "internal error";
	// nil: slog.Default().
	Log *slog.Logger
	// Pace paces every read of the stores and the writing of exports, so
	// that readers never slow recording (readpace.Pacer); nil: unpaced.
	Pace Pacer
	// MaxStreams bounds the event streams (GET /api/v1/events/stream) open
	// at once, over all sources; beyond it a stream is refused (503). 0:
	// DefaultMaxStreams.
	MaxStreams int
	// Done, when closed, ends every event stream (the daemon is stopping:
	// its server waits for requests in flight).
	Done <-chan struct{}
}

// Source is one recorded database as the API serves it.
type Source struct {
	// Name is the source's name (the events' source member), what
	// ?source= gives.
	Name string
	// Database is the name of the ERP database it records (shown by
	// GET /api/v1/sources).
	Database string
	Store    Store
	// Signer signs the manifests of its exports (its instance key,
	// instancekey.LoadOrCreate). Exports need it and the store's access
	// log (sink.Store); without them /api/v1/export answers 404.
	Signer manifest.Signer
	// Sessions ends its sessions for the admin routes
	// (sessionctl.Controller); nil: they answer 501.
	Sessions SessionEnder
}

// Pacer runs a reader's work when recording leaves room for it.
type Pacer interface {
	Do(ctx context.Context, work func() error) error
}

// Prefix is where the API lives.
const Prefix = "/api/v1/"

//go:embed openapi.json
var openAPI []byte

// OpenAPI returns the OpenAPI 3 document that describes the API.
func OpenAPI() []byte { return openAPI }

// server serves the routes on one source; what the sources share is in
// shared.
type server struct {
	*shared
	name, database string
	store          Store
	signer         manifest.Signer
	ends           SessionEnder
}

type shared struct {
	sources []*server // as Options.Sources gives them
	now     func() time.Time
	log     *slog.Logger
	pace    Pacer
	streams streamSlots
	done    <-chan struct{}
	// xlsx is held by the XLSX export running, if any: excelize holds
	// tens of MiB per sheet until the file ends, so one runs at a time.
	xlsx chan struct{}
}

// New returns the handler of everything under /api/v1/ (mount it there).
// Every route but GET /api/v1/openapi.json needs a principal in the
// request's context (access.NewContext); without one it answers 401.
func New(opts Options) (http.Handler, error) {
	if len(opts.Sources) == 0 {
		return nil, errors.New("api: no source")
	}
	if opts.MaxStreams < 0 {
		return nil, errors.New("api: MaxStreams is negative")
	}
	if opts.MaxStreams == 0 {
		opts.MaxStreams = DefaultMaxStreams
	}
	sh := &shared{now: opts.Now, log: opts.Log, pace: opts.Pace,
		streams: make(streamSlots, opts.MaxStreams), done: opts.Done, xlsx: make(chan struct{}, 1)}
	if sh.now == nil {
		sh.now = time.Now
	}
	if sh.log == nil {
		sh.log = slog.Default()
	}
	for _, src := range opts.Sources {
		switch {
		case src.Name == "":
			return nil, errors.New("api: a source without a name")
		case src.Store == nil:
			return nil, fmt.Errorf("api: source %s: no store", src.Name)
		case sh.source(src.Name) != nil:
			return nil, fmt.Errorf("api: source %s given twice", src.Name)
		}
		sh.sources = append(sh.sources, &server{shared: sh, name: src.Name, database: src.Database,
			store: src.Store, signer: src.Signer, ends: src.Sessions})
	}
	mux := http.NewServeMux()
	for pattern, h := range routeTable() {
		mux.Handle(pattern, sh.guard(h, !sourceless[pattern]))
	}
	for path, h := range actions() {
		mux.Handle(path, sh.guardAction(h))
	}
	mux.HandleFunc(openAPIPath, func(w http.ResponseWriter, r *http.Request) {
		if !readMethod(w, r) {
			return
		}
		w.Header().Set("Content-Type", "application/json; charset=utf-8")
		w.Write(openAPI)
	})
	return headers(mux), nil
}

// handlerFunc serves a route on the source s.
type handlerFunc func(s *server, w http.ResponseWriter, r *http.Request, p access.Principal) error

const openAPIPath = "/api/v1/openapi.json"

// routeTable is the routes that need a principal, by ServeMux pattern.
func routeTable() map[string]handlerFunc {
	return map[string]handlerFunc{
		"/api/v1/whoami":                (*server).whoami,
		"/api/v1/sources":               (*server).listSources,
		"/api/v1/events":                (*server).events,
		"/api/v1/events/count":          (*server).eventsCount,
		"/api/v1/events/stream":         (*server).eventStream,
		"/api/v1/events/{id}":           (*server).event,
		"/api/v1/records/history":       (*server).recordHistory,
		"/api/v1/sessions":              (*server).sessions,
		"/api/v1/sessions/{id}":         (*server).session,
		"/api/v1/logins":                (*server).logins,
		"/api/v1/users":                 (*server).users,
		"/api/v1/summaries/changes":     (*server).summaryChanges,
		"/api/v1/summaries/logins":      (*server).summaryLogins,
		"/api/v1/summaries/sessions":    (*server).summarySessions,
		"/api/v1/summaries/users":       (*server).summaryUsers,
		"/api/v1/summaries/orm-bypass":  (*server).summaryORMBypass,
		"/api/v1/access-log":            (*server).accessLog,
		"/api/v1/db-sessions":           (*server).dbSessions,
		"/api/v1/alerts":                (*server).alerts,
		"/api/v1/export":                (*server).export,
		"/api/v1/exports/{id}/manifest": (*server).exportManifest,
		"/api/v1/":                      notFound,
	}
}

// sourceless are the routes that read no store: they take no source
// parameter (their handler gets the first source the principal sees).
var sourceless = map[string]bool{"/api/v1/whoami": true, "/api/v1/sources": true, "/api/v1/": true}

// servedPatterns lists every route New serves.
func servedPatterns() []string {
	var out []string
	for p := range routeTable() {
		out = append(out, p)
	}
	for p := range actions() {
		out = append(out, p)
	}
	return append(out, openAPIPath)
}

// headers sets what every answer carries.
func headers(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h := w.Header()
		h.Set("Cache-Control", "no-store")
		h.Set("X-Content-Type-Options", "nosniff")
		next.ServeHTTP(w, r)
	})
}

// guard refuses a request without a principal or with a method the
// read-only API does not serve, picks the source it reads (bySource) or
// the first p sees, then runs h; h's error becomes the answer.
func (sh *shared) guard(h handlerFunc, bySource bool) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		p, ok := signedIn(w, r)
		if !ok {
			return
		}
		if !readMethod(w, r) {
			return
		}
		s := sh.visible(p)[0]
		if bySource {
			var err error
			if s, r, err = sh.pick(r, p); err != nil {
				sh.fail(w, r, err)
				return
			}
		}
		if err := h(s, w, r, p); err != nil {
			sh.fail(w, r, err)
		}
	})
}

// signedIn returns the request's principal, or answers 401.
func signedIn(w http.ResponseWriter, r *http.Request) (access.Principal, bool) {
	p, err := access.FromContext(r.Context())
	if err != nil {
		w.Header().Set("WWW-Authenticate", "Bearer")
		writeError(w, http.StatusUnauthorized, "not signed in: give a token (Authorization: Bearer) or sign in")
		return p, false
	}
	return p, true
}

func readMethod(w http.ResponseWriter, r *http.Request) bool {
	if r.Method == http.MethodGet || r.Method == http.MethodHead {
		return true
	}
	w.Header().Set("Allow", "GET, HEAD")
	writeError(w, http.StatusMethodNotAllowed, "method "+r.Method+" not allowed: this route is read-only (GET)")
	return false
}

func notFound(*server, http.ResponseWriter, *http.Request, access.Principal) error {
	return errNotFound("no such route (see /api/v1/openapi.json)")
}

// httpError is an error with its status and a message for a person.
type httpError struct {
	status int
	msg    string
}

func (e *httpError) Error() string { return e.msg }

func badRequest(format string, args ...any) error {
	return &httpError{http.StatusBadRequest, fmt.Sprintf(format, args...)}
}

func errNotFound(msg string) error { return &httpError{http.StatusNotFound, msg} }

// fail answers err: its own status for an httpError, 500 with no detail
// otherwise (the detail goes to the log: store paths and damage reports
// are not for clients).
func (s *shared) fail(w http.ResponseWriter, r *http.Request, err error) {
	var he *httpError
	switch {
	case errors.As(err, &he):
		writeError(w, he.status, he.msg)
	case errors.Is(err, context.Canceled) && r.Context().Err() != nil:
		// The client left: nobody reads the answer.
	default:
		s.log.Error("api: request failed", "path", r.URL.Path, "err", err)
		writeError(w, http.StatusInternalServerError, "internal error (the daemon's log says more)")
	}
}

type errorBody struct {
	Error string `json:"error"`
}

func writeError(w http.ResponseWriter, status int, msg string) {
	writeJSON(w, status, errorBody{msg})
}

// writeJSON writes v; values from the store are written as they are
// ('<' stays '<'). A failed write is not an error to answer: the client
// has gone.
func writeJSON(w http.ResponseWriter, status int, v any) error {
	b, err := marshal(v)
	if err != nil {
		return err
	}
	w.Header().Set("Content-Type", "application/json; charset=utf-8")
	w.WriteHeader(status)
	w.Write(b)
	return nil
}

func marshal(v any) ([]byte, error) {
	var buf jsonBuffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		return nil, err
	}
	return buf.b, nil
}

type jsonBuffer struct{ b []byte }

func (j *jsonBuffer) Write(p []byte) (int, error) { j.b = append(j.b, p...); return len(p), nil }

type whoamiBody struct {
	Role  string `json:"role"`
	Login string `json:"login"`
	Via   string `json:"via"`
	// CSRFToken is a browser session's, so that a reloaded page can still
	// POST; absent for a bearer token.
	CSRFToken string `json:"csrf_token,omitempty"`
}

func (s *server) whoami(w http.ResponseWriter, r *http.Request, p access.Principal) error {
	if err := noParams(r); err != nil {
		return err
	}
	return writeJSON(w, http.StatusOK, whoamiBody{Role: string(p.Role), Login: p.Login, Via: p.Via, CSRFToken: access.CSRFToken(r.Context())})
}

// paced runs a reader's work through the pacer.
func (s *shared) paced(ctx context.Context, work func() error) error {
	if s.pace == nil {
		return work()
	}
	return s.pace.Do(ctx, work)
}

// query is the store's Query, paced: every read of events goes through it.
func (s *server) query(ctx context.Context, q sink.Query, fn func(key, record []byte) error) (next string, err error) {
	err = s.paced(ctx, func() error {
		next, err = s.store.Query(ctx, q, fn)
		return err
	})
	return next, err
}

// isNotFound reports an id the store does not hold.
func isNotFound(err error) bool { return errors.Is(err, sink.ErrNotFound) }
