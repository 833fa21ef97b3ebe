package config

import (
	"strings"
	"testing"

	"github.com/cdcaudit/cdcaudit/audit"
)

// The source defaults to the DSN's database (libpq's: the user's name when
// none is named); a configured one wins; a bad one is the owner's error.
func TestSourceKey(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"--dsn", "postgres://u@db/erp_a"}, "erp_a"},
		{[]string{"--dsn", "host=db user=odoo"}, "odoo"},
		{[]string{"--dsn", "postgres://u@db/erp_a", "--source", "erp-a.prod"}, "erp-a.prod"},
		{nil, ""}, // no DSN (verify, export): no source
	} {
		c, err := load(t, tc.args, nil)
		if err != nil {
			t.Fatalf("%v: %v", tc.args, err)
		}
		if c.Source != tc.want {
			t.Errorf("%v: source %q, want %q", tc.args, c.Source, tc.want)
		}
	}
	c, err := load(t, nil, map[string]string{EnvName(KeySource): "erp_b", EnvName(KeyDSN): "postgres://u@db/erp_a"})
	if err != nil || c.Source != "erp_b" || c.Sources[KeySource] != "CDCAUDIT_SOURCE" {
		t.Fatalf("from the environment: %v %+v", err, c)
	}

	_, err = load(t, []string{"--source", "erp a"}, nil)
	if want := "config: source: " + audit.ValidSource("erp a").Error() + " (from --source)"; err == nil || err.Error() != want {
		t.Errorf("a bad source:\n got %v\nwant %s", err, want)
	}
	// A database name that is no source name asks for one.
	_, err = load(t, []string{"--dsn", "postgres://u@db/erp%20a"}, nil)
	if err == nil || !strings.Contains(err.Error(), "--source") || !strings.Contains(err.Error(), "erp a") {
		t.Errorf("a database name with a space: %v", err)
	}
}
