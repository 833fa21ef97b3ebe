package sink

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/fnv"
	"math"
	"math/bits"

	"github.com/cdcaudit/cdcaudit/audit"
	bolt "go.etcd.io/bbolt"
)

// The indexes answer "which blocks hold the events of this record, user,
// session, table or flag, or of this time" without reading the events.
// They live in the bucket "index", written by the same transaction as the
// blocks they describe:
//
//	terms  kind byte + string → term id (4 bytes BE, from the bucket's
//	       sequence): postings carry the short id, not the string
//	rec    table id + 8-byte hash of the record term + block key → slots
//	user   user id + block key → slots
//	sess   session id + block key → slots
//	table  table id + op byte + block key → slots
//	flag   flag id + block key → slots
//	time   block time (8 bytes) + block key → nothing
//
// Postings are per block: the value lists the slots (positions in the
// block) of the records that have the term, one byte each, or as a 64-bit
// bitmap from 8 slots on. A block's time is the latest commit time of its
// row events and of every block before it (so it never goes backwards):
// a block whose time is before Since holds no event at or after it.
// Commit times of later events may still lie before a block's time; the
// largest such step back (skew) is kept, so that a block after one whose
// time is at or past Until+skew holds no event before Until.
//
// While the bucket holds indexed_through, the indexes are incomplete
// (being built: buildIndex) and queries read the events instead.
var (
	bucketIndex = []byte("index")

	ixTerms   = []byte("terms")
	ixRecord  = []byte("rec")
	ixUser    = []byte("user")
	ixSession = []byte("sess")
	ixTable   = []byte("table")
	ixFlag    = []byte("flag")
	ixTime    = []byte("time")

	// ixState: the last block indexed at the head (12 bytes), the latest
	// block time (8) and the skew (8, µs).
	ixState          = []byte("state")
	ixIndexedThrough = []byte("indexed_through")

	ixBuckets = [][]byte{ixTerms, ixRecord, ixUser, ixSession, ixTable, ixFlag, ixTime}
)

// Term kinds in the dictionary.
const (
	kindTable   = 't'
	kindUser    = 'u'
	kindSession = 's'
	kindFlag    = 'f'
)

// maxBlockRecords is the most records a block may hold: slots fit a
// 64-bit bitmap.
const maxBlockRecords = 64

// termCacheMax bounds the in-memory dictionary cache (sessions keep
// coming): past it, the cache starts over.
const termCacheMax = 100_000

// indexer is the store's blockIndexer. Only the writer (under Store.wmu)
// uses it, one transaction at a time.
type indexer struct {
	cache    map[string]uint32 // dictionary entries known committed
	st       ixTx
	lastSkew int64 // set by blockPostings
}

// ixTx is the indexer's view of the current write transaction.
type ixTx struct {
	tx      *bolt.Tx
	b       [7]*bolt.Bucket // by ixBuckets
	root    *bolt.Bucket
	pending map[string]uint32 // dictionary entries made in this transaction
	arena   arena
	// head state, read from ixState at the first block and written back
	// after each block at the head.
	head             [audit.KeyLen]byte
	timeMax, skew    int64
	stateRead, dirty bool
	removedT         map[[audit.KeyLen]byte]int64 // time of the blocks removed in this transaction
	// scratch
	posts []posting
	tk    []byte
}

type posting struct {
	bucket int    // index into ixBuckets
	prefix []byte // in the arena
	slots  uint64
}

func newIndexer() *indexer { return &indexer{cache: make(map[string]uint32)} }

// begin sets up for tx (once per transaction).
func (ix *indexer) begin(tx *bolt.Tx) error {
	if ix.st.tx == tx {
		return nil
	}
	root := tx.Bucket(bucketIndex)
	if root == nil {
		return errors.New("sink: the index bucket is missing")
	}
	st := &ix.st
	*st = ixTx{tx: tx, root: root, arena: st.arena, posts: st.posts[:0], tk: st.tk}
	st.arena.reset() // bbolt holds keys and values only until its transaction ends
	for i, name := range ixBuckets {
		if st.b[i] = root.Bucket(name); st.b[i] == nil {
			return fmt.Errorf("sink: the index bucket %s is missing", name)
		}
	}
	st.b[bucketNo(ixTime)].FillPercent = 1.0 // appended in key order
	tx.OnCommit(func() {
		if len(ix.cache)+len(st.pending) > termCacheMax {
			clear(ix.cache)
		}
		for k, id := range st.pending {
			ix.cache[k] = id
		}
	})
	return nil
}

func bucketNo(name []byte) int {
	for i, n := range ixBuckets {
		if bytes.Equal(n, name) {
			return i
		}
	}
	panic("sink: no index bucket " + string(name))
}

var (
	bTerms   = bucketNo(ixTerms)
	bRecord  = bucketNo(ixRecord)
	bUser    = bucketNo(ixUser)
	bSession = bucketNo(ixSession)
	bTable   = bucketNo(ixTable)
	bFlag    = bucketNo(ixFlag)
	bTime    = bucketNo(ixTime)
)

func (st *ixTx) readState() {
	if st.stateRead {
		return
	}
	st.stateRead = true
	st.timeMax = math.MinInt64
	if v := st.root.Get(ixState); len(v) == audit.KeyLen+16 {
		copy(st.head[:], v)
		st.timeMax = int64(binary.BigEndian.Uint64(v[audit.KeyLen:]))
		st.skew = int64(binary.BigEndian.Uint64(v[audit.KeyLen+8:]))
	}
}

func (st *ixTx) writeState() error {
	v := st.arena.alloc(audit.KeyLen + 16)
	copy(v, st.head[:])
	binary.BigEndian.PutUint64(v[audit.KeyLen:], uint64(st.timeMax))
	binary.BigEndian.PutUint64(v[audit.KeyLen+8:], uint64(st.skew))
	return st.root.Put(ixState, v)
}

// termKey is the dictionary key of a term: its kind and its string (a
// hash of it when long: bbolt keys are bounded).
func termKey(b []byte, kind byte, s string) []byte {
	b = append(b[:0], kind)
	if len(s) > 512 {
		h := sha256.Sum256([]byte(s))
		return append(append(b, 0xFF), h[:]...)
	}
	return append(b, s...)
}

// tableTerm is the dictionary string of a table.
func tableTerm(schema, table string) string { return schema + "\x00" + table }

// termID returns the id of a term, making one when it is new.
func (ix *indexer) termID(kind byte, s string) (uint32, error) {
	st := &ix.st
	st.tk = termKey(st.tk, kind, s)
	if id, ok := ix.cache[string(st.tk)]; ok {
		return id, nil
	}
	if id, ok := st.pending[string(st.tk)]; ok {
		return id, nil
	}
	terms := st.b[bTerms]
	if v := terms.Get(st.tk); len(v) == 4 {
		id := binary.BigEndian.Uint32(v)
		ix.cache[string(st.tk)] = id // committed before this transaction
		return id, nil
	}
	seq, err := terms.NextSequence()
	if err != nil {
		return 0, err
	}
	if seq > math.MaxUint32 {
		return 0, errors.New("sink: index: term ids exhausted")
	}
	id := uint32(seq)
	k := st.arena.copy(st.tk)
	v := st.arena.alloc(4)
	binary.BigEndian.PutUint32(v, id)
	if err := terms.Put(k, v); err != nil {
		return 0, err
	}
	if st.pending == nil {
		st.pending = make(map[string]uint32)
	}
	st.pending[string(k)] = id
	return id, nil
}

// lookupTerm finds a term's id in a read transaction.
func lookupTerm(root *bolt.Bucket, kind byte, s string) (uint32, bool) {
	v := root.Bucket(ixTerms).Get(termKey(nil, kind, s))
	if len(v) != 4 {
		return 0, false
	}
	return binary.BigEndian.Uint32(v), true
}

// recordHash is the 8-byte hash of a record term in the record index.
func recordHash(term []byte) uint64 {
	h := fnv.New64a()
	h.Write(term)
	return h.Sum64()
}

func (ix *indexer) addBlock(tx *bolt.Tx, blockKey []byte, keys, records [][]byte, terms []*audit.Terms) error {
	if err := ix.begin(tx); err != nil {
		return err
	}
	if len(keys) > maxBlockRecords {
		return fmt.Errorf("sink: index: block %s holds %d records (at most %d)", keyID(blockKey), len(keys), maxBlockRecords)
	}
	st := &ix.st
	st.readState()
	posts, tmax, err := ix.blockPostings(keys, records, terms, true)
	if err != nil {
		return err
	}
	for _, p := range posts {
		k := st.arena.alloc(len(p.prefix) + len(blockKey))
		copy(k[copy(k, p.prefix):], blockKey)
		if err := st.b[p.bucket].Put(k, st.arena.slots(p.slots)); err != nil {
			return fmt.Errorf("sink: index block %s: %w", keyID(blockKey), err)
		}
	}
	if tmax == math.MinInt64 {
		return nil // no row event: no time
	}
	var t int64
	var bk [audit.KeyLen]byte
	copy(bk[:], blockKey)
	if bytes.Compare(blockKey, st.head[:]) > 0 || st.head == ([audit.KeyLen]byte{}) {
		// At the head: the time never goes backwards.
		t = max(st.timeMax, tmax)
		st.skew = max(st.skew, ix.lastSkew)
		st.timeMax, st.head = t, bk
		if err := st.writeState(); err != nil {
			return err
		}
	} else {
		// A block rewritten in place holds some of the records of the block
		// removed before it: it keeps that block's time.
		var ok bool
		t, ok = st.rewrittenTime(bk)
		if !ok {
			return fmt.Errorf("sink: index: block %s is not after the indexed head %s and replaces no removed block", keyID(blockKey), keyID(st.head[:]))
		}
	}
	k := st.arena.alloc(8 + len(blockKey))
	binary.BigEndian.PutUint64(k, timeKey(t))
	copy(k[8:], blockKey)
	return st.b[bTime].Put(k, st.arena.alloc(0))
}

// rewrittenTime is the time of the removed block a rewritten block comes
// from: the last one removed at or before its key.
func (st *ixTx) rewrittenTime(bk [audit.KeyLen]byte) (int64, bool) {
	var best []byte
	var t int64
	for k, v := range st.removedT {
		if bytes.Compare(k[:], bk[:]) <= 0 && (best == nil || bytes.Compare(k[:], best) > 0) {
			best, t = append([]byte(nil), k[:]...), v
		}
	}
	return t, best != nil
}

// timeKey is a time (µs since the epoch) as a key that sorts like it.
func timeKey(us int64) uint64 { return uint64(us) ^ 1<<63 }

func timeOfKey(k []byte) int64 { return int64(binary.BigEndian.Uint64(k) ^ 1<<63) }

// blockPostings collects a block's postings (merged per term) and the
// latest commit time of its row events (math.MinInt64 without any); the
// largest step back in time from the indexed head on is left in
// ix.lastSkew. create makes missing
// dictionary entries (else a term without an id has no postings).
func (ix *indexer) blockPostings(keys, records [][]byte, terms []*audit.Terms, create bool) (posts []posting, tmax int64, err error) {
	st := &ix.st
	st.posts = st.posts[:0]
	tmax = math.MinInt64
	ix.lastSkew = 0
	runMax := st.timeMax
	add := func(bucket int, prefix []byte, slot int) {
		for i := range st.posts {
			if p := &st.posts[i]; p.bucket == bucket && bytes.Equal(p.prefix, prefix) {
				p.slots |= 1 << slot
				return
			}
		}
		st.posts = append(st.posts, posting{bucket: bucket, prefix: st.arena.copy(prefix), slots: 1 << slot})
	}
	id := func(kind byte, s string) (uint32, bool, error) {
		if create {
			id, err := ix.termID(kind, s)
			return id, err == nil, err
		}
		id, ok := lookupTerm(st.root, kind, s)
		return id, ok, nil
	}
	var buf [4 + 1 + 8]byte
	for slot, k := range keys {
		if IsChainRecord(k) {
			continue
		}
		var t *audit.Terms
		if slot < len(terms) {
			t = terms[slot]
		}
		if t == nil {
			pt, err := audit.ParseTerms(records[slot])
			if err != nil {
				return nil, 0, fmt.Errorf("sink: index: record %s: %w", keyID(k), err)
			}
			t = &pt
		}
		tableID, ok, err := id(kindTable, tableTerm(t.Schema, t.Table))
		if err != nil {
			return nil, 0, err
		}
		if ok {
			binary.BigEndian.PutUint32(buf[:4], tableID)
			buf[4] = byte(t.Op)
			add(bTable, buf[:5], slot)
			for _, r := range t.Records {
				binary.BigEndian.PutUint64(buf[4:], recordHash(r))
				add(bRecord, buf[:12], slot)
			}
		}
		// Snapshot records carry no actor: none has user, session or flag
		// postings, so those postings count changes only.
		if t.Op != audit.OpSnapshot {
			for _, term := range []struct {
				kind   byte
				s      string
				bucket int
			}{{kindUser, t.User, bUser}, {kindSession, t.Session, bSession}} {
				if term.s == "" {
					continue
				}
				tid, ok, err := id(term.kind, term.s)
				if err != nil {
					return nil, 0, err
				}
				if ok {
					binary.BigEndian.PutUint32(buf[:4], tid)
					add(term.bucket, buf[:4], slot)
				}
			}
			for _, f := range t.Flags {
				tid, ok, err := id(kindFlag, f)
				if err != nil {
					return nil, 0, err
				}
				if ok {
					binary.BigEndian.PutUint32(buf[:4], tid)
					add(bFlag, buf[:4], slot)
				}
			}
		}
		us := t.CommitTime.UnixMicro()
		tmax = max(tmax, us)
		runMax = max(runMax, us)
		ix.lastSkew = max(ix.lastSkew, runMax-us)
	}
	return st.posts, tmax, nil
}

func (ix *indexer) removeBlock(tx *bolt.Tx, blockKey []byte, keys, records [][]byte) error {
	if err := ix.begin(tx); err != nil {
		return err
	}
	st := &ix.st
	st.readState()
	posts, tmax, err := ix.blockPostings(keys, records, nil, false)
	if err != nil {
		return err
	}
	k := make([]byte, 0, 32)
	for _, p := range posts {
		k = append(append(k[:0], p.prefix...), blockKey...)
		if err := st.b[p.bucket].Delete(k); err != nil {
			return err
		}
	}
	if tmax == math.MinInt64 {
		return nil
	}
	// The block's time is at least its latest commit time; the entries
	// from there on are in block order.
	c := st.b[bTime].Cursor()
	for tk, _ := c.Seek(binary.BigEndian.AppendUint64(k[:0], timeKey(tmax))); tk != nil; tk, _ = c.Next() {
		switch bytes.Compare(tk[8:], blockKey) {
		case 0:
			var bk [audit.KeyLen]byte
			copy(bk[:], blockKey)
			if st.removedT == nil {
				st.removedT = make(map[[audit.KeyLen]byte]int64)
			}
			st.removedT[bk] = timeOfKey(tk)
			return c.Delete()
		case 1:
			return nil // not indexed
		}
	}
	return nil
}

// arena hands out the keys and values of one transaction: bbolt keeps
// them until the transaction ends, so they are never reused before.
type arena struct {
	chunks [][]byte
	n      int // chunks[n] is the current one
}

func (a *arena) reset() {
	a.n = 0
	if len(a.chunks) > 0 {
		a.chunks[0] = a.chunks[0][:0]
	}
}

// alloc returns n bytes.
func (a *arena) alloc(n int) []byte {
	for {
		if a.n < len(a.chunks) {
			c := a.chunks[a.n]
			if cap(c)-len(c) >= n {
				s := c[len(c) : len(c)+n : cap(c)]
				a.chunks[a.n] = c[:len(c)+n]
				return s
			}
			a.n++
			if a.n < len(a.chunks) {
				a.chunks[a.n] = a.chunks[a.n][:0]
				continue
			}
		}
		a.chunks = append(a.chunks, make([]byte, 0, max(32<<10, n)))
		a.n = len(a.chunks) - 1
	}
}

func (a *arena) copy(b []byte) []byte {
	s := a.alloc(len(b))
	copy(s, b)
	return s
}

// slots encodes a posting's slots: one byte each below 8 of them, else
// the 64-bit bitmap.
func (a *arena) slots(set uint64) []byte {
	n := bits.OnesCount64(set)
	if n >= 8 {
		v := a.alloc(8)
		binary.LittleEndian.PutUint64(v, set)
		return v
	}
	v := a.alloc(n)
	i := 0
	for s := set; s != 0; s &= s - 1 {
		v[i] = byte(bits.TrailingZeros64(s))
		i++
	}
	return v
}

// decodeSlots is the inverse of arena.slots.
func decodeSlots(v []byte) (uint64, error) {
	if len(v) == 8 {
		return binary.LittleEndian.Uint64(v), nil
	}
	if len(v) == 0 || len(v) > 8 {
		return 0, fmt.Errorf("bad posting of %d bytes", len(v))
	}
	var set uint64
	for _, s := range v {
		if s >= maxBlockRecords {
			return 0, fmt.Errorf("bad slot %d", s)
		}
		set |= 1 << s
	}
	return set, nil
}
