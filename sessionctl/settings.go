package sessionctl

import (
	"errors"
	"fmt"
	"net/url"
	"strings"
	"time"

	"github.com/cdcaudit/cdcaudit/auth"
)

// Exception keeps a login, or the members of a group (an Odoo xml id), out
// of every policy: "login:NAME" or "group:module.name".
type Exception struct {
	Login, Group string
}

func (e Exception) String() string {
	if e.Group != "" {
		return "group:" + e.Group
	}
	return "login:" + e.Login
}

// ParseException reads "login:NAME" or "group:module.name".
func ParseException(s string) (Exception, error) {
	kind, v, ok := strings.Cut(s, ":")
	switch {
	case ok && kind == "login" && v != "" && len(v) <= 256:
		return Exception{Login: v}, nil
	case ok && kind == "group":
		if err := auth.ValidateGroupXMLID(v); err != nil {
			return Exception{}, err
		}
		return Exception{Group: v}, nil
	}
	return Exception{}, fmt.Errorf("%q: want login:NAME or group:module.name (an Odoo group's xml id)", s)
}

// Exceptions splits exceptions into Policies' logins and groups.
func Exceptions(list []Exception) (logins, groups []string) {
	for _, e := range list {
		if e.Group != "" {
			groups = append(groups, e.Group)
		} else {
			logins = append(logins, e.Login)
		}
	}
	return logins, groups
}

// ValidatePolicyDuration accepts 0 (off) or at least a minute.
func ValidatePolicyDuration(d time.Duration) error {
	if d < 0 || d > 0 && d < time.Minute {
		return fmt.Errorf("%s: want 0 (off) or at least 1m (activity is known to about a minute)", d)
	}
	return nil
}

// ValidateWebhook accepts an absolute http or https URL.
func ValidateWebhook(s string) error {
	u, err := url.Parse(s)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return errors.New("want an http:// or https:// URL")
	}
	return nil
}
