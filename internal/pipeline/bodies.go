package pipeline

import (
	"sync"
	"time"

	"github.com/cdcaudit/cdcaudit/audit"
	"github.com/cdcaudit/cdcaudit/sink"
)

// bodyChunkSize is the size of the chunks event bodies are carved from.
const bodyChunkSize = 256 << 10

// spareChunks is how many chunks the store has finished with are kept for
// reuse: as many as the writer can hold, so that a steady drain allocates
// none. Fewer (32 were kept
// before) left most chunks of a drain to the GC: 0.6 KB allocated per
// change on the bench workload. A spare unused for spareAge goes back to
// the GC, so a burst's chunks do not stay with the daemon once it is over.
const (
	spareChunks = sink.MaxHeldBytes / bodyChunkSize
	spareAge    = time.Minute
)

// bodies carves the records of the batches being built from chunks that
// are reused once the store is done with every batch using them: no
// allocation per event, and far less for the GC to sweep. The consumer
// goroutine encodes; the writer goroutine hands batches back (released),
// in the order they were submitted.
type bodies struct {
	hint  int          // the next body's expected sealed size
	cur   *bodyChunk   // being filled (consumer goroutine)
	using []*bodyChunk // by the batch being built

	mu      sync.Mutex
	pending []pendingBodies // submitted, oldest first
	spare   []spareChunk    // the most recently released last
}

type spareChunk struct {
	buf  []byte
	when time.Time // released
}

type bodyChunk struct {
	buf     []byte
	batches int  // submitted batches not yet released, and the one being built; guarded by mu
	current bool // still being filled; guarded by mu
}

// pendingBodies is a submitted batch's chunks, known by its first key.
type pendingBodies struct {
	first  [audit.KeyLen]byte
	chunks []*bodyChunk
}

// encode returns e's body, with room after it for the store to seal it
// in place (audit.SealedLen).
func (bs *bodies) encode(e *audit.Event) []byte {
	need := 2 * max(bs.hint, 512)
	if bs.cur == nil || cap(bs.cur.buf)-len(bs.cur.buf) < need {
		bs.next(need)
	}
	ch := bs.cur
	start := len(ch.buf)
	out := e.AppendBody(ch.buf)
	end := len(out)
	bs.hint = audit.SealedLen(end - start)
	if cap(out) != cap(ch.buf) || cap(out)-end < audit.SealedLen(0) {
		// It did not fit after all: a body of its own.
		body := make([]byte, end-start, audit.SealedLen(end-start))
		copy(body, out[start:end])
		return body
	}
	ch.buf = out[:audit.SealedLen(end)] // the seal's room is the body's
	if n := len(bs.using); n == 0 || bs.using[n-1] != ch {
		bs.mu.Lock()
		ch.batches++
		bs.mu.Unlock()
		bs.using = append(bs.using, ch)
	}
	return out[start:end:audit.SealedLen(end)]
}

// next retires the current chunk and starts another, of at least need bytes.
func (bs *bodies) next(need int) {
	bs.mu.Lock()
	defer bs.mu.Unlock()
	if bs.cur != nil {
		bs.cur.current = false
		bs.recycle(bs.cur)
	}
	var buf []byte
	if n := len(bs.spare); n > 0 && need <= bodyChunkSize {
		buf = bs.spare[n-1].buf[:0]
		bs.spare[n-1] = spareChunk{}
		bs.spare = bs.spare[:n-1]
	} else {
		buf = make([]byte, 0, max(bodyChunkSize, need))
	}
	bs.cur = &bodyChunk{buf: buf, current: true}
}

// recycle keeps a chunk no batch uses any more, and lets the spares unused
// for spareAge go; mu is held.
func (bs *bodies) recycle(ch *bodyChunk) {
	if ch.batches != 0 || ch.current || cap(ch.buf) != bodyChunkSize {
		return
	}
	now := time.Now()
	old := 0
	for old < len(bs.spare) && now.Sub(bs.spare[old].when) > spareAge {
		old++
	}
	if old > 0 {
		n := copy(bs.spare, bs.spare[old:])
		clear(bs.spare[n:])
		bs.spare = bs.spare[:n]
	}
	if len(bs.spare) < spareChunks {
		bs.spare = append(bs.spare, spareChunk{buf: ch.buf, when: now})
	}
}

// submitted: the batch built is with the writer (b is what was submitted).
func (bs *bodies) submitted(b *sink.Batch) {
	if len(bs.using) == 0 {
		return
	}
	bs.mu.Lock()
	bs.pending = append(bs.pending, pendingBodies{first: b.Events[0].Key, chunks: bs.using})
	bs.mu.Unlock()
	bs.using = nil
}

// dropped: the batch built will not be submitted (a reconnect): its
// chunks are left to the GC rather than reused, whoever else holds them.
func (bs *bodies) dropped() {
	bs.using = nil
	bs.cur = nil
}

// released is the writer's Release: the store is done with b. Batches
// come back in the order they were submitted; those not built here
// (chain records, state) match no pending entry.
func (bs *bodies) released(b sink.Batch) {
	if len(b.Events) == 0 {
		return
	}
	bs.mu.Lock()
	defer bs.mu.Unlock()
	if len(bs.pending) == 0 || bs.pending[0].first != b.Events[0].Key {
		return
	}
	for _, ch := range bs.pending[0].chunks {
		ch.batches--
		bs.recycle(ch)
	}
	bs.pending[0] = pendingBodies{}
	bs.pending = bs.pending[1:]
}

// termChunks carves the events' index terms from chunks of many: no
// allocation per event. A chunk is never reused: the writer holds the terms
// until their batch is durable; the chunk is garbage once all are.
type termChunks struct {
	terms []audit.Terms
	recs  [][]byte
	buf   []byte
}

func (tc *termChunks) of(e *audit.Event) *audit.Terms {
	if len(tc.terms) == cap(tc.terms) {
		tc.terms = make([]audit.Terms, 0, 256)
	}
	if cap(tc.recs)-len(tc.recs) < 2 { // most events have one or two
		tc.recs = make([][]byte, 0, 512)
	}
	if cap(tc.buf)-len(tc.buf) < 256 { // a bigger key's terms get a buffer of their own
		tc.buf = make([]byte, 0, 16<<10)
	}
	tc.terms = tc.terms[:len(tc.terms)+1]
	t := &tc.terms[len(tc.terms)-1]
	tc.recs, tc.buf = e.AppendTerms(t, tc.recs, tc.buf)
	return t
}
