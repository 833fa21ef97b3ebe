package sink

import (
	"github.com/cdcaudit/cdcaudit/audit"
	bolt "go.etcd.io/bbolt"
)

// recordCursor walks the stored records (row events and chain records) in
// key order inside one transaction, whatever their on-disk form: every
// reader of the events bucket goes through it. key and record are valid
// only until the cursor moves or the transaction ends; a nil key means the
// end was reached.
type recordCursor struct {
	c *bolt.Cursor
}

func newRecordCursor(tx *bolt.Tx) *recordCursor {
	return &recordCursor{c: tx.Bucket(bucketEvents).Cursor()}
}

func (rc *recordCursor) First() (key, record []byte, err error) {
	k, v := rc.c.First()
	return k, v, nil
}

func (rc *recordCursor) Last() (key, record []byte, err error) {
	k, v := rc.c.Last()
	return k, v, nil
}

// Seek moves to the first record whose key is >= key.
func (rc *recordCursor) Seek(key []byte) (k, record []byte, err error) {
	k, v := rc.c.Seek(key)
	return k, v, nil
}

func (rc *recordCursor) Next() (key, record []byte, err error) {
	k, v := rc.c.Next()
	return k, v, nil
}

func (rc *recordCursor) Prev() (key, record []byte, err error) {
	k, v := rc.c.Prev()
	return k, v, nil
}

// getRecord returns the record stored under key (nil when there is none),
// valid for the transaction.
func getRecord(tx *bolt.Tx, key []byte) ([]byte, error) {
	return tx.Bucket(bucketEvents).Get(key), nil
}

// A block is the unit records are stored in: a run of consecutive records
// of the chain written by one Append, stored under the key of its first
// record. Each record has a slot: its position in its block. (Until
// records are compressed in blocks, every record is a block of its own.)

// readBlock returns the keys and records of the block stored under
// blockKey (none when there is no such block), valid for the transaction.
func readBlock(tx *bolt.Tx, blockKey []byte) (keys, records [][]byte, err error) {
	v := tx.Bucket(bucketEvents).Get(blockKey)
	if v == nil {
		return nil, nil, nil
	}
	return [][]byte{blockKey}, [][]byte{v}, nil
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
