package audit

import (
	"strings"
	"testing"
	"time"
)

// The source member: right after database, only when set, so that an
// event without one encodes (and verifies) as every event did before it.
func TestSourceMember(t *testing.T) {
	e := sampleEvent()
	plain := string(e.AppendBody(nil))
	if strings.Contains(plain, `"source"`) {
		t.Fatalf("unset source encoded: %s", plain)
	}
	e.Source = "erp_a"
	body := e.AppendBody(nil)
	if !strings.Contains(string(body), `,"database":"odoo","source":"erp_a","schema":"public",`) {
		t.Fatalf("source member: %s", body)
	}
	if got := strings.Replace(string(body), `,"source":"erp_a"`, "", 1); got != plain {
		t.Fatalf("source changed more than its member:\n%s\n%s", got, plain)
	}
	rec, h := Seal(nil, body, Genesis)
	if _, _, got, err := Check(rec); err != nil || got != h {
		t.Fatalf("Check: %v", err)
	}
	r, err := ParseRecord(rec)
	if err != nil || r.Source != "erp_a" || r.Database != "odoo" {
		t.Fatalf("read back %+v, %v", r, err)
	}
	if old, _ := ParseRecord([]byte(plain[:len(plain)-1] + "}")); old == nil || old.Source != "" {
		t.Fatalf("old record: %+v", old)
	}
	head, ok := RecordHead(rec)
	if schema, table := head.Names(); !ok || schema != "public" || table != "sale_order" || !head.CommitTime.Equal(e.CommitTime) {
		t.Fatalf("RecordHead: %+v %v", head, ok)
	}
	if _, ok := canonicalHead(rec); !ok {
		t.Fatal("a record with a source is not read in AppendBody's form")
	}
	if n := testing.AllocsPerRun(100, func() { RecordHead(rec) }); n != 0 {
		t.Errorf("RecordHead of a record with a source allocates %v times", n)
	}
	checkTerms(t, "with a source", e)
	buf := make([]byte, 0, 4096)
	if n := testing.AllocsPerRun(100, func() { buf = e.AppendBody(buf[:0]) }); n != 0 {
		t.Errorf("AppendBody with a source allocates %v times", n)
	}
}

// Every event with a source has the head encoding/json reads, in
// AppendBody's form.
func FuzzRecordHeadOfSourcedEvent(f *testing.F) {
	f.Add("erp_a", "public", "sale_order", int64(1795786473559831))
	f.Add("s\"x", "s\xff", `t"\`, int64(0))
	f.Fuzz(func(t *testing.T, source, schema, table string, micros int64) {
		e := sampleEvent()
		e.Source, e.Schema, e.Table, e.CommitTime = source, schema, table, time.UnixMicro(micros)
		if y := e.CommitTime.UTC().Year(); y < 0 || y > 9999 {
			return
		}
		rec, _ := Seal(nil, e.AppendBody(nil), Genesis)
		h, ok := RecordHead(rec)
		at, s, tb, want, _ := refHead(rec)
		if !ok || !want || !sameHead(h, at, s, tb) {
			t.Fatalf("%q: %v %v; encoding/json %v %q %q %v", rec, h, ok, at, s, tb, want)
		}
		if _, ok := canonicalHead(rec); !ok {
			t.Fatalf("%q: not read in AppendBody's form", rec)
		}
		r, err := ParseRecord(rec)
		if err != nil || r.Source != validText(source) {
			t.Fatalf("%q: source read back %q, %v", rec, r.Source, err)
		}
	})
}
