package auth

import (
	"crypto/sha256"
	"encoding/hex"
	"strings"
	"testing"
	"time"

	"github.com/cdcaudit/cdcaudit/access"
)

func TestNewTokenRoundTrip(t *testing.T) {
	now := time.Date(2026, 12, 3, 18, 0, 0, 0, time.UTC)
	for _, c := range []struct {
		p       access.Principal
		expires time.Time
	}{
		{access.Principal{Role: access.Admin}, time.Time{}},
		{access.Principal{Role: access.Viewer}, now.Add(90 * 24 * time.Hour)},
		{access.Principal{Role: access.Self, Login: "alice@example.com"}, time.Date(2027, 6, 1, 0, 0, 0, 0, time.UTC)},
	} {
		secret, tok, err := NewToken(c.p, "ci-1", c.expires)
		if err != nil {
			t.Fatal(err)
		}
		if !strings.HasPrefix(secret, TokenPrefix) || len(secret) != len(TokenPrefix)+43 {
			t.Errorf("token %d characters, prefix %q", len(secret), secret[:5])
		}
		if tok.SHA256 != sha256.Sum256([]byte(secret)) {
			t.Error("the entry's hash is not the token's SHA-256")
		}
		line := tok.String()
		if strings.Contains(line, secret) || strings.Contains(line, secret[len(TokenPrefix):]) {
			t.Fatalf("the configuration entry holds the token: %s", line)
		}
		back, err := ParseTokenSpec(line)
		if err != nil {
			t.Fatalf("%s: %v", line, err)
		}
		if back != tok {
			t.Errorf("%s read back as %+v, want %+v", line, back, tok)
		}
		got, err := lookupToken([]Token{back}, secret, now)
		if err != nil || got.Name != "ci-1" || got.Principal != c.p {
			t.Errorf("lookup: %+v %v", got, err)
		}
	}
	a, _, _ := NewToken(access.Principal{Role: access.Admin}, "a", time.Time{})
	b, _, _ := NewToken(access.Principal{Role: access.Admin}, "a", time.Time{})
	if a == b {
		t.Fatal("two tokens are equal")
	}
}

func TestLookupToken(t *testing.T) {
	now := time.Date(2026, 12, 3, 18, 0, 0, 0, time.UTC)
	s1, t1, _ := NewToken(access.Principal{Role: access.Viewer}, "one", time.Time{})
	s2, t2, _ := NewToken(access.Principal{Role: access.Admin}, "two", now.Add(time.Hour))
	tokens := []Token{t1, t2}
	if got, err := lookupToken(tokens, s2, now); err != nil || got.Name != "two" {
		t.Fatalf("two: %+v %v", got, err)
	}
	if got, err := lookupToken(tokens, s1, now.Add(100*365*24*time.Hour)); err != nil || got.Name != "one" {
		t.Fatalf("one, never expiring: %+v %v", got, err)
	}
	if _, err := lookupToken(tokens, s2, now.Add(time.Hour)); err != errTokenExpired {
		t.Errorf("at its expiry: %v", err)
	}
	for _, wrong := range []string{"", s1[:len(s1)-1], s1 + "x", strings.ToUpper(s1), hex.EncodeToString(t1.SHA256[:]), strings.Repeat("a", 10000)} {
		if _, err := lookupToken(tokens, wrong, now); err != errTokenUnknown {
			t.Errorf("%.20q…: %v", wrong, err)
		}
	}
}

func TestParseTokenSpec(t *testing.T) {
	sum := strings.Repeat("ab", 32)
	tok, err := ParseTokenSpec("  role=self:bob  sha256=" + sum + " name=bob.laptop expires=2027-06-01 ")
	if err != nil {
		t.Fatal(err)
	}
	if tok.Name != "bob.laptop" || tok.Principal != (access.Principal{Role: access.Self, Login: "bob"}) ||
		!tok.Expires.Equal(time.Date(2027, 6, 1, 0, 0, 0, 0, time.UTC)) || hex.EncodeToString(tok.SHA256[:]) != sum {
		t.Fatalf("read %+v", tok)
	}
	pasted := TokenPrefix + "QmFkIGlkZWEsIHBhc3RpbmcgeW91ciB0b2tlbiBoZXJl"
	for _, bad := range []string{
		"",
		"name=x role=viewer",
		"name=x sha256=" + sum,
		"role=viewer sha256=" + sum,
		"name=x role=viewer sha256=" + sum[:63],
		"name=x role=viewer sha256=" + sum + "00",
		"name=x role=viewer sha256=" + strings.Repeat("zz", 32),
		"name=x role=root sha256=" + sum,
		"name=x role=self: sha256=" + sum,
		"name=x role=viewer sha256=" + sum + " sha256=" + sum,
		"name=x role=viewer sha256=" + sum + " colour=blue",
		"name=x role=viewer sha256=" + sum + " expires=soon",
		"name=x role=viewer sha256=" + sum + " expires=90d", // relative only on the command line
		"name=-x role=viewer sha256=" + sum,
		"name=a/b role=viewer sha256=" + sum,
		"name=x role=viewer sha256=" + sum + " stray",
		"name=x role=viewer sha256=" + pasted,
		"name=x role=viewer " + pasted,
	} {
		_, err := ParseTokenSpec(bad)
		if err == nil {
			t.Errorf("%q accepted", bad)
			continue
		}
		if strings.Contains(err.Error(), pasted) || strings.Contains(err.Error(), pasted[len(TokenPrefix):]) {
			t.Errorf("the error repeats a pasted token: %v", err)
		}
	}
}

func TestParseExpiry(t *testing.T) {
	now := time.Date(2026, 12, 3, 18, 30, 15, 500, time.FixedZone("CET", 3600))
	for in, want := range map[string]time.Time{
		"2027-06-01":                time.Date(2027, 6, 1, 0, 0, 0, 0, time.UTC),
		"2027-06-01T12:00:00+02:00": time.Date(2027, 6, 1, 10, 0, 0, 0, time.UTC),
		"90d":                       time.Date(2027, 3, 3, 17, 30, 15, 0, time.UTC),
		"1d":                        time.Date(2026, 12, 4, 17, 30, 15, 0, time.UTC),
	} {
		got, err := ParseExpiry(in, now)
		if err != nil || !got.Equal(want) || got.Location() != time.UTC {
			t.Errorf("%s: %v %v, want %v", in, got, err, want)
		}
	}
	for _, in := range []string{"", "0d", "-3d", "d", "1.5d", "99999999d", "tomorrow", "2027-13-01", "90"} {
		if _, err := ParseExpiry(in, now); err == nil {
			t.Errorf("%q accepted", in)
		}
	}
}

func TestCheckTokens(t *testing.T) {
	_, a, _ := NewToken(access.Principal{Role: access.Viewer}, "a", time.Time{})
	_, b, _ := NewToken(access.Principal{Role: access.Viewer}, "b", time.Time{})
	if err := checkTokens([]Token{a, b}); err != nil {
		t.Fatal(err)
	}
	sameName := b
	sameName.Name = "a"
	sameHash := a
	sameHash.Name = "c"
	for _, set := range [][]Token{{a, sameName}, {a, sameHash}, {{Name: "x"}}} {
		if err := checkTokens(set); err == nil {
			t.Errorf("%+v accepted", set)
		}
	}
}

func FuzzParseTokenSpec(f *testing.F) {
	f.Add("name=grafana role=viewer sha256=" + strings.Repeat("0f", 32) + " expires=2027-06-01T00:00:00Z")
	f.Add("name=a role=self:alice@example.com sha256=" + strings.Repeat("0f", 32))
	f.Fuzz(func(t *testing.T, s string) {
		tok, err := ParseTokenSpec(s)
		if err != nil {
			return
		}
		back, err := ParseTokenSpec(tok.String())
		if err != nil || back != tok {
			t.Fatalf("%q read as %+v, written as %q, read back %+v %v", s, tok, tok.String(), back, err)
		}
	})
}
