package sink

import (
	"bytes"

	"github.com/cdcaudit/cdcaudit/audit"
	bolt "go.etcd.io/bbolt"
)

// recordCursor walks the stored records (row events and chain records) in
// key order inside one transaction, whatever their on-disk form (block.go):
// every reader of the events bucket goes through it. key and record are
// valid only until the cursor moves or the transaction ends; a nil key
// means the end was reached. A block that cannot be decoded is an error
// wrapping ErrDamaged (a *blockError naming the block); the cursor is then
// spent.
type recordCursor struct {
	c   *bolt.Cursor
	blk block // the current block, decoded once
	i   int   // the current record's slot in blk
}

func newRecordCursor(tx *bolt.Tx) *recordCursor {
	return &recordCursor{c: tx.Bucket(bucketEvents).Cursor()}
}

// load decodes the block at k (none when k is nil) and stands on slot i
// (-1: its last).
func (rc *recordCursor) load(k, v []byte, i int) (key, record []byte, err error) {
	if k == nil {
		rc.blk.keys, rc.blk.recs = rc.blk.keys[:0], rc.blk.recs[:0]
		return nil, nil, nil
	}
	if err := decodeBlock(&rc.blk, k, v); err != nil {
		return nil, nil, err
	}
	if i < 0 {
		i = len(rc.blk.keys) - 1
	}
	rc.i = i
	return rc.blk.keys[i], rc.blk.recs[i], nil
}

func (rc *recordCursor) First() (key, record []byte, err error) {
	k, v := rc.c.First()
	return rc.load(k, v, 0)
}

func (rc *recordCursor) Last() (key, record []byte, err error) {
	k, v := rc.c.Last()
	return rc.load(k, v, -1)
}

// Seek moves to the first record whose key is >= key.
func (rc *recordCursor) Seek(key []byte) (k, record []byte, err error) {
	k, v := rc.c.Seek(key)
	if k != nil && bytes.Equal(k, key) {
		return rc.load(k, v, 0)
	}
	// The block before the one at or after key may hold it, or records
	// after it.
	var pk, pv []byte
	if k == nil {
		pk, pv = rc.c.Last()
	} else {
		pk, pv = rc.c.Prev()
	}
	if pk != nil && !isBare(pv) {
		if err := decodeBlock(&rc.blk, pk, pv); err != nil {
			return nil, nil, err
		}
		for i, bk := range rc.blk.keys {
			if bytes.Compare(bk, key) >= 0 {
				rc.i = i
				return bk, rc.blk.recs[i], nil
			}
		}
	}
	if pk != nil {
		k, v = rc.c.Next()
	}
	return rc.load(k, v, 0)
}

func (rc *recordCursor) Next() (key, record []byte, err error) {
	if rc.i+1 < len(rc.blk.keys) {
		rc.i++
		return rc.blk.keys[rc.i], rc.blk.recs[rc.i], nil
	}
	k, v := rc.c.Next()
	return rc.load(k, v, 0)
}

func (rc *recordCursor) Prev() (key, record []byte, err error) {
	if rc.i > 0 && rc.i-1 < len(rc.blk.keys) {
		rc.i--
		return rc.blk.keys[rc.i], rc.blk.recs[rc.i], nil
	}
	k, v := rc.c.Prev()
	return rc.load(k, v, -1)
}

// seekBlock puts c on the block that holds key if any does: the block
// stored under key, or else the one before it (none: nil).
func seekBlock(c *bolt.Cursor, key []byte) (k, v []byte) {
	k, v = c.Seek(key)
	switch {
	case k != nil && bytes.Equal(k, key):
		return k, v
	case k == nil:
		return c.Last()
	}
	return c.Prev()
}

// blockOf finds the block that holds key: its key and stored value, and
// key's slot in it (-1 when the store does not hold key). It reads block
// headers only.
func blockOf(tx *bolt.Tx, key []byte) (blockKey, v []byte, slot int, err error) {
	k, v := seekBlock(tx.Bucket(bucketEvents).Cursor(), key)
	if k == nil {
		return nil, nil, -1, nil
	}
	slot, err = blockHas(k, v, key)
	return k, v, slot, err
}

// hasRecord reports whether the store holds a record under key, reading
// block headers only.
func hasRecord(tx *bolt.Tx, key []byte) (bool, error) {
	_, _, slot, err := blockOf(tx, key)
	return slot >= 0, err
}

// getRecord returns the record stored under key (nil when there is none),
// valid for the transaction: never modify it (it may be the stored bytes).
func getRecord(tx *bolt.Tx, key []byte) ([]byte, error) {
	bk, v, slot, err := blockOf(tx, key)
	if err != nil || slot < 0 {
		return nil, err
	}
	_, recs, err := decodeOwn(bk, v)
	if err != nil {
		return nil, err
	}
	return recs[slot], nil
}

// A block is the unit records are stored in: a run of consecutive records
// of the chain written by one Append, stored under the key of its first
// record (block.go). Each record has a slot: its position in its block.

// readBlock returns the keys and records of the block stored under
// blockKey (none when there is no such block), valid for the transaction:
// never modify them (they may be the stored bytes).
func readBlock(tx *bolt.Tx, blockKey []byte) (keys, records [][]byte, err error) {
	v := tx.Bucket(bucketEvents).Get(blockKey)
	if v == nil {
		return nil, nil, nil
	}
	return decodeOwn(blockKey, v)
}

// decodeOwn decodes the block stored as v at blockKey into slices of its
// own: each reader of a block reads it once (a query visits a block once
// for all its slots, the index build each block once), so there is nothing
// to cache.
func decodeOwn(blockKey, v []byte) (keys, recs [][]byte, err error) {
	var b block
	err = decodeBlock(&b, blockKey, v)
	return b.keys, b.recs, err
}

// putBlock stores a block's value under its key; the events bucket is
// only ever appended to in key order, so its pages are filled completely.
func putBlock(tx *bolt.Tx, blockKey, v []byte) error {
	b := tx.Bucket(bucketEvents)
	b.FillPercent = 1.0
	return b.Put(blockKey, v)
}

// deleteBlock removes the block stored under blockKey.
func deleteBlock(tx *bolt.Tx, blockKey []byte) error {
	return tx.Bucket(bucketEvents).Delete(blockKey)
}

// blockIndexer keeps the indexes of the blocks: whatever writes a block
// (Append, a rewrite) tells it in the same transaction. terms[i] is nil for
// a chain record, or for a row event whose terms must be parsed from its
// record.
type blockIndexer interface {
	addBlock(tx *bolt.Tx, blockKey []byte, keys, records [][]byte, terms []*audit.Terms) error
	removeBlock(tx *bolt.Tx, blockKey []byte, keys, records [][]byte) error
}

// noIndex indexes nothing.
type noIndex struct{}

func (noIndex) addBlock(*bolt.Tx, []byte, [][]byte, [][]byte, []*audit.Terms) error { return nil }
func (noIndex) removeBlock(*bolt.Tx, []byte, [][]byte, [][]byte) error              { return nil }
