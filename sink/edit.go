package sink

import (
	"bytes"
	"fmt"
	"path/filepath"

	bolt "go.etcd.io/bbolt"
)

// EditRecords rewrites the records of the stopped store in dir through
// fn, as someone holding the file could: fn sees every record in key order
// and returns what to store in its place (the record itself: unchanged;
// nil: removed). A block that changes is re-encoded with what is left of
// it. Nothing is resealed, checked or re-indexed, and meta is left as it
// was. It exists for tests of what verify and the readers detect: in
// compressed blocks a byte of a record can no longer be edited in the file.
func EditRecords(dir string, fn func(key, record []byte) ([]byte, error)) (err error) {
	path := filepath.Join(dir, FileName)
	defer catchDamage(path, &err)()
	db, err := bolt.Open(path, 0o600, nil)
	if err != nil {
		return err
	}
	defer db.Close()
	s := &Store{db: db, dir: dir, index: noIndex{}}
	return db.Update(func(tx *bolt.Tx) error {
		var blockKeys [][]byte
		c := tx.Bucket(bucketEvents).Cursor()
		for k, _ := c.First(); k != nil; k, _ = c.Next() {
			blockKeys = append(blockKeys, bytes.Clone(k))
		}
		enc := newBlockEncoder()
		for _, bk := range blockKeys {
			var b block
			v := tx.Bucket(bucketEvents).Get(bk)
			if err := decodeBlock(&b, bk, v); err != nil {
				return err
			}
			enc.reset()
			changed := false
			for i, k := range b.keys {
				rec, err := fn(k, b.recs[i])
				if err != nil {
					return err
				}
				if rec == nil || !bytes.Equal(rec, b.recs[i]) {
					changed = true
				}
				if rec != nil {
					enc.addRecord(k, rec, nil)
				}
			}
			if !changed {
				continue
			}
			if err := deleteBlock(tx, bk); err != nil {
				return err
			}
			switch {
			case enc.len() == 0:
			case enc.len() == 1 && isBare(v):
				keys, recs := enc.slices()
				if err := putBlock(tx, keys[0], bytes.Clone(recs[0])); err != nil {
					return err
				}
			default:
				keys, recs := enc.slices()
				if err := s.writeBlock(tx, keys, recs, enc.terms, enc.encode()); err != nil {
					return fmt.Errorf("sink: edit: %w", err)
				}
			}
		}
		return nil
	})
}
