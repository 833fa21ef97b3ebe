package outboxtest

import (
	"strconv"
	"testing"
	"time"

	"github.com/cdcaudit/cdcaudit/audit"
	"github.com/cdcaudit/cdcaudit/sink"
)

// Tx says what transaction i of a test's store holds: an insert and an
// update of record Key(i) of table Table(i) ("sale_order" when nil), and
// a delete of it when Delete(i) (always when nil), committed at At(i), by
// user i%5 in session s<i%3>. Its Append is a fill function for Store
// and Fill.
type Tx struct {
	Table  func(i uint64) string
	Key    func(i uint64) uint64
	Delete func(i uint64) bool
	At     func(i uint64) time.Time
	// Extra columns every row of it carries too (not in an insert's
	// changed list): values a destination must cope with.
	Extra audit.Row
	// Source is the events' source member ("": none, as stored before
	// sources).
	Source string
}

// Append stores transaction i through the writer.
func (x Tx) Append(t *testing.T, w *sink.Writer, i uint64) {
	t.Helper()
	c := i << 8
	at := x.At(i)
	uid := int64(i % 5)
	login := "user" + strconv.Itoa(int(uid)) + "@example.com"
	sess := "s" + strconv.Itoa(int(i%3))
	table, key := "sale_order", i
	if x.Table != nil {
		table = x.Table(i)
	}
	if x.Key != nil {
		key = x.Key(i)
	}
	id := []byte(strconv.FormatUint(key, 10))
	var evs []sink.Encoded
	for ord, op := range []audit.Op{audit.OpInsert, audit.OpUpdate, audit.OpDelete} {
		if op == audit.OpDelete && x.Delete != nil && !x.Delete(i) {
			break
		}
		e := &audit.Event{
			LSN: c - 0x10 + uint64(ord), CommitLSN: c, Ordinal: uint32(ord + 1), XID: uint32(i), CommitTime: at,
			Database: "odoo", Source: x.Source, Schema: "public", Table: table, Op: op,
			Key:   audit.Row{{Name: "id", Value: id}},
			Actor: audit.Actor{UserID: &uid, Login: login, UserVia: "row_user", SessionID: sess, SessionVia: "only_active"},
		}
		row := append(audit.Row{{Name: "id", Value: id}, {Name: "note", Value: []byte(`"é \"quoted\" \\ line"`)}, {Name: "amount", Value: []byte(`"120.00"`)}}, x.Extra...)
		switch op {
		case audit.OpInsert:
			e.After, e.Changed = row, []string{"id", "note", "amount"}
		case audit.OpUpdate:
			e.Before, e.After, e.Changed = row, row, []string{}
		case audit.OpDelete:
			e.Before, e.Changed = row, []string{}
		}
		evs = append(evs, sink.Encoded{Key: e.StoreKey(), Body: e.AppendBody(nil)})
	}
	if err := w.Submit(t.Context(), sink.Batch{Events: evs, Checkpoint: c + 0x80, CommitTime: at}); err != nil {
		t.Fatal(err)
	}
}
