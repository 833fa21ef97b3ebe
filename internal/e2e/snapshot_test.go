package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/cdcaudit/cdcaudit/internal/odoosim"
	"github.com/jackc/pgx/v5"
)

// waitLog waits until the log holds want (count times), failing when the
// process ends first.
func waitLog(t testing.TB, log func() string, want string, count int, p alive) {
	t.Helper()
	deadline := time.Now().Add(catchUpTimeout)
	for time.Now().Before(deadline) {
		if strings.Count(log(), want) >= count {
			return
		}
		if p != nil {
			if err := p.exited(); err != nil {
				t.Fatalf("waiting for %q in the log: %v", want, err)
			}
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatalf("no %q in the log after %s", want, catchUpTimeout)
}

// snapshotsOf returns the stored snapshot records of a table, by key text.
func snapshotsOf(t testing.TB, evs []*event, table string) map[string][]*event {
	t.Helper()
	out := map[string][]*event{}
	for _, e := range evs {
		if e.Op == "snapshot" && e.Table == table {
			k := string(e.Key)
			out[k] = append(out[k], e)
		}
	}
	return out
}

// withoutID is a row without its id column.
func withoutID(r row) string {
	var kept row
	for _, c := range r {
		if c.Name != "id" {
			kept = append(kept, c)
		}
	}
	return kept.String()
}

// TestSnapshotRowsBeforeStart: rows that existed before the daemon first
// started are stored once each as snapshot records — key, the whole row as
// after, no before, no actor — and every value (tabs, line breaks,
// backslashes, NULL and the text \N, arrays, bytea, json, jsonb, numbers,
// NaN, Infinity, times) is exactly what the stream gives for the same row
// inserted later. A table without a key is snapshotted too (by ctid, no
// key). Snapshot records are not counted as events (verify), and
// exports leave them out unless --op snapshot asks.
func TestSnapshotRowsBeforeStart(t *testing.T) {
	db := newDB(t)
	conn := connect(t, db.dsn)
	mustExec(t, conn, `CREATE TYPE mood AS ENUM ('ok', 'sad')`)
	mustExec(t, conn, `CREATE TABLE t (id int PRIMARY KEY, v text, arr int[], tarr text[], b bytea, j jsonb, js json,
		num numeric, f float8, r real, ok bool, ts timestamptz, d date, i8 int8, m mood, big text)`)
	mustExec(t, conn, `CREATE TABLE nokey (a text, n int)`)
	mustExec(t, conn, `INSERT INTO t (id, v, arr, tarr, b, j, js, num, f, r, ok, ts, d, i8, m, big) VALUES
		(1, E'tab\there', '{1,NULL,3}', ARRAY['a b', 'c"d', NULL, E'e\\f', E'g\th'], '\x00ff5c0a09'::bytea, '{"a":"x\ty","b":[1,2.50]}', E'{"a" : 1,\n "b": "\\n"}',
			'NaN', 'Infinity', '-Infinity', true, '2026-01-02 03:04:05.123456+00', '2026-01-02', 9223372036854775807, 'sad', repeat('x', 100000)),
		(2, E'line\nbreak\r\n', '{}', '{}', ''::bytea, 'null', 'null', 1.50, 1e-300, 3.25, false, NULL, NULL, -1, 'ok', NULL),
		(3, E'back\\slash \\N \\\\', NULL, NULL, NULL, '"s"', '[]', -0.001, -0, 0, NULL, NULL, NULL, NULL, NULL, NULL),
		(4, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL),
		(5, E'\\N', NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL),
		(6, '', NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL),
		(7, E'h\u00e9llo \u2713 \x01 \\x41 \\101', NULL, NULL, '\x5c4e'::bytea, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL)`)
	const special = 7
	mustExec(t, conn, `INSERT INTO t (id, v, num) SELECT g, 'row ' || g, g * 1.5 FROM generate_series(100, 4599) g`)
	mustExec(t, conn, `INSERT INTO nokey VALUES ('x', 1), (NULL, 2), (E'\\N', NULL)`)
	var want int
	if err := conn.QueryRow(context.Background(), "SELECT count(*) FROM t").Scan(&want); err != nil {
		t.Fatal(err)
	}

	dir := t.TempDir()
	p := startPipeline(t, db, dir)
	waitLog(t, p.logs.String, "snapshot complete", 1, p)
	// The same rows again, now through the stream.
	mustExec(t, conn, `INSERT INTO t SELECT id + 100000, v, arr, tarr, b, j, js, num, f, r, ok, ts, d, i8, m, big FROM t WHERE id <= 7`)
	waitCaughtUp(t, db.dsn, db.slot, currentLSN(t, db.dsn), p)
	p.stop(t)

	evs := readStore(t, dir)
	snaps := snapshotsOf(t, evs, "t")
	if len(snaps) != want {
		t.Fatalf("%d keys of t have snapshot records, want %d", len(snaps), want)
	}
	inserted := map[string]*event{}
	for _, e := range evs {
		if e.Op == "insert" && e.Table == "t" {
			id, _ := e.AfterRow.get("id")
			inserted[string(id)] = e
		}
	}
	for k, list := range snaps {
		if len(list) != 1 {
			t.Fatalf("key %s has %d snapshot records, want 1", k, len(list))
		}
		e := list[0]
		if e.BeforeRow != nil || string(e.Changed) != "[]" || string(e.Flags) != "[]" || string(e.UnchangedToast) != "[]" {
			t.Errorf("snapshot %s: before %s, changed %s", e.ID, e.Before, e.Changed)
		}
		var a struct {
			UserID  *int64 `json:"user_id"`
			UserVia string `json:"user_via"`
		}
		if err := json.Unmarshal(e.Actor, &a); err != nil || a.UserID != nil || a.UserVia != "none" {
			t.Errorf("snapshot %s has an actor: %s", e.ID, e.Actor)
		}
		id, _ := e.AfterRow.get("id")
		if want := `{"id":` + string(id) + `}`; string(e.Key) != want {
			t.Errorf("snapshot %s: key %s, want %s", e.ID, e.Key, want)
		}
		n, _ := strconv.Atoi(string(id))
		if n > special {
			if v, _ := e.AfterRow.get("v"); string(v) != fmt.Sprintf(`"row %d"`, n) {
				t.Errorf("snapshot of id %d: v = %s", n, v)
			}
			continue
		}
		ins := inserted[strconv.Itoa(n+100000)]
		if ins == nil {
			t.Fatalf("no streamed insert of id %d", n+100000)
		}
		if got, want := withoutID(e.AfterRow), withoutID(ins.AfterRow); got != want {
			t.Errorf("id %d: the snapshot's row differs from the stream's:\nsnapshot %s\nstream   %s", n, abbrev(got), abbrev(want))
		}
	}
	if v, _ := snaps[`{"id":5}`][0].AfterRow.get("v"); string(v) != `"\\N"` {
		t.Errorf("the text \\N came back as %s", v)
	}
	if v, _ := snaps[`{"id":4}`][0].AfterRow.get("v"); string(v) != `null` {
		t.Errorf("NULL came back as %s", v)
	}
	nk := snapshotsOf(t, evs, "nokey")
	if len(nk) != 1 || len(nk["null"]) != 3 {
		t.Errorf("nokey: snapshot records by key %v, want 3 without a key", len(nk["null"]))
	}
	// All of a chunk's rows are records of its marker transaction, ordinals 1…n.
	byTx := map[string][]uint32{}
	for _, e := range evs {
		if e.Op == "snapshot" {
			byTx[e.CommitLSN] = append(byTx[e.CommitLSN], e.ordinal)
		}
	}
	for lsn, ords := range byTx {
		for i, o := range ords {
			if o != uint32(i+1) {
				t.Fatalf("snapshot records of transaction %s have ordinals %v, want 1…%d", lsn, ords, len(ords))
			}
		}
		if len(ords) > 2000 {
			t.Errorf("a chunk of %d rows", len(ords))
		}
	}
	if len(byTx) < 3 {
		t.Errorf("%d rows in %d chunks: want several", want, len(byTx))
	}

	verifyOK(t, dir, special) // the 7 inserts; snapshot records are no events
	out, errOut, code := runCLI(t, "export", "--data-dir", dir)
	if code != 0 || strings.Count(out, "\n") != special || strings.Contains(out, `"op":"snapshot"`) {
		t.Errorf("export: exit %d, %d lines (want %d, no snapshot records): %s", code, strings.Count(out, "\n"), special, errOut)
	}
	out, _, code = runCLI(t, "export", "--data-dir", dir, "--op", "snapshot")
	if code != 0 || strings.Count(out, "\n") != want+3 || strings.Count(out, `"op":"snapshot"`) != want+3 {
		t.Errorf("export --op snapshot: exit %d, %d lines, want %d snapshot records", code, strings.Count(out, "\n"), want+3)
	}
}

// reconstruct replays a table's stored records in order — a snapshot row
// or an insert sets the record, an update replaces it (under its new key
// when the key changed), a delete or truncate removes it — and returns
// each key's last row without its key column.
func reconstruct(t testing.TB, evs []*event, table string) map[string]string {
	t.Helper()
	rows := map[string]string{}
	for _, e := range evs {
		if e.Table != table {
			continue
		}
		switch e.Op {
		case "snapshot", "insert":
			rows[string(e.Key)] = withoutID(e.AfterRow)
		case "update":
			if e.BeforeRow != nil {
				id, _ := e.BeforeRow.get("id")
				delete(rows, `{"id":`+string(id)+`}`)
			}
			rows[string(e.Key)] = withoutID(e.AfterRow)
		case "delete":
			delete(rows, string(e.Key))
		case "truncate":
			clear(rows)
		}
	}
	return rows
}

// tableRows reads the table as reconstruct shows it (id, n, s columns).
func tableRows(t testing.TB, conn *pgx.Conn, table string) map[string]string {
	t.Helper()
	rows, err := conn.Query(context.Background(), "SELECT id, n, s FROM "+table)
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]string{}
	var id int
	var n *int64
	var s *string
	_, err = pgx.ForEachRow(rows, []any{&id, &n, &s}, func() error {
		r := row{{Name: "n", Value: jsonOrNull(n)}, {Name: "s", Value: jsonOrNull(s)}}
		out[fmt.Sprintf(`{"id":%d}`, id)] = r.String()
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func jsonOrNull[T any](p *T) json.RawMessage {
	if p == nil {
		return json.RawMessage("null")
	}
	b, _ := json.Marshal(*p)
	return b
}

// writer changes t(id, n, s) from several connections until stop: updates,
// key changes, deletes, inserts, in transactions of a few statements.
func writer(t *testing.T, dsn string, rows int, stop <-chan struct{}) func() int {
	var wg sync.WaitGroup
	var mu sync.Mutex
	txs := 0
	for w := 0; w < 3; w++ {
		wg.Add(1)
		go func(w int) {
			defer wg.Done()
			conn, err := pgx.Connect(context.Background(), dsn)
			if err != nil {
				t.Error(err)
				return
			}
			defer conn.Close(context.Background())
			rng := rand.New(rand.NewPCG(uint64(w), 7))
			next := 1_000_000 * (w + 1)
			for {
				select {
				case <-stop:
					return
				default:
				}
				tx, err := conn.Begin(context.Background())
				if err != nil {
					t.Error(err)
					return
				}
				for i := 0; i < 3; i++ {
					id := 1 + rng.IntN(rows)
					var q string
					var args []any
					switch rng.IntN(10) {
					case 0:
						q, args = "DELETE FROM t WHERE id = $1", []any{id}
					case 1:
						next++
						q, args = "UPDATE t SET id = $2, s = 'moved' WHERE id = $1", []any{id, next}
					case 2:
						next++
						q, args = "INSERT INTO t VALUES ($1, 0, 'new')", []any{next}
					default:
						q, args = "UPDATE t SET n = n + 1, s = s || '+' WHERE id = $1", []any{id}
					}
					if _, err := tx.Exec(context.Background(), q, args...); err != nil {
						t.Error(err)
						tx.Rollback(context.Background())
						return
					}
				}
				if err := tx.Commit(context.Background()); err != nil {
					t.Error(err)
					return
				}
				mu.Lock()
				txs++
				mu.Unlock()
			}
		}(w)
	}
	return func() int { wg.Wait(); return txs }
}

// TestSnapshotWithConcurrentWriter: changes committed while the tables are
// copied are neither lost nor doubled: for every key, its snapshot record
// (when kept) followed by the stream's events gives exactly the table's
// final content. (The image cache drops a snapshot row whose record the
// stream changed in a transaction the row's read did not see.)
func TestSnapshotWithConcurrentWriter(t *testing.T) {
	db := newDB(t)
	conn := connect(t, db.dsn)
	const rows = 30_000
	mustExec(t, conn, `CREATE TABLE t (id int PRIMARY KEY, n int8, s text)`)
	mustExec(t, conn, `INSERT INTO t SELECT g, g, 'r' || g FROM generate_series(1, $1::int) g`, rows)

	stop := make(chan struct{})
	wait := writer(t, db.dsn, rows, stop)
	time.Sleep(200 * time.Millisecond) // the writer is busy when the slot is made
	dir := t.TempDir()
	p := startPipeline(t, db, dir)
	waitLog(t, p.logs.String, "snapshot complete", 1, p)
	time.Sleep(300 * time.Millisecond)
	close(stop)
	txs := wait()
	waitCaughtUp(t, db.dsn, db.slot, currentLSN(t, db.dsn), p)
	p.stop(t)
	if txs < 20 {
		t.Fatalf("the writer committed only %d transactions", txs)
	}

	evs := readStore(t, dir)
	snaps := snapshotsOf(t, evs, "t")
	for k, l := range snaps {
		if len(l) > 1 {
			t.Fatalf("key %s has %d snapshot records", k, len(l))
		}
	}
	got, want := reconstruct(t, evs, "t"), tableRows(t, conn, "t")
	if len(got) != len(want) {
		t.Errorf("reconstructed %d rows, the table has %d", len(got), len(want))
	}
	bad := 0
	for k, w := range want {
		if g := got[k]; g != w {
			if bad++; bad <= 10 {
				t.Errorf("key %s: reconstructed %s, table has %s", k, g, w)
			}
		}
	}
	for k := range got {
		if _, ok := want[k]; !ok {
			if bad++; bad <= 10 {
				t.Errorf("key %s reconstructed, not in the table", k)
			}
		}
	}
	t.Logf("%d writer transactions, %d snapshot records, %d events", txs, len(snaps), len(evs))
}

// TestSnapshotResumesAfterKill: the daemon killed (SIGKILL) in the middle
// of the initial copy resumes it at the next start from the last chunk
// stored, each chunk then in a transaction of its own, and the store ends
// with every row exactly once.
func TestSnapshotResumesAfterKill(t *testing.T) {
	db := newDB(t)
	conn := connect(t, db.dsn)
	const rows = 200_000
	mustExec(t, conn, `CREATE TABLE big (id int PRIMARY KEY, s text)`)
	mustExec(t, conn, `INSERT INTO big SELECT g, 'row ' || g FROM generate_series(1, $1::int) g`, rows)
	dir := t.TempDir()
	d := startDaemon(t, "--dsn", db.dsn, "--data-dir", dir, "--slot", db.slot)
	waitLog(t, d.log, "snapshot progress", 1, d)
	d.kill()
	if strings.Contains(d.log(), "snapshot complete") {
		t.Fatal("the snapshot was complete before the kill: nothing to resume")
	}
	d.start()
	waitLog(t, d.log, "snapshot complete", 1, d)
	if !strings.Contains(d.log(), "snapshot: resuming table") {
		t.Error("the restart did not resume the table")
	}
	waitCaughtUp(t, db.dsn, db.slot, currentLSN(t, db.dsn), d)
	d.stopClean()

	snaps := snapshotsOf(t, readStore(t, dir), "big")
	if len(snaps) != rows {
		t.Fatalf("%d keys have snapshot records, want %d", len(snaps), rows)
	}
	for k, l := range snaps {
		if len(l) != 1 {
			t.Fatalf("key %s has %d snapshot records, want 1", k, len(l))
		}
	}
	verifyOK(t, dir, 0)
}

// TestSnapshotOnDemand: `cdcaudit snapshot --table` makes a running daemon
// copy a table (here one that existed before it, with snapshot: never), and
// `cdcaudit status` shows the progress.
func TestSnapshotOnDemand(t *testing.T) {
	db := newDB(t)
	conn := connect(t, db.dsn)
	mustExec(t, conn, `CREATE TABLE a (id int PRIMARY KEY, s text); CREATE TABLE b (id int PRIMARY KEY)`)
	mustExec(t, conn, `INSERT INTO a SELECT g, 'a' || g FROM generate_series(1, 5000) g; INSERT INTO b VALUES (1)`)
	dir := t.TempDir()
	d := startDaemon(t, "--dsn", db.dsn, "--data-dir", dir, "--slot", db.slot, "--snapshot", "never")
	waitSlotActive(t, db.dsn, db.slot, 0, d)

	out, errOut, code := runCLI(t, "status", "--data-dir", dir)
	if code != 0 || !strings.Contains(out, "snapshot:    none") || !strings.Contains(out, "checkpoint:") {
		t.Fatalf("status before: exit %d\n%s%s", code, out, errOut)
	}
	out, errOut, code = runCLI(t, "snapshot", "--data-dir", dir, "--table", "public.a")
	if code != 0 || !strings.Contains(out, "public.a") {
		t.Fatalf("snapshot --table: exit %d\n%s%s", code, out, errOut)
	}
	waitLog(t, d.log, "snapshot complete", 1, d)
	mustExec(t, conn, `UPDATE a SET s = 'changed' WHERE id = 1`)
	waitCaughtUp(t, db.dsn, db.slot, currentLSN(t, db.dsn), d)
	out, errOut, code = runCLI(t, "status", "--data-dir", dir, "--format", "json")
	if code != 0 {
		t.Fatalf("status: exit %d\n%s", code, errOut)
	}
	var st struct {
		Snapshot struct{ Tables, Done, Rows int } `json:"snapshot"`
		Slot     struct{ Active bool }            `json:"slot"`
	}
	if err := json.Unmarshal([]byte(out), &st); err != nil || st.Snapshot.Tables != 1 || st.Snapshot.Done != 1 || st.Snapshot.Rows != 5000 || !st.Slot.Active {
		t.Errorf("status --format json: %s (%v)", out, err)
	}
	// The metrics: rows stored as snapshot records, not as events.
	resp, err := http.Get(metricsURL(d))
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	src := `source="` + db.name + `"` // every series carries the source
	for _, want := range []string{"\ncdcaudit_snapshot_rows_total{" + src + "} 5000\n", "\ncdcaudit_snapshot_tables{" + src + ",state=\"done\"} 1\n",
		"\ncdcaudit_snapshot_tables{" + src + ",state=\"pending\"} 0\n", "\ncdcaudit_snapshot_remaining_rows{" + src + "} 0\n", "\ncdcaudit_snapshot_eta_seconds{" + src + "} 0\n",
		`cdcaudit_events_total{op="update",schema="public",` + src + `,table="a"} 1` + "\n"} {
		if !strings.Contains(string(body), want) {
			t.Errorf("/metrics lacks %q", strings.TrimSpace(want))
		}
	}
	if strings.Contains(string(body), `op="snapshot"`) {
		t.Error("snapshot records are counted in events_total")
	}
	d.stopClean()
	if _, errOut, code := runCLI(t, "status", "--data-dir", dir); code != 1 || !strings.Contains(errOut, "no 'cdcaudit run' is running") {
		t.Errorf("status without a daemon: exit %d, %s", code, errOut)
	}

	evs := readStore(t, dir)
	if n := len(snapshotsOf(t, evs, "a")); n != 5000 {
		t.Errorf("%d snapshot records of a, want 5000", n)
	}
	if n := len(snapshotsOf(t, evs, "b")); n != 0 {
		t.Errorf("%d snapshot records of b, which was not asked for", n)
	}
	// The update after the snapshot follows its row's snapshot record.
	var seenSnap bool
	for _, e := range evs {
		if e.Table == "a" && string(e.Key) == `{"id":1}` {
			if e.Op == "snapshot" {
				seenSnap = true
			} else if e.Op == "update" && !seenSnap {
				t.Error("the update of id 1 is stored before its snapshot record")
			}
		}
	}
}

// TestSnapshotSecretsAndLogins: the Odoo fixture's tables are snapshotted
// at the first start; its secrets (password hashes, TOTP secret, the
// database secret) never reach the store, an export or the log; snapshot
// rows of the users table carry the redaction and no actor; old device log
// rows open no session.
func TestSnapshotSecretsAndLogins(t *testing.T) {
	r := startOdoo(t)
	waitLog(t, r.d.log, "snapshot complete", 1, r.d)
	secrets := []secret{{"carol's TOTP secret", odoosim.CarolTOTPSecret}, {"the database.secret", odoosim.DatabaseSecret}}
	for uid, h := range odoosim.PasswordHashes {
		secrets = append(secrets, secret{"the password hash of " + odoosim.Logins[uid], h})
	}
	evs := r.stopSearching(secrets)
	users := snapshotsOf(t, evs, "res_users")
	var n int
	if err := r.ctl.QueryRow(r.ctx, "SELECT count(*) FROM res_users").Scan(&n); err != nil {
		t.Fatal(err)
	}
	if len(users) != n {
		t.Fatalf("%d res_users snapshot records, want %d", len(users), n)
	}
	for _, l := range users {
		e := l[0]
		if !bytes.Contains(e.Redacted, []byte(`"password"`)) {
			t.Errorf("snapshot %s of res_users: redacted %s", e.ID, e.Redacted)
		}
		if model(e) != "res.users" {
			t.Errorf("snapshot %s of res_users: model %q", e.ID, model(e))
		}
		if a := actorOf(t, e); a.UserID != nil {
			t.Errorf("snapshot %s has an actor", e.ID)
		}
	}
	var devices int
	if err := r.ctl.QueryRow(r.ctx, "SELECT count(*) FROM res_device_log").Scan(&devices); err != nil {
		t.Fatal(err)
	}
	if devices > 0 {
		if got := len(snapshotsOf(t, evs, "res_device_log")); got != devices {
			t.Errorf("%d res_device_log snapshot records, want %d", got, devices)
		}
	}
	if list := listSessions(t, r.dataDir); len(list) != 0 {
		t.Errorf("snapshot rows opened %d sessions: %v", len(list), list)
	}
}

// TestSnapshotKeysAndChunks: a composite primary key, a replica identity
// index (the stream's key for REPLICA IDENTITY USING INDEX, not the primary
// key) and rows too big for 2000 to a chunk are each read once, in chunks
// no bigger than allowed, keyed as the stream keys the table's changes.
func TestSnapshotKeysAndChunks(t *testing.T) {
	db := newDB(t)
	conn := connect(t, db.dsn)
	mustExec(t, conn, `CREATE TABLE comp (a int, b text, v text, PRIMARY KEY (a, b));
		INSERT INTO comp SELECT g % 7, 'k''' || g, 'v' FROM generate_series(1, 5000) g`)
	mustExec(t, conn, `CREATE TABLE ri (id int PRIMARY KEY, code text NOT NULL, v int);
		CREATE UNIQUE INDEX ri_code ON ri (code); ALTER TABLE ri REPLICA IDENTITY USING INDEX ri_code;
		INSERT INTO ri SELECT g, 'c' || (10000 - g), g FROM generate_series(1, 3000) g`)
	mustExec(t, conn, `CREATE TABLE wide (id int PRIMARY KEY, big text);
		INSERT INTO wide SELECT g, repeat(md5(g::text), 10000) FROM generate_series(1, 60) g`)
	dir := t.TempDir()
	p := startPipeline(t, db, dir)
	waitLog(t, p.logs.String, "snapshot complete", 1, p)
	mustExec(t, conn, `UPDATE ri SET v = -1 WHERE id = 1; UPDATE comp SET v = 'w' WHERE a = 1 AND b = 'k''1'`)
	waitCaughtUp(t, db.dsn, db.slot, currentLSN(t, db.dsn), p)
	p.stop(t)

	evs := readStore(t, dir)
	for table, want := range map[string]int{"comp": 5000, "ri": 3000, "wide": 60} {
		snaps := snapshotsOf(t, evs, table)
		if len(snaps) != want {
			t.Errorf("%s: %d keys with snapshot records, want %d", table, len(snaps), want)
		}
		for k, l := range snaps {
			if len(l) != 1 {
				t.Errorf("%s: key %s has %d snapshot records", table, k, len(l))
			}
		}
	}
	// Keys as the stream gives them.
	for _, e := range evs {
		switch {
		case e.Op == "update" && e.Table == "ri":
			if len(snapshotsOf(t, evs, "ri")[string(e.Key)]) != 1 {
				t.Errorf("the update's key %s is not a snapshot record's key", e.Key)
			}
		case e.Op == "update" && e.Table == "comp":
			if len(snapshotsOf(t, evs, "comp")[string(e.Key)]) != 1 {
				t.Errorf("the update's key %s is not a snapshot record's key", e.Key)
			}
		}
	}
	// Chunks of the wide table stay within a few MB.
	bytesByTx := map[string]int{}
	for _, e := range evs {
		if e.Op == "snapshot" && e.Table == "wide" {
			bytesByTx[e.CommitLSN] += len(e.Raw)
		}
	}
	for lsn, n := range bytesByTx {
		if n > 5<<20 {
			t.Errorf("the chunk of transaction %s holds %d bytes", lsn, n)
		}
	}
	if len(bytesByTx) < 4 {
		t.Errorf("19 MB of rows in %d chunks", len(bytesByTx))
	}
}

// TestSnapshotNeverLoadsTheProfileTables: with snapshot: never, only the
// application's users, models and sessions tables are loaded (once, so
// attribution knows what predates the stream); a marker with an unknown
// id (forged, or replayed) hands over nothing and breaks nothing.
func TestSnapshotNeverLoadsTheProfileTables(t *testing.T) {
	r := startOdoo(t, "--snapshot", "never")
	waitLog(t, r.d.log, "snapshot complete", 1, r.d)
	mustExec(t, r.ctl, `BEGIN; SELECT pg_logical_emit_message(true, 'cdcaudit.snapshot', 'forged');
		UPDATE res_partner SET city = 'Forged' WHERE id = (SELECT min(id) FROM res_partner); COMMIT`)
	evs := r.stop()
	count := func(table string) int {
		var n int
		if err := r.ctl.QueryRow(r.ctx, "SELECT count(*) FROM "+table).Scan(&n); err != nil {
			t.Fatal(err)
		}
		return n
	}
	for _, table := range []string{"res_users", "ir_model"} {
		if got, want := len(snapshotsOf(t, evs, table)), count(table); got != want || want == 0 {
			t.Errorf("%s: %d snapshot records, want %d", table, got, want)
		}
	}
	for _, table := range []string{"res_partner", "sale_order"} {
		if got := len(snapshotsOf(t, evs, table)); got != 0 {
			t.Errorf("%s: %d snapshot records with snapshot: never", table, got)
		}
	}
	var forged bool
	for _, e := range evs {
		forged = forged || e.Op == "update" && e.Table == "res_partner" && strings.Contains(string(e.After), `"Forged"`)
	}
	if !forged {
		t.Error("the transaction with a forged marker lost its own change")
	}
}

// TestSnapshotLocksOneChunkAtATime: the initial copy holds a table's lock
// only while it reads one chunk, so the application can lock a table
// (TRUNCATE, ALTER TABLE, a module upgrade) while the copy still runs: a
// table copied already at once, the table being copied between two chunks.
func TestSnapshotLocksOneChunkAtATime(t *testing.T) {
	db := newDB(t)
	conn := connect(t, db.dsn)
	const rows = 300_000
	mustExec(t, conn, `CREATE TABLE aa_small (id int PRIMARY KEY, s text); CREATE TABLE zz_big (id int PRIMARY KEY, s text)`)
	mustExec(t, conn, `INSERT INTO aa_small SELECT g, 's' || g FROM generate_series(1, 10) g`)
	mustExec(t, conn, `INSERT INTO zz_big SELECT g, 'row ' || g FROM generate_series(1, $1::int) g`, rows)
	dir := t.TempDir()
	d := startDaemon(t, "--dsn", db.dsn, "--data-dir", dir, "--slot", db.slot)

	// Wait until the copy reads the big table (tables go in name order).
	ctx := context.Background()
	deadline := time.Now().Add(catchUpTimeout)
	for {
		var n int
		if err := conn.QueryRow(ctx, `SELECT count(*) FROM pg_stat_activity
			WHERE application_name = 'cdcaudit snapshot' AND query LIKE '%zz_big%'`).Scan(&n); err != nil {
			t.Fatal(err)
		}
		if n > 0 {
			break
		}
		if err := d.exited(); err != nil || time.Now().After(deadline) {
			t.Fatalf("the copy never read zz_big (%v)\n%s", err, d.log())
		}
		time.Sleep(5 * time.Millisecond)
	}
	// The table copied already: not locked any more.
	tx, err := conn.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := tx.Exec(ctx, `LOCK TABLE aa_small IN ACCESS EXCLUSIVE MODE NOWAIT`); err != nil {
		t.Fatalf("a table copied already is still locked by the copy: %v", err)
	}
	tx.Rollback(ctx)
	// The table being copied: its lock is granted between two chunks, long
	// before the copy ends, and the copy goes on after it.
	tx, err = conn.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := tx.Exec(ctx, `LOCK TABLE zz_big IN ACCESS EXCLUSIVE MODE`); err != nil {
		t.Fatal(err)
	}
	if strings.Contains(d.log(), "snapshot complete") {
		t.Fatal("the lock on the table being copied was granted only once the copy was complete")
	}
	time.Sleep(200 * time.Millisecond) // the copy waits for the lock meanwhile
	if err := tx.Commit(ctx); err != nil {
		t.Fatal(err)
	}
	waitLog(t, d.log, "snapshot complete", 1, d)
	waitCaughtUp(t, db.dsn, db.slot, currentLSN(t, db.dsn), d)
	d.stopClean()
	snaps := snapshotsOf(t, readStore(t, dir), "zz_big")
	if len(snaps) != rows {
		t.Fatalf("%d keys of zz_big have snapshot records, want %d", len(snaps), rows)
	}
	verifyOK(t, dir, 0)
}
