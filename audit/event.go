// Package audit defines the audit event, the one type every stage after the
// decoder passes on, and its canonical JSON encoding. It does no I/O.
//
// The JSON shape is a contract (exports, the HTTP API and tests depend on it):
// see docs/event-format.md. Fields are always written in the same order, with
// no insignificant white space, so the encoding of an event is canonical and
// its SHA-256 can be recomputed from the stored bytes alone.
package audit

import (
	"encoding/binary"
	"fmt"
	"strconv"
	"time"
)

// Op is the kind of change.
type Op uint8

const (
	OpInsert Op = iota + 1
	OpUpdate
	OpDelete
	OpTruncate
	// OpSnapshot is a row read by a snapshot of its table: the record as it
	// was then, not a change. It carries no actor.
	OpSnapshot
)

var opNames = [...]string{OpInsert: "insert", OpUpdate: "update", OpDelete: "delete", OpTruncate: "truncate", OpSnapshot: "snapshot"}

func (o Op) String() string {
	if int(o) < len(opNames) && opNames[o] != "" {
		return opNames[o]
	}
	return "op(" + strconv.Itoa(int(o)) + ")"
}

// ParseOp is the inverse of Op.String.
func ParseOp(s string) (Op, error) {
	for i, n := range opNames {
		if n != "" && n == s {
			return Op(i), nil
		}
	}
	return 0, fmt.Errorf("unknown op %q (want insert, update, delete, truncate or snapshot)", s)
}

// Column is one named value of a row. Value holds the value already encoded as
// JSON (null, true/false, a number, embedded json/jsonb, or a string holding
// PostgreSQL's text output), so no stage re-formats it.
type Column struct {
	Name  string
	Value []byte
}

// Row is an ordered list of columns, in the table's column order. A nil Row is
// encoded as JSON null; an empty non-nil Row as {}.
type Row []Column

// Get returns the encoded value of the named column.
func (r Row) Get(name string) ([]byte, bool) {
	for i := range r {
		if r[i].Name == name {
			return r[i].Value, true
		}
	}
	return nil, false
}

// Actor is who made the change, as far as it can be told.
type Actor struct {
	UserID     *int64 // nil when unknown
	Login      string // "" when unknown
	UserVia    string // session_row, message, row_user, tx_peer, none
	SessionID  string // "" when unknown
	SessionVia string // same_tx, message, only_active, ambiguous, none
	// Candidates: who it could have been where the user or the session is
	// not known for certain (nil when there is nothing to list).
	Candidates *Candidates
}

// MaxCandidates bounds each list of Candidates.
const MaxCandidates = 16

// Candidates lists who could have made a change that the trail cannot
// attribute for certain: users (the write_uid of an update that may not have
// gone through the application, or the users active at that moment) and
// the open sessions of a known user. At most MaxCandidates of each, most
// likely (most recently active) first.
type Candidates struct {
	Users    []CandidateUser
	Sessions []string
}

// CandidateUser is one candidate user.
type CandidateUser struct {
	ID    int64
	Login string // "" when unknown
}

func (c *Candidates) empty() bool { return c == nil || len(c.Users) == 0 && len(c.Sessions) == 0 }

// Event is one audited row change (or one table of a TRUNCATE).
type Event struct {
	LSN        uint64 // LSN of the change's own WAL record
	CommitLSN  uint64 // LSN of the transaction's commit record
	Ordinal    uint32 // position of the change within its transaction, from 1
	XID        uint32
	CommitTime time.Time
	Database   string
	// Source names the database's trail (config key source); "" encodes
	// no member, as every event did before sources.
	Source string
	Schema string
	Table  string
	Model  string // application model name ("" when unknown)
	Op     Op
	Key    Row // nil for truncate
	Before Row // nil when the server sent no old image
	After  Row // nil for delete and truncate
	// Changed lists the columns an update changed. For an update without a
	// complete before-image it is nil (encoded as null): the change set cannot
	// be known. For insert it lists every column; for delete and truncate it
	// is empty.
	Changed        []string
	UnchangedToast []string
	Redacted       []string
	Actor          Actor
	Flags          []string
	// BeforeSource says where an update's or delete's Before came from
	// (encoded as before_source; none on other ops).
	BeforeSource BeforeSource
	// ReadAt is, for a snapshot row, the PostgreSQL snapshot it was read in.
	// It is not encoded.
	ReadAt *Visibility
}

// BeforeSource is where a before-image came from.
type BeforeSource uint8

const (
	BeforeNone          BeforeSource = iota // not an update or delete
	BeforeWAL                               // the server sent it (REPLICA IDENTITY FULL)
	BeforeReconstructed                     // from the record's last image in the store
	BeforeUnknown                           // key only: the record was not seen before
)

var beforeSourceNames = [...]string{BeforeWAL: "wal", BeforeReconstructed: "reconstructed", BeforeUnknown: "unknown"}

func (s BeforeSource) String() string {
	if int(s) < len(beforeSourceNames) {
		return beforeSourceNames[s]
	}
	return ""
}

// Visibility is a PostgreSQL snapshot as pg_current_snapshot() shows it:
// transactions below Xmin are finished, those at or above Xmax and those in
// Xip were running (not seen).
type Visibility struct {
	Xmin, Xmax uint64
	Xip        []uint64
}

// Sees reports whether a transaction of the stream (32-bit xid) committed
// before the snapshot was taken, so its changes are in what was read. XID 0
// (a snapshot row, not a transaction) is always seen. The 32-bit xid is
// widened with the epoch of Xmax: it is never more than 2^31 older.
func (v *Visibility) Sees(xid uint32) bool {
	if xid == 0 {
		return true
	}
	d := int32(xid - uint32(v.Xmax)) // the distance from Xmax, modulo 2^32
	if d >= 0 {
		return false // Xmax or later: began after the snapshot
	}
	back := uint64(-int64(d))
	if back > v.Xmax {
		return true // before the first xid of the cluster: ancient
	}
	full := v.Xmax - back
	for _, x := range v.Xip {
		if x == full {
			return false
		}
	}
	return true
}

// ID returns the event id: the commit LSN as 16 hex digits, a dash, and the
// ordinal as 6 decimal digits. Sorting ids sorts events in commit order.
func (e *Event) ID() string { return FormatID(e.CommitLSN, e.Ordinal) }

// StoreKey returns the binary key of the event: it sorts exactly like ID.
func (e *Event) StoreKey() [KeyLen]byte { return MakeKey(e.CommitLSN, e.Ordinal) }

// KeyLen is the length of a binary store key.
const KeyLen = 12

// MakeKey builds the binary store key of (commitLSN, ordinal).
func MakeKey(commitLSN uint64, ordinal uint32) [KeyLen]byte {
	var k [KeyLen]byte
	binary.BigEndian.PutUint64(k[:8], commitLSN)
	binary.BigEndian.PutUint32(k[8:], ordinal)
	return k
}

// SplitKey is the inverse of MakeKey.
func SplitKey(k []byte) (commitLSN uint64, ordinal uint32, ok bool) {
	if len(k) != KeyLen {
		return 0, 0, false
	}
	return binary.BigEndian.Uint64(k[:8]), binary.BigEndian.Uint32(k[8:]), true
}

// bigOrdinal marks an ordinal of a million or more in an id: ':' sorts right
// after '9', so such ids still sort after every 6-digit one, and their fixed
// 10 digits sort among themselves.
const bigOrdinal = ':'

// FormatID formats an event id.
func FormatID(commitLSN uint64, ordinal uint32) string {
	return string(appendID(make([]byte, 0, 23), commitLSN, ordinal))
}

// AppendID appends FormatID(commitLSN, ordinal) to b.
func AppendID(b []byte, commitLSN uint64, ordinal uint32) []byte {
	return appendID(b, commitLSN, ordinal)
}

// ParseID is the inverse of FormatID.
func ParseID(id string) (commitLSN uint64, ordinal uint32, err error) {
	ordText := ""
	switch {
	case len(id) == 23 && id[16] == '-':
		ordText = id[17:]
	case len(id) == 28 && id[16] == '-' && id[17] == bigOrdinal:
		ordText = id[18:]
	default:
		return 0, 0, fmt.Errorf("malformed event id %q", id)
	}
	lsn, err1 := strconv.ParseUint(id[:16], 16, 64)
	ord, err2 := strconv.ParseUint(ordText, 10, 32)
	if err1 != nil || err2 != nil || (len(id) == 28) != (ord >= 1_000_000) {
		return 0, 0, fmt.Errorf("malformed event id %q", id)
	}
	return lsn, uint32(ord), nil
}

func appendID(b []byte, commitLSN uint64, ordinal uint32) []byte {
	const hexDigits = "0123456789ABCDEF"
	for shift := 60; shift >= 0; shift -= 4 {
		b = append(b, hexDigits[(commitLSN>>uint(shift))&0xF])
	}
	b = append(b, '-')
	var d [10]byte
	s := strconv.AppendUint(d[:0], uint64(ordinal), 10)
	width := 6
	if ordinal >= 1_000_000 {
		b = append(b, bigOrdinal)
		width = 10
	}
	for i := len(s); i < width; i++ {
		b = append(b, '0')
	}
	return append(b, s...)
}

// FormatLSN formats an LSN the way PostgreSQL does ("16/B374D848").
func FormatLSN(lsn uint64) string { return string(AppendLSN(nil, lsn)) }

// AppendLSN appends FormatLSN(lsn) to b.
func AppendLSN(b []byte, lsn uint64) []byte {
	b = appendHex32(b, uint32(lsn>>32))
	b = append(b, '/')
	return appendHex32(b, uint32(lsn))
}

// appendHex32 appends v in upper-case hex, as PostgreSQL prints LSNs:
// without leading zeros.
func appendHex32(b []byte, v uint32) []byte {
	const hexDigits = "0123456789ABCDEF"
	var d [8]byte
	i := len(d)
	for {
		i--
		d[i] = hexDigits[v&0xF]
		v >>= 4
		if v == 0 {
			break
		}
	}
	return append(b, d[i:]...)
}

// ParseLSN parses "X/Y" as PostgreSQL prints it.
func ParseLSN(s string) (uint64, error) {
	for i := 0; i < len(s); i++ {
		if s[i] == '/' {
			hi, err1 := strconv.ParseUint(s[:i], 16, 32)
			lo, err2 := strconv.ParseUint(s[i+1:], 16, 32)
			if err1 != nil || err2 != nil {
				break
			}
			return hi<<32 | lo, nil
		}
	}
	return 0, fmt.Errorf("malformed LSN %q (want e.g. 0/16B3748)", s)
}

// IsNull reports whether an encoded value is SQL NULL (or absent).
func IsNull(v []byte) bool { return len(v) == 0 || string(v) == "null" }
