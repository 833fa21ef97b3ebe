package auth

import (
	"container/list"
	"fmt"
	"net"
	"net/netip"
	"strconv"
	"strings"
	"sync"
	"time"
)

// Limit is how many failed sign-ins are allowed Per period: a burst of
// Failures, then one more every Per/Failures (a leaky bucket; GCRA).
type Limit struct {
	Failures int
	Per      time.Duration
}

// The defaults: 5 failures per 15 minutes per login, 20 per client
// address.
var (
	DefaultLoginLimit   = Limit{Failures: 5, Per: 15 * time.Minute}
	DefaultAddressLimit = Limit{Failures: 20, Per: 15 * time.Minute}
)

// ParseLimit reads a limit as configured: "5/15m" (failures/duration).
func ParseLimit(s string) (Limit, error) {
	n, d, ok := strings.Cut(s, "/")
	if !ok {
		return Limit{}, fmt.Errorf("limit %q: want failures/duration, such as 5/15m", s)
	}
	failures, err := strconv.Atoi(n)
	if err != nil {
		return Limit{}, fmt.Errorf("limit %q: want failures/duration, such as 5/15m", s)
	}
	per, err := time.ParseDuration(d)
	if err != nil {
		return Limit{}, fmt.Errorf("limit %q: want failures/duration, such as 5/15m", s)
	}
	l := Limit{Failures: failures, Per: per}
	return l, l.Validate()
}

// Validate says whether l is a usable limit.
func (l Limit) Validate() error {
	if l.Failures < 1 || l.Failures > 10000 {
		return fmt.Errorf("limit %s: failures must be 1 to 10000", l)
	}
	if l.Per < time.Second || l.Per > 24*time.Hour {
		return fmt.Errorf("limit %s: the period must be 1s to 24h", l)
	}
	return nil
}

func (l Limit) String() string { return strconv.Itoa(l.Failures) + "/" + l.Per.String() }

// maxLimited bounds the keys a limiter tracks. An attacker cycling logins
// or addresses makes it forget the least recently failed ones first; the
// other limit (per address, per login) still holds each attempt.
const maxLimited = 10000

// limiter counts failures per key (a login or an address) in bounded
// memory.
type limiter struct {
	limit    Limit
	interval time.Duration // Per/Failures: one failure is forgiven per interval
	max      int

	mu   sync.Mutex
	keys map[string]*list.Element // of *limited, least recently failed first
	lru  list.List
}

type limited struct {
	key string
	// tat is when the key has recovered from every failure so far (the
	// theoretical arrival time of GCRA).
	tat time.Time
	// refused: an attempt was refused since the key was last let through
	// (the first refusal of a lockout is recorded, the rest only counted).
	refused bool
}

func newLimiter(l Limit, max int) *limiter {
	return &limiter{limit: l, interval: l.Per / time.Duration(l.Failures), max: max, keys: map[string]*list.Element{}}
}

// take counts an attempt of key at now as a failure, unless key is over
// its limit: then it says for how long. Counting before the password is
// checked keeps concurrent guesses within the limit too; refund gives back
// an attempt that was not a failure.
func (l *limiter) take(key string, now time.Time) (wait time.Duration, ok bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if e, found := l.keys[key]; found {
		k := e.Value.(*limited)
		if wait := k.tat.Sub(now) - (l.limit.Per - l.interval); wait > 0 {
			return wait, false
		}
		k.tat, k.refused = later(k.tat, now).Add(l.interval), false
		l.lru.MoveToBack(e)
		return 0, true
	}
	// Recovered keys are forgotten first, then the least recently failed.
	for l.lru.Len() > 0 {
		front := l.lru.Front()
		if k := front.Value.(*limited); l.lru.Len() < l.max && k.tat.After(now) {
			break
		}
		delete(l.keys, front.Value.(*limited).key)
		l.lru.Remove(front)
	}
	l.keys[key] = l.lru.PushBack(&limited{key: key, tat: now.Add(l.interval)})
	return 0, true
}

// firstRefusal reports whether take's refusal of key is the first since
// key was last let through, and marks it: one entry per lockout in the
// access log, however many attempts the lockout turns away.
func (l *limiter) firstRefusal(key string) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	e, ok := l.keys[key]
	if !ok {
		return false
	}
	k := e.Value.(*limited)
	first := !k.refused
	k.refused = true
	return first
}

// refund gives back one attempt take counted.
func (l *limiter) refund(key string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if e, ok := l.keys[key]; ok {
		k := e.Value.(*limited)
		k.tat = k.tat.Add(-l.interval)
	}
}

// forget drops key's failures (a login after it signed in).
func (l *limiter) forget(key string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if e, ok := l.keys[key]; ok {
		delete(l.keys, key)
		l.lru.Remove(e)
	}
}

func (l *limiter) len() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.lru.Len()
}

func later(a, b time.Time) time.Time {
	if a.After(b) {
		return a
	}
	return b
}

// clientIP is the connection's peer (RemoteAddr, not X-Forwarded-For,
// which anyone may write) as recorded and logged: its IP without the port.
func clientIP(remoteAddr string) string {
	host, _, err := net.SplitHostPort(remoteAddr)
	if err != nil {
		host = remoteAddr
	}
	a, err := netip.ParseAddr(host)
	if err != nil {
		if len(host) > 64 { // not an IP (a unix socket's name): bounded
			host = host[:64]
		}
		return host
	}
	return a.Unmap().WithZone("").String()
}

// clientAddress is the address failures are counted by: the peer's IP, an
// IPv6 peer by its /64, as one host usually holds the whole /64.
func clientAddress(remoteAddr string) string {
	ip := clientIP(remoteAddr)
	a, err := netip.ParseAddr(ip)
	if err != nil || !a.Is6() {
		return ip
	}
	p, _ := a.Prefix(64)
	return p.String()
}
