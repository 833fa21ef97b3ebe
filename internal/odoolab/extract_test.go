package main

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestExtractTxs: from a jsonlog, only committed transactions that wrote are
// kept, in commit order, with their recovered now().
func TestExtractTxs(t *testing.T) {
	type L = map[string]any
	line := func(ts, sess string, txid int, msg string) L {
		return L{"timestamp": "2026-12-03 06:30:" + ts + " UTC", "dbname": "erp", "session_id": sess, "txid": txid,
			"error_severity": "LOG", "message": "statement: " + msg, "application_name": "odoo-1"}
	}
	errLine := func(ts, sess string) L {
		return L{"timestamp": "2026-12-03 06:30:" + ts + " UTC", "dbname": "erp", "session_id": sess, "txid": 0,
			"error_severity": "ERROR", "message": "duplicate key value violates unique constraint"}
	}
	psql := line("09.000", "p", 0, "UPDATE res_partner SET name = 'x' WHERE id = 1")
	psql["application_name"] = "psql"
	lines := []L{
		line("01.000", "a", 0, "BEGIN ISOLATION LEVEL REPEATABLE READ"),
		line("01.001", "b", 0, "BEGIN ISOLATION LEVEL REPEATABLE READ"), // read-only, committed
		line("01.002", "a", 0, `INSERT INTO "res_users_log" ("create_date", "write_date") VALUES ('2026-12-03 06:30:00.999876', '2026-12-03 06:30:00.999876')`),
		line("01.003", "b", 0, "SELECT 1"),
		line("01.004", "b", 0, "COMMIT"),
		line("01.005", "c", 0, "BEGIN ISOLATION LEVEL REPEATABLE READ"), // wrote, rolled back
		line("01.006", "c", 0, "INSERT INTO t VALUES (1)"),
		line("01.007", "c", 42, "ROLLBACK"),
		line("01.008", "d", 0, "BEGIN ISOLATION LEVEL REPEATABLE READ"), // recovered error
		line("01.009", "d", 43, "SAVEPOINT s"),
		line("01.010", "d", 43, "INSERT INTO t VALUES (2)"),
		errLine("01.011", "d"),
		line("01.012", "d", 43, "ROLLBACK TO SAVEPOINT s"),
		line("01.013", "d", 43, "COMMIT"),
		line("01.014", "e", 0, "BEGIN ISOLATION LEVEL REPEATABLE READ"), // unrecovered error
		line("01.015", "e", 44, "INSERT INTO t VALUES (3)"),
		errLine("01.016", "e"),
		line("01.017", "e", 44, "COMMIT"),
		line("02.000", "a", 41, "COMMIT"), // commits after d
		psql,
		line("09.500", "q", 0, "SELECT 1"), // autocommit read
	}
	var b strings.Builder
	for _, l := range lines {
		j, _ := json.Marshal(l)
		b.Write(j)
		b.WriteByte('\n')
	}
	path := filepath.Join(t.TempDir(), "pg.json")
	if err := os.WriteFile(path, []byte(b.String()), 0o644); err != nil {
		t.Fatal(err)
	}
	txs, err := extractTxs(path, "erp")
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, c := range txs {
		got = append(got, c.tx.Backend+" "+c.tx.Now.Format("15:04:05.000000")+" "+strings.Join(c.tx.Stmts, "|"))
		if c.tx.Backend == "d" && (len(c.tx.Failed) != 1 || c.tx.Failed[0] != 1) {
			t.Errorf("d: failed %v, want [1]", c.tx.Failed)
		}
	}
	want := []string{
		"d 06:30:01.008000 SAVEPOINT s|INSERT INTO t VALUES (2)|ROLLBACK TO SAVEPOINT s",
		`a 06:30:00.999876 INSERT INTO "res_users_log" ("create_date", "write_date") VALUES ('2026-12-03 06:30:00.999876', '2026-12-03 06:30:00.999876')`,
		"p 06:30:09.000000 UPDATE res_partner SET name = 'x' WHERE id = 1",
	}
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("transactions:\n got %q\nwant %q", got, want)
	}
}
