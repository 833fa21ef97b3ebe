package sink

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"

	bolt "go.etcd.io/bbolt"
	berrors "go.etcd.io/bbolt/errors"
)

// CompactProgress is what Compact has done so far.
type CompactProgress struct {
	Phase   string // "records", "state", "verify"
	Records uint64 // records copied (phase "records")
	Total   uint64 // records to copy (meta's count plus chain records: about)
}

// CompactResult describes a compacted store.
type CompactResult struct {
	Path                string // the new file
	OldSize, NewSize    int64
	Verified            VerifyResult
	LegacyRecords       uint64 // records of an older layout (bare, or in blocks with their seals) re-encoded
	BlocksBefore, After uint64
}

// compactTxBytes bounds what one transaction of the new file holds, so
// memory stays bounded whatever the store's size.
const compactTxBytes = 64 << 20

// The index is rebuilt from the records, not copied: its postings name
// blocks, and compact makes new blocks. (Its builder sees that
// indexed_through is missing.)
var (
	compactSkipBuckets = [][]byte{[]byte("index")}
	compactSkipMeta    = [][]byte{[]byte("indexed_through")}
)

// Compact rewrites the stopped store in dir into a fresh file: every
// record re-encoded into full blocks (legacy bare records too), its chain
// checked on the way, every other bucket copied, free pages left behind.
// With out empty the new file replaces the store (the old one is kept as
// cdcaudit.db.old until the new one has verified, then removed); otherwise
// it is written to out, and the store is left as it was. The store is held
// exclusively throughout: a running daemon makes it fail with ErrLocked.
func Compact(ctx context.Context, dir, out string, progress func(CompactProgress)) (res CompactResult, err error) {
	if progress == nil {
		progress = func(CompactProgress) {}
	}
	path := filepath.Join(dir, FileName)
	fi, err := os.Stat(path)
	if err != nil {
		return res, fmt.Errorf("sink: no cdcaudit store in %s: %w", dir, err)
	}
	res.OldSize = fi.Size()
	if err := checkFile(path); err != nil {
		return res, err
	}
	// Read-write only for its exclusive lock: nothing is written to it.
	src, err := openBolt(path, &bolt.Options{Timeout: lockTimeout, FreelistType: bolt.FreelistMapType})
	if errors.Is(err, berrors.ErrTimeout) {
		return res, lockedError(dir)
	}
	if err != nil {
		return res, err
	}
	defer src.Close()

	replace := out == ""
	if replace {
		out = path
	}
	tmp := out + ".compact"
	os.Remove(tmp) // a leftover of an interrupted compact
	dst, err := bolt.Open(tmp, 0o600, &bolt.Options{NoSync: true, FreelistType: bolt.FreelistMapType})
	if err != nil {
		return res, fmt.Errorf("sink: compact: create %s: %w", tmp, err)
	}
	c := &copier{dst: dst}
	defer func() {
		if c.tx != nil {
			c.tx.Rollback()
		}
		if dst != nil {
			dst.Close()
		}
		if err != nil {
			os.Remove(tmp)
		}
	}()
	func() {
		defer catchDamage(path, &err)()
		err = src.View(func(stx *bolt.Tx) error {
			meta, events := stx.Bucket(bucketMeta), stx.Bucket(bucketEvents)
			if err := checkBuckets(dir, meta, events); err != nil {
				return err
			}
			if err := checkFormat(dir, meta.Get(metaFormat)); err != nil {
				return err
			}
			if err := c.begin(); err != nil {
				return err
			}
			progress(CompactProgress{Phase: "state"})
			// Every bucket but the records and the index, as it is.
			err := stx.ForEach(func(name []byte, b *bolt.Bucket) error {
				if bytes.Equal(name, bucketEvents) || containsKey(compactSkipBuckets, name) {
					return nil
				}
				return c.copyBucket(ctx, [][]byte{name}, b)
			})
			if err != nil {
				return err
			}
			if err := c.put([][]byte{bucketMeta}, metaFormat, binary.BigEndian.AppendUint64(nil, FormatVersion)); err != nil {
				return err
			}
			if _, err := c.tx.CreateBucketIfNotExists(bucketEvents); err != nil {
				return err
			}
			return c.copyRecords(ctx, stx, &res, progress)
		})
		if err == nil {
			err = c.commit()
		}
	}()
	if err != nil {
		return res, err
	}
	if err := dst.Sync(); err != nil {
		return res, fmt.Errorf("sink: compact: %w", err)
	}
	if err := dst.Close(); err != nil {
		return res, fmt.Errorf("sink: compact: %w", err)
	}
	dst = nil

	progress(CompactProgress{Phase: "verify"})
	res.Verified, err = verifyFile(ctx, tmp)
	if err != nil {
		return res, fmt.Errorf("sink: compact: the new file does not verify (the store is left as it was): %w", err)
	}
	if fi, err := os.Stat(tmp); err == nil {
		res.NewSize = fi.Size()
	}
	if replace {
		old := path + ".old"
		if err := os.Rename(path, old); err != nil {
			return res, fmt.Errorf("sink: compact: %w", err)
		}
		if err := os.Rename(tmp, path); err != nil {
			os.Rename(old, path)
			return res, fmt.Errorf("sink: compact: %w", err)
		}
		syncDir(dir)
		if err := os.Remove(old); err != nil {
			return res, fmt.Errorf("sink: compact: the store is compacted; remove %s: %w", old, err)
		}
	} else {
		if err := os.Rename(tmp, out); err != nil {
			return res, fmt.Errorf("sink: compact: %w", err)
		}
		syncDir(filepath.Dir(out))
	}
	res.Path = out
	return res, nil
}

// lockTimeout is how long opening waits for another holder of the store.
const lockTimeout = time.Second

func verifyFile(ctx context.Context, path string) (VerifyResult, error) {
	s, err := OpenFile(path)
	if err != nil {
		return VerifyResult{}, err
	}
	defer s.Close()
	return s.Verify(ctx, nil)
}

func syncDir(dir string) {
	if d, err := os.Open(dir); err == nil {
		d.Sync()
		d.Close()
	}
}

func containsKey(list [][]byte, k []byte) bool {
	for _, x := range list {
		if bytes.Equal(x, k) {
			return true
		}
	}
	return false
}

// copier writes the new file in transactions of at most compactTxBytes.
type copier struct {
	dst  *bolt.DB
	tx   *bolt.Tx
	size int
}

func (c *copier) begin() (err error) {
	c.tx, err = c.dst.Begin(true)
	c.size = 0
	return err
}

func (c *copier) commit() error {
	if c.tx == nil {
		return nil
	}
	err := c.tx.Commit()
	c.tx = nil
	return err
}

// room commits the transaction when n more bytes would outgrow it.
func (c *copier) room(n int) error {
	if c.size+n <= compactTxBytes || c.size == 0 {
		c.size += n
		return nil
	}
	if err := c.commit(); err != nil {
		return err
	}
	if err := c.begin(); err != nil {
		return err
	}
	c.size = n
	return nil
}

// bucket returns the bucket at path in the current transaction, creating
// it when needed.
func (c *copier) bucket(path [][]byte) (*bolt.Bucket, error) {
	b, err := c.tx.CreateBucketIfNotExists(path[0])
	for _, p := range path[1:] {
		if err != nil {
			return nil, err
		}
		b, err = b.CreateBucketIfNotExists(p)
	}
	return b, err
}

func (c *copier) put(path [][]byte, k, v []byte) error {
	if err := c.room(len(k) + len(v)); err != nil {
		return err
	}
	b, err := c.bucket(path)
	if err != nil {
		return err
	}
	b.FillPercent = 1.0 // copied in key order
	return b.Put(k, v)
}

func (c *copier) copyBucket(ctx context.Context, path [][]byte, b *bolt.Bucket) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	nb, err := c.bucket(path)
	if err != nil {
		return err
	}
	if err := nb.SetSequence(b.Sequence()); err != nil {
		return err
	}
	isMeta := len(path) == 1 && bytes.Equal(path[0], bucketMeta)
	return b.ForEach(func(k, v []byte) error {
		if v == nil {
			return c.copyBucket(ctx, append(path[:len(path):len(path)], k), b.Bucket(k))
		}
		if isMeta && (containsKey(compactSkipMeta, k) || bytes.Equal(k, metaFormat)) {
			return nil
		}
		return c.put(path, k, v)
	})
}

// copyRecords re-encodes every record into full blocks, checking the
// chain as Scan does.
func (c *copier) copyRecords(ctx context.Context, stx *bolt.Tx, res *CompactResult, progress func(CompactProgress)) error {
	path := stx.DB().Path()
	meta := stx.Bucket(bucketMeta)
	p := CompactProgress{Phase: "records", Total: getUint64(meta, metaCount)}
	enc := newBlockEncoder()
	flush := func() error {
		if enc.len() == 0 {
			return nil
		}
		keys, _ := enc.slices()
		v := enc.encode()
		if err := c.put([][]byte{bucketEvents}, bytes.Clone(keys[0]), v); err != nil {
			return err
		}
		res.After++
		enc.reset()
		return nil
	}
	// Count the blocks and bare records as they are.
	bc := stx.Bucket(bucketEvents).Cursor()
	for k, v := bc.First(); k != nil; k, v = bc.Next() {
		res.BlocksBefore++
		switch {
		case isBare(v) && len(v) < hugeRecord:
			res.LegacyRecords++
		case isBlock(v) && !hasSeals(v[0]):
			if n, m := binary.Uvarint(v[1:]); m > 0 {
				res.LegacyRecords += n
			}
		}
	}
	cuts, err := loadCuts(stx)
	if err != nil {
		return damaged(path, "its list of cuts: %v: run 'cdcaudit verify'", err)
	}
	n := uint64(0)
	prev, err := walkChain(stx, path, cuts, nil, nil, func(k, v []byte) error {
		if n%1024 == 0 {
			if err := ctx.Err(); err != nil {
				return err
			}
		}
		if len(v) >= hugeRecord {
			if err := flush(); err != nil {
				return err
			}
			if err := c.put([][]byte{bucketEvents}, bytes.Clone(k), bytes.Clone(v)); err != nil {
				return err
			}
			res.After++
		} else {
			if !enc.fits(len(v)) {
				if err := flush(); err != nil {
					return err
				}
			}
			enc.addRecord(k, v, nil)
		}
		n++
		if n%65536 == 0 {
			p.Records = n
			progress(p)
		}
		return nil
	})
	if err != nil {
		return err
	}
	if err := flush(); err != nil {
		return err
	}
	if !bytes.Equal(meta.Get(metaHeadHash), prev[:]) {
		return damaged(path, "the chain ends before the head recorded in meta: run 'cdcaudit verify'")
	}
	p.Records = n
	progress(p)
	return nil
}
