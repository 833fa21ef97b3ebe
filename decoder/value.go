package decoder

import (
	"encoding/hex"
	"encoding/json"
	"unicode/utf8"

	"github.com/cdcaudit/cdcaudit/audit"
)

// Built-in type OIDs whose values are not encoded as JSON strings. User
// types (enums, domains over int, …) have user OIDs and stay strings.
const (
	oidBool   = 16
	oidInt8   = 20
	oidInt2   = 21
	oidInt4   = 23
	oidOID    = 26
	oidJSON   = 114
	oidFloat4 = 700
	oidFloat8 = 701
	oidJSONB  = 3802
)

// appendValue appends the JSON encoding of one tuple column (kind 'n', 't'
// or 'b'; never 'u') of type typ. It does not allocate beyond growing b.
func appendValue(b []byte, typ uint32, kind byte, data []byte) []byte {
	switch kind {
	case 'n':
		return append(b, "null"...)
	case 'b':
		// Never requested; PostgreSQL's bytea hex format keeps it readable.
		b = append(b, `"\\x`...)
		b = hex.AppendEncode(b, data)
		return append(b, '"')
	}
	switch typ {
	case oidBool:
		if len(data) == 1 && data[0] == 't' {
			return append(b, "true"...)
		}
		if len(data) == 1 && data[0] == 'f' {
			return append(b, "false"...)
		}
	case oidInt2, oidInt4, oidInt8, oidOID, oidFloat4, oidFloat8:
		// Floats: NaN and ±Infinity are not JSON numbers and stay strings.
		if isJSONNumber(data) {
			return append(b, data...)
		}
	case oidJSON, oidJSONB:
		// encoding/json does not check UTF-8 inside strings; we do, so that
		// a record is always valid UTF-8.
		if utf8.Valid(data) && json.Valid(data) {
			start := len(b)
			b = append(b, data...)
			// The json type keeps its input text, line breaks included. In
			// valid JSON a raw CR or LF can only be insignificant white
			// space (inside strings they must be escaped), so blanking them
			// changes nothing but keeps a record on one line (JSONL).
			for i := start; i < len(b); i++ {
				if b[i] == '\n' || b[i] == '\r' {
					b[i] = ' '
				}
			}
			return b
		}
	}
	return audit.AppendString(b, data)
}

// exactFrom is the size from which valueRoom measures a value's encoding
// exactly (one more pass over it) instead of estimating it: growing the
// arena of a huge value by append would hold it twice, and more.
const exactFrom = 64 << 10

// valueRoom returns the room appendValue needs for one tuple column: exact
// for a big text value, len+6 otherwise (escapes then grow the arena, which
// is cheap for small values; invalid json is the one big value that may).
func valueRoom(typ uint32, kind byte, data []byte) int {
	switch {
	case len(data) < exactFrom || kind == 'n':
		return len(data) + 6
	case kind == 'b':
		return 2*len(data) + 5
	case typ == oidJSON || typ == oidJSONB:
		return len(data) + 6
	}
	return audit.StringLen(data)
}

// isJSONNumber reports whether s matches
// -?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?
func isJSONNumber(s []byte) bool {
	i := 0
	if i < len(s) && s[i] == '-' {
		i++
	}
	switch {
	case i < len(s) && s[i] == '0':
		i++
	case i < len(s) && '1' <= s[i] && s[i] <= '9':
		i = skipDigits(s, i)
	default:
		return false
	}
	if i < len(s) && s[i] == '.' {
		j := skipDigits(s, i+1)
		if j == i+1 {
			return false
		}
		i = j
	}
	if i < len(s) && (s[i] == 'e' || s[i] == 'E') {
		i++
		if i < len(s) && (s[i] == '+' || s[i] == '-') {
			i++
		}
		j := skipDigits(s, i)
		if j == i {
			return false
		}
		i = j
	}
	return i == len(s)
}

func skipDigits(s []byte, i int) int {
	for i < len(s) && '0' <= s[i] && s[i] <= '9' {
		i++
	}
	return i
}

// AppendText appends the event encoding of one value given as PostgreSQL's
// text output for type typ, or SQL NULL: exactly what a pgoutput text
// column of that value becomes. Snapshots read tables with it, so a row
// read by COPY and the same row from the stream encode the same.
func AppendText(b []byte, typ uint32, data []byte, null bool) []byte {
	if null {
		return appendValue(b, typ, 'n', nil)
	}
	return appendValue(b, typ, 't', data)
}
