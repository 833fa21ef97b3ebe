package e2e

import (
	"bufio"
	"compress/gzip"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5"

	"github.com/cdcaudit/cdcaudit/internal/pgtest"
)

// The recorded Odoo: testdata/odoo18/erp.sql.gz is a vanilla Odoo 18.0
// database (base, contacts, sale_management) as it was before the
// recording, and testdata/odoo18/traces/*.jsonl(.gz) the transactions that
// Odoo (and psql) then committed, statements in commit order. Replaying
// them gives cdcaudit the WAL a real Odoo writes, with Odoo's default
// REPLICA IDENTITY DEFAULT.

// recordedOdooDir returns the recording's directory ($ODOO18_RECORDING_DIR,
// else the repository's testdata/odoo18); the test is skipped without it.
func recordedOdooDir(t *testing.T) string {
	dir := os.Getenv("ODOO18_RECORDING_DIR")
	if dir == "" {
		dir = filepath.Join("..", "..", "testdata", "odoo18")
	}
	if _, err := os.Stat(filepath.Join(dir, "erp.sql.gz")); err != nil {
		t.Skipf("no recorded Odoo 18 database in %s: %v", dir, err)
	}
	return dir
}

// traceTx is one recorded transaction.
type traceTx struct {
	Scenario string
	App      string   `json:"app"`       // "odoo-<pid>", "psql"
	Now      string   `json:"now"`       // its now(), as Odoo wrote it into its statements
	NowExact bool     `json:"now_exact"` // Now is exact (Odoo read it with SELECT now())
	Stmts    []string `json:"stmts"`
}

// readTraces reads every scenario, in recording order.
func readTraces(t *testing.T, dir string) []traceTx {
	t.Helper()
	files, _ := filepath.Glob(filepath.Join(dir, "traces", "*.jsonl*"))
	type scenario struct {
		seq int
		txs []traceTx
	}
	var all []scenario
	for _, f := range files {
		fh, err := os.Open(f)
		if err != nil {
			t.Fatal(err)
		}
		var rd io.Reader = fh
		if strings.HasSuffix(f, ".gz") {
			if rd, err = gzip.NewReader(fh); err != nil {
				t.Fatalf("%s: %v", f, err)
			}
		}
		sc := bufio.NewScanner(rd)
		sc.Buffer(nil, 64<<20)
		var head struct {
			Scenario string `json:"scenario"`
			Seq      int    `json:"seq"`
		}
		s := scenario{}
		for n := 0; sc.Scan(); n++ {
			if n == 0 {
				if err := json.Unmarshal(sc.Bytes(), &head); err != nil || head.Scenario == "" {
					t.Fatalf("%s: header: %v", f, err)
				}
				s.seq = head.Seq
				continue
			}
			var tx traceTx
			if err := json.Unmarshal(sc.Bytes(), &tx); err != nil {
				t.Fatalf("%s line %d: %v", f, n+1, err)
			}
			tx.Scenario = head.Scenario
			s.txs = append(s.txs, tx)
		}
		fh.Close()
		if err := sc.Err(); err != nil {
			t.Fatalf("%s: %v", f, err)
		}
		all = append(all, s)
	}
	sort.Slice(all, func(i, j int) bool { return all[i].seq < all[j].seq })
	var txs []traceTx
	for _, s := range all {
		txs = append(txs, s.txs...)
	}
	if len(txs) == 0 {
		t.Skipf("no traces in %s/traces", dir)
	}
	return txs
}

// restoreDump loads a plain pg_dump (gzipped) with psql.
func restoreDump(t *testing.T, dsn, file string) {
	t.Helper()
	bin, err := pgtest.BinDir()
	if err != nil {
		t.Skip(err)
	}
	f, err := os.Open(file)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	z, err := gzip.NewReader(f)
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(filepath.Join(bin, "psql"), "-X", "-q", "-v", "ON_ERROR_STOP=1", "-d", dsn)
	cmd.Stdin = z
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("restoring %s: %v\n%s", file, err, out)
	}
}

// replay runs one recorded transaction and returns its xid (0 when it
// could not be replayed). Odoo writes its transaction's now() into its
// statements as a literal: it is replaced by the replay's own, so that
// write_date relates to the commit as it did when it was recorded.
func replay(ctx context.Context, conn *pgx.Conn, tx traceTx) (uint32, error) {
	stmts := slices.DeleteFunc(slices.Clone(tx.Stmts), func(s string) bool {
		switch strings.ToUpper(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(s), ";"))) {
		case "BEGIN", "COMMIT", "ROLLBACK":
			return true
		}
		return false
	})
	db, err := conn.Begin(ctx)
	if err != nil {
		return 0, err
	}
	defer db.Rollback(context.Background())
	var xid int64
	var now string
	if err := db.QueryRow(ctx, "SELECT txid_current(), to_char(now() AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI:SS.US')").Scan(&xid, &now); err != nil {
		return 0, err
	}
	for i := 0; i < len(stmts); i++ {
		s := stmts[i]
		if tx.NowExact && tx.Now != "" {
			// As PostgreSQL prints it, with all six fractional digits as
			// Python does, and as psycopg2 adapts a datetime ('…T…'::timestamp).
			for _, rec := range []string{tx.Now, sixDigits(tx.Now)} {
				s = strings.ReplaceAll(s, "'"+rec+"'", "'"+now+"'")
				s = strings.ReplaceAll(s, "'"+strings.Replace(rec, " ", "T", 1)+"'", "'"+strings.Replace(now, " ", "T", 1)+"'")
			}
		}
		if _, err := db.Exec(ctx, s); err != nil {
			// Odoo recovered from this error with ROLLBACK TO SAVEPOINT.
			j := slices.IndexFunc(stmts[i+1:], func(s string) bool {
				return strings.HasPrefix(strings.ToUpper(strings.TrimSpace(s)), "ROLLBACK TO SAVEPOINT")
			})
			if j < 0 {
				return 0, fmt.Errorf("statement %d: %w", i+1, err)
			}
			i += j
		}
	}
	return uint32(xid), db.Commit(ctx)
}

// sixDigits pads a timestamp's fraction to six digits.
func sixDigits(ts string) string {
	if i := strings.LastIndexByte(ts, '.'); i > 0 && len(ts)-i-1 < 6 {
		return ts + strings.Repeat("0", 6-(len(ts)-i-1))
	}
	return ts
}

// TestAttributionRecordedOdoo replays what a real Odoo 18 committed —
// logins, edits, deletes, password changes, a module installation — and a
// DBA's psql edits, then counts what cdcaudit says about Odoo's own writes:
// none of them may be flagged orm_bypass (false positives), and no row_user
// may name anyone but the write_uid the ORM stamped in that transaction.
// The psql edits must be flagged and blamed on no one.
func TestAttributionRecordedOdoo(t *testing.T) {
	dir := recordedOdooDir(t)
	txs := readTraces(t, dir)
	r := startOdooOn(t, true, func(db testDB, _ *pgx.Conn) { restoreDump(t, db.dsn, filepath.Join(dir, "erp.sql.gz")) })
	cfg, err := pgx.ParseConfig(r.db.dsn)
	if err != nil {
		t.Fatal(err)
	}
	cfg.DefaultQueryExecMode = pgx.QueryExecModeSimpleProtocol
	conn, err := pgx.ConnectConfig(r.ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(context.Background())
	byXID := map[uint32]*traceTx{}
	failed := 0
	for i := range txs {
		xid, err := replay(r.ctx, conn, txs[i])
		if err != nil {
			failed++
			t.Logf("%s tx %d (%s) not replayed: %v", txs[i].Scenario, i, txs[i].App, err)
			continue
		}
		byXID[xid] = &txs[i]
	}
	evs := r.stop()
	if failed > 0 {
		t.Errorf("%d of %d recorded transactions could not be replayed", failed, len(txs))
	}

	type counts struct{ events, updates, rowUser, undecided, raw, bypass, migration int }
	per := map[string]*counts{}
	for _, e := range evs {
		tx := byXID[e.XID]
		if tx == nil {
			continue
		}
		key := tx.Scenario + " " + strings.TrimRightFunc(tx.App, func(r rune) bool { return r == '-' || r >= '0' && r <= '9' })
		c := per[key]
		if c == nil {
			c = &counts{}
			per[key] = c
		}
		c.events++
		a := actorOf(t, e)
		if e.Op == "update" {
			c.updates++
			switch {
			case a.UserVia == "row_user":
				c.rowUser++
				if w := value(e.AfterRow, "write_uid"); a.UserID == nil || fmt.Sprint(*a.UserID) != w {
					t.Errorf("%s: row_user %v, but its write_uid is %s", describe(e), deref(a.UserID), w)
				}
			case a.UserVia == "none" && a.Candidates != nil && len(a.Candidates.Users) == 1 && !hasFlag(e, "orm_bypass"):
				c.undecided++
			}
		}
		if hasFlag(e, "orm_bypass") {
			c.bypass++
			if tx.App != "psql" {
				t.Errorf("false positive: %s (%s, %s): flagged orm_bypass, after %s", describe(e), tx.Scenario, tx.App, e.After)
			}
		}
		if hasFlag(e, "schema_migration") {
			c.migration++
		}
		if tx.App == "psql" && e.Op == "update" {
			c.raw++
			if !hasFlag(e, "orm_bypass") || a.UserID != nil {
				t.Errorf("psql edit %s: flags %v, actor %s: want orm_bypass and no user", describe(e), e.FlagList, e.Actor)
			}
		}
	}
	for _, m := range listSessions(t, r.dataDir) {
		login, _ := field(m, "login")
		state, _ := field(m, "state")
		reason, _ := field(m, "end_reason")
		by, _ := field(m, "ended_by")
		inferred, _ := field(m, "end_inferred")
		t.Logf("session %-6s %-6s %-16s by %-2s end_inferred %s", login, state, reason, by, inferred)
		if reason == "password_changed" && by == "" {
			t.Errorf("session of %s ended by a password change, by no one: %v", login, m)
		}
	}
	keys := make([]string, 0, len(per))
	for k := range per {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		c := per[k]
		t.Logf("%-22s events %4d, updates %4d: row_user %4d, undecided %3d, orm_bypass %3d, schema_migration %3d",
			k, c.events, c.updates, c.rowUser, c.undecided, c.bypass, c.migration)
	}
}
