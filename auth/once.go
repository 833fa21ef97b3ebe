package auth

import (
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/cdcaudit/cdcaudit/access"
)

// maxOnceCodes bounds the unused one-time codes kept: the daemon makes
// them (the demo one), nobody from the network can.
const maxOnceCodes = 100

// maxOnceTTL bounds how long a one-time code lives.
const maxOnceTTL = 24 * time.Hour

// onceCodes are the live one-time sign-in codes, kept in memory only, by
// their SHA-256 (as sessions are): neither a map dump nor a log holds one.
type onceCodes struct {
	mu sync.Mutex
	m  map[sessionKey]onceCode
}

type onceCode struct {
	role    access.Role
	expires time.Time
}

// OneTimeCode makes a code that signs in once, within ttl, as an admin or a
// viewer (POST /api/v1/signin {"once": code}): 256 random bits, kept only
// hashed, forgotten when used or expired. The caller shows it to one person
// (the demo prints it in a link) and nowhere else.
func (a *Auth) OneTimeCode(role access.Role, ttl time.Duration) (string, error) {
	if role != access.Admin && role != access.Viewer {
		return "", fmt.Errorf("one-time code: role %q: want admin or viewer", role)
	}
	if ttl <= 0 || ttl > maxOnceTTL {
		return "", fmt.Errorf("one-time code: lifetime %s: want more than 0, at most %s", ttl, maxOnceTTL)
	}
	now := a.now()
	code := randomSecret()
	c := a.once
	c.mu.Lock()
	defer c.mu.Unlock()
	c.sweep(now)
	if len(c.m) >= maxOnceCodes {
		return "", errors.New("one-time code: too many unused codes")
	}
	c.m[keyOf(code)] = onceCode{role: role, expires: now.Add(ttl)}
	return code, nil
}

// use spends code: the role it signs in as, once, before it expires.
func (c *onceCodes) use(code string, now time.Time) (access.Role, bool) {
	if len(code) > 2*secretBytes {
		return "", false
	}
	k := keyOf(code)
	c.mu.Lock()
	defer c.mu.Unlock()
	c.sweep(now)
	v, ok := c.m[k]
	if !ok {
		return "", false
	}
	delete(c.m, k)
	return v.role, true
}

// sweep forgets expired codes; c.mu is held.
func (c *onceCodes) sweep(now time.Time) {
	for k, v := range c.m {
		if !now.Before(v.expires) {
			delete(c.m, k)
		}
	}
}

func (c *onceCodes) len() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.m)
}
