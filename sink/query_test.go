package sink

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"path"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/cdcaudit/cdcaudit/audit"
	bolt "go.etcd.io/bbolt"
)

// A generated workload: tables, users, sessions, ops, flags, keys that
// change, snapshot records, truncates, chain records, and commit times
// that now and then step back.
var (
	genTables   = [][2]string{{"public", "sale_order"}, {"public", "sale_order_line"}, {"public", "res_partner"}, {"erp", "sale_order"}, {"public", "t.x"}}
	genUsers    = []string{"alice@example.com", "bob", "", ""}
	genSessions = []string{"s1", "s2", "s3", ""}
)

type genStore struct {
	s      *Store
	rng    *rand.Rand
	lsn    uint64
	at     time.Time
	events int
}

func (g *genStore) event(ord uint32) (Encoded, *audit.Event) {
	r := g.rng
	tb := genTables[r.IntN(len(genTables))]
	e := &audit.Event{LSN: g.lsn - 1, CommitLSN: g.lsn, Ordinal: ord, XID: uint32(g.lsn), CommitTime: g.at,
		Database: "odoo", Schema: tb[0], Table: tb[1]}
	ops := []audit.Op{audit.OpInsert, audit.OpUpdate, audit.OpUpdate, audit.OpUpdate, audit.OpDelete, audit.OpSnapshot}
	e.Op = ops[r.IntN(len(ops))]
	if r.IntN(60) == 0 {
		e.Op = audit.OpTruncate
	}
	id := r.IntN(12)
	key := func(id int) audit.Row {
		if tb[1] == "sale_order_line" {
			return audit.Row{{Name: "order_id", Value: []byte(strconv.Itoa(id % 3))}, {Name: "seq", Value: []byte(`"` + strconv.Itoa(id) + `"`)}}
		}
		if tb[1] == "res_partner" {
			return audit.Row{{Name: "code", Value: []byte(`"p` + strconv.Itoa(id) + `"`)}}
		}
		return audit.Row{{Name: "id", Value: []byte(strconv.Itoa(id))}}
	}
	if e.Op != audit.OpTruncate {
		e.Key = key(id)
		row := append(slices.Clone(e.Key), audit.Column{Name: "state", Value: []byte(`"x"`)})
		switch e.Op {
		case audit.OpUpdate:
			e.After, e.Changed = row, []string{"state"}
			e.Before = slices.Clone(row)
			if r.IntN(5) == 0 {
				e.Before = append(key(r.IntN(12)), audit.Column{Name: "state", Value: []byte(`"y"`)}) // the key changed
			}
			if r.IntN(8) == 0 {
				e.Before = nil
			}
		case audit.OpInsert, audit.OpSnapshot:
			e.After = row
		case audit.OpDelete:
			e.Before = row
		}
	}
	if e.Op != audit.OpSnapshot {
		switch u := genUsers[r.IntN(len(genUsers))]; {
		case u != "":
			e.Actor.Login = u
		case r.IntN(2) == 0:
			uid := int64(3)
			e.Actor.UserID = &uid
		}
		e.Actor.SessionID = genSessions[r.IntN(len(genSessions))]
		if r.IntN(6) == 0 {
			e.Flags = []string{"orm_bypass"}
		}
	}
	enc := Encoded{Key: e.StoreKey(), Body: e.AppendBody(nil), Snapshot: e.Op == audit.OpSnapshot}
	if r.IntN(2) == 0 {
		terms := e.Terms()
		enc.Terms = &terms
	}
	return enc, e
}

// grow appends n transactions in appends of a few each.
func (g *genStore) grow(t testing.TB, n int) {
	t.Helper()
	for n > 0 {
		var batches []Batch
		for range 1 + g.rng.IntN(4) {
			g.lsn += 0x100
			// Steps below the time index's precision (1 ms) too.
			step := time.Duration(g.rng.IntN(400)) * 10 * time.Microsecond
			if g.rng.IntN(10) == 0 {
				step = -time.Duration(g.rng.IntN(300)) * 10 * time.Microsecond // the clock stepped back
			}
			g.at = g.at.Add(step)
			b := Batch{Checkpoint: g.lsn + 8}
			for i := range 1 + g.rng.IntN(6) {
				enc, _ := g.event(uint32(i + 1))
				b.Events = append(b.Events, enc)
				g.events++
			}
			batches = append(batches, b)
			n--
		}
		mustAppend(t, g.s, batches...)
		if g.rng.IntN(15) == 0 {
			gap := g.s.ChainRecord(MarkGap, g.lsn+1, g.at.Add(time.Hour))
			mustAppend(t, g.s, Batch{Events: []Encoded{gap}})
			g.lsn += 0x100
		}
	}
}

func newGenStore(t testing.TB, seed uint64, txs int) *genStore {
	t.Helper()
	g := &genStore{s: mustOpen(t, filepath.Join(t.TempDir(), "store")), rng: rand.New(rand.NewPCG(seed, 1)), lsn: 0x1000, at: t0}
	t.Cleanup(func() { g.s.Close() })
	g.grow(t, txs)
	return g
}

// refEvent is a stored event read the slow way, for the brute-force
// answers.
type refEvent struct {
	key, rec      []byte
	r             *audit.Record
	user, session string
	flags         []string
	keys          []audit.RecordKey // key, and the before-image's when an update changed it
}

func readRef(t testing.TB, s *Store) []refEvent {
	t.Helper()
	var out []refEvent
	err := s.Scan(nil, nil, func(k, v []byte) error {
		r, err := audit.ParseRecord(v)
		if err != nil {
			return err
		}
		e := refEvent{key: slices.Clone(k), rec: slices.Clone(v), r: r}
		var actor struct {
			UserID    *int64  `json:"user_id"`
			Login     *string `json:"login"`
			SessionID *string `json:"session_id"`
		}
		if err := json.Unmarshal(r.Actor, &actor); err != nil {
			return err
		}
		if actor.Login != nil {
			e.user = *actor.Login
		} else if actor.UserID != nil {
			e.user = "#" + strconv.FormatInt(*actor.UserID, 10)
		}
		if actor.SessionID != nil {
			e.session = *actor.SessionID
		}
		if err := json.Unmarshal(r.Flags, &e.flags); err != nil {
			return err
		}
		members := func(raw json.RawMessage) (names []string, vals map[string]json.RawMessage) {
			if string(raw) == "null" {
				return nil, nil
			}
			dec := json.NewDecoder(bytes.NewReader(raw))
			dec.Token()
			vals = map[string]json.RawMessage{}
			for dec.More() {
				tok, _ := dec.Token()
				var v json.RawMessage
				dec.Decode(&v)
				names = append(names, tok.(string))
				vals[tok.(string)] = v
			}
			return names, vals
		}
		text := func(v json.RawMessage) string {
			var s string
			if json.Unmarshal(v, &s) == nil {
				return s
			}
			return string(v)
		}
		names, kv := members(r.Key)
		if len(names) > 0 {
			var key audit.RecordKey
			for _, n := range names {
				key = append(key, audit.KeyValue{Column: n, Text: text(kv[n])})
			}
			key.Sort()
			e.keys = append(e.keys, key)
			if _, bv := members(r.Before); r.Op == "update" && bv != nil {
				var prev audit.RecordKey
				for _, n := range names {
					v, ok := bv[n]
					if !ok {
						prev = nil
						break
					}
					prev = append(prev, audit.KeyValue{Column: n, Text: text(v)})
				}
				prev.Sort()
				if prev != nil && !slices.Equal(prev, key) {
					e.keys = append(e.keys, prev)
				}
			}
		}
		out = append(out, e)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// refMatch is the brute-force filter (export's rule for time, tables and
// ops; history's for records).
func refMatch(q Query, e *refEvent) bool {
	r := e.r
	if r.Op == "snapshot" && !slices.Contains(q.Ops, audit.OpSnapshot) {
		return false
	}
	if !q.Since.IsZero() && r.CommitTime.Before(q.Since) || !q.Until.IsZero() && !r.CommitTime.Before(q.Until) {
		return false
	}
	if len(q.Ops) > 0 && !slices.ContainsFunc(q.Ops, func(o audit.Op) bool { return o.String() == r.Op }) {
		return false
	}
	if len(q.Tables) > 0 && !slices.ContainsFunc(q.Tables, func(p string) bool {
		a, _ := path.Match(p, r.Table)
		b, _ := path.Match(p, r.Schema+"."+r.Table)
		return a || b
	}) {
		return false
	}
	if q.User != "" && e.user != q.User || q.Session != "" && e.session != q.Session || q.Flag != "" && !slices.Contains(e.flags, q.Flag) {
		return false
	}
	if q.Record != nil {
		if r.Schema != q.Record.Schema || r.Table != q.Record.Table ||
			!slices.ContainsFunc(e.keys, func(k audit.RecordKey) bool { return q.Record.Key.Matches(k) }) {
			return false
		}
	}
	return true
}

func refIDs(q Query, ref []refEvent) []string {
	var ids []string
	for i := range ref {
		if refMatch(q, &ref[i]) {
			ids = append(ids, keyID(ref[i].key))
		}
	}
	if q.Desc {
		slices.Reverse(ids)
	}
	return ids
}

// queryAll runs q page by page (limit per page) and returns every id, and
// the number of pages.
func queryAll(t testing.TB, s *Store, q Query, limit int) ([]string, int) {
	t.Helper()
	q.Limit = limit
	var ids []string
	pages := 0
	for {
		n := 0
		next, err := s.Query(context.Background(), q, func(k, v []byte) error {
			if !bytes.HasPrefix(v, []byte(`{"id":"`+keyID(k)+`"`)) {
				t.Fatalf("record %s under key %s", v[:40], keyID(k))
			}
			ids = append(ids, keyID(k))
			n++
			return nil
		})
		if err != nil {
			t.Fatalf("%+v: %v", q, err)
		}
		pages++
		if limit > 0 && n > limit {
			t.Fatalf("a page of %d events, limit %d", n, limit)
		}
		if next == "" {
			return ids, pages
		}
		if n != limit {
			t.Fatalf("a cursor after a page of %d events, limit %d", n, limit)
		}
		q.Cursor = next
	}
}

// randomQuery combines filters at random (each also alone, often).
func randomQuery(rng *rand.Rand, ref []refEvent) Query {
	var q Query
	pick := func() bool { return rng.IntN(3) == 0 }
	if pick() && len(ref) > 0 {
		q.Since = ref[rng.IntN(len(ref))].r.CommitTime.Add(time.Duration(rng.IntN(3)-1) * time.Microsecond)
	}
	if pick() && len(ref) > 0 {
		q.Until = ref[rng.IntN(len(ref))].r.CommitTime.Add(time.Duration(rng.IntN(3000)) * time.Microsecond)
		if !q.Since.IsZero() && !q.Since.Before(q.Until) {
			q.Since, q.Until = q.Until.Add(-time.Minute), q.Since.Add(time.Microsecond)
		}
	}
	if pick() {
		q.Tables = [][]string{{"sale_*"}, {"public.sale_order"}, {"erp.*", "res_partner"}, {"t.x"}, {"nothing"}}[rng.IntN(5)]
	}
	if pick() {
		q.Ops = [][]audit.Op{{audit.OpUpdate}, {audit.OpDelete, audit.OpTruncate}, {audit.OpSnapshot}, {audit.OpInsert, audit.OpSnapshot}}[rng.IntN(4)]
	}
	if pick() {
		q.User = []string{"alice@example.com", "bob", "#3", "nobody"}[rng.IntN(4)]
	}
	if pick() {
		q.Session = []string{"s1", "s2", "s3", "s9"}[rng.IntN(4)]
	}
	if rng.IntN(5) == 0 {
		q.Flag = []string{"orm_bypass", "other"}[rng.IntN(2)]
	}
	if pick() {
		refs := []string{"sale_order:3", "erp.sale_order:3", `sale_order_line:{"order_id":1,"seq":"4"}`, "res_partner:p5",
			`res_partner:{"code":"p5"}`, `res_partner:{"id":"p5"}`, `"t.x":7`, "sale_order:99"}
		r, err := audit.ParseRecordRef(refs[rng.IntN(len(refs))])
		if err != nil {
			panic(err)
		}
		q.Record = &r
	}
	q.Desc = rng.IntN(2) == 0
	return q
}

// TestQueryMatchesBruteForce: on randomized stores, every query (each
// filter alone and combined, both orders, pages of every size) hands on
// exactly the events a scan of the whole store selects, once each, in
// order; Count agrees.
func TestQueryMatchesBruteForce(t *testing.T) {
	ctx := context.Background()
	for seed := range uint64(3) {
		g := newGenStore(t, seed, 150)
		ref := readRef(t, g.s)
		if ok, err := g.s.IndexComplete(); !ok || err != nil {
			t.Fatalf("index of a new store not complete: %v %v", ok, err)
		}
		rng := rand.New(rand.NewPCG(seed, 2))
		queries := []Query{{}, {Desc: true}, {Ops: []audit.Op{audit.OpSnapshot}}, {User: "alice@example.com"}, {Session: "s2"},
			{Flag: "orm_bypass"}, {Tables: []string{"sale_order"}}, {Ops: []audit.Op{audit.OpDelete}}, {Since: ref[len(ref)/2].r.CommitTime},
			{Until: ref[len(ref)/2].r.CommitTime}, {Record: &audit.RecordRef{Schema: "public", Table: "sale_order", Key: audit.RecordKey{{Text: "3"}}}}}
		for range 150 {
			queries = append(queries, randomQuery(rng, ref))
		}
		nonEmpty := 0
		for _, q := range queries {
			want := refIDs(q, ref)
			if len(want) > 0 {
				nonEmpty++
			}
			limit := []int{0, 1, 2, 3, 7, 50}[rng.IntN(6)]
			got, _ := queryAll(t, g.s, q, limit)
			if !slices.Equal(got, want) {
				t.Fatalf("seed %d: query %+v (limit %d):\n got %v\nwant %v", seed, q, limit, got, want)
			}
			n, err := g.s.Count(ctx, q)
			if err != nil || n != uint64(len(want)) {
				t.Fatalf("seed %d: count %+v = %d, %v; want %d", seed, q, n, err, len(want))
			}
		}
		if nonEmpty < len(queries)/3 {
			t.Fatalf("only %d of %d queries select anything: the test proves little", nonEmpty, len(queries))
		}
	}
}

// TestQueryEachFilter checks each filter alone against hand-counted
// events, so that the brute force itself is not the only judge.
func TestQueryEachFilter(t *testing.T) {
	s := mustOpen(t, t.TempDir())
	defer s.Close()
	uid := int64(9)
	long := strings.Repeat("reference-", 5)
	mk := func(lsn uint64, ord uint32, edit func(e *audit.Event)) Encoded {
		e := &audit.Event{CommitLSN: lsn, Ordinal: ord, CommitTime: t0.Add(time.Duration(lsn) * time.Second), Schema: "public",
			Table: "sale_order", Op: audit.OpUpdate, Key: audit.Row{{Name: "id", Value: []byte("1")}},
			After: audit.Row{{Name: "id", Value: []byte("1")}}}
		edit(e)
		return Encoded{Key: e.StoreKey(), Body: e.AppendBody(nil), Snapshot: e.Op == audit.OpSnapshot}
	}
	mustAppend(t, s, Batch{Events: []Encoded{
		mk(1, 1, func(e *audit.Event) { e.Actor.Login = "alice" }),
		mk(2, 1, func(e *audit.Event) { e.Actor.UserID = &uid; e.Actor.SessionID = "S" }),
		mk(3, 1, func(e *audit.Event) { e.Flags = []string{"orm_bypass"}; e.Op = audit.OpDelete }),
		mk(4, 1, func(e *audit.Event) { e.Table = "res_partner"; e.Key = audit.Row{{Name: "id", Value: []byte("2")}} }),
		mk(5, 1, func(e *audit.Event) { e.Op = audit.OpSnapshot }),
		mk(6, 1, func(e *audit.Event) {
			e.Key = audit.Row{{Name: "id", Value: []byte("5")}}
			e.Before = audit.Row{{Name: "id", Value: []byte("1")}}
		}),
		// Keys too long for the record index as they are: hashed there.
		mk(7, 1, func(e *audit.Event) {
			e.Table, e.Key = "doc", audit.Row{{Name: "ref", Value: []byte(`"` + long + `a"`)}}
		}),
		mk(8, 1, func(e *audit.Event) {
			e.Table, e.Key = "doc", audit.Row{{Name: "ref", Value: []byte(`"` + long + `b"`)}}
		}),
	}})
	id := func(lsn uint64) string { return audit.FormatID(lsn, 1) }
	all := []string{id(1), id(2), id(3), id(4), id(6), id(7), id(8)}
	rec := func(s string) *audit.RecordRef {
		r, err := audit.ParseRecordRef(s)
		if err != nil {
			t.Fatal(err)
		}
		return &r
	}
	for _, c := range []struct {
		q    Query
		want []string
	}{
		{Query{}, all},
		{Query{Record: rec("doc:" + long + "b")}, []string{id(8)}},
		{Query{Record: rec("doc:" + long)}, nil},
		{Query{User: "alice"}, []string{id(1)}},
		{Query{User: "#9"}, []string{id(2)}},
		{Query{Session: "S"}, []string{id(2)}},
		{Query{Flag: "orm_bypass"}, []string{id(3)}},
		{Query{Ops: []audit.Op{audit.OpDelete}}, []string{id(3)}},
		{Query{Ops: []audit.Op{audit.OpSnapshot}}, []string{id(5)}},
		{Query{Tables: []string{"res_*"}}, []string{id(4)}},
		{Query{Tables: []string{"public.res_partner"}}, []string{id(4)}},
		{Query{Since: t0.Add(3 * time.Second), Until: t0.Add(5 * time.Second)}, []string{id(3), id(4)}},
		{Query{Since: t0.Add(3*time.Second + time.Nanosecond)}, all[3:]},
		{Query{Record: rec("sale_order:1")}, []string{id(1), id(2), id(3), id(6)}},
		{Query{Record: rec("sale_order:1"), Ops: []audit.Op{audit.OpSnapshot, audit.OpUpdate}}, []string{id(1), id(2), id(5), id(6)}},
		{Query{Record: rec("sale_order:5")}, []string{id(6)}},
		{Query{Record: rec(`sale_order:{"id":5}`)}, []string{id(6)}},
		{Query{Record: rec(`sale_order:{"code":5}`)}, nil},
		{Query{Record: rec("res_partner:1")}, nil},
		{Query{Record: rec("sale_order:1"), Desc: true, User: "#9"}, []string{id(2)}},
		{Query{Desc: true, Limit: 2}, []string{id(8), id(7)}},
	} {
		var got []string
		_, err := s.Query(context.Background(), c.q, func(k, _ []byte) error { got = append(got, keyID(k)); return nil })
		if err != nil || !slices.Equal(got, c.want) {
			t.Errorf("%+v: %v %v, want %v", c.q, got, err, c.want)
		}
	}
}

func TestQueryCursorMisuse(t *testing.T) {
	g := newGenStore(t, 7, 40)
	ctx := context.Background()
	q := Query{User: "bob", Limit: 2}
	next, err := g.s.Query(ctx, q, func(_, _ []byte) error { return nil })
	if err != nil || next == "" {
		t.Fatalf("first page: %q %v", next, err)
	}
	for name, bad := range map[string]Query{
		"other filter": {User: "alice@example.com", Cursor: next},
		"other order":  {User: "bob", Desc: true, Cursor: next},
		"other time":   {User: "bob", Since: t0, Cursor: next},
		"garbage":      {User: "bob", Cursor: "not a cursor!"},
		"truncated":    {User: "bob", Cursor: next[:len(next)-2]},
	} {
		if _, err := g.s.Query(ctx, bad, func(_, _ []byte) error { return nil }); !errors.Is(err, ErrCursor) {
			t.Errorf("%s: %v, want ErrCursor", name, err)
		}
	}
	// Another page size is the same query.
	if _, err := g.s.Query(ctx, Query{User: "bob", Limit: 5, Cursor: next}, func(_, _ []byte) error { return nil }); err != nil {
		t.Errorf("another limit: %v", err)
	}
	for _, bad := range []Query{{Limit: -1}, {Tables: []string{"["}}, {Ops: []audit.Op{9}}, {Since: t0, Until: t0},
		{Record: &audit.RecordRef{Table: "t"}}} {
		if _, err := g.s.Query(ctx, bad, func(_, _ []byte) error { return nil }); err == nil {
			t.Errorf("%+v accepted", bad)
		}
	}
	// fn's error stops the query and comes back.
	boom := errors.New("boom")
	calls := 0
	if _, err := g.s.Query(ctx, Query{}, func(_, _ []byte) error { calls++; return boom }); !errors.Is(err, boom) || calls != 1 {
		t.Errorf("fn error: %v after %d calls", err, calls)
	}
	cctx, cancel := context.WithCancel(ctx)
	cancel()
	if _, err := g.s.Query(cctx, Query{Ops: []audit.Op{audit.OpUpdate}}, func(_, _ []byte) error { return nil }); !errors.Is(err, context.Canceled) {
		t.Errorf("cancelled: %v", err)
	}
}

// waitIndexBuilt waits for the index build a store started at open.
func waitIndexBuilt(t *testing.T, s *Store) {
	t.Helper()
	if s.idx.done == nil {
		t.Fatal("no index build was started")
	}
	<-s.idx.done
}

// dropIndex removes the index bucket of a closed store, as a store written
// before indexes existed has none.
func dropIndex(t testing.TB, dir string) {
	t.Helper()
	db, err := bolt.Open(filepath.Join(dir, FileName), 0o600, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if err := db.Update(func(tx *bolt.Tx) error { return tx.DeleteBucket(bucketIndex) }); err != nil {
		t.Fatal(err)
	}
}

// dumpIndex returns every key and value of the index buckets.
func dumpIndex(t testing.TB, s *Store) string {
	t.Helper()
	var b bytes.Buffer
	err := s.view(func(tx *bolt.Tx) error {
		root := tx.Bucket(bucketIndex)
		if root == nil {
			return errors.New("no index")
		}
		return root.ForEach(func(k, v []byte) error {
			if v != nil {
				fmt.Fprintf(&b, "%s=%x\n", k, v)
				return nil
			}
			return root.Bucket(k).ForEach(func(k2, v2 []byte) error {
				fmt.Fprintf(&b, "%s/%x=%x\n", k, k2, v2)
				return nil
			})
		})
	})
	if err != nil {
		t.Fatal(err)
	}
	return b.String()
}

// TestIndexBuiltLater: a store without indexes (written before they
// existed) answers every query by reading the events; opened read-write it
// builds them in the background, resuming after an interruption, into
// exactly the indexes the appends would have written; reindex does the
// same.
func TestIndexBuiltLater(t *testing.T) {
	g := newGenStore(t, 11, 120)
	dir := g.s.Dir()
	want := dumpIndex(t, g.s)
	ref := readRef(t, g.s)
	g.s.Close()
	dropIndex(t, dir)

	rng := rand.New(rand.NewPCG(5, 5))
	var queries []Query
	for range 60 {
		queries = append(queries, randomQuery(rng, ref))
	}
	check := func(s *Store, what string) {
		t.Helper()
		for _, q := range queries {
			if got, _ := queryAll(t, s, q, 3); !slices.Equal(got, refIDs(q, ref)) {
				t.Fatalf("%s: %+v:\n got %v\nwant %v", what, q, got, refIDs(q, ref))
			}
			if n, err := s.Count(context.Background(), q); err != nil || n != uint64(len(refIDs(q, ref))) {
				t.Fatalf("%s: count %+v: %d %v", what, q, n, err)
			}
		}
	}
	ro, err := OpenReadOnly(dir)
	if err != nil {
		t.Fatal(err)
	}
	if ok, _ := ro.IndexComplete(); ok {
		t.Fatal("complete without an index")
	}
	check(ro, "no index, read-only")
	ro.Close()

	old := indexBuildChunk
	indexBuildChunk = 17
	defer func() { indexBuildChunk = old }()
	s := mustOpen(t, dir)
	s.stopIndexBuild() // interrupted after a chunk or a few
	check(s, "half built")
	s.Close()
	s = mustOpen(t, dir)
	waitIndexBuilt(t, s)
	if ok, _ := s.IndexComplete(); !ok {
		t.Fatal("index not complete after the build")
	}
	if got := dumpIndex(t, s); got != want {
		t.Fatalf("index built later differs from the appends':\n%s\nwant\n%s", got, want)
	}
	check(s, "built")
	// Appends after the build index as before.
	g2 := &genStore{s: s, rng: rand.New(rand.NewPCG(1, 9)), lsn: g.lsn, at: g.at}
	g2.grow(t, 20)
	ref = readRef(t, s)
	check(s, "grown")
	want = dumpIndex(t, s)
	s.Close()

	var calls int
	if err := Reindex(context.Background(), dir, func(done, total uint64) { calls++ }); err != nil {
		t.Fatal(err)
	}
	if calls == 0 {
		t.Fatal("reindex reported no progress")
	}
	s = mustOpen(t, dir)
	defer s.Close()
	if got := dumpIndex(t, s); got != want {
		t.Fatalf("reindexed index differs:\n%s\nwant\n%s", got, want)
	}
	check(s, "reindexed")
}

// Appends go on while the index is built: the build catches up with them.
func TestIndexBuildWhileAppending(t *testing.T) {
	g := newGenStore(t, 21, 80)
	dir := g.s.Dir()
	g.s.Close()
	dropIndex(t, dir)
	old := indexBuildChunk
	indexBuildChunk = 5
	defer func() { indexBuildChunk = old }()
	g.s = mustOpen(t, dir)
	g.grow(t, 60)
	waitIndexBuilt(t, g.s)
	if ok, _ := g.s.IndexComplete(); !ok {
		t.Fatal("not complete")
	}
	sameAsRebuild(t, g, "index built during appends")
}

// sameAsRebuild checks that g's index is byte for byte the one reindex
// builds (and leaves g's store reopened).
func sameAsRebuild(t *testing.T, g *genStore, what string) {
	t.Helper()
	dir := g.s.Dir()
	got := dumpIndex(t, g.s)
	g.s.Close()
	if err := Reindex(context.Background(), dir, nil); err != nil {
		t.Fatal(err)
	}
	g.s = mustOpen(t, dir)
	if want := dumpIndex(t, g.s); got != want {
		t.Fatalf("%s differs from a rebuild:\n%s\nwant\n%s", what, got, want)
	}
}

// A store appended to without its indexes (by a cdcaudit that kept none,
// after this one indexed it) has its indexes caught up at the next open.
func TestIndexCatchesUpWithUnindexedAppends(t *testing.T) {
	g := newGenStore(t, 31, 40)
	g.s.wmu.Lock()
	g.s.index = noIndex{}
	g.s.wmu.Unlock()
	g.grow(t, 30)
	ref := readRef(t, g.s)
	g.s.Close()
	g.s = mustOpen(t, g.s.Dir())
	waitIndexBuilt(t, g.s)
	if ok, _ := g.s.IndexComplete(); !ok {
		t.Fatal("not complete")
	}
	for _, q := range []Query{{}, {User: "bob"}, {Tables: []string{"sale_order"}, Desc: true}, {Session: "s1"}} {
		if got, _ := queryAll(t, g.s, q, 4); !slices.Equal(got, refIDs(q, ref)) {
			t.Fatalf("%+v:\n got %v\nwant %v", q, got, refIDs(q, ref))
		}
	}
	sameAsRebuild(t, g, "caught-up index")
}
