package snapshot

import (
	"bytes"
	"errors"
	"fmt"
)

// COPY's text format: one row per line, columns separated by tabs, NULL as
// \N, and backslash escapes for what would break that (\t \n \r \\, also
// \b \f \v, octal \ooo and hex \xhh on input). Values are PostgreSQL's text
// output of each type, exactly what pgoutput sends in text mode.

// splitFields splits one COPY text line (without its newline) into its raw
// (still escaped) fields, reusing fields.
func splitFields(line []byte, fields [][]byte) [][]byte {
	fields = fields[:0]
	start := 0
	for i, c := range line {
		if c == '\t' { // a tab in a value is always escaped
			fields = append(fields, line[start:i])
			start = i + 1
		}
	}
	return append(fields, line[start:])
}

// isNull reports whether a raw field is COPY's NULL marker.
func isNull(raw []byte) bool { return len(raw) == 2 && raw[0] == '\\' && raw[1] == 'N' }

var errBadEscape = errors.New("malformed COPY escape")

// unescape appends the value of a raw, non-NULL field to dst.
func unescape(dst, raw []byte) ([]byte, error) {
	for i := 0; i < len(raw); i++ {
		c := raw[i]
		if c != '\\' {
			dst = append(dst, c)
			continue
		}
		i++
		if i == len(raw) {
			return dst, fmt.Errorf("%w: a lone backslash at the end of a value", errBadEscape)
		}
		switch c = raw[i]; c {
		case 'b':
			dst = append(dst, '\b')
		case 'f':
			dst = append(dst, '\f')
		case 'n':
			dst = append(dst, '\n')
		case 'r':
			dst = append(dst, '\r')
		case 't':
			dst = append(dst, '\t')
		case 'v':
			dst = append(dst, '\v')
		case 'x':
			v, n := 0, 0
			for n < 2 && i+1 < len(raw) && hexDigit(raw[i+1]) >= 0 {
				i++
				v = v<<4 | hexDigit(raw[i])
				n++
			}
			if n == 0 {
				dst = append(dst, 'x') // as PostgreSQL reads it: \x without digits is x
			} else {
				dst = append(dst, byte(v))
			}
		case '0', '1', '2', '3', '4', '5', '6', '7':
			v := int(c - '0')
			for n := 1; n < 3 && i+1 < len(raw) && raw[i+1] >= '0' && raw[i+1] <= '7'; n++ {
				i++
				v = v<<3 | int(raw[i]-'0')
			}
			dst = append(dst, byte(v))
		default:
			dst = append(dst, c) // \\ and any other escaped character: itself
		}
	}
	return dst, nil
}

func hexDigit(c byte) int {
	switch {
	case '0' <= c && c <= '9':
		return int(c - '0')
	case 'a' <= c && c <= 'f':
		return int(c-'a') + 10
	case 'A' <= c && c <= 'F':
		return int(c-'A') + 10
	}
	return -1
}

// lineWriter cuts what COPY TO STDOUT writes into lines (rows) and hands
// each to fn; a row may come in several writes.
type lineWriter struct {
	buf []byte
	fn  func(line []byte) error
}

func (w *lineWriter) Write(p []byte) (int, error) {
	n := len(p)
	for len(p) > 0 {
		i := bytes.IndexByte(p, '\n')
		if i < 0 {
			w.buf = append(w.buf, p...)
			break
		}
		line := p[:i]
		if len(w.buf) > 0 {
			w.buf = append(w.buf, line...)
			line = w.buf
		}
		if err := w.fn(line); err != nil {
			return 0, err
		}
		w.buf = w.buf[:0]
		p = p[i+1:]
	}
	return n, nil
}
