// Package sink is the embedded store of audit events: one bbolt file holding
// the sealed records (the hash chain) and, written in the same bbolt
// transactions, the replication checkpoint. Because events and checkpoint
// become durable together, resuming the stream from the checkpoint after a
// crash replays at most what is already stored, and the idempotent event keys
// absorb that replay: exactly once into the store.
//
// Layout of the file dir/cdcaudit.db:
//
//	events  blocks of records (block.go), each under the key of its first
//	        record: key = audit.MakeKey (commit LSN BE + ordinal BE); the
//	        records in them exactly as audit.Seal returned them (an export
//	        is a copy); ordinal 0 holds the chain records (chain.go), first
//	        the genesis. Only records.go reads and writes this bucket.
//	meta    format, checkpoint, head_key, head_hash (the last record of the
//	        chain), count (row events), identity
//	state   derived state of the stages (state.go)
//	images  each record's last image, per table (images.go)
//	index   the indexes of the events, by record, user, session, table and
//	        op, flag and time (index.go)
package sink

import (
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/cdcaudit/cdcaudit/audit"
	bolt "go.etcd.io/bbolt"
	berrors "go.etcd.io/bbolt/errors"
)

const (
	// FileName is the store file inside the store directory.
	FileName = "cdcaudit.db"
	// PidFileName names the process holding the store read-write; it only
	// serves to make ErrLocked say who holds the lock.
	PidFileName = "cdcaudit.pid"
	// FormatVersion is the layout version recorded in meta. 2: the chain
	// begins with a genesis record. 3: records are stored in blocks
	// (block.go); a format-2 store opens, its records stay bare, and it is
	// marked 3 when opened for writing. 4: blocks may hold their records'
	// bodies and seals apart (block formats 3 and 4); an older store is
	// marked 4 when opened for writing.
	FormatVersion = 4
	// maxFormatsAhead bounds how far past FormatVersion a stored format
	// may be and still be a newer cdcaudit's.
	maxFormatsAhead = 100
	// oldestFormat is the oldest format this version reads.
	oldestFormat = 2
)

var (
	bucketEvents = []byte("events")
	bucketMeta   = []byte("meta")

	metaFormat     = []byte("format")
	metaCheckpoint = []byte("checkpoint")
	metaHeadKey    = []byte("head_key")
	metaHeadHash   = []byte("head_hash")
	metaCount      = []byte("count")
	metaIdentity   = []byte("identity")
)

var (
	// ErrLocked means another process (or another handle in this process)
	// holds the store: a running daemon, or an export or verify.
	ErrLocked = errors.New("store is locked by another process")
	// ErrNotFound is returned by Get for an id the store does not hold.
	ErrNotFound = errors.New("event not found")
)

// Store is an open store. Its methods are safe for concurrent use; Append
// calls are serialized.
type Store struct {
	db       *bolt.DB
	dir      string
	readOnly bool
	index    blockIndexer  // told of every block written or removed
	enc      *blockEncoder // the writer path's (under wmu)
	idx      indexState    // how a read-write store keeps its indexes (reindex.go)

	wmu   sync.Mutex            // serializes Append, SetIdentity and Close
	state atomic.Pointer[state] // as of the last commit; readers never wait for an fsync
	done  bool                  // closed; guarded by wmu

	cuts atomic.Pointer[cutSet] // retention's cuts as last read (cut.go)
}

// state mirrors meta. Only this process writes the store (it holds the
// exclusive lock), so the copy in memory is authoritative.
type state struct {
	checkpoint uint64
	count      uint64 // row events
	hasHead    bool   // false only in a store whose genesis record is gone
	headKey    [audit.KeyLen]byte
	headHash   audit.Hash // audit.Genesis without a head
	genesis    audit.Hash // the genesis record's hash (zero without one)
}

// Identity names the server, database and slot a store belongs to, so the
// daemon can refuse to mix the events of two servers in one chain, and the
// source its trail is named by (empty in a store made before sources).
type Identity struct {
	SystemID string `json:"system_id"` // IDENTIFY_SYSTEM's systemid
	Database string `json:"database"`
	Slot     string `json:"slot"`
	Source   string `json:"source,omitempty"`
}

// Open opens the store in dir read-write, creating dir (0700) and the file
// (0600) when needed. It fails with an error wrapping ErrLocked, after about
// a second, when another process holds the store.
func Open(dir string) (*Store, error) { return open(dir, false) }

// OpenReadOnly opens an existing store for reading (export, verify). It
// shares the lock with other readers but not with a read-write holder.
func OpenReadOnly(dir string) (*Store, error) { return open(dir, true) }

// OpenFile opens a store file by its path, read-only: a backup.
func OpenFile(path string) (*Store, error) { return openPath(filepath.Dir(path), path, true) }

func open(dir string, readOnly bool) (*Store, error) {
	return openPath(dir, filepath.Join(dir, FileName), readOnly)
}

func openPath(dir, path string, readOnly bool) (*Store, error) {
	opts := &bolt.Options{
		Timeout:        time.Second,
		NoFreelistSync: false, // a synced freelist: open stays fast on a large store
		FreelistType:   bolt.FreelistMapType,
		ReadOnly:       readOnly,
	}
	_, statErr := os.Stat(path)
	if readOnly {
		if statErr != nil {
			where := "in " + dir
			if filepath.Base(path) != FileName {
				where = "at " + path
			}
			return nil, fmt.Errorf("sink: no cdcaudit store %s: %w", where, statErr)
		}
	} else {
		if err := os.MkdirAll(dir, 0o700); err != nil {
			return nil, fmt.Errorf("sink: create store directory: %w", err)
		}
		opts.InitialMmapSize = initialMmapSize(path)
	}
	if statErr == nil {
		if err := checkFile(path); err != nil {
			return nil, err
		}
	}
	db, err := openBolt(path, opts)
	if errors.Is(err, berrors.ErrTimeout) {
		return nil, lockedError(dir)
	}
	if err != nil {
		return nil, err
	}
	s := &Store{db: db, dir: dir, readOnly: readOnly, index: noIndex{}}
	indexed, err := s.load()
	if err != nil {
		db.Close()
		return nil, err
	}
	if !readOnly {
		s.openIndex(indexed)
		// Best effort: the pid only improves the ErrLocked message.
		_ = os.WriteFile(filepath.Join(dir, PidFileName), []byte(strconv.Itoa(os.Getpid())+"\n"), 0o600)
	}
	return s, nil
}

func openBolt(path string, opts *bolt.Options) (db *bolt.DB, err error) {
	defer catchDamage(path, &err)()
	db, err = bolt.Open(path, 0o600, opts)
	switch {
	case errors.Is(err, berrors.ErrTimeout):
		return nil, err
	case errors.Is(err, berrors.ErrInvalid), errors.Is(err, berrors.ErrChecksum), errors.Is(err, berrors.ErrVersionMismatch):
		return nil, damaged(path, "%v", err)
	case err != nil:
		return nil, fmt.Errorf("sink: open %s: %w", path, err)
	}
	return db, nil
}

// view runs a read transaction; a damaged file is an error, never a crash,
// and a block that cannot be read is reported as the damage it is.
func (s *Store) view(fn func(tx *bolt.Tx) error) (err error) {
	defer catchDamage(s.db.Path(), &err)()
	err = s.db.View(fn)
	if be := (*blockError)(nil); errors.As(err, &be) {
		return damaged(s.db.Path(), "%v: run 'cdcaudit verify'", be)
	}
	return err
}

// update runs a write transaction; a damaged file is an error, never a crash.
func (s *Store) update(fn func(tx *bolt.Tx) error) (err error) {
	defer catchDamage(s.db.Path(), &err)()
	return s.db.Update(fn)
}

// initialMmapSize maps well beyond the file so that the map rarely has to
// grow: growing it waits for every open read transaction (a long export)
// and would stall the writer meanwhile. On Linux this reserves address
// space only; on Windows bbolt would grow the file to it, so not there.
func initialMmapSize(path string) int {
	if runtime.GOOS == "windows" || strconv.IntSize < 64 {
		return 0
	}
	size := int64(1 << 30)
	if fi, err := os.Stat(path); err == nil && 2*fi.Size() > size {
		size = 2 * fi.Size()
	}
	return int(size)
}

func lockedError(dir string) error {
	holder := "no pid recorded: probably a cdcaudit export or verify"
	if b, err := os.ReadFile(filepath.Join(dir, PidFileName)); err == nil {
		if pid, err := strconv.Atoi(strings.TrimSpace(string(b))); err == nil && pid > 0 && alive(pid) {
			holder = "pid " + strconv.Itoa(pid)
		}
	}
	return fmt.Errorf("sink: %s: %w (%s); one process at a time may use a store ('cdcaudit backup' copies it from a running daemon)", dir, ErrLocked, holder)
}

// alive reports whether pid names a running process (a stale pid file from
// a crash, or a pid from another container, must not be blamed).
func alive(pid int) bool {
	p, err := os.FindProcess(pid)
	if err != nil {
		return false
	}
	err = p.Signal(syscall.Signal(0))
	return err == nil || errors.Is(err, os.ErrPermission)
}

// load checks the layout (creating it in a new read-write store) and reads
// meta into memory.
// A read-write store also prepares its indexes in that transaction:
// indexed says whether they are complete.
func (s *Store) load() (indexed bool, err error) {
	st := &state{}
	read := func(tx *bolt.Tx) error {
		meta, events := tx.Bucket(bucketMeta), tx.Bucket(bucketEvents)
		if err := checkBuckets(s.dir, meta, events); err != nil {
			return err
		}
		if err := checkFormat(s.dir, meta.Get(metaFormat)); err != nil {
			return err
		}
		st.checkpoint = getUint64(meta, metaCheckpoint)
		st.count = getUint64(meta, metaCount)
		k, h := meta.Get(metaHeadKey), meta.Get(metaHeadHash)
		switch {
		case len(k) == audit.KeyLen && len(h) == audit.HashLen:
			st.hasHead = true
			copy(st.headKey[:], k)
			copy(st.headHash[:], h)
		case k != nil || h != nil || st.count > 0:
			return damaged(s.db.Path(), "meta holds %d events but no valid chain head", st.count)
		}
		if !st.hasHead && !s.readOnly {
			// Appending would start a second history without a genesis
			// record; verify says what happened to the first.
			return damaged(s.db.Path(), "it holds no chain head, not even its genesis record (wiped?): run 'cdcaudit verify'")
		}
		if g, err := getRecord(tx, genesisKey[:]); err == nil && g != nil {
			if _, _, gh, err := audit.Check(g); err == nil {
				st.genesis = gh
			}
		}
		return nil
	}
	if s.readOnly {
		err = s.view(read)
	} else {
		err = s.update(func(tx *bolt.Tx) error {
			if tx.Bucket(bucketMeta) == nil && tx.Bucket(bucketEvents) == nil {
				if err := create(tx); err != nil {
					return err
				}
			}
			if err := read(tx); err != nil {
				return err
			}
			if indexed, err = s.prepareIndex(tx, st); err != nil {
				return err
			}
			// An older store gets the blocks of this format from now on:
			// an older cdcaudit must refuse it.
			if getUint64(tx.Bucket(bucketMeta), metaFormat) == FormatVersion {
				return nil
			}
			return tx.Bucket(bucketMeta).Put(metaFormat, binary.BigEndian.AppendUint64(nil, FormatVersion))
		})
	}
	if err != nil {
		return false, err
	}
	s.state.Store(st)
	return indexed, nil
}

// checkFormat refuses a store of a format this version does not read.
// checkBuckets tells a file that is no store from a store that lost one of
// its two buckets (a flipped byte in the root page's keys): that is damage.
func checkBuckets(dir string, meta, events *bolt.Bucket) error {
	switch {
	case meta == nil && events == nil:
		return fmt.Errorf("sink: %s is not a cdcaudit store (missing buckets)", dir)
	case meta == nil:
		return damaged(dir, "its meta bucket is missing")
	case events == nil:
		return damaged(dir, "its events bucket is missing")
	}
	return nil
}

func checkFormat(dir string, v []byte) error {
	if len(v) != 8 {
		// Every store since format 1 holds one: a flipped byte in the
		// meta page's keys loses it.
		return damaged(dir, "its store format is missing or unreadable (%x)", v)
	}
	switch f := binary.BigEndian.Uint64(v); {
	case f == 1:
		return fmt.Errorf("sink: %s: the store has format 1, whose chain has no genesis record: export and verify it with the cdcaudit that wrote it, and start this one on a new --data-dir", dir)
	case f > FormatVersion+maxFormatsAhead:
		// Formats grow by one now and then: a value this far ahead is
		// a flipped byte, not a store from the future.
		return damaged(dir, "its store format reads %d", f)
	case f > FormatVersion:
		return fmt.Errorf("sink: %s: written by a newer cdcaudit (store format %d; this one reads %d to %d): upgrade cdcaudit", dir, f, oldestFormat, FormatVersion)
	case f < oldestFormat:
		return fmt.Errorf("sink: %s: unsupported store format %d (this cdcaudit reads %d to %d)", dir, f, oldestFormat, FormatVersion)
	}
	return nil
}

// create lays out a new store: its buckets, its format and the genesis
// record, the first link of its chain.
func create(tx *bolt.Tx) error {
	meta, err := tx.CreateBucket(bucketMeta)
	if err != nil {
		return err
	}
	if _, err := tx.CreateBucket(bucketEvents); err != nil {
		return err
	}
	rec, h := audit.Seal(nil, genesisBody(time.Now()), audit.Genesis)
	for _, kv := range []struct{ k, v []byte }{
		{metaFormat, binary.BigEndian.AppendUint64(nil, FormatVersion)},
		{metaHeadKey, genesisKey[:]},
		{metaHeadHash, h[:]},
	} {
		if err := meta.Put(kv.k, kv.v); err != nil {
			return err
		}
	}
	return putBlock(tx, genesisKey[:], rec) // bare, like a huge record: one record alone needs no block
}

func getUint64(b *bolt.Bucket, key []byte) uint64 {
	if v := b.Get(key); len(v) == 8 {
		return binary.BigEndian.Uint64(v)
	}
	return 0
}

// Close closes the store and, for a read-write store, removes the pid file.
func (s *Store) Close() error {
	s.stopIndexBuild()
	s.wmu.Lock()
	defer s.wmu.Unlock()
	if s.done {
		return nil
	}
	s.done = true
	if !s.readOnly {
		// Before unlocking: never delete the pid file of the next holder.
		_ = os.Remove(filepath.Join(s.dir, PidFileName))
	}
	return s.db.Close()
}

// Dir returns the store directory.
func (s *Store) Dir() string { return s.dir }

// Checkpoint returns the durable checkpoint: the end LSN of the last
// transaction whose events are all stored (0 when none).
func (s *Store) Checkpoint() uint64 { return s.state.Load().checkpoint }

// Head returns the key and hash of the last record of the chain (an event,
// or a chain record: at least the genesis record) and the number of row
// events. key is nil and hash is audit.Genesis only when the store has lost
// its genesis record.
func (s *Store) Head() (key []byte, hash audit.Hash, count uint64) {
	st := s.state.Load()
	if !st.hasHead {
		return nil, audit.Genesis, st.count
	}
	return append([]byte(nil), st.headKey[:]...), st.headHash, st.count
}

// GenesisHash returns the hash of the store's genesis record, which names
// its chain (anchors carry it); ok is false when the record is missing.
func (s *Store) GenesisHash() (h audit.Hash, ok bool) {
	g := s.state.Load().genesis
	return g, g != audit.Hash{}
}

// Size returns the size of the store file in bytes.
func (s *Store) Size() int64 {
	fi, err := os.Stat(s.db.Path())
	if err != nil {
		return 0
	}
	return fi.Size()
}

// Identity returns the identity recorded by SetIdentity; ok is false when
// none has been recorded yet (a new store).
func (s *Store) Identity() (id Identity, ok bool, err error) {
	err = s.view(func(tx *bolt.Tx) error {
		v := tx.Bucket(bucketMeta).Get(metaIdentity)
		if v == nil {
			return nil
		}
		ok = true
		return json.Unmarshal(v, &id)
	})
	if err != nil {
		return Identity{}, false, fmt.Errorf("sink: read identity: %w", err)
	}
	return id, ok, nil
}

// SetIdentity records the identity, replacing any recorded one. The daemon
// records it on a new store and refuses to run when it differs from the
// server it connects to.
func (s *Store) SetIdentity(id Identity) error {
	v, err := json.Marshal(id)
	if err != nil {
		return err
	}
	s.wmu.Lock()
	defer s.wmu.Unlock()
	if err := s.update(func(tx *bolt.Tx) error {
		return tx.Bucket(bucketMeta).Put(metaIdentity, v)
	}); err != nil {
		return fmt.Errorf("sink: write identity: %w", err)
	}
	return nil
}

// Scan calls fn for every row event with from <= key < to, in ascending
// key order, inside one read transaction; a nil bound is open. Chain
// records (genesis, gaps) are skipped. key and record are valid only during
// the call (they point into the mapped file): copy what must outlive it.
// Scan stops at and returns fn's first error.
//
// Every record is checked before fn sees it: its hash, its key, and (from
// the second record on, or from the first when from is nil) its link to
// the record before it. A record that fails is never handed on: Scan
// returns an error wrapping ErrDamaged that names it.
//
// A read transaction held open for long keeps bbolt from reusing freed
// pages, and blocks the writer if the file outgrows its mapping; the
// initial mapping is large to make the latter rare.
func (s *Store) Scan(from, to []byte, fn func(key, record []byte) error) error {
	fn = guarded(fn)
	return s.view(func(tx *bolt.Tx) error {
		cuts, err := s.cutsOf(tx)
		if err != nil {
			return err
		}
		last, err := walkChain(tx, s.db.Path(), cuts, from, to, func(k, v []byte) error {
			if IsChainRecord(k) {
				return nil
			}
			return fn(k, v)
		})
		if err != nil {
			return err
		}
		// A whole scan ends at the head meta records: a page bbolt misread
		// must not end an export early without a word.
		if from == nil && to == nil {
			if head := tx.Bucket(bucketMeta).Get(metaHeadHash); !bytes.Equal(head, last[:]) {
				return damaged(s.db.Path(), "the chain ends before the head recorded in meta: run 'cdcaudit verify'")
			}
		}
		return nil
	})
}

// walkChain hands fn every record (chain records too) with from <= key <
// to, in key order, each checked first: its hash, its key, and (from the
// second record on, or from the first when from is nil) its link to the
// record before it, or across a cut's range the link the cut names. It
// returns the hash of the last record checked. path names the file in
// damage errors.
func walkChain(tx *bolt.Tx, path string, cuts *cutSet, from, to []byte, fn func(key, record []byte) error) (audit.Hash, error) {
	c := newRecordCursor(tx)
	var k, v []byte
	var err error
	if from == nil {
		k, v, err = c.First()
	} else {
		k, v, err = c.Seek(from)
	}
	linked := from == nil
	prev := audit.Genesis
	var prevKey [audit.KeyLen]byte
	for ; ; k, v, err = c.Next() {
		if err != nil {
			return prev, damaged(path, "%v: run 'cdcaudit verify'", err)
		}
		if k == nil || to != nil && bytes.Compare(k, to) >= 0 {
			return prev, nil
		}
		if linked && prev == audit.Genesis && !bytes.Equal(k, genesisKey[:]) {
			return prev, damaged(path, "the chain does not begin with its genesis record: run 'cdcaudit verify'")
		}
		want, check := prev, linked
		if linked { // across a cut's range: the link the cut names
			want, check = cuts.linkTarget(prevKey[:], prev, k)
		}
		h, err := checkRecordAt(path, k, v, want, check)
		if err != nil {
			return prev, err
		}
		prev, linked = h, true
		copy(prevKey[:], k)
		if err := fn(k, v); err != nil {
			return prev, err
		}
	}
}

// checkRecord checks a record read back: its hash, that it is stored
// under its own id, and (when linked) that it chains to prev.
func (s *Store) checkRecord(k, v []byte, prev audit.Hash, linked bool) (audit.Hash, error) {
	return checkRecordAt(s.db.Path(), k, v, prev, linked)
}

func checkRecordAt(path string, k, v []byte, prev audit.Hash, linked bool) (audit.Hash, error) {
	p, h, err := checkStored(path, k, v)
	if err == nil && linked && p != prev {
		err = damaged(path, "record %s does not chain to the record before it (removed, inserted or damaged records): run 'cdcaudit verify'", keyID(k))
	}
	return h, err
}

// checkStored checks a record read back: its hash, and that it is stored
// under its own id; it returns its prev_hash and hash.
func checkStored(path string, k, v []byte) (prev, h audit.Hash, err error) {
	if len(k) != audit.KeyLen {
		return prev, h, damaged(path, "malformed key %x: run 'cdcaudit verify'", k)
	}
	id := keyID(k)
	_, prev, h, err = audit.Check(v)
	if err != nil || len(v) < len(`{"id":"`)+len(id)+1 || string(v[len(`{"id":"`):len(`{"id":"`)+len(id)+1]) != id+`"` {
		return prev, h, damaged(path, "record %s does not match its hash or its key (damaged or altered): run 'cdcaudit verify'", id)
	}
	return prev, h, nil
}

// Get returns a copy of the stored record of the event id, or an error
// wrapping ErrNotFound.
func (s *Store) Get(id string) ([]byte, error) {
	lsn, ord, err := audit.ParseID(id)
	if err != nil {
		return nil, err
	}
	key := audit.MakeKey(lsn, ord)
	var rec []byte
	err = s.view(func(tx *bolt.Tx) error {
		v, err := getRecord(tx, key[:])
		if err != nil {
			return damaged(s.db.Path(), "%v: run 'cdcaudit verify'", err)
		}
		if v != nil {
			if _, err := s.checkRecord(key[:], v, audit.Genesis, false); err != nil {
				return err
			}
			rec = append([]byte(nil), v...)
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	if rec == nil {
		return nil, fmt.Errorf("%w: %s", ErrNotFound, id)
	}
	return rec, nil
}

// keyID formats a store key as an event id, for messages.
func keyID(k []byte) string {
	lsn, ord, ok := audit.SplitKey(k)
	if !ok {
		return fmt.Sprintf("<malformed key %x>", k)
	}
	return audit.FormatID(lsn, ord)
}

// Records hands fn, in key order, the records after the record at after
// (nil: from the first), every one of them — row events, snapshot records
// and chain records (genesis, gap, slot_lost, cut) — at most limit (0: no
// limit), inside one short read transaction: the way a reader that follows
// the whole chain (an outbox sink) reads the store a page at a time. Every
// record is checked first (its hash, its key, and its link to the record
// before it in the page, or across a cut's range the link the cut names);
// one that fails is never handed on. key and record are valid only during
// the call. fn's error stops Records and is returned.
func (s *Store) Records(ctx context.Context, after []byte, limit int, fn func(key, record []byte) error) error {
	if after != nil && len(after) != audit.KeyLen {
		return fmt.Errorf("sink: records: a store key has %d bytes, not %d", audit.KeyLen, len(after))
	}
	var from []byte
	if after != nil {
		from = nextKey(after)
	}
	fn = guarded(fn)
	n := 0
	err := s.view(func(tx *bolt.Tx) error {
		cuts, err := s.cutsOf(tx)
		if err != nil {
			return err
		}
		_, err = walkChain(tx, s.db.Path(), cuts, from, nil, func(k, v []byte) error {
			if err := ctx.Err(); err != nil {
				return err
			}
			if err := fn(k, v); err != nil {
				return err
			}
			if n++; limit > 0 && n >= limit {
				return errStop
			}
			return nil
		})
		return err
	})
	if err == errStop {
		err = nil
	}
	return err
}
