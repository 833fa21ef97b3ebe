package decoder

import (
	"context"
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/cdcaudit/cdcaudit/audit"
)

// Type OIDs used by the tests, besides those of value.go.
const (
	oidText        = 25
	oidNumeric     = 1700
	oidTimestamp   = 1114
	oidTimestampTZ = 1184
	oidDate        = 1082
	oidUUID        = 2950
	oidBytea       = 17
	oidVarchar     = 1043
	oidInt4Array   = 1007
)

var commitTime = time.Date(2026, 11, 23, 13, 34, 33, 559831000, time.UTC)

// recorder is a Handler that keeps everything and checks every event's
// sealed record is valid JSON.
type recorder struct {
	t       testing.TB
	begins  []*Tx
	commits []*Tx
	events  []*audit.Event
	evTx    []*Tx
	msgs    []Message
	msgTx   []*Tx
	err     error // returned by every callback when set
}

func (r *recorder) Begin(tx *Tx) error { r.begins = append(r.begins, tx); return r.err }
func (r *recorder) Commit(tx *Tx) error {
	r.commits = append(r.commits, tx)
	return r.err
}
func (r *recorder) Message(tx *Tx, m Message) error {
	r.msgs, r.msgTx = append(r.msgs, m), append(r.msgTx, tx)
	return r.err
}
func (r *recorder) Event(tx *Tx, e *audit.Event) error {
	r.t.Helper()
	if rec := seal(e); !json.Valid(rec) {
		r.t.Errorf("event %s: sealed record is not valid JSON:\n%s", e.ID(), rec)
	} else if _, err := audit.ParseRecord(rec); err != nil {
		r.t.Errorf("event %s: %v", e.ID(), err)
	}
	r.events, r.evTx = append(r.events, e), append(r.evTx, tx)
	return r.err
}

func seal(e *audit.Event) []byte {
	rec, _ := audit.Seal(nil, e.AppendBody(nil), audit.Genesis)
	return rec
}

// feed decodes msgs, the i-th at WAL position lsn+i, and fails the test on
// an error. Each message is decoded from a scratch buffer that is scribbled
// over afterwards: nothing may keep pointing into it.
func feed(t testing.TB, d *Decoder, h Handler, lsn uint64, msgs ...[]byte) {
	t.Helper()
	for i, m := range msgs {
		if err := decodeScribbled(d, h, lsn+uint64(i), m); err != nil {
			t.Fatalf("message %d (%q): %v", i, m[0], err)
		}
	}
}

func decodeScribbled(d *Decoder, h Handler, lsn uint64, m []byte) error {
	buf := append([]byte(nil), m...)
	err := d.Decode(context.Background(), lsn, buf, h)
	for i := range buf {
		buf[i] = 0xAA
	}
	return err
}

// resolver is a KeyResolver with fixed answers that counts its calls.
type resolver struct {
	pk    map[uint32][]string
	calls map[uint32]int
	err   error
}

func (r *resolver) PrimaryKey(_ context.Context, oid uint32) ([]string, error) {
	if r.calls == nil {
		r.calls = map[uint32]int{}
	}
	r.calls[oid]++
	if r.err != nil {
		return nil, r.err
	}
	return r.pk[oid], nil
}

// rowJSON renders a row the way the record does: {"a":1,…} or null.
func rowJSON(r audit.Row) string {
	if r == nil {
		return "null"
	}
	b := []byte{'{'}
	for i, c := range r {
		if i > 0 {
			b = append(b, ',')
		}
		b = audit.AppendString(b, c.Name)
		b = append(b, ':')
		b = append(b, c.Value...)
	}
	return string(append(b, '}'))
}

// namesJSON renders a name list: ["a","b"], [] or null.
func namesJSON(names []string) string {
	if names == nil {
		return "null"
	}
	b := []byte{'['}
	for i, n := range names {
		if i > 0 {
			b = append(b, ',')
		}
		b = audit.AppendString(b, n)
	}
	return string(append(b, ']'))
}

// shape is what the tests check of an event's content.
type shape struct {
	Op                 audit.Op
	Table              string
	Key, Before, After string
	Changed, Toast     string
	Flags              string
}

func shapeOf(e *audit.Event) shape {
	return shape{
		Op: e.Op, Table: e.Schema + "." + e.Table,
		Key: rowJSON(e.Key), Before: rowJSON(e.Before), After: rowJSON(e.After),
		Changed: namesJSON(e.Changed), Toast: namesJSON(e.UnchangedToast), Flags: namesJSON(e.Flags),
	}
}

func checkShape(t *testing.T, e *audit.Event, want shape) {
	t.Helper()
	if want.Toast == "" {
		want.Toast = "null"
	}
	if want.Flags == "" {
		want.Flags = "null"
	}
	got := shapeOf(e)
	if got != want {
		t.Errorf("event %d (%s):\n got %s\nwant %s", e.Ordinal, e.Op, dump(got), dump(want))
	}
}

func dump(s shape) string {
	return strings.Join([]string{s.Op.String(), s.Table, "key=" + s.Key, "before=" + s.Before,
		"after=" + s.After, "changed=" + s.Changed, "toast=" + s.Toast, "flags=" + s.Flags}, "\n      ")
}

func wantErr(t *testing.T, err, target error) {
	t.Helper()
	if !errors.Is(err, target) {
		t.Fatalf("error = %v, want %v", err, target)
	}
}
