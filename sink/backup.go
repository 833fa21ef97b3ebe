package sink

import (
	"io"

	bolt "go.etcd.io/bbolt"
)

// WriteCopy writes a consistent copy of the store file to w: the store as
// of its last commit, read in one read transaction while the writer goes on
// (a cp of the file while it is written is not a usable copy). start is
// called with the copy's size before its first byte is written.
func (s *Store) WriteCopy(w io.Writer, start func(size int64) error) (n int64, err error) {
	err = s.view(func(tx *bolt.Tx) error {
		if err := start(tx.Size()); err != nil {
			return err
		}
		var werr error
		n, werr = tx.WriteTo(w)
		return werr
	})
	return n, err
}
