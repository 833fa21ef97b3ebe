package sink

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"path"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/cdcaudit/cdcaudit/audit"
	bolt "go.etcd.io/bbolt"
)

// Retention says how long events are kept: Default for every table, or the
// window of the first of Tables whose glob matches. A window of 0 keeps
// forever. Pruning removes row events (and snapshot records) whose commit
// time is older than their window, never a chain record or the chain head,
// and leaves a cut in the chain for every batch (cut.go).
type Retention struct {
	Default time.Duration
	Tables  []TableRetention
	// State prunes derived state with the events: for each state bucket,
	// whether a record has expired when everything before cutoff (now
	// minus Default) is gone. Nothing is pruned from state without Default.
	State map[string]StateExpiry
	// Batch bounds the records one transaction looks at (default 4096): the
	// pruner takes the store's write lock once per batch, so appends wait
	// for at most one batch.
	Batch int
	// Now is the clock (default time.Now).
	Now func() time.Time
	// Hold, when set, is asked at the start of every pass what must be
	// kept whatever its age: every record after the key it returns (nil:
	// every record) is kept, named by who holds it (an outbox sink that
	// has not acknowledged it). ok false: nothing is held.
	Hold func() (after []byte, by string, ok bool)
}

// TableRetention is a per-table window: Glob matches a table as
// MatchTable says; Keep 0 keeps forever.
type TableRetention struct {
	Glob string
	Keep time.Duration
}

// MatchTable reports whether a table glob, a path.Match pattern, matches
// "schema.table" or the table name alone: "sale_*", "public.res_*". It is
// the one rule of a query's tables (export's --table), retention's table
// windows and the tables a snapshot copies.
func MatchTable(glob, schema, table string) bool {
	if ok, _ := path.Match(glob, table); ok {
		return true
	}
	ok, _ := path.Match(glob, schema+"."+table)
	return ok
}

// StateExpiry reports whether a derived-state record is history older than
// cutoff (e.g. a session that ended before it).
type StateExpiry func(key, value []byte, cutoff time.Time) bool

// Enabled reports whether anything is ever pruned.
func (r Retention) Enabled() bool {
	if r.Default > 0 {
		return true
	}
	for _, t := range r.Tables {
		if t.Keep > 0 {
			return true
		}
	}
	return false
}

// rule returns the index of the rule for a table (-1: Default).
func (r Retention) rule(schema, table string) int {
	return slices.IndexFunc(r.Tables, func(t TableRetention) bool { return MatchTable(t.Glob, schema, table) })
}

func (r Retention) window(rule int) time.Duration {
	if rule < 0 {
		return r.Default
	}
	return r.Tables[rule].Keep
}

func (r Retention) ruleName(rule int) string {
	if rule < 0 {
		return "default " + FormatWindow(r.Default)
	}
	return r.Tables[rule].Glob + " " + FormatWindow(r.Tables[rule].Keep)
}

// FormatWindow writes a retention window in the largest unit that divides
// it: y (365 days), w, d, h, else Go's notation; 0 is "forever".
func FormatWindow(d time.Duration) string {
	const day = 24 * time.Hour
	for _, u := range []struct {
		n    time.Duration
		unit string
	}{{365 * day, "y"}, {7 * day, "w"}, {day, "d"}, {time.Hour, "h"}, {time.Second, "s"}} {
		if d > 0 && d%u.n == 0 {
			return strconv.FormatInt(int64(d/u.n), 10) + u.unit
		}
	}
	if d == 0 {
		return "forever"
	}
	return d.String()
}

// maxWindow keeps a window within what a time.Duration holds.
const maxWindow = 200 * 365 * 24 * time.Hour

var windowRE = regexp.MustCompile(`^([0-9]+)([a-z]+)$`)

// ParseWindow reads a retention window: a whole number and a unit — s, h,
// d, w or y (365 days) — or "forever" (0).
func ParseWindow(s string) (time.Duration, error) {
	s = strings.TrimSpace(s)
	if s == "forever" {
		return 0, nil
	}
	m := windowRE.FindStringSubmatch(s)
	if m == nil {
		return 0, fmt.Errorf("%q is not a window (want a whole number and a unit: 36h, 400d, 12w, 10y; or forever)", s)
	}
	const day = 24 * time.Hour
	var unit time.Duration
	switch m[2] {
	case "s":
		unit = time.Second
	case "h":
		unit = time.Hour
	case "d":
		unit = day
	case "w":
		unit = 7 * day
	case "y":
		unit = 365 * day
	case "m", "min", "mo":
		return 0, fmt.Errorf("%q: %s is ambiguous (minutes or months?): use h or d", s, m[2])
	default:
		return 0, fmt.Errorf("%q: unknown unit %q (want s, h, d, w or y)", s, m[2])
	}
	n, err := strconv.ParseInt(m[1], 10, 64)
	if err != nil || n <= 0 || n > int64(maxWindow/unit) {
		return 0, fmt.Errorf("%q is out of range (want 1s to 200y; forever to keep)", s)
	}
	return time.Duration(n) * unit, nil
}

// Pruner removes expired events from a store, one bounded batch per write
// transaction. Use it from one goroutine.
type Pruner struct {
	s     *Store
	r     Retention
	batch int
	// Where the last complete pass stopped, and the earliest time a record
	// before it can expire: until then a pass starts there.
	settled    []byte
	settledDue time.Time
	// The pass's hold (Retention.Hold): records after holdAfter are kept.
	held      bool
	holdAfter []byte
	holdBy    string
}

// PruneStats is what one pass did.
type PruneStats struct {
	Removed uint64 // records removed
	Cuts    int    // cuts made (one per batch that removed something)
	LastCut *Cut   // the last of them
	State   int    // derived-state records removed
	// HeldBy names who held back the pass (Retention.Hold): an expired
	// record was kept because it was not acknowledged; HeldSince is the
	// commit time of the oldest such record. "" when nothing was held.
	HeldBy    string
	HeldSince time.Time
}

// NewPruner returns a pruner of a read-write store.
func (s *Store) NewPruner(r Retention) (*Pruner, error) {
	if s.readOnly {
		return nil, errors.New("sink: retention: the store is open read-only")
	}
	for _, t := range r.Tables {
		if _, err := path.Match(t.Glob, ""); err != nil {
			return nil, fmt.Errorf("sink: retention: malformed glob %q", t.Glob)
		}
	}
	if r.Now == nil {
		r.Now = time.Now
	}
	b := r.Batch
	if b <= 0 {
		b = 4096
	}
	return &Pruner{s: s, r: r, batch: b}, nil
}

// pruneRest paces the pruner: after a batch it rests this many times as
// long as the batch took, so that capture has the store (its write lock,
// its fsyncs) and the CPU at least four fifths of the time, even while a
// large backlog is pruned (measured: BenchmarkIngestWhilePruning; a rest
// of 2 cost capture up to a quarter of its rate on a busy 2-core host).
// It still prunes several times faster than an ERP writes.
const pruneRest = 4

// errBusy: there is no room for a cut after the chain head yet (apply).
var errBusy = errors.New("no room for a cut after the chain head")

// busyWait is how long a pass waits, in all, for room for a cut (a
// transaction stored in chunks to complete, the WAL to move) before it
// leaves the rest to the next pass.
const busyWait = 10 * time.Second

// Prune runs one pass: it walks the chain from its start (or from where
// the last pass settled) up to the newest record that can have expired,
// and removes the expired records in batches, each with its cut, then
// the expired derived state.
func (p *Pruner) Prune(ctx context.Context) (stats PruneStats, err error) {
	if !p.r.Enabled() {
		return stats, nil
	}
	now := p.r.Now()
	p.held, p.holdAfter, p.holdBy = false, nil, ""
	if p.r.Hold != nil {
		p.holdAfter, p.holdBy, p.held = p.r.Hold()
	}
	w := &walker{p: p, now: now, rules: map[string]map[string]int{}, minDue: farFuture}
	if p.settled != nil && now.Before(p.settledDue) {
		w.pos, w.minDue = p.settled, p.settledDue
	}
	defer func() {
		if !w.heldSince.IsZero() {
			stats.HeldBy, stats.HeldSince = p.holdBy, w.heldSince
		}
	}()
	busySince := time.Time{}
	for {
		if err := ctx.Err(); err != nil {
			return stats, err
		}
		started := time.Now()
		b, err := w.plan()
		if err != nil {
			return stats, err
		}
		if b != nil {
			cut, n, err := p.apply(b, now)
			if errors.Is(err, errBusy) {
				if busySince.IsZero() {
					busySince = time.Now()
				}
				if time.Since(busySince) > busyWait {
					return stats, nil // the next pass takes it up
				}
				select {
				case <-ctx.Done():
					return stats, ctx.Err()
				case <-time.After(50 * time.Millisecond):
				}
				continue // plan the same batch again
			}
			if err != nil {
				return stats, err
			}
			busySince = time.Time{}
			if cut != nil {
				stats.Removed += n
				stats.Cuts++
				stats.LastCut = cut
				// Pace (pruneRest).
				select {
				case <-ctx.Done():
					return stats, ctx.Err()
				case <-time.After(pruneRest * time.Since(started)):
				}
			}
		}
		w.pos = w.next
		if w.done {
			break
		}
	}
	p.settled, p.settledDue = w.pos, w.minDue
	n, err := p.pruneState(ctx, now)
	stats.State = n
	return stats, err
}

var farFuture = time.Date(9999, 1, 1, 0, 0, 0, 0, time.UTC)

// walker plans a pass's batches.
type walker struct {
	p      *Pruner
	now    time.Time
	rules  map[string]map[string]int // the JSON strings of schema and table → rule
	pos    []byte                    // where the next batch begins (nil: the start)
	next   []byte                    // where the one after it begins
	done   bool                      // the batch planned last is the pass's last
	minDue time.Time                 // the earliest expiry of the records looked at and kept
	// heldSince: the commit time of the oldest expired record the hold
	// kept (zero: none).
	heldSince time.Time
}

// heldKey reports whether the pass's hold keeps the record at key.
func (p *Pruner) heldKey(key []byte) bool {
	return p.held && (p.holdAfter == nil || bytes.Compare(key, p.holdAfter) > 0)
}

// batch is a range of records to prune: [from, to), or the range of a cut
// in force to prune again (recut).
type batch struct {
	from, to []byte
	recut    *Cut
}

// expired reports whether the record at key has expired, under which
// rule; due is when it will (farFuture: never), at its commit time (zero
// when it has none to read). Chain records and the chain head never expire.
func (w *walker) expired(key, rec []byte, head []byte) (exp bool, due time.Time, rule int, at time.Time) {
	if IsChainRecord(key) || bytes.Equal(key, head) {
		return false, farFuture, 0, at
	}
	h, ok := audit.RecordHead(rec)
	if !ok {
		return false, farFuture, 0, at // unreadable: left for verify to report
	}
	// Keyed by the record's own bytes: no allocation once a table is known.
	rule, seen := w.rules[string(h.Schema)][string(h.Table)]
	if !seen {
		rule = w.p.r.rule(h.Names())
		if w.rules[string(h.Schema)] == nil {
			w.rules[string(h.Schema)] = map[string]int{}
		}
		w.rules[string(h.Schema)][string(h.Table)] = rule
	}
	win := w.p.r.window(rule)
	if win <= 0 {
		return false, farFuture, rule, h.CommitTime
	}
	due = h.CommitTime.Add(win)
	if !due.After(w.now) && w.p.heldKey(key) {
		// Expired, but not acknowledged by a sink: kept, and due again
		// now (the next pass looks at it again).
		if w.heldSince.IsZero() || h.CommitTime.Before(w.heldSince) {
			w.heldSince = h.CommitTime
		}
		return false, w.now, rule, h.CommitTime
	}
	return !due.After(w.now), due, rule, h.CommitTime
}

// plan looks, in a read transaction, at the records from w.pos on, and
// returns the next batch with something to remove (nil: none in the stretch
// looked at) and sets w.next and w.done.
func (w *walker) plan() (*batch, error) {
	s := w.p.s
	head, _, _ := s.Head()
	newest := w.now.Add(-w.p.r.Shortest())
	var b *batch
	err := s.view(func(tx *bolt.Tx) error {
		cs, err := s.cutsOf(tx)
		if err != nil {
			return err
		}
		rc := newRecordCursor(tx)
		var k, v []byte
		if w.pos == nil {
			k, v, err = rc.First()
		} else {
			k, v, err = rc.Seek(w.pos)
		}
		if err != nil {
			return err
		}
		if k == nil || bytes.Compare(k, head) >= 0 {
			w.next, w.done = w.pos, true
			return nil
		}
		if c := cs.covering(k); c != nil {
			// A range already cut: cut again when a record it kept expired.
			w.next = nextKey(c.to[:])
			any := false
			for ; k != nil && bytes.Compare(k, c.to[:]) <= 0; k, v, err = rc.Next() {
				exp, due, _, _ := w.expired(k, v, head)
				any = any || exp
				if !exp && due.Before(w.minDue) {
					w.minDue = due
				}
			}
			if err != nil || !any {
				return err
			}
			// Never launder a removal into a new cut: the range must hold
			// what its cut kept.
			seen, err := w.checkRange(tx, c.from[:], w.next, false)
			if err != nil {
				return err
			}
			if uint64(seen.n) != c.Kept || seen.sum() != c.KeptHash {
				return damaged(s.db.Path(), "cut %s's range does not hold the records it kept: pruning stopped (run 'cdcaudit verify')", c.ID)
			}
			b = &batch{from: c.from[:], to: w.next, recut: c}
			return nil
		}
		var limit []byte // the next range in force: a batch stops before it
		if i := nextRange(cs, k); i >= 0 {
			limit = cs.effective[i].from[:]
		}
		from := append([]byte(nil), k...)
		any := false
		for n := 0; ; n++ {
			if k == nil || bytes.Compare(k, head) >= 0 {
				w.done = true
				break
			}
			if n == w.p.batch || limit != nil && bytes.Compare(k, limit) >= 0 {
				break
			}
			exp, due, _, at := w.expired(k, v, head)
			if at.After(newest) {
				w.done = true // nothing from here on can have expired
				break
			}
			any = any || exp
			if !exp && due.Before(w.minDue) {
				w.minDue = due
			}
			if k, v, err = rc.Next(); err != nil {
				return err
			}
		}
		if k == nil {
			w.next = nextKey(head)
		} else {
			w.next = append([]byte(nil), k...)
		}
		if !any {
			return nil
		}
		// Only a sound chain is cut.
		if _, err := w.checkRange(tx, from, w.next, true); err != nil {
			return err
		}
		b = &batch{from: from, to: w.next}
		return nil
	})
	return b, err
}

// checkRange checks the records in [from, to) against their hashes and,
// when linked, their links to each other (a cut must only ever describe a
// sound chain), and returns their hashes.
func (w *walker) checkRange(tx *bolt.Tx, from, to []byte, linked bool) (keptHasher, error) {
	var seen keptHasher
	var prev *audit.Hash
	rc := newRecordCursor(tx)
	k, v, err := rc.Seek(from)
	for ; err == nil && k != nil && bytes.Compare(k, to) < 0; k, v, err = rc.Next() {
		h, err := w.check(k, v, prev)
		if err != nil {
			return seen, err
		}
		if linked {
			prev = &h
		}
		seen.add(h)
	}
	return seen, err
}

// check checks a record against its hash and, when prev is set, its link
// to the record before it: a cut must only ever describe a sound chain.
func (w *walker) check(k, v []byte, prev *audit.Hash) (audit.Hash, error) {
	_, p, h, err := audit.Check(v)
	if err != nil {
		return h, damaged(w.p.s.db.Path(), "record %s does not match its hash: pruning stopped (run 'cdcaudit verify')", keyID(k))
	}
	if prev != nil && p != *prev {
		return h, damaged(w.p.s.db.Path(), "record %s does not chain to the record before it: pruning stopped (run 'cdcaudit verify')", keyID(k))
	}
	return h, nil
}

// nextRange returns the index of the first range in force that begins
// after key (-1: none).
func nextRange(cs *cutSet, key []byte) int {
	for i, c := range cs.effective {
		if bytes.Compare(c.from[:], key) > 0 {
			return i
		}
	}
	return -1
}

// Shortest returns the shortest window of any rule (0: none expires).
func (r Retention) Shortest() time.Duration {
	d := r.Default
	for _, t := range r.Tables {
		if t.Keep > 0 && (d == 0 || t.Keep < d) {
			d = t.Keep
		}
	}
	return d
}

// nextKey returns the smallest key after k.
func nextKey(k []byte) []byte {
	out := append([]byte(nil), k...)
	for i := len(out) - 1; i >= 0; i-- {
		out[i]++
		if out[i] != 0 {
			break
		}
	}
	return out
}

// apply prunes one batch in one write transaction and appends its cut.
func (p *Pruner) apply(b *batch, now time.Time) (*Cut, uint64, error) {
	s := p.s
	s.wmu.Lock()
	defer s.wmu.Unlock()
	if s.done {
		return nil, 0, errors.New("sink: retention: the store is closed")
	}
	st := *s.state.Load()
	// The cut goes just after the head, with ordinal 0: at an LSN no event
	// still to come can have. Every transaction to come commits at or after
	// the checkpoint; while one is stored in chunks, the checkpoint is
	// behind the head. A cut that has no room waits for the WAL to move.
	if hl, _, _ := audit.SplitKey(st.headKey[:]); !st.hasHead || hl+1 > st.checkpoint {
		return nil, 0, errBusy
	}
	var cuts *cutSet
	var removed uint64
	err := s.update(func(tx *bolt.Tx) error {
		var err error
		cuts, removed, err = p.cutBatch(tx, &st, b, now)
		return err
	})
	if errors.Is(err, errNothing) {
		return nil, 0, nil
	}
	if err != nil {
		return nil, 0, err
	}
	s.state.Store(&st)
	s.publishCuts(cuts)
	return cuts.all[len(cuts.all)-1], removed, nil
}

// errNothing rolls back a batch that removed nothing.
var errNothing = errors.New("nothing to prune")

// cutBatch removes the expired records of b and appends the cut, in tx,
// and returns the store's cuts with it.
func (p *Pruner) cutBatch(tx *bolt.Tx, st *state, b *batch, now time.Time) (*cutSet, uint64, error) {
	s := p.s
	cuts, err := s.cutsOf(tx)
	if err != nil {
		return nil, 0, err
	}
	w := &walker{p: p, now: now, rules: map[string]map[string]int{}, minDue: farFuture}
	var (
		checkErr error
		seen     keptHasher // every record of a recut's range, before
		kept     []keptRecord
		first    = true
		before   audit.Hash
		events   uint64
		byRule   = map[int]int{}
		head     = st.headKey[:]
	)
	keep := func(key, rec []byte) bool {
		if checkErr != nil {
			return true
		}
		// The plan checked every record of the range against its hash and
		// its link (outside the lock): the stored values are sound.
		prev, h, ok := audit.Links(rec)
		if !ok {
			checkErr = damaged(s.db.Path(), "record %s is malformed: pruning stopped (run 'cdcaudit verify')", keyID(key))
			return true
		}
		seen.add(h)
		exp, _, rule, _ := w.expired(key, rec, head)
		if !exp {
			kept = append(kept, keptRecord{key: append([]byte(nil), key...), hash: h})
			return true
		}
		if first {
			before, first = prev, false
		}
		if !audit.IsSnapshotRecord(rec) {
			events++
		}
		byRule[rule]++
		return false
	}
	stretches, err := s.rewriteBlocks(tx, b.from, b.to, keep)
	if checkErr != nil {
		return nil, 0, checkErr
	}
	if err != nil {
		return nil, 0, fmt.Errorf("sink: retention: %w", err)
	}
	if len(stretches) == 0 {
		return nil, 0, errNothing
	}
	var removed uint64
	for _, r := range stretches {
		removed += r.Count
	}
	c := &Cut{Removed: removed, MadeAt: now.UTC(), Reason: reason(p.r, byRule)}
	last := stretches[len(stretches)-1]
	if old := b.recut; old != nil {
		// The range's records as they were must be the ones its cut kept:
		// never launder a removal into a new cut.
		if uint64(seen.n) != old.Kept || seen.sum() != old.KeptHash {
			return nil, 0, damaged(s.db.Path(), "cut %s's range does not hold the records it kept: pruning stopped (run 'cdcaudit verify')", old.ID)
		}
		c.From, c.To, c.Before, c.Chain = old.From, old.To, old.Before, old.Chain
		c.Removed += old.Removed
		c.Replaces = old.ID
		c.Reason += " (again: " + old.ID + ")"
	} else {
		c.From, c.To = keyID(stretches[0].First[:]), keyID(last.Last[:])
		c.Before, c.Chain = before, last.LastHash
	}
	var kh keptHasher
	for _, r := range kept {
		if b.recut != nil || bytes.Compare(r.key, stretches[0].First[:]) > 0 && bytes.Compare(r.key, last.Last[:]) < 0 {
			kh.add(r.hash)
		}
	}
	c.Kept, c.KeptHash = uint64(kh.n), kh.sum()

	rec, err := s.appendChainRecord(tx, st, MarkCut, c.MadeAt, cutFields(c))
	if err != nil {
		return nil, 0, err
	}
	cb, err := tx.CreateBucketIfNotExists(bucketCuts)
	if err != nil {
		return nil, 0, err
	}
	seq, err := cb.NextSequence()
	if err != nil {
		return nil, 0, err
	}
	if err := cb.Put(append([]byte(nil), st.headKey[:]...), rec); err != nil {
		return nil, 0, err
	}
	parsed, err := parseCut(st.headKey[:], rec)
	if err != nil {
		return nil, 0, fmt.Errorf("sink: retention: the cut just made does not read back: %w", err)
	}
	parsed.record = rec
	if cuts, err = cuts.with(parsed, seq); err != nil {
		return nil, 0, fmt.Errorf("sink: retention: the cut just made does not fit the store's cuts: %w", err)
	}
	st.count -= min(events, st.count)
	if err := putHead(tx, st); err != nil {
		return nil, 0, err
	}
	return cuts, removed, nil
}

type keptRecord struct {
	key  []byte
	hash audit.Hash
}

// reason says which windows a batch applied.
func reason(r Retention, byRule map[int]int) string {
	var parts []string
	for _, i := range append([]int{-1}, indexes(len(r.Tables))...) {
		if n := byRule[i]; n > 0 {
			parts = append(parts, r.ruleName(i)+" ("+strconv.Itoa(n)+")")
		}
	}
	return "retention: " + strings.Join(parts, ", ")
}

func indexes(n int) []int {
	out := make([]int, n)
	for i := range out {
		out[i] = i
	}
	return out
}

// appendChainRecord seals a chain record at the chain head (as ChainRecord
// places it) and stores it in tx; st is the head to chain to, updated.
func (s *Store) appendChainRecord(tx *bolt.Tx, st *state, op string, at time.Time, fields []Field) ([]byte, error) {
	key := audit.MakeKey(0, 0)
	if hl, _, ok := audit.SplitKey(st.headKey[:]); ok {
		key = audit.MakeKey(hl+1, 0)
	}
	rec, h := audit.Seal(nil, chainBody(key, op, at, fields), st.headHash)
	if err := s.putChainBlock(tx, key[:], rec); err != nil {
		return nil, err
	}
	st.headKey, st.headHash, st.hasHead = key, h, true
	return rec, nil
}

// putChainBlock stores one chain record as a block of its own, bare (as
// the genesis record is), and tells the index.
func (s *Store) putChainBlock(tx *bolt.Tx, key, rec []byte) error {
	if err := tx.Bucket(bucketEvents).Put(append([]byte(nil), key...), rec); err != nil {
		return err
	}
	return s.index.addBlock(tx, key, [][]byte{key}, [][]byte{rec}, []*audit.Terms{nil})
}

// putHead writes the chain head and the event count to meta.
func putHead(tx *bolt.Tx, st *state) error {
	meta := tx.Bucket(bucketMeta)
	for _, kv := range []struct{ k, v []byte }{
		{metaCount, binary.BigEndian.AppendUint64(nil, st.count)},
		{metaHeadKey, append([]byte(nil), st.headKey[:]...)},
		{metaHeadHash, append([]byte(nil), st.headHash[:]...)},
	} {
		if err := meta.Put(kv.k, kv.v); err != nil {
			return err
		}
	}
	return nil
}

// stateBatch bounds the derived-state records removed per transaction.
const stateBatch = 1000

// pruneState removes the derived state that expired with the events.
func (p *Pruner) pruneState(ctx context.Context, now time.Time) (int, error) {
	if p.r.Default <= 0 || len(p.r.State) == 0 {
		return 0, nil
	}
	cutoff := now.Add(-p.r.Default)
	total := 0
	for bucket, expired := range p.r.State {
		for {
			if err := ctx.Err(); err != nil {
				return total, err
			}
			var keys [][]byte
			err := p.s.LoadState(bucket, func(k, v []byte) error {
				if expired(k, v, cutoff) {
					keys = append(keys, append([]byte(nil), k...))
					if len(keys) == stateBatch {
						return errStop
					}
				}
				return nil
			})
			if err != nil && !errors.Is(err, errStop) {
				return total, err
			}
			if len(keys) == 0 {
				break
			}
			n, err := p.s.deleteState(bucket, keys, func(k, v []byte) bool { return expired(k, v, cutoff) })
			total += n
			if err != nil {
				return total, err
			}
			if n == 0 {
				break // they came back to life meanwhile
			}
		}
	}
	return total, nil
}

// deleteState deletes the keys of a state bucket that still qualify.
func (s *Store) deleteState(bucket string, keys [][]byte, still func(k, v []byte) bool) (int, error) {
	s.wmu.Lock()
	defer s.wmu.Unlock()
	n := 0
	err := s.update(func(tx *bolt.Tx) error {
		b := stateBucketOf(tx, bucket)
		if b == nil {
			return nil
		}
		for _, k := range keys {
			if v := b.Get(k); v != nil && still(k, v) {
				if err := b.Delete(k); err != nil {
					return err
				}
				n++
			}
		}
		return nil
	})
	return n, err
}
