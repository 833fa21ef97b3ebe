package snapshot

import (
	"slices"
	"testing"
)

// COPY's text escapes are undone exactly; \N alone is NULL, anything else
// holding it is text.
func TestUnescape(t *testing.T) {
	for _, c := range []struct{ raw, want string }{
		{`plain`, "plain"},
		{`a\tb\nc\rd\\e`, "a\tb\nc\rd\\e"},
		{`\b\f\v`, "\b\f\v"},
		{`\101\0\7x`, "A\x00\x07x"},
		{`\x41\x4g\xz`, "A\x04gxz"},
		{`\\N`, `\N`},
		{`\N\N`, `NN`},
		{`é✓`, "é✓"},
	} {
		got, err := unescape(nil, []byte(c.raw))
		if err != nil || string(got) != c.want {
			t.Errorf("unescape(%q) = %q, %v; want %q", c.raw, got, err, c.want)
		}
	}
	if _, err := unescape(nil, []byte(`x\`)); err == nil {
		t.Error("a lone trailing backslash is accepted")
	}
	if !isNull([]byte(`\N`)) || isNull([]byte(`\\N`)) || isNull([]byte(`N`)) {
		t.Error("isNull")
	}
	fields := splitFields([]byte("a\t\\N\t\tb\\tc"), nil)
	if !slices.Equal(stringsOf(fields), []string{"a", `\N`, "", `b\tc`}) {
		t.Errorf("splitFields: %q", fields)
	}
}

func stringsOf(b [][]byte) []string {
	var s []string
	for _, x := range b {
		s = append(s, string(x))
	}
	return s
}

func TestParseVisibility(t *testing.T) {
	v, err := parseVisibility("10:20:12,15")
	if err != nil || v.Xmin != 10 || v.Xmax != 20 || !slices.Equal(v.Xip, []uint64{12, 15}) {
		t.Fatalf("%+v %v", v, err)
	}
	if !v.Sees(11) || v.Sees(12) || v.Sees(20) || v.Sees(25) || !v.Sees(0) {
		t.Error("Sees disagrees with the snapshot")
	}
	if v, err := parseVisibility("5:5:"); err != nil || len(v.Xip) != 0 {
		t.Fatalf("%+v %v", v, err)
	}
	for _, bad := range []string{"", "1:2", "a:2:", "1:2:x"} {
		if _, err := parseVisibility(bad); err == nil {
			t.Errorf("%q parsed", bad)
		}
	}
}
