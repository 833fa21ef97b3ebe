package rules

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/maxmind/mmdbwriter"
	"github.com/maxmind/mmdbwriter/mmdbtype"

	"github.com/cdcaudit/cdcaudit/alerts"
	"github.com/cdcaudit/cdcaudit/audit"
	"github.com/cdcaudit/cdcaudit/profile"
	"github.com/cdcaudit/cdcaudit/sessions"
	"github.com/cdcaudit/cdcaudit/sink"
)

// t0 is a Wednesday, 09:00 in Brussels.
var t0 = time.Date(2026, 12, 2, 8, 0, 0, 0, time.UTC)

// stream makes events in commit order.
type stream struct{ lsn uint64 }

func (s *stream) tx(at time.Time, events ...*audit.Event) []*audit.Event {
	s.lsn += 0x100
	for i, e := range events {
		e.CommitLSN, e.Ordinal, e.CommitTime = s.lsn, uint32(i+1), at
	}
	return events
}

func change(op audit.Op, model, table string, user int64, session string, cols ...string) *audit.Event {
	e := &audit.Event{Op: op, Schema: "public", Table: table, Model: model}
	if user != 0 {
		e.Actor.UserID = &user
		e.Actor.Login = fmt.Sprintf("user%d", user)
	}
	e.Actor.SessionID = session
	var r audit.Row
	for i := 0; i+1 < len(cols); i += 2 {
		r = append(r, audit.Column{Name: cols[i], Value: []byte(cols[i+1])})
	}
	if op == audit.OpDelete {
		e.Before = r
	} else {
		e.After = r
	}
	return e
}

// hits decodes the alerts among state records.
func hits(t *testing.T, recs []sink.StateRecord) []alerts.Alert {
	t.Helper()
	var out []alerts.Alert
	for _, r := range recs {
		if r.Bucket != alerts.Bucket {
			continue
		}
		var a alerts.Alert
		if err := json.Unmarshal(r.Value, &a); err != nil {
			t.Fatal(err)
		}
		if a.Kind != alerts.KindSuspicious || !strings.HasPrefix(a.ID, "suspicious/"+a.Rule+"/") || len(a.Events) == 0 {
			t.Errorf("malformed hit %+v", a)
		}
		out = append(out, a)
	}
	return out
}

// storeOf is a real store the stage's records are written to through its
// writer, as the pipeline writes them.
func storeOf(t *testing.T) (*sink.Store, func([]sink.StateRecord)) {
	store, err := sink.Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	w := sink.NewWriter(store, sink.WriterOptions{})
	t.Cleanup(func() { w.Close(); store.Close() })
	return store, func(recs []sink.StateRecord) {
		t.Helper()
		if err := w.Submit(context.Background(), sink.Batch{State: recs}); err != nil {
			t.Fatal(err)
		}
		if err := w.Flush(context.Background()); err != nil {
			t.Fatal(err)
		}
	}
}

func reload(t *testing.T, store *sink.Store, cfg Config, s Sessions) *Stage {
	st := New(cfg, s)
	if err := store.LoadState(Bucket, func(k, v []byte) error { return st.Load(string(k), v) }); err != nil {
		t.Fatal(err)
	}
	return st
}

func TestMassChange(t *testing.T) {
	cfg := Config{MassChange: Rate{N: 100, Within: 10 * time.Minute}}
	store, write := storeOf(t)
	st := New(cfg, nil)
	var s stream
	var txs [][]*audit.Event
	// 60 deletes, then 41 updates a minute later: 101 within 10 minutes.
	var first []*audit.Event
	for range 60 {
		first = append(first, change(audit.OpDelete, "sale.order.line", "sale_order_line", 6, "", "id", "1"))
	}
	txs = append(txs, s.tx(t0, first...))
	var second []*audit.Event
	for range 41 {
		second = append(second, change(audit.OpUpdate, "sale.order.line", "sale_order_line", 6, "", "id", "1"))
	}
	txs = append(txs, s.tx(t0.Add(time.Minute), second...))

	st.Observe(txs[0])
	recs := st.Dirty()
	if h := hits(t, recs); len(h) != 0 {
		t.Fatalf("60 changes: %+v", h)
	}
	write(recs)
	// A crash: the stage restarts from the store and the stream replays
	// from the first transaction.
	st = reload(t, store, cfg, nil)
	st.Observe(txs[0])
	st.Observe(txs[1])
	h := hits(t, st.Dirty())
	if len(h) != 1 {
		t.Fatalf("101 changes after a replay: %d hits, want 1: %+v", len(h), h)
	}
	if h[0].Rule != RuleMassChange || h[0].UserID != 6 || h[0].Detail["count"] != "101" || h[0].Detail["model"] != "sale.order.line" ||
		h[0].ID != "suspicious/mass_change/"+txs[1][40].ID() || h[0].Events[0] != txs[0][0].ID() {
		t.Errorf("the hit: %+v", h[0])
	}
	// The burst goes on: no second hit; other users and models are apart.
	st.Observe(s.tx(t0.Add(5*time.Minute), change(audit.OpDelete, "sale.order.line", "sale_order_line", 6, "", "id", "1")))
	if h := hits(t, st.Dirty()); len(h) != 0 {
		t.Errorf("the same burst: %+v", h)
	}
	// Near miss: exactly 100 by another user.
	var hundred []*audit.Event
	for range 100 {
		hundred = append(hundred, change(audit.OpUpdate, "res.partner", "res_partner", 7, "", "id", "1"))
	}
	st.Observe(s.tx(t0.Add(6*time.Minute), hundred...))
	// Inserts do not count.
	st.Observe(s.tx(t0.Add(6*time.Minute), change(audit.OpInsert, "res.partner", "res_partner", 7, "", "id", "2")))
	if h := hits(t, st.Dirty()); len(h) != 0 {
		t.Errorf("100 changes: %+v", h)
	}
	// After a quiet window, a new burst is a new hit.
	var again []*audit.Event
	for range 101 {
		again = append(again, change(audit.OpDelete, "sale.order.line", "sale_order_line", 6, "", "id", "1"))
	}
	st.Observe(s.tx(t0.Add(time.Hour), again...))
	if h := hits(t, st.Dirty()); len(h) != 1 {
		t.Errorf("a second burst: %d hits", len(h))
	}
}

func TestSensitiveModels(t *testing.T) {
	models, err := ParseModels(strings.Join(DefaultSensitive, ","))
	if err != nil {
		t.Fatal(err)
	}
	st := New(Config{Sensitive: models}, nil)
	var s stream
	param := func(user int64) *audit.Event {
		return change(audit.OpUpdate, "ir.config_parameter", "ir_config_parameter", user, "s1", "key", `"web.base.url"`)
	}
	st.Observe(s.tx(t0, param(2)))
	st.Observe(s.tx(t0.Add(time.Minute), param(2)))
	st.Observe(s.tx(t0.Add(time.Minute), param(6)))
	// Adding a user to a group writes the relation table (no model).
	st.Observe(s.tx(t0.Add(time.Minute), change(audit.OpInsert, "", "res_groups_users_rel", 2, "", "gid", "14", "uid", "7")))
	// Posting a journal entry, and near misses: another write of a posted
	// entry, a draft saved.
	posting := change(audit.OpUpdate, "account.move", "account_move", 6, "", "id", "9", "state", `"posted"`)
	posting.Before = audit.Row{{Name: "id", Value: []byte("9")}, {Name: "state", Value: []byte(`"draft"`)}}
	rewrite := change(audit.OpUpdate, "account.move", "account_move", 7, "", "id", "9", "state", `"posted"`, "ref", `"x"`)
	rewrite.Before = audit.Row{{Name: "id", Value: []byte("9")}, {Name: "state", Value: []byte(`"posted"`)}}
	draft := change(audit.OpUpdate, "account.move", "account_move", 7, "", "id", "10", "state", `"draft"`)
	st.Observe(s.tx(t0.Add(2*time.Minute), posting, rewrite, draft))
	// Ordinary models are not sensitive.
	st.Observe(s.tx(t0.Add(3*time.Minute), change(audit.OpUpdate, "res.partner", "res_partner", 7, "", "id", "1")))
	h := hits(t, st.Dirty())
	var got []string
	for _, a := range h {
		got = append(got, fmt.Sprintf("%d:%s", a.UserID, a.Detail["entry"]))
	}
	want := "2:ir.config_parameter 6:ir.config_parameter 2:res_groups_users_rel 6:account.move:post"
	if strings.Join(got, " ") != want {
		t.Errorf("hits %q, want %q", strings.Join(got, " "), want)
	}
	if len(h) > 0 && (h[0].Session != "s1" || h[0].Sessions[0] != "s1") {
		t.Errorf("the session is not the evidence: %+v", h[0])
	}
}

func TestWorkingHours(t *testing.T) {
	hours, err := ParseHours("group=Sales / Administrator Mon-Fri 08:00-19:00 Europe/Brussels; group=Night Owls 22:00-24:00 UTC")
	if err != nil {
		t.Fatal(err)
	}
	st := New(Config{Hours: hours}, nil)
	var s stream
	// What the initial snapshot and the stream teach: the category, the
	// group (a translated name), alice (6) joins it, bob (7) does not.
	categ := change(audit.OpSnapshot, "", "ir_module_category", 0, "", "id", "3", "name", `{"en_US": "Sales", "fr_FR": "Ventes"}`)
	st.Learn(categ)
	st.Observe(s.tx(t0,
		change(audit.OpInsert, "res.groups", "res_groups", 2, "", "id", "14", "name", `{"en_US": "Administrator"}`, "category_id", "3"),
		change(audit.OpInsert, "", "res_groups_users_rel", 2, "", "gid", "14", "uid", "6")))
	st.Dirty()
	edit := func(user int64) *audit.Event {
		return change(audit.OpUpdate, "res.partner", "res_partner", user, "", "id", "1")
	}
	// Wednesday 18:59 in Brussels (17:59 UTC): inside. 19:30: outside (a
	// hit); 21:00 the same day: no second hit. Bob at 23:00: no rule.
	st.Observe(s.tx(time.Date(2026, 12, 2, 17, 59, 0, 0, time.UTC), edit(6)))
	if h := hits(t, st.Dirty()); len(h) != 0 {
		t.Fatalf("inside the hours: %+v", h)
	}
	st.Observe(s.tx(time.Date(2026, 12, 2, 18, 30, 0, 0, time.UTC), edit(6)))
	st.Observe(s.tx(time.Date(2026, 12, 2, 20, 0, 0, 0, time.UTC), edit(6)))
	st.Observe(s.tx(time.Date(2026, 12, 2, 22, 0, 0, 0, time.UTC), edit(7)))
	h := hits(t, st.Dirty())
	if len(h) != 1 || h[0].UserID != 6 || h[0].Rule != RuleWorkingHours || h[0].Detail["local_time"] != "2026-12-02T19:30:00+01:00" {
		t.Fatalf("outside the hours: %+v", h)
	}
	// Saturday inside the clock hours is outside Mon-Fri.
	st.Observe(s.tx(time.Date(2026, 12, 5, 10, 0, 0, 0, time.UTC), edit(6)))
	if h := hits(t, st.Dirty()); len(h) != 1 {
		t.Errorf("Saturday: %+v", h)
	}
	// Leaving the group ends the rule for alice.
	leave := change(audit.OpDelete, "", "res_groups_users_rel", 2, "", "gid", "14", "uid", "6")
	st.Observe(s.tx(time.Date(2026, 12, 6, 10, 0, 0, 0, time.UTC), leave, edit(6)))
	if h := hits(t, st.Dirty()); len(h) != 0 {
		t.Errorf("after leaving the group: %+v", h)
	}
}

func TestParseConfig(t *testing.T) {
	for _, s := range []string{"group=Sales 19:00-08:00 UTC", "group=Sales 08:00-19:00 Mars/Olympus", "Sales 08:00-19:00 UTC", "group=Sales 8-19 UTC", ""} {
		if _, err := ParseHours(s); err == nil {
			t.Errorf("ParseHours(%q) took it", s)
		}
	}
	h, err := ParseHours("group=Night Owls Sat-Sun 00:00-24:00 UTC")
	if err != nil || h[0].Group != "Night Owls" || !h[0].Days[time.Sunday] || h[0].Days[time.Monday] || h[0].End != 1440 {
		t.Errorf("%+v %v", h, err)
	}
	for _, s := range []string{"0/10m", "5", "5/0s", "x/1m", "5/40d"} {
		if _, err := ParseRate(s); err == nil {
			t.Errorf("ParseRate(%q) took it", s)
		}
	}
	if r, err := ParseRate("100/10m"); err != nil || r != DefaultMassChange || r.String() != "100/10m" {
		t.Errorf("%v %v", r, err)
	}
	if _, err := ParseModels("res.groups,DROP TABLE"); err == nil {
		t.Error("ParseModels took a bad name")
	}
	if v, err := ParseSpeed("off"); err != nil || v != 0 {
		t.Error(v, err)
	}
}

// places is the session tracker as the stage sees it: sessions by id, and
// a real GeoIP city database.
type places struct {
	tr *sessions.Tracker
	m  map[string]sessions.Session
}

func (p places) Session(id string) (sessions.Session, bool) { s, ok := p.m[id]; return s, ok }
func (p places) Place(ip string) (sessions.Place, bool)     { return p.tr.Place(ip) }

func cityDB(t *testing.T) string {
	w, err := mmdbwriter.New(mmdbwriter.Options{DatabaseType: "cdcaudit-Test-City", RecordSize: 24})
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		cidr, country, city string
		lat, lon            float64
	}{
		{"81.2.69.0/24", "United Kingdom", "London", 51.5142, -0.0931},
		{"2a02:ec80::/32", "Belgium", "Brussels", 50.8503, 4.3517},
		{"1.128.0.0/16", "Australia", "Sydney", -33.8688, 151.2093},
	} {
		_, n, _ := net.ParseCIDR(c.cidr)
		err := w.Insert(n, mmdbtype.Map{
			"country":  mmdbtype.Map{"names": mmdbtype.Map{"en": mmdbtype.String(c.country)}},
			"city":     mmdbtype.Map{"names": mmdbtype.Map{"en": mmdbtype.String(c.city)}},
			"location": mmdbtype.Map{"latitude": mmdbtype.Float64(c.lat), "longitude": mmdbtype.Float64(c.lon), "accuracy_radius": mmdbtype.Uint16(20)},
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	path := filepath.Join(t.TempDir(), "city.mmdb")
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := w.WriteTo(f); err != nil {
		t.Fatal(err)
	}
	f.Close()
	return path
}

func TestImpossibleTravel(t *testing.T) {
	tr, err := sessions.New(profile.Odoo(), sessions.Options{GeoIPPath: cityDB(t)})
	if err != nil {
		t.Fatal(err)
	}
	defer tr.Close()
	p := places{tr: tr, m: map[string]sessions.Session{
		"sLondon":   {ID: "sLondon", UserID: 6, IP: "81.2.69.10"},
		"sBrussels": {ID: "sBrussels", UserID: 6, IP: "2a02:ec80::5"},
		"sSydney":   {ID: "sSydney", UserID: 6, IP: "1.128.3.4", Browser: "chrome"},
		"sLocal":    {ID: "sLocal", UserID: 6, IP: "10.1.2.3"},
	}}
	cfg := Config{TravelKmh: DefaultTravelKmh}
	store, write := storeOf(t)
	st := New(cfg, p)
	var s stream
	edit := func(session string) *audit.Event {
		return change(audit.OpUpdate, "res.partner", "res_partner", 6, session, "id", "1")
	}
	// London, then Brussels (≈320 km) an hour later: reachable. A private
	// address is nowhere.
	st.Observe(s.tx(t0, edit("sLondon")))
	st.Observe(s.tx(t0.Add(30*time.Minute), edit("sLocal")))
	st.Observe(s.tx(t0.Add(time.Hour), edit("sBrussels")))
	recs := st.Dirty()
	if h := hits(t, recs); len(h) != 0 {
		t.Fatalf("London to Brussels in an hour: %+v", h)
	}
	write(recs)
	// Sydney (≈16 700 km) two hours later: a hit, once, after a replay too.
	st = reload(t, store, cfg, p)
	sydney := s.tx(t0.Add(3*time.Hour), edit("sSydney"))
	st.Observe(sydney)
	recs = st.Dirty()
	write(recs)
	st = reload(t, store, cfg, p)
	st.Observe(sydney)
	st.Observe(s.tx(t0.Add(3*time.Hour+time.Minute), edit("sSydney")))
	st.Observe(s.tx(t0.Add(3*time.Hour+2*time.Minute), edit("sBrussels")))
	st.Observe(s.tx(t0.Add(3*time.Hour+3*time.Minute), edit("sSydney")))
	h := append(hits(t, recs), hits(t, st.Dirty())...)
	if len(h) != 1 {
		t.Fatalf("%d hits, want 1 (Brussels ↔ Sydney in turn is one): %+v", len(h), h)
	}
	a := h[0]
	if a.Rule != RuleImpossibleTravel || a.City != "Sydney" || a.Browser != "chrome" || a.Detail["from"] != "Brussels, Belgium" ||
		len(a.Sessions) != 2 || a.Sessions[0] != "sBrussels" || a.Sessions[1] != "sSydney" {
		t.Errorf("the hit: %+v", a)
	}
}

// TestSuperuserNotJudged: Odoo's __system__ installs modules (thousands of
// changes to ir.model, ir.rule, res.groups …): neither a mass change nor a
// first use of a sensitive model; the same changes by a person are.
func TestSuperuserNotJudged(t *testing.T) {
	cfg := Config{MassChange: Rate{N: 10, Within: 10 * time.Minute}, Sensitive: []string{"ir.rule"}}
	for login, want := range map[string]int{"__system__": 0, "user1": 2} {
		st := New(cfg, nil)
		var s stream
		var evs []*audit.Event
		for range 11 {
			e := change(audit.OpUpdate, "ir.rule", "ir_rule", 1, "", "id", "1")
			e.Actor.Login = login
			evs = append(evs, e)
		}
		st.Observe(s.tx(t0, evs...))
		if h := hits(t, st.Dirty()); len(h) != want {
			t.Errorf("%s: %d hits, want %d: %+v", login, len(h), want, h)
		}
	}
}
