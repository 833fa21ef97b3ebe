package sink

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/fnv"
	"hash/maphash"
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
//	rec    table id + the record term's key part (a hash of a long one) +
//	       block key → slots
//	user   user id + block key → slots
//	sess   session id + block key → slots
//	table  table id + op byte + block key → slots
//	flag   flag id + block key → slots
//	time   block time (8 bytes) + block key → nothing
//
// Postings are per block: the value lists the slots (positions in the
// block) of the records that have the term, one byte each, or as a 64-bit
// bitmap from 8 slots on.
//
// The time index is sparse. A block's time is the latest commit time of
// its row events and of every block before it (so it never goes
// backwards); a block gets an entry when its time is at least
// timeStep past the last entry's. So a block whose entry's time is before
// Since, and every block before it, holds no event at or after Since.
// Commit times of later events may still lie before a block's time; the
// largest such step back (skew) is kept, so that the blocks after the
// entry following one whose time is at or past Until+skew hold no event
// before Until.
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
	// block time (8), the skew (8, µs) and the time of the last time entry
	// (8). A store whose last block is
	// another was appended to without its indexes (by an older cdcaudit):
	// they are built on from there.
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

// timeStep is how far a block's time must be past the last time entry's
// for the block to get one (µs): the precision of a time range's bounds.
const timeStep = 1000

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
	head          [audit.KeyLen]byte // the last block indexed at the head
	hasHead       bool
	timeMax, skew int64
	lastEntry     int64 // the time of the last time entry
	stateRead     bool
	// per posting bucket: the greatest key, and whether every put of this
	// transaction went past it (see put)
	maxKey   [7][]byte
	appended [7]int8 // 0: no put yet, 1: only appends, -1: not
	// scratch
	posts []posting
	at    map[uint64]int32 // a posting's hash → its index in posts
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
	*st = ixTx{tx: tx, root: root, arena: st.arena, posts: st.posts[:0], at: st.at, tk: st.tk}
	st.arena.reset() // bbolt holds keys and values only until its transaction ends
	for i, name := range ixBuckets {
		if st.b[i] = root.Bucket(name); st.b[i] == nil {
			return fmt.Errorf("sink: the index bucket %s is missing", name)
		}
	}
	// The time index is appended to at its end: its pages split there can
	// be left full. So can the others' in a transaction that only appends
	// at their end (one table, one user: bench loads, imports); postings
	// that go amid other terms' need room (full pages would split again at
	// once): see put.
	st.b[bTime].FillPercent = 1.0
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

const stateLen = audit.KeyLen + 24

func (st *ixTx) readState() {
	if st.stateRead {
		return
	}
	st.stateRead = true
	st.timeMax, st.lastEntry = math.MinInt64, math.MinInt64
	if v := st.root.Get(ixState); len(v) == stateLen {
		st.hasHead = true
		copy(st.head[:], v)
		st.timeMax = int64(binary.BigEndian.Uint64(v[audit.KeyLen:]))
		st.skew = int64(binary.BigEndian.Uint64(v[audit.KeyLen+8:]))
		st.lastEntry = int64(binary.BigEndian.Uint64(v[audit.KeyLen+16:]))
	}
}

func (st *ixTx) writeState() error {
	v := st.arena.alloc(stateLen)
	copy(v, st.head[:])
	binary.BigEndian.PutUint64(v[audit.KeyLen:], uint64(st.timeMax))
	binary.BigEndian.PutUint64(v[audit.KeyLen+8:], uint64(st.skew))
	binary.BigEndian.PutUint64(v[audit.KeyLen+16:], uint64(st.lastEntry))
	return st.root.Put(ixState, v)
}

// put stores a posting, and gives its bucket full pages while every put of
// the transaction appends at its end (but the record index's).
func (st *ixTx) put(bucket int, k, v []byte) error {
	b := st.b[bucket]
	if bucket == bRecord {
		// Records are written again later (an insert, then its updates):
		// their postings go amid full pages then, half-full ones take them.
		return b.Put(k, v)
	}
	if st.appended[bucket] == 0 {
		st.maxKey[bucket], _ = b.Cursor().Last()
		st.appended[bucket] = 1
	}
	if st.appended[bucket] == 1 {
		if bytes.Compare(k, st.maxKey[bucket]) > 0 {
			st.maxKey[bucket] = k // in the arena: valid for the transaction
			b.FillPercent = 1.0
		} else {
			st.appended[bucket] = -1
			b.FillPercent = bolt.DefaultFillPercent
		}
	}
	return b.Put(k, v)
}

// termKey is the dictionary key of a term: its kind and its string, the
// parts joined by a 0 byte (a hash of it when long: bbolt keys are
// bounded).
func termKey(b []byte, kind byte, parts ...string) []byte {
	b = append(b[:0], kind)
	for i, p := range parts {
		if i > 0 {
			b = append(b, 0)
		}
		b = append(b, p...)
	}
	if len(b) > 1+512 {
		h := sha256.Sum256(b[1:])
		return append(append(b[:1], 0xFF), h[:]...)
	}
	return b
}

// A table's term is its schema and its name.

// termID returns the id of a term, making one when it is new.
func (ix *indexer) termID(kind byte, parts ...string) (uint32, error) {
	st := &ix.st
	st.tk = termKey(st.tk, kind, parts...)
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
func lookupTerm(root *bolt.Bucket, kind byte, parts ...string) (uint32, bool) {
	v := root.Bucket(ixTerms).Get(termKey(nil, kind, parts...))
	if len(v) != 4 {
		return 0, false
	}
	return binary.BigEndian.Uint32(v), true
}

// maxRecordKey is the longest key part of a record term the record index
// holds as it is; longer ones are hashed.
const maxRecordKey = 32

// appendRecordPrefix appends the record index's prefix of a record term
// after its table id: the term's key part, self-delimiting and in key
// order, so that the postings of records written together (new ids, a
// range updated) lie together and an append touches few pages; a long key
// part by its hash (0xFF, which begins no key part, and 8 bytes).
func appendRecordPrefix(b, term []byte) []byte {
	key := audit.RecordTermKey(term)
	if len(key) <= maxRecordKey {
		return append(b, key...)
	}
	h := fnv.New64a()
	h.Write(key)
	return binary.BigEndian.AppendUint64(append(b, 0xFF), h.Sum64())
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
		if err := st.put(p.bucket, k, st.arena.slots(p.slots)); err != nil {
			return fmt.Errorf("sink: index block %s: %w", keyID(blockKey), err)
		}
	}
	if st.hasHead && bytes.Compare(blockKey, st.head[:]) <= 0 {
		// A block rewritten in place (retention) holds some of the records
		// of a block removed before it: its time is within what the
		// entries around it say, and it needs no entry of its own.
		return nil
	}
	copy(st.head[:], blockKey)
	st.hasHead = true
	if tmax != math.MinInt64 { // a block of row events
		st.timeMax = max(st.timeMax, tmax) // never backwards
		st.skew = max(st.skew, ix.lastSkew)
		if st.lastEntry == math.MinInt64 || st.timeMax >= st.lastEntry+timeStep {
			st.lastEntry = st.timeMax
			k := st.arena.alloc(8 + len(blockKey))
			binary.BigEndian.PutUint64(k, timeKey(st.timeMax))
			copy(k[8:], blockKey)
			if err := st.b[bTime].Put(k, st.arena.alloc(0)); err != nil {
				return err
			}
		}
	}
	return st.writeState()
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
	if st.at == nil {
		st.at = make(map[uint64]int32)
	}
	clear(st.at)
	var last [7]int32 // per bucket, 1 + the posting added last
	tmax = math.MinInt64
	ix.lastSkew = 0
	runMax := st.timeMax
	// add merges a term's slot into the block's posting of it. The records
	// of a block mostly share their table, user and session (the posting
	// added last), and mostly differ in their record terms (found by hash).
	add := func(bucket int, prefix []byte, slot int) {
		bit := uint64(1) << slot
		if i := last[bucket] - 1; i >= 0 && bytes.Equal(st.posts[i].prefix, prefix) {
			st.posts[i].slots |= bit
			return
		}
		h := postingHash(prefix) ^ uint64(bucket)
		i, ok := st.at[h]
		if ok && (st.posts[i].bucket != bucket || !bytes.Equal(st.posts[i].prefix, prefix)) {
			// Two postings' hashes collide: look for it in every one.
			ok = false
			for j := range st.posts {
				if p := &st.posts[j]; p.bucket == bucket && bytes.Equal(p.prefix, prefix) {
					i, ok = int32(j), true
					break
				}
			}
		}
		if ok {
			st.posts[i].slots |= bit
		} else {
			i = int32(len(st.posts))
			st.posts = append(st.posts, posting{bucket: bucket, prefix: st.arena.copy(prefix), slots: bit})
			if _, taken := st.at[h]; !taken {
				st.at[h] = i
			}
		}
		last[bucket] = i + 1
	}
	// id returns a term's id, the one of the record before when its term
	// is the same (they mostly are).
	type memo struct {
		a, b string
		id   uint32
		ok   bool
		set  bool
	}
	var memos [3]memo // table, user, session
	id := func(m *memo, kind byte, a, b string) (uint32, bool, error) {
		if m != nil && m.set && m.a == a && m.b == b {
			return m.id, m.ok, nil
		}
		var parts []string
		if kind == kindTable {
			parts = []string{a, b}
		} else {
			parts = []string{a}
		}
		var id uint32
		ok := false
		if create {
			var err error
			if id, err = ix.termID(kind, parts...); err != nil {
				return 0, false, err
			}
			ok = true
		} else {
			id, ok = lookupTerm(st.root, kind, parts...)
		}
		if m != nil {
			*m = memo{a: a, b: b, id: id, ok: ok, set: true}
		}
		return id, ok, nil
	}
	buf := make([]byte, 0, 4+1+maxRecordKey+1)
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
		tableID, ok, err := id(&memos[0], kindTable, t.Schema, t.Table)
		if err != nil {
			return nil, 0, err
		}
		if ok {
			buf = binary.BigEndian.AppendUint32(buf[:0], tableID)
			add(bTable, append(buf, byte(t.Op)), slot)
			for _, r := range t.Records {
				add(bRecord, appendRecordPrefix(buf[:4], r), slot)
			}
		}
		// Snapshot records carry no actor: none has user, session or flag
		// postings, so those postings count changes only.
		if t.Op != audit.OpSnapshot {
			for i, term := range [2]struct {
				kind   byte
				s      string
				bucket int
			}{{kindUser, t.User, bUser}, {kindSession, t.Session, bSession}} {
				if term.s == "" {
					continue
				}
				tid, ok, err := id(&memos[1+i], term.kind, term.s, "")
				if err != nil {
					return nil, 0, err
				}
				if ok {
					add(term.bucket, binary.BigEndian.AppendUint32(buf[:0], tid), slot)
				}
			}
			for _, f := range t.Flags {
				tid, ok, err := id(nil, kindFlag, f, "")
				if err != nil {
					return nil, 0, err
				}
				if ok {
					add(bFlag, binary.BigEndian.AppendUint32(buf[:0], tid), slot)
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

// postingHash hashes a posting's prefix to find it again while a block's
// postings are merged (a test makes every hash collide).
var postingHash = func(prefix []byte) uint64 { return maphash.Bytes(postingSeed, prefix) }

var postingSeed = maphash.MakeSeed()

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
	// from there on are in block order. (Removing an entry only makes the
	// time index sparser.)
	c := st.b[bTime].Cursor()
	for tk, _ := c.Seek(binary.BigEndian.AppendUint64(k[:0], timeKey(tmax))); tk != nil; tk, _ = c.Next() {
		switch bytes.Compare(tk[8:], blockKey) {
		case 0:
			return c.Delete()
		case 1:
			return nil // the block has no entry
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
