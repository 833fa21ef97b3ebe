package sink

import (
	"bytes"
	"context"
	"path/filepath"
	"reflect"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/cdcaudit/cdcaudit/audit"
	bolt "go.etcd.io/bbolt"
)

var rbase = time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)

// rev is an event of table at commit time at.
func rev(commit uint64, ord uint32, table string, at time.Time) Encoded {
	uid := int64(ord)
	e := &audit.Event{
		LSN: commit - 0x10, CommitLSN: commit, Ordinal: ord, XID: uint32(commit), CommitTime: at,
		Database: "odoo", Schema: "public", Table: table, Op: audit.OpUpdate,
		Key:     audit.Row{{Name: "id", Value: []byte(strconv.Itoa(int(commit)))}},
		After:   audit.Row{{Name: "state", Value: []byte(`"sale"`)}},
		Changed: []string{"state"},
		Actor:   audit.Actor{UserID: &uid, UserVia: "row_user"},
	}
	return Encoded{Key: e.StoreKey(), Body: e.AppendBody(nil)}
}

var retTables = []string{"sale_order", "account_move", "res_partner"}

// retentionTx appends transaction i (commit i<<8, at rbase + i hours): one
// event of each of retTables.
func retentionTx(t testing.TB, s *Store, i uint64) {
	t.Helper()
	c := i << 8
	b := Batch{Checkpoint: c + 0x80}
	for j, tb := range retTables {
		b.Events = append(b.Events, rev(c, uint32(j+1), tb, rbase.Add(time.Duration(i)*time.Hour)))
	}
	mustAppend(t, s, b)
}

// retentionStore holds transactions 1…100, with a gap record after 50.
func retentionStore(t testing.TB) (*Store, string) {
	dir := t.TempDir()
	s := mustOpen(t, dir)
	for i := uint64(1); i <= 100; i++ {
		retentionTx(t, s, i)
		if i == 50 {
			gap := s.ChainRecord(MarkGap, 0, rbase, LSNField("from", 1), LSNField("to", 2))
			mustAppend(t, s, Batch{Events: []Encoded{gap}})
		}
	}
	return s, dir
}

func testRetention(now time.Time) Retention {
	return Retention{
		Default: 50 * time.Hour,
		Tables: []TableRetention{
			{Glob: "public.account_move*", Keep: 80 * time.Hour},
			{Glob: "res_partner", Keep: 0}, // forever
		},
		Now:   func() time.Time { return now },
		Batch: 16,
	}
}

func mustVerify(t *testing.T, s *Store) VerifyResult {
	t.Helper()
	res, err := s.Verify(t.Context(), nil)
	if err != nil {
		t.Fatalf("verify: %v", err)
	}
	return res
}

func mustPrune(t *testing.T, s *Store, r Retention) PruneStats {
	t.Helper()
	p, err := s.NewPruner(r)
	if err != nil {
		t.Fatal(err)
	}
	st, err := p.Prune(t.Context())
	if err != nil {
		t.Fatalf("prune: %v", err)
	}
	return st
}

// remaining counts the row events left per table.
func remaining(t *testing.T, s *Store) map[string]int {
	out := map[string]int{}
	err := s.Scan(nil, nil, func(k, v []byte) error {
		h, ok := audit.RecordHead(v)
		if !ok {
			t.Fatalf("record %s: no head", keyID(k))
		}
		_, table := h.Names()
		out[table]++
		return nil
	})
	if err != nil {
		t.Fatalf("scan after prune: %v", err)
	}
	return out
}

func TestPruneThenVerify(t *testing.T) {
	s, _ := retentionStore(t)
	defer s.Close()
	size0 := mustVerify(t, s).Events

	// At 100h30m: sale_order of hours ≤ 50 and account_move of hours ≤ 20
	// have expired; res_partner is kept forever.
	now := rbase.Add(100*time.Hour + 30*time.Minute)
	st := mustPrune(t, s, testRetention(now))
	if st.Removed != 70 || st.Cuts < 2 || st.LastCut == nil {
		t.Fatalf("prune: %+v", st)
	}
	got := remaining(t, s)
	if got["sale_order"] != 50 || got["account_move"] != 80 || got["res_partner"] != 100 {
		t.Fatalf("left %v", got)
	}
	res := mustVerify(t, s)
	if res.Events != size0-70 || res.Pruned != 70 || len(res.Cuts) != st.Cuts || len(res.Marks) != 1 {
		t.Fatalf("verify after prune: events %d pruned %d cuts %d marks %d", res.Events, res.Pruned, len(res.Cuts), len(res.Marks))
	}
	if _, _, n := s.Head(); n != res.Events {
		t.Fatalf("meta count %d, verified %d", n, res.Events)
	}
	c := res.Cuts[0]
	if c.Reason == "" || !strings.Contains(c.Reason, "default 50h") || c.MadeAt.IsZero() || c.Kept == 0 {
		t.Errorf("first cut %+v", c)
	}

	// Nothing more has expired: a second pass cuts nothing.
	if st := mustPrune(t, s, testRetention(now)); st.Removed != 0 || st.Cuts != 0 {
		t.Fatalf("second pass: %+v", st)
	}

	// Appends go on after cuts; then 30 hours later the account_move
	// records kept inside the first cuts expire: their ranges are cut again.
	for i := uint64(101); i <= 130; i++ {
		retentionTx(t, s, i)
	}
	now = now.Add(30 * time.Hour)
	st = mustPrune(t, s, testRetention(now))
	got = remaining(t, s)
	if got["sale_order"] != 50 || got["account_move"] != 80 || got["res_partner"] != 130 {
		t.Fatalf("left %v after the second prune (%+v)", got, st)
	}
	res = mustVerify(t, s)
	if res.Pruned != 130 {
		t.Fatalf("pruned %d, want 130", res.Pruned)
	}
	replaced := 0
	for _, c := range res.Cuts {
		if c.Replaces != "" {
			replaced++
		}
	}
	if replaced == 0 {
		t.Fatal("no range was cut again")
	}
	keys, _ := scanAll(t, s)
	if len(keys) != int(res.Events) {
		t.Fatalf("scan %d, verify %d", len(keys), res.Events)
	}
}

// prunedStore is retentionStore after the first prune, closed.
func prunedStore(t *testing.T) (string, VerifyResult) {
	s, dir := retentionStore(t)
	mustPrune(t, s, testRetention(rbase.Add(100*time.Hour+30*time.Minute)))
	res := mustVerify(t, s)
	s.Close()
	return dir, res
}

// storedKeys lists the key of every record of the stopped store in dir.
func storedKeys(t *testing.T, dir string) [][]byte {
	var keys [][]byte
	editRecords(t, dir, func(k, v []byte) []byte { keys = append(keys, bytes.Clone(k)); return v })
	return keys
}

// editRecords edits the records of the stopped store in dir, as an
// attacker with the file would (EditRecords).
func editRecords(t *testing.T, dir string, fn func(k, v []byte) []byte) {
	t.Helper()
	if err := EditRecords(dir, func(k, v []byte) ([]byte, error) { return fn(k, v), nil }); err != nil {
		t.Fatal(err)
	}
}

// removeRecord removes the record at key from the stopped store in dir.
func removeRecord(t *testing.T, dir string, key []byte) {
	t.Helper()
	editRecords(t, dir, func(k, v []byte) []byte {
		if bytes.Equal(k, key) {
			return nil
		}
		return v
	})
}

func inCut(c Cut, k []byte) bool {
	return bytes.Compare(k, c.from[:]) >= 0 && bytes.Compare(k, c.to[:]) <= 0
}

func TestPruneVerifyDetectsOtherRemovals(t *testing.T) {
	_, res := prunedStore(t)
	first, second := res.Cuts[0], res.Cuts[1]
	for _, c := range res.Cuts {
		t.Logf("cut %s: %s … %s removed %d kept %d", c.ID, c.From, c.To, c.Removed, c.Kept)
	}
	cases := []struct {
		name string
		pick func(keys [][]byte) []byte
	}{
		{"a record kept inside a cut", func(keys [][]byte) []byte {
			for _, k := range keys {
				if inCut(first, k) {
					return k
				}
			}
			return nil
		}},
		{"the record before a cut", func(keys [][]byte) []byte {
			var before []byte
			for _, k := range keys {
				if bytes.Compare(k, second.from[:]) >= 0 {
					return before
				}
				before = k
			}
			return nil
		}},
		{"the record after a cut", func(keys [][]byte) []byte {
			for _, k := range keys {
				if bytes.Compare(k, first.to[:]) > 0 {
					return k
				}
			}
			return nil
		}},
		{"a record outside every cut", func(keys [][]byte) []byte {
			last := res.Cuts[len(res.Cuts)-1]
			for _, k := range keys[:len(keys)-30] {
				if bytes.Compare(k, nextKey(nextKey(last.to[:]))) > 0 && !IsChainRecord(k) {
					return k
				}
			}
			return nil
		}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			dir, _ := prunedStore(t)
			k := tc.pick(storedKeys(t, dir))
			if k == nil || IsChainRecord(k) {
				t.Fatalf("no record to remove (%x)", k)
			}
			removeRecord(t, dir, k)
			fixCount(t, dir)
			verifyErr(t, dir)
		})
	}
}

// fixCount sets meta's count to what the store holds, as a careful
// attacker would.
func fixCount(t *testing.T, dir string) {
	n := uint64(0)
	editRecords(t, dir, func(k, v []byte) []byte {
		if !IsChainRecord(k) && !audit.IsSnapshotRecord(v) {
			n++
		}
		return v
	})
	tamperTx(t, dir, func(tx *bolt.Tx) error {
		var b [8]byte
		for i := range 8 {
			b[7-i] = byte(n >> (8 * i))
		}
		return tx.Bucket(bucketMeta).Put(metaCount, b[:])
	})
}

func tamperTx(t *testing.T, dir string, fn func(tx *bolt.Tx) error) {
	t.Helper()
	db, err := bolt.Open(filepath.Join(dir, FileName), 0o600, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := db.Update(fn); err != nil {
		t.Fatal(err)
	}
	db.Close()
}

func TestForgedCutsFail(t *testing.T) {
	t.Run("a cut made by hand for one more removal", func(t *testing.T) {
		// Remove a record that retention kept, and forge a cut for it at the
		// head, with every value right: the chain breaks at the forged cut.
		dir, res := prunedStore(t)
		keys := storedKeys(t, dir)
		victim := keys[len(keys)-20]
		s := mustOpen(t, dir)
		v, err := s.Get(keyID(victim))
		if err != nil {
			t.Fatal(err)
		}
		_, prev, h, _ := audit.Check(v)
		st := *s.state.Load()
		forged := &Cut{From: keyID(victim), To: keyID(victim), Removed: 1, KeptHash: (&keptHasher{}).sum(), Before: prev, Chain: h, MadeAt: rbase, Reason: "forged"}
		key := audit.MakeKey(0x10000, 0)
		rec, _ := audit.Seal(nil, chainBody(key, MarkCut, rbase, cutFields(forged)), audit.Hash{1}) // no key to the chain
		s.Close()
		removeRecord(t, dir, victim)
		tamperTx(t, dir, func(tx *bolt.Tx) error {
			tx.Bucket(bucketEvents).Put(key[:], rec) // a record of its own, after every block
			tx.Bucket(bucketCuts).Put(key[:], rec)
			st.headKey, st.headHash = key, audit.Hash{}
			_, _, st.headHash, _ = audit.Check(rec)
			return putHead(tx, &st)
		})
		fixCount(t, dir)
		ve := verifyErr(t, dir)
		if ve.ID != keyID(key[:]) {
			t.Errorf("failed at %s, want the forged cut %s", ve.ID, keyID(key[:]))
		}
		_ = res
	})
	t.Run("a cut's copy altered", func(t *testing.T) {
		dir, res := prunedStore(t)
		c := res.Cuts[0]
		tamperTx(t, dir, func(tx *bolt.Tx) error {
			b := tx.Bucket(bucketCuts)
			v := bytes.Replace(b.Get(c.key[:]), []byte(`"kept":`+strconv.FormatUint(c.Kept, 10)), []byte(`"kept":`+strconv.FormatUint(c.Kept-1, 10)), 1)
			return b.Put(c.key[:], v)
		})
		verifyErr(t, dir)
	})
	t.Run("a cut's copy removed", func(t *testing.T) {
		dir, res := prunedStore(t)
		tamperTx(t, dir, func(tx *bolt.Tx) error { return tx.Bucket(bucketCuts).Delete(res.Cuts[0].key[:]) })
		verifyErr(t, dir)
	})
	t.Run("a cut record removed from the chain", func(t *testing.T) {
		dir, res := prunedStore(t)
		removeRecord(t, dir, res.Cuts[0].key[:])
		verifyErr(t, dir)
	})
	t.Run("a cut's copy without its record", func(t *testing.T) {
		dir, res := prunedStore(t)
		c := res.Cuts[0]
		tamperTx(t, dir, func(tx *bolt.Tx) error {
			v := tx.Bucket(bucketCuts).Get(c.key[:])
			k := audit.MakeKey(0xFFFFFF, 0)
			return tx.Bucket(bucketCuts).Put(k[:], bytes.Replace(v, []byte(c.ID), []byte(keyID(k[:])), 1))
		})
		verifyErr(t, dir)
	})
}

func TestPruneWaitsForChunkedTransaction(t *testing.T) {
	s, _ := retentionStore(t)
	defer s.Close()
	// A chunk of a transaction still being received: no checkpoint.
	mustAppend(t, s, Batch{Events: []Encoded{rev(200<<8, 1, "sale_order", rbase.Add(200*time.Hour))}})
	p, err := s.NewPruner(testRetention(rbase.Add(100 * time.Hour)))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(t.Context(), 300*time.Millisecond)
	defer cancel()
	st, err := p.Prune(ctx)
	if err == nil || st.Removed != 0 {
		t.Fatalf("pruned %+v, %v while a transaction was half stored", st, err)
	}
	// The rest of the transaction arrives after the cut would have: fine.
	mustAppend(t, s, Batch{Events: []Encoded{rev(200<<8, 2, "sale_order", rbase.Add(200*time.Hour))}, Checkpoint: 200<<8 + 0x80})
	if st := mustPrune(t, s, testRetention(rbase.Add(100*time.Hour))); st.Removed == 0 {
		t.Fatal("nothing pruned once the transaction was complete")
	}
	mustVerify(t, s)
}

func TestPruneState(t *testing.T) {
	s, _ := retentionStore(t)
	defer s.Close()
	mustAppend(t, s, Batch{State: []StateRecord{
		{Bucket: "sessions", Key: "s/old", Value: []byte(`10`)},
		{Bucket: "sessions", Key: "s/new", Value: []byte(`90`)},
		{Bucket: "other", Key: "x", Value: []byte(`1`)},
	}})
	r := testRetention(rbase.Add(100 * time.Hour))
	r.State = map[string]StateExpiry{"sessions": func(k, v []byte, cutoff time.Time) bool {
		h, _ := strconv.Atoi(string(v))
		return rbase.Add(time.Duration(h) * time.Hour).Before(cutoff)
	}}
	if st := mustPrune(t, s, r); st.State != 1 {
		t.Fatalf("state pruned %d", st.State)
	}
	var left []string
	for _, b := range []string{"sessions", "other"} {
		s.LoadState(b, func(k, v []byte) error { left = append(left, b+"/"+string(k)); return nil })
	}
	if strings.Join(left, ",") != "sessions/s/new,other/x" {
		t.Fatalf("left %v", left)
	}
}

func TestMatchTable(t *testing.T) {
	for _, c := range []struct {
		glob, schema, table string
		want                bool
	}{
		{"sale_*", "public", "sale_order", true},
		{"sale_order", "acct", "sale_order", true},
		{"public.res_*", "public", "res_partner", true},
		{"public.res_*", "acct", "res_partner", false},
		{"pub*", "public", "sale_order", true}, // * matches the dot of schema.table
		{"*.a.b", "s", "a.b", true},
		{"sale_[", "public", "sale_order", false},
		{"res_partner", "public", "res_partner_bank", false},
	} {
		if got := MatchTable(c.glob, c.schema, c.table); got != c.want {
			t.Errorf("MatchTable(%q, %q, %q) = %v", c.glob, c.schema, c.table, got)
		}
	}
}

func TestRetentionRules(t *testing.T) {
	r := Retention{Default: 400 * 24 * time.Hour, Tables: []TableRetention{
		{Glob: "public.account_move*", Keep: 10 * 365 * 24 * time.Hour},
		{Glob: "mail_*", Keep: 0},
	}}
	for _, c := range []struct {
		schema, table string
		want          time.Duration
	}{
		{"public", "account_move_line", 10 * 365 * 24 * time.Hour},
		{"other", "account_move", 400 * 24 * time.Hour},
		{"x", "mail_message", 0},
		{"public", "sale_order", 400 * 24 * time.Hour},
	} {
		if got := r.window(r.rule(c.schema, c.table)); got != c.want {
			t.Errorf("%s.%s: %v, want %v", c.schema, c.table, got, c.want)
		}
	}
	for d, want := range map[time.Duration]string{0: "forever", 400 * 24 * time.Hour: "400d", 3650 * 24 * time.Hour: "10y",
		14 * 24 * time.Hour: "2w", 36 * time.Hour: "36h", 5 * time.Second: "5s", 1500 * time.Millisecond: "1.5s"} {
		if got := FormatWindow(d); got != want {
			t.Errorf("FormatWindow(%v) = %s, want %s", d, got, want)
		}
	}
}

func FuzzParseCut(f *testing.F) {
	c := &Cut{From: audit.FormatID(1, 1), To: audit.FormatID(2, 1), Removed: 3, Kept: 1, MadeAt: rbase, Reason: "r"}
	key := audit.MakeKey(5, 0)
	rec, _ := audit.Seal(nil, chainBody(key, MarkCut, rbase, cutFields(c)), audit.Genesis)
	f.Add(key[:], rec)
	f.Fuzz(func(t *testing.T, k, b []byte) {
		c, err := parseCut(k, b)
		if err != nil {
			return
		}
		if bytes.Compare(c.from[:], c.to[:]) > 0 || bytes.Compare(c.to[:], c.key[:]) >= 0 || c.Removed == 0 {
			t.Fatalf("accepted %+v", c)
		}
	})
}

// Retention never launders a removal into a cut: a record removed by hand
// (or altered) in the range of a batch stops pruning, and verify still
// names it.
func TestPruneRefusesABrokenChain(t *testing.T) {
	for _, edit := range []string{"removed", "altered"} {
		t.Run(edit, func(t *testing.T) {
			s, dir := retentionStore(t)
			s.Close()
			k := audit.MakeKey(10<<8, 2)
			editRecords(t, dir, func(key, v []byte) []byte {
				switch {
				case !bytes.Equal(key, k[:]):
					return v
				case edit == "removed":
					return nil
				}
				return bytes.Replace(v, []byte(`"sale"`), []byte(`"void"`), 1)
			})
			s = mustOpen(t, dir)
			p, _ := s.NewPruner(testRetention(rbase.Add(100 * time.Hour)))
			st, err := p.Prune(t.Context())
			// The batches before the damage are cut; the one holding it is not.
			if err == nil || !strings.Contains(err.Error(), "pruning stopped") || st.LastCut == nil || st.LastCut.To >= audit.FormatID(10<<8, 1) {
				t.Fatalf("pruned a broken chain: %+v %v", st, err)
			}
			s.Close()
			if ve := verifyErr(t, dir); !strings.HasPrefix(ve.ID, "0000000000000A00-") {
				t.Fatalf("verify names %s", ve.ID)
			}
		})
	}
}

// TestPruneRemovesPostings: what retention removes is gone from every
// index too, and what it keeps is still found through them.
func TestPruneRemovesPostings(t *testing.T) {
	s, _ := retentionStore(t)
	defer s.Close()
	mustPrune(t, s, testRetention(rbase.Add(100*time.Hour+30*time.Minute)))
	left := remaining(t, s)
	ctx := t.Context()
	count := func(q Query) uint64 {
		t.Helper()
		n, err := s.Count(ctx, q)
		if err != nil {
			t.Fatal(err)
		}
		var listed uint64
		if _, err := s.Query(ctx, q, func(k, rec []byte) error { listed++; return nil }); err != nil {
			t.Fatal(err)
		}
		q.Desc = true
		var desc uint64
		if _, err := s.Query(ctx, q, func(k, rec []byte) error { desc++; return nil }); err != nil {
			t.Fatal(err)
		}
		if listed != n || desc != n {
			t.Errorf("%+v: Count %d, Query lists %d (%d newest first)", q, n, listed, desc)
		}
		return n
	}
	for j, table := range retTables {
		if n := count(Query{Tables: []string{table}}); n != uint64(left[table]) {
			t.Errorf("table %s: %d events through the index, %d stored", table, n, left[table])
		}
		// rev's user is its ordinal: one user per table.
		if n := count(Query{User: "#" + strconv.Itoa(j+1)}); n != uint64(left[table]) {
			t.Errorf("user #%d: %d events through the index, %d stored", j+1, n, left[table])
		}
	}
	if left["sale_order"] == 0 || left["sale_order"] >= 100 {
		t.Fatalf("the test needs sale_order pruned in part: %d left", left["sale_order"])
	}
	// Hour 10's records: sale_order's and account_move's are pruned, res_partner's kept.
	for _, c := range []struct {
		table string
		want  uint64
	}{{"sale_order", 0}, {"account_move", 0}, {"res_partner", 1}} {
		ref := audit.RecordRef{Schema: "public", Table: c.table, Key: audit.RecordKey{{Text: strconv.Itoa(10 << 8)}}}
		if n := count(Query{Record: &ref}); n != c.want {
			t.Errorf("record %s: %d events through the index, want %d", ref, n, c.want)
		}
	}
	// A time range over the pruned hours finds only what was kept.
	if n := count(Query{Since: rbase, Until: rbase.Add(21 * time.Hour)}); n != 20 {
		t.Errorf("hours 1–20: %d events through the index, want the 20 of res_partner", n)
	}
}

// Every pruning batch publishes its cut into the store's cached cuts: the
// next reader finds them current, as the bucket would read, rather than
// parse every cut ever made again.
func TestPrunePublishesCuts(t *testing.T) {
	s, _ := retentionStore(t)
	defer s.Close()
	now := rbase.Add(100*time.Hour + 30*time.Minute)
	check := func(when string) {
		t.Helper()
		cached := s.cuts.Load()
		err := s.view(func(tx *bolt.Tx) error {
			fresh, err := loadCuts(tx)
			if err != nil {
				return err
			}
			if cached == nil || cached.seq != fresh.seq {
				t.Fatalf("%s: the cached cuts are stale (bucket at sequence %d)", when, fresh.seq)
			}
			if !reflect.DeepEqual(cached, fresh) {
				t.Fatalf("%s: the cached cuts differ from the bucket's:\n%+v\n%+v", when, cached, fresh)
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	if st := mustPrune(t, s, testRetention(now)); st.Cuts < 2 {
		t.Fatalf("prune: %+v", st)
	}
	check("after the first pass")
	for i := uint64(101); i <= 130; i++ {
		retentionTx(t, s, i)
	}
	if st := mustPrune(t, s, testRetention(now.Add(30*time.Hour))); st.Cuts == 0 {
		t.Fatalf("second prune: %+v", st)
	}
	check("after cutting again")
}
