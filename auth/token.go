package auth

import (
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/cdcaudit/cdcaudit/access"
)

// TokenPrefix starts every API token, so that a token pasted where it
// does not belong (a log, a repository) is recognisable.
const TokenPrefix = "cdca_"

// tokenBytes of randomness: 256 bits, beyond any guessing.
const tokenBytes = 32

// maxBearer bounds a presented token; real ones are 48 characters.
const maxBearer = 512

// Token is an API token as configured: its name, the SHA-256 of the token
// (the token itself is never configured nor kept), the principal it signs
// in as, and when it stops working (zero: never).
type Token struct {
	Name      string
	SHA256    [sha256.Size]byte
	Principal access.Principal // Role and Login; Via is set when it is used
	Expires   time.Time
}

// NewToken makes a token for p named name, expiring at expires (zero:
// never). It returns the token, to be shown once, and its configuration
// entry.
func NewToken(p access.Principal, name string, expires time.Time) (secret string, t Token, err error) {
	if err := validTokenName(name); err != nil {
		return "", Token{}, err
	}
	if _, err := access.ParseRole(p.String()); err != nil {
		return "", Token{}, err
	}
	b := make([]byte, tokenBytes)
	rand.Read(b) // never fails (crypto/rand)
	secret = TokenPrefix + base64.RawURLEncoding.EncodeToString(b)
	p.Via = ""
	return secret, Token{Name: name, SHA256: sha256.Sum256([]byte(secret)), Principal: p, Expires: expires.UTC().Truncate(time.Second)}, nil
}

var tokenNameRE = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$`)

func validTokenName(name string) error {
	if !tokenNameRE.MatchString(name) {
		return errors.New("token name: want 1-64 letters, digits, '.', '_' or '-', starting with a letter or digit")
	}
	return nil
}

// String is the token's configuration entry, as ParseTokenSpec reads it:
//
//	name=grafana role=viewer sha256=<64 hex digits> [expires=2027-06-01T00:00:00Z]
func (t Token) String() string {
	s := "name=" + t.Name + " role=" + t.Principal.String() + " sha256=" + hex.EncodeToString(t.SHA256[:])
	if !t.Expires.IsZero() {
		s += " expires=" + t.Expires.UTC().Format(time.RFC3339)
	}
	return s
}

// ParseTokenSpec reads one configured token: space-separated key=value
// fields name, role (admin, viewer or self:LOGIN), sha256 (hex of the
// token's SHA-256) and the optional expires (RFC 3339, or a date: the token
// stops working at 00:00 UTC that day). Errors never repeat the values: a
// token pasted by mistake in place of its hash must not reach a log.
func ParseTokenSpec(s string) (Token, error) {
	if strings.Contains(s, TokenPrefix) {
		return Token{}, errors.New("api token: this looks like a token itself; configure only its sha256 (cdcaudit token new prints the entry)")
	}
	var t Token
	seen := map[string]bool{}
	for _, f := range strings.Fields(s) {
		k, v, ok := strings.Cut(f, "=")
		if !ok || seen[k] {
			return Token{}, errors.New("api token: want space-separated name=, role=, sha256= and optionally expires=, each once")
		}
		seen[k] = true
		switch k {
		case "name":
			if err := validTokenName(v); err != nil {
				return Token{}, fmt.Errorf("api token: %w", err)
			}
			t.Name = v
		case "role":
			p, err := access.ParseRole(v)
			if err != nil {
				return Token{}, fmt.Errorf("api token %s: role: want admin, viewer or self:LOGIN", t.Name)
			}
			t.Principal = p
		case "sha256":
			b, err := hex.DecodeString(v)
			if err != nil || len(b) != sha256.Size {
				return Token{}, fmt.Errorf("api token %s: sha256: want the 64 hex digits of the token's SHA-256", t.Name)
			}
			copy(t.SHA256[:], b)
		case "expires":
			e, err := ParseExpiry(v, time.Time{})
			if err != nil {
				return Token{}, fmt.Errorf("api token %s: expires: %w", t.Name, err)
			}
			t.Expires = e
		default:
			return Token{}, fmt.Errorf("api token %s: unknown field %q (want name, role, sha256, expires)", t.Name, k)
		}
	}
	for _, k := range []string{"name", "role", "sha256"} {
		if !seen[k] {
			return Token{}, fmt.Errorf("api token %s: %s= is missing", t.Name, k)
		}
	}
	return t, nil
}

// ParseExpiry reads an expiry: an RFC 3339 time, a date (00:00 UTC that
// day), or, when now is not zero, a number of days from now ("90d").
func ParseExpiry(s string, now time.Time) (time.Time, error) {
	if n, ok := strings.CutSuffix(s, "d"); ok && !now.IsZero() {
		days, err := strconv.Atoi(n)
		if err != nil || days < 1 || days > 100*366 {
			return time.Time{}, errors.New("want a number of days such as 90d")
		}
		return now.UTC().Add(time.Duration(days) * 24 * time.Hour).Truncate(time.Second), nil
	}
	if t, err := time.Parse(time.DateOnly, s); err == nil {
		return t, nil
	}
	if t, err := time.Parse(time.RFC3339, s); err == nil {
		return t.UTC(), nil
	}
	if now.IsZero() {
		return time.Time{}, errors.New("want a date (2027-06-01) or an RFC 3339 time")
	}
	return time.Time{}, errors.New("want a date (2027-06-01), an RFC 3339 time or a number of days (90d)")
}

// checkTokens refuses two tokens of one name or one hash: the access log
// names a token, and a hash must say which one signed in.
func checkTokens(tokens []Token) error {
	names := map[string]bool{}
	sums := map[[sha256.Size]byte]bool{}
	for _, t := range tokens {
		if t.Name == "" || t.Principal.Role == "" {
			return errors.New("api token: an entry without name or role")
		}
		if names[t.Name] {
			return fmt.Errorf("api token %s: two tokens of that name", t.Name)
		}
		if sums[t.SHA256] {
			return fmt.Errorf("api token %s: the same sha256 as another token", t.Name)
		}
		names[t.Name], sums[t.SHA256] = true, true
	}
	return nil
}

// errTokenExpired is a known token past its expiry.
var errTokenExpired = errors.New("token expired")

// errTokenUnknown is a token no entry has.
var errTokenUnknown = errors.New("unknown token")

// lookupToken finds the token whose hash presented hashes to. It compares
// against every configured hash in constant time and does not stop at the
// first match, so how long it takes says nothing about the hashes.
func lookupToken(tokens []Token, presented string, now time.Time) (Token, error) {
	if len(presented) > maxBearer {
		return Token{}, errTokenUnknown
	}
	sum := sha256.Sum256([]byte(presented))
	found := -1
	for i := range tokens {
		if subtle.ConstantTimeCompare(tokens[i].SHA256[:], sum[:]) == 1 {
			found = i
		}
	}
	if found < 0 {
		return Token{}, errTokenUnknown
	}
	t := tokens[found]
	if !t.Expires.IsZero() && !now.Before(t.Expires) {
		return t, errTokenExpired
	}
	return t, nil
}
