package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/cdcaudit/cdcaudit/audit"
)

// lineFormat renders an audit event as one line for people: what changed,
// who made the change, in which session and how cdcaudit knows, with psql
// edits flagged.
//
//	13:34:33 UPDATE   sale.order       id=4     alice #s1a6ca8 row_user/only_active      state: draft → sale
type lineFormat struct {
	color bool
	width int
	loc   *time.Location
	// On narrower terminals logins are shown without their domain.
	fullLogin bool
	colWho    int
}

func newLineFormat(color bool, width int) *lineFormat {
	d := &lineFormat{color: color, width: width, loc: time.Local, colWho: 36}
	if width >= 150 {
		d.fullLogin, d.colWho = true, 48
	}
	return d
}

// Column widths (they grow when a value is longer); the changes take the
// rest of the line.
const (
	colTime = 8
	colOp   = 8
	colWhat = 16
	colKey  = 8
)

func (d *lineFormat) header() string {
	h := fmt.Sprintf("%-*s %-*s %-*s %-*s %-*s %s", colTime, "TIME", colOp, "OP", colWhat, "MODEL", colKey, "KEY",
		d.colWho, "WHO", "CHANGES")
	return paint(d.color, ansiBold, truncate(h, d.width))
}

// who renders the actor: login #session user_via/session_via, or "none".
func (d *lineFormat) who(a audit.Actor) string {
	if a.UserID == nil {
		return "none"
	}
	name := clean(a.Login)
	if name == "" {
		name = fmt.Sprintf("uid:%d", *a.UserID)
	} else if at := strings.IndexByte(name, '@'); at > 0 && !d.fullLogin {
		name = name[:at]
	}
	name = truncate(name, 24)
	sess := "-"
	if a.SessionID != "" {
		sess = "#" + strings.TrimSuffix(truncate(clean(a.SessionID), 8), "…")
		if utf8.RuneCountInString(sess) > 8 {
			sess = string([]rune(sess)[:8])
		}
	}
	return name + " " + sess + " " + clean(a.UserVia) + "/" + clean(a.SessionVia)
}

// changes describes what changed; an insert lists its redacted columns
// last.
func changes(e *audit.Event) string {
	c := *e
	if c.Op == audit.OpInsert && len(c.Redacted) > 0 {
		// What is readable first; the redacted columns (a device row's
		// session identifier, an API key) last.
		after := make(audit.Row, 0, len(c.After))
		for _, col := range c.After {
			if !slices.Contains(c.Redacted, col.Name) {
				after = append(after, col)
			}
		}
		for _, col := range c.After {
			if slices.Contains(c.Redacted, col.Name) {
				after = append(after, col)
			}
		}
		c.After = after
	}
	return details(&c)
}

// format renders one event as a line of at most d.width columns.
func (d *lineFormat) format(e *audit.Event) string {
	ts := e.CommitTime.In(d.loc).Format("15:04:05")
	op := strings.ToUpper(e.Op.String())
	what := clean(e.Model)
	if what == "" {
		what = clean(e.Table)
		if e.Schema != "public" {
			what = clean(e.Schema) + "." + what
		}
	}
	key := rowText(e.Key, "=", " ")
	if e.Op == audit.OpTruncate {
		key = "—"
	}
	whoText := d.who(e.Actor)
	bypass := slices.Contains(e.Flags, "orm_bypass")
	detail := changes(e)
	for _, fl := range e.Flags {
		if fl != "orm_bypass" {
			detail += " [" + clean(fl) + "]"
		}
	}
	const warn = "⚠ ORM BYPASS "
	if bypass {
		detail = warn + detail
	}

	plain := fmt.Sprintf("%-*s %-*s %-*s %-*s %-*s ", colTime, ts, colOp, op, colWhat, what, colKey, key, d.colWho, whoText)
	room := d.width - utf8.RuneCountInString(plain)
	if room < 10 {
		return truncate(plain+detail, d.width)
	}
	detail = truncate(detail, room)
	if !d.color {
		return plain + detail
	}
	pad := func(s string, n int) string {
		if k := utf8.RuneCountInString(s); k < n {
			return s + strings.Repeat(" ", n-k)
		}
		return s
	}
	style := map[audit.Op]string{audit.OpInsert: ansiGreen, audit.OpUpdate: ansiYellow, audit.OpDelete: ansiRed, audit.OpTruncate: ansiPurple + ansiBold}[e.Op]
	whoCol := paint(true, ansiDim, pad(whoText, d.colWho))
	if e.Actor.UserID != nil {
		name, rest, _ := strings.Cut(whoText, " ")
		whoCol = paint(true, ansiCyan+ansiBold, name) + " " + paint(true, ansiDim, pad(rest, d.colWho-utf8.RuneCountInString(name)-1))
	}
	if bypass && strings.HasPrefix(detail, warn) {
		detail = paint(true, ansiRed+ansiBold, strings.TrimSuffix(warn, " ")) + " " + strings.TrimPrefix(detail, warn)
	}
	return paint(true, ansiDim, pad(ts, colTime)) + " " +
		paint(true, style, pad(op, colOp)) + " " +
		paint(true, ansiBold, pad(what, colWhat)) + " " +
		paint(true, ansiCyan, pad(key, colKey)) + " " +
		whoCol + " " +
		strings.ReplaceAll(detail, " → ", paint(true, ansiDim, " → "))
}

// auditColumns are bookkeeping columns, not shown: the WHO column says who.
var auditColumns = map[string]bool{"create_uid": true, "create_date": true, "write_uid": true, "write_date": true}

// details lists the values of an insert or delete, the old and new values
// of an update's changed columns.
func details(e *audit.Event) string {
	var parts []string
	keyCols := map[string]bool{}
	for _, c := range e.Key {
		keyCols[c.Name] = true
	}
	switch e.Op {
	case audit.OpInsert:
		for _, c := range e.After {
			if keyCols[c.Name] || auditColumns[c.Name] || string(c.Value) == "null" {
				continue
			}
			parts = append(parts, clean(c.Name)+"="+valueText(c.Value))
		}
	case audit.OpUpdate:
		if e.Changed == nil { // no complete before-image: show the new values
			for _, c := range e.After {
				if !keyCols[c.Name] && !auditColumns[c.Name] {
					parts = append(parts, clean(c.Name)+"="+valueText(c.Value))
				}
			}
			parts = append(parts, "(no before-image)")
			break
		}
		for _, name := range e.Changed {
			if name == "write_date" || name == "write_uid" {
				continue
			}
			old, _ := e.Before.Get(name)
			nw, ok := e.After.Get(name)
			if !ok {
				parts = append(parts, clean(name)+": (unchanged TOAST)")
				continue
			}
			parts = append(parts, clean(name)+": "+valueText(old)+" → "+valueText(nw))
		}
		if len(parts) == 0 && len(e.Changed) > 0 {
			parts = append(parts, "touched ("+strings.Join(e.Changed, ", ")+")")
		}
		if len(e.Changed) == 0 {
			parts = append(parts, "no column changed")
		}
	case audit.OpDelete:
		if e.Before == nil {
			parts = append(parts, "(key only: REPLICA IDENTITY DEFAULT)")
		}
		for _, c := range e.Before {
			if keyCols[c.Name] || auditColumns[c.Name] || string(c.Value) == "null" {
				continue
			}
			parts = append(parts, clean(c.Name)+"="+valueText(c.Value))
		}
	case audit.OpTruncate:
		parts = append(parts, "all rows removed")
	}
	return strings.Join(parts, " · ")
}

// rowText renders a row as name=value pairs.
func rowText(r audit.Row, eq, sep string) string {
	var b strings.Builder
	for i, c := range r {
		if i > 0 {
			b.WriteString(sep)
		}
		b.WriteString(clean(c.Name))
		b.WriteString(eq)
		b.WriteString(valueText(c.Value))
	}
	return b.String()
}

const maxValue = 32

// valueText renders an encoded JSON value for people: strings without
// quotes unless they need them, NULL, long values shortened.
func valueText(v []byte) string {
	if v == nil {
		return "?"
	}
	switch {
	case string(v) == "null":
		return "NULL"
	case len(v) > 0 && v[0] == '"':
		var s string
		if err := json.Unmarshal(v, &s); err != nil {
			return truncate(string(v), maxValue)
		}
		needQuote := s == "" || s == "NULL" || strings.ContainsAny(s, " \"·→=") ||
			strings.IndexFunc(s, func(r rune) bool { return unicode.IsControl(r) || r == utf8.RuneError }) >= 0
		s = truncate(s, maxValue)
		if needQuote {
			return strconv.Quote(s)
		}
		return s
	default:
		var b bytes.Buffer
		if json.Compact(&b, v) == nil {
			v = b.Bytes()
		}
		return truncate(string(v), maxValue)
	}
}

// truncate shortens s to n runes, ending with "…" when cut.
func truncate(s string, n int) string {
	if n <= 0 {
		return ""
	}
	if utf8.RuneCountInString(s) <= n {
		return s
	}
	r := []rune(s)
	cut := strings.TrimRight(string(r[:n-1]), " ·")
	if strings.HasSuffix(cut, "…") {
		return cut
	}
	return cut + "…"
}

// clean replaces control characters (a quoted identifier may hold any) so
// that nothing from the database can drive the terminal.
func clean(s string) string {
	if strings.IndexFunc(s, unicode.IsControl) < 0 {
		return s
	}
	return strings.Map(func(r rune) rune {
		if unicode.IsControl(r) {
			return '?'
		}
		return r
	}, s)
}
