// Package access says who is reading the audit trail and what they may
// see: a principal with one of three roles. Sign-in (package auth) makes
// principals; the HTTP API reads them from the request's context and keeps
// a self principal to its own events and sessions.
package access

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"unicode/utf8"
)

// Role is what a principal may see and do.
type Role string

const (
	// Admin sees everything and may act (export, and the admin routes).
	Admin Role = "admin"
	// Viewer sees everything and may export; it cannot act.
	Viewer Role = "viewer"
	// Self sees only its own events and sessions: those of its login.
	Self Role = "self"
)

// Principal is a signed-in reader.
type Principal struct {
	Role Role
	// Login is the application login a self principal is kept to, and the
	// name of any other principal signed in with a password; "" for an
	// admin or viewer token.
	Login string
	// Via says how it signed in, for the access log: "token:<name>",
	// "password" or "once" (a one-time code).
	Via string
}

// maxLogin bounds a login given in a role, as the application's own
// logins are bounded (Odoo: varchar without limit, but no sane login is
// longer).
const maxLogin = 256

// ParseRole reads a role as written in the configuration: "admin",
// "viewer" or "self:LOGIN".
func ParseRole(s string) (Principal, error) {
	switch {
	case s == string(Admin):
		return Principal{Role: Admin}, nil
	case s == string(Viewer):
		return Principal{Role: Viewer}, nil
	case strings.HasPrefix(s, string(Self)+":"):
		login := strings.TrimPrefix(s, string(Self)+":")
		if login == "" || len(login) > maxLogin || !utf8.ValidString(login) || strings.ContainsAny(login, "\x00\r\n") {
			return Principal{}, fmt.Errorf("role %q: self needs the login it is kept to: self:LOGIN", s)
		}
		return Principal{Role: Self, Login: login}, nil
	}
	return Principal{}, fmt.Errorf("role %q: want admin, viewer or self:LOGIN", s)
}

// String writes the role back as ParseRole reads it.
func (p Principal) String() string {
	if p.Role == Self {
		return string(Self) + ":" + p.Login
	}
	return string(p.Role)
}

// SeesAll says whether p may read every user's events and sessions.
func (p Principal) SeesAll() bool { return p.Role == Admin || p.Role == Viewer }

// IsAdmin says whether p may act.
func (p Principal) IsAdmin() bool { return p.Role == Admin }

// ErrNoPrincipal means a request reached a handler without signing in.
var ErrNoPrincipal = errors.New("not signed in")

type ctxKey struct{}

// NewContext returns ctx carrying p.
func NewContext(ctx context.Context, p Principal) context.Context {
	return context.WithValue(ctx, ctxKey{}, p)
}

// FromContext returns the principal ctx carries, or ErrNoPrincipal.
func FromContext(ctx context.Context) (Principal, error) {
	p, ok := ctx.Value(ctxKey{}).(Principal)
	if !ok || (p.Role != Admin && p.Role != Viewer && p.Role != Self) || (p.Role == Self && p.Login == "") {
		return Principal{}, ErrNoPrincipal
	}
	return p, nil
}

type csrfKey struct{}

// WithCSRFToken returns ctx carrying the CSRF token of the browser session
// the request came with, for a page that reloads to learn it again (whoami).
// A bearer token's request has none.
func WithCSRFToken(ctx context.Context, token string) context.Context {
	return context.WithValue(ctx, csrfKey{}, token)
}

// CSRFToken returns the browser session's CSRF token ctx carries, or "".
func CSRFToken(ctx context.Context) string {
	s, _ := ctx.Value(csrfKey{}).(string)
	return s
}
