package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/cdcaudit/cdcaudit/internal/odoosim"
	"github.com/cdcaudit/cdcaudit/sessions"
	"github.com/jackc/pgx/v5"
)

// The attribution tests: the real daemon with the Odoo profile, against the
// Odoo 18 fixture driven by odoosim with Odoo's own SQL. The fixture is
// loaded before the daemon first starts, as a real Odoo database exists
// long before cdcaudit is attached to it: users and models that predate
// the stream must still be known.

// odooRig is a fixture database, its daemon and a simulator.
type odooRig struct {
	t       *testing.T
	ctx     context.Context
	db      testDB
	dataDir string
	args    []string
	d       *daemon
	ctl     *pgx.Conn    // the test's own queries
	sim     *odoosim.Sim // on a connection of its own
}

// startOdoo loads the fixture into a fresh database and starts `cdcaudit
// run --profile odoo` on it (plus args).
func startOdoo(t *testing.T, args ...string) *odooRig {
	t.Helper()
	return startOdooRig(t, true, args...)
}

// startOdooRig is startOdoo, with --profile odoo or without any --profile.
func startOdooRig(t *testing.T, odooProfile bool, args ...string) *odooRig {
	t.Helper()
	return startOdooPrepared(t, odooProfile, nil, args...)
}

// startOdooDefault is startOdoo with every table of the fixture set back to
// REPLICA IDENTITY DEFAULT, as a real Odoo keeps them: updates carry no
// before-image.
func startOdooDefault(t *testing.T, args ...string) *odooRig {
	t.Helper()
	return startOdooPrepared(t, true, func(ctl *pgx.Conn) { defaultIdentity(t, ctl) }, args...)
}

// startOdooPrepared loads the fixture, runs prep (when not nil) on it, and
// starts the daemon.
func startOdooPrepared(t *testing.T, odooProfile bool, prep func(ctl *pgx.Conn), args ...string) *odooRig {
	t.Helper()
	return startOdooOn(t, odooProfile, func(_ testDB, ctl *pgx.Conn) {
		if err := odoosim.Load(context.Background(), ctl); err != nil {
			t.Fatal(err)
		}
		if prep != nil {
			prep(ctl)
		}
	}, args...)
}

// startOdooOn makes a fresh database, fills it with load, and starts the
// daemon on it.
func startOdooOn(t *testing.T, odooProfile bool, load func(db testDB, ctl *pgx.Conn), args ...string) *odooRig {
	t.Helper()
	ctx := context.Background()
	db := newDB(t)
	ctl := connect(t, db.dsn)
	load(db, ctl)
	r := &odooRig{t: t, ctx: ctx, db: db, dataDir: t.TempDir(), ctl: ctl}
	r.sim = r.newSim()
	r.args = []string{"--dsn", db.dsn, "--data-dir", r.dataDir, "--slot", db.slot}
	if odooProfile {
		r.args = append(r.args, "--profile", "odoo")
	}
	r.args = append(r.args, args...)
	r.d = startDaemon(t, r.args...)
	waitSlotActive(t, db.dsn, db.slot, 0, r.d)
	return r
}

// newSim returns a simulator on a connection of its own (for a goroutine,
// or a second browser making requests while another's transaction is open).
func (r *odooRig) newSim() *odoosim.Sim { return odoosim.New(connect(r.t, r.db.dsn)) }

// ok returns the xid of a simulated transaction, failing the test on error.
func (r *odooRig) ok(xid uint32, err error) uint32 {
	r.t.Helper()
	if err != nil {
		r.t.Fatal(err)
	}
	if xid == 0 {
		r.t.Fatal("the simulated request wrote nothing")
	}
	return xid
}

// request runs fn as a read-write request of s and returns its xid.
func (r *odooRig) request(s *odoosim.Session, fn func(e *odoosim.Env) error) uint32 {
	r.t.Helper()
	return r.ok(s.Request(r.ctx, fn))
}

// catchUp waits until everything committed so far is in the store.
func (r *odooRig) catchUp() {
	r.t.Helper()
	waitCaughtUp(r.t, r.db.dsn, r.db.slot, currentLSN(r.t, r.db.dsn), r.d)
}

// stop catches up, stops the daemon cleanly and returns the store's events.
func (r *odooRig) stop() []*event {
	r.t.Helper()
	r.catchUp()
	r.d.stopClean()
	return readStore(r.t, r.dataDir)
}

// restart starts the stopped daemon again with the same arguments.
func (r *odooRig) restart() {
	r.t.Helper()
	r.d.start()
	waitSlotActive(r.t, r.db.dsn, r.db.slot, 0, r.d)
}

// sid is the session id cdcaudit shows for an Odoo session: a pseudonym of
// its session_identifier, never the identifier itself.
func sid(s *odoosim.Session) string { return sessions.Pseudonym(s.Identifier()) }

// --- the actor of an event ---

type actor struct {
	UserID     *int64      `json:"user_id"`
	Login      *string     `json:"login"`
	UserVia    string      `json:"user_via"`
	SessionID  *string     `json:"session_id"`
	SessionVia string      `json:"session_via"`
	Candidates *candidates `json:"candidates"`
}

type candidates struct {
	Users []struct {
		ID    int64   `json:"id"`
		Login *string `json:"login"`
	} `json:"users"`
	Sessions []string `json:"sessions"`
}

// userIDs lists the candidate users' ids.
func (c *candidates) userIDs() []int64 {
	var ids []int64
	if c != nil {
		for _, u := range c.Users {
			ids = append(ids, u.ID)
		}
	}
	return ids
}

// actorMembers are the actor's members, in order; candidates is there only
// when it lists someone.
var actorMembers = []string{"user_id", "login", "user_via", "session_id", "session_via"}

func actorOf(t testing.TB, e *event) actor {
	t.Helper()
	r, err := parseRow(e.Actor)
	names := r.names()
	if n := len(names); n == len(actorMembers)+1 && names[n-1] == "candidates" {
		names = names[:n-1]
	}
	if err != nil || !slices.Equal(names, actorMembers) {
		t.Fatalf("event %s (%s %s): actor %s: want the members %v in that order, then candidates or nothing (err %v)", e.ID, e.Op, e.Table, e.Actor, actorMembers, err)
	}
	var a actor
	if err := json.Unmarshal(e.Actor, &a); err != nil {
		t.Fatalf("event %s: actor %s: %v", e.ID, e.Actor, err)
	}
	return a
}

// who is an expected actor. user 0 means none (user_id and login null);
// session "" means none (session_id null; session_via none, or the
// sessionVia given, e.g. ambiguous), "*" any.
type who struct {
	user       int64
	userVia    string // "" = any
	session    string
	sessionVia string // "" = any
}

func (w who) String() string {
	u, s := "none", "none"
	if w.user != 0 {
		u = fmt.Sprintf("%d %s", w.user, odoosim.Logins[w.user])
	}
	if w.session != "" {
		s = w.session
	}
	return fmt.Sprintf("user %s via %s, session %s via %s", u, or(w.userVia, "any"), s, or(w.sessionVia, "any"))
}

func or(s, def string) string {
	if s == "" {
		return def
	}
	return s
}

// describe names an event for failure messages.
func describe(e *event) string {
	return fmt.Sprintf("event %s (xid %d, %s %s key %s)", e.ID, e.XID, e.Op, e.Table, e.KeyRow)
}

// checkActor checks an event's actor; why says what the case is about.
func checkActor(t testing.TB, e *event, w who, why string) {
	t.Helper()
	a := actorOf(t, e)
	var problems []string
	if w.user == 0 {
		if a.UserID != nil || a.Login != nil {
			problems = append(problems, fmt.Sprintf("user_id %v login %v, want null", deref(a.UserID), deref(a.Login)))
		}
		if a.UserVia != "none" {
			problems = append(problems, fmt.Sprintf("user_via %q, want none", a.UserVia))
		}
	} else {
		if a.UserID == nil || *a.UserID != w.user {
			problems = append(problems, fmt.Sprintf("user_id %v, want %d", deref(a.UserID), w.user))
		}
		if l := odoosim.Logins[w.user]; a.Login == nil || *a.Login != l {
			problems = append(problems, fmt.Sprintf("login %v, want %q (the login of a user who existed before cdcaudit started must be known)", deref(a.Login), l))
		}
		if w.userVia != "" && a.UserVia != w.userVia {
			problems = append(problems, fmt.Sprintf("user_via %q, want %q", a.UserVia, w.userVia))
		}
	}
	switch {
	case w.session == "*":
	case w.session == "":
		if via := or(w.sessionVia, "none"); a.SessionID != nil || a.SessionVia != via {
			problems = append(problems, fmt.Sprintf("session %v via %q, want none via %s", deref(a.SessionID), a.SessionVia, via))
		}
	default:
		if a.SessionID == nil || *a.SessionID != w.session {
			problems = append(problems, fmt.Sprintf("session_id %v, want %s", deref(a.SessionID), w.session))
		}
		if w.sessionVia != "" && a.SessionVia != w.sessionVia {
			problems = append(problems, fmt.Sprintf("session_via %q, want %q", a.SessionVia, w.sessionVia))
		}
	}
	if len(problems) > 0 {
		t.Errorf("%s: %s\n  want %s\n  %s\n  got actor %s", why, describe(e), w, strings.Join(problems, "; "), e.Actor)
	}
}

func deref[T any](p *T) any {
	if p == nil {
		return "null"
	}
	return *p
}

// --- finding events ---

// txEvents returns the events of transaction xid.
func txEvents(evs []*event, xid uint32) []*event {
	var out []*event
	for _, e := range evs {
		if e.XID == xid {
			out = append(out, e)
		}
	}
	return out
}

// pick returns the events of transaction xid on table with op (op ""
// for any).
func pick(evs []*event, xid uint32, table, op string) []*event {
	var out []*event
	for _, e := range txEvents(evs, xid) {
		if e.Table == table && (op == "" || e.Op == op) {
			out = append(out, e)
		}
	}
	return out
}

// one returns the only event of transaction xid on table with op.
func one(t testing.TB, evs []*event, xid uint32, table, op string) *event {
	t.Helper()
	got := pick(evs, xid, table, op)
	if len(got) != 1 {
		var all []string
		for _, e := range txEvents(evs, xid) {
			all = append(all, fmt.Sprintf("%s %s %s", e.Op, e.Table, e.KeyRow))
		}
		t.Fatalf("transaction %d: %d %s events on %s, want 1; the transaction's events: %v", xid, len(got), op, table, all)
	}
	return got[0]
}

// nth returns the i-th event of transaction xid on table with op.
func nth(t testing.TB, evs []*event, xid uint32, table, op string, i int) *event {
	t.Helper()
	got := pick(evs, xid, table, op)
	if i >= len(got) {
		t.Fatalf("transaction %d: %d %s events on %s, want at least %d", xid, len(got), op, table, i+1)
	}
	return got[i]
}

// model returns an event's model ("" for null).
func model(e *event) string {
	if e.Model == nil {
		return ""
	}
	return *e.Model
}

// value returns a column of a row as its JSON text ("" when absent).
func value(r row, col string) string {
	v, ok := r.get(col)
	if !ok {
		return ""
	}
	return string(v)
}

func hasFlag(e *event, f string) bool { return slices.Contains(e.FlagList, f) }

// --- `cdcaudit sessions` ---

// listSessions runs `cdcaudit sessions --data-dir DIR --format json` (plus
// args) on a stopped daemon's store and returns its sessions as generic
// objects.
func listSessions(t *testing.T, dir string, args ...string) []map[string]any {
	t.Helper()
	out, errOut, code := runCLI(t, append([]string{"sessions", "--data-dir", dir, "--format", "json"}, args...)...)
	if code != 0 {
		t.Fatalf("cdcaudit sessions %v exited %d\nstdout: %s\nstderr: %s", args, code, out, errOut)
	}
	list, err := decodeSessionList([]byte(out))
	if err != nil {
		t.Fatalf("cdcaudit sessions --format json %v: %v\n%s", args, err, out)
	}
	return list
}

// decodeSessionList accepts a JSON array of sessions, an object holding
// one (e.g. {"sessions": [...]}), or one JSON object per line.
func decodeSessionList(b []byte) ([]map[string]any, error) {
	b = bytes.TrimSpace(b)
	var list []map[string]any
	if len(b) == 0 {
		return nil, nil
	}
	if b[0] == '[' {
		err := json.Unmarshal(b, &list)
		return list, err
	}
	var obj map[string]any
	if err := json.Unmarshal(b, &obj); err == nil {
		for _, v := range obj {
			if arr, ok := v.([]any); ok {
				for _, x := range arr {
					if m, ok := x.(map[string]any); ok {
						list = append(list, m)
					}
				}
				return list, nil
			}
		}
		return []map[string]any{obj}, nil
	}
	for _, line := range bytes.Split(b, []byte("\n")) {
		if len(bytes.TrimSpace(line)) == 0 {
			continue
		}
		var m map[string]any
		if err := json.Unmarshal(line, &m); err != nil {
			return nil, err
		}
		list = append(list, m)
	}
	return list, nil
}

// field returns the first of keys that m has, as text (numbers without a
// fraction as integers; nested objects as JSON).
func field(m map[string]any, keys ...string) (string, bool) {
	for _, k := range keys {
		v, ok := m[k]
		if !ok || v == nil {
			continue
		}
		switch x := v.(type) {
		case string:
			return x, true
		case float64:
			return strconv.FormatFloat(x, 'f', -1, 64), true
		case bool:
			return strconv.FormatBool(x), true
		default:
			b, _ := json.Marshal(x)
			return string(b), true
		}
	}
	return "", false
}

// findSession returns the listed session with id id.
func findSession(list []map[string]any, id string) map[string]any {
	for _, m := range list {
		if v, _ := field(m, "id", "session_id", "session"); v == id {
			return m
		}
	}
	return nil
}

func sessionIDs(list []map[string]any) []string {
	var ids []string
	for _, m := range list {
		v, _ := field(m, "id", "session_id", "session")
		ids = append(ids, v)
	}
	slices.Sort(ids)
	return ids
}

// --- secrets ---

// storeFiles returns the bytes of every file under dir (the bbolt file and
// anything else the store keeps there).
func storeFiles(t testing.TB, dir string) map[string][]byte {
	t.Helper()
	files := map[string][]byte{}
	err := filepath.WalkDir(dir, func(p string, d os.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		b, err := os.ReadFile(p)
		files[p] = b
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	return files
}
