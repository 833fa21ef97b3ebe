package sessionctl

import (
	"context"
	"encoding/json"
	"io"
	"maps"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/cdcaudit/cdcaudit/alerts"
	"github.com/cdcaudit/cdcaudit/internal/odoosim"
	"github.com/cdcaudit/cdcaudit/internal/pgtest"
	"github.com/cdcaudit/cdcaudit/sessions"
	"github.com/cdcaudit/cdcaudit/sink"
)

func TestMain(m *testing.M) { pgtest.Main(m, pgtest.Options{}) }

// rig is an Odoo database (the miniature), a session store laid out as
// Odoo 18's, and cdcaudit's store.
type rig struct {
	t      *testing.T
	ctx    context.Context
	dsn    string
	conn   *pgx.Conn
	sim    *odoosim.Sim
	dir    string // the session store
	store  *sink.Store
	writer *sink.Writer
	list   *list
	now    time.Time
	ended  counted // the controllers' SessionTerminated calls
}

// counted records SessionTerminated calls as "policy/result" → n.
type counted struct {
	mu sync.Mutex
	n  map[string]int
}

func (c *counted) SessionTerminated(policy, result string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.n == nil {
		c.n = map[string]int{}
	}
	c.n[policy+"/"+result]++
}

func (c *counted) get() map[string]int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return maps.Clone(c.n)
}

// list is the sessions the controller acts on (the tracker's, in the
// daemon).
type list struct {
	mu sync.Mutex
	s  []sessions.Session
}

func (l *list) Sessions() []sessions.Session {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]sessions.Session(nil), l.s...)
}

func newRig(t *testing.T) *rig {
	t.Helper()
	ctx := context.Background()
	dsn, _ := pgtest.NewDB(t)
	conn, err := pgx.Connect(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close(context.Background()) })
	if err := odoosim.Load(ctx, conn); err != nil {
		t.Fatal(err)
	}
	r := &rig{t: t, ctx: ctx, dsn: dsn, conn: conn, sim: odoosim.New(conn), dir: t.TempDir(), list: &list{}, now: time.Now().UTC()}
	r.openStore(t.TempDir())
	return r
}

func (r *rig) openStore(dir string) {
	store, err := sink.Open(dir)
	if err != nil {
		r.t.Fatal(err)
	}
	w := sink.NewWriter(store, sink.WriterOptions{Queue: 4})
	r.store, r.writer = store, w
	r.t.Cleanup(func() { w.Close(); store.Close() })
}

// state is the StateSink of the rig's store: its real writer.
func (r *rig) state(ctx context.Context, recs []sink.StateRecord) error {
	if err := r.writer.Submit(ctx, sink.Batch{State: recs}); err != nil {
		return err
	}
	return r.writer.Flush(ctx)
}

// login makes a logged-in Odoo session: its device row, its file.
func (r *rig) login(uid int64, login string) (*odoosim.Session, sessions.Session) {
	r.t.Helper()
	s := r.sim.NewDevice(uid, odoosim.Device{IP: "203.0.113.10", Platform: "windows", Browser: "chrome"})
	if _, err := s.Visit(r.ctx); err != nil {
		r.t.Fatal(err)
	}
	r.saveFile(s.SID, uid)
	sess := sessions.Session{ID: sessions.Pseudonym(s.Identifier()), UserID: uid, Login: login,
		FirstActivity: r.now.Add(-2 * time.Hour), LastActivity: r.now.Add(-time.Hour), Source: "public.res_device_log"}
	r.list.mu.Lock()
	r.list.s = append(r.list.s, sess)
	r.list.mu.Unlock()
	return s, sess
}

func (r *rig) saveFile(sid string, uid int64) {
	r.t.Helper()
	os.MkdirAll(filepath.Join(r.dir, sid[:2]), 0o755)
	b, _ := json.Marshal(map[string]any{"uid": uid, "login": "x", "session_token": "secret"})
	if err := os.WriteFile(filepath.Join(r.dir, sid[:2], sid), b, 0o600); err != nil {
		r.t.Fatal(err)
	}
}

func (r *rig) controller(p Policies) *Controller {
	r.t.Helper()
	c, err := New(Config{DSN: r.dsn, Odoo: true, SessionStore: r.dir, Policies: p, Now: func() time.Time { return r.now }, Metrics: &r.ended}, r.store)
	if err != nil {
		r.t.Fatal(err)
	}
	c.SetSessions(r.list)
	c.SetState(r.state)
	if err := r.store.LoadState(Bucket, c.Load); err != nil {
		r.t.Fatal(err)
	}
	return c
}

func (r *rig) revoked(identifier string) (revoked bool, writeUID int64) {
	r.t.Helper()
	var uid *int64
	err := r.conn.QueryRow(r.ctx, `SELECT bool_and(revoked), max(write_uid) FROM res_device_log WHERE session_identifier = $1`, identifier).Scan(&revoked, &uid)
	if err != nil {
		r.t.Fatal(err)
	}
	if uid != nil {
		writeUID = *uid
	}
	return revoked, writeUID
}

func fileExists(path string) bool { _, err := os.Lstat(path); return err == nil }

// accessEntries returns the access log's records, oldest first.
func (r *rig) accessEntries() []map[string]any {
	var out []map[string]any
	_, err := r.store.AccessLog(r.ctx, 0, false, 0, func(rec sink.AccessRecord) error {
		var m map[string]any
		if err := json.Unmarshal(rec.Record, &m); err != nil {
			return err
		}
		out = append(out, m)
		return nil
	})
	if err != nil {
		r.t.Fatal(err)
	}
	return out
}

func (r *rig) queuedAlerts() []alerts.Alert {
	var out []alerts.Alert
	r.store.LoadState(alerts.Bucket, func(k, v []byte) error {
		if strings.HasPrefix(string(k), "q/") {
			var a alerts.Alert
			json.Unmarshal(v, &a)
			out = append(out, a)
		}
		return nil
	})
	return out
}

// An admin ends an Odoo file session: its file is gone, its device rows
// revoked by the admin's own Odoo user in a transaction with cdcaudit's
// message; the access log and an alert say so; a second end finds nothing.
func TestEndOdooFileSession(t *testing.T) {
	r := newRig(t)
	alice, aliceS := r.login(odoosim.Alice, "alice")
	bob, _ := r.login(odoosim.Bob, "bob")
	c := r.controller(Policies{})
	signals := make(chan sessions.Signal, 4)
	c.SetSignals(signals)

	o, err := c.End(r.ctx, aliceS.ID, Requester{Role: "admin", Login: "admin", Via: "password", Address: "192.0.2.9"})
	if err != nil {
		t.Fatal(err)
	}
	if o.Result != ResultOK || o.Files != 1 || o.Rows != 1 || o.Login != "alice" || o.Access == 0 {
		t.Fatalf("outcome %+v", o)
	}
	if fileExists(filepath.Join(r.dir, alice.SID[:2], alice.SID)) {
		t.Error("alice's session file is still there")
	}
	if !fileExists(filepath.Join(r.dir, bob.SID[:2], bob.SID)) {
		t.Error("bob's session file is gone")
	}
	if rev, by := r.revoked(alice.Identifier()); !rev || by != odoosim.Admin {
		t.Errorf("alice's device rows: revoked %v by %d, want by admin (%d)", rev, by, odoosim.Admin)
	}
	if rev, _ := r.revoked(bob.Identifier()); rev {
		t.Error("bob's device rows revoked")
	}
	select {
	case sig := <-signals:
		if sig.ID != aliceS.ID || sig.End != sessions.EndTerminated {
			t.Errorf("signal %+v", sig)
		}
	default:
		t.Error("the tracker was not told")
	}
	entries := r.accessEntries()
	if len(entries) != 1 {
		t.Fatalf("access log %v", entries)
	}
	e := entries[0]
	if e["action"] != Action || e["result"] != ResultOK || e["login"] != "admin" || e["session"] != aliceS.ID || e["user"] != "alice" || e["address"] != "192.0.2.9" {
		t.Errorf("access log entry %v", e)
	}
	al := r.queuedAlerts()
	if len(al) != 1 || al[0].Kind != alerts.KindSessionTerminated || al[0].Session != aliceS.ID || al[0].Login != "alice" || al[0].Detail["asked_by"] != "admin" {
		t.Errorf("alerts %+v", al)
	}

	// Again: nothing left to end; nothing written to the database.
	o, err = c.End(r.ctx, aliceS.ID, Requester{Role: "admin", Via: "token:ops"})
	if err != nil || o.Result != ResultNotFound {
		t.Errorf("second end: %+v %v", o, err)
	}
	if n := len(r.queuedAlerts()); n != 1 {
		t.Errorf("%d alerts after a not_found", n)
	}
	if got := r.ended.get(); !maps.Equal(got, map[string]int{"/ok": 1, "/not_found": 1}) {
		t.Errorf("counted %v", got)
	}

	// Nothing of the identifiers in the access log or the alerts.
	raw, _ := json.Marshal(r.accessEntries())
	araw, _ := json.Marshal(r.queuedAlerts())
	for _, s := range []string{alice.Identifier(), alice.SID[:20], bob.Identifier()} {
		if strings.Contains(string(raw)+string(araw), s) {
			t.Errorf("an identifier in the records")
		}
	}

	// A token admin (no Odoo user) acts as Odoo's __system__.
	_, carolS := r.login(odoosim.Bob, "bob")
	if o, err := c.End(r.ctx, carolS.ID, Requester{Role: "admin", Via: "token:ops"}); err != nil || o.Result != ResultOK {
		t.Fatalf("token end: %+v %v", o, err)
	}
	var uid int64
	r.conn.QueryRow(r.ctx, `SELECT write_uid FROM res_device_log WHERE revoked AND write_uid <> $1`, odoosim.Admin).Scan(&uid)
	if uid != systemUser {
		t.Errorf("a token's revoke written by %d, want %d", uid, systemUser)
	}
}

// Identifiers that could leave the store are refused, whether asked
// directly or read from the database; nothing outside the store is touched.
func TestIdentifierOutsideTheStoreRefused(t *testing.T) {
	r := newRig(t)
	outside := filepath.Join(filepath.Dir(r.dir), "outside")
	os.MkdirAll(outside, 0o755)
	victim := filepath.Join(outside, "victim")
	os.WriteFile(victim, []byte("keep"), 0o600)
	for _, id := range []string{"../outside/victim", "../" + strings.Repeat("a", 39), "..", "", strings.Repeat("a", 41) + "/",
		strings.Repeat("a", 43), strings.Repeat("a", 40) + "*?", strings.Repeat("/", 42)} {
		if n, err := RemoveSessionFiles(r.dir, id); err != ErrIdentifier || n != 0 {
			t.Errorf("%q: %d %v", id, n, err)
		}
	}
	// A device row whose identifier climbs out of the store.
	evil := "../outside/" + strings.Repeat("v", 31)
	if len(evil) != 42 {
		t.Fatal(len(evil))
	}
	if _, err := r.conn.Exec(r.ctx, `INSERT INTO res_device_log (session_identifier, platform, browser, ip_address, device_type, user_id, first_activity, last_activity, revoked)
		VALUES ($1, 'linux', 'firefox', '198.51.100.1', 'computer', $2, now(), now(), false)`, evil, odoosim.Bob); err != nil {
		t.Fatal(err)
	}
	os.WriteFile(filepath.Join(outside, strings.Repeat("v", 31)+"x"), []byte("keep"), 0o600)
	// A symbolic link as a prefix directory.
	os.Symlink(outside, filepath.Join(r.dir, "zz"))
	os.WriteFile(filepath.Join(outside, "zz"+strings.Repeat("z", 82)), []byte("keep"), 0o600)

	c := r.controller(Policies{})
	o, err := c.End(r.ctx, sessions.Pseudonym(evil), Requester{Role: "admin", Via: "token:ops"})
	if err != nil || o.Result != ResultNotFound || o.Files != 0 {
		t.Errorf("evil row: %+v %v", o, err)
	}
	if n, err := RemoveSessionFiles(r.dir, "zz"+strings.Repeat("z", 40)); n != 0 || err == nil {
		t.Errorf("symlinked prefix: %d %v", n, err)
	}
	left, _ := os.ReadDir(outside)
	if len(left) != 3 {
		t.Errorf("outside the store: %d files left, want 3", len(left))
	}
	if _, err := c.End(r.ctx, "../x", Requester{Role: "admin"}); err == nil {
		t.Error("a session id that is no pseudonym accepted")
	}
}

// Idle timeout fires once per session, also across a restart; dry run
// records what it would end and ends nothing; exceptions are kept.
func TestPolicies(t *testing.T) {
	r := newRig(t)
	alice, aliceS := r.login(odoosim.Alice, "alice")
	r.login(odoosim.Admin, "admin") // excepted by login
	dry := r.controller(Policies{IdleTimeout: 30 * time.Minute, DryRun: true, ExceptLogins: []string{"admin"}})
	out, err := dry.Evaluate(r.ctx)
	if err != nil || len(out) != 1 || out[0].Result != ResultDryRun || out[0].Session != aliceS.ID || out[0].Policy != PolicyIdleTimeout {
		t.Fatalf("dry run: %+v %v", out, err)
	}
	if !fileExists(filepath.Join(r.dir, alice.SID[:2], alice.SID)) {
		t.Error("dry run removed the file")
	}
	if rev, _ := r.revoked(alice.Identifier()); rev {
		t.Error("dry run revoked")
	}
	if out, _ := dry.Evaluate(r.ctx); len(out) != 0 {
		t.Errorf("dry run fired again: %+v", out)
	}
	if e := r.accessEntries(); len(e) != 1 || e[0]["result"] != ResultDryRun || e[0]["via"] != "policy:idle_timeout" {
		t.Errorf("access log %v", e)
	}
	if a := r.queuedAlerts(); len(a) != 0 {
		t.Errorf("a dry run alerted: %+v", a)
	}
	if got := r.ended.get(); !maps.Equal(got, map[string]int{PolicyIdleTimeout + "/" + ResultDryRun: 1}) {
		t.Errorf("counted %v", got)
	}

	// For real, on a fresh store: fires once. Bob is excepted as a member
	// of Sales / Administrator, which implies the excepted Sales / User:
	// All Documents (xml ids as Odoo names them; the miniature has no
	// ir_model_data).
	_, err = r.conn.Exec(r.ctx, `
		CREATE TABLE ir_model_data (module varchar, name varchar, model varchar, res_id int);
		CREATE TABLE res_groups_implied_rel (gid int, hid int);
		INSERT INTO ir_model_data VALUES ('sales_team', 'group_sale_salesman_all_leads', 'res.groups', 7),
			('sales_team', 'group_sale_manager', 'res.groups', 8);
		INSERT INTO res_groups_implied_rel VALUES (8, 7);
		DELETE FROM res_groups_users_rel WHERE uid = 6 AND gid = 7;
		INSERT INTO res_groups_users_rel VALUES (8, 7)`)
	if err != nil {
		t.Fatal(err)
	}
	bob, _ := r.login(odoosim.Bob, "bob")
	r.openStore(t.TempDir())
	policies := Policies{IdleTimeout: 30 * time.Minute, ExceptGroups: []string{"sales_team.group_sale_salesman_all_leads"}}
	c := r.controller(policies)
	out, err = c.Evaluate(r.ctx)
	if err != nil || len(out) != 1 || out[0].Result != ResultOK || out[0].Session != aliceS.ID {
		t.Fatalf("idle timeout: %+v %v", out, err)
	}
	if fileExists(filepath.Join(r.dir, alice.SID[:2], alice.SID)) {
		t.Error("idle timeout left the file")
	}
	// The tracker would show it ended; the list still says open: only
	// the record that it fired keeps it from firing again, now and after
	// a restart (a new controller on the same store).
	if out, err := c.Evaluate(r.ctx); err != nil || len(out) != 0 {
		t.Errorf("fired again: %+v %v", out, err)
	}
	restarted := r.controller(policies)
	if out, err := restarted.Evaluate(r.ctx); err != nil || len(out) != 0 {
		t.Errorf("fired again after a restart: %+v %v", out, err)
	}
	if e := r.accessEntries(); len(e) != 1 || e[0]["result"] != ResultOK || e[0]["via"] != "policy:idle_timeout" {
		t.Errorf("access log %v", e)
	}
	if !fileExists(filepath.Join(r.dir, bob.SID[:2], bob.SID)) {
		t.Error("the excepted group's member was ended")
	}
}

// One session per user: the newest stays; maximum age.
func TestOneSessionAndMaxAge(t *testing.T) {
	r := newRig(t)
	_, older := r.login(odoosim.Bob, "bob")
	newer, newerS := r.login(odoosim.Bob, "bob")
	r.list.mu.Lock()
	r.list.s[1].FirstActivity = r.now.Add(-time.Minute)
	r.list.s[1].LastActivity = r.now
	r.list.mu.Unlock()
	c := r.controller(Policies{OneSession: true, MaxAge: 10 * time.Hour})
	out, err := c.Evaluate(r.ctx)
	if err != nil || len(out) != 1 || out[0].Session != older.ID || out[0].Policy != PolicyOneSession || out[0].Result != ResultOK {
		t.Fatalf("one session: %+v %v", out, err)
	}
	if !fileExists(filepath.Join(r.dir, newer.SID[:2], newer.SID)) {
		t.Error("the newest session was ended")
	}
	r.now = r.now.Add(11 * time.Hour)
	out, err = c.Evaluate(r.ctx)
	if err != nil || len(out) != 1 || out[0].Session != newerS.ID || out[0].Policy != PolicyMaxAge {
		t.Fatalf("max age: %+v %v", out, err)
	}
}

// The generic profile: a configured statement and a webhook.
func TestGenericSQLAndWebhook(t *testing.T) {
	r := newRig(t)
	r.conn.Exec(r.ctx, `CREATE TABLE app_sessions (sid text PRIMARY KEY, user_id int8)`)
	r.conn.Exec(r.ctx, `INSERT INTO app_sessions VALUES ('raw-secret-sid', 7)`)
	id := sessions.Pseudonym("raw-secret-sid")
	var mu sync.Mutex
	var got []webhookBody
	key := []byte("the-session-end-key-0123456789")
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		raw, _ := io.ReadAll(req.Body)
		// The receiver ends sessions: it takes only what cdcaudit signed.
		if err := alerts.VerifySignature(key, raw, req.Header.Get(alerts.SignatureHeader), time.Now(), alerts.DefaultReplayWindow); err != nil {
			t.Errorf("the end request's signature: %v", err)
			w.WriteHeader(http.StatusUnauthorized)
			return
		}
		var b webhookBody
		json.Unmarshal(raw, &b)
		mu.Lock()
		got = append(got, b)
		n := len(got)
		mu.Unlock()
		if n > 1 {
			w.WriteHeader(http.StatusGone)
		}
	}))
	defer srv.Close()
	c, err := New(Config{DSN: r.dsn, Webhook: srv.URL + "/end?key=hook-secret", WebhookKey: key,
		EndSQL: `DELETE FROM app_sessions WHERE 's' || left(encode(sha256(convert_to(sid, 'UTF8')), 'hex'), 24) = $1 AND user_id = $2`}, r.store)
	if err != nil {
		t.Fatal(err)
	}
	c.SetSessions(&list{s: []sessions.Session{{ID: id, UserID: 7, Login: "bob"}}})
	c.SetState(r.state)
	o, err := c.End(r.ctx, id, Policy("manual"))
	if err != nil || o.Result != ResultOK || o.Rows != 1 {
		t.Fatalf("%+v %v", o, err)
	}
	if len(got) != 1 || got[0].Session != id || got[0].Login != "bob" || got[0].UserID != 7 {
		t.Errorf("webhook got %+v", got)
	}
	o, err = c.End(r.ctx, id, Policy("manual"))
	if err != nil || o.Result != ResultNotFound {
		t.Errorf("again: %+v %v", o, err)
	}
	// A webhook that fails: failed, and why, without the URL's secret.
	srv.Close()
	o, _ = c.End(r.ctx, id, Policy("manual"))
	if o.Result != ResultFailed || o.Reason == "" || strings.Contains(o.Reason, "hook-secret") {
		t.Errorf("failed webhook: %+v", o)
	}
	raw, _ := json.Marshal(r.accessEntries())
	if strings.Contains(string(raw), "hook-secret") || strings.Contains(string(raw), "raw-secret-sid") {
		t.Error("a secret in the access log")
	}
}

func FuzzParseException(f *testing.F) {
	for _, s := range []string{"login:alice", "group:base.group_system", "group:../x", "login:", "alice", "group:a.b:c"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		e, err := ParseException(s)
		if err != nil {
			return
		}
		if (e.Login == "") == (e.Group == "") {
			t.Fatalf("%q: %+v", s, e)
		}
		again, err := ParseException(e.String())
		if err != nil || again != e {
			t.Fatalf("%q: %+v does not round-trip: %+v %v", s, e, again, err)
		}
	})
}
