package sink

import (
	"bytes"
	"context"
	"errors"
	"fmt"

	"github.com/cdcaudit/cdcaudit/audit"
	bolt "go.etcd.io/bbolt"
)

// ErrChainBroken is wrapped by every problem Verify finds.
var ErrChainBroken = errors.New("audit chain broken")

// VerifyError is the first problem Verify found.
type VerifyError struct {
	ID     string // the event at fault ("" when the problem is the store's meta)
	Reason string
}

func (e *VerifyError) Error() string {
	if e.ID == "" {
		return "audit chain broken: " + e.Reason
	}
	return "audit chain broken at event " + e.ID + ": " + e.Reason
}

func (e *VerifyError) Unwrap() error { return ErrChainBroken }

// VerifyResult summarizes a store that verified.
type VerifyResult struct {
	Events     uint64     // row events (changes)
	Snapshots  uint64     // snapshot records (rows as read, not changes)
	HeadID     string     // the last record of the chain (the genesis record in a store without events)
	HeadHash   audit.Hash // publish it elsewhere to anchor the chain
	Genesis    audit.Hash // the genesis record's hash: names the chain
	Checkpoint uint64
	// Marks are the chain records after the genesis record: gaps and lost
	// slots, in chain order. The chain is intact, but events are missing
	// from the trail there.
	Marks []Mark
	// Cuts are the cuts in force (retention removed the events of their
	// ranges), in chain order of their ranges; Pruned sums their removals.
	Cuts   []Cut
	Pruned uint64
}

// Mark is a chain record that admits missing events.
type Mark struct {
	ID     string
	Op     string // MarkGap, MarkSlotLost
	Record string // the whole record (JSON)
}

// Waypoints are records whose hash must be checked in passing (anchors):
// Verify fills Found and Hash for the ids it meets. Key by event id.
type Waypoints map[string]*Waypoint

// Waypoint is one record Verify was asked to look at.
type Waypoint struct {
	Found bool
	Hash  audit.Hash
}

// Verify walks every event in key order, inside one read transaction, and
// returns the first problem as a *VerifyError: a record whose content does
// not match its hash, whose id is not its key, whose prev_hash is not the
// hash of the record before it (an event removed or inserted), keys out of
// order, or meta's head and count disagreeing with the records (events
// removed from or added at the end). progress, when set, is called now and
// then with the number of events checked.
func (s *Store) Verify(ctx context.Context, progress func(done uint64)) (VerifyResult, error) {
	return s.VerifyThrough(ctx, progress, nil)
}

// VerifyThrough is Verify that also records, for each waypoint, whether
// the chain holds that record and its hash.
func (s *Store) VerifyThrough(ctx context.Context, progress func(done uint64), points Waypoints) (VerifyResult, error) {
	var res VerifyResult
	err := s.view(func(tx *bolt.Tx) error {
		meta := tx.Bucket(bucketMeta)
		res.Checkpoint = getUint64(meta, metaCheckpoint)
		metaCount := getUint64(meta, metaCount)
		metaHead, metaHash := meta.Get(metaHeadKey), meta.Get(metaHeadHash)

		var (
			n                  uint64 // records, chain records included
			events             uint64
			prevKey            []byte // a copy: the cursor reuses its keys
			keyBufs            [2][audit.KeyLen]byte
			prevHash           = audit.Genesis
			beforePrevHash     audit.Hash
			beforePrevKey      []byte
			recordedHeadPassed bool
		)
		cs, err := loadCuts(tx)
		if err != nil {
			return &VerifyError{Reason: "the store's list of cuts: " + err.Error()}
		}
		cw := newCutWalk(cs)
		c := newRecordCursor(tx)
		k, v, err := c.First()
		for ; ; k, v, err = c.Next() {
			if be := (*blockError)(nil); errors.As(err, &be) {
				return &VerifyError{ID: keyID(be.key), Reason: "the block of records stored here cannot be read (damaged or altered: " +
					be.what + ")"}
			} else if err != nil {
				return err
			}
			if k == nil {
				break
			}
			if n%1024 == 0 {
				if err := ctx.Err(); err != nil {
					return err
				}
			}
			if n%100_000 == 0 && n > 0 && progress != nil {
				progress(events)
			}
			id := keyID(k)
			if len(k) != audit.KeyLen {
				return &VerifyError{ID: id, Reason: "malformed key"}
			}
			if prevKey != nil && bytes.Compare(k, prevKey) <= 0 {
				return &VerifyError{ID: id, Reason: "key out of order after event " + keyID(prevKey)}
			}
			if recordedHeadPassed {
				return &VerifyError{ID: id, Reason: "event after the recorded chain head " + keyID(metaHead) +
					": added outside cdcaudit"}
			}
			_, prev, h, err := audit.Check(v)
			if err != nil {
				return &VerifyError{ID: id, Reason: "content does not match its hash (the record was altered)"}
			}
			if n == 0 && (!bytes.Equal(k, genesisKey[:]) || chainOp(v) != MarkGenesis) {
				return &VerifyError{ID: id, Reason: "the chain does not begin with its genesis record: records were removed from the start"}
			}
			// A sound record under another key was moved. Compare the whole id
			// member: Check returns a fixed width.
			if !bytes.HasPrefix(v, []byte(`{"id":"`+id+`"`)) {
				return &VerifyError{ID: id, Reason: "record's id does not match its key (the record was moved)"}
			}
			want, linked, cerr := cw.step(k, prevHash)
			if cerr != nil {
				return cerr
			}
			if !linked {
				cw.keep(h) // kept inside a cut's range: its hash is in the cut's kept_hash
			} else if prev != want {
				switch {
				case want != prevHash:
					return &VerifyError{ID: id, Reason: "prev_hash is not the chain value of cut " + cw.passed.ID +
						" (the last record of its range): a record after the range was removed or replaced"}
				case prevKey == nil:
					return &VerifyError{ID: id, Reason: "first event's prev_hash is not the genesis hash: events were removed from the start"}
				case prev == audit.Genesis:
					return &VerifyError{ID: id, Reason: "inserted: it chains to the zero hash, as only the genesis record may"}
				case beforePrevKey != nil && prev == beforePrevHash:
					return &VerifyError{ID: keyID(prevKey), Reason: "inserted: the next event " + id +
						" chains to the event before it"}
				default:
					return &VerifyError{ID: id, Reason: "prev_hash is not the hash of the preceding event " +
						keyID(prevKey) + ": an event between them was removed or replaced"}
				}
			}
			if metaHead != nil && bytes.Equal(k, metaHead) {
				recordedHeadPassed = true
				if !bytes.Equal(h[:], metaHash) {
					return &VerifyError{ID: id, Reason: "hash differs from the chain head hash recorded in meta"}
				}
			}
			if IsChainRecord(k) {
				switch op := chainOp(v); {
				case n == 0:
					res.Genesis = h
				case op == MarkGenesis:
					return &VerifyError{ID: id, Reason: "a second genesis record: the chain of another store was spliced in"}
				case op == MarkCut:
					if err := cw.meet(k, v); err != nil {
						return err
					}
				default:
					res.Marks = append(res.Marks, Mark{ID: id, Op: op, Record: string(v)})
				}
			} else if audit.IsSnapshotRecord(v) {
				res.Snapshots++
			} else {
				events++
			}
			if w := points[id]; w != nil {
				w.Found, w.Hash = true, h
			}
			beforePrevKey, beforePrevHash = prevKey, prevHash
			keyBufs[n%2] = [audit.KeyLen]byte(k)
			prevKey, prevHash = keyBufs[n%2][:], h
			n++
		}
		if n > 0 {
			if err := cw.finish(); err != nil {
				return err
			}
		}
		for _, c := range cs.effective {
			res.Cuts = append(res.Cuts, *c)
			res.Pruned += c.Removed
		}
		res.Events = events
		if prevKey != nil {
			res.HeadID, res.HeadHash = keyID(prevKey), prevHash
		}
		switch {
		case n == 0 && res.Checkpoint != 0:
			return &VerifyError{Reason: fmt.Sprintf("the store holds no records, not even its genesis record, but a checkpoint (%s): its records were removed",
				audit.FormatLSN(res.Checkpoint))}
		case n == 0:
			return &VerifyError{Reason: "the store holds no records, not even its genesis record: they were removed"}
		case metaHead != nil && !recordedHeadPassed:
			last := "the store is empty"
			if prevKey != nil {
				last = "the last stored event is " + keyID(prevKey)
			}
			return &VerifyError{ID: keyID(metaHead), Reason: "the chain head recorded in meta is missing (" + last +
				"): events were removed from the end"}
		case metaHead == nil:
			return &VerifyError{ID: res.HeadID, Reason: "meta records no chain head but the store holds records: added outside cdcaudit"}
		case events != metaCount:
			return &VerifyError{Reason: fmt.Sprintf("meta counts %d events but the store holds %d", metaCount, events)}
		}
		if progress != nil {
			progress(events)
		}
		return nil
	})
	return res, err
}
