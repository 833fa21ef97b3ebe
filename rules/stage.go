package rules

import (
	"encoding/json"
	"fmt"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/cdcaudit/cdcaudit/alerts"
	"github.com/cdcaudit/cdcaudit/audit"
	"github.com/cdcaudit/cdcaudit/sessions"
	"github.com/cdcaudit/cdcaudit/sink"
)

// Bucket is the stage's state bucket.
const Bucket = "rules"

// Keys of Bucket.
const (
	keySeen      = "h"  // the id of the last event judged
	prefixMass   = "m/" // m/<user>/<model>: recent changes (massWindow)
	prefixTravel = "t/" // t/<user>: where the user was last (presence)
	prefixHours  = "w/" // w/<user>: the local day of the last hit
	prefixFirst  = "s/" // s/<user>/<entry>: the event of the first use
	prefixGroup  = "g/" // g/<group id>: {name, category}
	prefixCateg  = "c/" // c/<category id>: name
	prefixMember = "u/" // u/<user id>: group ids
)

// Sessions is what the stage asks the session tracker (sessions.Tracker).
type Sessions interface {
	Session(id string) (sessions.Session, bool)
	Place(ip string) (sessions.Place, bool)
}

// Stage runs the stream's rules. It is used by the pipeline's goroutine
// only.
type Stage struct {
	cfg      Config
	sessions Sessions

	seen    string    // the last event judged
	last    time.Time // its commit time (zero until one is judged after a start)
	mass    map[string]*massWindow
	travel  map[int64]*presence
	hours   map[int64]string
	first   map[string]string
	groups  map[int64]group
	categs  map[int64]string
	members map[int64][]int64

	dirty  map[string]bool
	queued []sink.StateRecord

	// The window of the last mass change counted, and whose it is: valid
	// until Dirty (which writes the marked windows and may expire some).
	lastMass      *massWindow
	lastMassUser  int64
	lastMassModel string
}

type group struct {
	Name     string `json:"name"`
	Category int64  `json:"category,omitempty"`
}

// New makes the stage; s may be nil (impossible travel is then off).
func New(cfg Config, s Sessions) *Stage {
	return &Stage{cfg: cfg, sessions: s,
		mass: map[string]*massWindow{}, travel: map[int64]*presence{}, hours: map[int64]string{},
		first: map[string]string{}, groups: map[int64]group{}, categs: map[int64]string{},
		members: map[int64][]int64{}, dirty: map[string]bool{}}
}

// Load restores one record of Bucket, at start, before any Observe.
func (st *Stage) Load(key string, v []byte) error {
	var err error
	switch {
	case key == keySeen:
		st.seen = string(v)
	case strings.HasPrefix(key, prefixMass):
		w := &massWindow{}
		if err = json.Unmarshal(v, w); err == nil {
			st.mass[key[len(prefixMass):]] = w
		}
	case strings.HasPrefix(key, prefixTravel):
		p := &presence{}
		var id int64
		if id, err = strconv.ParseInt(key[len(prefixTravel):], 10, 64); err == nil {
			if err = json.Unmarshal(v, p); err == nil {
				st.travel[id] = p
			}
		}
	case strings.HasPrefix(key, prefixHours):
		var id int64
		if id, err = strconv.ParseInt(key[len(prefixHours):], 10, 64); err == nil {
			st.hours[id] = string(v)
		}
	case strings.HasPrefix(key, prefixFirst):
		st.first[key[len(prefixFirst):]] = string(v)
	case strings.HasPrefix(key, prefixGroup):
		var id int64
		var g group
		if id, err = strconv.ParseInt(key[len(prefixGroup):], 10, 64); err == nil {
			if err = json.Unmarshal(v, &g); err == nil {
				st.groups[id] = g
			}
		}
	case strings.HasPrefix(key, prefixCateg):
		var id int64
		if id, err = strconv.ParseInt(key[len(prefixCateg):], 10, 64); err == nil {
			st.categs[id] = string(v)
		}
	case strings.HasPrefix(key, prefixMember):
		var id int64
		var gids []int64
		if id, err = strconv.ParseInt(key[len(prefixMember):], 10, 64); err == nil {
			if err = json.Unmarshal(v, &gids); err == nil {
				st.members[id] = gids
			}
		}
	default:
		return fmt.Errorf("rules: unknown state record %q", key)
	}
	if err != nil {
		return fmt.Errorf("rules: state record %s: malformed", key)
	}
	return nil
}

// Learn takes what a snapshot row teaches: groups, their categories and
// members (a snapshot row is no activity: no rule judges it).
func (st *Stage) Learn(e *audit.Event) { st.learn(e) }

// Observe judges the events of a transaction (or of a part of a huge one)
// once they are attributed, in stream order. Events judged before (a
// replay after a crash or a reconnection) only teach groups again.
func (st *Stage) Observe(events []*audit.Event) {
	for _, e := range events {
		st.learn(e)
		if e.Op == audit.OpSnapshot {
			continue
		}
		id := e.ID()
		if id <= st.seen {
			continue // judged before the crash: its hits are stored
		}
		st.seen, st.last = id, e.CommitTime
		st.dirty[keySeen] = true
		user := userOf(e)
		if user <= 0 || e.Actor.Login == superuserLogin {
			continue
		}
		if st.cfg.MassChange.N > 0 {
			st.massChange(e, id, user)
		}
		if st.cfg.TravelKmh > 0 && st.sessions != nil && e.Actor.SessionID != "" {
			st.impossibleTravel(e, id, user)
		}
		if len(st.cfg.Hours) > 0 {
			st.workingHours(e, id, user)
		}
		if len(st.cfg.Sensitive) > 0 {
			st.sensitive(e, id, user)
		}
	}
}

// superuserLogin is Odoo's __system__ (user 1): module installs and
// upgrades, and the scheduled jobs, run as it. Its thousands of changes at
// an install are the application's own, not a person's: the rules judge
// people (installs show as schema_migration; raw SQL has no user at all).
const superuserLogin = "__system__"

func userOf(e *audit.Event) int64 {
	if e.Actor.UserID == nil {
		return 0
	}
	return *e.Actor.UserID
}

// modelOf is the event's model, or its table when the model is unknown
// (a many2many relation table has none).
func modelOf(e *audit.Event) string {
	if e.Model != "" {
		return e.Model
	}
	return e.Table
}

// hit queues a suspicious-activity alert for rule, caused by event id.
func (st *Stage) hit(rule string, e *audit.Event, id string, a alerts.Alert) {
	a.ID = alerts.KindSuspicious + "/" + rule + "/" + id
	a.Kind, a.Rule, a.Time = alerts.KindSuspicious, rule, e.CommitTime
	a.UserID, a.Login = userOf(e), e.Actor.Login
	if a.Session == "" {
		a.Session = e.Actor.SessionID
	}
	if !slices.Contains(a.Events, id) {
		a.Events = append(a.Events, id)
	}
	if e.Actor.SessionID != "" && !slices.Contains(a.Sessions, e.Actor.SessionID) {
		a.Sessions = append(a.Sessions, e.Actor.SessionID)
	}
	st.queued = append(st.queued, alerts.Queue(a))
}

// who names the user of an event for a summary.
func who(e *audit.Event) string {
	if e.Actor.Login != "" {
		return e.Actor.Login
	}
	return "user #" + strconv.FormatInt(userOf(e), 10)
}

// ---- mass change

// massWindow is one user's recent deletes and updates of one model: one
// entry per commit time. A burst is open from the change that crossed the
// threshold until Within passes without a change.
type massWindow struct {
	Entries []massEntry `json:"entries"`
	Open    time.Time   `json:"open,omitzero"`
	total   int         // the sum of Entries' N (kept, not stored)
}

type massEntry struct {
	At    time.Time `json:"at"`
	N     int       `json:"n"`
	First string    `json:"first"` // its first event
}

// UnmarshalJSON reads a stored window and counts its entries.
func (w *massWindow) UnmarshalJSON(b []byte) error {
	type stored massWindow
	var s stored
	if err := json.Unmarshal(b, &s); err != nil {
		return err
	}
	*w = massWindow(s)
	w.total = 0
	for _, x := range w.Entries {
		w.total += x.N
	}
	return nil
}

// maxMassEntries bounds a window (the oldest entries go first).
const maxMassEntries = 4096

// massGrain is the time an entry counts: the changes of every transaction
// committed within one second are one entry. A window holds a few hundred
// entries at most (written with each batch that touches it), where one per
// transaction made a busy window thousands long.
const massGrain = time.Second

// add counts n at `at` (first: the first event or entry counted) and
// returns the total within rate.Within, and whether it crossed rate.N and
// opened a new burst.
func (w *massWindow) add(at time.Time, n int, first string, rate Rate) (int, bool) {
	from := at.Add(-rate.Within)
	i := 0
	for i < len(w.Entries) && !w.Entries[i].At.After(from) {
		w.total -= w.Entries[i].N
		i++
	}
	w.Entries = w.Entries[i:]
	grain := at.Truncate(massGrain)
	if k := len(w.Entries); k > 0 && w.Entries[k-1].At.Equal(grain) {
		w.Entries[k-1].N += n
	} else {
		if k == maxMassEntries {
			w.total -= w.Entries[0].N
			w.Entries = w.Entries[1:]
		}
		w.Entries = append(w.Entries, massEntry{At: grain, N: n, First: first})
	}
	w.total += n
	total := w.total
	if !w.Open.IsZero() && !at.After(w.Open.Add(rate.Within)) {
		w.Open = at // the burst goes on
		return total, false
	}
	w.Open = time.Time{}
	if total <= rate.N {
		return total, false
	}
	w.Open = at
	return total, true
}

// stale reports whether the window holds nothing within d of now.
func (w *massWindow) stale(now time.Time, d time.Duration) bool {
	k := len(w.Entries)
	return k == 0 || now.Sub(w.Entries[k-1].At) > d
}

func (st *Stage) massChange(e *audit.Event, id string, user int64) {
	if e.Op != audit.OpUpdate && e.Op != audit.OpDelete {
		return
	}
	rate := st.cfg.MassChange
	model := modelOf(e)
	w := st.lastMass
	if w == nil || user != st.lastMassUser || model != st.lastMassModel {
		// A transaction's changes mostly share their user and model: the
		// window's key is built and marked once for a run of them.
		key := strconv.FormatInt(user, 10) + "/" + model
		if w = st.mass[key]; w == nil {
			w = &massWindow{}
			st.mass[key] = w
		}
		st.dirty[prefixMass+key] = true
		st.lastMass, st.lastMassUser, st.lastMassModel = w, user, model
	}
	total, crossed := w.add(e.CommitTime, 1, id, rate)
	if !crossed {
		return
	}
	st.hit(RuleMassChange, e, id, alerts.Alert{
		Events:  []string{w.Entries[0].First},
		Summary: fmt.Sprintf("%s deleted or changed %d %s records within %s", who(e), total, model, shortDuration(rate.Within)),
		Detail:  map[string]string{"model": model, "count": strconv.Itoa(total), "threshold": rate.String()},
	})
}

// expireMass forgets windows with nothing in them any more.
func (st *Stage) expireMass(now time.Time) {
	for k, w := range st.mass {
		if w.stale(now, st.cfg.MassChange.Within) {
			delete(st.mass, k)
			st.dirty[prefixMass+k] = true
		}
	}
}

// ---- sensitive models

func (st *Stage) sensitive(e *audit.Event, id string, user int64) {
	switch e.Op {
	case audit.OpInsert, audit.OpUpdate, audit.OpDelete:
	default:
		return
	}
	model := modelOf(e)
	for _, entry := range st.cfg.Sensitive {
		name, post := strings.CutSuffix(entry, ":post")
		if name != model && name != e.Table || post && !posted(e) {
			continue
		}
		key := strconv.FormatInt(user, 10) + "/" + entry
		if _, ok := st.first[key]; ok {
			continue
		}
		st.first[key] = id
		st.dirty[prefixFirst+key] = true
		what := "changed " + model
		if post {
			what = "posted a journal entry (" + model + ")"
		}
		st.hit(RuleSensitiveModel, e, id, alerts.Alert{
			Summary: fmt.Sprintf("%s %s for the first time", who(e), what),
			Detail:  map[string]string{"model": model, "entry": entry, "op": e.Op.String()},
		})
	}
}

// posted reports whether an update posts a journal entry: its state
// becomes "posted" (Odoo's account.move action_post writes state =
// 'posted'; a reset to draft and a re-post is a posting again).
func posted(e *audit.Event) bool {
	if e.Op != audit.OpUpdate {
		return false
	}
	after, ok := e.After.Get("state")
	if !ok || string(after) != `"posted"` {
		return false
	}
	if before, ok := e.Before.Get("state"); ok {
		return string(before) != `"posted"`
	}
	return slices.Contains(e.Changed, "state") // no before-image: the change set says
}

// ---- working hours

func (st *Stage) workingHours(e *audit.Event, id string, user int64) {
	var apply []Hours
	for _, h := range st.cfg.Hours {
		if st.memberOf(user, h.Group) {
			apply = append(apply, h)
		}
	}
	if len(apply) == 0 {
		return
	}
	for _, h := range apply {
		if h.contains(e.CommitTime) {
			return
		}
	}
	local := e.CommitTime.In(apply[0].Loc)
	day := local.Format("2006-01-02")
	if st.hours[user] == day {
		return // one hit a day
	}
	st.hours[user] = day
	st.dirty[prefixHours+strconv.FormatInt(user, 10)] = true
	st.hit(RuleWorkingHours, e, id, alerts.Alert{
		Summary: fmt.Sprintf("%s changed %s at %s, outside the working hours of %q", who(e), modelOf(e), local.Format("Mon 15:04 MST"), apply[0].Group),
		Detail:  map[string]string{"group": apply[0].Group, "local_time": local.Format(time.RFC3339), "model": modelOf(e)},
	})
}

// memberOf reports whether the user is in the group named name: its own
// name, or "Category / Name" as Odoo shows it (case does not matter).
func (st *Stage) memberOf(user int64, name string) bool {
	for _, gid := range st.members[user] {
		g := st.groups[gid]
		if strings.EqualFold(g.Name, name) {
			return true
		}
		if c := st.categs[g.Category]; c != "" && strings.EqualFold(c+" / "+g.Name, name) {
			return true
		}
	}
	return false
}

// Dirty returns the records changed since the last call and the alerts
// queued, to store with the batch of the events that caused them.
func (st *Stage) Dirty() []sink.StateRecord {
	if len(st.dirty) == 0 && len(st.queued) == 0 {
		return nil
	}
	if st.cfg.MassChange.N > 0 && !st.last.IsZero() {
		st.expireMass(st.last)
	}
	out := st.queued
	st.queued = nil
	keys := make([]string, 0, len(st.dirty))
	for k := range st.dirty {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		out = append(out, sink.StateRecord{Bucket: Bucket, Key: k, Value: st.value(k)})
	}
	clear(st.dirty)
	st.lastMass = nil
	return out
}

// value is the record of a key (nil: deleted).
func (st *Stage) value(k string) []byte {
	id := func(prefix string) int64 { n, _ := strconv.ParseInt(k[len(prefix):], 10, 64); return n }
	var v any
	switch {
	case k == keySeen:
		return []byte(st.seen)
	case strings.HasPrefix(k, prefixMass):
		if w := st.mass[k[len(prefixMass):]]; w != nil {
			v = w
		}
	case strings.HasPrefix(k, prefixTravel):
		if p := st.travel[id(prefixTravel)]; p != nil {
			v = p
		}
	case strings.HasPrefix(k, prefixHours):
		if d, ok := st.hours[id(prefixHours)]; ok {
			return []byte(d)
		}
	case strings.HasPrefix(k, prefixFirst):
		if e, ok := st.first[k[len(prefixFirst):]]; ok {
			return []byte(e)
		}
	case strings.HasPrefix(k, prefixGroup):
		if g, ok := st.groups[id(prefixGroup)]; ok {
			v = g
		}
	case strings.HasPrefix(k, prefixCateg):
		if c, ok := st.categs[id(prefixCateg)]; ok {
			return []byte(c)
		}
	case strings.HasPrefix(k, prefixMember):
		if m, ok := st.members[id(prefixMember)]; ok {
			v = m
		}
	}
	if v == nil {
		return nil
	}
	b, _ := json.Marshal(v)
	return b
}
