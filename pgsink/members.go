package pgsink

import (
	"encoding/json"
	"errors"
	"unicode/utf8"
)

// members splits a stored record — one JSON object — into its members'
// raw values. It reads what the store holds (canonical JSON written by
// cdcaudit) without encoding/json's reflection and second pass, which
// were most of the sink's CPU: a record it does not take apart cleanly
// (a member name with an escape or not UTF-8, anything malformed) is left to
// json.Unmarshal, which decides.
func members(rec []byte) (map[string]json.RawMessage, error) {
	if m, ok := splitObject(rec); ok {
		return m, nil
	}
	var m map[string]json.RawMessage
	if err := json.Unmarshal(rec, &m); err != nil {
		return nil, err
	}
	return m, nil
}

var errSplit = errors.New("not split")

// splitObject splits a JSON object without whitespace outside its
// strings; ok false when it cannot.
func splitObject(b []byte) (m map[string]json.RawMessage, ok bool) {
	if len(b) < 2 || b[0] != '{' {
		return nil, false
	}
	m = make(map[string]json.RawMessage, 32)
	i := 1
	if b[i] == '}' {
		return m, i+1 == len(b)
	}
	for {
		// "name":
		if i >= len(b) || b[i] != '"' {
			return nil, false
		}
		end, plain := stringEnd(b, i)
		if end < 0 || !plain || end+1 >= len(b) || b[end+1] != ':' || !utf8.Valid(b[i+1:end]) {
			return nil, false
		}
		name := string(b[i+1 : end])
		i = end + 2
		vend, err := valueEnd(b, i)
		if err != nil {
			return nil, false
		}
		if _, dup := m[name]; dup {
			return nil, false // json.Unmarshal keeps the last: let it
		}
		m[name] = json.RawMessage(b[i:vend])
		i = vend
		if i >= len(b) {
			return nil, false
		}
		switch b[i] {
		case ',':
			i++
		case '}':
			return m, i+1 == len(b)
		default:
			return nil, false
		}
	}
}

// stringEnd returns the index of the closing quote of the string that
// opens at b[i], and whether it holds no escape; -1 when unterminated or
// holding a control character.
func stringEnd(b []byte, i int) (end int, plain bool) {
	plain = true
	for j := i + 1; j < len(b); j++ {
		switch c := b[j]; {
		case c == '"':
			return j, plain
		case c == '\\':
			plain = false
			j++ // the escaped byte; \uXXXX's digits are plain bytes
		case c < 0x20:
			return -1, false
		}
	}
	return -1, false
}

// valueEnd returns the index just past the value that starts at b[i]:
// a string, an object or array (nested, strings skipped), or a literal or
// number (up to the next , } or ]). It checks the structure only: a value
// that is not JSON goes to a jsonb column, whose input refuses it (the
// batch fails, as when json.Unmarshal refused the record), or to a text
// column as its text; the store's records are cdcaudit's own encoding,
// verified by their hash as they are read.
func valueEnd(b []byte, i int) (int, error) {
	if i >= len(b) {
		return 0, errSplit
	}
	switch b[i] {
	case '"':
		end, _ := stringEnd(b, i)
		if end < 0 {
			return 0, errSplit
		}
		return end + 1, nil
	case '{', '[':
		depth := 0
		for j := i; j < len(b); j++ {
			switch b[j] {
			case '"':
				end, _ := stringEnd(b, j)
				if end < 0 {
					return 0, errSplit
				}
				j = end
			case '{', '[':
				depth++
			case '}', ']':
				depth--
				if depth == 0 {
					return j + 1, nil
				}
			}
		}
		return 0, errSplit
	}
	j := i
	for j < len(b) && b[j] != ',' && b[j] != '}' && b[j] != ']' {
		j++
	}
	if j == i {
		return 0, errSplit
	}
	return j, nil
}
