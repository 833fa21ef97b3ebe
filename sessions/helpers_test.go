package sessions

import (
	"encoding/json"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/cdcaudit/cdcaudit/audit"
	"github.com/cdcaudit/cdcaudit/profile"
)

// t0 is the start of every test's stream.
var t0 = time.Date(2026, 11, 23, 13, 0, 0, 0, time.UTC)

// pgTime formats t as PostgreSQL prints a timestamp without time zone.
func pgTime(t time.Time) string { return t.UTC().Format("2006-01-02 15:04:05.999999") }

// raw is a value already encoded as JSON.
type raw string

// row builds an audit.Row from name, value pairs: ints as JSON numbers,
// strings as JSON strings, bools, nil as null, times as PostgreSQL text.
func row(kv ...any) audit.Row {
	if len(kv)%2 != 0 {
		panic("row: odd arguments")
	}
	r := audit.Row{}
	for i := 0; i < len(kv); i += 2 {
		var v []byte
		switch x := kv[i+1].(type) {
		case nil:
			v = []byte("null")
		case int:
			v = []byte(strconv.Itoa(x))
		case int64:
			v = []byte(strconv.FormatInt(x, 10))
		case bool:
			v = []byte(strconv.FormatBool(x))
		case string:
			v, _ = json.Marshal(x)
		case time.Time:
			v, _ = json.Marshal(pgTime(x))
		case raw:
			v = []byte(x)
		default:
			panic(fmt.Sprintf("row: %T", x))
		}
		r = append(r, audit.Column{Name: kv[i].(string), Value: v})
	}
	return r
}

// stream feeds hand-built events to a tracker, numbering them.
type stream struct {
	t     *testing.T
	tr    *Tracker
	lsn   uint64
	actor audit.Actor // the actor correlate gives every event
}

func newStream(t *testing.T, p profile.Profile, opts Options) *stream {
	t.Helper()
	tr, err := New(p, opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { tr.Close() })
	return &stream{t: t, tr: tr, lsn: 0x16B3700}
}

func (s *stream) event(op audit.Op, table string, at time.Time, key, before, after audit.Row, changed []string) *audit.Event {
	s.lsn += 0x100
	schema, name, _ := strings.Cut(table, ".")
	if op == audit.OpInsert && changed == nil {
		for _, c := range after {
			changed = append(changed, c.Name)
		}
	}
	if changed == nil && op != audit.OpUpdate {
		changed = []string{}
	}
	return &audit.Event{LSN: s.lsn - 8, CommitLSN: s.lsn, Ordinal: 1, XID: uint32(s.lsn), CommitTime: at,
		Database: "odoo", Schema: schema, Table: name, Op: op, Key: key, Before: before, After: after, Changed: changed}
}

// send observes one event as a transaction of its own, then tells the
// tracker it is attributed to s.actor (as correlate would have).
func (s *stream) send(e *audit.Event) *RowSession {
	s.t.Helper()
	rs := s.tr.Observe(e)
	e.Actor = s.actor
	s.tr.Attributed([]*audit.Event{e})
	return rs
}

func (s *stream) insert(table string, at time.Time, after audit.Row) *RowSession {
	s.t.Helper()
	return s.send(s.event(audit.OpInsert, table, at, keyOf(after), nil, after, nil))
}

// update sends an update with a complete before-image when before is not
// nil (Changed computed), else with the key only (Changed nil).
func (s *stream) update(table string, at time.Time, before, after audit.Row) *RowSession {
	s.t.Helper()
	var changed []string
	if before != nil {
		changed = []string{}
		for _, c := range after {
			if b, ok := before.Get(c.Name); !ok || string(b) != string(c.Value) {
				changed = append(changed, c.Name)
			}
		}
	}
	return s.send(s.event(audit.OpUpdate, table, at, keyOf(after), before, after, changed))
}

func (s *stream) delete(table string, at time.Time, before audit.Row) *RowSession {
	s.t.Helper()
	return s.send(s.event(audit.OpDelete, table, at, keyOf(before), before, nil, nil))
}

// keyOf is the row's id column, or its sid column for http_sessions.
func keyOf(r audit.Row) audit.Row {
	for _, k := range []string{"id", "sid"} {
		if v, ok := r.Get(k); ok {
			return audit.Row{{Name: k, Value: v}}
		}
	}
	return nil
}

// Odoo rows.

func userRow(id int, login, password string, writeUID int) audit.Row {
	return row("id", id, "login", login, "password", password, "active", true, "write_uid", writeUID, "write_date", t0)
}

var deviceLogID = 0

// deviceRow18 is an Odoo 18 res_device_log row.
func deviceRow18(sid string, user int, ip, platform, browser, deviceType string, first, last time.Time) audit.Row {
	deviceLogID++
	return row("id", deviceLogID, "session_identifier", sid, "platform", platform, "browser", browser,
		"ip_address", ip, "country", nil, "city", nil, "device_type", deviceType, "user_id", user,
		"first_activity", first, "last_activity", last, "revoked", false,
		"create_uid", nil, "create_date", nil, "write_uid", nil, "write_date", nil)
}

// deviceRow19 is an Odoo 19.1+ res_device_log row (user_agent, no FK).
func deviceRow19(sid string, user int, ip, ua string, first, last time.Time) audit.Row {
	deviceLogID++
	return row("id", deviceLogID, "session_identifier", sid, "user_id", user, "ip_address", ip,
		"user_agent", ua, "country", nil, "city", nil, "first_activity", first, "last_activity", last,
		"revoked", false, "create_uid", nil, "create_date", nil, "write_uid", nil, "write_date", nil)
}

// with returns a copy of r with columns replaced or added.
func with(r audit.Row, kv ...any) audit.Row {
	out := slices.Clone(r)
	for _, c := range row(kv...) {
		if i := slices.IndexFunc(out, func(o audit.Column) bool { return o.Name == c.Name }); i >= 0 {
			out[i] = c
		} else {
			out = append(out, c)
		}
	}
	return out
}

// sid makes an Odoo-like 84-character session id; device logs keep its
// first 42 characters.
func sid(seed string) string {
	s := strings.Repeat(seed, 84/len(seed)+1)[:84]
	return s
}

func sid42(seed string) string { return sid(seed)[:42] }

func mustSession(t *testing.T, tr *Tracker, id string) Session {
	t.Helper()
	s, ok := tr.Session(id)
	if !ok {
		t.Fatalf("no session %s; have %v", id, ids(tr.Sessions()))
	}
	return s
}

func ids(list []Session) []string {
	var out []string
	for _, s := range list {
		out = append(out, s.ID)
	}
	return out
}

// persist collects Dirty output as a store would: key → value, nil deletes.
type persisted map[string][]byte

func (p persisted) take(tr *Tracker) []StateUpdate {
	ups := tr.Dirty()
	for _, u := range ups {
		if u.Value == nil {
			delete(p, u.Key)
		} else {
			p[u.Key] = slices.Clone(u.Value)
		}
	}
	return ups
}

// load replays the records in key order, like LoadState.
func (p persisted) load(fn func(k, v []byte) error) error {
	keys := make([]string, 0, len(p))
	for k := range p {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	for _, k := range keys {
		if err := fn([]byte(k), p[k]); err != nil {
			return err
		}
	}
	return nil
}
