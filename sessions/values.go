package sessions

import (
	"bytes"
	"encoding/json"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"
)

// Every value reaches the tracker as the JSON encoding of an audit.Row
// column, written by whoever can write the application's tables: it is
// untrusted. These helpers never panic; ok is false for SQL NULL, a missing
// column, or a value of an unexpected shape, and the caller skips it.

// textValue returns the text of a JSON string, or the literal text of a JSON
// number (a generic application may key sessions by integer).
func textValue(v []byte) (string, bool) {
	if len(v) == 0 {
		return "", false
	}
	switch c := v[0]; {
	case c == '"':
		if len(v) >= 2 && v[len(v)-1] == '"' && bytes.IndexByte(v[1:len(v)-1], '\\') < 0 && bytes.IndexByte(v[1:len(v)-1], '"') < 0 {
			s := string(v[1 : len(v)-1])
			return s, utf8.ValidString(s)
		}
		var s string
		if err := json.Unmarshal(v, &s); err != nil {
			return "", false
		}
		return s, true
	case c == '-' || (c >= '0' && c <= '9'):
		if _, err := strconv.ParseFloat(string(v), 64); err != nil {
			return "", false
		}
		return string(v), true
	}
	return "", false
}

// intValue returns an integer held as a JSON number or as a string of
// digits (numeric, text).
func intValue(v []byte) (int64, bool) {
	if len(v) == 0 {
		return 0, false
	}
	s := v
	if v[0] == '"' {
		if len(v) < 3 || v[len(v)-1] != '"' {
			return 0, false
		}
		s = v[1 : len(v)-1]
	}
	n, err := strconv.ParseInt(string(s), 10, 64)
	if err != nil {
		return 0, false
	}
	return n, true
}

// userValue is intValue restricted to plausible user ids (positive).
func userValue(v []byte) (int64, bool) {
	n, ok := intValue(v)
	return n, ok && n > 0
}

// boolValue reads JSON true/false, and the strings PostgreSQL or an
// application may use for a boolean kept as text.
func boolValue(v []byte) (value, ok bool) {
	switch string(v) {
	case "true", `"t"`, `"true"`, `"1"`, "1":
		return true, true
	case "false", `"f"`, `"false"`, `"0"`, "0":
		return false, true
	}
	return false, false
}

// timeLayouts are PostgreSQL's text output for timestamp (without time zone:
// UTC by convention, as Odoo writes it) and timestamptz with DateStyle ISO
// (offset as +01, +05:30 or +05:30:15), with the date and time separated by
// a space or a T, and a plain date.
var timeLayouts = []string{
	"2006-01-02T15:04:05.999999999",
	"2006-01-02T15:04:05.999999999Z07",
	"2006-01-02T15:04:05.999999999Z07:00",
	"2006-01-02T15:04:05.999999999Z07:00:00",
	"2006-01-02",
}

// timeValue parses a timestamp held as a JSON string. infinity, BC dates
// and anything else unparseable are not times.
func timeValue(v []byte) (time.Time, bool) {
	s, ok := textValue(v)
	if !ok || len(s) < 10 || len(s) > 40 || v[0] != '"' {
		return time.Time{}, false
	}
	if len(s) > 10 && s[10] == ' ' {
		s = s[:10] + "T" + s[11:]
	}
	for _, layout := range timeLayouts {
		if t, err := time.Parse(layout, s); err == nil {
			return t.UTC(), true
		}
	}
	return time.Time{}, false
}

// userFromDocument reads the user id at key of a JSON document held in a
// column (jsonb embedded as an object, or text holding JSON). present is
// true when the document could be read: id is then 0 for an anonymous
// document (key absent, null or not positive).
func userFromDocument(v []byte, key string) (id int64, present bool) {
	if len(v) == 0 || string(v) == "null" {
		return 0, false
	}
	doc := v
	if v[0] == '"' {
		s, ok := textValue(v)
		if !ok {
			return 0, false
		}
		doc = []byte(s)
	}
	var m map[string]json.RawMessage
	if err := json.Unmarshal(doc, &m); err != nil {
		return 0, false
	}
	if u, ok := userValue(m[key]); ok {
		return u, true
	}
	return 0, true
}

// clip bounds a text taken from a row, on a rune boundary, so that no row
// can make the tracker's memory or state records grow without bound.
func clip(s string, n int) string {
	s = strings.TrimSpace(s)
	if len(s) <= n {
		return s
	}
	s = s[:n]
	for len(s) > 0 && !utf8.ValidString(s) {
		s = s[:len(s)-1]
	}
	return s
}

// Bounds of the texts kept per session.
const (
	maxText      = 128
	maxUserAgent = 512
	maxLogin     = 256
)

// prefixRunes returns the first n characters of s (all of it when n <= 0).
func prefixRunes(s string, n int) string {
	if n <= 0 {
		return s
	}
	i := 0
	for pos := range s {
		if i == n {
			return s[:pos]
		}
		i++
	}
	return s
}
