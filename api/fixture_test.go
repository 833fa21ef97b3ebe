package api

import (
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strconv"
	"testing"
	"time"

	"github.com/cdcaudit/cdcaudit/access"
	"github.com/cdcaudit/cdcaudit/audit"
	"github.com/cdcaudit/cdcaudit/instancekey"
	"github.com/cdcaudit/cdcaudit/profile"
	"github.com/cdcaudit/cdcaudit/sessions"
	"github.com/cdcaudit/cdcaudit/sink"
)

var t0 = time.Date(2026, 11, 23, 9, 0, 0, 0, time.UTC)

// fixture is a real store written through its real write path: the
// session state of an Odoo 18 stream (made by a real tracker) and the
// business events of three users.
type fixture struct {
	store *sink.Store
	now   time.Time
	// Sessions' pseudonyms: alice's laptop (active), bob's desktop (revoked).
	alice, bob string
	// Event ids by what they are.
	ids map[string]string
	// key signs export manifests.
	key *instancekey.Key
}

var (
	admin  = access.Principal{Role: access.Admin, Via: "token:ops"}
	viewer = access.Principal{Role: access.Viewer, Via: "token:auditor"}
	self   = access.Principal{Role: access.Self, Login: "alice@example.com", Via: "password"}
)

func newFixture(t testing.TB) *fixture {
	t.Helper()
	f := &fixture{now: t0.Add(3*time.Hour + 2*time.Minute), ids: map[string]string{},
		alice: sessions.Pseudonym("alice-laptop-identifier-0123456789abcdefgh"),
		bob:   sessions.Pseudonym("bob-desktop-identifier-0123456789abcdefghi")}
	tr, err := sessions.New(profile.Odoo(), sessions.Options{PresentTables: []string{"public.res_device_log"}})
	if err != nil {
		t.Fatal(err)
	}
	lsn := uint64(0x1000)
	row := func(kv ...any) audit.Row {
		var r audit.Row
		for i := 0; i < len(kv); i += 2 {
			var v []byte
			switch x := kv[i+1].(type) {
			case int:
				v = []byte(strconv.Itoa(x))
			case bool:
				v = []byte(strconv.FormatBool(x))
			case time.Time:
				v = []byte(`"` + x.Format("2006-01-02 15:04:05.999999") + `"`)
			case string:
				v = audit.AppendString(nil, x)
			}
			r = append(r, audit.Column{Name: kv[i].(string), Value: v})
		}
		return r
	}
	observe := func(op audit.Op, table string, at time.Time, kv ...any) {
		lsn += 0x100
		r := row(kv...)
		tr.Observe(&audit.Event{CommitLSN: lsn, Ordinal: 1, CommitTime: at, Schema: "public", Table: table, Op: op, Key: r[:1], After: r})
	}
	device := func(id int, sid string, user int, ip, platform, browser, kind, country string, first, last time.Time, revoked bool) []any {
		return []any{"id", id, "session_identifier", sid, "user_id", user, "ip_address", ip, "platform", platform,
			"browser", browser, "device_type", kind, "country", country, "city", "",
			"first_activity", first, "last_activity", last, "revoked", revoked, "write_uid", 2}
	}
	for id, login := range map[int]string{2: "admin", 6: "alice@example.com", 7: "bob@example.com"} {
		observe(audit.OpInsert, "res_users", t0.Add(-30*24*time.Hour), "id", id, "login", login, "password", "x")
	}
	observe(audit.OpInsert, "res_device_log", t0.Add(3*time.Hour), device(1, "alice-laptop-identifier-0123456789abcdefgh", 6, "81.2.69.142", "windows", "chrome", "computer", "United Kingdom", t0, t0.Add(3*time.Hour), false)...)
	observe(audit.OpInsert, "res_device_log", t0.Add(time.Hour), device(2, "bob-desktop-identifier-0123456789abcdefghi", 7, "10.0.0.7", "macos", "safari", "computer", "France", t0, t0.Add(time.Hour), false)...)
	observe(audit.OpUpdate, "res_device_log", t0.Add(2*time.Hour), device(2, "bob-desktop-identifier-0123456789abcdefghi", 7, "10.0.0.7", "macos", "safari", "computer", "France", t0, t0.Add(time.Hour), true)...)
	observe(audit.OpInsert, "res_users_log", t0, "id", 1, "create_uid", 6, "create_date", t0)
	observe(audit.OpInsert, "res_users_log", t0.Add(time.Minute), "id", 2, "create_uid", 7, "create_date", t0.Add(time.Minute))

	var b sink.Batch
	for _, u := range tr.Dirty() {
		b.State = append(b.State, sink.StateRecord{Bucket: "sessions", Key: u.Key, Value: u.Value})
	}
	b.State = append(b.State, fixtureLogins()...)
	b.State = append(b.State, fixtureAlerts(f)...)
	uid := func(n int64) *int64 { return &n }
	actors := map[string]audit.Actor{
		"alice": {UserID: uid(6), Login: "alice@example.com", UserVia: "session_row", SessionID: f.alice, SessionVia: "same_tx"},
		"bob":   {UserID: uid(7), Login: "bob@example.com", UserVia: "session_row", SessionID: f.bob, SessionVia: "same_tx"},
		"none":  {UserVia: "none", SessionVia: "none"},
	}
	add := func(name, who string, minute int, table string, op audit.Op, id int, flags ...string) {
		lsn += 0x100
		e := &audit.Event{LSN: lsn - 0x10, CommitLSN: lsn, Ordinal: 1, XID: uint32(lsn >> 8), Database: "odoo",
			CommitTime: t0.Add(time.Duration(minute) * time.Minute), Schema: "public", Table: table, Op: op,
			Actor: actors[who], Flags: flags}
		if op != audit.OpTruncate {
			e.Key = row("id", id)
		}
		if op == audit.OpInsert || op == audit.OpUpdate {
			e.After = row("id", id, "name", name+" <&>")
			e.Changed = []string{"name"}
		}
		if op == audit.OpUpdate || op == audit.OpDelete {
			e.Before, e.BeforeSource = row("id", id, "name", "before"), audit.BeforeWAL
		}
		f.ids[name] = audit.FormatID(e.CommitLSN, e.Ordinal)
		b.Events = append(b.Events, sink.Encoded{Key: e.StoreKey(), Body: e.AppendBody(nil)})
	}
	add("alice-insert-42", "alice", 10, "sale_order", audit.OpInsert, 42)
	add("bob-insert-7", "bob", 20, "res_partner", audit.OpInsert, 7)
	add("bob-update-42", "bob", 30, "sale_order", audit.OpUpdate, 42)
	add("alice-update-42", "alice", 40, "sale_order", audit.OpUpdate, 42)
	add("bob-bypass-7", "bob", 50, "res_partner", audit.OpUpdate, 7, "orm_bypass")
	add("none-bypass-42", "none", 70, "sale_order", audit.OpUpdate, 42, "orm_bypass")
	add("alice-bypass-9", "alice", 80, "res_partner", audit.OpUpdate, 9, "orm_bypass")
	add("bob-delete-7", "bob", 130, "res_partner", audit.OpDelete, 7)
	b.Checkpoint = lsn + 8

	s, err := sink.Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	if _, err := s.Append([]sink.Batch{b}); err != nil {
		t.Fatal(err)
	}
	f.store = s
	if f.key, err = instancekey.LoadOrCreate(t.TempDir()); err != nil {
		t.Fatal(err)
	}
	// The access log: a failed and a good sign-in, then an export.
	for i, e := range []sink.AccessEntry{
		{Action: "signin", Result: "refused", Login: "mallory", Via: "password", Address: "198.51.100.99"},
		{Action: "signin", Result: "ok", Role: "self", Login: "alice@example.com", Via: "password", Address: "203.0.113.10"},
		{Action: "export", Result: "ok", Role: "viewer", Via: "token:auditor", Address: "192.0.2.1",
			Detail: []sink.Field{{Name: "count", Value: []byte("3")}}},
	} {
		e.Time = t0.Add(time.Duration(i) * time.Minute)
		if _, err := s.AppendAccess(e); err != nil {
			t.Fatal(err)
		}
	}
	return f
}

// handler is the API over the fixture, with a test middleware that puts p
// in the request's context (nil: no principal).
func (f *fixture) handler(t testing.TB, p *access.Principal) http.Handler {
	t.Helper()
	return f.handlerOn(t, f.store, p)
}

// handlerOn is handler with another view of the fixture's store.
func (f *fixture) handlerOn(t testing.TB, st Store, p *access.Principal) http.Handler {
	t.Helper()
	h, err := New(Options{Sources: []Source{{Name: "odoo", Store: st, Signer: f.key}}, Now: func() time.Time { return f.now }})
	if err != nil {
		t.Fatal(err)
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if p != nil {
			r = r.WithContext(access.NewContext(r.Context(), *p))
		}
		h.ServeHTTP(w, r)
	})
}

type answer struct {
	status int
	header http.Header
	body   []byte
}

func (a answer) json(t testing.TB, v any) {
	t.Helper()
	if err := json.Unmarshal(a.body, v); err != nil {
		t.Fatalf("answer %d is not JSON: %v\n%s", a.status, err, a.body)
	}
}

func (f *fixture) get(t testing.TB, p *access.Principal, target string) answer {
	t.Helper()
	return serve(f.handler(t, p), httptest.NewRequest(http.MethodGet, target, nil))
}

func newGet(target string) *http.Request { return httptest.NewRequest(http.MethodGet, target, nil) }

func serve(h http.Handler, r *http.Request) answer {
	w := httptest.NewRecorder()
	h.ServeHTTP(w, r)
	res := w.Result()
	body, _ := io.ReadAll(res.Body)
	return answer{res.StatusCode, res.Header, body}
}

// page is a page of events.
type page struct {
	Events     []json.RawMessage `json:"events"`
	NextCursor string            `json:"next_cursor"`
}

func (p page) ids(t testing.TB) []string {
	t.Helper()
	var out []string
	for _, e := range p.Events {
		var ev struct{ ID string }
		if err := json.Unmarshal(e, &ev); err != nil {
			t.Fatal(err)
		}
		out = append(out, ev.ID)
	}
	return out
}
