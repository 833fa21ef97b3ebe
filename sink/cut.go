package sink

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"slices"
	"strconv"
	"time"

	"github.com/cdcaudit/cdcaudit/audit"
	bolt "go.etcd.io/bbolt"
)

// MarkCut is the chain record retention leaves where it removed expired
// events (retention.go). Unlike a gap it admits nothing missing by accident:
// the removal was deliberate, and the cut describes it exactly enough for
// Verify to tell it from any other removal. See docs/event-format.md.
const MarkCut = "cut"

// bucketCuts holds a copy of every cut record, keyed by the cut's key, so
// Verify and Scan know the cuts before they walk the chain (each cut comes
// after the range it describes). Verify compares every copy with the
// record in the chain: a copy alone is worth nothing.
var bucketCuts = []byte("cuts")

// Cut is a cut record, decoded: in the chain, the records with From <= key
// <= To were removed, except Kept records (chain records, and events kept
// by a longer window), whose hashes, in order, hash to KeptHash.
type Cut struct {
	ID       string     // the cut record's own id
	From, To string     // the first and the last record removed
	Removed  uint64     // records removed in the range (all prunes of it)
	Kept     uint64     // records left in the range
	KeptHash audit.Hash // SHA-256 over the hashes of the kept records, in order
	// Before is the prev_hash of the first record removed: the hash of
	// the record (or the Chain of the cut) before the range.
	Before audit.Hash
	// Chain is the hash of the last record removed: the prev_hash of the
	// first record after the range.
	Chain    audit.Hash
	MadeAt   time.Time
	Reason   string
	Replaces string // the cut of the same range this one supersedes ("" for none)

	key, from, to [audit.KeyLen]byte
	record        []byte // the cut record as copied in the cuts bucket
}

// cutJSON is a cut record as stored.
type cutJSON struct {
	ID       string    `json:"id"`
	Op       string    `json:"op"`
	From     string    `json:"from"`
	To       string    `json:"to"`
	Removed  *uint64   `json:"removed"`
	Kept     *uint64   `json:"kept"`
	KeptHash string    `json:"kept_hash"`
	Before   string    `json:"before"`
	Chain    string    `json:"chain"`
	MadeAt   time.Time `json:"made_at"`
	Reason   string    `json:"reason"`
	Replaces string    `json:"replaces"`
}

// cutFields encodes a cut's members for chainBody, in the documented order.
func cutFields(c *Cut) []Field {
	f := []Field{
		StringField("from", c.From),
		StringField("to", c.To),
		{Name: "removed", Value: strconv.AppendUint(nil, c.Removed, 10)},
		{Name: "kept", Value: strconv.AppendUint(nil, c.Kept, 10)},
		StringField("kept_hash", c.KeptHash.String()),
		StringField("before", c.Before.String()),
		StringField("chain", c.Chain.String()),
		{Name: "made_at", Value: append(audit.AppendTime([]byte{'"'}, c.MadeAt), '"')},
		StringField("reason", c.Reason),
	}
	if c.Replaces != "" {
		f = append(f, StringField("replaces", c.Replaces))
	}
	return f
}

// parseCut decodes a cut record (its hash is checked by the caller).
func parseCut(key, record []byte) (*Cut, error) {
	var j cutJSON
	if err := json.Unmarshal(record, &j); err != nil {
		return nil, fmt.Errorf("malformed cut record: %v", err)
	}
	if j.Op != MarkCut || j.Removed == nil || j.Kept == nil {
		return nil, fmt.Errorf("malformed cut record: not op cut, or removed/kept missing")
	}
	c := &Cut{ID: j.ID, From: j.From, To: j.To, Removed: *j.Removed, Kept: *j.Kept, MadeAt: j.MadeAt, Reason: j.Reason, Replaces: j.Replaces}
	if len(key) != audit.KeyLen || keyID(key) != j.ID || !IsChainRecord(key) {
		return nil, fmt.Errorf("cut record %s is stored under key %x", j.ID, key)
	}
	copy(c.key[:], key)
	for _, p := range []struct {
		id  string
		dst *[audit.KeyLen]byte
	}{{j.From, &c.from}, {j.To, &c.to}} {
		lsn, ord, err := audit.ParseID(p.id)
		if err != nil {
			return nil, fmt.Errorf("cut record %s: bad range id %q", j.ID, p.id)
		}
		*p.dst = audit.MakeKey(lsn, ord)
	}
	for _, p := range []struct {
		hex string
		dst *audit.Hash
	}{{j.KeptHash, &c.KeptHash}, {j.Before, &c.Before}, {j.Chain, &c.Chain}} {
		if len(p.hex) != 2*audit.HashLen {
			return nil, fmt.Errorf("cut record %s: bad hash %q", j.ID, p.hex)
		}
		if _, err := hex.Decode(p.dst[:], []byte(p.hex)); err != nil {
			return nil, fmt.Errorf("cut record %s: bad hash %q", j.ID, p.hex)
		}
	}
	switch {
	case bytes.Compare(c.from[:], c.to[:]) > 0:
		return nil, fmt.Errorf("cut record %s: its range %s..%s is reversed", j.ID, j.From, j.To)
	case bytes.Compare(c.to[:], c.key[:]) >= 0:
		return nil, fmt.Errorf("cut record %s: it does not come after its range %s..%s", j.ID, j.From, j.To)
	case c.Removed == 0:
		return nil, fmt.Errorf("cut record %s: it removed nothing", j.ID)
	}
	return c, nil
}

// cutSet is the cuts of a store: all of them (chain order, which is key
// order), and the ones in force — for each range the latest cut of it —
// ordered by range. A set is never changed once published (Store.cuts):
// with makes the next one.
type cutSet struct {
	seq       uint64 // the cuts bucket's sequence it was read at
	all       []*Cut
	effective []*Cut
}

// loadCuts reads the cuts bucket. A copy that does not parse, a cut that
// replaces another range, or overlapping ranges are errors: Verify turns
// them into a broken chain.
func loadCuts(tx *bolt.Tx) (*cutSet, error) {
	cs := &cutSet{}
	b := tx.Bucket(bucketCuts)
	if b == nil {
		return cs, nil
	}
	cs.seq = b.Sequence()
	err := b.ForEach(func(k, v []byte) error {
		c, err := parseCut(k, v)
		if err != nil {
			return err
		}
		c.record = slices.Clone(v)
		return cs.add(c)
	})
	if err != nil {
		return nil, err
	}
	return cs, nil
}

// with returns a new set: cs and the cut c made after its cuts, read at
// the cuts bucket's sequence seq. Pruning publishes it rather than have
// the next reader parse every cut ever made again.
func (cs *cutSet) with(c *Cut, seq uint64) (*cutSet, error) {
	next := &cutSet{seq: seq, all: slices.Clone(cs.all), effective: slices.Clone(cs.effective)}
	if err := next.add(c); err != nil {
		return nil, err
	}
	return next, nil
}

// add adds c, which comes after every cut of cs in the chain: a new range,
// or the replacement of the one in force with the same bounds.
func (cs *cutSet) add(c *Cut) error {
	if n := len(cs.all); n > 0 && bytes.Compare(cs.all[n-1].key[:], c.key[:]) >= 0 {
		return fmt.Errorf("cut %s does not come after cut %s", c.ID, cs.all[n-1].ID)
	}
	i, found := slices.BinarySearchFunc(cs.effective, c.from, func(e *Cut, from [audit.KeyLen]byte) int { return bytes.Compare(e.from[:], from[:]) })
	if c.Replaces != "" {
		if !found || cs.effective[i].ID != c.Replaces {
			i := slices.IndexFunc(cs.all, func(o *Cut) bool { return o.ID == c.Replaces })
			switch {
			case i < 0:
				return fmt.Errorf("cut %s replaces cut %s, which the store does not hold before it", c.ID, c.Replaces)
			case slices.Contains(cs.effective, cs.all[i]):
				return fmt.Errorf("cut %s replaces cut %s but does not describe the same range with more removed", c.ID, c.Replaces)
			default:
				return fmt.Errorf("cut %s is replaced twice", c.Replaces)
			}
		}
		if old := cs.effective[i]; old.to != c.to || old.Before != c.Before || old.Chain != c.Chain || c.Removed <= old.Removed {
			return fmt.Errorf("cut %s replaces cut %s but does not describe the same range with more removed", c.ID, c.Replaces)
		}
		cs.effective[i] = c
	} else {
		if found {
			return fmt.Errorf("cuts %s and %s describe overlapping ranges", cs.effective[i].ID, c.ID)
		}
		if i > 0 && bytes.Compare(c.from[:], cs.effective[i-1].to[:]) <= 0 {
			return fmt.Errorf("cuts %s and %s describe overlapping ranges", cs.effective[i-1].ID, c.ID)
		}
		if i < len(cs.effective) && bytes.Compare(cs.effective[i].from[:], c.to[:]) <= 0 {
			return fmt.Errorf("cuts %s and %s describe overlapping ranges", c.ID, cs.effective[i].ID)
		}
		cs.effective = slices.Insert(cs.effective, i, c)
	}
	cs.all = append(cs.all, c)
	return nil
}

// covering returns the cut in force whose range holds key.
func (cs *cutSet) covering(key []byte) *Cut {
	i, _ := slices.BinarySearchFunc(cs.effective, key, func(c *Cut, k []byte) int { return bytes.Compare(c.to[:], k) })
	if i < len(cs.effective) && bytes.Compare(cs.effective[i].from[:], key) <= 0 {
		return cs.effective[i]
	}
	return nil
}

// linkTarget returns what the prev_hash of the record at key must be when
// the record before it is prevKey with hash prevHash: the Chain of the
// last cut range between them, if any. check is false for a record kept
// inside a cut's range, whose link is not checked (its hash is, by Verify,
// in the cut's kept_hash). Scan's rule; Verify checks more (cutWalk).
func (cs *cutSet) linkTarget(prevKey []byte, prevHash audit.Hash, key []byte) (want audit.Hash, check bool) {
	if cs == nil || len(cs.effective) == 0 {
		return prevHash, true
	}
	if cs.covering(key) != nil {
		return audit.Hash{}, false
	}
	// The last range that ends before key: it lies between the two records
	// when it ends at or after prevKey.
	i, _ := slices.BinarySearchFunc(cs.effective, key, func(c *Cut, k []byte) int { return bytes.Compare(c.to[:], k) })
	if i > 0 && bytes.Compare(cs.effective[i-1].to[:], prevKey) >= 0 {
		return cs.effective[i-1].Chain, true
	}
	return prevHash, true
}

// keptHasher computes a cut's kept_hash.
type keptHasher struct {
	n int
	h []byte // the concatenated hashes
}

func (k *keptHasher) add(h audit.Hash) { k.n++; k.h = append(k.h, h[:]...) }
func (k *keptHasher) sum() audit.Hash  { return sha256.Sum256(k.h) }

// cutWalk is Verify's side of the cuts: fed every record in key order
// (after its hash and key were checked), it says which prev_hash the record
// must have, checks that each range holds exactly the records its cut says
// were kept and that the records around it are the ones it names.
type cutWalk struct {
	cs   *cutSet
	next int  // the next range in force not yet passed
	in   bool // inside cs.effective[next]
	kept keptHasher
	met  map[[audit.KeyLen]byte]bool
	// passed is the last range passed: the prev_hash it asks of the
	// record after it is its chain value.
	passed *Cut
}

func newCutWalk(cs *cutSet) *cutWalk { return &cutWalk{cs: cs, met: map[[audit.KeyLen]byte]bool{}} }

// step returns the prev_hash the record at key must chain to (check false:
// none, it is kept inside a range), given the hash the chain so far ends
// with.
func (w *cutWalk) step(key []byte, prevHash audit.Hash) (want audit.Hash, check bool, err *VerifyError) {
	want = prevHash
	ranges := w.cs.effective
	for w.next < len(ranges) {
		c := ranges[w.next]
		if !w.in {
			if bytes.Compare(key, c.from[:]) < 0 {
				break
			}
			// Entering the range: the record before it must be the one the
			// first removed record chained to.
			if want != c.Before {
				return want, true, &VerifyError{ID: keyID(key), Reason: "the records before cut " + c.ID + "'s range (" + c.From + " … " + c.To +
					") are not the ones it names: a record before the range was removed"}
			}
			w.in, w.kept = true, keptHasher{}
		}
		if bytes.Compare(key, c.to[:]) <= 0 {
			return want, false, nil
		}
		// Past the range: it holds exactly what the cut kept.
		if uint64(w.kept.n) != c.Kept || w.kept.sum() != c.KeptHash {
			return want, true, &VerifyError{ID: c.ID, Reason: fmt.Sprintf("cut %s (%s … %s) kept %d records, but its range holds %d others: records were removed from or added to it",
				c.ID, c.From, c.To, c.Kept, w.kept.n)}
		}
		want, w.in, w.passed = c.Chain, false, c
		w.next++
	}
	return want, true, nil
}

// keep records the hash of a record that step said is kept in a range.
func (w *cutWalk) keep(h audit.Hash) { w.kept.add(h) }

// meet checks a cut record met in the chain against its copy.
func (w *cutWalk) meet(key, record []byte) *VerifyError {
	i, ok := slices.BinarySearchFunc(w.cs.all, key, func(c *Cut, k []byte) int { return bytes.Compare(c.key[:], k) })
	if !ok || !bytes.Equal(w.cs.all[i].record, record) {
		return &VerifyError{ID: keyID(key), Reason: "a cut record that the store's list of cuts does not hold as it is: cuts were altered"}
	}
	w.met[w.cs.all[i].key] = true
	return nil
}

// finish checks that every range was passed and every cut met in the chain.
func (w *cutWalk) finish() *VerifyError {
	if w.next < len(w.cs.effective) {
		c := w.cs.effective[w.next]
		return &VerifyError{ID: c.ID, Reason: "the chain ends inside or before cut " + c.ID + "'s range: records after it were removed"}
	}
	for _, c := range w.cs.all {
		if !w.met[c.key] {
			return &VerifyError{ID: c.ID, Reason: "the store lists cut " + c.ID + ", but the chain does not hold it: a forged cut"}
		}
	}
	return nil
}

// cutsOf returns the store's cut set, reading the bucket again only when a
// cut was made since the cached set was read (in this transaction's view).
func (s *Store) cutsOf(tx *bolt.Tx) (*cutSet, error) {
	cached := s.cuts.Load()
	b := tx.Bucket(bucketCuts)
	if b == nil {
		return &cutSet{}, nil
	}
	if cached != nil && cached.seq == b.Sequence() {
		return cached, nil
	}
	cs, err := loadCuts(tx)
	if err != nil {
		return nil, damaged(s.db.Path(), "its list of cuts: %v: run 'cdcaudit verify'", err)
	}
	s.publishCuts(cs)
	return cs, nil
}

// publishCuts makes cs the cached set unless a newer one is.
func (s *Store) publishCuts(cs *cutSet) {
	for {
		cached := s.cuts.Load()
		if cached != nil && cached.seq >= cs.seq || s.cuts.CompareAndSwap(cached, cs) {
			return
		}
	}
}

// Covering returns the cut in force whose range holds the record id: a
// record retention removed there (or kept).
func (r *VerifyResult) Covering(id string) (Cut, bool) {
	lsn, ord, err := audit.ParseID(id)
	if err != nil {
		return Cut{}, false
	}
	k := audit.MakeKey(lsn, ord)
	for _, c := range r.Cuts {
		if bytes.Compare(k[:], c.from[:]) >= 0 && bytes.Compare(k[:], c.to[:]) <= 0 {
			return c, true
		}
	}
	return Cut{}, false
}
