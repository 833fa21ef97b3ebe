package sink

import (
	"bytes"
	"context"
	"encoding/binary"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/cdcaudit/cdcaudit/audit"
	bolt "go.etcd.io/bbolt"
)

// virtualBlocks regroups a store's records into blocks of 1 to maxSize
// records, as Append will write them, and indexes those blocks from
// scratch; Query reads them through queryReadBlock until the test ends.
func virtualBlocks(t *testing.T, s *Store, rng *rand.Rand, maxSize int) map[string][2][][]byte {
	t.Helper()
	blocks := map[string][2][][]byte{}
	var order [][]byte
	err := s.view(func(tx *bolt.Tx) error {
		rc := newRecordCursor(tx)
		var cur [2][][]byte
		size := 0
		flush := func() {
			if len(cur[0]) > 0 {
				blocks[string(cur[0][0])] = cur
				order = append(order, cur[0][0])
			}
			cur, size = [2][][]byte{}, 1+rng.IntN(maxSize)
		}
		flush()
		k, v, err := rc.First()
		for ; err == nil && k != nil; k, v, err = rc.Next() {
			if len(cur[0]) == size {
				flush()
			}
			cur[0] = append(cur[0], slices.Clone(k))
			cur[1] = append(cur[1], slices.Clone(v))
		}
		flush()
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	s.wmu.Lock()
	defer s.wmu.Unlock()
	s.idx.ix = newIndexer()
	s.index = s.idx.ix
	err = s.update(func(tx *bolt.Tx) error {
		if err := tx.DeleteBucket(bucketIndex); err != nil {
			return err
		}
		if _, err := createIndex(tx, false); err != nil {
			return err
		}
		for _, bk := range order {
			b := blocks[string(bk)]
			if err := s.idx.ix.addBlock(tx, bk, b[0], b[1], nil); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	oldRead, oldNext := queryReadBlock, queryNextBlock
	queryReadBlock = func(tx *bolt.Tx, bk []byte, _ *block) ([][]byte, [][]byte, error) {
		b := blocks[string(bk)]
		return b[0], b[1], nil
	}
	queryNextBlock = func(tx *bolt.Tx, bk []byte) []byte {
		i, _ := slices.BinarySearchFunc(order, bk, bytes.Compare)
		if i+1 < len(order) {
			return order[i+1]
		}
		return nil
	}
	t.Cleanup(func() { queryReadBlock, queryNextBlock = oldRead, oldNext })
	return blocks
}

// TestQueryMultiRecordBlocks: with blocks of many records (slots listed
// or as a bitmap), queries still hand on exactly the brute force's events,
// in both orders and across pages that end inside a block.
func TestQueryMultiRecordBlocks(t *testing.T) {
	for seed := range uint64(2) {
		g := newGenStore(t, 100+seed, 200)
		ref := readRef(t, g.s)
		rng := rand.New(rand.NewPCG(seed, 3))
		blocks := virtualBlocks(t, g.s, rng, 64)
		if len(blocks) >= len(ref) {
			t.Fatalf("%d blocks for %d events", len(blocks), len(ref))
		}
		queries := []Query{{User: "bob"}, {User: "bob", Desc: true}, {Tables: []string{"sale_*"}}, {Session: "s1", Desc: true}}
		for range 120 {
			queries = append(queries, randomQuery(rng, ref))
		}
		for _, q := range queries {
			want := refIDs(q, ref)
			limit := []int{0, 1, 2, 5, 13}[rng.IntN(5)]
			if got, _ := queryAll(t, g.s, q, limit); !slices.Equal(got, want) {
				t.Fatalf("seed %d: %+v (limit %d):\n got %v\nwant %v", seed, q, limit, got, want)
			}
			if n, err := g.s.Count(context.Background(), q); err != nil || n != uint64(len(want)) {
				t.Fatalf("seed %d: count %+v: %d %v, want %d", seed, q, n, err, len(want))
			}
		}
	}
}

// TestBlockPostingsCollidingHashes: when the hashes that merge a block's
// postings collide (here all of them), each posting is found by its
// bytes, and queries still hand on exactly the brute force's events.
func TestBlockPostingsCollidingHashes(t *testing.T) {
	old := postingHash
	postingHash = func([]byte) uint64 { return 7 }
	t.Cleanup(func() { postingHash = old })
	g := newGenStore(t, 300, 200)
	ref := readRef(t, g.s)
	rng := rand.New(rand.NewPCG(4, 5))
	virtualBlocks(t, g.s, rng, 64)
	for range 80 {
		q := randomQuery(rng, ref)
		want := refIDs(q, ref)
		if got, _ := queryAll(t, g.s, q, 0); !slices.Equal(got, want) {
			t.Fatalf("%+v:\n got %v\nwant %v", q, got, want)
		}
		if n, err := g.s.Count(context.Background(), q); err != nil || n != uint64(len(want)) {
			t.Fatalf("count %+v: %d %v, want %d", q, n, err, len(want))
		}
	}
}

// A hand-made block of several records: one posting per term and block,
// listing the slots that have it (bytes, then a bitmap from 8 on), one
// time entry; removing the block removes them all; a block rewritten
// without some records gets its postings, and no time entry.
func TestAddBlockPostings(t *testing.T) {
	s := mustOpen(t, t.TempDir())
	defer s.Close()
	var keys, recs [][]byte
	var terms []*audit.Terms
	prev := audit.Genesis
	for i := range 10 {
		e := &audit.Event{CommitLSN: 0x100, Ordinal: uint32(i + 1), CommitTime: t0.Add(-time.Duration(i) * time.Millisecond), Schema: "public", Table: "sale_order",
			Op: audit.OpUpdate, Key: audit.Row{{Name: "id", Value: []byte{byte('0' + i%3)}}}}
		e.Actor.Login = []string{"alice", "bob"}[min(i/9, 1)] // alice on slots 0-8 (a bitmap), bob on 9
		if i == 4 {
			e.Flags = []string{"orm_bypass"}
		}
		var rec []byte
		rec, prev = audit.Seal(nil, e.AppendBody(nil), prev)
		k := e.StoreKey()
		keys, recs = append(keys, k[:]), append(recs, rec)
		if i%2 == 0 {
			tm := e.Terms()
			terms = append(terms, &tm)
		} else {
			terms = append(terms, nil) // parsed from the record
		}
	}
	ix := s.idx.ix
	bk := keys[0]
	err := s.update(func(tx *bolt.Tx) error {
		if err := ix.addBlock(tx, bk, keys, recs, terms); err != nil {
			return err
		}
		root := tx.Bucket(bucketIndex)
		id := func(kind byte, str string) []byte {
			v, ok := lookupTerm(root, kind, str)
			if !ok {
				t.Fatalf("no term %c %s", kind, str)
			}
			return binary.BigEndian.AppendUint32(nil, v)
		}
		get := func(bucket []byte, prefix []byte) []byte {
			return root.Bucket(bucket).Get(append(slices.Clone(prefix), bk...))
		}
		if v := get(ixUser, id(kindUser, "alice")); len(v) != 8 || binary.LittleEndian.Uint64(v) != 0x1FF {
			t.Errorf("alice's posting %x", v)
		}
		if v := get(ixUser, id(kindUser, "bob")); !bytes.Equal(v, []byte{9}) {
			t.Errorf("bob's posting %x", v)
		}
		if v := get(ixFlag, id(kindFlag, "orm_bypass")); !bytes.Equal(v, []byte{4}) {
			t.Errorf("flag posting %x", v)
		}
		table := id(kindTable, "public\x00sale_order")
		if v := get(ixTable, append(slices.Clone(table), byte(audit.OpUpdate))); len(v) != 8 || binary.LittleEndian.Uint64(v) != 0x3FF {
			t.Errorf("table posting %x", v)
		}
		rec1 := appendRecordPrefix(slices.Clone(table), audit.RecordTerm("public", "sale_order", audit.KeyValue{Text: "1"}))
		if v := get(ixRecord, rec1); !bytes.Equal(v, []byte{1, 4, 7}) {
			t.Errorf("record posting %x", v)
		}
		if n := countKeys(root.Bucket(ixRecord)); n != 3 {
			t.Errorf("%d record postings for 3 records", n)
		}
		tk, _ := root.Bucket(ixTime).Cursor().First()
		if tk == nil || timeOfKey(tk) != t0.UnixMicro() || !bytes.Equal(tk[8:], bk) {
			t.Errorf("time entry %x: want the block's latest time %d", tk, t0.UnixMicro())
		}
		// Retention's rewrite: the block without its first 3 records.
		if err := ix.removeBlock(tx, bk, keys, recs); err != nil {
			return err
		}
		for _, b := range [][]byte{ixRecord, ixUser, ixSession, ixTable, ixFlag, ixTime} {
			if n := countKeys(root.Bucket(b)); n != 0 {
				t.Errorf("%s: %d entries left after removeBlock", b, n)
			}
		}
		if err := ix.addBlock(tx, keys[3], keys[3:], recs[3:], nil); err != nil {
			return err
		}
		if tk, _ = root.Bucket(ixTime).Cursor().First(); tk != nil {
			t.Errorf("a rewritten block got a time entry %x (the entries around it bound it)", tk)
		}
		if v := root.Bucket(ixUser).Get(append(id(kindUser, "alice"), keys[3]...)); !bytes.Equal(v, []byte{0, 1, 2, 3, 4, 5}) {
			t.Errorf("rewritten alice posting %x", v)
		}
		// A block of more records than slots is refused.
		many := slices.Repeat(keys[:1], maxBlockRecords+1)
		if err := ix.addBlock(tx, keys[0], many, slices.Repeat(recs[:1], maxBlockRecords+1), nil); err == nil || !strings.Contains(err.Error(), "at most") {
			t.Errorf("a block of %d records: %v", len(many), err)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

func countKeys(b *bolt.Bucket) int {
	n := 0
	c := b.Cursor()
	for k, _ := c.First(); k != nil; k, _ = c.Next() {
		n++
	}
	return n
}

func TestSlotsEncoding(t *testing.T) {
	var a arena
	for _, set := range []uint64{1, 1 << 63, 0x7F, 0xFF, 0x8000000000000001, ^uint64(0), 0x5555} {
		v := a.slots(set)
		got, err := decodeSlots(v)
		if err != nil || got != set {
			t.Errorf("%x → %x → %x %v", set, v, got, err)
		}
	}
	for _, bad := range [][]byte{nil, {64}, make([]byte, 9)} {
		if _, err := decodeSlots(bad); err == nil {
			t.Errorf("decodeSlots(%x) accepted", bad)
		}
	}
}

// FuzzQueryCursor: a cursor is untrusted input (it comes back from
// clients): anything is refused cleanly or read as a position.
func FuzzQueryCursor(f *testing.F) {
	p, _ := newPlan(Query{User: "bob"})
	f.Add(p.cursor(make([]byte, audit.KeyLen)))
	f.Add("")
	f.Add("AQ")
	f.Fuzz(func(t *testing.T, c string) {
		p, err := newPlan(Query{User: "bob", Cursor: c})
		if err == nil && c != "" && len(p.after) != audit.KeyLen {
			t.Fatalf("cursor %q read as %x", c, p.after)
		}
	})
}
