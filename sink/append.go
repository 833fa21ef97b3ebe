package sink

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"time"

	"github.com/cdcaudit/cdcaudit/audit"
	bolt "go.etcd.io/bbolt"
)

// Encoded is one event ready to store: its key and its body from
// audit.Event.AppendBody (the store seals it).
type Encoded struct {
	Key [audit.KeyLen]byte
	// Body is the event's AppendBody encoding. Append seals a huge record
	// (hugeRecord and above, stored alone) in Body's spare capacity when
	// there is room (give it audit.SealedLen(len(Body))), so Body must own
	// that capacity: no other slice may live there. Others are sealed into
	// their block. Append never changes Body[:len(Body)].
	Body []byte
	// Snapshot marks a snapshot record: a row as read, not a change, so
	// not counted among the store's events.
	Snapshot bool
	// Terms are what the event is indexed by (nil for chain records; for a
	// row event without them the store parses the body).
	Terms *audit.Terms
}

// Batch is a run of events and the checkpoint they complete.
type Batch struct {
	Events []Encoded
	// Checkpoint is the end LSN of the last complete transaction in the
	// batch, or an idle advance with no events; 0 means no new checkpoint
	// (the batch is part of a transaction still being received).
	Checkpoint uint64
	// State is derived state (sessions, model names …) that the events of
	// this batch changed: stored in the same transaction as the events.
	State []StateRecord
	// Images are the changes to the records' last images that the events
	// of this batch made, in stream order: stored in the same transaction.
	Images []ImageWrite
	// CommitTime is the commit time of the transaction Checkpoint ends
	// (zero for an idle advance or a partial batch); it feeds the lag metric.
	CommitTime time.Time
}

// Result is what one Append did.
type Result struct {
	Stored     int    // events sealed and written
	Duplicates int    // events already in the store (a replay), skipped
	Checkpoint uint64 // the durable checkpoint after the append
	Bytes      int64  // key and record bytes written
	// Flags counts the row events stored (not the duplicates) by flag, from
	// their Terms (nil when none carried one).
	Flags map[string]int
}

// Append stores the batches in ONE bbolt transaction, ended by an fsync:
// the events and the new checkpoint become durable together, or not at all.
//
// Events must come in ascending key order. An event whose key is not above
// the chain head must already be in the store (a replay after a crash or a
// reconnect) and is skipped; one that is missing would have to be chained
// into the middle, which means the ordering guarantee is broken: Append
// then fails and stores nothing.
func (s *Store) Append(batches []Batch) (res Result, err error) {
	s.wmu.Lock()
	defer s.wmu.Unlock()
	defer catchDamage(s.db.Path(), &err)()
	st := *s.state.Load()
	old := st.checkpoint
	res = Result{Checkpoint: old}

	tx, err := s.db.Begin(true)
	if err != nil {
		return res, fmt.Errorf("sink: append: %w", err)
	}
	defer tx.Rollback() // no-op after a successful Commit
	wroteState := false
	var imageTables map[string]*bolt.Bucket
	if s.enc == nil {
		s.enc = newBlockEncoder()
	}
	enc := s.enc
	enc.reset()
	defer enc.reset()
	// flush writes the block being built (a block never spans Appends:
	// it is never rewritten by a later one).
	flush := func() error {
		if enc.len() == 0 {
			return nil
		}
		keys, recs := enc.slices()
		v := enc.encode()
		if err := s.writeBlock(tx, keys, recs, enc.terms, v); err != nil {
			return err
		}
		res.Bytes += int64(len(keys[0]) + len(v))
		enc.reset()
		return nil
	}

	for bi := range batches {
		b := &batches[bi]
		for i := range b.Events {
			e := &b.Events[i]
			k := e.Key[:]
			if st.hasHead && bytes.Compare(k, st.headKey[:]) <= 0 {
				if err := flush(); err != nil { // a replay of this very append reads it back
					return Result{Checkpoint: old}, err
				}
				stored, err := hasRecord(tx, k)
				if err != nil {
					return Result{Checkpoint: old}, damaged(s.db.Path(), "%v: run 'cdcaudit verify'", err)
				}
				if !stored {
					return Result{Checkpoint: old}, fmt.Errorf("sink: event %s is not after the chain head %s and is not stored: "+
						"events arrived out of order; nothing of this append was stored", keyID(k), keyID(st.headKey[:]))
				}
				res.Duplicates++
				continue
			}
			if err := checkBody(k, e.Body); err != nil {
				return Result{Checkpoint: old}, err
			}
			n := audit.SealedLen(len(e.Body))
			if n >= hugeRecord {
				// Alone and bare, sealed in the body's own spare capacity
				// (the producer sizes it with SealedLen): no copy. bbolt
				// keeps the value until the commit; the body is ours until
				// Append returns.
				if err := flush(); err != nil {
					return Result{Checkpoint: old}, err
				}
				var rec []byte
				rec, st.headHash = audit.SealInPlace(e.Body, st.headHash)
				if err := s.writeBlock(tx, [][]byte{k}, [][]byte{rec}, []*audit.Terms{e.Terms}, rec); err != nil {
					return Result{Checkpoint: old}, err
				}
				res.Bytes += int64(len(k) + len(rec))
			} else {
				if !enc.fits(n) {
					if err := flush(); err != nil {
						return Result{Checkpoint: old}, err
					}
				}
				st.headHash = enc.seal(k, e.Body, st.headHash, e.Terms)
			}
			st.headKey, st.hasHead = e.Key, true
			if !IsChainRecord(k) && !e.Snapshot {
				st.count++
				if e.Terms != nil {
					for _, f := range e.Terms.Flags {
						if res.Flags == nil {
							res.Flags = map[string]int{}
						}
						res.Flags[f]++
					}
				}
			}
			res.Stored++
		}
		st.checkpoint = max(st.checkpoint, b.Checkpoint)
		if err := putState(tx, b.State); err != nil {
			return Result{Checkpoint: old}, err
		}
		if len(b.Images) > 0 && imageTables == nil {
			imageTables = make(map[string]*bolt.Bucket)
		}
		if err := putImages(tx, b.Images, imageTables); err != nil {
			return Result{Checkpoint: old}, err
		}
		wroteState = wroteState || len(b.State) > 0 || len(b.Images) > 0
	}

	if err := flush(); err != nil {
		return Result{Checkpoint: old}, err
	}
	if res.Stored == 0 && st.checkpoint == old && !wroteState {
		return res, nil // a pure replay: nothing to write, spare the fsync
	}
	meta := tx.Bucket(bucketMeta)
	kvs := []struct{ k, v []byte }{
		{metaCheckpoint, binary.BigEndian.AppendUint64(nil, st.checkpoint)},
		{metaCount, binary.BigEndian.AppendUint64(nil, st.count)},
	}
	// Only a store that lost its genesis record has no head: never record
	// the zero key as one.
	if st.hasHead {
		kvs = append(kvs, []struct{ k, v []byte }{
			{metaHeadKey, append([]byte(nil), st.headKey[:]...)},
			{metaHeadHash, append([]byte(nil), st.headHash[:]...)},
		}...)
	}
	for _, kv := range kvs {
		if err := meta.Put(kv.k, kv.v); err != nil {
			return Result{Checkpoint: old}, fmt.Errorf("sink: append: %w", err)
		}
	}
	if err := tx.Commit(); err != nil {
		return Result{Checkpoint: old}, fmt.Errorf("sink: commit: %w", err)
	}
	s.state.Store(&st)
	res.Checkpoint = st.checkpoint
	return res, nil
}

// writeBlock stores a block (its stored value v) and tells the index,
// in the same transaction.
func (s *Store) writeBlock(tx *bolt.Tx, keys, recs [][]byte, terms []*audit.Terms, v []byte) error {
	if err := putBlock(tx, keys[0], v); err != nil {
		return fmt.Errorf("sink: put block %s: %w", keyID(keys[0]), err)
	}
	if err := s.index.addBlock(tx, keys[0], keys, recs, terms); err != nil {
		return fmt.Errorf("sink: index block %s: %w", keyID(keys[0]), err)
	}
	return nil
}

// checkBody catches a body that is not AppendBody's output for this key
// before it is sealed for good: Verify would report it as tampering.
func checkBody(k, body []byte) error {
	if bytes.Equal(k, genesisKey[:]) {
		return fmt.Errorf("sink: the genesis record is written only when a store is created")
	}
	const prefix = `{"id":"`
	lsn, ord, _ := audit.SplitKey(k)
	var idBuf [32]byte
	id := audit.AppendID(idBuf[:0], lsn, ord) // on the stack: checked for every event
	n := len(prefix) + len(id)
	if len(body) <= n || string(body[:len(prefix)]) != prefix || string(body[len(prefix):n]) != string(id) ||
		body[n] != '"' || body[len(body)-1] != ',' {
		return fmt.Errorf("sink: event %s: body is not an audit.Event.AppendBody encoding of this key", keyID(k))
	}
	// A record is one JSON Lines line, forever: a raw line break (a json
	// value not compacted) must be refused before it is sealed.
	if bytes.IndexByte(body, '\n') >= 0 || bytes.IndexByte(body, '\r') >= 0 {
		return fmt.Errorf("sink: event %s: body contains a raw line break (embedded json values must be compacted)", keyID(k))
	}
	return nil
}
