package applog

import (
	"bufio"
	"os"
	"strings"
	"testing"
	"time"
	"unicode/utf8"
)

// TestParseRecordedOdoo reads the log lines of the real Odoo 18 recording.
func TestParseRecordedOdoo(t *testing.T) {
	f, err := os.Open("../testdata/odoo18/odoo.log")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var got []Login
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if l, ok := ParseLine(sc.Bytes()); ok {
			got = append(got, l)
		}
	}
	if len(got) != 8 {
		t.Fatalf("got %d logins, want 8 (7 successful, 1 failed): %+v", len(got), got)
	}
	want := Login{Time: time.Date(2026, 12, 3, 6, 54, 29, 401e6, time.UTC), Result: ResultFailed, DB: "erp", Login: "bob", IP: "198.51.100.99"}
	if got[5] != want {
		t.Errorf("the failed login: got %+v, want %+v", got[5], want)
	}
	if got[0].Login != "admin" || got[0].Result != ResultOK || got[0].IP != "192.0.2.1" {
		t.Errorf("the first login: %+v", got[0])
	}
	for _, l := range got {
		if l.Result == "" || l.DB != "erp" || l.IP == "" {
			t.Errorf("incomplete: %+v", l)
		}
	}
}

func TestParseLine(t *testing.T) {
	const pre = "2026-12-03 06:54:29,401 28896 INFO erp odoo.addons.base.models.res_users: "
	for _, c := range []struct {
		line  string
		ok    bool
		login string
		ip    string
	}{
		{pre + "Login failed for db:erp login:bob from 198.51.100.99 ", true, "bob", "198.51.100.99"},
		// What an attacker types is the login, " from " included.
		{pre + "Login failed for db:erp login:x from y from 2001:db8::1", true, "x from y", "2001:db8::1"},
		{pre + "Login failed for db:erp login:nobody@example.com from n/a", true, "nobody@example.com", ""},
		{pre + "Login failed for db:erp login:a\x00b\xff from ::ffff:192.0.2.7", true, "a\uFFFDb\uFFFD", "192.0.2.7"},
		{pre + "Login failed for db:erp login: from 192.0.2.1", false, "", ""},
		{pre + "Login failed for db:erp login:bob", false, "", ""},
		{pre + "Login failed for db: login:bob from 192.0.2.1", false, "", ""},
		{pre + "Password change for 'alice' (#6) by 'alice' (#6) from 203.0.113.10 ", false, "", ""},
		{"2026-13-03 06:54:29,401 28896 INFO erp odoo.addons.base.models.res_users: Login failed for db:erp login:bob from 192.0.2.1", false, "", ""},
		{"garbage", false, "", ""},
		{"", false, "", ""},
	} {
		l, ok := ParseLine([]byte(c.line))
		if ok != c.ok || ok && (l.Login != c.login || l.IP != c.ip) {
			t.Errorf("%q: got %+v %v, want login %q ip %q %v", c.line, l, ok, c.login, c.ip, c.ok)
		}
	}
	long := pre + "Login failed for db:erp login:" + strings.Repeat("é", 400) + " from 192.0.2.1"
	l, ok := ParseLine([]byte(long))
	if !ok || len(l.Login) > maxField || !utf8.ValidString(l.Login) {
		t.Errorf("a long login: %v, %d bytes, valid %v", ok, len(l.Login), utf8.ValidString(l.Login))
	}
}

func FuzzParseLine(f *testing.F) {
	data, _ := os.ReadFile("../testdata/odoo18/odoo.log")
	for _, line := range strings.Split(string(data), "\n") {
		f.Add([]byte(line))
	}
	f.Fuzz(func(t *testing.T, line []byte) {
		l, ok := ParseLine(line)
		if !ok {
			return
		}
		if l.Result != ResultOK && l.Result != ResultFailed || l.Login == "" || l.DB == "" {
			t.Fatalf("incomplete login %+v", l)
		}
		for _, s := range []string{l.Login, l.DB} {
			if len(s) > maxField || !utf8.ValidString(s) || strings.ContainsAny(s, "\n\r\x00") {
				t.Fatalf("unsafe field %q", s)
			}
		}
		if l.Time.Location() != time.UTC {
			t.Fatalf("time not UTC: %v", l.Time)
		}
	})
}
