package e2e

import "testing"

// want is an expected event; its members are the exact stored JSON.
type want struct {
	table, op                   string
	key, before, after, changed string
	flags                       string // "" means []
	tx                          int    // events with the same tx share an xid and commit LSN; 0: a transaction of its own
}

// checkEvents compares the stored events with the expected ones, in order.
func checkEvents(t *testing.T, evs []*event, wants []want) {
	t.Helper()
	for i := range max(len(evs), len(wants)) {
		if i >= len(evs) {
			t.Errorf("event %d missing: want %+v", i+1, wants[i])
			continue
		}
		e := evs[i]
		if i >= len(wants) {
			t.Errorf("unexpected event %d: %s", i+1, e.Raw)
			continue
		}
		w := wants[i]
		if w.flags == "" {
			w.flags = "[]"
		}
		got := want{table: e.Table, op: e.Op, key: string(e.Key), before: string(e.Before), after: string(e.After),
			changed: string(e.Changed), flags: string(e.Flags), tx: w.tx}
		if got != w || string(e.UnchangedToast) != "[]" || e.Schema != "public" {
			t.Errorf("event %d (%s):\n got %+v unchanged_toast %s\nwant %+v", i+1, e.ID, got, e.UnchangedToast, w)
		}
	}
	if t.Failed() {
		return
	}
	// Transactions: events of one tx share xid and commit LSN, with
	// ordinals from 1; events of different ones do not.
	for i, e := range evs {
		same := i > 0 && wants[i].tx != 0 && wants[i].tx == wants[i-1].tx
		if i > 0 && same != (e.XID == evs[i-1].XID && e.commitLSN == evs[i-1].commitLSN) {
			t.Errorf("event %d (%s, xid %d) and the one before (%s, xid %d): same transaction should be %v", i+1, e.ID, e.XID, evs[i-1].ID, evs[i-1].XID, same)
		}
		wantOrd := uint32(1)
		if same {
			wantOrd = evs[i-1].ordinal + 1
		}
		if e.ordinal != wantOrd {
			t.Errorf("event %d: id %s, want ordinal %d", i+1, e.ID, wantOrd)
		}
	}
}

// TestSchemaChangeMidStream: columns are added, dropped, renamed and
// retyped while the stream runs (once inside a transaction); every event
// carries exactly the columns and values the table had at that moment.
func TestSchemaChangeMidStream(t *testing.T) {
	db := newDB(t)
	conn := connect(t, db.dsn)
	mustExec(t, conn, `CREATE TABLE s (id int PRIMARY KEY, a int, b text); ALTER TABLE s REPLICA IDENTITY FULL`)
	dataDir := t.TempDir()
	p := startPipeline(t, db, dataDir)
	waitSlotActive(t, db.dsn, db.slot, 0, p)

	for _, sql := range []string{
		`INSERT INTO s VALUES (1, 10, 'x')`,
		`INSERT INTO s VALUES (2, 20, 'y')`,
		`ALTER TABLE s ADD COLUMN c text DEFAULT 'dflt'`,
		`INSERT INTO s VALUES (3, 30, 'z', 'cc')`,
		`UPDATE s SET a = 11 WHERE id = 1`,
		`ALTER TABLE s DROP COLUMN b`,
		`INSERT INTO s VALUES (4, 40, 'dd')`,
		`UPDATE s SET c = 'changed' WHERE id = 3`,
		`ALTER TABLE s RENAME COLUMN a TO a2`,
		`INSERT INTO s VALUES (5, 50, 'e')`,
		`DELETE FROM s WHERE id = 2`,
		`ALTER TABLE s ALTER COLUMN a2 TYPE bigint, ALTER COLUMN c TYPE varchar(20)`,
		`INSERT INTO s VALUES (6, 9000000000000000001, 'f')`,
		`UPDATE s SET a2 = a2 * 1000000000 WHERE id = 5`,
		// DDL inside a transaction, between its changes.
		`BEGIN;
		 INSERT INTO s VALUES (7, 70, 'g');
		 ALTER TABLE s ADD COLUMN d jsonb;
		 INSERT INTO s VALUES (8, 80, 'h', '{"k":[1]}');
		 UPDATE s SET d = '[]' WHERE id = 7;
		 COMMIT`,
		// A dropped column's name comes back with another type.
		`ALTER TABLE s DROP COLUMN c`,
		`ALTER TABLE s ADD COLUMN c int`,
		`INSERT INTO s VALUES (9, 90, NULL, 99)`,
		`DELETE FROM s WHERE id = 1`,
		`UPDATE s SET c = 1 WHERE id = 9`,
	} {
		mustExec(t, conn, sql)
	}
	waitCaughtUp(t, db.dsn, db.slot, currentLSN(t, db.dsn), p)
	p.stop(t)

	checkEvents(t, readStore(t, dataDir), []want{
		{table: "s", op: "insert", key: `{"id":1}`, before: `null`, after: `{"id":1,"a":10,"b":"x"}`, changed: `["id","a","b"]`},
		{table: "s", op: "insert", key: `{"id":2}`, before: `null`, after: `{"id":2,"a":20,"b":"y"}`, changed: `["id","a","b"]`},
		{table: "s", op: "insert", key: `{"id":3}`, before: `null`, after: `{"id":3,"a":30,"b":"z","c":"cc"}`, changed: `["id","a","b","c"]`},
		// Row 1 predates c: its old image gets c's default (a "missing" attribute).
		{table: "s", op: "update", key: `{"id":1}`, before: `{"id":1,"a":10,"b":"x","c":"dflt"}`, after: `{"id":1,"a":11,"b":"x","c":"dflt"}`, changed: `["a"]`},
		{table: "s", op: "insert", key: `{"id":4}`, before: `null`, after: `{"id":4,"a":40,"c":"dd"}`, changed: `["id","a","c"]`},
		{table: "s", op: "update", key: `{"id":3}`, before: `{"id":3,"a":30,"c":"cc"}`, after: `{"id":3,"a":30,"c":"changed"}`, changed: `["c"]`},
		{table: "s", op: "insert", key: `{"id":5}`, before: `null`, after: `{"id":5,"a2":50,"c":"e"}`, changed: `["id","a2","c"]`},
		{table: "s", op: "delete", key: `{"id":2}`, before: `{"id":2,"a2":20,"c":"dflt"}`, after: `null`, changed: `[]`},
		{table: "s", op: "insert", key: `{"id":6}`, before: `null`, after: `{"id":6,"a2":9000000000000000001,"c":"f"}`, changed: `["id","a2","c"]`},
		{table: "s", op: "update", key: `{"id":5}`, before: `{"id":5,"a2":50,"c":"e"}`, after: `{"id":5,"a2":50000000000,"c":"e"}`, changed: `["a2"]`},
		{tx: 1, table: "s", op: "insert", key: `{"id":7}`, before: `null`, after: `{"id":7,"a2":70,"c":"g"}`, changed: `["id","a2","c"]`},
		{tx: 1, table: "s", op: "insert", key: `{"id":8}`, before: `null`, after: `{"id":8,"a2":80,"c":"h","d":{"k": [1]}}`, changed: `["id","a2","c","d"]`},
		{tx: 1, table: "s", op: "update", key: `{"id":7}`, before: `{"id":7,"a2":70,"c":"g","d":null}`, after: `{"id":7,"a2":70,"c":"g","d":[]}`, changed: `["d"]`},
		{table: "s", op: "insert", key: `{"id":9}`, before: `null`, after: `{"id":9,"a2":90,"d":null,"c":99}`, changed: `["id","a2","d","c"]`},
		{table: "s", op: "delete", key: `{"id":1}`, before: `{"id":1,"a2":11,"d":null,"c":null}`, after: `null`, changed: `[]`},
		{table: "s", op: "update", key: `{"id":9}`, before: `{"id":9,"a2":90,"d":null,"c":99}`, after: `{"id":9,"a2":90,"d":null,"c":1}`, changed: `["c"]`},
	})
}

// TestTruncate: TRUNCATE of one table, of two in one statement, with
// CASCADE and with RESTART IDENTITY, and inside a transaction with other
// changes: one event per table, op truncate, key/before/after null, the
// options as flags.
func TestTruncate(t *testing.T) {
	db := newDB(t)
	conn := connect(t, db.dsn)
	mustExec(t, conn, `
		CREATE TABLE t1 (id serial PRIMARY KEY, v text);
		CREATE TABLE t2 (id int PRIMARY KEY);
		CREATE TABLE p (id serial PRIMARY KEY);
		CREATE TABLE c (id int PRIMARY KEY, p_id int REFERENCES p)`)
	dataDir := t.TempDir()
	p := startPipeline(t, db, dataDir)
	waitSlotActive(t, db.dsn, db.slot, 0, p)

	for _, sql := range []string{
		`INSERT INTO t1 (v) VALUES ('a')`,
		`TRUNCATE t1`,
		`INSERT INTO t1 (v) VALUES ('b')`,
		`INSERT INTO t2 VALUES (1)`,
		`TRUNCATE t1, t2`,
		`INSERT INTO p DEFAULT VALUES`,
		`INSERT INTO c VALUES (1, 1)`,
		`TRUNCATE p CASCADE`,
		`INSERT INTO t1 (v) VALUES ('c')`,
		`TRUNCATE t1 RESTART IDENTITY`,
		`INSERT INTO t1 (v) VALUES ('d')`,
		`TRUNCATE p, c RESTART IDENTITY CASCADE`,
		`BEGIN; INSERT INTO t2 VALUES (5); TRUNCATE t2; INSERT INTO t2 VALUES (6); COMMIT`,
	} {
		mustExec(t, conn, sql)
	}
	waitCaughtUp(t, db.dsn, db.slot, currentLSN(t, db.dsn), p)
	p.stop(t)
	evs := readStore(t, dataDir)

	// Which table a CASCADE reaches first is the server's business: put
	// the pairs in table order.
	sortPair := func(i int) {
		if i+1 < len(evs) && evs[i].XID == evs[i+1].XID && evs[i].Table > evs[i+1].Table {
			evs[i], evs[i+1] = evs[i+1], evs[i]
			evs[i].ordinal, evs[i+1].ordinal = evs[i+1].ordinal, evs[i].ordinal
		}
	}
	sortPair(8)
	sortPair(13)

	tr := func(table, flags string, tx int) want {
		return want{table: table, op: "truncate", key: "null", before: "null", after: "null", changed: "[]", flags: flags, tx: tx}
	}
	ins := func(table, key, after, changed string, tx int) want {
		return want{table: table, op: "insert", key: key, before: "null", after: after, changed: changed, tx: tx}
	}
	checkEvents(t, evs, []want{
		ins("t1", `{"id":1}`, `{"id":1,"v":"a"}`, `["id","v"]`, 0),
		tr("t1", "", 0),
		ins("t1", `{"id":2}`, `{"id":2,"v":"b"}`, `["id","v"]`, 0),
		ins("t2", `{"id":1}`, `{"id":1}`, `["id"]`, 0),
		tr("t1", "", 1), tr("t2", "", 1),
		ins("p", `{"id":1}`, `{"id":1}`, `["id"]`, 0),
		ins("c", `{"id":1}`, `{"id":1,"p_id":1}`, `["id","p_id"]`, 0),
		tr("c", `["truncate_cascade"]`, 2), tr("p", `["truncate_cascade"]`, 2),
		ins("t1", `{"id":3}`, `{"id":3,"v":"c"}`, `["id","v"]`, 0),
		tr("t1", `["truncate_restart_identity"]`, 0),
		// RESTART IDENTITY did restart the sequence.
		ins("t1", `{"id":1}`, `{"id":1,"v":"d"}`, `["id","v"]`, 0),
		tr("c", `["truncate_cascade","truncate_restart_identity"]`, 3), tr("p", `["truncate_cascade","truncate_restart_identity"]`, 3),
		ins("t2", `{"id":5}`, `{"id":5}`, `["id"]`, 4),
		tr("t2", "", 4),
		ins("t2", `{"id":6}`, `{"id":6}`, `["id"]`, 4),
	})
}
