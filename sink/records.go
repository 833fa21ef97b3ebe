package sink

import bolt "go.etcd.io/bbolt"

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
