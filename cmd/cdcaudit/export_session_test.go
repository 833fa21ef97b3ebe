package main

import (
	"bytes"
	"strings"
	"testing"

	"github.com/cdcaudit/cdcaudit/sessions"
)

// The session id 'cdcaudit sessions' shows (its first characters) selects
// the session in export; an ambiguous start is refused, an unknown id kept.
func TestExpandSession(t *testing.T) {
	st := &sessions.State{Sessions: []sessions.Session{{ID: "sd1627d3a02af717d752b48cb"}, {ID: "sd1627d3ffff0000000000000"}, {ID: "s62cfa38bc0bb1e4382fd0a10"}}}
	for _, c := range []struct{ in, want, err string }{
		{"", "", ""},
		{"s62cfa38bc0bb", "s62cfa38bc0bb1e4382fd0a10", ""},
		{"sd1627d3a02af", "sd1627d3a02af717d752b48cb", ""},
		{"sd1627d3a02af717d752b48cb", "sd1627d3a02af717d752b48cb", ""},
		{"s0000pruned", "s0000pruned", ""},
		{"sd1627d3", "", "begins 2 sessions"},
	} {
		got, err := expandSession(st, c.in)
		if got != c.want || (err == nil) != (c.err == "") || err != nil && !strings.Contains(err.Error(), c.err) {
			t.Errorf("expandSession(%q) = %q, %v; want %q, %q", c.in, got, err, c.want, c.err)
		}
	}
}

// --user takes a login exactly; a part of one gets the logins it is part of.
func TestHintUser(t *testing.T) {
	st := &sessions.State{Users: map[int64]string{6: "alice@example.com", 7: "bob@example.com", 8: "bobby@example.com"}}
	for _, c := range []struct{ user, want string }{
		{"bob", `no user logs in as "bob"; --user takes a login exactly: bob@example.com, bobby@example.com` + "\n"},
		{"bob@example.com", ""},
		{"#7", ""},
		{"zed", ""},
	} {
		var errb bytes.Buffer
		(&cli{stderr: &errb}).hintUser(st, c.user)
		if got := strings.TrimPrefix(errb.String(), "cdcaudit export: "); got != c.want {
			t.Errorf("hintUser(%q) wrote %q, want %q", c.user, got, c.want)
		}
	}
}
