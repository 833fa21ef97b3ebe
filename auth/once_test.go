package auth

import (
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/cdcaudit/cdcaudit/access"
)

func tokenBody(tok string) string {
	b, _ := json.Marshal(map[string]string{"token": tok})
	return string(b)
}

func onceBody(code string) string {
	b, _ := json.Marshal(map[string]string{"once": code})
	return string(b)
}

// signedIn reads a 200 sign-in answer and its cookie.
func signedIn(t *testing.T, w interface {
	Result() *http.Response
}, body []byte) (signInResponse, *http.Cookie) {
	t.Helper()
	var resp signInResponse
	if err := json.Unmarshal(body, &resp); err != nil {
		t.Fatal(err)
	}
	cookies := w.Result().Cookies()
	if len(cookies) != 1 || cookies[0].Name != CookieName || !cookies[0].HttpOnly {
		t.Fatalf("sign-in set %v", cookies)
	}
	return resp, cookies[0]
}

func TestSignInWithToken(t *testing.T) {
	now := time.Date(2026, 12, 3, 9, 0, 0, 0, time.UTC)
	viewerTok, viewer, _ := NewToken(access.Principal{Role: access.Viewer}, "grafana", time.Time{})
	selfTok, self, _ := NewToken(access.Principal{Role: access.Self, Login: "carol"}, "carol-cli", now.Add(time.Hour))
	h := newHarness(t, Options{Tokens: []Token{viewer, self}})

	w := h.do("POST", "/api/v1/signin", tokenBody(viewerTok))
	if w.Code != 200 {
		t.Fatalf("viewer token: %d %s", w.Code, w.Body)
	}
	resp, c := signedIn(t, w, w.Body.Bytes())
	if resp != (signInResponse{Login: "", Role: "viewer", CSRFToken: resp.CSRFToken, ExpiresIdleSeconds: 1800, Via: "token:grafana"}) || len(resp.CSRFToken) < 40 {
		t.Errorf("answer %+v", resp)
	}
	// The session has the token's role, and is a cookie session: CSRF.
	if code, m := h.whoami(withCookie(c)); code != 200 || m["role"] != "viewer" || m["via"] != "token:grafana" || m["csrf_token"] != resp.CSRFToken {
		t.Errorf("whoami: %d %v", code, m)
	}
	if w := h.do("POST", "/api/v1/whoami", "", withCookie(c)); w.Code != http.StatusForbidden {
		t.Errorf("POST without CSRF: %d", w.Code)
	}
	// A self token's session keeps its login.
	w = h.do("POST", "/api/v1/signin", tokenBody(selfTok))
	resp, c = signedIn(t, w, w.Body.Bytes())
	if resp.Role != "self" || resp.Login != "carol" || resp.Via != "token:carol-cli" {
		t.Errorf("self token: %+v", resp)
	}
	if code, m := h.whoami(withCookie(c)); code != 200 || m["role"] != "self" || m["login"] != "carol" {
		t.Errorf("self whoami: %d %v", code, m)
	}

	// Wrong tokens, and an expired one: 401, recorded, counted.
	for _, wrong := range []string{viewerTok + "x", hexSum(viewer), "cdca_" + strings.Repeat("A", 43)} {
		w := h.do("POST", "/api/v1/signin", tokenBody(wrong))
		if w.Code != http.StatusUnauthorized || errorBody(t, w)["error"] != msgBadToken || len(w.Result().Cookies()) != 0 {
			t.Errorf("wrong token: %d %s", w.Code, w.Body)
		}
	}
	h.now = now.Add(time.Hour)
	if w := h.do("POST", "/api/v1/signin", tokenBody(selfTok)); w.Code != http.StatusUnauthorized {
		t.Errorf("expired token: %d %s", w.Code, w.Body)
	}
	var oks, refused int
	for _, e := range h.rec.all() {
		switch {
		case e.Result == ResultOK && e.Action == "signin":
			oks++
			if !strings.HasPrefix(e.Via, "token:") || (e.Via == "token:carol-cli") != (e.Principal == "self:carol" && e.Login == "carol") {
				t.Errorf("recorded %+v", e)
			}
		case e.Result == ResultRefused:
			refused++
			if e.Via != "token" || e.Principal != "" || e.Login != "" || e.Address != "192.0.2.10" {
				t.Errorf("recorded %+v", e)
			}
		}
	}
	if oks != 2 || refused != 4 || h.metrics.signIns[ResultOK] != 2 || h.metrics.signIns[ResultRefused] != 4 {
		t.Errorf("recorded %d ok, %d refused; counted %v", oks, refused, h.metrics.signIns)
	}

	// Rate limited per address: 20 failures, then even the right token waits.
	h.now = h.now.Add(time.Hour)
	for i := range 20 {
		if w := h.do("POST", "/api/v1/signin", tokenBody(fmt.Sprintf("cdca_guess%d", i)), from("203.0.113.7:1")); w.Code != http.StatusUnauthorized {
			t.Fatalf("failure %d: %d", i, w.Code)
		}
	}
	w = h.do("POST", "/api/v1/signin", tokenBody(viewerTok), from("203.0.113.7:2"))
	if w.Code != http.StatusTooManyRequests || w.Header().Get("Retry-After") == "" {
		t.Errorf("21st from the address: %d", w.Code)
	}
	if w := h.do("POST", "/api/v1/signin", tokenBody(viewerTok), from("203.0.113.8:1")); w.Code != 200 {
		t.Errorf("another address: %d", w.Code)
	}
	h.noSecrets(viewerTok, selfTok)
}

func TestSignInWithOneTimeCode(t *testing.T) {
	// No application: only tokens and one-time codes sign in.
	h := newHarness(t, Options{Users: memUsers{}})
	h.a.users = nil
	code, err := h.a.OneTimeCode(access.Admin, 10*time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	if len(code) < 22 { // 128 bits in base64url
		t.Fatalf("code %q is short", code)
	}
	w := h.do("POST", "/api/v1/signin", onceBody(code))
	if w.Code != 200 {
		t.Fatalf("once: %d %s", w.Code, w.Body)
	}
	resp, c := signedIn(t, w, w.Body.Bytes())
	if resp.Role != "admin" || resp.Login != "" || resp.Via != "once" {
		t.Errorf("answer %+v", resp)
	}
	if code, m := h.whoami(withCookie(c)); code != 200 || m["role"] != "admin" || m["via"] != "once" {
		t.Errorf("whoami: %d %v", code, m)
	}
	// Replayed: refused, with the one message.
	w = h.do("POST", "/api/v1/signin", onceBody(code))
	if w.Code != http.StatusUnauthorized || errorBody(t, w)["error"] != msgBadOnce {
		t.Errorf("replayed: %d %s", w.Code, w.Body)
	}
	// Expired: refused, and forgotten.
	viewerCode, _ := h.a.OneTimeCode(access.Viewer, 10*time.Minute)
	expired, _ := h.a.OneTimeCode(access.Admin, 10*time.Minute)
	w = h.do("POST", "/api/v1/signin", onceBody(viewerCode))
	if resp, _ := signedIn(t, w, w.Body.Bytes()); resp.Role != "viewer" {
		t.Errorf("viewer code: %+v", resp)
	}
	h.now = h.now.Add(10 * time.Minute)
	if w := h.do("POST", "/api/v1/signin", onceBody(expired)); w.Code != http.StatusUnauthorized {
		t.Errorf("expired: %d %s", w.Code, w.Body)
	}
	if n := h.a.once.len(); n != 0 {
		t.Errorf("%d codes kept after use and expiry", n)
	}
	if w := h.do("POST", "/api/v1/signin", signInBody("bob", bobPW, "")); w.Code != http.StatusNotFound {
		t.Errorf("password sign-in without an application: %d", w.Code)
	}

	var got []string
	for _, e := range h.rec.all() {
		if e.Via != "once" || e.Login != "" {
			t.Errorf("recorded %+v", e)
		}
		got = append(got, e.Result+":"+e.Principal)
	}
	if strings.Join(got, " ") != "ok:admin refused: ok:viewer refused:" {
		t.Errorf("recorded %q", got)
	}

	// Only admin or viewer, for a bounded time.
	for _, c := range []struct {
		role access.Role
		ttl  time.Duration
	}{{access.Self, time.Minute}, {"", time.Minute}, {access.Admin, 0}, {access.Admin, -time.Second}, {access.Admin, 25 * time.Hour}} {
		if _, err := h.a.OneTimeCode(c.role, c.ttl); err == nil {
			t.Errorf("OneTimeCode(%q, %s) made a code", c.role, c.ttl)
		}
	}
	// Unused codes are bounded.
	for range maxOnceCodes {
		if _, err := h.a.OneTimeCode(access.Admin, time.Minute); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := h.a.OneTimeCode(access.Admin, time.Minute); err == nil {
		t.Error("more unused codes than the bound")
	}
	h.noSecrets(code, viewerCode, expired)
}

func TestSignInModesExclusive(t *testing.T) {
	h := newHarness(t, Options{})
	for _, body := range []string{
		`{"token":"cdca_x","once":"y"}`,
		`{"token":"cdca_x","login":"bob","password":"x"}`,
		`{"once":"y","password":"x"}`,
		`{"once":"y","totp":"123456"}`,
		`{"token":"` + strings.Repeat("x", 600) + `"}`,
		`{"once":"` + strings.Repeat("x", 600) + `"}`,
		`{"token":1}`,
	} {
		if w := h.do("POST", "/api/v1/signin", body); w.Code != http.StatusBadRequest {
			t.Errorf("%.60s: %d %s", body, w.Code, w.Body)
		}
	}
	if len(h.rec.all()) != 0 {
		t.Errorf("bad requests recorded: %+v", h.rec.all())
	}
}
