package auth

import (
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"fmt"
	"sync"
	"time"

	"github.com/cdcaudit/cdcaudit/access"
)

// CookieName is the browser session's cookie.
const CookieName = "cdcaudit_session"

// CSRFHeader carries a cookie session's CSRF token on every request that
// is not GET, HEAD or OPTIONS.
const CSRFHeader = "X-CSRF-Token"

// The defaults of a browser session: ended after 30 minutes without a
// request, and 12 hours after sign-in whatever happens.
const (
	DefaultSessionIdle     = 30 * time.Minute
	DefaultSessionLifetime = 12 * time.Hour
)

// ValidateSessionTimes says whether idle and lifetime are usable: both
// positive, idle at most lifetime, lifetime at most 30 days.
func ValidateSessionTimes(idle, lifetime time.Duration) error {
	if idle < time.Minute || lifetime < time.Minute {
		return fmt.Errorf("session idle (%s) and lifetime (%s) must be at least 1m", idle, lifetime)
	}
	if idle > lifetime {
		return fmt.Errorf("session idle (%s) is longer than its lifetime (%s)", idle, lifetime)
	}
	if lifetime > 30*24*time.Hour {
		return fmt.Errorf("session lifetime %s: at most 720h", lifetime)
	}
	return nil
}

// maxSessions bounds the store; past it the least recently used session is
// ended. Sessions come only from successful sign-ins.
const maxSessions = 10000

// A session's cookie value and CSRF token: 256 random bits each.
const secretBytes = 32

// sessionKey is the SHA-256 of a cookie value: the store keys sessions by
// it, so that neither a map dump nor a log ever holds the cookie.
type sessionKey [sha256.Size]byte

type session struct {
	principal access.Principal
	csrf      string
	created   time.Time
	lastSeen  time.Time
}

// sessions is the in-memory store of browser sessions.
type sessions struct {
	idle, lifetime time.Duration

	mu sync.Mutex
	m  map[sessionKey]*session
}

func newSessions(idle, lifetime time.Duration) *sessions {
	return &sessions{idle: idle, lifetime: lifetime, m: map[sessionKey]*session{}}
}

func randomSecret() string {
	b := make([]byte, secretBytes)
	rand.Read(b) // never fails (crypto/rand)
	return base64.RawURLEncoding.EncodeToString(b)
}

func keyOf(cookie string) sessionKey { return sha256.Sum256([]byte(cookie)) }

// create starts a session for p and returns its cookie value and CSRF
// token.
func (s *sessions) create(p access.Principal, now time.Time) (cookie, csrf string) {
	cookie, csrf = randomSecret(), randomSecret()
	s.mu.Lock()
	defer s.mu.Unlock()
	s.sweep(now)
	if len(s.m) >= maxSessions {
		var oldest sessionKey
		first := true
		for k, v := range s.m {
			if first || v.lastSeen.Before(s.m[oldest].lastSeen) {
				oldest, first = k, false
			}
		}
		delete(s.m, oldest)
	}
	s.m[keyOf(cookie)] = &session{principal: p, csrf: csrf, created: now, lastSeen: now}
	return cookie, csrf
}

// use returns the live session of cookie and marks it used at now. An
// expired session is ended.
func (s *sessions) use(cookie string, now time.Time) (session, bool) {
	if len(cookie) > 2*secretBytes {
		return session{}, false
	}
	k := keyOf(cookie)
	s.mu.Lock()
	defer s.mu.Unlock()
	v, ok := s.m[k]
	if !ok {
		return session{}, false
	}
	if s.expired(v, now) {
		delete(s.m, k)
		return session{}, false
	}
	v.lastSeen = now
	return *v, true
}

func (s *sessions) expired(v *session, now time.Time) bool {
	return now.Sub(v.lastSeen) >= s.idle || now.Sub(v.created) >= s.lifetime
}

// end revokes the session of cookie.
func (s *sessions) end(cookie string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.m, keyOf(cookie))
}

// sweep ends every expired session; s.mu is held.
func (s *sessions) sweep(now time.Time) {
	for k, v := range s.m {
		if s.expired(v, now) {
			delete(s.m, k)
		}
	}
}

func (s *sessions) len() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.m)
}

// csrfMatches compares a presented CSRF token with the session's in
// constant time.
func csrfMatches(want, got string) bool {
	return got != "" && subtle.ConstantTimeCompare([]byte(want), []byte(got)) == 1
}
