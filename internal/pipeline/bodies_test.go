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

// The spares cover what the writer can hold, so a steady drain allocates
// no chunk; past that, and once unused for spareAge, they go to the GC.
func TestBodiesSpareBoundAndAge(t *testing.T) {
	if spareChunks*bodyChunkSize < sink.MaxHeldBytes {
		t.Fatalf("%d spare chunks of %d KiB hold less than the writer can (%d MiB)", spareChunks, bodyChunkSize>>10, sink.MaxHeldBytes>>20)
	}
	var bs bodies
	var chunks []*bodyChunk
	for range spareChunks + 10 {
		bs.next(0)
		bs.cur.batches++ // a batch with the writer uses it
		chunks = append(chunks, bs.cur)
	}
	bs.next(0) // retires the last one too
	bs.mu.Lock()
	for _, ch := range chunks { // the writer is done with them
		ch.batches--
		bs.recycle(ch)
	}
	if len(bs.spare) != spareChunks {
		t.Fatalf("%d spare chunks after %d were released; want the bound, %d", len(bs.spare), len(chunks), spareChunks)
	}
	// Spares unused for longer than spareAge are let go at the next recycle.
	for i := range bs.spare[:5] {
		bs.spare[i].when = time.Now().Add(-spareAge - time.Second)
	}
	bs.spare = bs.spare[:len(bs.spare)-1] // room for one more
	bs.recycle(&bodyChunk{buf: make([]byte, 0, bodyChunkSize)})
	n := len(bs.spare)
	bs.mu.Unlock()
	if n != spareChunks-5 {
		t.Fatalf("%d spare chunks; want %d once the five stale ones went", n, spareChunks-5)
	}
}
