package sink

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"math/rand/v2"
	"path/filepath"
	"strings"
	"testing"

	"github.com/cdcaudit/cdcaudit/audit"
	bolt "go.etcd.io/bbolt"
)

// sealAll seals the bodies of bs after prev, as the store must: what an
// export of them must give back byte for byte.
func sealAll(prev audit.Hash, bs ...Batch) (recs [][]byte, head audit.Hash) {
	for _, b := range bs {
		for _, e := range b.Events {
			var r []byte
			r, prev = audit.Seal(nil, e.Body, prev)
			recs = append(recs, r)
		}
	}
	return recs, prev
}

func genesisHash(t testing.TB, s *Store) audit.Hash {
	g, ok := s.GenesisHash()
	if !ok {
		t.Fatal("no genesis record")
	}
	return g
}

// Records come back byte for byte as sealed, through every reader, from
// blocks of at most maxBlockRecords records that never span Appends.
func TestBlocksHoldRecordsAsSealed(t *testing.T) {
	s := mustOpen(t, t.TempDir())
	defer s.Close()
	var bs []Batch
	for c := uint64(1); c <= 30; c++ {
		bs = append(bs, txBatch(c<<8, 10)) // 300 events in one Append
	}
	want, head := sealAll(genesisHash(t, s), bs...)
	mustAppend(t, s, bs...)
	more := []Batch{txBatch(31<<8, 3)} // a second Append: blocks of its own
	want2, head2 := sealAll(head, more...)
	mustAppend(t, s, more...)
	want = append(want, want2...)
	if _, h, n := s.Head(); h != head2 || n != 303 {
		t.Fatalf("head %s, %d events; want %s, 303", h, n, head2)
	}
	blocks, recs := blockCount(t, s)
	// genesis + ceil(300/64) + 1
	if blocks != 1+5+1 || recs != 304 {
		t.Fatalf("%d blocks holding %d records", blocks, recs)
	}

	_, got := scanAll(t, s)
	if len(got) != len(want) {
		t.Fatalf("scan: %d records, want %d", len(got), len(want))
	}
	for i := range want {
		if !bytes.Equal(got[i], want[i]) {
			t.Fatalf("record %d differs:\n%s\n%s", i, got[i], want[i])
		}
		id, _, _, _ := audit.Check(want[i])
		if r, err := s.Get(id); err != nil || !bytes.Equal(r, want[i]) {
			t.Fatalf("Get(%s): %v", id, err)
		}
	}
	if _, err := s.Get(audit.FormatID(1<<8, 11)); !errors.Is(err, ErrNotFound) {
		t.Fatalf("Get of an id inside a block's range that is not stored: %v", err)
	}
	// Scan from and to the middle of blocks.
	var part []string
	if err := s.Scan(mkey(3<<8, 5), mkey(9<<8, 2), func(k, v []byte) error { part = append(part, keyID(k)); return nil }); err != nil {
		t.Fatal(err)
	}
	if len(part) != 6+50+1 || part[0] != audit.FormatID(3<<8, 5) || part[len(part)-1] != audit.FormatID(9<<8, 1) {
		t.Fatalf("partial scan: %d records, %s … %s", len(part), part[0], part[len(part)-1])
	}
	if res, err := s.Verify(t.Context(), nil); err != nil || res.Events != 303 || res.HeadHash != head2 {
		t.Fatalf("verify: %+v %v", res, err)
	}
}

// The cursor walks both ways across block boundaries, and Seek lands
// inside a block.
func TestRecordCursor(t *testing.T) {
	s := mustOpen(t, t.TempDir())
	defer s.Close()
	for c := uint64(1); c <= 3; c++ {
		var bs []Batch
		for j := uint64(0); j < 10; j++ {
			bs = append(bs, txBatch((c*100+j)<<8, 10))
		}
		mustAppend(t, s, bs...) // 100 records: blocks of 64 and 36
	}
	var all []string
	err := s.view(func(tx *bolt.Tx) error {
		c := newRecordCursor(tx)
		for k, _, err := c.First(); k != nil || err != nil; k, _, err = c.Next() {
			if err != nil {
				return err
			}
			all = append(all, keyID(k))
		}
		var back []string
		for k, _, err := c.Last(); k != nil || err != nil; k, _, err = c.Prev() {
			if err != nil {
				return err
			}
			back = append(back, keyID(k))
		}
		if len(back) != len(all) || back[0] != all[len(all)-1] || back[len(back)-1] != all[0] {
			t.Errorf("backwards: %d records, forwards %d", len(back), len(all))
		}
		for i, id := range all {
			lsn, ord, _ := audit.ParseID(id)
			k := audit.MakeKey(lsn, ord)
			got, rec, err := c.Seek(k[:])
			if err != nil || keyID(got) != id || !strings.Contains(string(rec), id) {
				t.Fatalf("Seek(%s): %s %v", id, keyID(got), err)
			}
			r, err := getRecord(tx, k[:])
			if err != nil || !bytes.Equal(r, rec) {
				t.Fatalf("getRecord(%s): %v", id, err)
			}
			if i > 0 {
				if p, _, _ := c.Prev(); keyID(p) != all[i-1] {
					t.Fatalf("Prev after Seek(%s): %s, want %s", id, keyID(p), all[i-1])
				}
			}
		}
		// A key between two records of one block, and past the end.
		if k, _, _ := c.Seek(mkey(100<<8|1, 0)); keyID(k) != audit.FormatID(101<<8, 1) {
			t.Errorf("Seek between records: %s", keyID(k))
		}
		if k, _, err := c.Seek(mkey(1<<40, 0)); k != nil || err != nil {
			t.Errorf("Seek past the end: %s %v", keyID(k), err)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(all) != 301 {
		t.Fatalf("%d records", len(all))
	}
	// readBlock gives a block's records in slot order.
	s.view(func(tx *bolt.Tx) error {
		keys, recs, err := readBlock(tx, mkey(100<<8, 1))
		if err != nil || len(keys) != 64 || len(recs) != 64 || keyID(keys[63]) != audit.FormatID(106<<8, 4) {
			t.Errorf("readBlock: %d keys, %v", len(keys), err)
		}
		if keys, _, err := readBlock(tx, mkey(100<<8, 2)); keys != nil || err != nil {
			t.Errorf("readBlock of a key that starts no block: %d keys, %v", len(keys), err)
		}
		return nil
	})
}

// Blocks close at about blockTargetRaw bytes; a huge record is stored
// bare, sealed in place in its body: never copied, never compressed.
func TestBlockSizesAndHugeRecords(t *testing.T) {
	s := mustOpen(t, t.TempDir())
	defer s.Close()
	big := func(commit uint64, ord uint32, size int) Encoded {
		e := ev(commit, ord)
		body := append([]byte(nil), e.Body[:len(e.Body)-1]...)
		body = append(body, `,"note":"`...)
		body = append(body, bytes.Repeat([]byte("x"), size)...)
		body = append(body, `",`...)
		e.Body = append(make([]byte, 0, audit.SealedLen(len(body))), body...)
		return e
	}
	b := Batch{Checkpoint: 0x1008}
	for i := uint32(1); i <= 6; i++ {
		b.Events = append(b.Events, big(0x1000, i, 100<<10)) // 3 blocks of 2
	}
	huge := big(0x1000, 7, 3<<20)
	b.Events = append(b.Events, huge, big(0x1000, 8, 10))
	want, _ := sealAll(genesisHash(t, s), b)
	mustAppend(t, s, b)
	if string(huge.Body[len(huge.Body):len(huge.Body)+len(`"prev_hash"`)]) != `"prev_hash"` {
		t.Errorf("the huge record was not sealed in its body")
	}
	err := s.view(func(tx *bolt.Tx) error {
		return tx.Bucket(bucketEvents).ForEach(func(k, v []byte) error {
			var blk block
			if err := decodeBlock(&blk, k, v); err != nil {
				return err
			}
			raw := 0
			for _, r := range blk.recs {
				raw += len(r)
			}
			switch {
			case bytes.Equal(k, mkey(0x1000, 7)):
				if !isBare(v) || raw < 3<<20 {
					t.Errorf("huge record stored in a block of format %d", v[0])
				}
			case !bytes.Equal(k, genesisKey[:]) && (isBare(v) || raw > blockTargetRaw):
				t.Errorf("block %s: %d records, %d bytes, bare %v", keyID(k), len(blk.keys), raw, isBare(v))
			}
			return nil
		})
	})
	if err != nil {
		t.Fatal(err)
	}
	if blocks, _ := blockCount(t, s); blocks != 1+3+1+1 {
		t.Errorf("%d blocks, want genesis, 3 of 2, the huge record, the last", blocks)
	}
	_, got := scanAll(t, s)
	for i := range want {
		if !bytes.Equal(got[i], want[i]) {
			t.Fatalf("record %d differs", i)
		}
	}
}

// legacyStore writes a format-2 store as the cdcaudit before blocks did:
// every record bare under its key. It returns the records of its events.
func legacyStore(t *testing.T, dir string, bs ...Batch) [][]byte {
	t.Helper()
	db, err := bolt.Open(filepath.Join(dir, FileName), 0o600, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	var recs [][]byte
	err = db.Update(func(tx *bolt.Tx) error {
		meta, _ := tx.CreateBucket(bucketMeta)
		events, _ := tx.CreateBucket(bucketEvents)
		body := chainBody(genesisKey, MarkGenesis, t0, []Field{{Name: "store_format", Value: []byte("2")}, StringField("nonce", "00")})
		g, h := audit.Seal(nil, body, audit.Genesis)
		events.Put(genesisKey[:], g)
		head := genesisKey
		n, cp := uint64(0), uint64(0)
		for _, b := range bs {
			for _, e := range b.Events {
				var r []byte
				r, h = audit.Seal(nil, e.Body, h)
				events.Put(e.Key[:], r)
				recs = append(recs, r)
				head = e.Key
				n++
			}
			cp = b.Checkpoint
		}
		u := func(x uint64) []byte { return binary.BigEndian.AppendUint64(nil, x) }
		meta.Put(metaFormat, u(2))
		meta.Put(metaCheckpoint, u(cp))
		meta.Put(metaCount, u(n))
		meta.Put(metaHeadKey, head[:])
		return meta.Put(metaHeadHash, h[:])
	})
	if err != nil {
		t.Fatal(err)
	}
	return recs
}

func storedFormat(t *testing.T, dir string) uint64 {
	t.Helper()
	s, err := OpenReadOnly(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	var f uint64
	s.view(func(tx *bolt.Tx) error { f = getUint64(tx.Bucket(bucketMeta), metaFormat); return nil })
	return f
}

// A format-2 store opens: its bare records read as they are, new appends
// write blocks after them, and it is marked format 3 once opened for
// writing (read-only opens leave it as it is).
func TestFormat2StoreOpens(t *testing.T) {
	dir := t.TempDir()
	old := []Batch{txBatch(0x100, 3), txBatch(0x200, 2)}
	want := legacyStore(t, dir, old...)
	if f := storedFormat(t, dir); f != 2 {
		t.Fatalf("format %d after a read-only open", f)
	}
	s := mustOpen(t, dir)
	// A replay of the legacy records is recognised.
	if r := mustAppend(t, s, old[1]); r.Duplicates != 2 || r.Stored != 0 {
		t.Fatalf("replay over legacy records: %+v", r)
	}
	_, head, _ := s.Head()
	nb := []Batch{txBatch(0x300, 5), txBatch(0x400, 1)}
	want2, _ := sealAll(head, nb...)
	mustAppend(t, s, nb...)
	want = append(want, want2...)
	_, got := scanAll(t, s)
	if len(got) != len(want) {
		t.Fatalf("%d records, want %d", len(got), len(want))
	}
	for i := range want {
		if !bytes.Equal(got[i], want[i]) {
			t.Fatalf("record %d differs", i)
		}
	}
	if res, err := s.Verify(t.Context(), nil); err != nil || res.Events != 11 {
		t.Fatalf("verify: %+v %v", res, err)
	}
	if blocks, recs := blockCount(t, s); blocks != 1+5+1 || recs != 12 {
		t.Fatalf("%d blocks of %d records: want the 6 bare records and one block", blocks, recs)
	}
	s.Close()
	if f := storedFormat(t, dir); f != FormatVersion {
		t.Fatalf("format %d after writing, want %d", f, FormatVersion)
	}
}

func TestNewerFormatRefused(t *testing.T) {
	dir := t.TempDir()
	s := mustOpen(t, dir)
	s.Close()
	db, err := bolt.Open(filepath.Join(dir, FileName), 0o600, nil)
	if err != nil {
		t.Fatal(err)
	}
	db.Update(func(tx *bolt.Tx) error {
		return tx.Bucket(bucketMeta).Put(metaFormat, binary.BigEndian.AppendUint64(nil, FormatVersion+1))
	})
	db.Close()
	want := fmt.Sprintf("written by a newer cdcaudit (store format %d; this one reads 2 to %d): upgrade cdcaudit", FormatVersion+1, FormatVersion)
	for _, open := range []func(string) (*Store, error){Open, OpenReadOnly} {
		_, err := open(dir)
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("a store of a newer format: %v, want %q", err, want)
		}
	}
	// A format far ahead is a flipped byte.
	db, err = bolt.Open(filepath.Join(dir, FileName), 0o600, nil)
	if err != nil {
		t.Fatal(err)
	}
	db.Update(func(tx *bolt.Tx) error {
		return tx.Bucket(bucketMeta).Put(metaFormat, binary.BigEndian.AppendUint64(nil, FormatVersion|0xFF00))
	})
	db.Close()
	if _, err := OpenReadOnly(dir); !errors.Is(err, ErrDamaged) {
		t.Errorf("a store whose format reads %d: %v, want ErrDamaged", FormatVersion|0xFF00, err)
	}
}

// Blocks keep their records' bodies and hashes apart when every record ends
// in the canonical seal tail, whatever their order in the chain, and keep
// the records whole when one does not; both read back byte for byte.
func TestBlocksKeepSealsApart(t *testing.T) {
	chained := func(n int, prev audit.Hash) (keys, recs [][]byte) {
		for i := 1; i <= n; i++ {
			e := ev(0x100, uint32(i))
			var rec []byte
			rec, prev = audit.Seal(nil, e.Body, prev)
			keys, recs = append(keys, e.Key[:]), append(recs, rec)
		}
		return keys, recs
	}
	keys, recs := chained(6, audit.Genesis)
	// Records 3 to 5 do not follow the record before them in the chain (a
	// block rewritten by retention holds records apart).
	_, other := chained(2, audit.Hash{7})
	recs[3], recs[5] = other[0], other[1]
	upper := bytes.Clone(recs[1])
	copy(upper[len(upper)-66:], bytes.ToUpper(upper[len(upper)-66:len(upper)-2]))
	for _, c := range []struct {
		name   string
		recs   [][]byte
		format byte
	}{
		{"chained", func() [][]byte { _, r := chained(6, audit.Genesis); return r }(), blockZstdSeals},
		{"apart in the chain", recs, blockZstdSeals},
		{"a tail in upper-case hex", append(append([][]byte{}, recs[:1]...), upper), blockZstd},
	} {
		enc := newBlockEncoder()
		for i, r := range c.recs {
			enc.addRecord(keys[i], r, nil)
		}
		v := enc.encode()
		if v[0] != c.format {
			t.Errorf("%s: block format %d, want %d", c.name, v[0], c.format)
		}
		var b block
		if err := decodeBlock(&b, keys[0], v); err != nil {
			t.Fatalf("%s: %v", c.name, err)
		}
		if len(b.recs) != len(c.recs) {
			t.Fatalf("%s: %d records, want %d", c.name, len(b.recs), len(c.recs))
		}
		for i := range c.recs {
			if !bytes.Equal(b.recs[i], c.recs[i]) {
				t.Errorf("%s: record %d reads back as\n%s\nwant\n%s", c.name, i, b.recs[i], c.recs[i])
			}
		}
	}
	// The store writes blocks of bodies.
	s := mustOpen(t, t.TempDir())
	defer s.Close()
	mustAppend(t, s, txBatch(0x100, 10))
	s.db.View(func(tx *bolt.Tx) error {
		if v := tx.Bucket(bucketEvents).Get(mkey(0x100, 1)); len(v) == 0 || v[0] != blockZstdSeals {
			t.Errorf("the writer's block: %.1x, want format %d", v, blockZstdSeals)
		}
		return nil
	})
}

// Stored bytes are untrusted: decoding a block never panics, never
// allocates beyond its bound, and a block that is not sound is an error
// wrapping ErrDamaged.
func FuzzDecodeBlock(f *testing.F) {
	enc := newBlockEncoder()
	for _, n := range []int{1, 2, 64} {
		enc.reset()
		for i := 1; i <= n; i++ {
			e := ev(uint64(0x100+i/3), uint32(i))
			rec, _ := audit.Seal(nil, e.Body, audit.Genesis)
			enc.addRecord(e.Key[:], rec, nil)
		}
		f.Add(enc.encode())
	}
	enc.reset()
	enc.addRecord(mkey(0x100, 1), []byte(strings.Repeat("a", 500)), nil) // compresses
	v := enc.encode()
	f.Add(v)
	f.Add(append([]byte{blockRaw}, v[1:]...))
	enc.reset()
	noise := make([]byte, 300)
	rand.NewChaCha8([32]byte{1}).Read(noise)
	rec, _ := audit.Seal(nil, noise, audit.Genesis)
	enc.addRecord(mkey(0x100, 1), rec, nil) // does not compress: raw bodies and seals
	f.Add(enc.encode())
	f.Add([]byte(`{"id":"x"}`))
	f.Fuzz(func(t *testing.T, v []byte) {
		var b block
		err := decodeBlock(&b, mkey(0x100, 1), v)
		if err != nil {
			if !errors.Is(err, ErrDamaged) {
				t.Fatalf("error not wrapping ErrDamaged: %v", err)
			}
			return
		}
		if len(b.keys) != len(b.recs) || len(b.keys) == 0 {
			t.Fatalf("%d keys, %d records", len(b.keys), len(b.recs))
		}
		total := 0
		for i, k := range b.keys {
			if len(k) != audit.KeyLen || (i > 0 && bytes.Compare(b.keys[i-1], k) >= 0) {
				t.Fatalf("key %d: %x", i, k)
			}
			total += len(b.recs[i])
		}
		if total > maxBlockRaw && !isBare(v) {
			t.Fatalf("%d bytes decoded", total)
		}
		// The header alone agrees with the decoded block.
		for i, k := range b.keys {
			if slot, err := blockHas(mkey(0x100, 1), v, k); err != nil || slot != i {
				t.Fatalf("blockHas(%x) = %d %v, want %d", k, slot, err, i)
			}
		}
	})
}
