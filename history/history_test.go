package history_test

import (
	"bytes"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/cdcaudit/cdcaudit/audit"
	"github.com/cdcaudit/cdcaudit/history"
	"github.com/cdcaudit/cdcaudit/sink"
)

var t0 = time.Date(2026, 11, 23, 13, 0, 0, 0, time.UTC)

// trail writes events into a real store, one transaction at a time.
type trail struct {
	t     *testing.T
	store *sink.Store
	lsn   uint64
}

func newTrail(t *testing.T) *trail {
	t.Helper()
	s, err := sink.Open(filepath.Join(t.TempDir(), "store"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return &trail{t: t, store: s, lsn: 0x1000000}
}

// tx stores events as one transaction committed at `at`, and returns their ids.
func (tr *trail) tx(at time.Time, evs ...*audit.Event) []string {
	tr.t.Helper()
	tr.lsn += 0x1000
	b := sink.Batch{Checkpoint: tr.lsn + 8, CommitTime: at}
	var ids []string
	for i, e := range evs {
		e.CommitLSN, e.LSN, e.Ordinal, e.XID, e.CommitTime = tr.lsn, tr.lsn-0x100+uint64(i), uint32(i+1), uint32(tr.lsn>>8), at
		if e.Database == "" {
			e.Database = "erp"
		}
		body := e.AppendBody(nil)
		if e.BeforeSource != audit.BeforeNone && !bytes.Contains(body, []byte(`"before_source"`)) {
			// Until the encoding carries before_source, splice it in where a
			// newer writer could put it: readers must find it anywhere.
			body = bytes.Replace(body, []byte(`,"actor":`), []byte(`,"before_source":"`+e.BeforeSource.String()+`","actor":`), 1)
		}
		b.Events = append(b.Events, sink.Encoded{Key: e.StoreKey(), Body: body})
		ids = append(ids, e.ID())
	}
	if _, err := tr.store.Append([]sink.Batch{b}); err != nil {
		tr.t.Fatal(err)
	}
	return ids
}

func row(kv ...string) audit.Row {
	var r audit.Row
	for i := 0; i+1 < len(kv); i += 2 {
		r = append(r, audit.Column{Name: kv[i], Value: []byte(kv[i+1])})
	}
	return r
}

func ev(table string, op audit.Op, key, before, after audit.Row) *audit.Event {
	schema, name, ok := strings.Cut(table, ".")
	if !ok {
		schema, name = "public", table
	}
	return &audit.Event{Schema: schema, Table: name, Op: op, Key: key, Before: before, After: after}
}

func ins(table string, key, after audit.Row) *audit.Event {
	return ev(table, audit.OpInsert, key, nil, after)
}
func upd(table string, key, before, after audit.Row) *audit.Event {
	return ev(table, audit.OpUpdate, key, before, after)
}
func del(table string, key audit.Row) *audit.Event { return ev(table, audit.OpDelete, key, key, nil) }
func snap(table string, key, after audit.Row) *audit.Event {
	return ev(table, audit.OpSnapshot, key, nil, after)
}
func trunc(table string) *audit.Event { return ev(table, audit.OpTruncate, nil, nil, nil) }

func ref(t *testing.T, s string) history.Ref {
	t.Helper()
	r, err := history.ParseRef(s)
	if err != nil {
		t.Fatalf("ParseRef(%q): %v", s, err)
	}
	return r
}

// record returns "op id" of every event of the record.
func record(t *testing.T, src history.Source, s string) []string {
	t.Helper()
	var got []string
	if _, err := history.Record(src, ref(t, s), func(e *history.Event) error {
		got = append(got, e.Op.String()+" "+e.ID)
		return nil
	}); err != nil {
		t.Fatalf("Record(%s): %v", s, err)
	}
	return got
}

func at(t *testing.T, src history.Source, s string, when time.Time) *history.Image {
	t.Helper()
	im, err := history.At(src, ref(t, s), when)
	if err != nil {
		t.Fatalf("At(%s, %s): %v", s, when, err)
	}
	return im
}

func equal(t *testing.T, what string, got, want []string) {
	t.Helper()
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("%s:\ngot  %q\nwant %q", what, got, want)
	}
}

// wantRow checks the image's state, its row and the event it came from.
func wantRow(t *testing.T, im *history.Image, state history.State, row, fromID string) {
	t.Helper()
	if im.State != state {
		t.Fatalf("%s at %s: state %s (%s), want %s", im.Ref, im.At, im.State, im.Reason(), state)
	}
	if string(im.Row) != row {
		t.Errorf("%s at %s: row %s, want %s", im.Ref, im.At, im.Row, row)
	}
	got := ""
	if im.Event != nil {
		got = im.Event.ID
	}
	if got != fromID {
		t.Errorf("%s at %s: from event %q, want %q", im.Ref, im.At, got, fromID)
	}
}

func sec(n int) time.Time { return t0.Add(time.Duration(n) * time.Second) }
