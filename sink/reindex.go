package sink

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	bolt "go.etcd.io/bbolt"
)

// indexBuildChunk is how many records one transaction of an index build
// indexes: appends wait for at most one such transaction.
var indexBuildChunk = 20_000

// indexState is how a read-write store keeps its indexes.
type indexState struct {
	ix *indexer // the store's indexer: Store.index once the indexes are complete

	mu     sync.Mutex
	cancel context.CancelFunc // stops the background build
	done   chan struct{}      // closed when the background build ended
}

// openIndex prepares the indexes of a read-write store: a new store gets
// empty, complete ones; a store without them (written before indexes
// existed) gets them built in the background, in bounded transactions,
// resuming where an interrupted build stopped. Until they are complete,
// appends index nothing (the build catches up with them) and queries read
// the events.
//
// prepareIndex is its part in the transaction that opens the store (one
// commit for both); openIndex starts the build it found necessary.
func (s *Store) prepareIndex(tx *bolt.Tx, st *state) (complete bool, err error) {
	s.idx.ix = newIndexer()
	err = func() error {
		root := tx.Bucket(bucketIndex)
		if root == nil {
			fresh := st.hasHead && st.headKey == genesisKey
			var err error
			if root, err = createIndex(tx, !fresh); err != nil {
				return err
			}
		}
		complete = root.Get(ixIndexedThrough) == nil
		if complete {
			// Blocks appended without their indexes (by a cdcaudit that
			// kept none) are indexed from the last one indexed on.
			var head []byte
			if v := root.Get(ixState); len(v) >= len(genesisKey) {
				head = v[:len(genesisKey)]
			} else {
				head = genesisKey[:] // a new store: the genesis record has no postings
			}
			if last := lastBlockKey(tx); last != nil && string(last) != string(head) {
				complete = false
				return root.Put(ixIndexedThrough, append([]byte(nil), head...))
			}
		}
		return nil
	}()
	if err != nil {
		return false, fmt.Errorf("sink: open the indexes: %w", err)
	}
	return complete, nil
}

func (s *Store) openIndex(complete bool) {
	if complete {
		s.index = s.idx.ix
		return
	}
	ctx, cancel := context.WithCancel(context.Background())
	s.idx.cancel, s.idx.done = cancel, make(chan struct{})
	go func() {
		defer close(s.idx.done)
		log := slog.Default()
		log.Info("building the store's indexes (the store was written without them, or a build was interrupted): "+
			"queries read every event until they are complete", "dir", s.dir)
		start, last := time.Now(), time.Now()
		err := s.BuildIndex(ctx, func(done, total uint64) {
			if time.Since(last) >= 10*time.Second {
				last = time.Now()
				log.Info("building the store's indexes", "records", done, "of_about", total)
			}
		})
		switch {
		case errors.Is(err, context.Canceled):
			log.Info("index build stopped; it resumes when the store is next opened")
		case err != nil:
			log.Error("index build failed; queries read every event", "err", err)
		default:
			log.Info("the store's indexes are complete", "took", time.Since(start).Round(time.Millisecond))
		}
	}()
}

// createIndex creates the index buckets; building marks them incomplete
// (nothing indexed yet).
func createIndex(tx *bolt.Tx, building bool) (*bolt.Bucket, error) {
	root, err := tx.CreateBucket(bucketIndex)
	if err != nil {
		return nil, err
	}
	for _, name := range ixBuckets {
		if _, err := root.CreateBucket(name); err != nil {
			return nil, err
		}
	}
	if building {
		if err := root.Put(ixIndexedThrough, []byte{0}); err != nil {
			return nil, err
		}
	}
	return root, nil
}

// stopIndexBuild stops a background index build and waits for it.
func (s *Store) stopIndexBuild() {
	s.idx.mu.Lock()
	cancel, done := s.idx.cancel, s.idx.done
	s.idx.mu.Unlock()
	if cancel != nil {
		cancel()
		<-done
	}
}

// IndexComplete reports whether the store's indexes are complete; until
// they are, queries read every event (and still answer exactly).
func (s *Store) IndexComplete() (bool, error) {
	complete := false
	err := s.view(func(tx *bolt.Tx) error {
		complete = indexRoot(tx) != nil
		return nil
	})
	return complete, err
}

// indexRoot returns the index bucket when the indexes are complete.
func indexRoot(tx *bolt.Tx) *bolt.Bucket {
	root := tx.Bucket(bucketIndex)
	if root == nil || root.Get(ixIndexedThrough) != nil {
		return nil
	}
	return root
}

// BuildIndex indexes the blocks not indexed yet, in transactions of a
// bounded size that take turns with appends, until the indexes are
// complete; progress, when set, is called after each transaction with the
// records indexed so far and about how many there are. A cancelled build
// resumes where it stopped.
func (s *Store) BuildIndex(ctx context.Context, progress func(done, total uint64)) error {
	if s.readOnly {
		return errors.New("sink: the indexes are built in a store opened read-write")
	}
	var done uint64
	for {
		if err := ctx.Err(); err != nil {
			return err
		}
		finished, n, err := s.buildIndexChunk()
		if err != nil {
			return err
		}
		done += uint64(n)
		if progress != nil {
			_, _, count := s.Head()
			progress(done, max(done, count))
		}
		if finished {
			return nil
		}
	}
}

// buildIndexChunk indexes the next blocks in one transaction, holding
// off appends meanwhile; the indexes being complete, appends index their
// blocks from then on.
func (s *Store) buildIndexChunk() (finished bool, n int, err error) {
	s.wmu.Lock()
	defer s.wmu.Unlock()
	if s.done {
		return false, 0, errors.New("sink: the store is closed")
	}
	ix := s.idx.ix
	err = s.update(func(tx *bolt.Tx) error {
		root := tx.Bucket(bucketIndex)
		if root == nil {
			return errors.New("sink: the index bucket is missing")
		}
		through := root.Get(ixIndexedThrough)
		if through == nil {
			finished = true
			return nil
		}
		if len(through) != len(genesisKey) {
			through = nil // nothing indexed yet
		}
		// One cursor walks the blocks (see nextBlockKey), each decoded
		// into the same buffers: addBlock keeps none of its records.
		c := tx.Bucket(bucketEvents).Cursor()
		var bk, v []byte
		if through == nil {
			bk, v = c.First()
		} else if bk, v = c.Seek(through); bk != nil && string(bk) == string(through) {
			bk, v = c.Next()
		}
		var (
			last []byte
			b    block
		)
		for ; bk != nil && n < indexBuildChunk; bk, v = c.Next() {
			if err := decodeBlock(&b, bk, v); err != nil {
				return err
			}
			if err := ix.addBlock(tx, bk, b.keys, b.recs, nil); err != nil {
				return err
			}
			n += len(b.keys)
			last = bk
		}
		if bk == nil {
			finished = true
			return root.Delete(ixIndexedThrough)
		}
		return root.Put(ixIndexedThrough, append([]byte(nil), last...))
	})
	if err != nil {
		return false, 0, fmt.Errorf("sink: build the indexes: %w", err)
	}
	if finished {
		s.index = ix
	}
	return finished, n, nil
}

// nextBlockKey returns the key of the first block after the block keyed
// after (the first block for nil), nil at the end. A block is stored
// under the key of its first record, one bbolt key per block (a legacy
// record is a block of its own): the keys of the events bucket are the
// block keys.
func nextBlockKey(tx *bolt.Tx, after []byte) []byte {
	c := tx.Bucket(bucketEvents).Cursor()
	if after == nil {
		k, _ := c.First()
		return k
	}
	k, _ := c.Seek(after)
	if k != nil && string(k) == string(after) {
		k, _ = c.Next()
	}
	return k
}

// lastBlockKey is the key of the last block (see nextBlockKey).
func lastBlockKey(tx *bolt.Tx) []byte {
	k, _ := tx.Bucket(bucketEvents).Cursor().Last()
	return k
}

// Reindex drops the indexes of a stopped store and builds them again,
// calling progress now and then. It opens the store read-write: it fails
// with ErrLocked while a daemon holds it.
func Reindex(ctx context.Context, dir string, progress func(done, total uint64)) error {
	s, err := Open(dir)
	if err != nil {
		return err
	}
	defer s.Close()
	s.stopIndexBuild()
	s.wmu.Lock()
	err = s.update(func(tx *bolt.Tx) error {
		if tx.Bucket(bucketIndex) != nil {
			if err := tx.DeleteBucket(bucketIndex); err != nil {
				return err
			}
		}
		_, err := createIndex(tx, true)
		return err
	})
	if err == nil {
		s.index, s.idx.ix = noIndex{}, newIndexer() // forget the dropped dictionary
	}
	s.wmu.Unlock()
	if err != nil {
		return fmt.Errorf("sink: drop the indexes: %w", err)
	}
	if err := s.BuildIndex(ctx, progress); err != nil {
		return err
	}
	return s.Close()
}
