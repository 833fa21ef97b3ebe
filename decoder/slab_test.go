package decoder

import (
	"bytes"
	"context"
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

// After Recycle the decoder reuses the memory of the events it handed out,
// and the events it makes then are exactly what a fresh decoder makes.
func TestRecycleReusesMemory(t *testing.T) {
	msgs := make([][]byte, 300)
	for i := range msgs {
		old, nw := append([]val(nil), erpOld...), append([]val(nil), erpNew...)
		old[0], nw[0] = txt(strconv.Itoa(i)), txt(strconv.Itoa(i))
		nw[10] = txt(strings.Repeat("note \"x\"\n", i%7))
		if i%2 == 0 {
			msgs[i] = mUpdate(1, 'O', old, nw)
		} else {
			msgs[i] = mInsert(1, nw...)
		}
	}
	decodeAll := func(d *Decoder) []*audit.Event {
		r := &recorder{t: t}
		feed(t, d, r, 1, mBegin(0x10, commitTime, 1))
		feed(t, d, r, 0x20, msgs...)
		feed(t, d, r, 0x20+uint64(len(msgs)), mCommit(0x10, 0x90, commitTime))
		return r.events
	}
	fresh := func() *Decoder {
		d := New("odoo", &resolver{pk: map[uint32][]string{1: {"id"}}})
		feed(t, d, &recorder{t: t}, 0, mRelation(1, "public", "sale_order", 'f', erpCols...))
		return d
	}
	var want [][]byte
	for _, e := range decodeAll(fresh()) {
		want = append(want, seal(e))
	}
	d := fresh()
	first := decodeAll(d)
	for _, e := range first { // scribble: nothing of it may show in what follows
		e.Changed = e.Changed[:cap(e.Changed)]
		for i := range e.Changed {
			e.Changed[i] = "scribbled"
		}
		for _, r := range []audit.Row{e.Key, e.Before, e.After} {
			for i := range r {
				r[i].Name = "scribbled"
				for j := range r[i].Value {
					r[i].Value[j] = 'X'
				}
			}
		}
		e.Table, e.Actor.Login = "scribbled", "scribbled"
	}
	d.Recycle()
	second := decodeAll(d)
	if first[0] != second[0] {
		t.Error("the first event's memory was not reused")
	}
	for i, e := range second {
		if got := seal(e); !bytes.Equal(got, want[i]) {
			t.Fatalf("event %d after Recycle:\n%s\nwant\n%s", i, got, want[i])
		}
	}
	if raceEnabled {
		return // allocation counts differ under the race detector
	}
	ctx, h := context.Background(), &discard{}
	begin, commit := mBegin(0x10, commitTime, 1), mCommit(0x10, 0x90, commitTime)
	tx := append(append([][]byte{begin}, msgs...), commit)
	n := testing.AllocsPerRun(5, func() {
		d.Recycle()
		for _, m := range tx {
			if err := d.Decode(ctx, 0x20, m, h); err != nil {
				t.Fatal(err)
			}
		}
	})
	if n > 1 { // the Tx
		t.Errorf("%v allocations per %d events after Recycle", n, len(msgs))
	}
}

// An update that changes nothing has Changed [] (not null, which means
// unknown), whether its event is the decoder's first, or the first after a
// Recycle, when no chunk of names is at hand.
func TestNothingChangedIsEmptyNotNull(t *testing.T) {
	d := New("odoo", &resolver{pk: map[uint32][]string{1: {"id"}}})
	r := &recorder{t: t}
	feed(t, d, r, 1, mRelation(1, "public", "sale_order", 'f', erpCols...), mBegin(0x10, commitTime, 1),
		mUpdate(1, 'O', erpOld, erpOld))
	d.Recycle()
	feed(t, d, r, 0x20, mUpdate(1, 'O', erpOld, erpOld))
	for i, e := range r.events {
		if e.Changed == nil || len(e.Changed) != 0 {
			t.Errorf("event %d: Changed %#v, want []", i, e.Changed)
		}
	}
}

// A row change of a table without columns has the empty image {}, not
// null, even as the decoder's first event.
func TestEmptyImageIsEmptyNotNull(t *testing.T) {
	d := New("odoo", nil)
	r := &recorder{t: t}
	feed(t, d, r, 1, mRelation(1, "public", "nothing", 'd'), mBegin(0x10, commitTime, 1), mInsert(1))
	if e := r.events[0]; e.After == nil || len(e.After) != 0 {
		t.Errorf("After %#v, want {}", e.After)
	}
}
