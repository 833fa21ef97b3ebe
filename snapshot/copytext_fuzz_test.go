package snapshot

import (
	"bytes"
	"testing"
)

// copyEscape escapes a value as PostgreSQL's COPY TO (text format) does.
func copyEscape(v []byte) []byte {
	var b []byte
	for _, c := range v {
		switch c {
		case '\\':
			b = append(b, `\\`...)
		case '\b':
			b = append(b, `\b`...)
		case '\f':
			b = append(b, `\f`...)
		case '\n':
			b = append(b, `\n`...)
		case '\r':
			b = append(b, `\r`...)
		case '\t':
			b = append(b, `\t`...)
		case '\v':
			b = append(b, `\v`...)
		default:
			b = append(b, c)
		}
	}
	return b
}

// FuzzCopyText: whatever a value holds, a COPY line of it cut into writes
// at any place splits, unescapes and reads back exactly; and any raw field
// (the database's bytes are untrusted) is unescaped or refused, never a
// panic.
func FuzzCopyText(f *testing.F) {
	for _, s := range []string{"", "plain", "a\tb\nc\\d", `\N`, "\x00\xff\b\f\v\r", `\x41\101\q`, "trailing\\"} {
		f.Add([]byte(s), []byte("x\ty"), uint8(3))
	}
	f.Fuzz(func(t *testing.T, v, other []byte, cut uint8) {
		if _, err := unescape(nil, v); err != nil && !bytes.HasSuffix(v, []byte{'\\'}) {
			t.Fatalf("unescape(%q): %v", v, err)
		}
		line := append(append(append(copyEscape(v), '\t'), copyEscape(other)...), '\n')
		var got [][]byte
		w := &lineWriter{fn: func(l []byte) error {
			for _, raw := range splitFields(l, nil) {
				val, err := unescape(nil, raw)
				if err != nil {
					return err
				}
				got = append(got, val)
			}
			return nil
		}}
		at := int(cut) % len(line)
		if _, err := w.Write(line[:at]); err != nil {
			t.Fatal(err)
		}
		if _, err := w.Write(line[at:]); err != nil {
			t.Fatal(err)
		}
		if len(got) != 2 || !bytes.Equal(got[0], v) || !bytes.Equal(got[1], other) {
			t.Fatalf("%q and %q read back as %q", v, other, got)
		}
	})
}

// FuzzParseVisibility: pg_current_snapshot()'s text is parsed or refused,
// never a panic; what is parsed says xmin ≤ every xip < xmax.
func FuzzParseVisibility(f *testing.F) {
	for _, s := range []string{"740:745:740,742", "3:3:", "1:2", "x:y:z", "5:4:", "10:20:25"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		v, err := parseVisibility(s)
		if err != nil {
			return
		}
		for _, x := range v.Xip {
			if x < v.Xmin || x >= v.Xmax {
				t.Fatalf("%q parsed to %+v: an xip outside [xmin, xmax)", s, v)
			}
		}
	})
}
