package audit

import (
	"slices"
	"strings"
	"testing"
	"unicode/utf8"
)

func TestParseRef(t *testing.T) {
	for _, c := range []struct {
		in            string
		schema, table string
		key           RecordKey
	}{
		{"public.sale_order:42", "public", "sale_order", RecordKey{{Text: "42"}}},
		{"res_partner:abc", "public", "res_partner", RecordKey{{Text: "abc"}}},
		{"res_partner: abc ", "public", "res_partner", RecordKey{{Text: " abc "}}},
		{"erp.t:a:b", "erp", "t", RecordKey{{Text: "a:b"}}},
		{"t:2026-11-23 13:00:00", "public", "t", RecordKey{{Text: "2026-11-23 13:00:00"}}},
		{`public.t:{"a":1,"b":"x"}`, "public", "t", RecordKey{{"a", "1"}, {"b", "x"}}},
		{`t:{"b":"x", "a":-1.5}`, "public", "t", RecordKey{{"a", "-1.5"}, {"b", "x"}}},
		{`t:{"ok":true}`, "public", "t", RecordKey{{"ok", "true"}}},
		{`t:{"id":"42"}`, "public", "t", RecordKey{{"id", "42"}}},
		{`"my.schema"."t:x":1`, "my.schema", "t:x", RecordKey{{Text: "1"}}},
		{`"a""b":1`, "public", `a"b`, RecordKey{{Text: "1"}}},
		{`Sale_Order:1`, "public", "Sale_Order", RecordKey{{Text: "1"}}},
	} {
		r, err := ParseRecordRef(c.in)
		if err != nil {
			t.Errorf("%s: %v", c.in, err)
			continue
		}
		if r.Schema != c.schema || r.Table != c.table || !slices.Equal(r.Key, c.key) {
			t.Errorf("%s: got %q.%q %v, want %q.%q %v", c.in, r.Schema, r.Table, r.Key, c.schema, c.table, c.key)
		}
	}
}

func TestParseRefErrors(t *testing.T) {
	for _, c := range []struct{ in, want string }{
		{"", "table name is missing"},
		{"sale_order", "want TABLE:KEY"},
		{"sale_order:", "key after ':' is empty"},
		{":42", "table name is missing"},
		{"public.:42", "table name is missing"},
		{"a.b.c:1", "more than schema.table"},
		{`"t:1`, "without its closing"},
		{`"":1`, "empty quoted name"},
		{`a"b:1`, "quote the whole name"},
		{`"t"x:1`, "want TABLE:KEY"},
		{`t:{"a":1`, "not a JSON object"},
		{`t:{}`, "no column"},
		{`t:{"":1}`, "a column name is empty"},
		{`t:{"a":null}`, "is not a string, a number"},
		{`t:{"a":[1]}`, "is not a string, a number"},
		{`t:{"a":{"b":1}}`, "is not a string, a number"},
		{`t:{"a":1,"a":2}`, `"a" is given twice`},
		{`t:{"a":1} x`, "something follows"},
		{`t:{"a":1}{"b":2}`, "something follows"},
		{`t:{a:1}`, "not a JSON object"},
	} {
		_, err := ParseRecordRef(c.in)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("ParseRecordRef(%q): %v, want an error containing %q", c.in, err, c.want)
		}
	}
}

func TestRefString(t *testing.T) {
	for in, want := range map[string]string{
		"sale_order:42":              "public.sale_order:42",
		"erp.t:x":                    "erp.t:x",
		`"my.schema"."a""b":1`:       `"my.schema"."a""b":1`,
		`t:{"b":"x","a":1}`:          `public.t:{"a":"1","b":"x"}`,
		`"public"."t.x":{"k":"<&>"}`: `public."t.x":{"k":"\u003c\u0026\u003e"}`,
	} {
		if got := ref(t, in).String(); got != want {
			t.Errorf("%s: String %s, want %s", in, got, want)
		}
	}
}

func ref(t *testing.T, s string) RecordRef {
	t.Helper()
	r, err := ParseRecordRef(s)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

// FuzzParseRecordRef: the parser never panics, and what it accepts it prints
// back in a form it reads as the same record.
func FuzzParseRecordRef(f *testing.F) {
	for _, s := range []string{
		"public.sale_order:42", "res_partner:abc", `public.t:{"a":1,"b":"x"}`, `"my.schema"."t:x":1`,
		`"a""b":{"k":"v"}`, "t:a:b", `t:{"a":1,"a":2}`, `t:{"a":1} x`, `t:{"a":"\u00e9\ud800"}`, ":", `"`, `t:{`,
		`t:{"a":true,"b":-0.5e3}`, "a.b.c:1", "t:\x00\xff",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		r, err := ParseRecordRef(s)
		if err != nil {
			return
		}
		if r.Table == "" || r.Schema == "" || len(r.Key) == 0 {
			t.Fatalf("%q: accepted %+v", s, r)
		}
		if !utf8.ValidString(s) {
			return // String cannot print invalid UTF-8 inside JSON
		}
		back, err := ParseRecordRef(r.String())
		if err != nil {
			t.Fatalf("%q: String %q does not parse: %v", s, r.String(), err)
		}
		if back.Schema != r.Schema || back.Table != r.Table || !slices.Equal(back.Key, r.Key) {
			t.Fatalf("%q: String %q reads back as %+v, not %+v", s, r.String(), back, r)
		}
	})
}
