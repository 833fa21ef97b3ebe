package decoder

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"
)

func TestValues(t *testing.T) {
	for _, tc := range []struct {
		typ  uint32
		v    val
		want string
	}{
		{oidBool, txt("t"), `true`},
		{oidBool, txt("f"), `false`},
		{oidBool, txt("true"), `"true"`},
		{oidBool, null, `null`},
		{oidInt2, txt("-32768"), `-32768`},
		{oidInt4, txt("0"), `0`},
		{oidInt8, txt("9223372036854775807"), `9223372036854775807`},
		{oidOID, txt("4294967295"), `4294967295`},
		{oidInt4, txt(""), `""`},
		{oidInt4, txt("12abc"), `"12abc"`},
		{oidInt4, txt("007"), `"007"`},
		{oidInt4, null, `null`},
		{oidFloat8, txt("1.5"), `1.5`},
		{oidFloat8, txt("-0"), `-0`},
		{oidFloat8, txt("1e+20"), `1e+20`},
		{oidFloat8, txt("1.2345678901234567e-05"), `1.2345678901234567e-05`},
		{oidFloat4, txt("3.4028235e+38"), `3.4028235e+38`},
		{oidFloat8, txt("NaN"), `"NaN"`},
		{oidFloat8, txt("Infinity"), `"Infinity"`},
		{oidFloat4, txt("-Infinity"), `"-Infinity"`},
		{oidFloat8, txt(".5"), `".5"`},
		{oidFloat8, txt("1."), `"1."`},
		{oidNumeric, txt("120.00"), `"120.00"`},
		{oidNumeric, txt("NaN"), `"NaN"`},
		{oidNumeric, txt("-1e+400"), `"-1e+400"`},
		{oidJSONB, txt(`{"en_US": "Desk", "fr_FR": "Bureau"}`), `{"en_US": "Desk", "fr_FR": "Bureau"}`},
		{oidJSONB, txt(`[1, 2.5, null, true]`), `[1, 2.5, null, true]`},
		{oidJSON, txt(`"just a string"`), `"just a string"`},
		{oidJSON, txt("{\n  \"a\": 1,\r\n  \"b\": \"x\\ny\"\n}"), `{   "a": 1,    "b": "x\ny" }`},
		{oidJSON, txt(`{"a": 1`), `"{\"a\": 1"`},
		{oidJSON, txt(""), `""`},
		{oidJSON, txt("\"\xff\""), `"\"\ufffd\""`},
		{oidJSONB, null, `null`},
		{oidText, txt(`say "hi"` + "\n\ttab\\"), `"say \"hi\"\n\ttab\\"`},
		{oidText, txt("unicode: é ✓ 😀"), `"unicode: é ✓ 😀"`},
		{oidText, txt("bad \xff\xfe utf-8"), `"bad \ufffd\ufffd utf-8"`},
		{oidText, txt("\x00\x1f\u2028"), `"\u0000\u001f\u2028"`},
		{oidText, txt(""), `""`},
		{oidVarchar, txt("x"), `"x"`},
		{oidTimestamp, txt("2026-11-23 13:34:33.559831"), `"2026-11-23 13:34:33.559831"`},
		{oidTimestampTZ, txt("2026-11-23 14:34:33.559831+01"), `"2026-11-23 14:34:33.559831+01"`},
		{oidDate, txt("infinity"), `"infinity"`},
		{oidUUID, txt("a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11"), `"a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11"`},
		{oidBytea, txt(`\xdeadbeef`), `"\\xdeadbeef"`},
		{oidInt4Array, txt("{1,2,NULL}"), `"{1,2,NULL}"`},
		{90001, txt("happy"), `"happy"`}, // an enum: a user OID
		{90002, txt("42"), `"42"`},       // a domain over int4: a user OID too
		{oidInt4, bin("\x00\x00\x00\x2a"), `"\\x0000002a"`},
		{oidText, bin(""), `"\\x"`},
	} {
		d := New("db", nil)
		h := &recorder{t: t}
		feed(t, d, h, 1,
			mRelation(1, "public", "t", 'd', col{"id", oidInt4, true}, col{"v", tc.typ, false}),
			mBegin(0x10, commitTime, 1),
			mInsert(1, txt("1"), tc.v))
		e := h.events[0]
		got, ok := e.After.Get("v")
		if !ok || string(got) != tc.want {
			t.Errorf("type %d %q: got %s, want %s", tc.typ, tc.v.data, got, tc.want)
		}
		if !json.Valid(got) {
			t.Errorf("type %d %q: %s is not JSON", tc.typ, tc.v.data, got)
		}
		// The value survives the record: the whole record parses and the
		// value reads back as it was encoded.
		var rec struct {
			After map[string]json.RawMessage `json:"after"`
		}
		if err := json.Unmarshal(seal(e), &rec); err != nil {
			t.Fatalf("record: %v", err)
		}
		if !jsonEqual(t, rec.After["v"], got) {
			t.Errorf("type %d: record has %s, event %s", tc.typ, rec.After["v"], got)
		}
	}
}

func jsonEqual(t *testing.T, a, b []byte) bool {
	var x, y any
	if json.Unmarshal(a, &x) != nil || json.Unmarshal(b, &y) != nil {
		return false
	}
	xa, _ := json.Marshal(x)
	ya, _ := json.Marshal(y)
	return string(xa) == string(ya)
}

// Text values are exactly PostgreSQL's text output, for valid UTF-8.
func TestTextRoundTrip(t *testing.T) {
	for _, s := range []string{"", "a\"b\\c", "line1\nline2\r\n", "tab\there", "€100", "\u2028\u2029", "emoji 😀", "{\"not\": \"json\"}"} {
		var got string
		if err := json.Unmarshal(appendValue(nil, oidText, 't', []byte(s)), &got); err != nil || got != s {
			t.Errorf("%q: got %q, %v", s, got, err)
		}
	}
}

func TestIsJSONNumber(t *testing.T) {
	for s, want := range map[string]bool{
		"0": true, "-0": true, "1": true, "-12": true, "1.5": true, "0.001": true, "1e5": true, "1E5": true,
		"1e+20": true, "1e-05": true, "-1.5E-3": true, "9223372036854775807": true,
		"": false, "-": false, "01": false, "+1": false, "1.": false, ".5": false, "1e": false, "1e+": false,
		"NaN": false, "Infinity": false, "-Infinity": false, "1 ": false, " 1": false, "0x10": false,
		"1.5.5": false, "--1": false, "1e5e5": false, "١": false,
	} {
		if got := isJSONNumber([]byte(s)); got != want {
			t.Errorf("isJSONNumber(%q) = %v", s, got)
		}
		if want && !json.Valid([]byte(s)) {
			t.Errorf("%q accepted but not JSON", s)
		}
	}
}

// appendValue must never allocate beyond growing its buffer.
func TestAppendValueAllocs(t *testing.T) {
	buf := make([]byte, 0, 1024)
	vals := []struct {
		typ  uint32
		data []byte
	}{{oidInt4, []byte("42")}, {oidText, []byte("héllo \"x\"")}, {oidJSONB, []byte(`{"a": [1, 2]}`)},
		{oidFloat8, []byte("NaN")}, {oidBool, []byte("t")}, {oidNumeric, []byte("1.50")}}
	n := testing.AllocsPerRun(100, func() {
		for _, v := range vals {
			buf = appendValue(buf[:0], v.typ, 't', v.data)
		}
	})
	if n != 0 {
		t.Errorf("%v allocations", n)
	}
}

// A big value's room is exact, so its arena is never grown (which would
// copy it, and hold it twice); a small one's is at least its plain length.
func TestValueRoom(t *testing.T) {
	big := []byte(strings.Repeat("line \"quoted\" \\ tab\t ünï\n", exactFrom/20))
	for _, tc := range []struct {
		typ  uint32
		kind byte
		data []byte
	}{
		{oidText, 't', big}, // text, escapes
		{17, 't', append([]byte(`\x`), bytes.Repeat([]byte("c3a9"), exactFrom)...)}, // bytea's text output
		{oidJSONB, 't', append(append([]byte(`{"a":"`), bytes.Repeat([]byte("x"), exactFrom)...), `"}`...)},
		{oidText, 'b', big},
	} {
		got, want := valueRoom(tc.typ, tc.kind, tc.data), len(appendValue(nil, tc.typ, tc.kind, tc.data))
		if got < want || (tc.typ != oidJSONB && got-want > 6) {
			t.Errorf("type %d kind %c, %d bytes: room %d for an encoding of %d", tc.typ, tc.kind, len(tc.data), got, want)
		}
	}
	if got := valueRoom(oidText, 't', []byte("small")); got < len(`"small"`) {
		t.Errorf("room %d for a small value", got)
	}
}
