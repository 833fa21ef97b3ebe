package sink

import (
	"bytes"
	"crypto/rand"
	"encoding/hex"
	"strconv"
	"time"

	"github.com/cdcaudit/cdcaudit/audit"
)

// Chain records are records of the hash chain that are not row changes:
// the genesis record every store begins with, and what the trail must
// admit it is missing (a gap accepted with --accept-gap, a replication slot
// lost while running). They are sealed and chained exactly like events, so
// removing one breaks the chain. Their key has ordinal 0, which no row
// event has: they sort before the events of the LSN they name, and
// Scan (the row events) skips them. See docs/event-format.md.
const (
	MarkGenesis  = "genesis"
	MarkGap      = "gap"
	MarkSlotLost = "slot_lost"
)

// Field is one member of a chain record: its name and its value already
// encoded as JSON.
type Field struct {
	Name  string
	Value []byte
}

// StringField is a Field holding a JSON string.
func StringField(name, value string) Field {
	return Field{Name: name, Value: audit.AppendString(nil, value)}
}

// LSNField is a Field holding an LSN as PostgreSQL prints it.
func LSNField(name string, lsn uint64) Field { return StringField(name, audit.FormatLSN(lsn)) }

// IsChainRecord reports whether a store key is a chain record's rather
// than a row event's.
func IsChainRecord(key []byte) bool {
	_, ord, ok := audit.SplitKey(key)
	return ok && ord == 0
}

// genesisKey is the genesis record's key: the first of any store.
var genesisKey = audit.MakeKey(0, 0)

// chainBody encodes a chain record up to its prev_hash, like AppendBody:
// {"id":…,"op":…,"commit_time":…,<fields>,
func chainBody(key [audit.KeyLen]byte, op string, at time.Time, fields []Field) []byte {
	b := append(make([]byte, 0, 256), `{"id":"`...)
	b = append(b, keyID(key[:])...)
	b = append(b, `","op":`...)
	b = audit.AppendString(b, op)
	b = append(b, `,"commit_time":"`...)
	b = audit.AppendTime(b, at)
	b = append(b, '"')
	for _, f := range fields {
		b = append(b, ',')
		b = audit.AppendString(b, f.Name)
		b = append(b, ':')
		b = append(b, f.Value...)
	}
	return append(b, ',')
}

// genesisBody is the first record of a new store. Its nonce makes every
// store's chain unique, so an anchor (which names the genesis hash) can
// only ever match the store it was taken from.
func genesisBody(at time.Time) []byte {
	nonce := make([]byte, 16)
	rand.Read(nonce)
	return chainBody(genesisKey, MarkGenesis, at, []Field{
		{Name: "store_format", Value: strconv.AppendUint(nil, FormatVersion, 10)},
		StringField("nonce", hex.EncodeToString(nonce)),
	})
}

// ChainRecord returns a chain record (MarkGap, MarkSlotLost) to store with
// the next Append, placed at lsn, or just after the chain head when lsn is
// not past it. Call it when nothing is waiting to be appended (after
// Writer.Flush): the place is computed from the head as of now.
func (s *Store) ChainRecord(op string, lsn uint64, at time.Time, fields ...Field) Encoded {
	st := s.state.Load()
	key := audit.MakeKey(lsn, 0)
	if st.hasHead && bytes.Compare(key[:], st.headKey[:]) <= 0 {
		head, _, _ := audit.SplitKey(st.headKey[:])
		key = audit.MakeKey(head+1, 0)
	}
	return Encoded{Key: key, Body: chainBody(key, op, at, fields)}
}

// chainOp returns the op of a chain record ("" when it has none).
func chainOp(record []byte) string {
	const p = `","op":"`
	i := bytes.Index(record, []byte(p))
	if i < 0 {
		return ""
	}
	rest := record[i+len(p):]
	j := bytes.IndexByte(rest, '"')
	if j < 0 {
		return ""
	}
	return string(rest[:j])
}
