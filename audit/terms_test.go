package audit

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"reflect"
	"slices"
	"testing"
	"time"
)

func sealed(e *Event) []byte {
	rec, _ := Seal(nil, e.AppendBody(nil), Genesis)
	return rec
}

func termsEqual(a, b Terms) bool {
	return a.Schema == b.Schema && a.Table == b.Table && a.Op == b.Op && a.User == b.User &&
		a.Session == b.Session && slices.EqualFunc(a.Records, b.Records, bytes.Equal) &&
		slices.Equal(a.Flags, b.Flags) && a.CommitTime.Equal(b.CommitTime) &&
		a.CommitTime.Location() == b.CommitTime.Location()
}

func checkTerms(t *testing.T, name string, e *Event) Terms {
	t.Helper()
	want := e.Terms()
	got, err := ParseTerms(sealed(e))
	if err != nil {
		t.Fatalf("%s: ParseTerms: %v\n%s", name, err, sealed(e))
	}
	if !termsEqual(got, want) || !reflect.DeepEqual(got, want) {
		t.Fatalf("%s: ParseTerms\n%+v\nEvent.Terms\n%+v", name, got, want)
	}
	// Carved from buffers already in use, with little room or plenty.
	for _, room := range []int{8, 4096} {
		var carved Terms
		junk := []byte("junk")
		buf := append(make([]byte, 0, len(junk)+room), junk...)
		recs, _ := e.AppendTerms(&carved, [][]byte{junk}, buf)
		if !termsEqual(carved, want) || len(recs) != 1+len(want.Records) || string(recs[0]) != "junk" ||
			string(buf[:4]) != "junk" {
			t.Fatalf("%s: AppendTerms with room %d\n%+v\nEvent.Terms\n%+v", name, room, carved, want)
		}
		if len(carved.Records) != cap(carved.Records) {
			t.Fatalf("%s: Records not capped", name)
		}
		for i := range carved.Records {
			carved.Records[i] = append(carved.Records[i], "appended"...)
		}
		for i, r := range carved.Records {
			if !bytes.Equal(r[:len(r)-8], want.Records[i]) {
				t.Fatalf("%s: appending to a record term changed another", name)
			}
		}
	}
	return want
}

func TestTermsOfEveryKind(t *testing.T) {
	uid := int64(7)
	base := sampleEvent
	cases := []struct {
		name    string
		edit    func(e *Event)
		user    string
		session string
		records [][]byte
		flags   []string
	}{
		{"update", func(e *Event) {}, "alice@example.com", "", [][]byte{RecordTerm("public", "sale_order", KeyValue{"id", "42"})}, nil},
		{"insert", func(e *Event) { e.Op, e.Before = OpInsert, nil }, "alice@example.com", "",
			[][]byte{RecordTerm("public", "sale_order", KeyValue{Text: "42"})}, nil},
		{"delete", func(e *Event) { e.Op, e.After, e.BeforeSource = OpDelete, nil, BeforeWAL }, "alice@example.com", "",
			[][]byte{RecordTerm("public", "sale_order", KeyValue{Text: "42"})}, nil},
		{"truncate", func(e *Event) { e.Op, e.Key, e.Before, e.After = OpTruncate, nil, nil, nil }, "alice@example.com", "", nil, nil},
		{"snapshot", func(e *Event) { e.Op, e.Before, e.Actor = OpSnapshot, nil, Actor{} }, "", "",
			[][]byte{RecordTerm("public", "sale_order", KeyValue{Text: "42"})}, nil},
		{"key changed", func(e *Event) { e.Key = Row{{"id", []byte("43")}}; e.After[0].Value = []byte("43") }, "alice@example.com", "",
			[][]byte{RecordTerm("public", "sale_order", KeyValue{Text: "43"}), RecordTerm("public", "sale_order", KeyValue{Text: "42"})}, nil},
		{"key changed, default identity", func(e *Event) {
			e.Key, e.Before, e.BeforeSource = Row{{"id", []byte("43")}}, Row{{"id", []byte("42")}}, BeforeWAL
		}, "alice@example.com", "",
			[][]byte{RecordTerm("public", "sale_order", KeyValue{Text: "43"}), RecordTerm("public", "sale_order", KeyValue{Text: "42"})}, nil},
		{"update without before", func(e *Event) { e.Before, e.Changed = nil, nil }, "alice@example.com", "",
			[][]byte{RecordTerm("public", "sale_order", KeyValue{Text: "42"})}, nil},
		{"before without the key", func(e *Event) { e.Before = Row{{"state", []byte(`"draft"`)}} }, "alice@example.com", "",
			[][]byte{RecordTerm("public", "sale_order", KeyValue{Text: "42"})}, nil},
		{"unattributed", func(e *Event) { e.Actor = Actor{UserVia: "none", SessionVia: "none"} }, "", "",
			[][]byte{RecordTerm("public", "sale_order", KeyValue{Text: "42"})}, nil},
		{"user id only, session, flags", func(e *Event) {
			e.Actor = Actor{UserID: &uid, UserVia: "row_user", SessionID: "s-1", SessionVia: "same_tx",
				Candidates: &Candidates{Users: []CandidateUser{{ID: 3}}}}
			e.Flags = []string{"orm_bypass", "x"}
		}, "#7", "s-1", [][]byte{RecordTerm("public", "sale_order", KeyValue{Text: "42"})}, []string{"orm_bypass", "x"}},
		{"composite key, strings", func(e *Event) {
			e.Schema, e.Table = `my"schema`, "t.x"
			e.Key = Row{{"b", []byte(`"x\"y\u00e9"`)}, {"a", []byte("-1.5")}, {"c", []byte("true")}}
			e.Before = Row{{"c", []byte("true")}, {"a", []byte("-1.5")}, {"b", []byte(`"x\"y\u00e9"`)}}
		}, "alice@example.com", "", [][]byte{RecordTerm(`my"schema`, "t.x", KeyValue{"a", "-1.5"}, KeyValue{"b", `x"yé`}, KeyValue{"c", "true"})}, nil},
		{"composite key changed", func(e *Event) {
			e.Key = Row{{"b", []byte(`"y"`)}, {"a", []byte("1")}}
			e.Before = Row{{"a", []byte("1")}, {"b", []byte(`"x"`)}, {"z", []byte("null")}}
		}, "alice@example.com", "", [][]byte{
			RecordTerm("public", "sale_order", KeyValue{"a", "1"}, KeyValue{"b", "y"}),
			RecordTerm("public", "sale_order", KeyValue{"a", "1"}, KeyValue{"b", "x"}),
		}, nil},
		{"null key value", func(e *Event) { e.Key = Row{{"id", nil}}; e.Before = nil }, "alice@example.com", "",
			[][]byte{RecordTerm("public", "sale_order", KeyValue{Text: ""})}, nil},
		{"empty key", func(e *Event) { e.Key = Row{} }, "alice@example.com", "", nil, nil},
		{"nanoseconds and a zone", func(e *Event) {
			e.CommitTime = time.Date(2026, 1, 2, 3, 4, 5, 999_999_999, time.FixedZone("x", 3600))
		}, "alice@example.com", "", [][]byte{RecordTerm("public", "sale_order", KeyValue{Text: "42"})}, nil},
	}
	for _, c := range cases {
		e := base()
		c.edit(e)
		got := checkTerms(t, c.name, e)
		if got.User != c.user || got.Session != c.session || !slices.EqualFunc(got.Records, c.records, bytes.Equal) ||
			!slices.Equal(got.Flags, c.flags) || got.Op != e.Op || got.Schema != e.Schema || got.Table != e.Table {
			t.Errorf("%s: terms %+v", c.name, got)
		}
		if !got.CommitTime.Equal(e.CommitTime.Truncate(time.Microsecond)) || got.CommitTime.Location() != time.UTC {
			t.Errorf("%s: commit time %v for %v", c.name, got.CommitTime, e.CommitTime)
		}
	}
}

func TestParseTermsRefusesChainRecordsAndJunk(t *testing.T) {
	chain, _ := Seal(nil, []byte(`{"id":"0000000000000000-000000","op":"genesis","commit_time":"2026-01-01T00:00:00.000000Z","nonce":"ab",`), Genesis)
	if _, err := ParseTerms(chain); !errors.Is(err, ErrNotRowEvent) {
		t.Fatalf("chain record: %v", err)
	}
	good := sealed(sampleEvent())
	for _, bad := range [][]byte{nil, []byte("{"), good[:len(good)-1], append(append([]byte(nil), good...), 'x'),
		bytes.Replace(good, []byte(`"op":"update"`), []byte(`"op":1`), 1),
		bytes.Replace(good, []byte(`"user_id":6`), []byte(`"user_id":6.5`), 1),
		bytes.Replace(good, []byte(`"commit_time":"2026`), []byte(`"commit_time":"x2026`), 1),
		bytes.Replace(good, []byte(`"flags":[]`), []byte(`"flags":[1]`), 1),
		bytes.Replace(good, []byte(`"key":{"id":42}`), []byte(`"key":[42]`), 1),
	} {
		if _, err := ParseTerms(bad); err == nil {
			t.Errorf("accepted %s", bad)
		}
	}
}

// The record term follows history's matching rule: a one-column key by its
// value alone (42 and "42" alike), a composite key by its sorted columns.
func TestRecordTerm(t *testing.T) {
	ref := func(s string) RecordRef {
		r, err := ParseRecordRef(s)
		if err != nil {
			t.Fatal(err)
		}
		return r
	}
	e := sampleEvent()
	terms := e.Terms()
	if !bytes.Equal(ref("sale_order:42").Term(), terms.Records[0]) || !bytes.Equal(ref(`public.sale_order:{"id":42}`).Term(), terms.Records[0]) {
		t.Fatal("a one-column key is not found by its value")
	}
	if bytes.Equal(ref("sale_order:4").Term(), terms.Records[0]) || bytes.Equal(ref("erp.sale_order:42").Term(), terms.Records[0]) {
		t.Fatal("another record has the same term")
	}
	if !bytes.Equal(ref(`t:{"b":"x","a":1}`).Term(), RecordRef{"public", "t", RecordKey{{"b", "x"}, {"a", "1"}}}.Term()) {
		t.Fatal("Term depends on the order of the columns")
	}
	// Lengths are part of the term: no two splits of the same bytes agree.
	if bytes.Equal(RecordTerm("ab", "c", KeyValue{Text: "1"}), RecordTerm("a", "bc", KeyValue{Text: "1"})) ||
		bytes.Equal(RecordTerm("a", "b", KeyValue{"x", "1"}, KeyValue{"y", "2"}), RecordTerm("a", "b", KeyValue{"x", "12"}, KeyValue{"y", ""})) {
		t.Fatal("ambiguous terms")
	}
	if k := RecordTermKey(RecordTerm("s", "tab", KeyValue{"a", "1"}, KeyValue{"b", "2"})); !bytes.Equal(k, RecordTermKey(RecordTerm("other", "t", KeyValue{"a", "1"}, KeyValue{"b", "2"}))) || len(k) == 0 {
		t.Fatalf("RecordTermKey depends on the table: %x", k)
	}
	if RecordTermKey([]byte{5, 'a'}) != nil || RecordTermKey(nil) != nil {
		t.Fatal("RecordTermKey of junk")
	}
	rec := sealed(e)
	for s, want := range map[string]bool{"sale_order:42": true, `sale_order:{"id":"42"}`: true, `sale_order:{"code":"42"}`: false,
		"sale_order:43": false, "x.sale_order:42": false} {
		if got, err := ref(s).Matches(rec); err != nil || got != want {
			t.Errorf("%s matches: %v %v", s, got, err)
		}
	}
	e.Key, e.After[0].Value = Row{{"id", []byte("43")}}, []byte("43")
	for s, want := range map[string]bool{"sale_order:42": true, "sale_order:43": true, "sale_order:44": false} {
		if got, err := ref(s).Matches(sealed(e)); err != nil || got != want {
			t.Errorf("key changed: %s matches: %v %v", s, got, err)
		}
	}
}

// refTerms is ParseTerms written the slow way, with encoding/json.
func refTerms(rec []byte) (Terms, error) {
	var t Terms
	var m map[string]json.RawMessage
	if err := json.Unmarshal(rec, &m); err != nil {
		return t, err
	}
	str := func(raw json.RawMessage) (string, error) {
		var s *string
		err := json.Unmarshal(orNull(raw), &s)
		if s == nil {
			return "", err
		}
		return *s, err
	}
	var err error
	var op string
	if op, err = str(m["op"]); err != nil {
		return t, err
	}
	if _, ok := m["commit_time"]; !ok || m["op"] == nil {
		return t, errors.New("missing")
	}
	if err := json.Unmarshal(m["commit_time"], &t.CommitTime); err != nil {
		return t, err
	}
	if t.Op, err = ParseOp(op); err != nil {
		return t, ErrNotRowEvent
	}
	if t.Schema, err = str(m["schema"]); err != nil {
		return t, err
	}
	if t.Table, err = str(m["table"]); err != nil {
		return t, err
	}
	var actor map[string]json.RawMessage
	if err := json.Unmarshal(orNull(m["actor"]), &actor); err != nil {
		return t, err
	}
	var login string
	if login, err = str(actor["login"]); err != nil {
		return t, err
	}
	if t.Session, err = str(actor["session_id"]); err != nil {
		return t, err
	}
	var id *int64
	if err := json.Unmarshal(orNull(actor["user_id"]), &id); err != nil {
		return t, err
	}
	t.User = UserTerm(login, id)
	if err := json.Unmarshal(orNull(m["flags"]), &t.Flags); err != nil {
		return t, err
	}
	if len(t.Flags) == 0 {
		t.Flags = nil
	}
	members := func(raw json.RawMessage) ([]KeyValue, error) {
		if string(orNull(raw)) == "null" {
			return nil, nil
		}
		dec := json.NewDecoder(bytes.NewReader(raw))
		if tok, err := dec.Token(); err != nil || tok != json.Delim('{') {
			return nil, fmt.Errorf("not an object")
		}
		var kvs []KeyValue
		for dec.More() {
			tok, err := dec.Token()
			if err != nil {
				return nil, err
			}
			var v json.RawMessage
			if err := dec.Decode(&v); err != nil {
				return nil, err
			}
			text, _ := KeyText(v)
			kvs = append(kvs, KeyValue{tok.(string), text})
		}
		return kvs, nil
	}
	key, err := members(m["key"])
	if err != nil || len(key) == 0 {
		return t, err
	}
	var prev RecordKey
	if t.Op == OpUpdate {
		before, err := members(m["before"])
		if err != nil {
			return t, err
		}
		if before != nil {
			for _, k := range key {
				i := slices.IndexFunc(before, func(b KeyValue) bool { return b.Column == k.Column })
				if i < 0 {
					prev = nil
					break
				}
				prev = append(prev, KeyValue{k.Column, before[i].Text})
			}
		}
	}
	t.Records = recordTerms(t.Schema, t.Table, key, prev)
	return t, nil
}

func orNull(raw json.RawMessage) json.RawMessage {
	if raw == nil {
		return json.RawMessage("null")
	}
	return raw
}

// FuzzParseTerms: ParseTerms never panics and agrees with a reading of the
// record by encoding/json wherever that reading succeeds.
func FuzzParseTerms(f *testing.F) {
	e := sampleEvent()
	f.Add(sealed(e))
	e.Key, e.Flags = Row{{"b", []byte(`"x\u00e9\"\\"`)}, {"a", []byte("-1.5e3")}}, []string{"orm_bypass"}
	e.Actor.SessionID = "s\tess"
	f.Add(sealed(e))
	e.Op, e.Key, e.Before, e.Actor = OpTruncate, nil, nil, Actor{}
	f.Add(sealed(e))
	f.Add([]byte(`{"op":"insert","commit_time":"2026-01-01T00:00:00Z","key":{"id":1,"id":2},"actor":null,"flags":null}`))
	f.Add([]byte(`{"op":"update","commit_time":null,"key":{"a":[1,{"x":null}]},"before":{"a":true},"sch\u0065ma":"s"}`))
	f.Fuzz(func(t *testing.T, rec []byte) {
		got, err := ParseTerms(rec)
		want, werr := refTerms(rec)
		if werr != nil {
			return
		}
		if err != nil {
			if errors.Is(werr, ErrNotRowEvent) {
				return
			}
			t.Fatalf("ParseTerms: %v; encoding/json reads %+v\n%q", err, want, rec)
		}
		if !termsEqual(got, want) {
			t.Fatalf("ParseTerms\n%+v\nencoding/json\n%+v\n%q", got, want, rec)
		}
	})
}

// FuzzEventTerms: for any event, Event.Terms equals ParseTerms of its
// record.
func FuzzEventTerms(f *testing.F) {
	f.Add("public", "t", uint8(2), "id", `42`, "id", `41`, "alice", int64(3), "s", "f", int64(1700000000123456789))
	f.Add("s", "t", uint8(1), "a", `"x\u00e9"`, "b", `null`, "", int64(-1), "", "", int64(0))
	f.Fuzz(func(t *testing.T, schema, table string, op uint8, k1, v1, k2, v2, login string, uid int64, session, flag string, ns int64) {
		e := &Event{CommitLSN: 0x10, Ordinal: 1, Schema: schema, Table: table, Op: Op(op%5 + 1),
			CommitTime: time.Unix(0, ns)}
		valid := func(v string) []byte {
			if json.Valid([]byte(v)) {
				var c bytes.Buffer
				if json.Compact(&c, []byte(v)) == nil {
					return c.Bytes()
				}
			}
			return AppendString(nil, v)
		}
		if e.Op != OpTruncate {
			e.Key = Row{{k1, valid(v1)}}
			e.Before = Row{{k1, valid(v2)}, {k2, valid(v1)}}
			if ns%2 == 0 && k1 != k2 {
				e.Key = append(e.Key, Column{k2, valid(v2)}) // a composite key
			}
		}
		if uid >= 0 {
			e.Actor.UserID = &uid
		}
		e.Actor.Login, e.Actor.SessionID = login, session
		if flag != "" {
			e.Flags = []string{flag}
		}
		checkTerms(t, "fuzz", e)
	})
}

func BenchmarkEventTerms(b *testing.B) {
	e := sampleEvent()
	b.ReportAllocs()
	for b.Loop() {
		t := e.Terms()
		if len(t.Records) != 1 {
			b.Fatal(t)
		}
	}
}

func BenchmarkParseTerms(b *testing.B) {
	rec := sealed(sampleEvent())
	b.ReportAllocs()
	b.SetBytes(int64(len(rec)))
	for b.Loop() {
		if _, err := ParseTerms(rec); err != nil {
			b.Fatal(err)
		}
	}
}
