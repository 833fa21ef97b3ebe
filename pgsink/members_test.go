package pgsink

import (
	"encoding/json"
	"maps"
	"testing"
)

func TestMembersSplitsARecord(t *testing.T) {
	rec := `{"id":"0000000001A2B3C4-00000001","xid":42,"database":"erp","schema":"public","table":"t","op":"update",` +
		`"key":{"id":7},"before":{"id":7,"s":"a\"},{[b"},"after":{"id":7,"s":"x\\","n":[1,{"q":"]}"}]},` +
		`"model":null,"flags":[],"actor":{"login":"\u00e9l\u00e8ve","user_id":2},"prev_hash":"00","hash":"11"}`
	got, err := members([]byte(rec))
	if err != nil {
		t.Fatal(err)
	}
	var want map[string]json.RawMessage
	if err := json.Unmarshal([]byte(rec), &want); err != nil {
		t.Fatal(err)
	}
	if _, ok := splitObject([]byte(rec)); !ok {
		t.Error("a record of the store's shape was left to json.Unmarshal")
	}
	if !maps.EqualFunc(got, want, func(a, b json.RawMessage) bool { return string(a) == string(b) }) {
		t.Fatalf("members = %q\nwant %q", got, want)
	}
	// What it does not take apart, json.Unmarshal decides.
	for _, in := range []string{`{ "a":1}`, `{"a\u0041":1}`, `{"a":1,"a":2}`} {
		m, err := members([]byte(in))
		if err != nil || len(m) != 1 {
			t.Errorf("members(%s) = %v, %v", in, m, err)
		}
	}
	for _, bad := range []string{``, `{`, `{"a":1`, `{"a":}`, `{"a":"x}`, `[1]`, `{"a":1}x`, `{"a":{"b":1}`} {
		if m, err := members([]byte(bad)); err == nil {
			t.Errorf("members(%q) = %v, want an error", bad, m)
		}
	}
}

// Whatever the fast split accepts of valid JSON, it splits as
// json.Unmarshal does; and nothing makes it panic.
func FuzzMembers(f *testing.F) {
	for _, s := range []string{`{}`, `{"a":1,"b":"x\"y","c":{"d":[1,"]"]}}`, `{"k":null,"v":true}`, `{"a":"\u0000"}`} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		m, ok := splitObject(b)
		if !ok || !json.Valid(b) {
			members(b)
			return
		}
		var want map[string]json.RawMessage
		if err := json.Unmarshal(b, &want); err != nil {
			return // valid JSON but not an object of members
		}
		if !maps.EqualFunc(m, want, func(a, b json.RawMessage) bool { return string(a) == string(b) }) {
			t.Fatalf("split %q\n = %q\nwant %q", b, m, want)
		}
	})
}
