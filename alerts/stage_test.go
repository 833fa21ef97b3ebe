package alerts

import (
	"encoding/json"
	"fmt"
	"maps"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/cdcaudit/cdcaudit/audit"
	"github.com/cdcaudit/cdcaudit/profile"
	"github.com/cdcaudit/cdcaudit/sessions"
	"github.com/cdcaudit/cdcaudit/sink"
)

var t0 = time.Date(2026, 11, 23, 13, 0, 0, 0, time.UTC)

// row builds an audit.Row: ints as numbers, strings as strings, nil null.
func row(kv ...any) audit.Row {
	r := audit.Row{}
	for i := 0; i < len(kv); i += 2 {
		var v []byte
		switch x := kv[i+1].(type) {
		case nil:
			v = []byte("null")
		case int:
			v = []byte(strconv.Itoa(x))
		case bool:
			v = []byte(strconv.FormatBool(x))
		case string:
			v, _ = json.Marshal(x)
		case time.Time:
			v, _ = json.Marshal(x.UTC().Format("2006-01-02 15:04:05.999999"))
		default:
			panic(fmt.Sprintf("row: %T", x))
		}
		r = append(r, audit.Column{Name: kv[i].(string), Value: v})
	}
	return r
}

// rig is a real session tracker (Odoo 18: res_device_log present) and a
// stage, fed as the pipeline feeds them; every transaction's records are
// kept as the store would keep them.
type rig struct {
	t     *testing.T
	tr    *sessions.Tracker
	st    *Stage
	opts  StageOptions
	lsn   uint64
	store map[string]map[string][]byte // bucket → key → value
	// queued lists the alert ids in the order they were queued.
	queued []string
}

func newRig(t *testing.T, opts StageOptions) *rig {
	r := &rig{t: t, opts: opts, lsn: 0x16B3700, store: map[string]map[string][]byte{}}
	r.start()
	return r
}

// start makes a tracker and a stage from what the store holds, as the
// pipeline does at start-up.
func (r *rig) start() {
	tr, err := sessions.New(profile.Odoo(), sessions.Options{PresentTables: []string{"public.res_device_log"}})
	if err != nil {
		r.t.Fatal(err)
	}
	r.t.Cleanup(func() { tr.Close() })
	for k, v := range r.store["sessions"] {
		if err := tr.Load(k, v); err != nil {
			r.t.Fatal(err)
		}
	}
	r.tr, r.st = tr, NewStage(r.opts, tr)
	for _, k := range slices.Sorted(maps.Keys(r.store[StateBucket])) {
		if err := r.st.Load(k, r.store[StateBucket][k]); err != nil {
			r.t.Fatal(err)
		}
	}
	r.st.SeedDevices(tr.Sessions())
}

// tx feeds one transaction of events at `at` and stores its records.
func (r *rig) tx(at time.Time, events ...*audit.Event) []*audit.Event {
	r.lsn += 0x1000
	for i, e := range events {
		e.CommitLSN, e.Ordinal, e.CommitTime, e.XID = r.lsn, uint32(i+1), at, uint32(r.lsn)
		if rs := r.tr.Observe(e); rs != nil && rs.Opened {
			r.st.Opened(e, rs.SessionID)
		}
		r.st.Observe(e)
	}
	r.st.Attributed(events)
	r.st.Committed(uint32(r.lsn), at)
	r.persist()
	return events
}

func (r *rig) persist() {
	for _, u := range r.tr.Dirty() {
		r.put(sink.StateRecord{Bucket: "sessions", Key: u.Key, Value: u.Value})
	}
	for _, rec := range r.st.Dirty() {
		if rec.Bucket == Bucket {
			r.queued = append(r.queued, strings.TrimPrefix(rec.Key, prefixQueued))
		}
		r.put(rec)
	}
}

func (r *rig) put(rec sink.StateRecord) {
	b := r.store[rec.Bucket]
	if b == nil {
		b = map[string][]byte{}
		r.store[rec.Bucket] = b
	}
	if rec.Value == nil {
		delete(b, rec.Key)
	} else {
		b[rec.Key] = rec.Value
	}
}

func (r *rig) alert(id string) Alert {
	r.t.Helper()
	v, ok := r.store[Bucket][prefixQueued+id]
	if !ok {
		r.t.Fatalf("alert %s not queued; queued: %v", id, r.queued)
	}
	var a Alert
	if err := json.Unmarshal(v, &a); err != nil {
		r.t.Fatal(err)
	}
	return a
}

// device is an Odoo 18 res_device_log insert: a session's first request.
func device(sid string, user int, ip, platform, browser, deviceType string, country any) *audit.Event {
	after := row("id", 1, "session_identifier", sid, "platform", platform, "browser", browser,
		"ip_address", ip, "country", country, "city", nil, "device_type", deviceType,
		"user_id", user, "revoked", false)
	return &audit.Event{Schema: "public", Table: "res_device_log", Op: audit.OpInsert, After: after, Key: row("id", 1)}
}

func sid(n int) string { return fmt.Sprintf("%042d", n) }

func TestNewDevice(t *testing.T) {
	r := newRig(t, StageOptions{})
	r.tx(t0, device(sid(1), 6, "203.0.113.10", "windows", "chrome", "computer", nil))
	if len(r.queued) != 0 {
		t.Fatalf("the first login of a user is not new: queued %v", r.queued)
	}
	// The same device again (another IP, same country: none known) is not new.
	r.tx(t0.Add(time.Hour), device(sid(2), 6, "203.0.113.11", "Windows", "Chrome", "computer", nil))
	// Another user's first login neither.
	r.tx(t0.Add(2*time.Hour), device(sid(3), 7, "198.51.100.7", "linux", "firefox", "computer", nil))
	if len(r.queued) != 0 {
		t.Fatalf("known devices: queued %v", r.queued)
	}
	// alice from an iPhone: new.
	ev := r.tx(t0.Add(3*time.Hour), device(sid(4), 6, "198.51.100.23", "iphone", "safari", "mobile", "FR"))
	s4 := sessions.Pseudonym(sid(4))
	if want := []string{"new_device/" + s4}; !slices.Equal(r.queued, want) {
		t.Fatalf("queued %v, want %v", r.queued, want)
	}
	a := r.alert("new_device/" + s4)
	if a.Kind != KindNewDevice || a.UserID != 6 || a.Session != s4 || a.IP != "198.51.100.23" ||
		a.OS != "iphone" || a.Browser != "safari" || a.Device != "mobile" || a.Country != "FR" ||
		!a.Time.Equal(t0.Add(3*time.Hour)) || !slices.Equal(a.Events, []string{ev[0].ID()}) ||
		!slices.Equal(a.Sessions, []string{s4}) {
		t.Errorf("alert %+v", a)
	}
	if !strings.Contains(a.Summary, "new device from 198.51.100.23, with safari on iphone (mobile), in FR") {
		t.Errorf("summary %q", a.Summary)
	}
	// A refresh of the same session raises nothing; nor does the iPhone
	// within the window; after the window it is new again.
	r.tx(t0.Add(4*time.Hour), device(sid(4), 6, "198.51.100.23", "iphone", "safari", "mobile", "FR"))
	r.tx(t0.Add(89*24*time.Hour), device(sid(5), 6, "198.51.100.24", "iphone", "safari", "mobile", "FR"))
	if len(r.queued) != 1 {
		t.Fatalf("within the window: queued %v", r.queued)
	}
	r.tx(t0.Add(180*24*time.Hour), device(sid(6), 6, "198.51.100.25", "iphone", "safari", "mobile", "FR"))
	if want := "new_device/" + sessions.Pseudonym(sid(6)); len(r.queued) != 2 || r.queued[1] != want {
		t.Fatalf("after the window: queued %v, want %s last", r.queued, want)
	}
	// The same device from another country is a new one.
	r.tx(t0.Add(181*24*time.Hour), device(sid(7), 6, "192.0.2.9", "iphone", "safari", "mobile", "DE"))
	if len(r.queued) != 3 {
		t.Fatalf("another country: queued %v", r.queued)
	}
}

// Every login when asked, once per session; none by default (above).
func TestLoginAlerts(t *testing.T) {
	r := newRig(t, StageOptions{Logins: true})
	r.tx(t0, device(sid(1), 6, "203.0.113.10", "windows", "chrome", "computer", nil))
	r.tx(t0.Add(time.Minute), device(sid(1), 6, "203.0.113.10", "windows", "chrome", "computer", nil))
	s1 := sessions.Pseudonym(sid(1))
	if want := []string{"login/" + s1}; !slices.Equal(r.queued, want) {
		t.Fatalf("queued %v, want %v", r.queued, want)
	}
	if a := r.alert("login/" + s1); a.Kind != KindLogin || a.Browser != "chrome" {
		t.Errorf("alert %+v", a)
	}
}

// A crash loses what was not stored: the stage restarts from the store
// with the tracker and raises, on the replay, exactly what it raised the
// first time, under the same ids.
func TestReplayRaisesTheSame(t *testing.T) {
	logins := func(r *rig, from, to int) {
		for i := from; i < to; i++ {
			browser := []string{"chrome", "firefox", "safari"}[i%3]
			r.tx(t0.Add(time.Duration(i)*time.Hour), device(sid(i), 6+i%2, "192.0.2.1", "linux", browser, "computer", nil))
		}
	}
	once := newRig(t, StageOptions{Logins: true})
	logins(once, 0, 12)

	crashed := newRig(t, StageOptions{Logins: true})
	logins(crashed, 0, 5)
	kept := map[string]map[string][]byte{}
	for b, m := range crashed.store {
		kept[b] = maps.Clone(m)
	}
	lsn := crashed.lsn
	logins(crashed, 5, 8)                  // lost in the crash
	crashed.store, crashed.lsn = kept, lsn // the replay resumes at the checkpoint
	crashed.start()
	logins(crashed, 5, 12) // the replay
	if !maps.EqualFunc(once.store[Bucket], crashed.store[Bucket], func(a, b []byte) bool { return string(a) == string(b) }) {
		t.Errorf("queued without a crash:\n%v\nwith one:\n%v", slices.Sorted(maps.Keys(once.store[Bucket])), slices.Sorted(maps.Keys(crashed.store[Bucket])))
	}
	if len(once.store[Bucket]) < 14 {
		t.Errorf("%d alerts: want logins and new devices", len(once.store[Bucket]))
	}
}

// Sessions known before the stage first ran seed the devices seen: the
// next login from one of them is not new, from another it is.
func TestSeedFromKnownSessions(t *testing.T) {
	r := newRig(t, StageOptions{})
	for i := 1; i <= 2; i++ {
		e := device(sid(i), 6, "192.0.2.1", "windows", []string{"", "chrome", "edge"}[i], "computer", nil)
		r.lsn += 0x1000
		e.CommitLSN, e.Ordinal, e.CommitTime = r.lsn, 1, t0
		r.tr.Observe(e) // the tracker alone: an older cdcaudit
	}
	for _, u := range r.tr.Dirty() {
		r.put(sink.StateRecord{Bucket: "sessions", Key: u.Key, Value: u.Value})
	}
	r.start()
	r.tx(t0.Add(time.Hour), device(sid(3), 6, "192.0.2.1", "windows", "edge", "computer", nil))
	if len(r.queued) != 0 {
		t.Fatalf("a seeded device: queued %v", r.queued)
	}
	r.tx(t0.Add(time.Hour), device(sid(4), 6, "192.0.2.1", "linux", "firefox", "computer", nil))
	if len(r.queued) != 1 {
		t.Fatalf("a device not seeded: queued %v", r.queued)
	}
	// Seeding happens once: a restart does not seed again.
	r.start()
	if d := r.st.Dirty(); len(d) != 0 {
		t.Errorf("after a restart: %d records to store", len(d))
	}
}

func bypassed(table string, id int) *audit.Event {
	return &audit.Event{Schema: "public", Table: table, Op: audit.OpUpdate, Key: row("id", id),
		After: row("id", id, "name", "x"), Flags: []string{FlagORMBypass}}
}

// One orm_bypass alert per transaction, however many chunks it came in,
// with its events as evidence; a transaction given up raises nothing.
func TestORMBypass(t *testing.T) {
	r := newRig(t, StageOptions{})
	plain := &audit.Event{Schema: "public", Table: "res_partner", Op: audit.OpUpdate, Key: row("id", 9), After: row("id", 9)}
	r.lsn += 0x1000
	evs := []*audit.Event{bypassed("res_partner", 1), plain, bypassed("sale_order", 2), bypassed("res_partner", 3)}
	for i, e := range evs {
		e.CommitLSN, e.Ordinal, e.CommitTime = r.lsn, uint32(i+1), t0
	}
	r.st.Attributed(evs[:2]) // a chunk
	r.persist()
	if len(r.queued) != 0 {
		t.Fatalf("before the commit: queued %v", r.queued)
	}
	r.st.Attributed(evs[2:])
	r.st.Committed(77, t0)
	r.persist()
	id := "orm_bypass/" + evs[0].ID()
	if !slices.Equal(r.queued, []string{id}) {
		t.Fatalf("queued %v, want %s", r.queued, id)
	}
	a := r.alert(id)
	if want := []string{evs[0].ID(), evs[2].ID(), evs[3].ID()}; !slices.Equal(a.Events, want) || a.Detail["changes"] != "3" ||
		a.Detail["tables"] != "public.res_partner,public.sale_order" || a.Detail["xid"] != "77" || !a.Time.Equal(t0) {
		t.Errorf("alert %+v", a)
	}
	r.st.Attributed([]*audit.Event{bypassed("res_partner", 5)})
	r.st.Abandon()
	r.st.Committed(78, t0)
	r.persist()
	if len(r.queued) != 1 {
		t.Errorf("a transaction given up: queued %v", r.queued)
	}
	r.tx(t0, plain)
	if len(r.queued) != 1 {
		t.Errorf("no orm_bypass: queued %v", r.queued)
	}
}

func addresses(t *testing.T, r *rig) map[int64]string {
	t.Helper()
	got, err := Addresses(func(bucket string, fn func(k, v []byte) error) error {
		for k, v := range r.store[bucket] {
			if err := fn([]byte(k), v); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return got
}

// Users' addresses come from their contacts, as Odoo creates them: the
// contact first, then the user in the same transaction; a contact's new
// address follows; a redacted address is never learnt.
func TestAddresses(t *testing.T) {
	secret := false
	r := newRig(t, StageOptions{Directory: OdooDirectory(), Secret: func(*audit.Event, string) bool { return secret }})
	partner := func(op audit.Op, id int, email any) *audit.Event {
		return &audit.Event{Schema: "public", Table: "res_partner", Op: op, Key: row("id", id), After: row("id", id, "email", email)}
	}
	user := func(op audit.Op, id, partner int) *audit.Event {
		return &audit.Event{Schema: "public", Table: "res_users", Op: op, Key: row("id", id), After: row("id", id, "login", "x", "partner_id", partner)}
	}
	r.tx(t0, partner(audit.OpInsert, 7, "alice@example.com"), user(audit.OpInsert, 6, 7))
	r.tx(t0, partner(audit.OpInsert, 8, "bob@example.com\r\nBcc: evil@example.com"), user(audit.OpInsert, 7, 8))
	if got := addresses(t, r); !maps.Equal(got, map[int64]string{6: "alice@example.com"}) {
		t.Fatalf("addresses %v (bob's is no address)", got)
	}
	r.tx(t0, partner(audit.OpUpdate, 7, "alice@example.org"))
	r.tx(t0, partner(audit.OpUpdate, 8, "bob@example.com"))
	if got := addresses(t, r); !maps.Equal(got, map[int64]string{6: "alice@example.org", 7: "bob@example.com"}) {
		t.Fatalf("addresses %v", got)
	}
	r.start() // the addresses are state: kept across a restart
	r.tx(t0, user(audit.OpDelete, 7, 8))
	secret = true
	r.tx(t0, partner(audit.OpUpdate, 7, "alice@evil.example"))
	if got := addresses(t, r); !maps.Equal(got, map[int64]string{6: "alice@example.org"}) {
		t.Fatalf("addresses %v", got)
	}
}
