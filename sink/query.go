package sink

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"fmt"
	"math/bits"
	"path"
	"slices"
	"strings"
	"time"

	"github.com/cdcaudit/cdcaudit/audit"
	bolt "go.etcd.io/bbolt"
)

// Query selects row events; its zero value selects every change (snapshot
// records only when Ops lists audit.OpSnapshot). Every filter given must
// hold.
type Query struct {
	Since, Until time.Time // commit_time in [Since, Until); a zero bound is open
	// Tables are path.Match globs on "table" or "schema.table" (export's
	// rule): "sale_*", "public.res_*".
	Tables []string
	// Ops selects operations; snapshot records (rows as read, not
	// changes) only when it lists audit.OpSnapshot.
	Ops []audit.Op
	// User is the actor's login, or "#<user_id>" for an actor known by id
	// only (audit.UserTerm).
	User string
	// Session is the actor's session pseudonym.
	Session string
	// Flag is one of the event's flags (e.g. "orm_bypass").
	Flag string
	// Record selects the events of one record: those whose key, or whose
	// before-image's key on an update that changed it, matches (the rule of
	// audit.RecordKey.Matches).
	Record *audit.RecordRef
	Desc   bool // newest first (default: commit order)
	// Limit is the most events one call hands on (0: no limit). When it
	// stops a call, Query returns a cursor for the next page.
	Limit int
	// Cursor continues a previous call of the same query ("" = start).
	Cursor string
}

// ErrCursor is returned for a cursor that another query (other filters or
// another order) returned, or that is not a cursor at all.
var ErrCursor = errors.New("cursor does not belong to this query")

// Query calls fn with the events q selects, in commit order (newest first
// with Desc), inside one read transaction: key and record are valid only
// during the call. It picks the most selective index (record, session,
// user, flag, table, time) and checks every other filter on the record;
// each record handed on is checked first, as Scan checks them (its hash
// and its key, and its link to the records beside it where Query reads
// the records in a row). fn's error stops Query and is returned.
//
// When Limit stopped it, next is the cursor of the following page (which
// may be empty); "" when every event was handed on. While the indexes are
// being built (IndexComplete), Query reads every event instead: slower,
// the same answer.
func (s *Store) Query(ctx context.Context, q Query, fn func(key, record []byte) error) (next string, err error) {
	p, err := newPlan(q)
	if err != nil {
		return "", err
	}
	fn = guarded(fn)
	err = s.view(func(tx *bolt.Tx) error {
		r := &run{s: s, p: p, tx: tx, ctx: ctx, fn: fn}
		if err := r.exec(); err != nil {
			return err
		}
		if r.full {
			next = p.cursor(r.last)
		}
		return nil
	})
	if err != nil {
		return "", err
	}
	return next, nil
}

// Count returns how many events Query would hand on in all (Limit, Cursor
// and Desc do not count). When one index alone answers (only a user, a
// session or a flag; only tables and ops; or nothing), it adds up the
// postings without reading events.
func (s *Store) Count(ctx context.Context, q Query) (uint64, error) {
	q.Limit, q.Cursor, q.Desc = 0, "", false
	p, err := newPlan(q)
	if err != nil {
		return 0, err
	}
	var n uint64
	err = s.view(func(tx *bolt.Tx) error {
		if root := indexRoot(tx); root != nil {
			counted, ok, err := p.countFromIndex(tx, root)
			if ok || err != nil {
				n = counted
				return err
			}
		}
		r := &run{s: s, p: p, tx: tx, ctx: ctx, fn: func(_, _ []byte) error { n++; return nil }}
		return r.exec()
	})
	return n, err
}

// plan is a checked query.
type plan struct {
	q         Query
	ops       uint32 // bit per op; 0: every change
	snapshots bool
	recTerm   []byte
	namedOne  bool // Record names its one key column: the name must match too
	parse     bool // a filter needs the record's terms
	after     []byte
	sum       [8]byte // the filters' fingerprint, bound into cursors
}

func newPlan(q Query) (*plan, error) {
	p := &plan{q: q}
	for _, pat := range q.Tables {
		if _, err := path.Match(pat, ""); err != nil {
			return nil, fmt.Errorf("sink: query: bad table pattern %q: %w", pat, err)
		}
	}
	for _, o := range q.Ops {
		if o < audit.OpInsert || o > audit.OpSnapshot {
			return nil, fmt.Errorf("sink: query: unknown op %d", o)
		}
		p.ops |= 1 << o
	}
	p.snapshots = p.ops&(1<<audit.OpSnapshot) != 0
	if r := q.Record; r != nil {
		if r.Schema == "" || r.Table == "" || len(r.Key) == 0 {
			return nil, errors.New("sink: query: a record needs a schema, a table and a key")
		}
		p.recTerm = r.Term()
		p.namedOne = len(r.Key) == 1 && r.Key[0].Column != ""
	}
	if q.Limit < 0 {
		return nil, fmt.Errorf("sink: query: negative limit %d", q.Limit)
	}
	if !q.Since.IsZero() && !q.Until.IsZero() && !q.Since.Before(q.Until) {
		return nil, fmt.Errorf("sink: query: since %s is not before until %s", q.Since.Format(time.RFC3339Nano), q.Until.Format(time.RFC3339Nano))
	}
	p.parse = !q.Since.IsZero() || !q.Until.IsZero() || len(q.Tables) > 0 || len(q.Ops) > 0 ||
		q.User != "" || q.Session != "" || q.Flag != "" || q.Record != nil
	p.sum = fingerprint(q, p.recTerm, p.namedOne)
	if q.Cursor != "" {
		b, err := base64.RawURLEncoding.DecodeString(q.Cursor)
		if err != nil || len(b) != 2+len(p.sum)+audit.KeyLen || b[0] != cursorVersion {
			return nil, fmt.Errorf("sink: query: %w (malformed)", ErrCursor)
		}
		if (b[1] == 1) != q.Desc || !bytes.Equal(b[2:2+len(p.sum)], p.sum[:]) {
			return nil, fmt.Errorf("sink: query: %w", ErrCursor)
		}
		p.after = b[2+len(p.sum):]
	}
	return p, nil
}

const cursorVersion = 1

// CursorAfter returns the cursor that continues q in commit order after the
// record at key (a store key, of any record), as if a page of q had ended
// there: for a reader that follows the store from a point it knows (the
// API's event stream).
func (q Query) CursorAfter(key []byte) (string, error) {
	if len(key) != audit.KeyLen {
		return "", fmt.Errorf("sink: query: a store key has %d bytes, not %d", audit.KeyLen, len(key))
	}
	q.Cursor, q.Desc = "", false
	p, err := newPlan(q)
	if err != nil {
		return "", err
	}
	return p.cursor(key), nil
}

// cursor encodes the position after key for this query.
func (p *plan) cursor(key []byte) string {
	b := make([]byte, 0, 2+len(p.sum)+audit.KeyLen)
	b = append(b, cursorVersion, 0)
	if p.q.Desc {
		b[1] = 1
	}
	b = append(append(b, p.sum[:]...), key...)
	return base64.RawURLEncoding.EncodeToString(b)
}

// fingerprint hashes what a query selects (its order is in the cursor).
func fingerprint(q Query, recTerm []byte, namedOne bool) [8]byte {
	h := sha256.New()
	var b []byte
	str := func(s string) {
		b = binary.AppendUvarint(b, uint64(len(s)))
		b = append(b, s...)
	}
	tm := func(t time.Time) {
		if t.IsZero() {
			b = append(b, 0)
			return
		}
		b = append(b, 1)
		b = binary.BigEndian.AppendUint64(b, uint64(t.UnixNano()))
	}
	tm(q.Since)
	tm(q.Until)
	tables := slices.Clone(q.Tables)
	slices.Sort(tables)
	tables = slices.Compact(tables)
	b = binary.AppendUvarint(b, uint64(len(tables)))
	for _, t := range tables {
		str(t)
	}
	var ops uint32
	for _, o := range q.Ops {
		ops |= 1 << o
	}
	b = binary.BigEndian.AppendUint32(b, ops)
	str(q.User)
	str(q.Session)
	str(q.Flag)
	if q.Record != nil {
		b = append(b, 1)
		if namedOne {
			str(q.Record.Key[0].Column)
		}
		str(string(recTerm))
	} else {
		b = append(b, 0)
	}
	h.Write(b)
	var sum [8]byte
	copy(sum[:], h.Sum(nil))
	return sum
}

// match reports whether a record passes the filters.
func (p *plan) match(key, rec []byte) (bool, error) {
	if IsChainRecord(key) {
		return false, nil
	}
	if !p.snapshots && audit.IsSnapshotRecord(rec) {
		return false, nil
	}
	if !p.parse {
		return true, nil
	}
	t, err := audit.ParseTerms(rec)
	if err != nil {
		return false, fmt.Errorf("record %s: %w", keyID(key), err)
	}
	q := &p.q
	switch {
	case !q.Since.IsZero() && t.CommitTime.Before(q.Since),
		!q.Until.IsZero() && !t.CommitTime.Before(q.Until),
		p.ops != 0 && p.ops&(1<<t.Op) == 0,
		q.User != "" && t.User != q.User,
		q.Session != "" && t.Session != q.Session,
		q.Flag != "" && !slices.Contains(t.Flags, q.Flag),
		len(q.Tables) > 0 && !tableMatches(q.Tables, t.Schema, t.Table),
		p.recTerm != nil && !slices.ContainsFunc(t.Records, func(r []byte) bool { return bytes.Equal(r, p.recTerm) }):
		return false, nil
	}
	if p.namedOne {
		return q.Record.Matches(rec)
	}
	return true, nil
}

func tableMatches(globs []string, schema, table string) bool {
	return slices.ContainsFunc(globs, func(g string) bool { return MatchTable(g, schema, table) })
}

// changeOps are the ops a query without Ops selects.
var changeOps = []audit.Op{audit.OpInsert, audit.OpUpdate, audit.OpDelete, audit.OpTruncate}

// maxStreams bounds the posting lists one query merges (tables × ops);
// beyond it, reading the records is cheaper.
const maxStreams = 256

// streams returns the posting lists the most selective index has for the
// query: ok is false when no index applies (read the records); an empty
// list means no event can match.
func (p *plan) streams(root *bolt.Bucket) (bucket []byte, prefixes [][]byte, ok bool) {
	q := &p.q
	id := func(kind byte, s string) [][]byte {
		if id, ok := lookupTerm(root, kind, s); ok {
			return [][]byte{binary.BigEndian.AppendUint32(nil, id)}
		}
		return nil
	}
	switch {
	case q.Record != nil:
		tid, ok := lookupTerm(root, kindTable, q.Record.Schema, q.Record.Table)
		if !ok {
			return ixRecord, nil, true
		}
		pre := binary.BigEndian.AppendUint32(nil, tid)
		return ixRecord, [][]byte{appendRecordPrefix(pre, p.recTerm)}, true
	case q.Session != "":
		return ixSession, id(kindSession, q.Session), true
	case q.User != "":
		return ixUser, id(kindUser, q.User), true
	case q.Flag != "":
		return ixFlag, id(kindFlag, q.Flag), true
	case len(q.Tables) > 0 || len(q.Ops) > 0:
		ops := slices.Clone(q.Ops)
		if len(ops) == 0 {
			ops = slices.Clone(changeOps)
		}
		slices.Sort(ops)
		ops = slices.Compact(ops)
		c := root.Bucket(ixTerms).Cursor()
		for k, v := c.Seek([]byte{kindTable}); k != nil && k[0] == kindTable; k, v = c.Next() {
			schema, table, ok := strings.Cut(string(k[1:]), "\x00")
			if !ok || len(v) != 4 || len(q.Tables) > 0 && !tableMatches(q.Tables, schema, table) {
				continue
			}
			for _, o := range ops {
				prefixes = append(prefixes, append(slices.Clone(v), byte(o)))
			}
			if len(prefixes) > maxStreams {
				return nil, nil, false
			}
		}
		return ixTable, prefixes, true
	}
	return nil, nil, false
}

// countFromIndex counts from the postings alone when one index answers
// the whole query; ok is false when it cannot.
func (p *plan) countFromIndex(tx *bolt.Tx, root *bolt.Bucket) (n uint64, ok bool, err error) {
	q := &p.q
	if !q.Since.IsZero() || !q.Until.IsZero() || q.Record != nil {
		return 0, false, nil
	}
	given := 0
	for _, s := range []string{q.User, q.Session, q.Flag} {
		if s != "" {
			given++
		}
	}
	tablesOrOps := len(q.Tables) > 0 || len(q.Ops) > 0
	switch {
	case given == 0 && !tablesOrOps:
		return getUint64(tx.Bucket(bucketMeta), metaCount), true, nil // row events, snapshots aside
	case given == 1 && !tablesOrOps, given == 0 && tablesOrOps:
		// User, session and flag postings are changes only; table postings
		// are per op.
	default:
		return 0, false, nil
	}
	bucket, prefixes, ok := p.streams(root)
	if !ok {
		return 0, false, nil
	}
	b := root.Bucket(bucket)
	for _, pre := range prefixes {
		c := b.Cursor()
		for k, v := c.Seek(pre); k != nil && bytes.HasPrefix(k, pre); k, v = c.Next() {
			set, err := decodeSlots(v)
			if err != nil {
				return 0, false, indexDamaged(k, err)
			}
			n += uint64(bits.OnesCount64(set))
		}
	}
	return n, true, nil
}

func indexDamaged(k []byte, err error) error {
	return fmt.Errorf("sink: index entry %x: %v (the indexes are damaged: run 'cdcaudit reindex')", k, err)
}

// run is one execution of a plan.
type run struct {
	s   *Store
	p   *plan
	tx  *bolt.Tx
	ctx context.Context
	fn  func(key, record []byte) error

	lo, hi []byte // the block keys the time range allows: [lo, hi), nil = open
	n      int    // events handed on
	seen   int    // records looked at
	last   []byte // the last key handed on
	full   bool   // Limit reached
	blk    block  // the block being handed on
}

// errStop ends a run early (Limit reached).
var errStop = errors.New("stop")

func (r *run) exec() error {
	if err := r.ctx.Err(); err != nil {
		return err
	}
	var (
		bucket   []byte
		prefixes [][]byte
		indexed  bool
	)
	if root := indexRoot(r.tx); root != nil {
		if empty := r.timeBounds(root); empty {
			return nil
		}
		bucket, prefixes, indexed = r.p.streams(root)
		if indexed && len(prefixes) == 0 {
			return nil
		}
		if indexed {
			err := r.postings(root.Bucket(bucket), prefixes)
			if err == errStop {
				err = nil
			}
			return err
		}
	}
	err := r.records()
	if err == errStop {
		err = nil
	}
	return err
}

// timeBounds narrows [lo, hi) to the blocks that can hold events of the
// query's time range (see the time index in index.go); empty when none
// can.
func (r *run) timeBounds(root *bolt.Bucket) (empty bool) {
	q := &r.p.q
	if q.Since.IsZero() && q.Until.IsZero() {
		return false
	}
	c := root.Bucket(ixTime).Cursor()
	if !q.Since.IsZero() {
		// From the last entry before Since: the blocks up to it hold
		// nothing at or after Since (its own records are checked).
		k, _ := c.Seek(binary.BigEndian.AppendUint64(nil, timeKey(ceilMicro(q.Since))))
		if k == nil {
			k, _ = c.Last()
		} else {
			k, _ = c.Prev()
		}
		if k != nil {
			r.lo = slices.Clone(k[8:])
		}
	}
	if !q.Until.IsZero() {
		var skew int64
		if v := root.Get(ixState); len(v) == stateLen {
			skew = int64(binary.BigEndian.Uint64(v[audit.KeyLen+8:]))
		}
		// Up to the block of the first entry at or past Until+skew: the
		// blocks after it hold nothing before Until.
		if k, _ := c.Seek(binary.BigEndian.AppendUint64(nil, timeKey(ceilMicro(q.Until)+skew))); k != nil {
			if next := queryNextBlock(r.tx, k[8:]); next != nil {
				r.hi = slices.Clone(next)
			}
		}
	}
	return r.lo != nil && r.hi != nil && bytes.Compare(r.lo, r.hi) >= 0
}

// ceilMicro is t in µs since the epoch, rounded up.
func ceilMicro(t time.Time) int64 {
	us := t.UnixMicro()
	if t.Nanosecond()%1000 != 0 {
		us++
	}
	return us
}

// inRange reports whether a record key is inside the run's bounds (time
// blocks and cursor); past reports that it is beyond them in the run's
// direction, so that nothing further can be.
func (r *run) inRange(k []byte) (in, past bool) {
	desc := r.p.q.Desc
	if r.hi != nil && bytes.Compare(k, r.hi) >= 0 {
		return false, !desc
	}
	if r.lo != nil && bytes.Compare(k, r.lo) < 0 {
		return false, desc
	}
	if a := r.p.after; a != nil {
		if c := bytes.Compare(k, a); desc && c >= 0 || !desc && c <= 0 {
			return false, false
		}
	}
	return true, false
}

// emit hands a checked record on if it matches.
func (r *run) emit(k, v []byte) error {
	r.seen++
	if r.seen%256 == 0 {
		if err := r.ctx.Err(); err != nil {
			return err
		}
	}
	ok, err := r.p.match(k, v)
	if err != nil || !ok {
		return err
	}
	if err := r.fn(k, v); err != nil {
		return err
	}
	r.n++
	r.last = append(r.last[:0], k...)
	if r.p.q.Limit > 0 && r.n >= r.p.q.Limit {
		r.full = true
		return errStop
	}
	return nil
}

// records reads the records in key order (the time bounds and the cursor
// narrowing the range), checking each, and its link to the one before.
func (r *run) records() error {
	rc := newRecordCursor(r.tx)
	desc := r.p.q.Desc
	var k, v []byte
	var err error
	switch {
	case !desc && r.p.after != nil && (r.lo == nil || bytes.Compare(r.p.after, r.lo) >= 0):
		if k, v, err = rc.Seek(r.p.after); err == nil && k != nil && bytes.Equal(k, r.p.after) {
			k, v, err = rc.Next()
		}
	case !desc && r.lo != nil:
		k, v, err = rc.Seek(r.lo)
	case !desc:
		k, v, err = rc.First()
	default:
		end := r.hi
		if a := r.p.after; a != nil && (end == nil || bytes.Compare(a, end) < 0) {
			end = a
		}
		if end == nil {
			k, v, err = rc.Last()
		} else if k, v, err = rc.Seek(end); err == nil {
			if k == nil {
				k, v, err = rc.Last()
			} else {
				k, v, err = rc.Prev()
			}
		}
	}
	if err != nil {
		return err
	}
	cuts, err := r.s.cutsOf(r.tx) // retention's cuts: links that legitimately skip
	if err != nil {
		return err
	}
	var (
		linked  bool
		link    audit.Hash         // asc: the hash the record must chain to; desc: the later record's prev_hash
		near    [audit.KeyLen]byte // asc: the record read before; desc: the later one
		laterID string             // desc: the record read before (the later one)
	)
	for ; err == nil && k != nil; k, v, err = r.step(rc) {
		in, past := r.inRange(k)
		if past {
			return nil
		}
		if !in {
			linked = false
			continue
		}
		prev, h, err := checkStored(r.s.db.Path(), k, v)
		if err != nil {
			return err
		}
		if linked {
			ok := true
			if desc {
				want, check := cuts.linkTarget(k, h, near[:])
				ok = !check || want == link
			} else {
				want, check := cuts.linkTarget(near[:], link, k)
				ok = !check || want == prev
			}
			if !ok {
				at := keyID(k)
				if desc {
					at = laterID // the record whose link is wrong, as Scan names it
				}
				return damaged(r.s.db.Path(), "record %s does not chain to the record before it (removed, inserted or damaged records): run 'cdcaudit verify'", at)
			}
		}
		linked = true
		copy(near[:], k)
		if desc {
			link, laterID = prev, keyID(k)
		} else {
			link = h
		}
		if err := r.emit(k, v); err != nil {
			return err
		}
	}
	return err
}

func (r *run) step(rc *recordCursor) ([]byte, []byte, error) {
	if r.p.q.Desc {
		return rc.Prev()
	}
	return rc.Next()
}

// stream is one posting list being merged.
type stream struct {
	c      *bolt.Cursor
	prefix []byte
	bk     []byte // the current block key; nil when done
	set    uint64
}

// postings reads the blocks the posting lists name, in block order (the
// union of the lists), and hands on the records of the slots they list.
func (r *run) postings(b *bolt.Bucket, prefixes [][]byte) error {
	desc := r.p.q.Desc
	ss := make([]*stream, 0, len(prefixes))
	for _, pre := range prefixes {
		st := &stream{c: b.Cursor(), prefix: pre}
		if err := r.position(st); err != nil {
			return err
		}
		if st.bk != nil {
			ss = append(ss, st)
		}
	}
	for len(ss) > 0 {
		// The next block of all lists, and every list's slots in it.
		var bk []byte
		for _, st := range ss {
			if c := bytes.Compare(st.bk, bk); bk == nil || !desc && c < 0 || desc && c > 0 {
				bk = st.bk
			}
		}
		bk = slices.Clone(bk)
		var set uint64
		live := ss[:0]
		for _, st := range ss {
			if bytes.Equal(st.bk, bk) {
				set |= st.set
				if err := r.advance(st); err != nil {
					return err
				}
			}
			if st.bk != nil {
				live = append(live, st)
			}
		}
		ss = live
		if err := r.block(bk, set); err != nil {
			return err
		}
	}
	return nil
}

// position puts a list at its first block in the run's direction.
func (r *run) position(st *stream) error {
	desc := r.p.q.Desc
	seek := func(k []byte) []byte { return append(slices.Clone(st.prefix), k...) }
	var k, v []byte
	if !desc {
		from := r.lo
		if a := r.p.after; a != nil && (from == nil || bytes.Compare(a, from) > 0) {
			from = a
		}
		key := seek(from)
		k, v = st.c.Seek(key)
		if from != nil && (k == nil || !bytes.Equal(k, key)) {
			// The block before may hold records from `from` on.
			var pk, pv []byte
			if k == nil {
				pk, pv = st.c.Last()
			} else {
				pk, pv = st.c.Prev()
			}
			if pk != nil && bytes.HasPrefix(pk, st.prefix) {
				k, v = pk, pv
			} else {
				k, v = st.c.Seek(key)
			}
		}
	} else {
		end := r.hi
		if a := r.p.after; a != nil && (end == nil || bytes.Compare(a, end) < 0) {
			end = a
		}
		var key []byte
		if end != nil {
			key = seek(end)
		} else {
			key = prefixEnd(st.prefix)
		}
		if key == nil {
			k, v = st.c.Last()
		} else if k, v = st.c.Seek(key); k == nil {
			k, v = st.c.Last()
		} else {
			k, v = st.c.Prev()
		}
	}
	return r.load(st, k, v)
}

// prefixEnd is the first key after every key with the prefix (nil: none).
func prefixEnd(prefix []byte) []byte {
	end := slices.Clone(prefix)
	for i := len(end) - 1; i >= 0; i-- {
		if end[i]++; end[i] != 0 {
			return end[:i+1]
		}
	}
	return nil
}

func (r *run) advance(st *stream) error {
	var k, v []byte
	if r.p.q.Desc {
		k, v = st.c.Prev()
	} else {
		k, v = st.c.Next()
	}
	return r.load(st, k, v)
}

// load makes k the list's current block, or ends the list when k is not
// one of its entries or lies beyond the run's bounds.
func (r *run) load(st *stream, k, v []byte) error {
	st.bk = nil
	if k == nil || !bytes.HasPrefix(k, st.prefix) || len(k) != len(st.prefix)+audit.KeyLen {
		return nil
	}
	bk := k[len(st.prefix):]
	if r.p.q.Desc {
		if r.lo != nil && bytes.Compare(bk, r.lo) < 0 {
			return nil // lo is a block's first key: blocks before it end before it
		}
	} else if r.hi != nil && bytes.Compare(bk, r.hi) >= 0 {
		return nil
	}
	set, err := decodeSlots(v)
	if err != nil {
		return indexDamaged(k, err)
	}
	st.bk, st.set = bk, set
	return nil
}

// queryReadBlock and queryNextBlock read blocks for Query (a test reads
// blocks of its own making through them).
var (
	queryReadBlock = readBlockInto
	queryNextBlock = nextBlockKey
)

// readBlockInto decodes the block at bk into b (no records when there is
// none): a run decodes every block into its own buffers, which fn's
// records may use only during the call.
func readBlockInto(tx *bolt.Tx, bk []byte, b *block) (keys, records [][]byte, err error) {
	v := tx.Bucket(bucketEvents).Get(bk)
	if v == nil {
		return nil, nil, nil
	}
	if err := decodeBlock(b, bk, v); err != nil {
		return nil, nil, err
	}
	return b.keys, b.recs, nil
}

// block hands on the records of the slots set of a block, checked.
func (r *run) block(bk []byte, set uint64) error {
	keys, records, err := queryReadBlock(r.tx, bk, &r.blk)
	if err != nil {
		return err
	}
	if len(keys) == 0 || bits.Len64(set) > len(keys) {
		return indexDamaged(bk, fmt.Errorf("no such block or slot (block of %d records, slots %b)", len(keys), set))
	}
	for set != 0 {
		var slot int
		if r.p.q.Desc {
			slot = bits.Len64(set) - 1
		} else {
			slot = bits.TrailingZeros64(set)
		}
		set &^= 1 << slot
		k, v := keys[slot], records[slot]
		if in, past := r.inRange(k); past {
			return errStop
		} else if !in {
			continue
		}
		if _, _, err := checkStored(r.s.db.Path(), k, v); err != nil {
			return err
		}
		if err := r.emit(k, v); err != nil {
			return err
		}
	}
	return nil
}
