package decoder

import (
	"unsafe"

	"github.com/cdcaudit/cdcaudit/audit"
)

// slab hands out the memory of events in chunks: a few allocations for many
// events instead of four per event, and fewer objects for the GC. Chunks
// are reused only after the handler says it is done with every event handed
// so far (Decoder.Recycle); otherwise a chunk is garbage once no event
// carved from it is kept. Big value arenas get a buffer of their own, never
// reused, so no small event keeps one alive, nor one a chunk.
type slab struct {
	events chunks[audit.Event]
	cols   chunks[audit.Column]
	names  chunks[string]
	bytes  chunks[byte]
}

// Chunk sizes: an event takes about 400 bytes, a column 40, a name 16.
const (
	slabEvents = 64
	slabCols   = 1024
	slabNames  = 512
	slabBytes  = 32 << 10
	// ownArena: an event whose values need this much or more gets an arena
	// of its own rather than a part of a chunk.
	ownArena = slabBytes / 4
	// slabKeep bounds what each kind keeps for reuse between recycles:
	// enough for a chunk of a transaction as the pipeline stores it.
	slabKeep = 4 << 20
)

// chunks of T, those since the last recycle kept for reuse (up to slabKeep).
type chunks[T any] struct {
	kept [][]T
	next int // kept[next] is the next chunk to reuse
	cur  []T
}

// room makes sure the current chunk has room for n more.
func (c *chunks[T]) room(n, size int) {
	if cap(c.cur)-len(c.cur) >= n {
		return
	}
	if c.next < len(c.kept) {
		c.cur = c.kept[c.next][:0]
	} else {
		c.cur = make([]T, 0, size)
		if var0 := *new(T); (len(c.kept)+1)*size*int(unsafe.Sizeof(var0)) <= slabKeep {
			c.kept = append(c.kept, c.cur)
		}
	}
	c.next++
}

// take returns n elements of the current chunk, capped: appending to them
// cannot reach a neighbour. They hold what was there (zero in a new chunk).
func (c *chunks[T]) take(n, size int) []T {
	c.room(n, size)
	lo := len(c.cur)
	c.cur = c.cur[:lo+n]
	return c.cur[lo : lo+n : lo+n]
}

// recycle makes every kept chunk reusable.
func (c *chunks[T]) recycle() { c.next, c.cur = 0, nil }

func (s *slab) recycle() {
	s.events.recycle()
	s.cols.recycle()
	s.names.recycle()
	s.bytes.recycle()
}

func (s *slab) event() *audit.Event { return &s.events.take(1, slabEvents)[0] }

// row returns n columns to be set, capped.
func (s *slab) row(n int) audit.Row {
	switch {
	case n == 0:
		return audit.Row{} // not nil: an empty image is {}, a nil one null
	case n > slabCols/8:
		return make(audit.Row, n)
	}
	return s.cols.take(n, slabCols)
}

// strings returns room for n names (length 0, capacity n), never nil:
// an empty Changed is [], a nil one null (unknown).
func (s *slab) strings(n int) []string {
	switch {
	case n == 0:
		return []string{}
	case n > slabNames/8:
		return make([]string, 0, n)
	}
	return s.names.take(n, slabNames)[:0]
}

// arena returns an empty buffer with room for at least size bytes: the
// rest of the current chunk, so appends past size (escapes) usually stay
// in it. Pass what was built to used.
func (s *slab) arena(size int) []byte {
	if size >= ownArena {
		return make([]byte, 0, size)
	}
	b := &s.bytes
	b.room(size, slabBytes)
	return b.cur[len(b.cur):len(b.cur)]
}

// used takes what an arena from the current chunk holds out of the chunk;
// an arena that grew elsewhere (or was its own) leaves the chunk as it is.
func (s *slab) used(arena []byte) {
	b := &s.bytes
	if rest := cap(b.cur) - len(b.cur); rest > 0 && cap(arena) == rest && len(arena) > 0 &&
		&arena[:1][0] == &b.cur[len(b.cur) : len(b.cur)+1][0] {
		b.cur = b.cur[:len(b.cur)+len(arena)]
	}
}
