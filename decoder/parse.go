package decoder

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"slices"
	"time"
)

// This file is a zero-copy parser of pgoutput protocol version 1 messages
// (https://www.postgresql.org/docs/current/protocol-logicalrep-message-formats.html).
// Integers are big-endian, strings NUL-terminated. Parsed byte slices point
// into the message and are only valid while it is.

var (
	// ErrUnknownMessage is wrapped by the error for a message type this
	// decoder does not know (e.g. PostgreSQL 18's stray stream-abort 'A' on
	// protocol v1). Callers skip such a message, count it and warn.
	ErrUnknownMessage = errors.New("unknown pgoutput message type")
	// ErrMalformed is wrapped by the error for a truncated or inconsistent
	// message, or one that breaks the protocol (a change outside a
	// transaction, a change of an unknown relation, …).
	ErrMalformed = errors.New("malformed pgoutput message")
)

func malformed(format string, args ...any) error {
	return fmt.Errorf("%w: "+format, append([]any{ErrMalformed}, args...)...)
}

// reader consumes a message. A read past the end marks it bad and returns
// zero values, so a parse function reads all fields and checks once (done).
type reader struct {
	b   []byte
	bad bool
}

func (r *reader) fail() { r.bad, r.b = true, nil }

func (r *reader) u8() byte {
	if len(r.b) < 1 {
		r.fail()
		return 0
	}
	v := r.b[0]
	r.b = r.b[1:]
	return v
}

func (r *reader) u16() uint16 {
	if len(r.b) < 2 {
		r.fail()
		return 0
	}
	v := binary.BigEndian.Uint16(r.b)
	r.b = r.b[2:]
	return v
}

func (r *reader) u32() uint32 {
	if len(r.b) < 4 {
		r.fail()
		return 0
	}
	v := binary.BigEndian.Uint32(r.b)
	r.b = r.b[4:]
	return v
}

func (r *reader) u64() uint64 {
	if len(r.b) < 8 {
		r.fail()
		return 0
	}
	v := binary.BigEndian.Uint64(r.b)
	r.b = r.b[8:]
	return v
}

// cstring returns a NUL-terminated string without its NUL.
func (r *reader) cstring() []byte {
	i := bytes.IndexByte(r.b, 0)
	if i < 0 {
		r.fail()
		return nil
	}
	s := r.b[:i:i]
	r.b = r.b[i+1:]
	return s
}

// bytes returns the next n bytes; n comes from the wire, so it is checked.
func (r *reader) bytes(n int64) []byte {
	if n < 0 || n > int64(len(r.b)) {
		r.fail()
		return nil
	}
	s := r.b[:n:n]
	r.b = r.b[n:]
	return s
}

// done reports whether the whole message was read, exactly.
func (r *reader) done(what string) error {
	if r.bad {
		return malformed("%s message truncated", what)
	}
	if len(r.b) != 0 {
		return malformed("%s message has %d trailing bytes", what, len(r.b))
	}
	return nil
}

type beginMsg struct {
	finalLSN   uint64
	commitTime time.Time
	xid        uint32
}

func parseBegin(r *reader) (m beginMsg, err error) {
	m.finalLSN = r.u64()
	m.commitTime = pgTime(int64(r.u64()))
	m.xid = r.u32()
	return m, r.done("begin")
}

type commitMsg struct {
	commitLSN, endLSN uint64
}

func parseCommit(r *reader) (m commitMsg, err error) {
	r.u8() // flags: unused
	m.commitLSN = r.u64()
	m.endLSN = r.u64()
	r.u64() // commit time: Begin carried it already
	return m, r.done("commit")
}

func parseOrigin(r *reader) error {
	r.u64()
	r.cstring()
	return r.done("origin")
}

// column is a column of a relation as the Relation message describes it.
type column struct {
	name string
	typ  uint32 // type OID
	mod  uint32 // type modifier
	key  bool   // flagged as part of the replica identity
}

// relation is a cached Relation message, with the key the decoder reports.
type relation struct {
	oid      uint32
	schema   string
	table    string
	identity byte // 'd' default, 'n' nothing, 'f' full, 'i' index
	cols     []column
	flagged  []int // positions of the flagged columns, in column order

	// key holds the positions of the reported key columns, in key order;
	// nil when there is no usable key. keyDone tells whether it is known:
	// for FULL and NOTHING it is resolved (once) at the first row change.
	key     []int
	keyDone bool

	names []string // the column names, made at the first Columns call
}

// sameShape reports whether two descriptions of a relation have the same
// name and columns (names, types, modifiers): a Relation message is sent
// again after any invalidation, a change of shape means DDL.
func (rel *relation) sameShape(o *relation) bool {
	return rel.schema == o.schema && rel.table == o.table &&
		slices.EqualFunc(rel.cols, o.cols, func(a, b column) bool { return a.name == b.name && a.typ == b.typ && a.mod == b.mod })
}

// minColumnLen is the least a column of a Relation message takes on the
// wire: flags, an empty name's NUL, type OID and typmod.
const minColumnLen = 1 + 1 + 4 + 4

func parseRelation(r *reader) (*relation, error) {
	rel := &relation{oid: r.u32()}
	ns, name := r.cstring(), r.cstring()
	rel.identity = r.u8()
	n := int(int16(r.u16()))
	if n < 0 || n*minColumnLen > len(r.b) {
		r.fail()
		return nil, r.done("relation")
	}
	rel.schema, rel.table = schemaName(ns), string(name)
	rel.cols = make([]column, n)
	for i := range rel.cols {
		c := &rel.cols[i]
		c.key = r.u8()&1 != 0
		c.name = string(r.cstring())
		c.typ = r.u32()
		c.mod = r.u32()
		if c.key {
			rel.flagged = append(rel.flagged, i)
		}
	}
	if err := r.done("relation"); err != nil {
		return nil, err
	}
	switch rel.identity {
	case 'f', 'n':
		// FULL flags every column, NOTHING none: the key is the primary
		// key, asked of the KeyResolver at the first row change.
	default:
		// DEFAULT and USING INDEX: the flagged columns are the key.
		if len(rel.flagged) > 0 {
			rel.key = rel.flagged
		}
		rel.keyDone = true
	}
	return rel, nil
}

// schemaName: pgoutput sends "" for pg_catalog.
func schemaName(ns []byte) string {
	if len(ns) == 0 {
		return "pg_catalog"
	}
	return string(ns)
}

func parseType(r *reader) (oid uint32, name string, err error) {
	oid = r.u32()
	ns, n := r.cstring(), r.cstring()
	if err := r.done("type"); err != nil {
		return 0, "", err
	}
	return oid, schemaName(ns) + "." + string(n), nil
}

// field is one column of a TupleData: kind 'n' null, 'u' unchanged TOASTed
// value, 't' text, 'b' binary.
type field struct {
	kind byte
	data []byte
}

// parseTuple parses a TupleData into dst (reused between messages).
func parseTuple(r *reader, dst []field) []field {
	dst = dst[:0]
	n := int(int16(r.u16()))
	if n < 0 || n > len(r.b) { // every column takes at least its kind byte
		r.fail()
		return dst
	}
	for range n {
		switch k := r.u8(); k {
		case 'n', 'u':
			dst = append(dst, field{kind: k})
		case 't', 'b':
			dst = append(dst, field{kind: k, data: r.bytes(int64(int32(r.u32())))})
		default:
			r.fail()
			return dst
		}
	}
	return dst
}

type logicalMsg struct {
	transactional bool
	lsn           uint64
	prefix        []byte
	content       []byte
}

func parseMessage(r *reader) (m logicalMsg, err error) {
	m.transactional = r.u8()&1 != 0
	m.lsn = r.u64()
	m.prefix = r.cstring()
	m.content = r.bytes(int64(int32(r.u32())))
	return m, r.done("logical decoding message")
}

// Truncate options.
const (
	truncateCascade         = 1
	truncateRestartIdentity = 2
)

// parseTruncate parses a Truncate message, its relation OIDs into dst.
func parseTruncate(r *reader, dst []uint32) (oids []uint32, options byte, err error) {
	n := int(int32(r.u32()))
	options = r.u8()
	if n < 0 || n > len(r.b)/4 {
		r.fail()
		return dst[:0], 0, r.done("truncate")
	}
	oids = dst[:0]
	for range n {
		oids = append(oids, r.u32())
	}
	return oids, options, r.done("truncate")
}

// pgEpochUnix is 2000-01-01 00:00:00 UTC in Unix seconds.
const pgEpochUnix = 946684800

// pgTime converts microseconds since 2000-01-01 UTC. It does not overflow
// for any input (time.Duration would, beyond ±292 years).
func pgTime(us int64) time.Time {
	sec, rem := us/1e6, us%1e6
	if rem < 0 {
		sec, rem = sec-1, rem+1e6
	}
	return time.Unix(pgEpochUnix+sec, rem*1e3).UTC()
}
