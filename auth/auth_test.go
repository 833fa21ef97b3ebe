package auth

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/cdcaudit/cdcaudit/access"
)

// memUsers is an application's users table held in memory, for the HTTP
// flow; OdooUsers is tested against the recorded Odoo database.
type memUsers map[string]Account

func (m memUsers) Lookup(_ context.Context, login string) (Account, error) {
	a, ok := m[login]
	if !ok {
		return Account{}, ErrNoAccount
	}
	return a, nil
}

// brokenUsers is a users table that cannot be read.
type brokenUsers struct{}

func (brokenUsers) Lookup(context.Context, string) (Account, error) {
	return Account{}, errors.New("connection refused")
}

type recorder struct {
	mu     sync.Mutex
	events []AccessEvent
	fail   bool
}

func (r *recorder) Record(_ context.Context, e AccessEvent) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.fail {
		return errors.New("store closed")
	}
	r.events = append(r.events, e)
	return nil
}

func (r *recorder) all() []AccessEvent {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]AccessEvent(nil), r.events...)
}

type counter struct {
	mu      sync.Mutex
	signIns map[string]int
	refused map[string]int
}

func (c *counter) SignIn(result string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.signIns[result]++
}

func (c *counter) Refused(reason string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.refused[reason]++
}

// The users of the HTTP tests and their passwords. Hashes are made with
// few rounds to keep the tests quick; the recorded Odoo's 600 000-round
// hashes are checked in odoo_test.go.
const (
	adminPW = "admin-pw-1"
	alicePW = "alice-pw-1"
	bobPW   = "bob-pw-1"
	totpKey = "JBSWY3DPEHPK3PXPJBSWY3DPEHPK3PXP"
)

// harness is an Auth mounted as the daemon mounts it, with a whoami
// handler behind the middleware, a clock the test moves, and everything
// it logs, records and counts.
type harness struct {
	t       *testing.T
	a       *Auth
	mux     *http.ServeMux
	now     time.Time
	logs    bytes.Buffer
	logMu   sync.Mutex
	rec     *recorder
	metrics *counter
	// seen collects every response body and header, to search for secrets.
	seen strings.Builder
}

type syncWriter struct {
	mu *sync.Mutex
	w  io.Writer
}

func (s syncWriter) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.w.Write(p)
}

func newHarness(t *testing.T, opts Options) *harness {
	t.Helper()
	h := &harness{t: t, now: time.Date(2026, 12, 3, 9, 0, 0, 0, time.UTC), rec: &recorder{},
		metrics: &counter{signIns: map[string]int{}, refused: map[string]int{}}}
	if opts.Users == nil {
		opts.Users = memUsers{
			"admin": {ID: 2, PasswordHash: odooHash(t, adminPW, 1000, []byte("admin-salt-16byt")), Role: access.Admin},
			"alice": {ID: 6, PasswordHash: odooHash(t, alicePW, 1000, []byte("alice-salt")), Role: access.Self, TOTPSecret: totpKey},
			"bob":   {ID: 7, PasswordHash: odooHash(t, bobPW, 2000, []byte("bob-salt-bob-salt")), Role: access.Viewer},
			"old":   {ID: 9, PasswordHash: odooHash(t, "old-pw", 1000, []byte("s")), Role: ""},   // archived
			"port":  {ID: 10, PasswordHash: odooHash(t, "port-pw", 1000, []byte("s")), Role: ""}, // portal
			"plain": {ID: 11, PasswordHash: "plain-pw", Role: access.Self},                       // passlib's plaintext scheme
		}
	}
	if opts.Access == nil {
		opts.Access = h.rec
	}
	if opts.Metrics == nil {
		opts.Metrics = h.metrics
	}
	opts.Log = slog.New(slog.NewTextHandler(syncWriter{&h.logMu, &h.logs}, &slog.HandlerOptions{Level: slog.LevelDebug}))
	opts.Now = func() time.Time { return h.now }
	a, err := New(opts)
	if err != nil {
		t.Fatal(err)
	}
	h.a = a
	h.mux = http.NewServeMux()
	api := http.NewServeMux()
	api.HandleFunc("/api/v1/whoami", func(w http.ResponseWriter, r *http.Request) {
		p, err := access.FromContext(r.Context())
		if err != nil {
			writeError(w, http.StatusUnauthorized, err.Error())
			return
		}
		writeJSON(w, http.StatusOK, map[string]string{"role": string(p.Role), "login": p.Login, "via": p.Via, "csrf_token": access.CSRFToken(r.Context())})
	})
	api.HandleFunc("/api/v1/openapi.json", func(w http.ResponseWriter, r *http.Request) {
		_, err := access.FromContext(r.Context())
		writeJSON(w, http.StatusOK, map[string]bool{"principal": err == nil})
	})
	h.mux.Handle("/api/v1/", a.Middleware(api))
	a.Routes(h.mux)
	return h
}

type reqOpt func(*http.Request)

func bearer(tok string) reqOpt {
	return func(r *http.Request) { r.Header.Set("Authorization", "Bearer "+tok) }
}

func withCookie(c *http.Cookie) reqOpt { return func(r *http.Request) { r.AddCookie(c) } }

func csrf(tok string) reqOpt { return func(r *http.Request) { r.Header.Set(CSRFHeader, tok) } }

func from(addr string) reqOpt { return func(r *http.Request) { r.RemoteAddr = addr } }

func (h *harness) do(method, path, body string, opts ...reqOpt) *httptest.ResponseRecorder {
	h.t.Helper()
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	r := httptest.NewRequest(method, path, rd)
	r.RemoteAddr = "192.0.2.10:40000"
	if body != "" {
		r.Header.Set("Content-Type", "application/json")
	}
	for _, o := range opts {
		o(r)
	}
	w := httptest.NewRecorder()
	h.mux.ServeHTTP(w, r)
	seenBody := w.Body.String()
	if (path == "/api/v1/signin" || path == "/api/v1/whoami") && w.Code == http.StatusOK {
		// The answers that carry a secret by design: the session's CSRF
		// token.
		var m map[string]any
		json.Unmarshal(w.Body.Bytes(), &m)
		delete(m, "csrf_token")
		b, _ := json.Marshal(m)
		seenBody = string(b)
	}
	h.seen.WriteString(seenBody)
	for k, v := range w.Header() {
		if k != "Set-Cookie" {
			h.seen.WriteString(k + ": " + strings.Join(v, ",") + "\n")
		}
	}
	if w.Code >= 500 && w.Code != http.StatusServiceUnavailable {
		h.t.Errorf("%s %s: %d", method, path, w.Code)
	}
	return w
}

func signInBody(login, password, totp string) string {
	b, _ := json.Marshal(map[string]string{"login": login, "password": password, "totp": totp})
	return string(b)
}

// signIn signs in and returns the session cookie and CSRF token.
func (h *harness) signIn(login, password, totp string, opts ...reqOpt) (*http.Cookie, string) {
	h.t.Helper()
	w := h.do("POST", "/api/v1/signin", signInBody(login, password, totp), opts...)
	if w.Code != http.StatusOK {
		h.t.Fatalf("sign-in %s: %d %s", login, w.Code, w.Body)
	}
	var resp signInResponse
	if err := json.Unmarshal(w.Body.Bytes(), &resp); err != nil {
		h.t.Fatal(err)
	}
	cookies := w.Result().Cookies()
	if len(cookies) != 1 || cookies[0].Name != CookieName {
		h.t.Fatalf("sign-in set %v", cookies)
	}
	return cookies[0], resp.CSRFToken
}

func (h *harness) whoami(opts ...reqOpt) (int, map[string]string) {
	h.t.Helper()
	w := h.do("GET", "/api/v1/whoami", "", opts...)
	var m map[string]string
	json.Unmarshal(w.Body.Bytes(), &m)
	return w.Code, m
}

func errorBody(t *testing.T, w *httptest.ResponseRecorder) map[string]any {
	t.Helper()
	if ct := w.Header().Get("Content-Type"); ct != "application/json; charset=utf-8" {
		t.Errorf("Content-Type %q", ct)
	}
	var m map[string]any
	if err := json.Unmarshal(w.Body.Bytes(), &m); err != nil {
		t.Fatalf("body %q: %v", w.Body, err)
	}
	if msg, _ := m["error"].(string); msg == "" {
		t.Errorf("error body without a message: %s", w.Body)
	}
	return m
}

func TestUnauthenticatedIs401(t *testing.T) {
	h := newHarness(t, Options{})
	for _, c := range []struct {
		method, path string
		opts         []reqOpt
	}{
		{"GET", "/api/v1/whoami", nil},
		{"GET", "/api/v1/events?user=alice", nil},
		{"POST", "/api/v1/exports", nil},
		{"DELETE", "/api/v1/anything", nil},
		{"GET", "/api/v1/whoami", []reqOpt{func(r *http.Request) { r.Header.Set("Authorization", "Basic YWRtaW46YWRtaW4=") }}},
		{"GET", "/api/v1/whoami", []reqOpt{bearer("")}},
		{"GET", "/api/v1/whoami", []reqOpt{withCookie(&http.Cookie{Name: CookieName, Value: "made-up"})}},
		{"POST", "/api/v1/signout", nil},
	} {
		w := h.do(c.method, c.path, "", c.opts...)
		if w.Code != http.StatusUnauthorized {
			t.Errorf("%s %s: %d, want 401", c.method, c.path, w.Code)
			continue
		}
		errorBody(t, w)
		if w.Header().Get("WWW-Authenticate") != "Bearer" || w.Header().Get("Cache-Control") != "no-store" || w.Header().Get("X-Content-Type-Options") != "nosniff" {
			t.Errorf("%s %s: headers %v", c.method, c.path, w.Header())
		}
	}
	// The OpenAPI document is public and carries no principal.
	w := h.do("GET", "/api/v1/openapi.json", "")
	if w.Code != 200 || !strings.Contains(w.Body.String(), `"principal":false`) {
		t.Errorf("openapi.json: %d %s", w.Code, w.Body)
	}
	if w := h.do("POST", "/api/v1/openapi.json", ""); w.Code != http.StatusUnauthorized {
		t.Errorf("POST openapi.json: %d", w.Code)
	}
	if h.metrics.refused[RefusedNoCredentials] == 0 || h.metrics.refused[RefusedBadToken] == 0 || h.metrics.refused[RefusedBadSession] == 0 {
		t.Errorf("refusals counted: %v", h.metrics.refused)
	}
}

func TestBearerTokens(t *testing.T) {
	now := time.Date(2026, 12, 3, 9, 0, 0, 0, time.UTC)
	viewerTok, viewer, _ := NewToken(access.Principal{Role: access.Viewer}, "grafana", time.Time{})
	selfTok, self, _ := NewToken(access.Principal{Role: access.Self, Login: "carol"}, "carol-cli", now.Add(time.Hour))
	h := newHarness(t, Options{Tokens: []Token{viewer, self}})

	if code, m := h.whoami(bearer(viewerTok)); code != 200 || m["role"] != "viewer" || m["login"] != "" || m["via"] != "token:grafana" || m["csrf_token"] != "" {
		t.Errorf("viewer token: %d %v", code, m)
	}
	if code, m := h.whoami(func(r *http.Request) { r.Header.Set("Authorization", "bearer  "+selfTok) }); code != 200 || m["role"] != "self" || m["login"] != "carol" || m["via"] != "token:carol-cli" {
		t.Errorf("self token: %d %v", code, m)
	}
	// No CSRF for a bearer token: it is not an ambient credential.
	if w := h.do("POST", "/api/v1/whoami", "", bearer(viewerTok)); w.Code != 200 {
		t.Errorf("POST with a bearer token: %d", w.Code)
	}
	for _, wrong := range []string{viewerTok + "x", viewerTok[:len(viewerTok)-2], "cdca_" + strings.Repeat("A", 43), hexSum(viewer)} {
		if code, _ := h.whoami(bearer(wrong)); code != http.StatusUnauthorized {
			t.Errorf("wrong token: %d", code)
		}
	}
	h.now = now.Add(time.Hour)
	w := h.do("GET", "/api/v1/whoami", "", bearer(selfTok))
	if w.Code != http.StatusUnauthorized || !strings.Contains(errorBody(t, w)["error"].(string), "expired") {
		t.Errorf("expired token: %d %s", w.Code, w.Body)
	}
	if h.metrics.refused[RefusedExpiredToken] != 1 || h.metrics.refused[RefusedBadToken] != 4 {
		t.Errorf("refusals counted: %v", h.metrics.refused)
	}
	h.noSecrets(viewerTok, selfTok)
}

func hexSum(t Token) string { return strings.Split(strings.Split(t.String(), "sha256=")[1], " ")[0] }

func TestCookieSession(t *testing.T) {
	h := newHarness(t, Options{})
	w := h.do("POST", "/api/v1/signin", signInBody("bob", bobPW, ""))
	if w.Code != 200 {
		t.Fatalf("sign-in: %d %s", w.Code, w.Body)
	}
	var resp signInResponse
	json.Unmarshal(w.Body.Bytes(), &resp)
	if resp.Login != "bob" || resp.Role != "viewer" || len(resp.CSRFToken) < 40 || resp.ExpiresIdleSeconds != 1800 {
		t.Errorf("response %+v", resp)
	}
	c := w.Result().Cookies()[0]
	if c.Name != CookieName || !c.HttpOnly || c.SameSite != http.SameSiteStrictMode || c.Path != "/" || c.Secure || len(c.Value) < 40 {
		t.Errorf("cookie %+v", c)
	}
	if code, m := h.whoami(withCookie(c)); code != 200 || m["role"] != "viewer" || m["login"] != "bob" || m["via"] != "password" || m["csrf_token"] != resp.CSRFToken {
		t.Errorf("whoami: %d %v", code, m)
	}

	// CSRF on every method but GET, HEAD and OPTIONS.
	for _, m := range []string{"POST", "PUT", "PATCH", "DELETE"} {
		for _, opts := range [][]reqOpt{{withCookie(c)}, {withCookie(c), csrf("wrong")}, {withCookie(c), csrf(resp.CSRFToken[:len(resp.CSRFToken)-1])}} {
			if w := h.do(m, "/api/v1/whoami", "", opts...); w.Code != http.StatusForbidden {
				t.Errorf("%s without the right CSRF token: %d", m, w.Code)
			} else {
				errorBody(t, w)
			}
		}
		if w := h.do(m, "/api/v1/whoami", "", withCookie(c), csrf(resp.CSRFToken)); w.Code != 200 {
			t.Errorf("%s with the CSRF token: %d", m, w.Code)
		}
	}
	for _, m := range []string{"GET", "HEAD", "OPTIONS"} {
		if w := h.do(m, "/api/v1/whoami", "", withCookie(c)); w.Code != 200 {
			t.Errorf("%s without CSRF: %d", m, w.Code)
		}
	}
	// The CSRF token of another session is not this one's.
	_, otherCSRF := h.signIn("admin", adminPW, "")
	if w := h.do("POST", "/api/v1/whoami", "", withCookie(c), csrf(otherCSRF)); w.Code != http.StatusForbidden {
		t.Errorf("another session's CSRF token: %d", w.Code)
	}

	// Sign-out: CSRF required, then the session is gone and the cookie cleared.
	if w := h.do("POST", "/api/v1/signout", "", withCookie(c)); w.Code != http.StatusForbidden {
		t.Errorf("sign-out without CSRF: %d", w.Code)
	}
	w = h.do("POST", "/api/v1/signout", "", withCookie(c), csrf(resp.CSRFToken))
	if w.Code != http.StatusNoContent {
		t.Fatalf("sign-out: %d %s", w.Code, w.Body)
	}
	if cl := w.Result().Cookies(); len(cl) != 1 || cl[0].MaxAge >= 0 || cl[0].Value != "" {
		t.Errorf("sign-out cookie %v", cl)
	}
	if code, _ := h.whoami(withCookie(c)); code != http.StatusUnauthorized {
		t.Errorf("after sign-out: %d", code)
	}
	ev := h.rec.all()
	if last := ev[len(ev)-1]; last.Action != "signout" || last.Login != "bob" || last.Principal != "viewer" || last.Result != ResultOK {
		t.Errorf("sign-out recorded as %+v", last)
	}
	h.noSecrets(c.Value, resp.CSRFToken, bobPW)
}

func TestSecureCookie(t *testing.T) {
	h := newHarness(t, Options{})
	tlsReq := func(r *http.Request) { r.TLS = &tls.ConnectionState{} }
	if c, _ := h.signIn("bob", bobPW, "", tlsReq); !c.Secure {
		t.Error("a sign-in over TLS got a cookie without Secure")
	}
	h = newHarness(t, Options{SecureCookie: true})
	if c, _ := h.signIn("bob", bobPW, ""); !c.Secure {
		t.Error("SecureCookie: cookie without Secure")
	}
}

func TestSessionExpiry(t *testing.T) {
	h := newHarness(t, Options{SessionIdle: 30 * time.Minute, SessionLifetime: 2 * time.Hour})
	t0 := h.now
	c, _ := h.signIn("bob", bobPW, "")
	// Each request keeps it alive for another idle period…
	for i := 1; i <= 5; i++ {
		h.now = t0.Add(time.Duration(i) * 20 * time.Minute)
		if code, _ := h.whoami(withCookie(c)); code != 200 {
			t.Fatalf("after %d×20 min of activity: %d", i, code)
		}
	}
	// …up to its lifetime.
	h.now = t0.Add(2 * time.Hour)
	if code, _ := h.whoami(withCookie(c)); code != http.StatusUnauthorized {
		t.Fatalf("at its lifetime: %d", code)
	}
	// Idle: 30 minutes without a request ends it, and it stays ended.
	c, _ = h.signIn("bob", bobPW, "")
	h.now = h.now.Add(29*time.Minute + 59*time.Second)
	if code, _ := h.whoami(withCookie(c)); code != 200 {
		t.Fatalf("just before idle: %d", code)
	}
	h.now = h.now.Add(30 * time.Minute)
	w := h.do("GET", "/api/v1/whoami", "", withCookie(c))
	if w.Code != http.StatusUnauthorized {
		t.Fatalf("after 30 idle minutes: %d", w.Code)
	}
	if cl := w.Result().Cookies(); len(cl) != 1 || cl[0].MaxAge >= 0 {
		t.Errorf("expired session: cookie not cleared: %v", cl)
	}
	h.now = h.now.Add(-10 * time.Minute) // a clock stepping back does not revive it
	if code, _ := h.whoami(withCookie(c)); code != http.StatusUnauthorized {
		t.Fatalf("revived: %d", code)
	}
	if n := h.a.sessions.len(); n != 0 {
		t.Errorf("%d sessions kept", n)
	}
}

func TestSessionSettingsChecked(t *testing.T) {
	for _, o := range []Options{
		{SessionIdle: time.Hour, SessionLifetime: 30 * time.Minute},
		{SessionIdle: time.Second},
		{SessionLifetime: 1000 * time.Hour},
		{LoginLimit: Limit{Failures: 0, Per: time.Minute}},
		{AddressLimit: Limit{Failures: 5}},
	} {
		if _, err := New(o); err == nil {
			t.Errorf("%+v accepted", o)
		}
	}
}

// A new sign-in never keeps the session it was made from.
func TestSignInReplacesSession(t *testing.T) {
	h := newHarness(t, Options{})
	c1, _ := h.signIn("bob", bobPW, "")
	c2, _ := h.signIn("admin", adminPW, "", withCookie(c1))
	if c1.Value == c2.Value {
		t.Fatal("the same cookie")
	}
	if code, _ := h.whoami(withCookie(c1)); code != http.StatusUnauthorized {
		t.Errorf("the old session survived: %d", code)
	}
	if code, m := h.whoami(withCookie(c2)); code != 200 || m["role"] != "admin" {
		t.Errorf("the new session: %d %v", code, m)
	}
}

func TestSignInRefusals(t *testing.T) {
	h := newHarness(t, Options{})
	var bodies []string
	for i, c := range []struct{ login, password, totp string }{
		{"nobody", "whatever", ""},       // unknown login
		{"bob", "wrong", ""},             // wrong password
		{"bob", bobPW + " ", ""},         // almost
		{"BOB", bobPW, ""},               // logins are exact, as Odoo's
		{"old", "old-pw", ""},            // archived user, right password
		{"port", "port-pw", ""},          // portal user, right password
		{"plain", "plain-pw", ""},        // not a pbkdf2 hash
		{"alice", "wrong", ""},           // wrong password of a two-factor user: no hint that a code is needed
		{"alice", alicePW, "000000"},     // wrong code
		{"alice", alicePW, "12345"},      // not a code
		{"nobody", "whatever", "123456"}, // a code for an unknown login
	} {
		w := h.do("POST", "/api/v1/signin", signInBody(c.login, c.password, c.totp), from(fmt.Sprintf("198.51.100.%d:1", i+1)))
		if w.Code != http.StatusUnauthorized {
			t.Errorf("%+v: %d %s", c, w.Code, w.Body)
			continue
		}
		if len(w.Result().Cookies()) != 0 {
			t.Errorf("%+v: a cookie was set", c)
		}
		bodies = append(bodies, w.Body.String())
	}
	for _, b := range bodies {
		if b != bodies[0] {
			t.Errorf("refusals differ: %s vs %s", b, bodies[0])
		}
	}
	if h.metrics.signIns[ResultRefused] != 11 {
		t.Errorf("counted %v", h.metrics.signIns)
	}
	ev := h.rec.all()
	if len(ev) != 11 || ev[0].Login != "nobody" || ev[0].Result != ResultRefused || ev[0].Address != "198.51.100.1" || ev[0].Principal != "" {
		t.Errorf("recorded %+v", ev)
	}
	h.noSecrets(bobPW, alicePW, "old-pw", "port-pw", "plain-pw", "whatever", "000000", "123456")
}

func TestTwoFactor(t *testing.T) {
	h := newHarness(t, Options{})
	key, _ := decodeTOTPSecret(totpKey)
	code := hotp(key, uint64(h.now.Unix()/totpStep))

	// The right password without a code: told to send one.
	w := h.do("POST", "/api/v1/signin", signInBody("alice", alicePW, ""))
	m := errorBody(t, w)
	if w.Code != http.StatusUnauthorized || m["totp_required"] != true || len(w.Result().Cookies()) != 0 {
		t.Fatalf("no code: %d %s", w.Code, w.Body)
	}
	c, _ := h.signIn("alice", alicePW, code)
	if code, m := h.whoami(withCookie(c)); code != 200 || m["role"] != "self" || m["login"] != "alice" {
		t.Fatalf("whoami: %d %v", code, m)
	}
	// A code is good once.
	if w := h.do("POST", "/api/v1/signin", signInBody("alice", alicePW, code)); w.Code != http.StatusUnauthorized {
		t.Errorf("the same code again: %d", w.Code)
	}
	// The next step's code, typed with spaces, 30 s later.
	h.now = h.now.Add(30 * time.Second)
	next := hotp(key, uint64(h.now.Unix()/totpStep))
	h.signIn("alice", alicePW, next[:3]+" "+next[3:])

	ev := h.rec.all()
	want := []string{ResultTOTPRequired, ResultOK, ResultRefused, ResultOK}
	if len(ev) != len(want) {
		t.Fatalf("recorded %+v", ev)
	}
	for i, e := range ev {
		if e.Result != want[i] {
			t.Errorf("event %d: %s, want %s", i, e.Result, want[i])
		}
	}
	if ev[1].Principal != "self:alice" || ev[1].Via != "password" {
		t.Errorf("ok recorded as %+v", ev[1])
	}
	h.noSecrets(alicePW, code, next, totpKey)
}

func TestSignInBadRequests(t *testing.T) {
	h := newHarness(t, Options{})
	for _, c := range []struct {
		body string
		opts []reqOpt
	}{
		{"", nil},
		{"{", nil},
		{"[]", nil},
		{`{"login":"bob"}`, nil},
		{`{"login":"","password":"x"}`, nil},
		{`{"login":"bob","password":"x","role":"admin"}`, nil},
		{`{"login":"bob","password":"x"} {"login":"bob","password":"x"}`, nil},
		{`{"login":1,"password":"x"}`, nil},
		{signInBody(strings.Repeat("b", 300), "x", ""), nil},
		{signInBody("bob\nadmin", "x", ""), nil},
		{signInBody("bob", strings.Repeat("x", 5000), ""), nil},
		{`{"login":"bob","password":"` + strings.Repeat("x", 10000) + `"}`, nil},
		{signInBody("bob", bobPW, ""), []reqOpt{func(r *http.Request) { r.Header.Set("Content-Type", "application/x-www-form-urlencoded") }}},
		{signInBody("bob", bobPW, ""), []reqOpt{func(r *http.Request) { r.Header.Set("Content-Type", "text/plain") }}},
	} {
		w := h.do("POST", "/api/v1/signin", c.body, c.opts...)
		if w.Code != http.StatusBadRequest {
			t.Errorf("%.60q: %d %s", c.body, w.Code, w.Body)
			continue
		}
		errorBody(t, w)
	}
	if w := h.do("GET", "/api/v1/signin", ""); w.Code != http.StatusUnauthorized {
		t.Errorf("GET signin: %d (the middleware's, as any other /api path)", w.Code)
	}
	if len(h.rec.all()) != 0 {
		t.Errorf("bad requests recorded: %+v", h.rec.all())
	}
}

func TestRateLimits(t *testing.T) {
	h := newHarness(t, Options{})
	// Per login: 5 failures from 5 addresses, then even the right password
	// is refused before it is checked.
	for i := range 5 {
		if w := h.do("POST", "/api/v1/signin", signInBody("bob", "guess", ""), from(fmt.Sprintf("203.0.113.%d:9", i+1))); w.Code != http.StatusUnauthorized {
			t.Fatalf("failure %d: %d", i, w.Code)
		}
	}
	w := h.do("POST", "/api/v1/signin", signInBody("bob", bobPW, ""), from("203.0.113.99:9"))
	if w.Code != http.StatusTooManyRequests || w.Header().Get("Retry-After") != "180" {
		t.Fatalf("6th attempt: %d Retry-After %q", w.Code, w.Header().Get("Retry-After"))
	}
	errorBody(t, w)
	// Another login from the same addresses is not limited by bob's count.
	h.signIn("admin", adminPW, "", from("203.0.113.1:9"))
	h.now = h.now.Add(3 * time.Minute)
	h.signIn("bob", bobPW, "", from("203.0.113.99:9"))
	// A success forgets the login's failures: a full burst again.
	for range 5 {
		h.do("POST", "/api/v1/signin", signInBody("bob", "guess", ""), from("203.0.113.50:9"))
	}
	if w := h.do("POST", "/api/v1/signin", signInBody("bob", "guess", ""), from("203.0.113.51:9")); w.Code != http.StatusTooManyRequests {
		t.Errorf("after a success and 5 more failures: %d", w.Code)
	}

	// Per address: 20 failures of 20 logins from one address, then any
	// login from it is refused; another address is not.
	h.now = h.now.Add(time.Hour)
	for i := range 20 {
		if w := h.do("POST", "/api/v1/signin", signInBody(fmt.Sprintf("user%d", i), "guess", ""), from(fmt.Sprintf("[2001:db8:0:1::%x]:1", i))); w.Code != http.StatusUnauthorized {
			t.Fatalf("address failure %d: %d", i, w.Code)
		}
	}
	w = h.do("POST", "/api/v1/signin", signInBody("admin", adminPW, ""), from("[2001:db8:0:1:ffff::1]:1")) // same /64
	if w.Code != http.StatusTooManyRequests || w.Header().Get("Retry-After") != "45" {
		t.Fatalf("21st from the address: %d Retry-After %q", w.Code, w.Header().Get("Retry-After"))
	}
	h.signIn("admin", adminPW, "", from("[2001:db8:0:2::1]:1"))
	// X-Forwarded-For does not move a client to another address.
	w = h.do("POST", "/api/v1/signin", signInBody("admin", adminPW, ""), from("[2001:db8:0:1::1]:1"),
		func(r *http.Request) { r.Header.Set("X-Forwarded-For", "192.0.2.200") })
	if w.Code != http.StatusTooManyRequests {
		t.Errorf("with X-Forwarded-For: %d", w.Code)
	}
	if h.metrics.signIns[ResultRateLimited] != 4 {
		t.Errorf("rate-limited counted %d", h.metrics.signIns[ResultRateLimited])
	}
	// The first refusal of each lockout is recorded (bob's two, the
	// address's one); the rest of a lockout only counted.
	var limited []string
	for _, e := range h.rec.all() {
		if e.Result == ResultRateLimited {
			limited = append(limited, e.Login+" from "+e.Address)
		}
	}
	if want := []string{"bob from 203.0.113.99", "bob from 203.0.113.51", "admin from 2001:db8:0:1:ffff::1"}; !slices.Equal(limited, want) {
		t.Errorf("rate-limited attempts recorded: %q, want the first of each lockout %q", limited, want)
	}
}

// An unknown login, an archived user and a hash of another scheme cost a
// PBKDF2 verification as a known one does, with the rounds the users table
// uses.
func TestUnknownLoginCostsAVerification(t *testing.T) {
	users := memUsers{"bob": {ID: 7, PasswordHash: odooHash(t, bobPW, 1234, []byte("salt")), Role: access.Viewer},
		"old": {ID: 8, PasswordHash: odooHash(t, "x", 1234, []byte("salt")), Role: ""},
		"odd": {ID: 9, PasswordHash: "$2b$12$notpbkdf2", Role: access.Self}}
	h := newHarness(t, Options{Users: users})
	if h.a.rounds.Load() != odooDefaultRounds {
		t.Fatalf("before any sign-in an unknown login costs %d rounds, want Odoo's %d", h.a.rounds.Load(), odooDefaultRounds)
	}
	h.do("POST", "/api/v1/signin", signInBody("bob", "wrong", ""))
	if h.a.rounds.Load() != 1234 {
		t.Fatalf("rounds %d after reading a 1234-round hash", h.a.rounds.Load())
	}
	var costs []int
	h.a.verified = func(rounds int) { costs = append(costs, rounds) }
	for _, login := range []string{"nobody", "old", "odd", "bob"} {
		h.do("POST", "/api/v1/signin", signInBody(login, "wrong", ""))
	}
	if len(costs) != 4 || costs[0] != 1234 || costs[1] != 1234 || costs[2] != 1234 || costs[3] != 1234 {
		t.Errorf("verifications of 1234 rounds: %v", costs)
	}
}

func TestUnavailable(t *testing.T) {
	h := newHarness(t, Options{Users: brokenUsers{}})
	w := h.do("POST", "/api/v1/signin", signInBody("bob", bobPW, ""))
	if w.Code != http.StatusServiceUnavailable || strings.Contains(w.Body.String(), "refused") {
		t.Fatalf("users unreadable: %d %s", w.Code, w.Body)
	}
	errorBody(t, w)
	// The access log cannot be written: no session.
	h = newHarness(t, Options{})
	h.rec.fail = true
	w = h.do("POST", "/api/v1/signin", signInBody("bob", bobPW, ""))
	if w.Code != http.StatusServiceUnavailable || len(w.Result().Cookies()) != 0 || h.a.sessions.len() != 0 {
		t.Fatalf("access log unwritable: %d, cookies %v", w.Code, w.Result().Cookies())
	}
	// Without an application, password sign-in is off.
	a, err := New(Options{})
	if err != nil {
		t.Fatal(err)
	}
	mux := http.NewServeMux()
	a.Routes(mux)
	rw := httptest.NewRecorder()
	r := httptest.NewRequest("POST", "/api/v1/signin", strings.NewReader(signInBody("bob", bobPW, "")))
	r.Header.Set("Content-Type", "application/json")
	mux.ServeHTTP(rw, r)
	if rw.Code != http.StatusNotFound {
		t.Errorf("without users: %d", rw.Code)
	}
}

// noSecrets fails when any secret appears in what was logged, recorded or
// answered (other than the Set-Cookie header and the sign-in answer's
// csrf_token, which exist to carry them).
func (h *harness) noSecrets(secrets ...string) {
	h.t.Helper()
	h.logMu.Lock()
	logs := h.logs.String()
	h.logMu.Unlock()
	recs, _ := json.Marshal(h.rec.all())
	bodies := h.seen.String()
	for _, s := range secrets {
		if strings.Contains(logs, s) {
			h.t.Errorf("a secret is in the log:\n%s", logs)
		}
		if strings.Contains(string(recs), s) {
			h.t.Errorf("a secret is in the access log: %s", recs)
		}
		if strings.Contains(bodies, s) {
			h.t.Errorf("a secret is in a response")
		}
	}
	if logs == "" {
		h.t.Error("nothing was logged: the check proves nothing")
	}
}

// Guesses sent at once are held to the limit too: each attempt is counted
// before its password is checked.
func TestRateLimitConcurrentGuesses(t *testing.T) {
	h := newHarness(t, Options{})
	codes := make(chan int, 20)
	var wg sync.WaitGroup
	for i := range 20 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			r := httptest.NewRequest("POST", "/api/v1/signin", strings.NewReader(signInBody("bob", fmt.Sprintf("guess-%d", i), "")))
			r.Header.Set("Content-Type", "application/json")
			r.RemoteAddr = fmt.Sprintf("203.0.113.%d:1", i+1)
			w := httptest.NewRecorder()
			h.mux.ServeHTTP(w, r)
			codes <- w.Code
		}()
	}
	wg.Wait()
	close(codes)
	n := map[int]int{}
	for c := range codes {
		n[c]++
	}
	if n[http.StatusUnauthorized] != 5 || n[http.StatusTooManyRequests] != 15 {
		t.Errorf("20 guesses at once: %v, want 5 checked and 15 refused", n)
	}
}
