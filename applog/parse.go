package applog

import (
	"bytes"
	"net/netip"
	"strings"
	"time"
	"unicode/utf8"
)

// Results of a login.
const (
	ResultOK     = "ok"
	ResultFailed = "failed"
)

// Login is one login attempt as Odoo logged it.
type Login struct {
	Time   time.Time `json:"time"`
	Result string    `json:"result"` // ok | failed
	DB     string    `json:"db"`
	Login  string    `json:"login"` // as typed: for a failed login, maybe no user's
	IP     string    `json:"ip,omitempty"`
}

// maxField bounds the login and database name kept from a line: a failed
// login logs whatever was typed.
const maxField = 256

// ParseLine reads one line of Odoo's log (without its newline), as
// odoo.addons.base.models.res_users writes it (Odoo 16 to 18):
//
//	2026-12-03 06:54:29,401 28896 INFO erp odoo.addons.base.models.res_users: Login failed for db:erp login:bob from 198.51.100.99
//
// Odoo runs in UTC (odoo/__init__.py sets TZ), so the time is UTC. Any other
// line, or one that does not have this shape, is not a login (false). The
// line is untrusted: the login is whatever was typed, so it is taken up to
// the last " from " and bounded; an address that is not an IP ("n/a"
// without a request) is left empty.
func ParseLine(line []byte) (Login, bool) {
	var l Login
	// "2006-01-02 15:04:05,000 " then pid, level, db, logger.
	const stamp = "2006-01-02 15:04:05,000"
	if len(line) < len(stamp)+1 || line[len(stamp)] != ' ' {
		return l, false
	}
	t, err := time.Parse(stamp, string(line[:len(stamp)]))
	if err != nil {
		return l, false
	}
	rest := line[len(stamp)+1:]
	i := bytes.Index(rest, []byte(" odoo.addons.base.models.res_users: Login "))
	if i < 0 {
		return l, false
	}
	msg := rest[i+len(" odoo.addons.base.models.res_users: Login "):]
	switch {
	case bytes.HasPrefix(msg, []byte("failed for db:")):
		l.Result, msg = ResultFailed, msg[len("failed for db:"):]
	case bytes.HasPrefix(msg, []byte("successful for db:")):
		l.Result, msg = ResultOK, msg[len("successful for db:"):]
	default:
		return l, false
	}
	// Database names have no spaces: the first " login:" ends it.
	db, msg, ok := bytes.Cut(msg, []byte(" login:"))
	if !ok || len(db) == 0 || bytes.ContainsAny(db, " \t") {
		return l, false
	}
	msg = bytes.TrimRight(msg, " \r")
	j := bytes.LastIndex(msg, []byte(" from "))
	if j < 0 {
		return l, false
	}
	login, ip := msg[:j], msg[j+len(" from "):]
	if len(login) == 0 {
		return l, false
	}
	l.Time = t.UTC()
	l.DB = clean(db)
	l.Login = clean(login)
	if a, err := netip.ParseAddr(string(ip)); err == nil {
		l.IP = a.Unmap().WithZone("").String()
	}
	return l, true
}

// clean makes an untrusted field safe to keep and show: valid UTF-8,
// control characters replaced, at most maxField bytes.
func clean(b []byte) string {
	s := strings.ToValidUTF8(string(b), "\uFFFD")
	s = strings.Map(func(r rune) rune {
		if r < 0x20 || r == 0x7f {
			return '\uFFFD'
		}
		return r
	}, s)
	if len(s) > maxField {
		cut := maxField
		for cut > 0 && !utf8.RuneStart(s[cut]) {
			cut--
		}
		s = s[:cut]
	}
	return s
}
