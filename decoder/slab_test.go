package decoder

import (
	"bytes"
	"strconv"
	"strings"
	"testing"

	"github.com/cdcaudit/cdcaudit/audit"
)

// Events carved from shared chunks stay each their own: kept events keep
// their values while hundreds more are decoded (chunks are never reused),
// and appending to one's rows, values or Changed never reaches another's.
func TestEventsFromChunksAreIndependent(t *testing.T) {
	d := New("odoo", &resolver{pk: map[uint32][]string{1: {"id"}}})
	r := &recorder{t: t}
	feed(t, d, r, 1, mRelation(1, "public", "sale_order", 'f', erpCols...), mBegin(0x10, commitTime, 1))
	const n = 500
	huge := strings.Repeat("é\"x", ownArena) // an arena of its own
	for i := range n {
		old, nw := append([]val(nil), erpOld...), append([]val(nil), erpNew...)
		old[0], nw[0] = txt(strconv.Itoa(i)), txt(strconv.Itoa(i))
		nw[10] = txt("note " + strconv.Itoa(i) + "\n\"escaped\"")
		if i%97 == 0 {
			nw[10] = txt(huge)
		}
		feed(t, d, r, uint64(0x20+i), mUpdate(1, 'O', old, nw))
	}
	want := make([][]byte, n)
	for i, e := range r.events {
		want[i] = seal(e)
	}
	for i, e := range r.events[:n-1] {
		e.Key = append(e.Key, audit.Column{Name: "x", Value: []byte("1")})
		e.Before = append(e.Before, audit.Column{Name: "x", Value: []byte("1")})
		e.After[10].Value = append(e.After[10].Value, "garbage"...)
		e.Changed = append(e.Changed, "x")
		if next := seal(r.events[i+1]); !bytes.Equal(next, want[i+1]) {
			t.Fatalf("changing event %d changed event %d:\n%s\nwant\n%s", i, i+1, next, want[i+1])
		}
	}
	for i, e := range r.events {
		if v, _ := e.Key.Get("id"); string(v) != strconv.Itoa(i) {
			t.Fatalf("event %d: key %s", i, v)
		}
	}
}
