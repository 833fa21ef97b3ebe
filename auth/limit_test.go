package auth

import (
	"strconv"
	"testing"
	"time"
)

func TestParseLimit(t *testing.T) {
	for in, want := range map[string]Limit{
		"5/15m": {5, 15 * time.Minute},
		"20/1h": {20, time.Hour},
		"1/1s":  {1, time.Second},
	} {
		got, err := ParseLimit(in)
		if err != nil || got != want || got.String() != want.String() {
			t.Errorf("%s: %v %v", in, got, err)
		}
	}
	for _, in := range []string{"", "5", "5/", "/15m", "0/15m", "-1/15m", "5/0s", "5/15", "x/15m", "5/48h", "100000/1h"} {
		if _, err := ParseLimit(in); err == nil {
			t.Errorf("%q accepted", in)
		}
	}
}

func TestLimiterBurstThenOnePerInterval(t *testing.T) {
	l := newLimiter(Limit{5, 15 * time.Minute}, 100)
	t0 := time.Date(2026, 12, 3, 0, 0, 0, 0, time.UTC)
	for i := range 5 {
		if _, ok := l.take("alice", t0); !ok {
			t.Fatalf("blocked after %d failures", i)
		}
	}
	wait, ok := l.take("alice", t0)
	if ok || wait != 3*time.Minute {
		t.Fatalf("after 5 failures: taken %v, wait %v, want 3m", ok, wait)
	}
	if _, ok := l.take("bob", t0); !ok {
		t.Fatal("another key is blocked")
	}
	// A refund gives one attempt back.
	l.refund("alice")
	if _, ok := l.take("alice", t0); !ok {
		t.Fatal("refunded attempt refused")
	}
	t1 := t0.Add(3 * time.Minute)
	if _, ok := l.take("alice", t1); !ok {
		t.Fatal("still blocked after the interval")
	}
	if wait, ok := l.take("alice", t1); ok || wait != 3*time.Minute {
		t.Fatalf("one more failure: taken %v, wait %v", ok, wait)
	}
	// After the whole period without failures, the full burst is back.
	t2 := t1.Add(15 * time.Minute)
	for i := range 5 {
		if _, ok := l.take("alice", t2); !ok {
			t.Fatalf("after the period: blocked after %d failures", i)
		}
	}
	l.forget("alice")
	if _, ok := l.take("alice", t2); !ok {
		t.Fatal("blocked after forget")
	}
}

// An attacker cycling keys does not grow the limiter past its bound, and a
// key it keeps failing with stays blocked while others are forgotten.
func TestLimiterBounded(t *testing.T) {
	l := newLimiter(Limit{2, time.Hour}, 50)
	now := time.Date(2026, 12, 3, 0, 0, 0, 0, time.UTC)
	for i := range 1000 {
		l.take("login-"+strconv.Itoa(i), now)
		l.take("victim", now) // most recently failed: never the one evicted
		if n := l.len(); n > 50 {
			t.Fatalf("%d keys tracked, bound 50", n)
		}
	}
	if _, ok := l.take("victim", now); ok {
		t.Fatal("the repeatedly failing key was forgotten")
	}
	// Recovered keys make room before anything else.
	later := now.Add(1000 * time.Hour)
	l.take("new", later)
	if n := l.len(); n != 1 {
		t.Errorf("%d keys after every other recovered, want 1", n)
	}
}

func TestClientAddress(t *testing.T) {
	for in, want := range map[string][2]string{
		"192.0.2.1:5555":                {"192.0.2.1", "192.0.2.1"},
		"[2001:db8:1:2:3:4:5:6]:443":    {"2001:db8:1:2:3:4:5:6", "2001:db8:1:2::/64"},
		"[2001:db8:1:2:ffff::1]:443":    {"2001:db8:1:2:ffff::1", "2001:db8:1:2::/64"},
		"[::ffff:198.51.100.7]:1":       {"198.51.100.7", "198.51.100.7"},
		"[fe80::1%eth0]:1":              {"fe80::1", "fe80::/64"},
		"@":                             {"@", "@"},
		"not an address at all, really": {"not an address at all, really", "not an address at all, really"},
	} {
		if ip, key := clientIP(in), clientAddress(in); ip != want[0] || key != want[1] {
			t.Errorf("%s: ip %s key %s, want %v", in, ip, key, want)
		}
	}
	if got := clientIP(string(make([]byte, 300))); len(got) > 64 {
		t.Errorf("an odd address kept at %d bytes", len(got))
	}
}
