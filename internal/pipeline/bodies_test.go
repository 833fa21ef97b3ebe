package pipeline

import (
	"bytes"
	"strings"
	"testing"
	"time"

	"github.com/cdcaudit/cdcaudit/audit"
	"github.com/cdcaudit/cdcaudit/sink"
)

func bodyEvent(lsn uint64, ord uint32, text string) *audit.Event {
	return &audit.Event{CommitLSN: lsn, Ordinal: ord, XID: 7, CommitTime: time.Date(2026, 12, 3, 12, 0, 0, 0, time.UTC),
		Database: "db", Schema: "public", Table: "t", Op: audit.OpInsert,
		Key: audit.Row{{Name: "id", Value: []byte("1")}}, After: audit.Row{{Name: "v", Value: audit.AppendString(nil, text)}}}
}

// Bodies share chunks: sealing one in place must not touch its neighbours,
// and a chunk is reused only once every batch in it is released.
func TestBodiesSealInPlaceAndReuseOnlyReleasedChunks(t *testing.T) {
	var bs bodies
	build := func(lsn uint64, n int) (sink.Batch, [][]byte) {
		var b sink.Batch
		var want [][]byte
		for i := range n {
			e := bodyEvent(lsn, uint32(i+1), strings.Repeat("x", 100+i))
			body := bs.encode(e)
			if !bytes.Equal(body, e.AppendBody(nil)) || cap(body) < audit.SealedLen(len(body)) {
				t.Fatalf("body %d: %q (cap %d)", i, body, cap(body))
			}
			b.Events = append(b.Events, sink.Encoded{Key: e.StoreKey(), Body: body})
			want = append(want, e.AppendBody(nil))
		}
		return b, want
	}
	b1, want1 := build(0x100, 50)
	bs.submitted(&b1)
	b2, want2 := build(0x200, 50)
	bs.submitted(&b2)
	// The store seals every body in place, in order.
	var prev audit.Hash
	for _, b := range []sink.Batch{b1, b2} {
		for i := range b.Events {
			_, prev = audit.SealInPlace(b.Events[i].Body, prev)
		}
	}
	for i := range b1.Events {
		if !bytes.Equal(b1.Events[i].Body, want1[i]) || !bytes.Equal(b2.Events[i].Body, want2[i]) {
			t.Fatalf("sealing body %d in place changed a body", i)
		}
	}
	// Both batches live in the current chunk: nothing is spare until the
	// chunk is retired and both are released.
	bs.released(b1)
	bs.next(0)
	if len(bs.spare) != 0 {
		t.Fatal("a chunk was reused while a batch in it was with the store")
	}
	bs.released(sink.Batch{Events: []sink.Encoded{{Key: audit.MakeKey(0x150, 1)}}}) // not one of ours (a chain record, say)
	bs.released(b2)
	if len(bs.spare) != 1 || len(bs.pending) != 0 {
		t.Fatalf("%d spare chunks, %d pending batches after every batch was released", len(bs.spare), len(bs.pending))
	}
	// A batch dropped (a reconnect) never gives its chunk back; a released
	// one does, and the next chunk is that one.
	b3, _ := build(0x300, 3)
	bs.dropped()
	b4, _ := build(0x400, 3) // the first body of a chunk: the spare one
	bs.submitted(&b4)
	bs.released(b4)
	bs.next(0)
	b5, _ := build(0x500, 1)
	if &b5.Events[0].Body[0] != &b4.Events[0].Body[0] || len(bs.spare) != 0 {
		t.Fatalf("b4's released chunk was not reused (%d spare)", len(bs.spare))
	}
	if &b5.Events[0].Body[0] == &b3.Events[0].Body[0] {
		t.Fatal("the dropped batch's chunk was reused")
	}
}
