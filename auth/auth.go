// Package auth signs readers of the audit trail in: API tokens from the
// configuration (Authorization: Bearer), and the application's own users
// with their own password (and two-factor code), who get a browser session
// (cookie + CSRF token). A browser session also starts from an API token or
// from a one-time code the daemon made (OneTimeCode: the demo's link). It makes access.Principals for the HTTP API and
// knows nothing of what the API serves.
//
// Failed sign-ins are rate-limited per login and per client address;
// every sign-in is reported to an AccessRecorder and counted through
// Metrics. No password, token, two-factor code, session cookie or CSRF
// token reaches a log line, an error body or a recorder.
package auth

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"mime"
	"net/http"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/cdcaudit/cdcaudit/access"
)

// Options configure an Auth. Zero values take the documented defaults.
type Options struct {
	// Tokens are the configured API tokens (ParseTokenSpec).
	Tokens []Token
	// Users enables password sign-in against the application's users
	// (NewOdooUsers); nil: POST /api/v1/signin takes only API tokens and
	// one-time codes (a password sign-in is 404).
	Users Users
	// SessionIdle ends a browser session after this long without a request
	// (DefaultSessionIdle); SessionLifetime this long after sign-in
	// (DefaultSessionLifetime).
	SessionIdle, SessionLifetime time.Duration
	// LoginLimit and AddressLimit bound failed sign-ins per login and per
	// client address (DefaultLoginLimit, DefaultAddressLimit).
	LoginLimit, AddressLimit Limit
	// SecureCookie marks the session cookie Secure (the server runs TLS).
	// A request that came over TLS gets a Secure cookie anyway.
	SecureCookie bool
	// Access records every sign-in and sign-out; nil: not recorded.
	Access AccessRecorder
	// Metrics counts outcomes; nil: not counted.
	Metrics Metrics
	// Log is where sign-ins are logged; nil: slog.Default().
	Log *slog.Logger
	// Now is the clock; nil: time.Now. Tests set it.
	Now func() time.Time
}

// AccessRecorder keeps the access log: who signed in or out, from where,
// with what result. The daemon backs it with the store's hash-chained
// access log. A sign-in whose record cannot be kept is refused (503): the
// auditor is audited or not let in.
type AccessRecorder interface {
	Record(ctx context.Context, e AccessEvent) error
}

// AccessEvent is one entry of the access log. It never holds a password,
// token, two-factor code or session secret.
type AccessEvent struct {
	Time time.Time
	// Action is "signin" or "signout".
	Action string
	// Result is a Result* value; a sign-out is always ResultOK.
	Result string
	// Login is the login the client gave (bounded, valid UTF-8), or the
	// principal's login on sign-out.
	Login string
	// Address is the client's IP address (the connection's peer).
	Address string
	// Principal is who signed in or out on ResultOK: admin, viewer or
	// self:LOGIN; "" otherwise.
	Principal string
	// Via is how: "password", "token:<name>" ("token" when refused: the
	// token is not known), or "once" (a one-time code).
	Via string
}

// Sign-in results, as recorded, logged and counted.
const (
	ResultOK           = "ok"
	ResultRefused      = "refused"       // wrong login, password or code; inactive, portal or public user
	ResultTOTPRequired = "totp_required" // right password, no code given (not counted as a failure)
	ResultRateLimited  = "rate_limited"  // refused before checking: too many failures (not recorded)
	ResultUnavailable  = "unavailable"   // the users table could not be read, or the access log written
	ResultBadRequest   = "bad_request"   // malformed body (not recorded)
)

// Reasons the Middleware refuses a request, as counted.
const (
	RefusedNoCredentials = "no_credentials"
	RefusedBadToken      = "bad_token"
	RefusedExpiredToken  = "expired_token"
	RefusedBadSession    = "bad_session" // unknown or expired session cookie
	RefusedCSRF          = "csrf"
)

// Metrics counts sign-in outcomes and refused requests. The daemon's
// Prometheus registry backs it: cdcaudit_api_signins_total{result} and
// cdcaudit_api_refused_requests_total{reason}.
type Metrics interface {
	SignIn(result string)
	Refused(reason string)
}

// Auth authenticates requests to the API. It is safe for concurrent use.
type Auth struct {
	tokens       []Token
	users        Users
	sessions     *sessions
	once         *onceCodes
	byLogin      *limiter
	byAddress    *limiter
	secureCookie bool
	access       AccessRecorder
	metrics      Metrics
	log          *slog.Logger
	now          func() time.Time

	// verifying bounds the password checks running at once: each holds a
	// CPU for a good part of a second.
	verifying chan struct{}
	// rounds is the PBKDF2 rounds of the last hash read, what an unknown
	// login is made to cost.
	rounds atomic.Int64

	totpMu sync.Mutex
	// totpUsed is the last two-factor step accepted per user: a code is
	// good once (Odoo itself would take it again within its window).
	totpUsed map[int64]uint64

	// verified, when set (by tests), is told the rounds of every password
	// verification.
	verified func(rounds int)
}

// New checks opts and makes an Auth.
func New(opts Options) (*Auth, error) {
	if err := checkTokens(opts.Tokens); err != nil {
		return nil, err
	}
	if opts.SessionIdle == 0 {
		opts.SessionIdle = DefaultSessionIdle
	}
	if opts.SessionLifetime == 0 {
		opts.SessionLifetime = DefaultSessionLifetime
	}
	if err := ValidateSessionTimes(opts.SessionIdle, opts.SessionLifetime); err != nil {
		return nil, err
	}
	if opts.LoginLimit == (Limit{}) {
		opts.LoginLimit = DefaultLoginLimit
	}
	if opts.AddressLimit == (Limit{}) {
		opts.AddressLimit = DefaultAddressLimit
	}
	for _, l := range []Limit{opts.LoginLimit, opts.AddressLimit} {
		if err := l.Validate(); err != nil {
			return nil, err
		}
	}
	if opts.Log == nil {
		opts.Log = slog.Default()
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	a := &Auth{
		tokens:       append([]Token(nil), opts.Tokens...),
		users:        opts.Users,
		sessions:     newSessions(opts.SessionIdle, opts.SessionLifetime),
		once:         &onceCodes{m: map[sessionKey]onceCode{}},
		byLogin:      newLimiter(opts.LoginLimit, maxLimited),
		byAddress:    newLimiter(opts.AddressLimit, maxLimited),
		secureCookie: opts.SecureCookie,
		access:       opts.Access,
		metrics:      opts.Metrics,
		log:          opts.Log,
		now:          opts.Now,
		verifying:    make(chan struct{}, max(1, runtime.GOMAXPROCS(0))),
		totpUsed:     map[int64]uint64{},
	}
	a.rounds.Store(odooDefaultRounds)
	return a, nil
}

// openAPIPath is the one /api/v1 route served without credentials: the
// API's description, which holds no data.
const openAPIPath = "/api/v1/openapi.json"

// Middleware authenticates every request but GET/HEAD of the OpenAPI
// document, and calls next with the principal in the request's context
// (access.NewContext). Without valid credentials it answers 401 (with
// WWW-Authenticate: Bearer); a cookie session without the right
// X-CSRF-Token on a method other than GET, HEAD or OPTIONS gets 403.
func (a *Auth) Middleware(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		apiHeaders(w)
		if r.URL.Path == openAPIPath && (r.Method == http.MethodGet || r.Method == http.MethodHead) {
			next.ServeHTTP(w, r)
			return
		}
		p, csrf, ok := a.authenticate(w, r)
		if !ok {
			return
		}
		ctx := access.NewContext(r.Context(), p)
		if csrf != "" {
			// A reloaded page learns its session's CSRF token from whoami.
			ctx = access.WithCSRFToken(ctx, csrf)
		}
		next.ServeHTTP(w, r.WithContext(ctx))
	})
}

// authenticate finds the request's principal, and a cookie session's CSRF
// token, or answers the refusal.
func (a *Auth) authenticate(w http.ResponseWriter, r *http.Request) (p access.Principal, csrf string, ok bool) {
	if h := r.Header.Get("Authorization"); h != "" {
		p, ok := a.bearer(w, r, h)
		return p, "", ok
	}
	c, err := r.Cookie(CookieName)
	if err != nil {
		a.refuse(w, r, http.StatusUnauthorized, RefusedNoCredentials, "sign in, or send an API token (Authorization: Bearer)")
		return access.Principal{}, "", false
	}
	s, ok := a.sessions.use(c.Value, a.now())
	if !ok {
		a.clearCookie(w, r)
		a.refuse(w, r, http.StatusUnauthorized, RefusedBadSession, "the session has ended; sign in again")
		return access.Principal{}, "", false
	}
	if !safeMethod(r.Method) && !csrfMatches(s.csrf, r.Header.Get(CSRFHeader)) {
		a.refuse(w, r, http.StatusForbidden, RefusedCSRF, "missing or wrong "+CSRFHeader+" header")
		return access.Principal{}, "", false
	}
	return s.principal, s.csrf, true
}

func (a *Auth) bearer(w http.ResponseWriter, r *http.Request, header string) (access.Principal, bool) {
	scheme, presented, _ := strings.Cut(header, " ")
	if !strings.EqualFold(scheme, "Bearer") {
		a.refuse(w, r, http.StatusUnauthorized, RefusedBadToken, "unsupported Authorization scheme: send Bearer and an API token")
		return access.Principal{}, false
	}
	t, err := lookupToken(a.tokens, strings.TrimSpace(presented), a.now())
	switch {
	case errors.Is(err, errTokenExpired):
		a.log.Info("api token expired", "token", t.Name, "expired", t.Expires, "address", clientIP(r.RemoteAddr))
		a.refuse(w, r, http.StatusUnauthorized, RefusedExpiredToken, "the API token has expired")
		return access.Principal{}, false
	case err != nil:
		a.refuse(w, r, http.StatusUnauthorized, RefusedBadToken, "invalid API token")
		return access.Principal{}, false
	}
	p := t.Principal
	p.Via = "token:" + t.Name
	return p, true
}

func (a *Auth) refuse(w http.ResponseWriter, r *http.Request, status int, reason, msg string) {
	if a.metrics != nil {
		a.metrics.Refused(reason)
	}
	a.log.Debug("api request refused", "reason", reason, "method", r.Method, "path", r.URL.Path, "address", clientIP(r.RemoteAddr))
	writeError(w, status, msg)
}

func safeMethod(m string) bool {
	return m == http.MethodGet || m == http.MethodHead || m == http.MethodOptions
}

// Routes registers POST /api/v1/signin and POST /api/v1/signout on mux,
// outside the Middleware.
func (a *Auth) Routes(mux *http.ServeMux) {
	mux.HandleFunc("POST /api/v1/signin", a.signIn)
	mux.HandleFunc("POST /api/v1/signout", a.signOut)
}

// maxSignInBody bounds a sign-in request's body.
const maxSignInBody = 8 << 10

// maxLogin bounds a login, as access.ParseRole bounds a self login.
const maxLogin = 256

// signInRequest is one of: login and password (and totp); an API token; a
// one-time code.
type signInRequest struct {
	Login    string `json:"login"`
	Password string `json:"password"`
	TOTP     string `json:"totp"`
	Token    string `json:"token"`
	Once     string `json:"once"`
}

type signInResponse struct {
	Login              string `json:"login"`
	Role               string `json:"role"`
	CSRFToken          string `json:"csrf_token"`
	ExpiresIdleSeconds int    `json:"expires_idle_seconds"`
	Via                string `json:"via"`
}

// Messages of a refused sign-in. One message whatever was wrong, so that
// it does not tell which logins exist.
const (
	msgRefused      = "wrong login, password or two-factor code"
	msgBadToken     = "invalid or expired API token"
	msgBadOnce      = "this sign-in code is unknown, already used or expired; ask for a new one"
	msgTOTPRequired = "this user signs in with a two-factor code: send it as totp"
	msgUnavailable  = "sign-in is unavailable; try again later"
)

func (a *Auth) signIn(w http.ResponseWriter, r *http.Request) {
	apiHeaders(w)
	req, err := readSignIn(w, r)
	if err != nil {
		a.count(ResultBadRequest)
		writeError(w, http.StatusBadRequest, err.Error())
		return
	}
	switch {
	case req.Token != "":
		a.signInToken(w, r, req.Token)
	case req.Once != "":
		a.signInOnce(w, r, req.Once)
	case a.users == nil:
		writeError(w, http.StatusNotFound, "password sign-in is off: cdcaudit runs without an application profile; use an API token")
	default:
		a.signInPassword(w, r, req)
	}
}

func (a *Auth) signInPassword(w http.ResponseWriter, r *http.Request, req signInRequest) {
	now := a.now()
	ev := AccessEvent{Time: now, Action: "signin", Login: req.Login, Address: clientIP(r.RemoteAddr), Via: "password"}
	addrKey := clientAddress(r.RemoteAddr)
	if wait, ok := a.take(addrKey, req.Login, now); !ok {
		a.rateLimited(w, ev, wait)
		return
	}

	acct, ok, err := a.checkPassword(r.Context(), req.Login, req.Password)
	if err != nil {
		a.log.Warn("sign-in: cannot read the application's users", "login", req.Login, "address", ev.Address, "err", err)
		a.refund(addrKey, req.Login)
		a.finish(w, r, ev, ResultUnavailable)
		return
	}
	if !ok {
		a.finish(w, r, ev, ResultRefused)
		return
	}
	if acct.TOTPSecret != "" {
		if strings.TrimSpace(req.TOTP) == "" {
			// The password was right: saying a code is needed tells nothing
			// to whoever does not have it. Not a failure.
			a.refund(addrKey, req.Login)
			a.finish(w, r, ev, ResultTOTPRequired)
			return
		}
		if !a.checkTOTP(acct, req.Login, req.TOTP, now) {
			a.finish(w, r, ev, ResultRefused)
			return
		}
	}

	// Signed in: the address gets its attempt back, the login a clean slate.
	a.byAddress.refund(addrKey)
	a.byLogin.forget(req.Login)
	a.startSession(w, r, access.Principal{Role: acct.Role, Login: req.Login, Via: "password"}, ev)
}

// signInToken trades a configured API token for a browser session with the
// token's role.
func (a *Auth) signInToken(w http.ResponseWriter, r *http.Request, presented string) {
	a.signInSecret(w, r, "token", func(now time.Time) (access.Principal, bool) {
		t, err := lookupToken(a.tokens, presented, now)
		if errors.Is(err, errTokenExpired) {
			a.log.Info("api token expired", "token", t.Name, "expired", t.Expires, "address", clientIP(r.RemoteAddr))
		}
		p := t.Principal
		p.Via = "token:" + t.Name
		return p, err == nil
	})
}

// signInOnce trades a one-time code (OneTimeCode) for a browser session.
func (a *Auth) signInOnce(w http.ResponseWriter, r *http.Request, code string) {
	a.signInSecret(w, r, "once", func(now time.Time) (access.Principal, bool) {
		role, ok := a.once.use(code, now)
		return access.Principal{Role: role, Via: "once"}, ok
	})
}

// signInSecret signs in with a secret that names no login (a token, a
// one-time code), recorded as via until known; check finds its principal.
// Failures count against the client's address only: there is no login to
// count them by, and such a secret is beyond guessing anyway.
func (a *Auth) signInSecret(w http.ResponseWriter, r *http.Request, via string, check func(now time.Time) (access.Principal, bool)) {
	now := a.now()
	ev := AccessEvent{Time: now, Action: "signin", Address: clientIP(r.RemoteAddr), Via: via}
	addrKey := clientAddress(r.RemoteAddr)
	if wait, ok := a.byAddress.take(addrKey, now); !ok {
		a.rateLimited(w, ev, wait)
		return
	}
	p, ok := check(now)
	if !ok {
		a.finish(w, r, ev, ResultRefused)
		return
	}
	a.byAddress.refund(addrKey)
	ev.Login, ev.Via = p.Login, p.Via
	a.startSession(w, r, p, ev)
}

// rateLimited answers a sign-in over a limit. Neither recorded nor logged at
// info: a flood of these costs the attacker nothing and must not grow the
// access log.
func (a *Auth) rateLimited(w http.ResponseWriter, ev AccessEvent, wait time.Duration) {
	a.count(ResultRateLimited)
	a.log.Debug("sign-in rate-limited", "login", ev.Login, "via", ev.Via, "address", ev.Address)
	w.Header().Set("Retry-After", strconv.Itoa(int(math.Ceil(wait.Seconds()))))
	writeError(w, http.StatusTooManyRequests, "too many failed sign-ins; try again later")
}

// startSession records a successful sign-in of p, then starts its browser
// session: cookie and answer. A sign-in the access log cannot keep is
// refused.
func (a *Auth) startSession(w http.ResponseWriter, r *http.Request, p access.Principal, ev AccessEvent) {
	ev.Principal = p.String()
	if err := a.record(r.Context(), ev, ResultOK); err != nil {
		a.log.Error("sign-in refused: the access log cannot be written", "login", ev.Login, "via", ev.Via, "address", ev.Address, "err", err)
		a.count(ResultUnavailable)
		writeError(w, http.StatusServiceUnavailable, msgUnavailable)
		return
	}
	a.count(ResultOK)
	a.log.Info("signed in", "login", p.Login, "role", p.String(), "via", p.Via, "address", ev.Address)
	if old, err := r.Cookie(CookieName); err == nil {
		a.sessions.end(old.Value) // a new sign-in never reuses a session (fixation)
	}
	cookie, csrf := a.sessions.create(p, ev.Time)
	http.SetCookie(w, a.cookie(r, cookie, 0))
	writeJSON(w, http.StatusOK, signInResponse{
		Login: p.Login, Role: string(p.Role), CSRFToken: csrf,
		ExpiresIdleSeconds: int(a.sessions.idle / time.Second), Via: p.Via,
	})
}

// readSignIn reads and bounds a sign-in body. Only JSON is taken, which a
// cross-site form cannot send without the browser asking first.
func readSignIn(w http.ResponseWriter, r *http.Request) (signInRequest, error) {
	var req signInRequest
	mt, _, err := mime.ParseMediaType(r.Header.Get("Content-Type"))
	if err != nil || mt != "application/json" {
		return req, errors.New("send the credentials as JSON (Content-Type: application/json)")
	}
	dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, maxSignInBody))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&req); err != nil || dec.More() {
		return req, errors.New(`want one JSON object: {"login": "...", "password": "...", "totp": "..."}, {"token": "..."} or {"once": "..."}`)
	}
	switch {
	case req.Token != "" || req.Once != "":
		if (req.Token != "") == (req.Once != "") || req.Login != "" || req.Password != "" || req.TOTP != "" {
			return req, errors.New("send one of: login and password, token, once")
		}
		if len(req.Token) > maxBearer || len(req.Once) > maxBearer {
			return req, fmt.Errorf("token or once: at most %d bytes", maxBearer)
		}
	case req.Login == "" || req.Password == "":
		return req, errors.New("login and password are required")
	case len(req.Login) > maxLogin || !utf8.ValidString(req.Login) || strings.ContainsFunc(req.Login, unicode.IsControl):
		return req, fmt.Errorf("login: at most %d characters, no control characters", maxLogin)
	case len(req.Password) > maxPassword:
		return req, fmt.Errorf("password: at most %d bytes", maxPassword)
	}
	return req, nil
}

// checkPassword looks login up and checks password. It costs one PBKDF2
// verification whatever the outcome (unknown login, inactive user, a hash
// of another scheme), so its time does not tell who exists. ok is false
// for any wrong credential and for a user without a role here.
func (a *Auth) checkPassword(ctx context.Context, login, password string) (Account, bool, error) {
	select {
	case a.verifying <- struct{}{}:
		defer func() { <-a.verifying }()
	case <-ctx.Done():
		return Account{}, false, ctx.Err()
	}
	lookupCtx, cancel := context.WithTimeout(ctx, 10*time.Second)
	acct, err := a.users.Lookup(lookupCtx, login)
	cancel()
	if err != nil && !errors.Is(err, ErrNoAccount) {
		return Account{}, false, err
	}
	h, herr := parsePasswordHash(acct.PasswordHash)
	known := err == nil && herr == nil
	if known {
		a.rounds.Store(int64(h.rounds))
	} else {
		h = dummyHash(int(a.rounds.Load()))
	}
	ok := h.matches(password)
	if a.verified != nil {
		a.verified(h.rounds)
	}
	return acct, known && ok && acct.Role != "", nil
}

// checkTOTP checks code against the account's secret at now, and that the
// step it belongs to was not used before.
func (a *Auth) checkTOTP(acct Account, login, code string, now time.Time) bool {
	key, err := decodeTOTPSecret(acct.TOTPSecret)
	if err != nil {
		a.log.Warn("sign-in: the user's two-factor secret is unreadable; refused", "login", login)
		return false
	}
	code, ok := normalizeTOTPCode(code)
	if !ok {
		return false
	}
	step, ok := matchTOTP(key, code, now)
	if !ok {
		return false
	}
	a.totpMu.Lock()
	defer a.totpMu.Unlock()
	if last, used := a.totpUsed[acct.ID]; used && step <= last {
		return false
	}
	a.totpUsed[acct.ID] = step
	return true
}

// take counts a sign-in attempt against the address and the login, or
// says how long they must wait.
func (a *Auth) take(addrKey, login string, now time.Time) (time.Duration, bool) {
	wait, ok := a.byAddress.take(addrKey, now)
	if !ok {
		return wait, false
	}
	if wait, ok = a.byLogin.take(login, now); !ok {
		a.byAddress.refund(addrKey)
		return wait, false
	}
	return 0, true
}

// refund gives back an attempt that was not a failure.
func (a *Auth) refund(addrKey, login string) {
	a.byAddress.refund(addrKey)
	a.byLogin.refund(login)
}

// finish answers, records, logs and counts a sign-in that did not succeed.
func (a *Auth) finish(w http.ResponseWriter, r *http.Request, ev AccessEvent, result string) {
	if err := a.record(r.Context(), ev, result); err != nil {
		a.log.Error("the access log cannot be written", "err", err)
	}
	a.count(result)
	a.log.Info("sign-in refused", "login", ev.Login, "via", ev.Via, "address", ev.Address, "result", result)
	switch {
	case result == ResultTOTPRequired:
		writeJSON(w, http.StatusUnauthorized, map[string]any{"error": msgTOTPRequired, "totp_required": true})
	case result == ResultUnavailable:
		writeError(w, http.StatusServiceUnavailable, msgUnavailable)
	case ev.Via == "token":
		writeError(w, http.StatusUnauthorized, msgBadToken)
	case ev.Via == "once":
		writeError(w, http.StatusUnauthorized, msgBadOnce)
	default:
		writeError(w, http.StatusUnauthorized, msgRefused)
	}
}

func (a *Auth) signOut(w http.ResponseWriter, r *http.Request) {
	apiHeaders(w)
	c, err := r.Cookie(CookieName)
	if err != nil {
		a.refuse(w, r, http.StatusUnauthorized, RefusedNoCredentials, "not signed in")
		return
	}
	now := a.now()
	s, ok := a.sessions.use(c.Value, now)
	if !ok {
		a.clearCookie(w, r)
		a.refuse(w, r, http.StatusUnauthorized, RefusedBadSession, "the session has already ended")
		return
	}
	if !csrfMatches(s.csrf, r.Header.Get(CSRFHeader)) {
		a.refuse(w, r, http.StatusForbidden, RefusedCSRF, "missing or wrong "+CSRFHeader+" header")
		return
	}
	a.sessions.end(c.Value)
	a.clearCookie(w, r)
	ev := AccessEvent{Time: now, Action: "signout", Login: s.principal.Login, Address: clientIP(r.RemoteAddr), Principal: s.principal.String(), Via: s.principal.Via}
	if err := a.record(r.Context(), ev, ResultOK); err != nil {
		a.log.Error("the access log cannot be written", "err", err)
	}
	a.log.Info("signed out", "login", s.principal.Login, "address", ev.Address)
	w.WriteHeader(http.StatusNoContent)
}

func (a *Auth) record(ctx context.Context, ev AccessEvent, result string) error {
	if a.access == nil {
		return nil
	}
	ev.Result = result
	return a.access.Record(ctx, ev)
}

func (a *Auth) count(result string) {
	if a.metrics != nil {
		a.metrics.SignIn(result)
	}
}

// cookie is the session cookie holding value; maxAge < 0 deletes it.
func (a *Auth) cookie(r *http.Request, value string, maxAge int) *http.Cookie {
	return &http.Cookie{
		Name: CookieName, Value: value, Path: "/", MaxAge: maxAge,
		HttpOnly: true, SameSite: http.SameSiteStrictMode, Secure: a.secureCookie || r.TLS != nil,
	}
}

func (a *Auth) clearCookie(w http.ResponseWriter, r *http.Request) {
	http.SetCookie(w, a.cookie(r, "", -1))
}

// apiHeaders are set on every /api response.
func apiHeaders(w http.ResponseWriter) {
	h := w.Header()
	h.Set("Cache-Control", "no-store")
	h.Set("X-Content-Type-Options", "nosniff")
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json; charset=utf-8")
	w.WriteHeader(status)
	json.NewEncoder(w).Encode(v)
}

func writeError(w http.ResponseWriter, status int, msg string) {
	if status == http.StatusUnauthorized {
		w.Header().Set("WWW-Authenticate", "Bearer")
	}
	writeJSON(w, status, map[string]string{"error": msg})
}
