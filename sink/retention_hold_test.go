package sink

import (
	"bytes"
	"testing"
	"time"

	"github.com/cdcaudit/cdcaudit/audit"
)

// A hold keeps every record after its key, however old, and says so; once
// it moves on, the next pass removes what it kept.
func TestPruneHold(t *testing.T) {
	s, _ := retentionStore(t)
	defer s.Close()
	now := rbase.Add(100*time.Hour + 30*time.Minute)

	// Held after transaction 20: only sale_order and account_move of hours
	// 1…20 may go.
	k := audit.MakeKey(20<<8, 3)
	r := testRetention(now)
	r.Hold = func() ([]byte, string, bool) { return k[:], "pg", true }
	st := mustPrune(t, s, r)
	if st.Removed != 40 || st.HeldBy != "pg" || !st.HeldSince.Equal(rbase.Add(21*time.Hour)) {
		t.Fatalf("held prune: %+v", st)
	}
	if got := remaining(t, s); got["sale_order"] != 80 || got["account_move"] != 80 {
		t.Fatalf("left %v", got)
	}
	mustVerify(t, s)

	// Holding everything (a sink that acknowledged nothing yet).
	r.Hold = func() ([]byte, string, bool) { return nil, "kafka", true }
	if st := mustPrune(t, s, r); st.Removed != 0 || st.HeldBy != "kafka" {
		t.Fatalf("hold everything: %+v", st)
	}

	// Released: the rest of the expired records go.
	r.Hold = func() ([]byte, string, bool) { return nil, "", false }
	st = mustPrune(t, s, r)
	if st.Removed != 30 || st.HeldBy != "" {
		t.Fatalf("released: %+v", st)
	}
	if got := remaining(t, s); got["sale_order"] != 50 || got["account_move"] != 80 {
		t.Fatalf("left %v", got)
	}
	mustVerify(t, s)
}

// Records hands on every record after a key, chain records too, a page at
// a time, each page's records linked.
func TestRecordsPages(t *testing.T) {
	s, _ := retentionStore(t)
	defer s.Close()
	var all [][]byte
	var after []byte
	var prev audit.Hash
	for {
		n := 0
		err := s.Records(t.Context(), after, 7, func(k, v []byte) error {
			_, p, h, err := audit.Check(v)
			if err != nil {
				t.Fatal(err)
			}
			if len(all) > 0 && p != prev {
				t.Fatalf("record %x does not link to the one before", k)
			}
			prev = h
			all = append(all, bytes.Clone(k))
			after = bytes.Clone(k)
			n++
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
		if n == 0 {
			break
		}
		if n > 7 {
			t.Fatalf("page of %d", n)
		}
	}
	// genesis + 300 events + 1 gap
	if len(all) != 302 || !IsChainRecord(all[0]) {
		t.Fatalf("%d records", len(all))
	}
	head, _, _ := s.Head()
	if !bytes.Equal(all[len(all)-1], head) {
		t.Fatal("did not end at the head")
	}
}
