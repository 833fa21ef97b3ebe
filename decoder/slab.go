package decoder

import "github.com/cdcaudit/cdcaudit/audit"

// slab hands out the memory of events in chunks: a few allocations for many
// events instead of four per event, and fewer objects for the GC. A chunk is
// never reused (the handler owns what it was given): it is garbage once no
// event carved from it is kept. Big value arenas get a buffer of their own,
// so no small event keeps one alive, nor one a chunk.
type slab struct {
	events []audit.Event
	cols   []audit.Column
	names  []string
	bytes  []byte
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
)

func (s *slab) event() *audit.Event {
	if len(s.events) == cap(s.events) {
		s.events = make([]audit.Event, 0, slabEvents)
	}
	s.events = s.events[:len(s.events)+1]
	return &s.events[len(s.events)-1]
}

// row returns n zero columns, capped: appending to them cannot reach a
// neighbour.
func (s *slab) row(n int) audit.Row {
	if n > slabCols/8 {
		return make(audit.Row, n)
	}
	if cap(s.cols)-len(s.cols) < n {
		s.cols = make([]audit.Column, 0, slabCols)
	}
	lo := len(s.cols)
	s.cols = s.cols[:lo+n]
	return s.cols[lo : lo+n : lo+n]
}

// strings returns room for n names (length 0, capacity n).
func (s *slab) strings(n int) []string {
	if n > slabNames/8 {
		return make([]string, 0, n)
	}
	if cap(s.names)-len(s.names) < n {
		s.names = make([]string, 0, slabNames)
	}
	lo := len(s.names)
	s.names = s.names[:lo+n]
	return s.names[lo : lo : lo+n]
}

// arena returns an empty buffer with room for at least size bytes: the
// rest of the current chunk, so appends past size (escapes) usually stay
// in it. Pass what was built to used.
func (s *slab) arena(size int) []byte {
	if size >= ownArena {
		return make([]byte, 0, size)
	}
	if cap(s.bytes)-len(s.bytes) < size {
		s.bytes = make([]byte, 0, slabBytes)
	}
	return s.bytes[len(s.bytes):len(s.bytes)]
}

// used takes what an arena from the current chunk holds out of the chunk;
// an arena that grew elsewhere (or was its own) leaves the chunk as it is.
func (s *slab) used(arena []byte) {
	if rest := cap(s.bytes) - len(s.bytes); rest > 0 && cap(arena) == rest && len(arena) > 0 &&
		&arena[:1][0] == &s.bytes[len(s.bytes) : len(s.bytes)+1][0] {
		s.bytes = s.bytes[:len(s.bytes)+len(arena)]
	}
}
