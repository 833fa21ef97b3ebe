package dbsessions

import (
	"errors"
	"fmt"
	"net/netip"
	"path"
	"slices"
	"strings"
	"time"
)

// DefaultInterval is how often pg_stat_activity is sampled.
const DefaultInterval = 10 * time.Second

// DefaultAppNames are the application_names of the application's own
// sessions: Odoo names its connections odoo-<pid>.
var DefaultAppNames = []string{"odoo-*"}

// Local is the client address of a session over a Unix socket.
const Local = "local"

// ValidateInterval accepts 0 (no sampling) or at least a second.
func ValidateInterval(d time.Duration) error {
	if d < 0 || d > 0 && d < time.Second {
		return fmt.Errorf("%s: want 0 (off) or at least 1s", d)
	}
	return nil
}

// ValidateAppName accepts an application_name glob (* ? [..] as in shell
// patterns).
func ValidateAppName(glob string) error {
	if glob == "" {
		return errors.New("an empty application_name pattern")
	}
	if _, err := path.Match(glob, ""); err != nil {
		return fmt.Errorf("%q is not a pattern: %v", glob, err)
	}
	return nil
}

// ValidateAppAddr accepts an IP address, a CIDR prefix or "local" (a Unix
// socket).
func ValidateAppAddr(s string) error {
	_, _, err := parseAddr(s)
	return err
}

// Validate refuses lists that would take every session for the
// application's (all empty).
func (a App) Validate() error {
	if len(a.Roles) == 0 && len(a.Names) == 0 && len(a.Addrs) == 0 {
		return errors.New("no role, application_name or address says which sessions are the application's: every session would be")
	}
	return nil
}

// App says which database sessions are the application's: those that match
// every list given (an empty list matches any session).
type App struct {
	Roles []string // role names, exactly
	Names []string // application_name patterns (ValidateAppName)
	Addrs []string // client addresses (ValidateAppAddr)
}

// appMatcher is App, parsed.
type appMatcher struct {
	roles, names []string
	addrs        []netip.Prefix
	anyAddr      bool
	local        bool
}

func (a App) matcher() (*appMatcher, error) {
	if err := a.Validate(); err != nil {
		return nil, err
	}
	m := &appMatcher{roles: a.Roles, names: a.Names, anyAddr: len(a.Addrs) == 0}
	for _, n := range a.Names {
		if err := ValidateAppName(n); err != nil {
			return nil, err
		}
	}
	for _, s := range a.Addrs {
		p, local, err := parseAddr(s)
		if err != nil {
			return nil, err
		}
		if local {
			m.local = true
		} else {
			m.addrs = append(m.addrs, p)
		}
	}
	return m, nil
}

func parseAddr(s string) (p netip.Prefix, local bool, err error) {
	s = strings.TrimSpace(s)
	if s == Local {
		return netip.Prefix{}, true, nil
	}
	if strings.Contains(s, "/") {
		p, err = netip.ParsePrefix(s)
		if err == nil && p.Addr().Is4In6() && p.Bits() >= 96 {
			p = netip.PrefixFrom(p.Addr().Unmap(), p.Bits()-96)
		}
		p = p.Masked()
	} else {
		var a netip.Addr
		if a, err = netip.ParseAddr(s); err == nil {
			a = a.Unmap() // clients are matched unmapped
			p = netip.PrefixFrom(a, a.BitLen())
		}
	}
	if err != nil {
		return p, false, fmt.Errorf("%q is not an IP address, a CIDR prefix or %q", s, Local)
	}
	return p, false, nil
}

// owns reports whether a session is the application's.
func (m *appMatcher) owns(role, name, client string) bool {
	if len(m.roles) > 0 && !slices.Contains(m.roles, role) {
		return false
	}
	if len(m.names) > 0 && !slices.ContainsFunc(m.names, func(g string) bool { ok, _ := path.Match(g, name); return ok }) {
		return false
	}
	if m.anyAddr {
		return true
	}
	if client == Local {
		return m.local
	}
	a, err := netip.ParseAddr(client)
	if err != nil {
		return false
	}
	a = a.Unmap()
	return slices.ContainsFunc(m.addrs, func(p netip.Prefix) bool { return p.Contains(a) })
}
