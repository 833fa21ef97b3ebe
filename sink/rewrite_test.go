package sink

import (
	"bytes"
	"strings"
	"testing"

	"github.com/cdcaudit/cdcaudit/audit"
	bolt "go.etcd.io/bbolt"
)

// indexLog records what the store tells its index.
type indexLog struct{ calls []string }

func (l *indexLog) addBlock(_ *bolt.Tx, bk []byte, keys, recs [][]byte, terms []*audit.Terms) error {
	if len(keys) != len(recs) || len(keys) != len(terms) || !bytes.Equal(keys[0], bk) {
		panic("addBlock: keys, records and terms disagree")
	}
	for i := range keys {
		if id, _, _, err := audit.Check(recs[i]); err != nil || id != keyID(keys[i]) {
			panic("addBlock: a record that is not its key's")
		}
	}
	l.calls = append(l.calls, "add "+keyID(bk)+" "+keyID(keys[len(keys)-1]))
	return nil
}

func (l *indexLog) removeBlock(_ *bolt.Tx, bk []byte, keys, recs [][]byte) error {
	l.calls = append(l.calls, "remove "+keyID(bk)+" "+keyID(keys[len(keys)-1]))
	return nil
}

// Append tells the index of every block it writes, once.
func TestAppendTellsTheIndex(t *testing.T) {
	s := mustOpen(t, t.TempDir())
	defer s.Close()
	log := &indexLog{}
	s.index = log
	mustAppend(t, s, txBatch(0x100, 70), txBatch(0x200, 2))
	mustAppend(t, s, txBatch(0x200, 2)) // a replay: nothing
	want := "add 0000000000000100-000001 0000000000000100-000064|add 0000000000000100-000065 0000000000000200-000002"
	if got := strings.Join(log.calls, "|"); got != want {
		t.Fatalf("index told\n%s\nwant\n%s", got, want)
	}
}

func TestRewriteBlocks(t *testing.T) {
	s := mustOpen(t, t.TempDir())
	defer s.Close()
	// Blocks: [0x100-1 … 0x100-64] [0x100-65 … 0x100-70, 0x200-1…10] [0x300-1…5]
	mustAppend(t, s, txBatch(0x100, 70), txBatch(0x200, 10))
	mustAppend(t, s, txBatch(0x300, 5))
	_, before := scanAll(t, s)
	stored := func(bk []byte) (v []byte) {
		s.view(func(tx *bolt.Tx) error { v = bytes.Clone(tx.Bucket(bucketEvents).Get(bk)); return nil })
		return v
	}
	first, last := stored(mkey(0x100, 1)), stored(mkey(0x300, 1))
	log := &indexLog{}
	s.index = log

	// Remove, from 0x100-65 up to (not including) 0x300-3: every record of
	// 0x200 but 0x200-5, and 0x300-1 and -2: two stretches. keep is asked
	// about the records in range only.
	var asked []string
	var stretches []removedStretch
	s.wmu.Lock()
	err := s.update(func(tx *bolt.Tx) (err error) {
		stretches, err = s.rewriteBlocks(tx, mkey(0x100, 65), mkey(0x300, 3), func(k, rec []byte) bool {
			if id, _, _, err := audit.Check(rec); err != nil || id != keyID(k) {
				t.Errorf("keep got %s with another record", keyID(k))
			}
			asked = append(asked, keyID(k))
			lsn, ord, _ := audit.SplitKey(k)
			return lsn == 0x100 || (lsn == 0x200 && ord == 5)
		})
		return err
	})
	s.wmu.Unlock()
	if err != nil {
		t.Fatal(err)
	}
	if len(asked) != 6+10+2 || asked[0] != audit.FormatID(0x100, 65) || asked[len(asked)-1] != audit.FormatID(0x300, 2) {
		t.Errorf("keep asked about %d records: %v", len(asked), asked)
	}
	hashOf := func(lsn uint64, ord uint32) audit.Hash {
		for _, r := range before {
			if id, _, h, _ := audit.Check(r); id == audit.FormatID(lsn, ord) {
				return h
			}
		}
		t.Fatalf("no record %s", audit.FormatID(lsn, ord))
		return audit.Hash{}
	}
	want := []removedStretch{
		{First: audit.MakeKey(0x200, 1), Last: audit.MakeKey(0x200, 4), Count: 4, LastHash: hashOf(0x200, 4)},
		{First: audit.MakeKey(0x200, 6), Last: audit.MakeKey(0x300, 2), Count: 7, LastHash: hashOf(0x300, 2)},
	}
	if len(stretches) != len(want) {
		t.Fatalf("stretches %+v", stretches)
	}
	for i := range want {
		if stretches[i] != want[i] {
			t.Errorf("stretch %d: %s…%s %d, want %s…%s %d", i, keyID(stretches[i].First[:]), keyID(stretches[i].Last[:]),
				stretches[i].Count, keyID(want[i].First[:]), keyID(want[i].Last[:]), want[i].Count)
		}
	}
	wantCalls := "remove 0000000000000100-000065 0000000000000200-000010|add 0000000000000100-000065 0000000000000200-000005|" +
		"remove 0000000000000300-000001 0000000000000300-000005|add 0000000000000300-000003 0000000000000300-000005"
	if got := strings.Join(log.calls, "|"); got != wantCalls {
		t.Errorf("index told\n%s\nwant\n%s", got, wantCalls)
	}
	// The first block is as it was; the others hold what was kept, byte
	// for byte.
	if !bytes.Equal(stored(mkey(0x100, 1)), first) || bytes.Equal(stored(mkey(0x300, 3)), last) || stored(mkey(0x300, 1)) != nil {
		t.Error("blocks outside the range were rewritten, or the last block was not")
	}
	var keys []string
	var after [][]byte // Scan would refuse the broken chain: walk it
	s.view(func(tx *bolt.Tx) error {
		c := newRecordCursor(tx)
		k, v, err := c.Seek(mkey(0x100, 1))
		for ; k != nil && err == nil; k, v, err = c.Next() {
			keys, after = append(keys, keyID(k)), append(after, bytes.Clone(v))
		}
		return err
	})
	if len(after) != len(before)-11 {
		t.Fatalf("%d records left of %d", len(after), len(before))
	}
	j := 0
	for _, r := range before {
		if j < len(after) && bytes.Equal(r, after[j]) {
			j++
		}
	}
	if j != len(after) || keys[70] != audit.FormatID(0x200, 5) {
		t.Fatalf("the records left are not the records kept: %v", keys[68:])
	}
	// Removing records any other way than with a cut breaks the chain.
	if _, err := s.Verify(t.Context(), nil); err == nil || !strings.Contains(err.Error(), "0000000000000200-000005") {
		t.Fatalf("verify after removing records without a cut: %v", err)
	}
}
