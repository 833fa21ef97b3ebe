package demo

import (
	"reflect"
	"sync"
	"testing"
	"time"

	"github.com/cdcaudit/cdcaudit/audit"
	"github.com/cdcaudit/cdcaudit/sink"
)

// store writes transactions into a real store through its write path.
type store struct {
	t *testing.T
	*sink.Store
}

func newStore(t *testing.T) store {
	t.Helper()
	s, err := sink.Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return store{t, s}
}

// tx stores events as transaction xid (its commit LSN xid<<16), numbering
// them in order.
func (s store) tx(xid uint32, evs ...*audit.Event) {
	s.t.Helper()
	commit := uint64(xid) << 16
	b := sink.Batch{Checkpoint: commit + 8, CommitTime: evs[0].CommitTime}
	for i, e := range evs {
		e.CommitLSN, e.LSN, e.Ordinal, e.XID = commit, commit-0x100+uint64(i), uint32(i+1), xid
		b.Events = append(b.Events, sink.Encoded{Key: e.StoreKey(), Body: e.AppendBody(nil), Snapshot: e.Op == audit.OpSnapshot})
	}
	if _, err := s.Append([]sink.Batch{b}); err != nil {
		s.t.Fatal(err)
	}
}

var at = time.Date(2026, 11, 23, 13, 34, 33, 559831000, time.UTC)

func row(kv ...string) audit.Row {
	var r audit.Row
	for i := 0; i < len(kv); i += 2 {
		r = append(r, audit.Column{Name: kv[i], Value: []byte(kv[i+1])})
	}
	return r
}

func change(table string, op audit.Op, id string) *audit.Event {
	e := &audit.Event{CommitTime: at, Database: "odoo", Schema: "public", Table: table, Op: op, Key: row("id", id),
		UnchangedToast: []string{}, Redacted: []string{}, Flags: []string{}}
	switch op {
	case audit.OpInsert, audit.OpSnapshot:
		e.After, e.Changed = row("id", id), []string{"id"}
	case audit.OpDelete:
		e.Before, e.Changed = row("id", id), []string{}
	}
	return e
}

// recorder collects what a tail shows.
type recorder struct {
	mu     sync.Mutex
	events []*audit.Event
}

func (r *recorder) show(e *audit.Event) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.events = append(r.events, e)
}

func (r *recorder) ids() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	var ids []string
	for _, e := range r.events {
		ids = append(ids, e.ID())
	}
	return ids
}

// The tail shows each stored change once, in commit order, skips snapshot
// records, counts events and transactions, and wakes a wait for a
// transaction once it is shown.
func TestTailShowsEachStoredChangeOnceInCommitOrder(t *testing.T) {
	s := newStore(t)
	var r recorder
	tl := newTail(s.Store, r.show)
	if err := tl.poll(); err != nil {
		t.Fatal(err)
	}
	if ids := r.ids(); len(ids) != 0 {
		t.Fatalf("an empty store showed %v", ids)
	}

	s.tx(10, change("res_partner", audit.OpSnapshot, "1"), change("res_partner", audit.OpSnapshot, "2"))
	s.tx(11, change("sale_order", audit.OpInsert, "1"), change("sale_order_line", audit.OpInsert, "1"))
	if err := tl.poll(); err != nil {
		t.Fatal(err)
	}
	if err := tl.poll(); err != nil { // nothing new: nothing shown again
		t.Fatal(err)
	}
	want := []string{audit.FormatID(11<<16, 1), audit.FormatID(11<<16, 2)}
	if ids := r.ids(); !reflect.DeepEqual(ids, want) {
		t.Fatalf("shown %v, want %v (no snapshot records)", ids, want)
	}

	wait := make(chan bool)
	go func() { wait <- tl.waitXID(13, time.Minute) }()
	s.tx(12, change("sale_order_line", audit.OpDelete, "1"))
	s.tx(13, change("sale_order", audit.OpDelete, "1"))
	if err := tl.poll(); err != nil {
		t.Fatal(err)
	}
	if !<-wait {
		t.Fatal("waitXID(13) returned false once 13 was shown")
	}
	if tl.waitXID(14, 50*time.Millisecond) {
		t.Fatal("waitXID(14) returned true: no such transaction")
	}
	want = append(want, audit.FormatID(12<<16, 1), audit.FormatID(13<<16, 1))
	if ids := r.ids(); !reflect.DeepEqual(ids, want) {
		t.Fatalf("shown %v, want %v", ids, want)
	}
	if ev, tx := tl.counts(); ev != 4 || tx != 3 {
		t.Errorf("counts: %d events of %d transactions, want 4 of 3", ev, tx)
	}
}

// What a line shows of an event is what was stored of it: every member
// history.EventOf reads comes back as the pipeline made it.
func TestEventOfReadsBackWhatWasStored(t *testing.T) {
	uid := int64(6)
	model := "sale.order"
	update := &audit.Event{CommitTime: at, Database: "odoo", Source: "odoo-prod", Schema: "public", Table: "sale_order", Model: model, Op: audit.OpUpdate,
		Key:            row("id", "42"),
		Before:         row("id", "42", "state", `"draft"`, "note", `"a \"quoted\"\nnote"`, "amount_total", `"120.00"`, "write_uid", "2"),
		After:          row("id", "42", "state", `"sale"`, "note", `"a \"quoted\"\nnote"`, "amount_total", `"99.50"`, "write_uid", "6"),
		Changed:        []string{"state", "amount_total", "write_uid"},
		UnchangedToast: []string{},
		Redacted:       []string{},
		Actor:          audit.Actor{UserID: &uid, Login: "alice@example.com", UserVia: "row_user", SessionID: "s1a6ca8", SessionVia: "only_active"},
		Flags:          []string{"orm_bypass"},
	}
	insert := &audit.Event{CommitTime: at, Database: "odoo", Schema: "public", Table: "res_users_apikeys", Op: audit.OpInsert,
		Key:            row("id", "9"),
		After:          row("id", "9", "name", `"CI pipeline"`, "key", `"[redacted]"`),
		Changed:        []string{"id", "name", "key"},
		UnchangedToast: []string{},
		Redacted:       []string{"key"},
		Actor:          audit.Actor{UserVia: "none", SessionVia: "none"},
		Flags:          []string{},
	}
	noBefore := &audit.Event{CommitTime: at, Database: "odoo", Schema: "odd \"schema\"", Table: "t", Op: audit.OpUpdate,
		Key: row("id", "1"), After: row("id", "1", "v", "2"), UnchangedToast: []string{}, Redacted: []string{}, Flags: []string{},
		Actor: audit.Actor{UserVia: "none", SessionVia: "none"}}
	truncate := &audit.Event{CommitTime: at, Database: "odoo", Schema: "public", Table: "t", Op: audit.OpTruncate,
		Changed: []string{}, UnchangedToast: []string{}, Redacted: []string{}, Flags: []string{},
		Actor: audit.Actor{UserVia: "none", SessionVia: "none"}}

	s := newStore(t)
	s.tx(20, update, insert)
	s.tx(21, noBefore, truncate)
	var r recorder
	if err := newTail(s.Store, r.show).poll(); err != nil {
		t.Fatal(err)
	}
	want := []*audit.Event{update, insert, noBefore, truncate}
	if len(r.events) != len(want) {
		t.Fatalf("%d events shown, want %d", len(r.events), len(want))
	}
	for i, got := range r.events {
		if !reflect.DeepEqual(got, want[i]) {
			t.Errorf("event %d read back as\n%+v\nstored\n%+v", i, got, want[i])
		}
	}
	if r.events[2].Changed != nil {
		t.Errorf("an update without a before-image read back with changed %v, want nil (not known)", r.events[2].Changed)
	}
}
