package api

import (
	"encoding/base64"
	"net/http"
	"net/url"
	"path"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/cdcaudit/cdcaudit/access"
	"github.com/cdcaudit/cdcaudit/audit"
	"github.com/cdcaudit/cdcaudit/sink"
)

// Bounds of the input.
const (
	maxQueryLen  = 8 << 10 // the whole query string
	maxValueLen  = 512     // one parameter's value (a record: maxRecordLen)
	maxRecordLen = 4 << 10
	maxRepeats   = 32 // values of a repeatable parameter (table, op)
	defaultLimit = 100
	maxLimit     = 1000
)

// repeatable parameters may be given more than once (or comma-separated).
var repeatable = map[string]bool{"table": true, "op": true}

// query reads a request's query string, refusing parameters the route does
// not take, repeated ones that it takes once, and values beyond the bounds.
func query(r *http.Request, allowed ...string) (url.Values, error) {
	return parseQuery(r.URL.RawQuery, allowed...)
}

func parseQuery(raw string, allowed ...string) (url.Values, error) {
	if len(raw) > maxQueryLen {
		return nil, badRequest("query string longer than %d bytes", maxQueryLen)
	}
	v, err := url.ParseQuery(raw)
	if err != nil {
		return nil, badRequest("malformed query string: %v", err)
	}
	for name, vals := range v {
		if !slices.Contains(allowed, name) {
			if len(allowed) == 0 {
				return nil, badRequest("parameter %q: this route takes no parameters", clip(name))
			}
			return nil, badRequest("unknown parameter %q (this route takes %s)", clip(name), strings.Join(allowed, ", "))
		}
		if len(vals) > 1 && !repeatable[name] || len(vals) > maxRepeats {
			return nil, badRequest("parameter %q given %d times", name, len(vals))
		}
		for _, s := range vals {
			max := maxValueLen
			if name == "record" {
				max = maxRecordLen
			}
			if len(s) > max {
				return nil, badRequest("parameter %q longer than %d bytes", name, max)
			}
			if !utf8.ValidString(s) || strings.ContainsRune(s, 0) {
				return nil, badRequest("parameter %q is not valid UTF-8 text", name)
			}
		}
	}
	return v, nil
}

func noParams(r *http.Request) error {
	_, err := query(r)
	return err
}

// clip shortens a client's string quoted back in an error.
func clip(s string) string {
	if len(s) > 64 {
		s = s[:64] + "…"
	}
	return strings.ToValidUTF8(s, "?")
}

// list is a repeatable parameter's values, commas splitting them too.
func list(v url.Values, name string) ([]string, error) {
	var out []string
	for _, s := range v[name] {
		for _, part := range strings.Split(s, ",") {
			if part = strings.TrimSpace(part); part != "" {
				out = append(out, part)
			}
		}
	}
	if len(out) > maxRepeats {
		return nil, badRequest("parameter %q: more than %d values", name, maxRepeats)
	}
	return out, nil
}

// filterParams are the parameters of the store's filters.
var filterParams = []string{"since", "until", "table", "op", "user", "session", "record", "flag"}

// pageParams are those of a page of events.
var pageParams = []string{"order", "limit", "cursor"}

// parseFilter reads the store's filters.
func parseFilter(v url.Values) (sink.Query, error) {
	var q sink.Query
	var err error
	if q.Since, err = parseTime(v, "since"); err != nil {
		return q, err
	}
	if q.Until, err = parseTime(v, "until"); err != nil {
		return q, err
	}
	if !q.Since.IsZero() && !q.Until.IsZero() && !q.Since.Before(q.Until) {
		return q, badRequest("since must be before until")
	}
	if q.Tables, err = list(v, "table"); err != nil {
		return q, err
	}
	for _, t := range q.Tables {
		if _, err := path.Match(t, ""); err != nil {
			return q, badRequest("table %q: not a glob: %v", clip(t), err)
		}
	}
	ops, err := list(v, "op")
	if err != nil {
		return q, err
	}
	for _, s := range ops {
		op, err := audit.ParseOp(s)
		if err != nil {
			return q, badRequest("op %q: want insert, update, delete, truncate or snapshot", clip(s))
		}
		q.Ops = append(q.Ops, op)
	}
	q.User, q.Session, q.Flag = v.Get("user"), v.Get("session"), v.Get("flag")
	if rec := v.Get("record"); rec != "" {
		ref, err := audit.ParseRecordRef(rec)
		if err != nil {
			return q, badRequest("record %q: %v", clip(rec), err)
		}
		q.Record = &ref
	}
	return q, nil
}

// parsePage reads order, limit and the store's cursor into q.
func parsePage(v url.Values, q *sink.Query) error {
	switch o := v.Get("order"); o {
	case "", "asc":
	case "desc":
		q.Desc = true
	default:
		return badRequest("order %q: want asc or desc", clip(o))
	}
	n, err := parseLimit(v, defaultLimit, maxLimit)
	if err != nil {
		return err
	}
	q.Limit = n
	q.Cursor = v.Get("cursor")
	if q.Cursor != "" {
		if _, err := base64.RawURLEncoding.DecodeString(q.Cursor); err != nil {
			return badRequest("cursor: not a cursor this API returned")
		}
	}
	return nil
}

func parseLimit(v url.Values, def, max int) (int, error) {
	s := v.Get("limit")
	if s == "" {
		return def, nil
	}
	n, err := strconv.Atoi(s)
	if err != nil || n < 1 || n > max {
		return 0, badRequest("limit %q: want a whole number from 1 to %d", clip(s), max)
	}
	return n, nil
}

// parseTime reads an RFC 3339 time (zero when absent).
func parseTime(v url.Values, name string) (time.Time, error) {
	s := v.Get(name)
	if s == "" {
		return time.Time{}, nil
	}
	t, err := time.Parse(time.RFC3339Nano, s)
	if err != nil || t.Year() < 1 || t.Year() > 9999 {
		return time.Time{}, badRequest("%s %q: want an RFC 3339 time, e.g. 2026-11-23T13:00:00Z", name, clip(s))
	}
	return t, nil
}

// keepToOwn keeps a query of a self principal to its own events: it
// reports false when the query asks for another user's (nothing to see).
func keepToOwn(q *sink.Query, p access.Principal) bool {
	if p.SeesAll() {
		return true
	}
	if q.User != "" && q.User != p.Login {
		return false
	}
	q.User = p.Login
	return true
}

// sees reports whether p may see the event whose user term is user.
func sees(p access.Principal, user string) bool { return p.SeesAll() || user == p.Login }
