package audit

import (
	"bytes"
	"encoding/json"
	"testing"
	"time"
)

func TestRecordHead(t *testing.T) {
	e := sampleEvent()
	e.Schema, e.Table = "public", `we"ird\table`
	rec, _ := Seal(nil, e.AppendBody(nil), Genesis)
	h, ok := RecordHead(rec)
	if schema, table := h.Names(); !ok || !h.CommitTime.Equal(e.CommitTime) || schema != "public" || table != e.Table {
		t.Fatalf("%v %q %q %v", h.CommitTime, schema, table, ok)
	}
	if n := testing.AllocsPerRun(100, func() { RecordHead(rec) }); n != 0 {
		t.Errorf("RecordHead of AppendBody's form allocates %v times", n)
	}
	// Members in another order, or spaced out, are read all the same.
	for _, other := range []string{
		`{"table":"t","schema":"s","commit_time":"2026-01-02T03:04:05.000006Z","id":"x"}`,
		`{ "id": "0", "commit_time": "2026-01-02T03:04:05.000006Z", "schema": "s", "table": "t" }`,
		`{"id":"0","lsn":"0/0","commit_lsn":"0/0","xid":1,"commit_time":"2026-01-02T03:04:05.000006Z","database":"d","table":"t","schema":"s"}`,
	} {
		h, ok := RecordHead([]byte(other))
		schema, table := h.Names()
		if !ok || !h.CommitTime.Equal(time.Date(2026, 1, 2, 3, 4, 5, 6000, time.UTC)) || schema != "s" || table != "t" {
			t.Errorf("%s: %v %q %q %v", other, h.CommitTime, schema, table, ok)
		}
	}
	for _, bad := range []string{
		`{"id":"x"}`,
		`{"commit_time":"2026-01-02T03:04:05Z","schema":"s","table":null}`,
		`{"commit_time":"2026-02-30T03:04:05.000000Z","schema":"s","table":"t"}`,
		`{"commit_time":"2026-01-02T03:04:05Z","schema":"s","table":"t"`,
		string(rec[:40]),
	} {
		if _, ok := RecordHead([]byte(bad)); ok {
			t.Errorf("read a head of %s", bad)
		}
	}
}

func TestLinks(t *testing.T) {
	prev := Hash{1, 2, 3}
	rec, h := Seal(nil, sampleEvent().AppendBody(nil), prev)
	if p, got, ok := Links(rec); !ok || p != prev || got != h {
		t.Fatalf("Links: %v %x %x", ok, p, got)
	}
	for _, bad := range [][]byte{rec[:len(rec)-1], rec[len(rec)-sealTailLen+1:], bytes.Replace(rec, []byte(`"hash"`), []byte(`"hasH"`), 1)} {
		if _, _, ok := Links(bad); ok {
			t.Errorf("Links of %s", bad)
		}
	}
}

// refHead is what encoding/json reads of a record's head; unique is false
// when a member name occurs twice (where RecordHead may read the first).
func refHead(b []byte) (at time.Time, schema, table string, ok, unique bool) {
	var m map[string]json.RawMessage
	if json.Unmarshal(b, &m) != nil {
		return
	}
	unique = uniqueNames(b)
	for _, n := range []string{"commit_time", "schema", "table"} {
		if !bytes.HasPrefix(m[n], []byte(`"`)) {
			return
		}
	}
	ok = json.Unmarshal(m["commit_time"], &at) == nil && json.Unmarshal(m["schema"], &schema) == nil && json.Unmarshal(m["table"], &table) == nil
	return
}

func uniqueNames(b []byte) bool {
	dec := json.NewDecoder(bytes.NewReader(b))
	if _, err := dec.Token(); err != nil {
		return false
	}
	seen := map[string]bool{}
	for dec.More() {
		t, err := dec.Token()
		if err != nil {
			return false
		}
		var skip json.RawMessage
		if seen[t.(string)] || dec.Decode(&skip) != nil {
			return false
		}
		seen[t.(string)] = true
	}
	return true
}

func sameHead(h Head, at time.Time, schema, table string) bool {
	s, tb := h.Names()
	_, off1 := h.CommitTime.Zone()
	_, off2 := at.Zone()
	return h.CommitTime.Equal(at) && off1 == off2 && s == schema && tb == table
}

// RecordHead reads what encoding/json reads, of any JSON object whose
// member names are unique.
func FuzzRecordHead(f *testing.F) {
	rec, _ := Seal(nil, sampleEvent().AppendBody(nil), Genesis)
	f.Add(rec)
	f.Add([]byte(`{"id":"0","lsn":"0/0","commit_lsn":"0/0","xid":1,"commit_time":"2026-01-01T00:00:00Z","database":"a\u0022","schema":"\\","table":"t",`))
	f.Add([]byte(`{"table":"t","schema":"s\ud800","commit_time":"2026-01-02T03:04:05.000006+02:00"}`))
	f.Add([]byte(`{"commit_time":"2026-02-29T00:00:00.000000Z","schema":"","table":"\u00e9"}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		h, ok := RecordHead(b)
		at, schema, table, want, unique := refHead(b)
		if ok && (len(h.Schema) < 2 || h.Schema[0] != '"' || h.Schema[len(h.Schema)-1] != '"' || len(h.Table) < 2 || h.Table[0] != '"' || h.Table[len(h.Table)-1] != '"') {
			t.Fatalf("%q: names are no JSON strings: %q %q", b, h.Schema, h.Table)
		}
		if !unique {
			return // not JSON, or a name twice: the canonical form is read from its first members
		}
		if ok != want || ok && !sameHead(h, at, schema, table) {
			s, tb := h.Names()
			t.Fatalf("%q: RecordHead %v %q %q %v; encoding/json %v %q %q %v", b, h.CommitTime, s, tb, ok, at, schema, table, want)
		}
	})
}

// Every event AppendBody encodes has a head, the one encoding/json reads.
func FuzzRecordHeadOfEvent(f *testing.F) {
	f.Add("odoo", "public", "sale_order", int64(1795786473559831))
	f.Add("d\x00", "s\xff", `t"\`, int64(-62135596800000000))
	f.Fuzz(func(t *testing.T, database, schema, table string, micros int64) {
		e := sampleEvent()
		e.Database, e.Schema, e.Table, e.CommitTime = database, schema, table, time.UnixMicro(micros)
		if y := e.CommitTime.UTC().Year(); y < 0 || y > 9999 {
			return // no RFC 3339 time
		}
		rec, _ := Seal(nil, e.AppendBody(nil), Genesis)
		h, ok := RecordHead(rec)
		at, s, tb, want, _ := refHead(rec)
		if !ok || !want || !sameHead(h, at, s, tb) || !h.CommitTime.Equal(e.CommitTime) {
			t.Fatalf("%q: %v %v; encoding/json %v %q %q %v", rec, h, ok, at, s, tb, want)
		}
		if _, ok := canonicalHead(rec); !ok {
			t.Fatalf("%q: not read in AppendBody's form", rec)
		}
	})
}

func BenchmarkRecordHead(b *testing.B) {
	rec, _ := Seal(nil, sampleEvent().AppendBody(nil), Genesis)
	for b.Loop() {
		if _, ok := RecordHead(rec); !ok {
			b.Fatal("no head")
		}
	}
}
