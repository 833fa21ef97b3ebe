package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"

	"github.com/jackc/pgx/v5"
)

// The workload of the delivery tests: many small transactions (1–50 row
// changes: inserts, updates and deletes, in up to a few statements each) on
// two tables, one with REPLICA IDENTITY DEFAULT and one with FULL, one
// worker per table. Every worker records what it did: per transaction its
// xid and the (op, id) of every row it changed, and the final contents of
// its table.

const workloadDDL = `
CREATE TABLE wl_default (id int8 PRIMARY KEY, v int8 NOT NULL, s text NOT NULL);
CREATE TABLE wl_full (id int8 PRIMARY KEY, v int8 NOT NULL, s text NOT NULL);
ALTER TABLE wl_full REPLICA IDENTITY FULL;`

type wlRow struct {
	v int64
	s string
}

type opID struct {
	op string
	id int64
}

type wlTx struct {
	xid     uint32
	changes []opID
}

// wlTable is one worker's table and what the worker did to it.
type wlTable struct {
	name string
	full bool

	rng     *rand.Rand
	next    int64
	live    map[int64]wlRow
	ids     []int64       // the keys of live, for random picks
	pos     map[int64]int // index of an id in ids
	txs     []wlTx
	changes int
}

func newWLTable(name string, full bool, seed uint64) *wlTable {
	return &wlTable{name: name, full: full, rng: rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15)),
		next: 1, live: map[int64]wlRow{}, pos: map[int64]int{}}
}

// value makes a random value: int8s beyond 2^53 (a float would round
// them), strings with quotes, commas, backslashes, newlines and non-ASCII.
func (w *wlTable) value() wlRow {
	var v int64
	switch w.rng.IntN(4) {
	case 0:
		v = w.rng.Int64() // mostly beyond 2^53
	case 1:
		v = -w.rng.Int64()
	default:
		v = w.rng.Int64N(1000)
	}
	var s string
	switch w.rng.IntN(5) {
	case 0:
		s = fmt.Sprintf(`q"uote'%d, back\slash`, w.rng.IntN(1e6))
	case 1:
		s = fmt.Sprintf("line\nbreak\ttab %d ünïcødé 🙂", w.rng.IntN(1e6))
	case 2:
		s = ""
	default:
		s = "s" + strconv.Itoa(w.rng.IntN(1e9))
	}
	return wlRow{v, s}
}

func (w *wlTable) add(id int64, r wlRow) {
	w.live[id] = r
	w.pos[id] = len(w.ids)
	w.ids = append(w.ids, id)
}

func (w *wlTable) remove(id int64) {
	i := w.pos[id]
	last := w.ids[len(w.ids)-1]
	w.ids[i] = last
	w.pos[last] = i
	w.ids = w.ids[:len(w.ids)-1]
	delete(w.pos, id)
	delete(w.live, id)
}

// pick returns n distinct live ids.
func (w *wlTable) pick(n int) []int64 {
	seen := map[int64]bool{}
	out := make([]int64, 0, n)
	for len(out) < n {
		id := w.ids[w.rng.IntN(len(w.ids))]
		if !seen[id] {
			seen[id] = true
			out = append(out, id)
		}
	}
	return out
}

type wlStmt struct {
	sql  string
	args []any
}

// plan plans one transaction of exactly n row changes and applies it to the
// model (a failed transaction fails the test, so there is nothing to undo).
func (w *wlTable) plan(n int) ([]wlStmt, []opID) {
	var stmts []wlStmt
	var changes []opID
	for n > 0 {
		k := 1 + w.rng.IntN(n)
		op := w.rng.IntN(10)
		switch {
		case op < 4 || len(w.ids) < k: // insert
			ids, vs, ss := make([]int64, k), make([]int64, k), make([]string, k)
			for i := range k {
				ids[i] = w.next
				w.next++
				r := w.value()
				vs[i], ss[i] = r.v, r.s
				w.add(ids[i], r)
				changes = append(changes, opID{"insert", ids[i]})
			}
			stmts = append(stmts, wlStmt{"INSERT INTO " + w.name + " (id, v, s) SELECT * FROM unnest($1::int8[], $2::int8[], $3::text[])", []any{ids, vs, ss}})
		case op < 8: // update
			ids := w.pick(k)
			vs, ss := make([]int64, k), make([]string, k)
			for i, id := range ids {
				r := w.value()
				if w.rng.IntN(4) == 0 {
					r.s = w.live[id].s // not every column changes
				}
				vs[i], ss[i] = r.v, r.s
				w.live[id] = r
				changes = append(changes, opID{"update", id})
			}
			stmts = append(stmts, wlStmt{"UPDATE " + w.name + " t SET v = u.v, s = u.s FROM unnest($1::int8[], $2::int8[], $3::text[]) AS u(id, v, s) WHERE t.id = u.id", []any{ids, vs, ss}})
		default: // delete
			ids := w.pick(k)
			for _, id := range ids {
				w.remove(id)
				changes = append(changes, opID{"delete", id})
			}
			stmts = append(stmts, wlStmt{"DELETE FROM " + w.name + " WHERE id = ANY($1::int8[])", []any{ids}})
		}
		n -= k
	}
	return stmts, changes
}

// runTx runs one planned transaction and records its xid.
func (w *wlTable) runTx(ctx context.Context, conn *pgx.Conn, n int) error {
	stmts, changes := w.plan(n)
	tx, err := conn.Begin(ctx)
	if err != nil {
		return err
	}
	defer tx.Rollback(ctx)
	var xid int64
	if err := tx.QueryRow(ctx, "SELECT txid_current()").Scan(&xid); err != nil {
		return err
	}
	for _, s := range stmts {
		tag, err := tx.Exec(ctx, s.sql, s.args...)
		if err != nil {
			return fmt.Errorf("%s: %w", abbrev(s.sql), err)
		}
		if want := int64(len(s.args[0].([]int64))); tag.RowsAffected() != want {
			return fmt.Errorf("%s: %d rows affected, want %d", abbrev(s.sql), tag.RowsAffected(), want)
		}
	}
	if err := tx.Commit(ctx); err != nil {
		return err
	}
	w.txs = append(w.txs, wlTx{xid: uint32(xid), changes: changes})
	w.changes += len(changes)
	return nil
}

// workload runs the two workers until each has made its share of min
// changes and the test says stop (so that the disruptions a test makes all
// happen while transactions are running).
type workload struct {
	tables []*wlTable
	min    int
	total  int // set when run returns

	// gate is held shared by a worker during each transaction; a test takes
	// it exclusively to restart the server with no transaction in flight,
	// then bumps gen so that workers reconnect.
	gate sync.RWMutex
	gen  int
}

func newWorkload(seed uint64, min int) *workload {
	return &workload{min: min, tables: []*wlTable{
		newWLTable("wl_default", false, seed),
		newWLTable("wl_full", true, seed+1),
	}}
}

// run runs the workers until stop is closed and at least min changes are
// made, and returns the first error.
func (wl *workload) run(dsn string, stop <-chan struct{}) error {
	errs := make(chan error, len(wl.tables))
	for i, w := range wl.tables {
		quota := wl.min / len(wl.tables)
		if i == 0 {
			quota += wl.min % len(wl.tables)
		}
		go func() { errs <- wl.worker(dsn, w, quota, stop) }()
	}
	var first error
	for range wl.tables {
		if err := <-errs; err != nil && first == nil {
			first = err
		}
	}
	for _, w := range wl.tables {
		wl.total += w.changes
	}
	return first
}

func (wl *workload) worker(dsn string, w *wlTable, quota int, stop <-chan struct{}) error {
	ctx := context.Background()
	var conn *pgx.Conn
	gen := -1
	defer func() {
		if conn != nil {
			conn.Close(ctx)
		}
	}()
	stopped := func() bool {
		select {
		case <-stop:
			return true
		default:
			return false
		}
	}
	for w.changes < quota || !stopped() {
		wl.gate.RLock()
		if gen != wl.gen {
			if conn != nil {
				conn.Close(ctx)
			}
			var err error
			if conn, err = pgx.Connect(ctx, dsn); err != nil {
				wl.gate.RUnlock()
				return fmt.Errorf("%s: connect: %w", w.name, err)
			}
			gen = wl.gen
		}
		n := 1 + w.rng.IntN(50)
		if w.changes < quota {
			n = min(n, quota-w.changes)
		}
		err := w.runTx(ctx, conn, n)
		wl.gate.RUnlock()
		if err != nil {
			return fmt.Errorf("%s: transaction %d: %w", w.name, len(w.txs)+1, err)
		}
	}
	return nil
}

// pause runs fn with no workload transaction in flight; the workers open
// new connections afterwards.
func (wl *workload) pause(fn func()) {
	wl.gate.Lock()
	defer wl.gate.Unlock()
	fn()
	wl.gen++
}

// check requires the store to hold every change of the workload exactly
// once, with the right values, and nothing else.
func (wl *workload) check(t *testing.T, dsn string, evs []*event) {
	t.Helper()
	if len(evs) != wl.total {
		t.Errorf("the store holds %d events, the workload made %d changes", len(evs), wl.total)
	}

	// No change twice: (xid, lsn) is unique (every change here is a WAL
	// record of its own), and so is the id.
	type xl struct {
		xid uint32
		lsn uint64
	}
	seen := map[xl]string{}
	for _, e := range evs {
		k := xl{e.XID, e.lsn}
		if prev, dup := seen[k]; dup {
			t.Errorf("events %s and %s have the same xid %d and lsn %s", prev, e.ID, e.XID, e.LSN)
		}
		seen[k] = e.ID
	}

	// Ordinals of each transaction are 1..n without gaps, and one commit
	// LSN is one xid.
	byCommit := map[uint64][]*event{}
	var commits []uint64
	for _, e := range evs {
		if byCommit[e.commitLSN] == nil {
			commits = append(commits, e.commitLSN)
		}
		byCommit[e.commitLSN] = append(byCommit[e.commitLSN], e)
	}
	xidCommit := map[uint32]uint64{}
	for _, c := range commits {
		for i, e := range byCommit[c] {
			if e.ordinal != uint32(i+1) || e.XID != byCommit[c][0].XID {
				t.Errorf("transaction at %s: event %d is %s (xid %d), want ordinal %d of xid %d", e.CommitLSN, i, e.ID, e.XID, i+1, byCommit[c][0].XID)
				break
			}
		}
		x := byCommit[c][0].XID
		if other, dup := xidCommit[x]; dup {
			t.Errorf("xid %d has events under two commit LSNs (%x and %x)", x, other, c)
		}
		xidCommit[x] = c
	}

	// Every workload transaction, by xid: exactly its changes (as a
	// multiset of table, op, id; statement-internal order is the server's).
	byXID := map[uint32][]*event{}
	for _, e := range evs {
		byXID[e.XID] = append(byXID[e.XID], e)
	}
	type top struct {
		table string
		op    string
		id    int64
	}
	bad := 0
	wlXIDs := map[uint32]bool{}
	for _, w := range wl.tables {
		for _, tx := range w.txs {
			wlXIDs[tx.xid] = true
			want := map[top]int{}
			for _, c := range tx.changes {
				want[top{w.name, c.op, c.id}]++
			}
			got := map[top]int{}
			for _, e := range byXID[tx.xid] {
				got[top{e.Table, e.Op, keyID(t, e)}]++
			}
			if !equalCounts(want, got) && bad < 5 {
				bad++
				t.Errorf("%s xid %d: the store holds %d events %v, the transaction made %d changes %v",
					w.name, tx.xid, len(byXID[tx.xid]), got, len(tx.changes), want)
			}
		}
	}
	for x, es := range byXID {
		if !wlXIDs[x] {
			t.Errorf("the store holds %d events of xid %d, which the workload did not run (first: %s)", len(es), x, es[0].Raw)
		}
	}

	// Replay the store per table, in commit order: each event must apply
	// to the state the events before it built (an insert of a new row, an
	// update or delete of an existing one, FULL before-images equal to the
	// row as it was), and the end state must be what the workload left.
	for _, w := range wl.tables {
		state := map[int64]row{}
		for _, e := range evs {
			if e.Table != w.name {
				continue
			}
			id := keyID(t, e)
			prev, exists := state[id]
			switch e.Op {
			case "insert":
				if exists {
					t.Fatalf("%s: insert of id %d, which exists: %s", w.name, id, e.Raw)
				}
				if e.BeforeRow != nil {
					t.Fatalf("%s: insert with a before image: %s", w.name, e.Raw)
				}
				if want := []string{"id", "v", "s"}; strings.Join(e.ChangedList, ",") != strings.Join(want, ",") {
					t.Fatalf("%s: insert: changed = %v, want %v", w.name, e.ChangedList, want)
				}
				state[id] = e.AfterRow
			case "update":
				if !exists {
					t.Fatalf("%s: update of id %d, which does not exist: %s", w.name, id, e.Raw)
				}
				// FULL: the server sends the old row; DEFAULT: cdcaudit
				// reconstructs it (every row was inserted since capture
				// began), the same.
				checkBeforeSource(t, w.name, w.full, e)
				if e.BeforeRow.String() != prev.String() {
					t.Fatalf("%s: update of id %d: before = %s, want the row as it was: %s", w.name, id, e.BeforeRow, prev)
				}
				if want := changedCols(prev, e.AfterRow); strings.Join(e.ChangedList, ",") != strings.Join(want, ",") {
					t.Fatalf("%s: update %s: changed = %v, want %v", w.name, e.ID, e.ChangedList, want)
				}
				state[id] = e.AfterRow
			case "delete":
				if !exists {
					t.Fatalf("%s: delete of id %d, which does not exist: %s", w.name, id, e.Raw)
				}
				checkBeforeSource(t, w.name, w.full, e)
				want := prev.String()
				if e.BeforeRow.String() != want || e.AfterRow != nil {
					t.Fatalf("%s: delete of id %d: before = %s, after = %s; want before = %s, after = null", w.name, id, e.BeforeRow, e.AfterRow, want)
				}
				delete(state, id)
			default:
				t.Fatalf("%s: unexpected op: %s", w.name, e.Raw)
			}
		}
		if len(state) != len(w.live) {
			t.Errorf("%s: replaying the store leaves %d rows, the workload left %d", w.name, len(state), len(w.live))
		}
		for id, r := range w.live {
			got, ok := state[id]
			if !ok {
				t.Errorf("%s: id %d: no row after replaying the store", w.name, id)
				continue
			}
			if err := matchWLRow(id, r, got); err != nil {
				t.Errorf("%s: %v", w.name, err)
			}
		}
		// The model itself against the source table.
		source := map[int64]wlRow{}
		err := withConn(dsn, func(c *pgx.Conn) error {
			rows, err := c.Query(context.Background(), "SELECT id, v, s FROM "+w.name)
			if err != nil {
				return err
			}
			var id, v int64
			var s string
			_, err = pgx.ForEachRow(rows, []any{&id, &v, &s}, func() error {
				source[id] = wlRow{v, s}
				return nil
			})
			return err
		})
		if err != nil {
			t.Fatal(err)
		}
		if len(source) != len(w.live) {
			t.Errorf("%s: the table holds %d rows, the workload model %d", w.name, len(source), len(w.live))
		}
		for id, r := range w.live {
			if source[id] != r {
				t.Errorf("%s: id %d: table has %+v, the workload model %+v", w.name, id, source[id], r)
				break
			}
		}
	}
}

func equalCounts[K comparable](a, b map[K]int) bool {
	if len(a) != len(b) {
		return false
	}
	for k, n := range a {
		if b[k] != n {
			return false
		}
	}
	return true
}

// keyID returns the event's key {"id":N}.
func keyID(t *testing.T, e *event) int64 {
	t.Helper()
	if len(e.KeyRow) != 1 || e.KeyRow[0].Name != "id" {
		t.Fatalf("event %s: key = %s, want {\"id\":…}", e.ID, e.KeyRow)
	}
	id, err := strconv.ParseInt(string(e.KeyRow[0].Value), 10, 64)
	if err != nil {
		t.Fatalf("event %s: key id %s is not an integer JSON number", e.ID, e.KeyRow[0].Value)
	}
	return id
}

// matchWLRow compares an after-image with the model, exactly: v as the
// JSON number PostgreSQL printed, s as the string.
func matchWLRow(id int64, want wlRow, got row) error {
	if strings.Join(got.names(), ",") != "id,v,s" {
		return fmt.Errorf("id %d: columns %v, want [id v s]", id, got.names())
	}
	if string(got[0].Value) != strconv.FormatInt(id, 10) || string(got[1].Value) != strconv.FormatInt(want.v, 10) {
		return fmt.Errorf("id %d: stored %s, want id %d, v %d", id, got, id, want.v)
	}
	var s string
	if err := json.Unmarshal(got[2].Value, &s); err != nil || s != want.s {
		return fmt.Errorf("id %d: stored s %s, want %q", id, got[2].Value, want.s)
	}
	return nil
}

// changedCols lists the columns whose encoded values differ.
func changedCols(before, after row) []string {
	out := []string{}
	for _, c := range after {
		if v, ok := before.get(c.Name); !ok || string(v) != string(c.Value) {
			out = append(out, c.Name)
		}
	}
	return out
}

// summary describes the workload for the log.
func (wl *workload) summary() string {
	var parts []string
	for _, w := range wl.tables {
		ops := map[string]int{}
		for _, tx := range w.txs {
			for _, c := range tx.changes {
				ops[c.op]++
			}
		}
		var keys []string
		for k := range ops {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		var s []string
		for _, k := range keys {
			s = append(s, fmt.Sprintf("%s %d", k, ops[k]))
		}
		parts = append(parts, fmt.Sprintf("%s: %d transactions, %s, %d rows left", w.name, len(w.txs), strings.Join(s, ", "), len(w.live)))
	}
	return strings.Join(parts, "; ")
}

// checkBeforeSource: a FULL table's before-images come from the server, a
// DEFAULT table's are reconstructed (its rows were all seen).
func checkBeforeSource(t *testing.T, table string, full bool, e *event) {
	t.Helper()
	want := "reconstructed"
	if full {
		want = "wal"
	}
	if e.BeforeSource != want {
		t.Fatalf("%s: %s %s: before_source %q, want %q", table, e.Op, e.ID, e.BeforeSource, want)
	}
}
