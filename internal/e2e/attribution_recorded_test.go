package e2e

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5"

	"github.com/cdcaudit/cdcaudit/internal/odootrace"
	"github.com/cdcaudit/cdcaudit/internal/pgtest"
	"github.com/cdcaudit/cdcaudit/sessions"
)

// The recorded Odoo: testdata/odoo18/erp.sql.gz is a vanilla Odoo 18.0
// database (base, contacts, sale_management) as it was before the
// recording, and testdata/odoo18/traces the transactions that Odoo (and
// psql) then committed. Replaying them with package odootrace gives
// cdcaudit the WAL a real Odoo writes, with Odoo's default REPLICA IDENTITY
// DEFAULT.
const recordingDir = "../../testdata/odoo18"

// recordedTx is a recorded transaction, as replayed.
type recordedTx struct {
	scenario string
	*odootrace.Tx
}

// app is the transaction's client without its pid: "odoo" or "psql".
func (tx recordedTx) app() string {
	return strings.TrimRightFunc(tx.App, func(r rune) bool { return r == '-' || r >= '0' && r <= '9' })
}

// recording is the replayed recording: its transactions by replay xid, in
// replay order.
type recording struct {
	byXID map[uint32]recordedTx
	xids  []uint32
}

// restoreRecording loads erp.sql.gz into the database at dsn.
func restoreRecording(t *testing.T, dsn string) {
	t.Helper()
	bin, err := pgtest.BinDir()
	if err != nil {
		t.Fatal(err)
	}
	if err := odootrace.Restore(context.Background(), bin, dsn, filepath.Join(recordingDir, "erp.sql.gz")); err != nil {
		t.Fatal(err)
	}
}

// replayRecording replays every trace onto the database at dsn.
func replayRecording(t *testing.T, dsn string) *recording {
	t.Helper()
	traces, err := odootrace.LoadDir(filepath.Join(recordingDir, "traces"))
	if err != nil {
		t.Fatal(err)
	}
	if len(traces) == 0 {
		t.Fatalf("no traces in %s/traces", recordingDir)
	}
	conn := connect(t, dsn)
	rec := &recording{byXID: map[uint32]recordedTx{}}
	for _, tr := range traces {
		xids, err := odootrace.Replay(context.Background(), conn, tr)
		if err != nil {
			t.Fatal(err)
		}
		for i, x := range xids {
			rec.byXID[x] = recordedTx{tr.Header.Scenario, &tr.Txs[i]}
			rec.xids = append(rec.xids, x)
		}
	}
	return rec
}

// find returns the xids of the transactions of scenario (any when "") one
// of whose statements contains stmt, in replay order.
func (rec *recording) find(scenario, stmt string) []uint32 {
	var out []uint32
	for _, x := range rec.xids {
		tx := rec.byXID[x]
		if scenario == "" || tx.scenario == scenario {
			if slices.ContainsFunc(tx.Stmts, func(s string) bool { return strings.Contains(s, stmt) }) {
				out = append(out, x)
			}
		}
	}
	return out
}

// passwordChanges reads odoo.log's "Password change for 'bob' (#7) by
// 'admin' (#2)" lines: who changed whose password, in order.
func passwordChanges(t *testing.T) (of, by []int64) {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(recordingDir, "odoo.log"))
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range regexp.MustCompile(`Password change for '[^']*' \(#(\d+)\) by '[^']*' \(#(\d+)\)`).FindAllStringSubmatch(string(b), -1) {
		o, _ := strconv.ParseInt(m[1], 10, 64)
		u, _ := strconv.ParseInt(m[2], 10, 64)
		of, by = append(of, o), append(by, u)
	}
	return of, by
}

// TestAttributionRecordedOdoo replays what a real Odoo 18 committed —
// logins, edits, deletes, password changes, a module installation — and a
// DBA's psql edits, with Odoo's default replica identity, then checks what
// cdcaudit says: none of Odoo's own writes is flagged orm_bypass; a
// row_user names only the write_uid the ORM stamped; the psql edits are
// flagged and blamed on no one; each password change names the user Odoo
// logged as making it; the contact delete names no one and lists
// candidates; carol's save from her iPhone while her desktop session is
// open never names the desktop session.
func TestAttributionRecordedOdoo(t *testing.T) {
	r := startOdooOn(t, true, func(db testDB, _ *pgx.Conn) { restoreRecording(t, db.dsn) })
	var identities []string
	rows, err := r.ctl.Query(r.ctx, `SELECT DISTINCT relreplident::text FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = 'public' AND c.relkind = 'r'`)
	if err == nil {
		identities, err = pgx.CollectRows(rows, pgx.RowTo[string])
	}
	if err != nil || !slices.Equal(identities, []string{"d"}) {
		t.Fatalf("replica identities of the restored tables: %v (%v), want Odoo's default only", identities, err)
	}
	rec := replayRecording(t, r.db.dsn)
	evs := r.stop()

	users := map[string]int64{}
	for _, login := range []string{"admin", "alice", "bob", "carol"} {
		var id int64
		if err := r.ctl.QueryRow(r.ctx, `SELECT id FROM res_users WHERE login = $1`, login).Scan(&id); err != nil {
			t.Fatalf("user %s: %v", login, err)
		}
		users[login] = id
	}

	type counts struct{ events, updates, rowUser, undecided, raw, bypass, migration int }
	per := map[string]*counts{}
	for _, e := range evs {
		tx, ok := rec.byXID[e.XID]
		if !ok {
			continue
		}
		key := tx.scenario + " " + tx.app()
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
			if tx.app() != "psql" {
				t.Errorf("false positive: %s (%s, %s): flagged orm_bypass, after %s", describe(e), tx.scenario, tx.App, e.After)
			}
		}
		if hasFlag(e, "schema_migration") {
			c.migration++
		}
		if tx.app() == "psql" {
			if a.UserID != nil {
				t.Errorf("psql %s %s: actor %s: a psql edit is blamed on no one", e.Op, describe(e), e.Actor)
			}
			if e.Op == "update" {
				c.raw++
				if !hasFlag(e, "orm_bypass") {
					t.Errorf("psql edit %s: flags %v, want orm_bypass", describe(e), e.FlagList)
				}
			}
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
	for _, k := range []string{"logins odoo", "edits odoo", "passwords odoo", "sessions odoo", "module odoo", "rawsql psql"} {
		if per[k] == nil || per[k].events == 0 {
			t.Errorf("%s: no events captured", k)
		}
	}
	if c := per["rawsql psql"]; c == nil || c.raw != 2 {
		t.Errorf("psql's edits: %+v, want its 2 updates captured", c)
	}

	// Each password change names the user Odoo logged as making it, in
	// every event of its transaction that names anyone (the raw UPDATE's
	// after-image still carries the row's old write_uid).
	of, by := passwordChanges(t)
	changes := rec.find("passwords", "UPDATE res_users SET password=")
	if len(of) != 2 || len(changes) != len(of) {
		t.Fatalf("password changes: %d in odoo.log, %d in the passwords trace, want 2 of each", len(of), len(changes))
	}
	for i, xid := range changes {
		why := fmt.Sprintf("the change of user %d's password by user %d", of[i], by[i])
		var named bool
		for _, e := range txEvents(evs, xid) {
			a := actorOf(t, e)
			if a.UserID != nil && *a.UserID != by[i] {
				t.Errorf("%s: %s names user %d: %s", why, describe(e), *a.UserID, e.Actor)
			}
			named = named || a.UserID != nil
		}
		if !named {
			t.Errorf("%s: no event of its transaction %d names the user", why, xid)
		}
		got := pick(evs, xid, "res_users", "update")
		if len(got) == 0 {
			t.Fatalf("%s: no update of res_users in transaction %d", why, xid)
		}
		if a := actorOf(t, got[len(got)-1]); a.UserID == nil || *a.UserID != by[i] {
			t.Errorf("%s: the ORM's stamp of the user record %s names %v", why, describe(got[len(got)-1]), deref(a.UserID))
		}
	}
	for _, m := range listSessions(t, r.dataDir) {
		login, _ := field(m, "login")
		state, _ := field(m, "state")
		reason, _ := field(m, "end_reason")
		end, _ := field(m, "ended_by")
		inferred, _ := field(m, "end_inferred")
		t.Logf("session %-6s %-6s %-16s by %-2s end_inferred %s", login, state, reason, end, inferred)
		if reason == "password_changed" {
			if i := slices.Index(of, users[login]); i < 0 || end != fmt.Sprint(by[i]) {
				t.Errorf("session of %s ended by a password change, by %q: want the user who changed it (odoo.log: %v by %v)", login, end, of, by)
			}
		}
	}

	// The contact delete: nothing in its transaction names the user, so no
	// one is named and the users then active are candidates.
	deletes := rec.find("edits", `DELETE FROM "res_partner"`)
	if len(deletes) != 1 {
		t.Fatalf("contact deletes in the edits trace: %d, want 1", len(deletes))
	}
	for i, e := range txEvents(evs, deletes[0]) {
		a := actorOf(t, e)
		if i == 0 {
			t.Logf("the contact delete: actor %s", e.Actor)
		}
		if a.UserID != nil || a.UserVia != "none" {
			t.Errorf("the contact delete: %s: actor %s, want no user", describe(e), e.Actor)
		}
		if !slices.Contains(a.Candidates.userIDs(), users["carol"]) {
			t.Errorf("the contact delete: %s: candidates %v lack carol (%d), who was active", describe(e), a.Candidates.userIDs(), users["carol"])
		}
	}
	if len(pick(evs, deletes[0], "res_partner", "delete")) != 1 {
		t.Errorf("the contact delete: no delete of res_partner captured")
	}

	// carol saves a contact from her iPhone while her desktop session is
	// open: the session is the iPhone's (decided in the transaction) or
	// ambiguous with both listed — never the desktop's.
	var iphone, desktop []string
	devs, err := r.ctl.Query(r.ctx, `SELECT DISTINCT session_identifier, platform FROM res_device_log WHERE user_id = $1`, users["carol"])
	if err != nil {
		t.Fatal(err)
	}
	for devs.Next() {
		var ident, platform string
		if err := devs.Scan(&ident, &platform); err != nil {
			t.Fatal(err)
		}
		if platform == "iphone" {
			iphone = append(iphone, sessions.Pseudonym(ident))
		} else {
			desktop = append(desktop, sessions.Pseudonym(ident))
		}
	}
	if err := devs.Err(); err != nil || len(iphone) != 1 || len(desktop) != 1 {
		t.Fatalf("carol's sessions: iPhone %v, desktop %v (%v), want one of each", iphone, desktop, err)
	}
	saves := rec.find("edits", `UPDATE "res_partner"`)
	save := saves[len(saves)-1]
	e := one(t, evs, save, "res_partner", "update")
	a := actorOf(t, e)
	t.Logf("carol's save from her iPhone (iPhone %s, desktop %s): actor %s", iphone[0], desktop[0], e.Actor)
	if a.UserID == nil || *a.UserID != users["carol"] {
		t.Errorf("carol's save from her iPhone: %s: actor %s, want carol (%d)", describe(e), e.Actor, users["carol"])
	}
	switch {
	case a.SessionID != nil:
		if *a.SessionID != iphone[0] || a.SessionVia != "same_tx" {
			t.Errorf("carol's save from her iPhone: session %s via %s, want her iPhone's %s (desktop %s)", *a.SessionID, a.SessionVia, iphone[0], desktop[0])
		}
	case a.SessionVia != "ambiguous" || a.Candidates == nil ||
		!slices.Contains(a.Candidates.Sessions, iphone[0]) || !slices.Contains(a.Candidates.Sessions, desktop[0]):
		t.Errorf("carol's save from her iPhone: actor %s: want her iPhone's session %s, or ambiguous with it and her desktop's %s as candidates", e.Actor, iphone[0], desktop[0])
	}
}
