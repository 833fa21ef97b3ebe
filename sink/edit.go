package sink

import (
	"bytes"
	"path/filepath"

	bolt "go.etcd.io/bbolt"
)

// EditRecords rewrites the records of the stopped store in dir through
// fn, as someone holding the file could: fn sees every record in key order
// and returns what to store in its place (the record itself: unchanged;
// nil: removed). Nothing is resealed, checked or re-indexed, and meta is
// left as it was. It exists for tests of what verify and the readers
// detect.
//
// Stand-in with the signature of i8-blocks's (sink/edit.go there), which
// edits records inside their blocks: the lead keeps that one.
func EditRecords(dir string, fn func(key, record []byte) ([]byte, error)) (err error) {
	path := filepath.Join(dir, FileName)
	defer catchDamage(path, &err)()
	db, err := bolt.Open(path, 0o600, nil)
	if err != nil {
		return err
	}
	defer db.Close()
	return db.Update(func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketEvents)
		type edit struct{ k, v []byte }
		var edits []edit
		err := b.ForEach(func(k, v []byte) error {
			rec, err := fn(k, v)
			if err != nil {
				return err
			}
			if rec == nil || !bytes.Equal(rec, v) {
				edits = append(edits, edit{bytes.Clone(k), bytes.Clone(rec)})
			}
			return nil
		})
		if err != nil {
			return err
		}
		for _, e := range edits {
			if e.v == nil {
				err = b.Delete(e.k)
			} else {
				err = b.Put(e.k, e.v)
			}
			if err != nil {
				return err
			}
		}
		return nil
	})
}
