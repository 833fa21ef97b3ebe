package sessions

import (
	"strings"
	"testing"
	"time"

	"github.com/cdcaudit/cdcaudit/profile"
)

// New and the configuration apply one rule: a session is idle before it ends.
func TestLifetimeRule(t *testing.T) {
	for _, tc := range []struct {
		idle, lifetime time.Duration
		want           string
	}{
		{10 * time.Minute, 2 * time.Minute, "2m0s is shorter than idle_after (10m0s)"},
		{10 * time.Minute, 10 * time.Minute, "10m0s equals idle_after"},
	} {
		err := ValidateLifetime(tc.lifetime, tc.idle)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("ValidateLifetime: %v", err)
		}
		if _, err := New(profile.Odoo(), Options{IdleAfter: tc.idle, Lifetime: tc.lifetime}); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("New: %v", err)
		}
	}
	if err := ValidateLifetime(DefaultLifetime, DefaultIdleAfter); err != nil || ValidateIdleAfter(DefaultIdleAfter) != nil {
		t.Errorf("the defaults break the rules: %v", err)
	}
	for _, d := range []time.Duration{999 * time.Millisecond, 24*time.Hour + 1} {
		if ValidateIdleAfter(d) == nil {
			t.Errorf("idle after %s accepted", d)
		}
	}
	if ValidateLifetime(367*24*time.Hour, time.Minute) == nil || ValidateLifetime(59*time.Second, time.Second) == nil {
		t.Error("lifetime out of range accepted")
	}
}
