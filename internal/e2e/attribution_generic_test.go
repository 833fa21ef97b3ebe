package e2e

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/cdcaudit/cdcaudit/sessions"
	"github.com/jackc/pgx/v5"
)

// The generic profile: an application cdcaudit knows nothing of — a small
// invoicing SaaS, not Odoo — audited by configuration alone. Its schema,
// its profile file and its workload are the application's own; nothing of
// the Odoo fixture is used.

const genericSchema = `
CREATE TABLE app_user (
	id            serial PRIMARY KEY,
	email         text NOT NULL UNIQUE,
	password_hash text NOT NULL,
	full_name     text,
	last_login_at timestamptz,
	created_at    timestamptz NOT NULL DEFAULT now()
);
CREATE TABLE http_sessions (
	sid        text PRIMARY KEY,
	user_id    int REFERENCES app_user(id),
	ip         inet,
	user_agent text,
	created_at timestamptz NOT NULL,
	last_seen  timestamptz NOT NULL,
	ended_at   timestamptz
);
CREATE TABLE invoice (
	id         serial PRIMARY KEY,
	number     text NOT NULL UNIQUE,
	customer   text NOT NULL,
	amount     numeric(12,2) NOT NULL,
	status     text NOT NULL DEFAULT 'draft',
	view_count int NOT NULL DEFAULT 0,
	created_by int REFERENCES app_user(id),
	updated_by int REFERENCES app_user(id),
	created_at timestamptz NOT NULL,
	updated_at timestamptz NOT NULL
);
ALTER TABLE app_user REPLICA IDENTITY FULL;
ALTER TABLE http_sessions REPLICA IDENTITY FULL;
ALTER TABLE invoice REPLICA IDENTITY FULL;
`

// genericProfile maps the application: written by an operator, read by
// the daemon through --config (profile: generic, profile_file: …).
const genericProfile = `name: shop
users:
  table: public.app_user
  id: id
  login: email
  password: password_hash
sessions:
  - table: public.http_sessions
    kind: session
    id: sid
    user: user_id
    ip: ip
    user_agent: user_agent
    created: created_at
    last_seen: last_seen
    ended: ended_at
columns:
  created_by: created_by
  updated_by: updated_by
  updated_at: updated_at
# No secrets listed: the session id (sessions[].id) and the users' password
# column are secrets by the profile's own mapping (profile.SecretRules).
secrets: []
raw_writes:
  # the application's own page-view counter, bumped with raw SQL
  - {table: public.invoice, column: view_count}
`

// Real browsers' User-Agent headers.
const (
	genChromeWindows = "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0.0.0 Safari/537.36"
	genSafariIPhone  = "Mozilla/5.0 (iPhone; CPU iPhone OS 17_5 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.5 Mobile/15E148 Safari/604.1"
)

// genericRig is the application's database, its daemon, and two
// connections: the application's and an operator's psql.
type genericRig struct {
	t       *testing.T
	ctx     context.Context
	db      testDB
	dataDir string
	d       *daemon
	app     *pgx.Conn // the application server
	psql    *pgx.Conn // someone with psql
}

// tx runs fn in a transaction on conn, commits, and returns its xid.
func (r *genericRig) tx(conn *pgx.Conn, fn func(tx pgx.Tx) error) uint32 {
	r.t.Helper()
	tx, err := conn.Begin(r.ctx)
	if err != nil {
		r.t.Fatal(err)
	}
	defer tx.Rollback(r.ctx)
	if err := fn(tx); err != nil {
		r.t.Fatal(err)
	}
	var xid int64
	if err := tx.QueryRow(r.ctx, "SELECT txid_current()").Scan(&xid); err != nil {
		r.t.Fatal(err)
	}
	if err := tx.Commit(r.ctx); err != nil {
		r.t.Fatal(err)
	}
	return uint32(xid)
}

func genExec(ctx context.Context, tx pgx.Tx, sql string, args ...any) error {
	tag, err := tx.Exec(ctx, sql, args...)
	if err != nil {
		return fmt.Errorf("%s: %w", abbrev(sql), err)
	}
	if tag.RowsAffected() != 1 {
		return fmt.Errorf("%s: %d rows, want 1", abbrev(sql), tag.RowsAffected())
	}
	return nil
}

func (r *genericRig) catchUp() {
	r.t.Helper()
	waitCaughtUp(r.t, r.db.dsn, r.db.slot, currentLSN(r.t, r.db.dsn), r.d)
}

// genWho is an expected actor. user 0: none; session "": none.
type genWho struct {
	user       int64
	login      string
	userVia    string
	session    string
	sessionVia string
}

// checkGenActor checks every member of an event's actor.
func checkGenActor(t *testing.T, e *event, w genWho, why string) {
	t.Helper()
	a := actorOf(t, e)
	var problems []string
	if w.user == 0 {
		if a.UserID != nil || a.Login != nil || a.UserVia != "none" {
			problems = append(problems, fmt.Sprintf("user %v (%v) via %q, want none", deref(a.UserID), deref(a.Login), a.UserVia))
		}
	} else {
		if a.UserID == nil || *a.UserID != w.user {
			problems = append(problems, fmt.Sprintf("user_id %v, want %d", deref(a.UserID), w.user))
		}
		if a.Login == nil || *a.Login != w.login {
			problems = append(problems, fmt.Sprintf("login %v, want %q", deref(a.Login), w.login))
		}
		if a.UserVia != w.userVia {
			problems = append(problems, fmt.Sprintf("user_via %q, want %q", a.UserVia, w.userVia))
		}
	}
	if w.session == "" {
		if a.SessionID != nil || a.SessionVia != "none" {
			problems = append(problems, fmt.Sprintf("session %v via %q, want none", deref(a.SessionID), a.SessionVia))
		}
	} else {
		if a.SessionID == nil || *a.SessionID != w.session {
			problems = append(problems, fmt.Sprintf("session_id %v, want %s", deref(a.SessionID), w.session))
		}
		if a.SessionVia != w.sessionVia {
			problems = append(problems, fmt.Sprintf("session_via %q, want %q", a.SessionVia, w.sessionVia))
		}
	}
	if len(problems) > 0 {
		t.Errorf("%s: %s\n  %s\n  got actor %s", why, describe(e), strings.Join(problems, "; "), e.Actor)
	}
}

// genTxShape requires a transaction's events to be exactly these
// "op table" pairs, in order.
func genTxShape(t *testing.T, evs []*event, xid uint32, what string, want ...string) []*event {
	t.Helper()
	got := txEvents(evs, xid)
	var shape []string
	for _, e := range got {
		shape = append(shape, e.Op+" "+e.Table)
	}
	if !slices.Equal(shape, want) {
		t.Fatalf("%s (xid %d): events %v, want %v", what, xid, shape, want)
	}
	return got
}

func genRandom(n int) string {
	b := make([]byte, n)
	rand.Read(b)
	return base64.RawURLEncoding.EncodeToString(b)
}

func genTime(t *testing.T, m map[string]any, key string) time.Time {
	t.Helper()
	s, ok := field(m, key)
	if !ok {
		t.Errorf("session %v: no %s", m["id"], key)
		return time.Time{}
	}
	ts, err := time.Parse(time.RFC3339Nano, s)
	if err != nil {
		t.Errorf("session %v: %s %q: %v", m["id"], key, s, err)
	}
	return ts
}

// TestAttributionGeneric: a non-Odoo application (users, http_sessions,
// invoices) is audited by a profile file alone. Every change names its
// user and session by the path the profile makes possible — the session
// row in the same transaction, the row's own created_by/updated_by with
// the user's only open session, none for psql edits (flagged orm_bypass
// when updated_at was left alone) — session identifiers and password
// hashes never reach the store or an export, and `cdcaudit sessions` shows
// both sessions with their parsed browsers, IPs, and how they ended.
func TestAttributionGeneric(t *testing.T) {
	ctx := context.Background()
	db := newDB(t)
	psql := connect(t, db.dsn)
	mustExec(t, psql, genericSchema)
	r := &genericRig{t: t, ctx: ctx, db: db, dataDir: t.TempDir(), app: connect(t, db.dsn), psql: psql}

	// Secrets, fresh for this run so a match in the store means a leak.
	aliceHash := "$argon2id$v=19$m=65536,t=3,p=4$" + genRandom(16) + "$" + genRandom(32)
	bobHash := "$2b$12$" + genRandom(40)
	sidA, sidB := genRandom(32), genRandom(32)
	pseudoA, pseudoB := sessions.Pseudonym(sidA), sessions.Pseudonym(sidB)
	if pseudoA == pseudoB || strings.Contains(pseudoA, sidA) {
		t.Fatal("bad pseudonyms")
	}

	// alice predates cdcaudit: her login must come from the users table.
	var alice int64
	if err := psql.QueryRow(ctx, `INSERT INTO app_user (email, password_hash, full_name) VALUES ($1, $2, 'Alice Martin') RETURNING id`,
		"alice@shop.example", aliceHash).Scan(&alice); err != nil {
		t.Fatal(err)
	}

	cfgDir := t.TempDir()
	profileFile := filepath.Join(cfgDir, "shop.yml")
	configFile := filepath.Join(cfgDir, "cdcaudit.yml")
	if err := os.WriteFile(profileFile, []byte(genericProfile), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(configFile, []byte("profile: generic\nprofile_file: "+profileFile+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	r.d = startDaemon(t, "--dsn", db.dsn, "--data-dir", r.dataDir, "--slot", db.slot, "--config", configFile)
	waitSlotActive(t, db.dsn, db.slot, 0, r.d)

	// --- the workload, as the application writes it ---

	// bob signs up while cdcaudit runs: his login is learnt from the stream.
	var bob int64
	signup := r.tx(r.app, func(tx pgx.Tx) error {
		return tx.QueryRow(ctx, `INSERT INTO app_user (email, password_hash, full_name) VALUES ($1, $2, 'Bob Nguyen') RETURNING id`,
			"bob@shop.example", bobHash).Scan(&bob)
	})
	logins := map[int64]string{alice: "alice@shop.example", bob: "bob@shop.example"}
	inSession := func(user int64, sid string) genWho {
		return genWho{user, logins[user], "session_row", sid, "same_tx"}
	}
	byRow := func(user int64, sid, via string) genWho { return genWho{user, logins[user], "row_user", sid, via} }

	// Logins: the session row and the user's last_login_at, in one
	// transaction.
	type login struct {
		xid     uint32
		created time.Time
	}
	logIn := func(user int64, sid, ip, ua string) login {
		var l login
		l.xid = r.tx(r.app, func(tx pgx.Tx) error {
			if err := tx.QueryRow(ctx, `INSERT INTO http_sessions (sid, user_id, ip, user_agent, created_at, last_seen)
				VALUES ($1, $2, $3, $4, now(), now()) RETURNING created_at`, sid, user, ip, ua).Scan(&l.created); err != nil {
				return err
			}
			return genExec(ctx, tx, `UPDATE app_user SET last_login_at = now() WHERE id = $1`, user)
		})
		return l
	}
	const ipA, ipB = "203.0.113.10", "2001:db8:85a3::8a2e:370:7334"
	loginA := logIn(alice, sidA, ipA, genChromeWindows)
	loginB := logIn(bob, sidB, ipB, genSafariIPhone)

	// A request: the application's writes plus the session's last_seen.
	touch := func(tx pgx.Tx, sid string) error {
		return genExec(ctx, tx, `UPDATE http_sessions SET last_seen = now() WHERE sid = $1`, sid)
	}
	newInvoice := func(tx pgx.Tx, user int64, number, customer string, amount string) (int64, error) {
		var id int64
		err := tx.QueryRow(ctx, `INSERT INTO invoice (number, customer, amount, created_by, updated_by, created_at, updated_at)
			VALUES ($1, $2, $3::numeric, $4, $4, now(), now()) RETURNING id`, number, customer, amount, user).Scan(&id)
		return id, err
	}
	writeInvoice := func(tx pgx.Tx, user, id int64, set string, args ...any) error {
		return genExec(ctx, tx, fmt.Sprintf(`UPDATE invoice SET %s, updated_by = $1, updated_at = now() WHERE id = $2`, set),
			append([]any{user, id}, args...)...)
	}

	var inv1, inv2, inv3 int64
	createA := r.tx(r.app, func(tx pgx.Tx) (err error) {
		if inv1, err = newInvoice(tx, alice, "INV-1001", "Globex Corporation", "1200.00"); err != nil {
			return err
		}
		return touch(tx, sidA)
	})
	createB := r.tx(r.app, func(tx pgx.Tx) (err error) {
		if inv2, err = newInvoice(tx, bob, "INV-1002", "Initech", "310.50"); err != nil {
			return err
		}
		if inv3, err = newInvoice(tx, bob, "INV-1003", "Umbrella plc", "89.99"); err != nil {
			return err
		}
		return touch(tx, sidB)
	})
	updateA := r.tx(r.app, func(tx pgx.Tx) error {
		if err := writeInvoice(tx, alice, inv1, "status = $3", "sent"); err != nil {
			return err
		}
		return touch(tx, sidA)
	})
	// bob corrects alice's invoice: the change is bob's, whoever created it.
	updateB := r.tx(r.app, func(tx pgx.Tx) error {
		if err := writeInvoice(tx, bob, inv1, "amount = $3::numeric", "1150.00"); err != nil {
			return err
		}
		return touch(tx, sidB)
	})
	// Requests that leave the session row alone (the application refreshes
	// last_seen at most every few minutes): the rows' own audit columns
	// name the user, the user's only open session is the session.
	laterA := r.tx(r.app, func(tx pgx.Tx) error { return writeInvoice(tx, alice, inv1, "status = $3", "paid") })
	laterB := r.tx(r.app, func(tx pgx.Tx) (err error) {
		_, err = newInvoice(tx, bob, "INV-1004", "Hooli", "42.00")
		return err
	})
	// Someone with psql: updated_at and updated_by left as they were.
	rawEdit := r.tx(r.psql, func(tx pgx.Tx) error {
		return genExec(ctx, tx, `UPDATE invoice SET amount = 1.00 WHERE id = $1`, inv1)
	})
	// The application's own raw SQL, allowlisted by raw_writes.
	rawCounter := r.tx(r.app, func(tx pgx.Tx) error {
		return genExec(ctx, tx, `UPDATE invoice SET view_count = view_count + 1 WHERE id = $1`, inv2)
	})
	r.catchUp()
	r.d.stopClean()

	// Both sessions open, as `cdcaudit sessions` shows them.
	open := listSessions(t, r.dataDir, "--active")
	if got, want := sessionIDs(open), sortedIDs(pseudoA, pseudoB); !slices.Equal(got, want) {
		t.Fatalf("active sessions %v, want %v:\n%v", got, want, open)
	}
	wantA := map[string]string{
		"user_id": fmt.Sprint(alice), "login": "alice@shop.example", "ip": ipA, "user_agent": genChromeWindows,
		"browser": "Chrome 124", "os": "Windows 10", "device": "computer", "source": "public.http_sessions",
	}
	wantB := map[string]string{
		"user_id": fmt.Sprint(bob), "login": "bob@shop.example", "ip": ipB, "user_agent": genSafariIPhone,
		"browser": "Mobile Safari 17", "os": "iOS 17.5", "device": "mobile (iPhone)", "source": "public.http_sessions",
	}
	withState := func(m map[string]string, kv ...string) map[string]string {
		out := map[string]string{}
		for k, v := range m {
			out[k] = v
		}
		for i := 0; i < len(kv); i += 2 {
			out[kv[i]] = kv[i+1]
		}
		return out
	}
	checkSessionFields(t, findSession(open, pseudoA), withState(wantA, "state", "active"))
	checkSessionFields(t, findSession(open, pseudoB), withState(wantB, "state", "active"))
	for _, m := range open {
		if _, ok := m["ended"]; ok {
			t.Errorf("open session %v has ended %v", m["id"], m["ended"])
		}
	}

	// --- the same daemon again: logout and session deletion ---
	r.d.start()
	waitSlotActive(t, db.dsn, db.slot, 0, r.d)

	var endedAt time.Time
	logoutA := r.tx(r.app, func(tx pgx.Tx) error {
		return tx.QueryRow(ctx, `UPDATE http_sessions SET ended_at = now(), last_seen = now() WHERE sid = $1 RETURNING ended_at`, sidA).Scan(&endedAt)
	})
	// A background job of alice's after she logged out: hers, in no session.
	afterLogoutA := r.tx(r.app, func(tx pgx.Tx) error { return writeInvoice(tx, alice, inv1, "status = $3", "archived") })
	beforeDelete := time.Now()
	deleteB := r.tx(r.app, func(tx pgx.Tx) error {
		return genExec(ctx, tx, `DELETE FROM http_sessions WHERE sid = $1`, sidB)
	})
	afterDelete := time.Now()
	afterDeleteB := r.tx(r.app, func(tx pgx.Tx) error { return writeInvoice(tx, bob, inv3, "status = $3", "sent") })
	r.catchUp()
	r.d.stopClean()
	evs := readStore(t, r.dataDir)

	if !strings.Contains(r.d.log(), "profile=shop") {
		t.Errorf("the daemon's log does not name the generic profile (profile=shop)")
	}

	// --- who did what ---
	checkGenActor(t, genTxShape(t, evs, signup, "bob's signup", "insert app_user")[0], genWho{}, "bob's signup (no session, app_user has no created_by)")
	for _, l := range []struct {
		login
		user int64
		sid  string
		what string
	}{{loginA, alice, pseudoA, "alice's login"}, {loginB, bob, pseudoB, "bob's login"}} {
		for _, e := range genTxShape(t, evs, l.xid, l.what, "insert http_sessions", "update app_user") {
			checkGenActor(t, e, inSession(l.user, l.sid), l.what)
		}
	}
	for _, x := range []struct {
		xid   uint32
		who   genWho
		shape []string
		what  string
	}{
		{createA, inSession(alice, pseudoA), []string{"insert invoice", "update http_sessions"}, "alice creating an invoice"},
		{createB, inSession(bob, pseudoB), []string{"insert invoice", "insert invoice", "update http_sessions"}, "bob creating two invoices"},
		{updateA, inSession(alice, pseudoA), []string{"update invoice", "update http_sessions"}, "alice sending her invoice"},
		{updateB, inSession(bob, pseudoB), []string{"update invoice", "update http_sessions"}, "bob correcting alice's invoice"},
		{laterA, byRow(alice, pseudoA, "only_active"), []string{"update invoice"}, "alice's update without a session row (updated_by)"},
		{laterB, byRow(bob, pseudoB, "only_active"), []string{"insert invoice"}, "bob's insert without a session row (created_by)"},
		{rawEdit, genWho{}, []string{"update invoice"}, "a psql edit (its updated_by is stale)"},
		{rawCounter, genWho{}, []string{"update invoice"}, "the application's allowlisted raw counter update"},
		{logoutA, genWho{}, []string{"update http_sessions"}, "alice's logout (an ended session row names no actor)"},
		{afterLogoutA, byRow(alice, "", ""), []string{"update invoice"}, "alice's background job after her logout: no open session"},
		{deleteB, genWho{}, []string{"delete http_sessions"}, "bob's session row deleted (a delete is never its before-image's)"},
		{afterDeleteB, byRow(bob, "", ""), []string{"update invoice"}, "bob's background job after his session was deleted"},
	} {
		for _, e := range genTxShape(t, evs, x.xid, x.what, x.shape...) {
			checkGenActor(t, e, x.who, x.what)
		}
	}
	if e := txEvents(evs, updateB)[0]; value(e.BeforeRow, "created_by") != fmt.Sprint(alice) || value(e.AfterRow, "updated_by") != fmt.Sprint(bob) {
		t.Errorf("%s: created_by %s, updated_by %s: the fixture does not reproduce bob editing alice's invoice", describe(e),
			value(e.BeforeRow, "created_by"), value(e.AfterRow, "updated_by"))
	}

	// --- orm_bypass: only the psql edit ---
	raw := txEvents(evs, rawEdit)[0]
	if !slices.Equal(raw.FlagList, []string{"orm_bypass"}) {
		t.Errorf("%s: flags %v, want [orm_bypass] (changed %v, updated_at unchanged)", describe(raw), raw.FlagList, raw.ChangedList)
	}
	if !slices.Equal(raw.ChangedList, []string{"amount"}) {
		t.Errorf("%s: changed %v, want [amount]", describe(raw), raw.ChangedList)
	}
	if c := txEvents(evs, rawCounter)[0]; !slices.Equal(c.ChangedList, []string{"view_count"}) {
		t.Errorf("%s: changed %v, want [view_count]", describe(c), c.ChangedList)
	}
	for _, e := range evs {
		if e != raw && len(e.FlagList) != 0 {
			t.Errorf("%s (changed %v): flags %v, want none", describe(e), e.ChangedList, e.FlagList)
		}
		if model(e) != "" {
			t.Errorf("%s: model %q, want null (the profile maps no models)", describe(e), model(e))
		}
	}

	// --- secrets ---
	const red = `"[redacted]"`
	checkRedacted := func(e *event, cols ...string) {
		t.Helper()
		var redacted []string
		if err := json.Unmarshal(e.Redacted, &redacted); err != nil {
			t.Errorf("%s: redacted %s: %v", describe(e), e.Redacted, err)
		}
		if !slices.Equal(redacted, cols) {
			t.Errorf("%s: redacted %v, want %v", describe(e), redacted, cols)
		}
		for _, c := range cols {
			for name, img := range map[string]row{"key": e.KeyRow, "before": e.BeforeRow, "after": e.AfterRow} {
				if v, ok := img.get(c); ok && string(v) != red {
					t.Errorf("%s: %s.%s = %s, want %s", describe(e), name, c, v, red)
				}
			}
		}
	}
	sessionEvents := 0
	for _, e := range evs {
		switch e.Table {
		case "app_user":
			checkRedacted(e, "password_hash")
		case "http_sessions":
			sessionEvents++
			checkRedacted(e, "sid")
			if v := value(e.KeyRow, "sid"); v != red {
				t.Errorf("%s: key.sid = %s, want %s", describe(e), v, red)
			}
		default:
			checkRedacted(e)
		}
	}
	if sessionEvents != 8 {
		t.Errorf("%d http_sessions events, want 8 (2 logins, 4 requests, 1 logout, 1 delete)", sessionEvents)
	}
	ins := genTxShape(t, evs, loginA.xid, "alice's login", "insert http_sessions", "update app_user")
	if !slices.Contains(ins[0].ChangedList, "sid") {
		t.Errorf("%s: changed %v lacks sid: a redacted column is still a change", describe(ins[0]), ins[0].ChangedList)
	}
	if !slices.Equal(ins[1].ChangedList, []string{"last_login_at"}) {
		t.Errorf("%s: changed %v, want [last_login_at]", describe(ins[1]), ins[1].ChangedList)
	}
	secrets := []secret{
		{"alice's password hash", aliceHash}, {"bob's password hash", bobHash},
		{"alice's session id", sidA}, {"bob's session id", sidB},
	}
	for p, b := range storeFiles(t, r.dataDir) {
		findSecrets(t, "store file "+filepath.Base(p), b, secrets)
	}
	// Every record, snapshot records (rows as read) included.
	jsonl, errOut, code := runCLI(t, "export", "--data-dir", r.dataDir, "--format", "jsonl", "--op", "insert,update,delete,truncate,snapshot")
	if code != 0 {
		t.Fatalf("export --format jsonl: exit %d: %s", code, errOut)
	}
	if n := strings.Count(jsonl, "\n"); n != len(evs) {
		t.Errorf("the export has %d lines, the store %d events", n, len(evs))
	}
	findSecrets(t, "the JSONL export", []byte(jsonl), secrets)
	if !strings.Contains(jsonl, pseudoA) || !strings.Contains(jsonl, pseudoB) {
		t.Errorf("the export does not name the sessions by their pseudonyms %s and %s", pseudoA, pseudoB)
	}
	findSecrets(t, "the daemon's log", []byte(r.d.log()), secrets)
	sessOut, _, _ := runCLI(t, "sessions", "--data-dir", r.dataDir, "--format", "json")
	findSecrets(t, "cdcaudit sessions", []byte(sessOut), secrets)

	// --- the sessions after logout and deletion ---
	all := listSessions(t, r.dataDir)
	if got, want := sessionIDs(all), sortedIDs(pseudoA, pseudoB); !slices.Equal(got, want) {
		t.Fatalf("sessions %v, want %v:\n%v", got, want, all)
	}
	mA, mB := findSession(all, pseudoA), findSession(all, pseudoB)
	checkSessionFields(t, mA, withState(wantA, "state", "ended", "end_reason", "logged_out"))
	checkSessionFields(t, mB, withState(wantB, "state", "ended", "end_reason", "deleted"))
	if first := genTime(t, mA, "first_activity"); !first.Equal(loginA.created) {
		t.Errorf("alice's session: first_activity %s, want her session row's created_at %s", first, loginA.created)
	}
	if first := genTime(t, mB, "first_activity"); !first.Equal(loginB.created) {
		t.Errorf("bob's session: first_activity %s, want his session row's created_at %s", first, loginB.created)
	}
	if ended := genTime(t, mA, "ended"); !ended.Equal(endedAt) {
		t.Errorf("alice's session: ended %s, want her session row's ended_at %s", ended, endedAt)
	}
	if ended := genTime(t, mB, "ended"); ended.Before(beforeDelete.Add(-time.Second)) || ended.After(afterDelete.Add(time.Second)) {
		t.Errorf("bob's session: ended %s, want the deletion's commit time (between %s and %s)", ended, beforeDelete, afterDelete)
	}
	for _, m := range []map[string]any{mA, mB} {
		last, ended := genTime(t, m, "last_activity"), genTime(t, m, "ended")
		if last.Before(genTime(t, m, "first_activity")) || last.After(ended) {
			t.Errorf("session %v: last_activity %s outside [first_activity, ended %s]", m["id"], last, ended)
		}
		if _, ok := m["ended_by"]; ok {
			t.Errorf("session %v: ended_by %v, but the application did not say who ended it", m["id"], m["ended_by"])
		}
	}
	if active := listSessions(t, r.dataDir, "--active"); len(active) != 0 {
		t.Errorf("active sessions after logout and deletion: %v, want none", sessionIDs(active))
	}
	if got := sessionIDs(listSessions(t, r.dataDir, "--user", "bob@shop.example")); !slices.Equal(got, []string{pseudoB}) {
		t.Errorf("bob's sessions: %v, want [%s]", got, pseudoB)
	}
	verifyOK(t, r.dataDir, changeCount(evs))
}
