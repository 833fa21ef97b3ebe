package pipeline

import (
	"sync"

	"github.com/cdcaudit/cdcaudit/audit"
	"github.com/cdcaudit/cdcaudit/sink"
)

// bodyChunkSize is the size of the chunks event bodies are carved from.
const bodyChunkSize = 256 << 10

// spareChunks is how many chunks the store has finished with are kept for
// reuse (the rest are left to the GC).
const spareChunks = 32

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
	spare   [][]byte
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
		buf, bs.spare = bs.spare[n-1][:0], bs.spare[:n-1]
	} else {
		buf = make([]byte, 0, max(bodyChunkSize, need))
	}
	bs.cur = &bodyChunk{buf: buf, current: true}
}

// recycle keeps a chunk no batch uses any more; mu is held.
func (bs *bodies) recycle(ch *bodyChunk) {
	if ch.batches == 0 && !ch.current && cap(ch.buf) == bodyChunkSize && len(bs.spare) < spareChunks {
		bs.spare = append(bs.spare, ch.buf)
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
