package main

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/cdcaudit/cdcaudit/anchor"
	"github.com/cdcaudit/cdcaudit/audit"
	"github.com/cdcaudit/cdcaudit/instancekey"
	"github.com/cdcaudit/cdcaudit/sink"
)

// A store pruned by retention verifies "from the cut", and the anchors of
// records retention removed still agree with it.
func TestVerifyAfterRetention(t *testing.T) {
	dir := makeStore(t, 40) // events at 10:00:00 + i seconds
	s, err := sink.Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	early, _ := s.Get(audit.FormatID(0x1080+5*0x100, 1))
	_, _, earlyHash, _ := audit.Check(early)
	key, err := instancekey.LoadOrCreate(dir)
	if err != nil {
		t.Fatal(err)
	}
	gen, _ := s.GenesisHash()
	anchors := anchor.Sign(anchor.Anchor{Time: time.Now(), Genesis: gen.String(), HeadID: audit.FormatID(0x1080+5*0x100, 1),
		HeadHash: earlyHash.String(), Events: 6, Checkpoint: "0/0"}, key)
	now := time.Date(2026, 11, 23, 10, 0, 30, 0, time.UTC).Add(time.Hour)
	p, err := s.NewPruner(sink.Retention{Default: time.Hour, Now: func() time.Time { return now }, Batch: 8})
	if err != nil {
		t.Fatal(err)
	}
	st, err := p.Prune(t.Context())
	if err != nil || st.Removed != 31 || st.Cuts != 4 {
		t.Fatalf("prune: %+v %v", st, err)
	}
	headKey, headHash, n := s.Head()
	s.Close()
	file := filepath.Join(t.TempDir(), "anchors")
	os.WriteFile(file, []byte(anchors+"\n"), 0o600)

	// The anchored record is gone under a cut that no anchor covers yet: it
	// cannot be told from a forged one.
	out, errOut, code := runCLI(t, nil, "verify", "--data-dir", dir, "--anchor", file)
	if code != exitFail || !strings.Contains(out, "no anchor covers that cut") {
		t.Fatalf("verify with an anchor older than the cuts: %d\n%s\n%s", code, out, errOut)
	}
	// Once the head after the cuts is anchored (as run does at stop), it agrees.
	anchors += "\n" + anchor.Sign(anchor.Anchor{Time: time.Now().Add(time.Minute), Genesis: gen.String(), HeadID: audit.FormatID(mustSplit(t, headKey)),
		HeadHash: headHash.String(), Events: n, Checkpoint: "0/0"}, key)
	os.WriteFile(file, []byte(anchors+"\n"), 0o600)
	out, errOut, code = runCLI(t, nil, "verify", "--data-dir", dir, "--anchor", file)
	if code != exitOK || !strings.Contains(out, "OK: 9 events verified from cut "+st.LastCut.ID+" made 20") ||
		!strings.Contains(out, "retention:   31 records removed under 4 cut(s)") || !strings.Contains(out, "anchors:     2 of this chain agree") {
		t.Fatalf("verify: %d\n%s\n%s", code, out, errOut)
	}

	// Exports read across the cuts.
	out, errOut, code = runCLI(t, nil, "export", "--data-dir", dir)
	if code != exitOK || strings.Count(out, "\n") != 9 {
		t.Fatalf("export: %d\n%s\n%s", code, out, errOut)
	}

	// One more event removed by hand: verify fails.
	k := audit.MakeKey(0x1080+35*0x100, 1)
	err = sink.EditRecords(dir, func(key, rec []byte) ([]byte, error) {
		if bytes.Equal(key, k[:]) {
			return nil, nil
		}
		return rec, nil
	})
	if err != nil {
		t.Fatal(err)
	}
	out, _, code = runCLI(t, nil, "verify", "--data-dir", dir)
	if code != exitFail || !strings.Contains(out, "FAIL:") {
		t.Fatalf("verify after a removal by hand: %d\n%s", code, out)
	}
}

func mustSplit(t *testing.T, key []byte) (uint64, uint32) {
	lsn, ord, ok := audit.SplitKey(key)
	if !ok {
		t.Fatalf("bad key %x", key)
	}
	return lsn, ord
}
