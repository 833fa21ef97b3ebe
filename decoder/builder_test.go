package decoder

import (
	"encoding/binary"
	"time"
)

// A test-only builder of pgoutput v1 messages.

type wbuf []byte

func (b wbuf) u8(v byte) wbuf    { return append(b, v) }
func (b wbuf) u16(v int) wbuf    { return binary.BigEndian.AppendUint16(b, uint16(v)) }
func (b wbuf) u32(v uint32) wbuf { return binary.BigEndian.AppendUint32(b, v) }
func (b wbuf) u64(v uint64) wbuf { return binary.BigEndian.AppendUint64(b, v) }
func (b wbuf) str(s string) wbuf { return append(append(b, s...), 0) }
func (b wbuf) ts(t time.Time) wbuf {
	return b.u64(uint64(t.Sub(time.Date(2000, 1, 1, 0, 0, 0, 0, time.UTC)).Microseconds()))
}

func mBegin(finalLSN uint64, commit time.Time, xid uint32) []byte {
	return wbuf{'B'}.u64(finalLSN).ts(commit).u32(xid)
}

func mCommit(commitLSN, endLSN uint64, commit time.Time) []byte {
	return wbuf{'C'}.u8(0).u64(commitLSN).u64(endLSN).ts(commit)
}

func mOrigin(lsn uint64, name string) []byte { return wbuf{'O'}.u64(lsn).str(name) }

// col describes a relation column: name, type OID, replica identity flag.
type col struct {
	name string
	typ  uint32
	key  bool
}

func mRelation(oid uint32, ns, name string, identity byte, cols ...col) []byte {
	b := wbuf{'R'}.u32(oid).str(ns).str(name).u8(identity).u16(len(cols))
	for _, c := range cols {
		var flags byte
		if c.key {
			flags = 1
		}
		b = b.u8(flags).str(c.name).u32(c.typ).u32(0xFFFFFFFF)
	}
	return b
}

func mType(oid uint32, ns, name string) []byte { return wbuf{'Y'}.u32(oid).str(ns).str(name) }

// val is one TupleData column: kind 'n', 'u', 't' or 'b' and its data.
type val struct {
	kind byte
	data string
}

var (
	null  = val{kind: 'n'}
	toast = val{kind: 'u'}
)

func txt(s string) val { return val{'t', s} }
func bin(s string) val { return val{'b', s} }

func (b wbuf) tuple(vals []val) wbuf {
	b = b.u16(len(vals))
	for _, v := range vals {
		b = b.u8(v.kind)
		if v.kind == 't' || v.kind == 'b' {
			b = append(b.u32(uint32(len(v.data))), v.data...)
		}
	}
	return b
}

func mInsert(oid uint32, vals ...val) []byte {
	return wbuf{'I'}.u32(oid).u8('N').tuple(vals)
}

// mUpdate: oldKind 0 sends no old tuple.
func mUpdate(oid uint32, oldKind byte, old, nw []val) []byte {
	b := wbuf{'U'}.u32(oid)
	if oldKind != 0 {
		b = b.u8(oldKind).tuple(old)
	}
	return b.u8('N').tuple(nw)
}

func mDelete(oid uint32, oldKind byte, old ...val) []byte {
	return wbuf{'D'}.u32(oid).u8(oldKind).tuple(old)
}

func mTruncate(options byte, oids ...uint32) []byte {
	b := wbuf{'T'}.u32(uint32(len(oids))).u8(options)
	for _, o := range oids {
		b = b.u32(o)
	}
	return b
}

func mMessage(transactional bool, lsn uint64, prefix string, content []byte) []byte {
	var flags byte
	if transactional {
		flags = 1
	}
	return append(wbuf{'M'}.u8(flags).u64(lsn).str(prefix).u32(uint32(len(content))), content...)
}
