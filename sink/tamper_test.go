package sink

import (
	"bytes"
	"path/filepath"
	"slices"
	"testing"

	bolt "go.etcd.io/bbolt"
)

// recordEditor edits the records of a store inside their blocks, as an
// attacker with the file and this package's code would: it decodes a
// block, edits its records, and re-encodes it, so every block still
// decodes and only the chain can tell.
type recordEditor struct {
	t   testing.TB
	b   *bolt.Bucket
	enc *blockEncoder
}

// tamper edits the events bucket of the stopped store in dir.
func tamper(t *testing.T, dir string, fn func(e *recordEditor) error) {
	t.Helper()
	db, err := bolt.Open(filepath.Join(dir, FileName), 0o600, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if err := db.Update(func(tx *bolt.Tx) error {
		return fn(&recordEditor{t: t, b: tx.Bucket(bucketEvents), enc: newBlockEncoder()})
	}); err != nil {
		t.Fatal(err)
	}
}

// block returns the block holding key or, when none does, the one key
// would go into (the last block starting at or before it): its key and
// its records, copied.
func (e *recordEditor) block(key []byte) (bk []byte, keys, recs [][]byte) {
	k, v := seekBlock(e.b.Cursor(), key)
	if k == nil {
		return nil, nil, nil
	}
	var b block
	if err := decodeBlock(&b, k, v); err != nil {
		e.t.Fatal(err)
	}
	for i := range b.keys {
		keys = append(keys, bytes.Clone(b.keys[i]))
		recs = append(recs, bytes.Clone(b.recs[i]))
	}
	return bytes.Clone(k), keys, recs
}

// write replaces the block at old with keys and recs (none: deleted).
// A block of one record is written bare when it was bare.
func (e *recordEditor) write(old []byte, wasBare bool, keys, recs [][]byte) error {
	if old != nil {
		if err := e.b.Delete(old); err != nil {
			return err
		}
	}
	if len(keys) == 0 {
		return nil
	}
	if wasBare && len(keys) == 1 {
		return e.b.Put(keys[0], recs[0])
	}
	e.enc.reset()
	for i := range keys {
		e.enc.addRecord(keys[i], recs[i], nil)
	}
	return e.b.Put(keys[0], e.enc.encode())
}

func (e *recordEditor) bare(bk []byte) bool { return bk != nil && isBare(e.b.Get(bk)) }

// get returns a copy of the record stored under key (nil: none).
func (e *recordEditor) get(key []byte) []byte {
	_, keys, recs := e.block(key)
	if i := slices.IndexFunc(keys, func(k []byte) bool { return bytes.Equal(k, key) }); i >= 0 {
		return recs[i]
	}
	return nil
}

// put stores rec under key: in place of the record there, or inserted
// into the block it falls in (a new bare record before the first block).
func (e *recordEditor) put(key, rec []byte) error {
	bk, keys, recs := e.block(key)
	i, found := slices.BinarySearchFunc(keys, key, bytes.Compare)
	if found {
		recs[i] = rec
	} else {
		keys, recs = slices.Insert(keys, i, key), slices.Insert(recs, i, rec)
	}
	return e.write(bk, e.bare(bk) && len(keys) == 1, keys, recs)
}

// del removes the record stored under key.
func (e *recordEditor) del(key []byte) error {
	bk, keys, recs := e.block(key)
	i, found := slices.BinarySearchFunc(keys, key, bytes.Compare)
	if !found {
		e.t.Fatalf("no record %s to delete", keyID(key))
	}
	wasBare := e.bare(bk)
	return e.write(bk, wasBare, slices.Delete(keys, i, i+1), slices.Delete(recs, i, i+1))
}

// blocks returns the number of blocks and records stored.
func blockCount(t testing.TB, s *Store) (blocks, records int) {
	t.Helper()
	err := s.view(func(tx *bolt.Tx) error {
		return tx.Bucket(bucketEvents).ForEach(func(k, v []byte) error {
			var b block
			if err := decodeBlock(&b, k, v); err != nil {
				return err
			}
			blocks++
			records += len(b.keys)
			return nil
		})
	})
	if err != nil {
		t.Fatal(err)
	}
	return blocks, records
}
