package sink

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/cdcaudit/cdcaudit/audit"
	bolt "go.etcd.io/bbolt"
)

// A store of events, closed; returns its file's bytes up to what bbolt uses.
func damageStore(t *testing.T) (dir string, data []byte) {
	dir = t.TempDir()
	s := mustOpen(t, dir)
	for c := uint64(1); c <= 200; c++ {
		mustAppend(t, s, txBatch(c<<8, 3))
	}
	s.Close()
	data, err := os.ReadFile(filepath.Join(dir, FileName))
	if err != nil {
		t.Fatal(err)
	}
	f, _ := os.Open(filepath.Join(dir, FileName))
	defer f.Close()
	m0, _ := readBoltMeta(f, 0)
	m1, _ := readBoltMeta(f, int64(m0.pageSize))
	m := m0
	if m1.txid > m0.txid {
		m = m1
	}
	return dir, data[:m.pages*uint64(m.pageSize)]
}

func writeStore(t *testing.T, data []byte) string {
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, FileName), data, 0o600); err != nil {
		t.Fatal(err)
	}
	return dir
}

// A truncated file is named as such before bbolt maps it (reading past its
// end would be a SIGBUS), read-only and read-write alike; an empty one is
// never taken for a new store.
func TestTruncatedStore(t *testing.T) {
	_, data := damageStore(t)
	for _, n := range []int{0, 10, 4096, len(data) / 2, len(data) - 1} {
		dir := writeStore(t, data[:n])
		for _, open := range []func(string) (*Store, error){OpenReadOnly, Open} {
			s, err := open(dir)
			if err == nil {
				s.Close()
				t.Fatalf("a store truncated to %d of %d bytes opened", n, len(data))
			}
			if !errors.Is(err, ErrDamaged) || !strings.Contains(err.Error(), "damaged") {
				t.Errorf("truncated to %d: %v, want ErrDamaged", n, err)
			}
		}
	}
	if s, err := OpenReadOnly(writeStore(t, data)); err != nil {
		t.Fatalf("the store cut at its last used page: %v", err)
	} else {
		s.Close()
	}
}

// A record whose bytes changed is never handed on by Scan or Get, and a
// fault or corrupt page is an error, not a crash.
func TestScanChecksRecords(t *testing.T) {
	dir, data := damageStore(t)
	// A record altered inside its block (the block still decodes).
	altered := filepath.Join(t.TempDir(), "altered")
	if err := os.CopyFS(altered, os.DirFS(dir)); err != nil {
		t.Fatal(err)
	}
	tamper(t, altered, func(e *recordEditor) error {
		rec := e.get(mkey(100<<8, 2))
		i := bytes.Index(rec, []byte(`"state":"sale"`))
		rec[i+9] = 'S'
		return e.put(mkey(100<<8, 2), rec)
	})
	// A byte of a block's compressed payload flipped.
	flipped := filepath.Join(t.TempDir(), "flipped")
	if err := os.CopyFS(flipped, os.DirFS(dir)); err != nil {
		t.Fatal(err)
	}
	tamper(t, flipped, func(e *recordEditor) error {
		v := bytes.Clone(e.b.Get(mkey(100<<8, 1)))
		if v[0] != blockZstd && v[0] != blockZstdSeals {
			t.Fatalf("block stored with format %d, want zstd", v[0])
		}
		v[len(v)-10] ^= 0x55
		return e.b.Put(mkey(100<<8, 1), v)
	})
	for _, c := range []struct{ dir, want string }{
		{altered, "record 0000000000006400-000002 does not match its hash"},
		{flipped, "0000000000006400-00000"},
	} {
		s, err := OpenReadOnly(c.dir)
		if err != nil {
			t.Fatal(err)
		}
		n := 0
		err = s.Scan(nil, nil, func(k, v []byte) error {
			if _, _, _, err := audit.Check(v); err != nil {
				t.Fatalf("Scan handed on a record that does not verify: %s", v)
			}
			n++
			return nil
		})
		if !errors.Is(err, ErrDamaged) || !strings.Contains(err.Error(), c.want) || n < 99*3 {
			t.Errorf("Scan over an altered record: %v after %d records, want %q", err, n, c.want)
		}
		_, err = s.Get(audit.FormatID(100<<8, 2))
		if !errors.Is(err, ErrDamaged) || !strings.Contains(err.Error(), c.want) {
			t.Errorf("Get of an altered record: %v, want %q", err, c.want)
		}
		s.Close()
		ve := verifyErr(t, c.dir)
		if !strings.HasPrefix(ve.ID, "0000000000006400-00000") {
			t.Errorf("Verify blames %s: %s", ve.ID, ve.Reason)
		}
	}

	// Flip bytes all over the file: never a panic, only errors or intact data.
	for off := 0; off < len(data); off += len(data)/150 + 1 {
		d := bytes.Clone(data)
		d[off] ^= 0xFF
		func() {
			s, err := OpenReadOnly(writeStore(t, d))
			if err != nil {
				return
			}
			defer s.Close()
			s.Scan(nil, nil, func(k, v []byte) error { return nil })
			s.Verify(t.Context(), nil)
			s.LoadState("x", func(k, v []byte) error { return nil })
		}()
	}
}

// catchDamage turns a fault on a page the file no longer holds into an
// error, as it happens when the file shrinks under an open store.
func TestFaultIsAnError(t *testing.T) {
	dir, data := damageStore(t)
	s, err := OpenReadOnly(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if err := os.Truncate(filepath.Join(dir, FileName), 8192); err != nil {
		t.Fatal(err)
	}
	err = s.Scan(nil, nil, func(k, v []byte) error { return nil })
	if !errors.Is(err, ErrDamaged) {
		t.Fatalf("Scan of a store truncated under it (%d bytes): %v, want ErrDamaged", len(data), err)
	}
}

func TestChainRecords(t *testing.T) {
	dir := t.TempDir()
	s := mustOpen(t, dir)
	mustAppend(t, s, txBatch(0x100, 2))
	gap := s.ChainRecord(MarkGap, 0x500, time.Unix(0, 0), LSNField("from", 0x108), LSNField("to", 0x500))
	if got := keyID(gap.Key[:]); got != "0000000000000500-000000" {
		t.Fatalf("gap placed at %s", got)
	}
	mustAppend(t, s, Batch{Events: []Encoded{gap}, Checkpoint: 0x500})
	// A record at an LSN not past the head goes just after it.
	lost := s.ChainRecord(MarkSlotLost, 0x100, time.Unix(0, 0), LSNField("checkpoint", 0x500))
	if got := keyID(lost.Key[:]); got != "0000000000000501-000000" {
		t.Fatalf("slot_lost placed at %s", got)
	}
	mustAppend(t, s, Batch{Events: []Encoded{lost}}, txBatch(0x600, 1))
	if _, _, n := s.Head(); n != 3 {
		t.Errorf("Head counts %d events, want the 3 row events", n)
	}
	var ids []string
	if err := s.Scan(nil, nil, func(k, v []byte) error { ids = append(ids, keyID(k)); return nil }); err != nil {
		t.Fatal(err)
	}
	if strings.Join(ids, " ") != "0000000000000100-000001 0000000000000100-000002 0000000000000600-000001" {
		t.Errorf("Scan: %v, want the row events only", ids)
	}
	res, err := s.Verify(t.Context(), nil)
	if err != nil || res.Events != 3 || len(res.Marks) != 2 || res.Marks[0].Op != MarkGap || res.Marks[1].Op != MarkSlotLost {
		t.Fatalf("Verify: %+v %v", res, err)
	}
	if !strings.Contains(res.Marks[0].Record, `"op":"gap","commit_time":"1970-01-01T00:00:00.000000Z","from":"0/108","to":"0/500","prev_hash":"`) {
		t.Errorf("gap record %s", res.Marks[0].Record)
	}
	if g, ok := s.GenesisHash(); !ok || g != res.Genesis {
		t.Errorf("GenesisHash %s %v, Verify says %s", g, ok, res.Genesis)
	}
	// Nobody replaces the genesis record.
	if r, err := s.Append([]Batch{{Events: []Encoded{{Key: genesisKey, Body: []byte(`{"id":"0000000000000000-000000",`)}}}}); err != nil || r.Stored != 0 {
		t.Errorf("appending a genesis record: %+v %v", r, err)
	}
	if g, _ := s.GenesisHash(); g != res.Genesis {
		t.Error("the genesis record changed")
	}
	s.Close()
}

func TestWriteCopy(t *testing.T) {
	dir := t.TempDir()
	s := mustOpen(t, dir)
	mustAppend(t, s, txBatch(0x100, 5))
	out := filepath.Join(t.TempDir(), "copy.db")
	f, _ := os.Create(out)
	var size int64
	n, err := s.WriteCopy(f, func(sz int64) error { size = sz; return nil })
	f.Close()
	if err != nil || n != size {
		t.Fatalf("WriteCopy: %d of %d bytes, %v", n, size, err)
	}
	mustAppend(t, s, txBatch(0x200, 1)) // after the copy
	c, err := OpenFile(out)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	res, err := c.Verify(t.Context(), nil)
	if err != nil || res.Events != 5 {
		t.Fatalf("copy: %+v %v", res, err)
	}
	s.Close()
}

// A wiped store (no records, no head, a checkpoint) is refused for writing:
// run would start a second history in it.
func TestWipedStoreRefusedForWriting(t *testing.T) {
	dir := t.TempDir()
	s := mustOpen(t, dir)
	mustAppend(t, s, txBatch(0x100, 2))
	s.Close()
	tamper(t, dir, func(e *recordEditor) error {
		for _, k := range [][]byte{mkey(0, 0), key(1), mkey(0x100, 2)} {
			if err := e.del(k); err != nil {
				return err
			}
		}
		meta := e.b.Tx().Bucket(bucketMeta)
		meta.Delete(metaHeadHash)
		meta.Put(metaCount, make([]byte, 8))
		return meta.Delete(metaHeadKey)
	})
	if _, err := Open(dir); !errors.Is(err, ErrDamaged) || !strings.Contains(err.Error(), "genesis") {
		t.Fatalf("Open of a wiped store: %v", err)
	}
	r, err := OpenReadOnly(dir)
	if err != nil {
		t.Fatalf("verify must still be able to open it: %v", err)
	}
	defer r.Close()
	if _, err := r.Verify(t.Context(), nil); !errors.Is(err, ErrChainBroken) {
		t.Fatalf("Verify: %v", err)
	}
}

// A bug in a caller's callback is the caller's panic, not damage of the
// file: the operator must not be told to restore a healthy store.
func TestCallerPanicIsNotDamage(t *testing.T) {
	s := mustOpen(t, t.TempDir())
	defer s.Close()
	mustAppend(t, s, txBatch(0x100, 2))
	defer func() {
		if r := recover(); r != "caller bug" {
			t.Errorf("recovered %v, want the caller's own panic", r)
		}
	}()
	err := s.Scan(nil, nil, func(k, v []byte) error { panic("caller bug") })
	t.Fatalf("Scan returned %v instead of panicking", err)
}

// A fault reading what a callback was handed (a damaged page pointing
// outside the file) is damage, not the caller's panic: never a crash.
func TestFaultInCallbackIsDamage(t *testing.T) {
	s := mustOpen(t, t.TempDir())
	defer s.Close()
	mustAppend(t, s, txBatch(0x100, 2))
	gone, err := syscall.Mmap(-1, 0, 4096, syscall.PROT_READ, syscall.MAP_ANON|syscall.MAP_PRIVATE)
	if err != nil {
		t.Skip(err)
	}
	if err := syscall.Munmap(gone); err != nil {
		t.Fatal(err)
	}
	sum := 0
	err = s.Scan(nil, nil, func(k, v []byte) error {
		sum += int(gone[100]) // as a key pointing into a page the file no longer maps
		return nil
	})
	if !errors.Is(err, ErrDamaged) || sum != 0 {
		t.Fatalf("a fault in a callback: %v, want ErrDamaged", err)
	}
}

// A store whose format value or one of its buckets a flipped byte lost or
// garbled is damaged, not "of an unsupported format" or "not a store": the
// operator must restore it.
func TestUnreadableFormatIsDamage(t *testing.T) {
	for name, garble := range map[string]func(*bolt.Bucket) error{
		"missing": func(meta *bolt.Bucket) error { return meta.Delete(metaFormat) },
		"short":   func(meta *bolt.Bucket) error { return meta.Put(metaFormat, []byte{0, 3}) },
		"events bucket gone": func(meta *bolt.Bucket) error {
			return meta.Tx().DeleteBucket(bucketEvents)
		},
	} {
		t.Run(name, func(t *testing.T) {
			dir := t.TempDir()
			s := mustOpen(t, dir)
			mustAppend(t, s, txBatch(0x100, 2))
			s.Close()
			tamper(t, dir, func(e *recordEditor) error { return garble(e.b.Tx().Bucket(bucketMeta)) })
			for _, open := range []func(string) (*Store, error){Open, OpenReadOnly} {
				if _, err := open(dir); !errors.Is(err, ErrDamaged) {
					t.Fatalf("open: %v", err)
				}
			}
		})
	}
}
