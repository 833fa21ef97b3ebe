package sink

import (
	"bytes"
	"fmt"

	"github.com/cdcaudit/cdcaudit/audit"
	bolt "go.etcd.io/bbolt"
)

// removedStretch is a run of consecutive records of the chain that
// rewriteBlocks removed: what a cut must describe.
type removedStretch struct {
	First, Last [audit.KeyLen]byte
	Count       uint64
	LastHash    audit.Hash // the hash of Last: what the record after it chains to
}

// rewriteBlocks removes the records with from <= key < to that keep
// rejects (keep is asked about those only), re-encoding each block that
// loses records without them, under the key of its first remaining record
// (a block left empty is deleted), and telling the index: removeBlock for
// the old block, addBlock for the new, in tx. It returns the stretches of
// consecutive records it removed, in key order. It changes no meta (count,
// head): that is the caller's (a cut), and so is checking the records it
// removes against their hashes: a removed stretch's LastHash is the hash
// stored in its last record. Call it with s.wmu held: it uses the
// writer's encoder.
func (s *Store) rewriteBlocks(tx *bolt.Tx, from, to []byte, keep func(key, rec []byte) bool) ([]removedStretch, error) {
	// The keys of the blocks that may hold records in range, first: the
	// bucket is changed while they are rewritten.
	var blockKeys [][]byte
	c := tx.Bucket(bucketEvents).Cursor()
	k, _ := seekBlock(c, from)
	if k == nil {
		k, _ = c.First()
	}
	for ; k != nil && bytes.Compare(k, to) < 0; k, _ = c.Next() {
		blockKeys = append(blockKeys, bytes.Clone(k))
	}

	if s.enc == nil {
		s.enc = newBlockEncoder()
	}
	enc := s.enc
	defer enc.reset()
	var (
		out  []removedStretch
		open bool // the last record looked at was removed
	)
	for _, bk := range blockKeys {
		var b block
		if err := decodeBlock(&b, bk, tx.Bucket(bucketEvents).Get(bk)); err != nil {
			return out, damaged(tx.DB().Path(), "%v: run 'cdcaudit verify'", err)
		}
		enc.reset()
		removed := 0
		for i, key := range b.keys {
			rec := b.recs[i]
			if bytes.Compare(key, from) < 0 || bytes.Compare(key, to) >= 0 || keep(key, rec) {
				enc.addRecord(key, rec, nil)
				open = false
				continue
			}
			// The caller checked the records it removes (retention's plan
			// checks every record of the range against its hash and link):
			// the stored hash is read, not computed again.
			_, h, ok := audit.Links(rec)
			if !ok {
				return out, damaged(tx.DB().Path(), "record %s is malformed (damaged or altered): run 'cdcaudit verify'", keyID(key))
			}
			if !open {
				out = append(out, removedStretch{First: [audit.KeyLen]byte(key)})
				open = true
			}
			st := &out[len(out)-1]
			st.Last, st.LastHash = [audit.KeyLen]byte(key), h
			st.Count++
			removed++
		}
		if removed == 0 {
			continue
		}
		if err := s.index.removeBlock(tx, bk, b.keys, b.recs); err != nil {
			return out, fmt.Errorf("sink: unindex block %s: %w", keyID(bk), err)
		}
		if err := deleteBlock(tx, bk); err != nil {
			return out, fmt.Errorf("sink: delete block %s: %w", keyID(bk), err)
		}
		if enc.len() == 0 {
			continue
		}
		keys, recs := enc.slices()
		if err := s.writeBlock(tx, keys, recs, enc.terms, enc.encode()); err != nil {
			return out, err
		}
	}
	return out, nil
}
