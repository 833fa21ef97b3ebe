package sink

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	bolt "go.etcd.io/bbolt"
)

// dumpBuckets returns every key and value of every bucket but events (and
// the format), nested buckets and their sequences included, as text.
func dumpBuckets(t *testing.T, path string) string {
	t.Helper()
	db, err := bolt.Open(path, 0o600, &bolt.Options{ReadOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	var b strings.Builder
	var walk func(prefix string, bk *bolt.Bucket)
	walk = func(prefix string, bk *bolt.Bucket) {
		b.WriteString(prefix + " seq " + string(rune('0'+bk.Sequence())) + "\n")
		bk.ForEach(func(k, v []byte) error {
			if prefix == "/meta" && string(k) == "format" {
				return nil
			}
			if v == nil {
				walk(prefix+"/"+string(k), bk.Bucket(k))
				return nil
			}
			b.WriteString(prefix + "/" + string(k) + "=" + string(v) + "\n")
			return nil
		})
	}
	db.View(func(tx *bolt.Tx) error {
		return tx.ForEach(func(name []byte, bk *bolt.Bucket) error {
			if string(name) != "events" && string(name) != "index" { // the indexes are rebuilt, not copied
				walk("/"+string(name), bk)
			}
			return nil
		})
	})
	return b.String()
}

// compactable makes a format-2 store, then appends to it in small Appends
// (small blocks), with state (and the indexes Append writes); it returns its
// directory and every record.
func compactable(t *testing.T) (string, [][]byte) {
	dir := t.TempDir()
	legacyStore(t, dir, txBatch(0x100, 3), txBatch(0x200, 2))
	s := mustOpen(t, dir)
	for c := uint64(3); c <= 40; c++ {
		b := txBatch(c<<8, 2)
		b.State = []StateRecord{{Bucket: "sessions", Key: "k" + string(rune('a'+c%26)), Value: []byte{byte(c)}}}
		mustAppend(t, s, b)
	}
	_, recs := scanAll(t, s)
	s.Close()
	return dir, recs
}

func TestCompact(t *testing.T) {
	dir, want := compactable(t)
	path := filepath.Join(dir, FileName)
	before := dumpBuckets(t, path)
	res, err := Compact(t.Context(), dir, "", nil)
	if err != nil {
		t.Fatal(err)
	}
	if res.Path != path || res.LegacyRecords != 6 || res.BlocksBefore != 6+38 || res.After != 2 || res.Verified.Events != 81 ||
		res.NewSize <= 0 {
		t.Errorf("compact: %+v", res)
	}
	if _, err := os.Stat(path + ".old"); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("the old file is still there: %v", err)
	}
	// Everything but the indexes is copied as it was; the indexes are
	// rebuilt from the records.
	if after := dumpBuckets(t, path); after != before {
		t.Errorf("buckets after compact:\n%s\nwant\n%s", after, before)
	}
	s := mustOpen(t, dir)
	defer s.Close()
	_, got := scanAll(t, s)
	if len(got) != len(want) {
		t.Fatalf("%d records after compact, want %d", len(got), len(want))
	}
	for i := range want {
		if !bytes.Equal(got[i], want[i]) {
			t.Fatalf("record %d changed", i)
		}
	}
	// The indexes come back, built from the records.
	if err := s.BuildIndex(t.Context(), nil); err != nil {
		t.Fatal(err)
	}
	if ok, err := s.IndexComplete(); !ok || err != nil {
		t.Fatalf("indexes after compact: complete %v, %v", ok, err)
	}
	if n, err := s.Count(t.Context(), Query{Tables: []string{"*"}}); n != 81 || err != nil {
		t.Errorf("compacted store: %d events of any table through the index (%v), want 81", n, err)
	}
	if blocks, recs := blockCount(t, s); blocks != 2 || recs != 82 {
		t.Errorf("%d blocks of %d records, want 2 full ones", blocks, recs)
	}
	// It goes on: appends after a compact.
	mustAppend(t, s, txBatch(41<<8, 1))
	if res, err := s.Verify(t.Context(), nil); err != nil || res.Events != 82 {
		t.Fatalf("verify: %+v %v", res, err)
	}
}

// A store held by a daemon is refused; a damaged one is left as it was;
// --out leaves the store alone.
func TestCompactRefuses(t *testing.T) {
	dir, _ := compactable(t)
	s := mustOpen(t, dir)
	if _, err := Compact(t.Context(), dir, "", nil); !errors.Is(err, ErrLocked) {
		t.Errorf("compact of a held store: %v", err)
	}
	s.Close()

	out := filepath.Join(t.TempDir(), "copy.db")
	orig, _ := os.ReadFile(filepath.Join(dir, FileName))
	if _, err := Compact(t.Context(), dir, out, nil); err != nil {
		t.Fatal(err)
	}
	if now, _ := os.ReadFile(filepath.Join(dir, FileName)); !bytes.Equal(now, orig) {
		t.Error("compact --out changed the store")
	}
	if c, err := OpenFile(out); err != nil {
		t.Error(err)
	} else {
		if res, err := c.Verify(t.Context(), nil); err != nil || res.Events != 81 {
			t.Errorf("the copy: %+v %v", res, err)
		}
		c.Close()
	}

	tamper(t, dir, func(e *recordEditor) error { return e.del(mkey(20<<8, 1)) })
	orig, _ = os.ReadFile(filepath.Join(dir, FileName))
	_, err := Compact(t.Context(), dir, "", nil)
	if !errors.Is(err, ErrDamaged) || !strings.Contains(err.Error(), "0000000000001400-000002 does not chain") {
		t.Errorf("compact of a broken chain: %v", err)
	}
	if now, _ := os.ReadFile(filepath.Join(dir, FileName)); !bytes.Equal(now, orig) {
		t.Error("a failed compact changed the store")
	}
	if ents, _ := os.ReadDir(dir); len(ents) != 1 {
		t.Errorf("files left behind: %v", ents)
	}
}

// A store retention has pruned compacts: the links its cuts skip are the
// cuts' to check, as Scan and Verify check them; the cuts come along.
func TestCompactPrunedStore(t *testing.T) {
	dir, before := prunedStore(t)
	res, err := Compact(t.Context(), dir, "", nil)
	if err != nil {
		t.Fatalf("compact of a pruned store: %v", err)
	}
	if res.Verified.Events != before.Events || res.Verified.Pruned != before.Pruned || len(res.Verified.Cuts) != len(before.Cuts) {
		t.Errorf("after compact: %d events, %d pruned, %d cuts; before: %d, %d, %d",
			res.Verified.Events, res.Verified.Pruned, len(res.Verified.Cuts), before.Events, before.Pruned, len(before.Cuts))
	}
}
