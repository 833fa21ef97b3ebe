package sink

import (
	"fmt"

	bolt "go.etcd.io/bbolt"
)

// bucketState holds one nested bucket per stateful stage (sessions,
// correlation): state derived from the stream and written in the same
// transaction as the events it came from, so after a crash it is exactly as
// of the checkpoint the stream resumes from.
var bucketState = []byte("state")

// StateRecord is one key of a stage's derived state. A nil Value deletes it.
type StateRecord struct {
	Bucket string
	Key    string
	Value  []byte
}

func checkStateBucket(name string) error {
	if name == "" || len(name) > 64 {
		return fmt.Errorf("sink: state bucket name %q must be 1 to 64 bytes", name)
	}
	return nil
}

// putState writes state records inside an Append's transaction.
func putState(tx *bolt.Tx, recs []StateRecord) error {
	if len(recs) == 0 {
		return nil
	}
	root, err := tx.CreateBucketIfNotExists(bucketState)
	if err != nil {
		return err
	}
	for _, r := range recs {
		if err := checkStateBucket(r.Bucket); err != nil {
			return err
		}
		if r.Key == "" {
			return fmt.Errorf("sink: state record in %q without a key", r.Bucket)
		}
		b, err := root.CreateBucketIfNotExists([]byte(r.Bucket))
		if err != nil {
			return err
		}
		if r.Value == nil {
			err = b.Delete([]byte(r.Key))
		} else {
			err = b.Put([]byte(r.Key), r.Value)
		}
		if err != nil {
			return fmt.Errorf("sink: state %s/%s: %w", r.Bucket, r.Key, err)
		}
	}
	return nil
}

// LoadState calls fn for every record of a state bucket, in key order. A
// bucket never written is empty. fn must not keep key or value.
func (s *Store) LoadState(bucket string, fn func(key, value []byte) error) error {
	if err := checkStateBucket(bucket); err != nil {
		return err
	}
	return s.view(func(tx *bolt.Tx) error {
		b := stateBucketOf(tx, bucket)
		if b == nil {
			return nil
		}
		return b.ForEach(guarded(fn))
	})
}

// stateBucketOf returns a stage's state bucket (nil: never written).
func stateBucketOf(tx *bolt.Tx, name string) *bolt.Bucket {
	root := tx.Bucket(bucketState)
	if root == nil {
		return nil
	}
	return root.Bucket([]byte(name))
}
