package sink

import (
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/cdcaudit/cdcaudit/audit"
)

// chainStore makes a store of 10 events (commit LSNs 0x100…0xA00), one
// block each, and returns its directory, closed.
func chainStore(t *testing.T) string { return chainStoreIn(t, false) }

// chainStoreIn is chainStore; oneBlock appends the 10 events at once, so
// they share a block.
func chainStoreIn(t *testing.T, oneBlock bool) string {
	dir := t.TempDir()
	s := mustOpen(t, dir)
	if oneBlock {
		var bs []Batch
		for c := uint64(1); c <= 10; c++ {
			bs = append(bs, txBatch(c<<8, 1))
		}
		mustAppend(t, s, bs...)
		if blocks, recs := blockCount(t, s); blocks != 2 || recs != 11 {
			t.Fatalf("%d blocks of %d records, want the genesis record and one block of 10", blocks, recs)
		}
	} else {
		for c := uint64(1); c <= 10; c++ {
			mustAppend(t, s, txBatch(c<<8, 1))
		}
	}
	var done []uint64
	res, err := s.Verify(t.Context(), func(n uint64) { done = append(done, n) })
	if err != nil || res.Events != 10 || res.HeadID != id(10) || len(done) == 0 || done[len(done)-1] != 10 {
		t.Fatalf("fresh store: %+v %v %v", res, err, done)
	}
	if _, h, _ := s.Head(); h != res.HeadHash {
		t.Fatal("verify head hash differs from Head")
	}
	s.Close()
	return dir
}

func id(c uint64) string { return audit.FormatID(c<<8, 1) }

func key(c uint64) []byte { return mkey(c<<8, 1) }

func mkey(commit uint64, ord uint32) []byte { k := audit.MakeKey(commit, ord); return k[:] }

func verifyErr(t *testing.T, dir string) *VerifyError {
	t.Helper()
	s, err := OpenReadOnly(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	_, err = s.Verify(t.Context(), nil)
	var ve *VerifyError
	if !errors.As(err, &ve) || !errors.Is(err, ErrChainBroken) {
		t.Fatalf("verify did not fail: %v", err)
	}
	t.Log(err)
	return ve
}

// forge seals a well-formed event chained after the stored record prevRec.
func forge(prevRec []byte, commit uint64) []byte {
	_, _, h, _ := audit.Check(prevRec)
	e := ev(commit, 1)
	rec, _ := audit.Seal(nil, e.Body, h)
	return rec
}

func TestVerifyDetects(t *testing.T) {
	cases := []struct {
		name   string
		edit   func(e *recordEditor) error
		wantID string
		reason string
	}{
		{"altered byte", func(e *recordEditor) error {
			rec := e.get(key(5))
			i := strings.Index(string(rec), `"sale"`)
			rec[i+1] = 'S'
			return e.put(key(5), rec)
		}, id(5), "altered"},
		{"deleted middle", func(e *recordEditor) error { return e.del(key(5)) }, id(6), "removed"},
		{"deleted first", func(e *recordEditor) error { return e.del(key(1)) }, id(2), "removed"},
		{"deleted genesis", func(e *recordEditor) error { return e.del(mkey(0, 0)) }, id(1), "genesis"},
		{"deleted last", func(e *recordEditor) error { return e.del(key(10)) }, id(10), "removed from the end"},
		{"forged insert", func(e *recordEditor) error {
			// Chained correctly to event 5, between 5 and 6.
			return e.put(mkey(5<<8|0x80, 1), forge(e.get(key(5)), 5<<8|0x80))
		}, audit.FormatID(5<<8|0x80, 1), "inserted"},
		{"forged first", func(e *recordEditor) error {
			rec, _ := audit.Seal(nil, ev(0x10, 1).Body, audit.Genesis)
			return e.put(mkey(0x10, 1), rec)
		}, audit.FormatID(0x10, 1), "inserted"},
		{"forged append", func(e *recordEditor) error {
			return e.put(key(11), forge(e.get(key(10)), 11<<8))
		}, id(11), "outside cdcaudit"},
		{"moved record", func(e *recordEditor) error {
			rec := e.get(key(5))
			if err := e.del(key(5)); err != nil {
				return err
			}
			return e.put(mkey(5<<8, 2), rec)
		}, audit.FormatID(5<<8, 2), "moved"},
	}
	for _, layout := range []struct {
		name     string
		oneBlock bool
	}{{"a block per event", false}, {"one block", true}} {
		for _, c := range cases {
			t.Run(layout.name+"/"+c.name, func(t *testing.T) {
				dir := chainStoreIn(t, layout.oneBlock)
				tamper(t, dir, c.edit)
				ve := verifyErr(t, dir)
				if ve.ID != c.wantID || !strings.Contains(ve.Reason, c.reason) {
					t.Fatalf("got %q %q, want event %s (%s)", ve.ID, ve.Reason, c.wantID, c.reason)
				}
			})
		}
	}
}

func TestVerifyCanceled(t *testing.T) {
	dir := chainStore(t)
	s, err := OpenReadOnly(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	if _, err := s.Verify(ctx, nil); !errors.Is(err, context.Canceled) {
		t.Fatalf("got %v", err)
	}
}

// A checkpoint can be durable before the first event (idle advance, state
// records): the store is then empty and must verify, and events appended
// afterwards must chain from the genesis hash as usual.
func TestVerifyCheckpointBeforeFirstEvent(t *testing.T) {
	dir := t.TempDir()
	s := mustOpen(t, dir)
	if _, err := s.Append([]Batch{{Checkpoint: 0x80}}); err != nil {
		t.Fatal(err)
	}
	if res, err := s.Verify(t.Context(), nil); err != nil || res.Events != 0 || res.Checkpoint != 0x80 {
		t.Fatalf("checkpoint only: %+v %v", res, err)
	}
	mustAppend(t, s, txBatch(0x100, 2))
	if res, err := s.Verify(t.Context(), nil); err != nil || res.Events != 2 {
		t.Fatalf("after the first events: %+v %v", res, err)
	}
	s.Close()
	// A forged event in a store whose meta has no head yet is still caught.
	dir = t.TempDir()
	s = mustOpen(t, dir)
	if _, err := s.Append([]Batch{{Checkpoint: 0x80}}); err != nil {
		t.Fatal(err)
	}
	s.Close()
	tamper(t, dir, func(e *recordEditor) error {
		rec, _ := audit.Seal(nil, ev(0x100, 1).Body, audit.Genesis)
		return e.put(mkey(0x100, 1), rec)
	})
	if ve := verifyErr(t, dir); !strings.Contains(ve.Reason, "outside cdcaudit") {
		t.Fatalf("forged event in an empty store: %q", ve.Reason)
	}
}

// Snapshot records are stored and chained like events but not counted as
// events: meta's count and Verify's Events leave them out, Snapshots counts
// them, and a record passed off as the other kind is caught.
func TestSnapshotRecordsNotCounted(t *testing.T) {
	dir := t.TempDir()
	s := mustOpen(t, dir)
	snap := func(commit uint64, ord uint32) Encoded {
		e := &audit.Event{LSN: commit, CommitLSN: commit, Ordinal: ord, XID: 9, CommitTime: t0, Database: "odoo",
			Schema: "public", Table: "res_users", Op: audit.OpSnapshot,
			Key: audit.Row{{Name: "id", Value: []byte("1")}}, After: audit.Row{{Name: "id", Value: []byte("1")}}, Changed: []string{}}
		return Encoded{Key: e.StoreKey(), Body: e.AppendBody(nil), Snapshot: true}
	}
	mustAppend(t, s, Batch{Events: []Encoded{ev(0x100, 1), snap(0x200, 1), snap(0x200, 2)}, Checkpoint: 0x210})
	if _, _, n := s.Head(); n != 1 {
		t.Fatalf("meta counts %d events, want the 1 change", n)
	}
	res, err := s.Verify(t.Context(), nil)
	if err != nil || res.Events != 1 || res.Snapshots != 2 {
		t.Fatalf("verify: %+v %v", res, err)
	}
	s.Close()
	// A snapshot record stored as a change: the counts disagree.
	s = mustOpen(t, dir)
	mustAppend(t, s, Batch{Events: []Encoded{{Key: snap(0x300, 1).Key, Body: snap(0x300, 1).Body}}, Checkpoint: 0x310})
	if _, err := s.Verify(t.Context(), nil); err == nil || !strings.Contains(err.Error(), "meta counts 2 events but the store holds 1") {
		t.Fatalf("verify of a miscounted snapshot record: %v", err)
	}
	s.Close()
}
