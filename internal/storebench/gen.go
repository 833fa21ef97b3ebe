// Package storebench generates a realistic audit trail of any size and
// writes it into a store through the real write path (Store.Append, with
// the events' Terms as the pipeline gives them), for the query benchmarks
// and for fixed test stores.
//
// The trail is that of a busy ERP at a steady rate (EventsPerDay): a bigger
// store is a longer history, not a busier day, so a record's history, a
// session and one table's day hold about as many events in a store of 100k
// events as in one of 10M. Within it:
//   - a few hundred users, Zipf-distributed by activity; each works in
//     sessions of a few hours (so sessions grow with the history: about a
//     thousand per 100k events);
//   - ~50 tables, Zipf-distributed by traffic; records are created over
//     time, and changes pick a record Zipf-distributed by recency (most
//     changes touch recent records, old ones still now and then);
//   - transactions of 1–50 events, mostly small, by one actor;
//   - inserts, updates (REPLICA IDENTITY FULL: the whole row before),
//     deletes, rare key changes and truncates of a transient table; a few
//     updates flagged orm_bypass; some changes with no user (cron jobs) or
//     with an ambiguous session.
//
// The same Workload (size and seed) always yields the same events.
package storebench

import (
	"encoding/hex"
	"math/rand/v2"
	"strconv"
	"time"

	"github.com/cdcaudit/cdcaudit/audit"
	"github.com/cdcaudit/cdcaudit/sink"
)

// Workload sizes the generated trail.
type Workload struct {
	Events       int    // row events
	Seed         uint64 // the same seed, the same events
	Users        int
	Tables       int // at most len(tableNames)
	EventsPerDay int
	Start        time.Time // the first commit time
}

// Default is the benchmark workload of n events.
func Default(n int, seed uint64) Workload {
	return Workload{Events: n, Seed: seed, Users: 300, Tables: 50, EventsPerDay: 60_000,
		Start: time.Date(2026, 1, 5, 7, 0, 0, 0, time.UTC)}
}

// Generator produces the events of a Workload, one transaction at a time.
type Generator struct {
	w       Workload
	rng     *rand.Rand
	tables  []*table
	byTable *rand.Zipf
	byUser  *rand.Zipf
	users   []user
	made    int
	lsn     uint64
	xid     uint32
	now     time.Time
	gap     time.Duration // mean time between transactions
	session uint64        // sessions begun so far
	sample  *Targets
	picks   *rand.Rand // samples targets without disturbing the stream
}

type keyKind uint8

const (
	intKey  keyKind = iota // {"id": n}
	pairKey                // {"order_id": a, "tag_id": b}: a relation table, insert/delete only
	textKey                // {"code": "…"}: keys that get renamed now and then
)

type table struct {
	schema, name, model string
	kind                keyKind
	transient           bool // truncated now and then
	// versions[id-1] counts a record's changes; gone marks a deleted (or
	// renamed-away) record.
	versions []uint16
	recent   *rand.Zipf
}

const gone = 0xFFFF

// meanTxSize is txSize's mean: 0.5×2 + 0.35×8 + 0.15×31.5.
const meanTxSize = 8.5

type user struct {
	id           int64
	login        string
	session      string // "" before the first
	sessionStart time.Time
	sessionLen   time.Duration
}

// tableNames are Odoo-like tables, busiest first.
var tableNames = []string{
	"mail_message", "account_move_line", "stock_move_line", "stock_move", "sale_order_line",
	"mail_followers", "account_move", "stock_quant", "product_product", "res_partner",
	"sale_order", "purchase_order_line", "stock_picking", "mail_tracking_value", "account_payment",
	"account_partial_reconcile", "purchase_order", "product_template", "crm_lead", "project_task",
	"hr_attendance", "account_bank_statement_line", "stock_valuation_layer", "mail_activity", "hr_leave",
	"account_analytic_line", "mrp_production", "stock_lot", "pos_order", "pos_order_line",
	"res_users", "product_pricelist_item", "account_tax", "hr_expense", "mrp_workorder",
	"helpdesk_ticket", "sale_order_tag_rel", "res_partner_category_rel", "calendar_event", "stock_location",
	"stock_warehouse_orderpoint", "account_journal", "res_company", "ir_attachment", "product_category",
	"uom_uom", "res_currency_rate", "ir_config_parameter", "bus_presence", "mail_compose_message",
}

// NewGenerator returns the generator of w.
func NewGenerator(w Workload) *Generator {
	if w.Tables <= 0 || w.Tables > len(tableNames) {
		w.Tables = len(tableNames)
	}
	g := &Generator{w: w, rng: rand.New(rand.NewPCG(w.Seed, 0x5eed)), lsn: 0x1000000, xid: 1000, now: w.Start,
		picks: rand.New(rand.NewPCG(w.Seed, 0x7a26e7)), sample: &Targets{Workload: w}}
	g.gap = time.Duration(float64(24*time.Hour) * meanTxSize / float64(max(w.EventsPerDay, 1)))
	g.byTable = rand.NewZipf(g.rng, 1.3, 2, uint64(w.Tables-1))
	g.byUser = rand.NewZipf(g.rng, 1.1, 8, uint64(max(w.Users, 1)-1))
	for i := 0; i < w.Tables; i++ {
		name := tableNames[i]
		t := &table{schema: "public", name: name, model: modelName(name), kind: intKey}
		switch name {
		case "sale_order_tag_rel", "res_partner_category_rel":
			t.kind, t.model = pairKey, ""
		case "ir_config_parameter", "stock_lot":
			t.kind = textKey
		case "bus_presence", "mail_compose_message":
			t.transient = true
		case "res_company", "account_journal":
			t.schema = "acct" // a second schema, so schema.table matters
		}
		t.recent = rand.NewZipf(g.rng, 1.2, 1, 1<<40)
		g.tables = append(g.tables, t)
	}
	for i := 0; i < max(w.Users, 1); i++ {
		g.users = append(g.users, user{id: int64(i + 2), login: login(i)})
	}
	return g
}

func modelName(table string) string {
	b := []byte(table)
	for i, c := range b {
		if c == '_' {
			b[i] = '.'
		}
	}
	return string(b)
}

var firstNames = []string{"anna", "ben", "carla", "dmitri", "elif", "femi", "greta", "hugo", "ines", "jon", "kemal", "lena", "marco", "nadia", "oskar", "pia", "quentin", "rosa", "sven", "tara"}
var lastNames = []string{"meier", "dubois", "rossi", "novak", "garcia", "jansen", "kowalski", "silva", "berg", "costa", "ivanova", "schmidt", "moreau", "bianchi", "horvat", "lindqvist"}

func login(i int) string {
	return firstNames[i%len(firstNames)] + "." + lastNames[(i/len(firstNames))%len(lastNames)] +
		strconv.Itoa(i/(len(firstNames)*len(lastNames))+1) + "@example.com"
}

// Done reports whether every event has been produced.
func (g *Generator) Done() bool { return g.made >= g.w.Events }

// Targets returns what the benchmarks ask about, sampled from what the
// generator produced so far.
func (g *Generator) Targets() *Targets {
	t := *g.sample
	t.End = g.now
	for _, tb := range g.tables {
		t.TableRecords = append(t.TableRecords, TableRecords{Schema: tb.schema, Table: tb.name, Records: len(tb.versions), PairKey: tb.kind == pairKey, TextKey: tb.kind == textKey})
	}
	return &t
}

// Targets are the questions the benchmarks ask: real users, sessions,
// records and days of the trail.
type Targets struct {
	Workload     Workload
	End          time.Time // the last commit time
	Sessions     []string  // a uniform sample of the sessions
	TableRecords []TableRecords
}

// TableRecords says how many records a table was given (ids 1..Records).
type TableRecords struct {
	Schema, Table    string
	Records          int
	PairKey, TextKey bool
}

// txSize: half of the transactions change 1–3 rows, a third 4–12, the rest
// 13–50 (meanTxSize on average).
func (g *Generator) txSize() int {
	switch p := g.rng.Float64(); {
	case p < 0.5:
		return 1 + g.rng.IntN(3)
	case p < 0.85:
		return 4 + g.rng.IntN(9)
	default:
		return 13 + g.rng.IntN(38)
	}
}

// AppendTx appends the next transaction's events to b (at most what is
// left of the workload) and sets its checkpoint and commit time. termsOf
// gives each event's terms (nil: the store parses the record).
func (g *Generator) AppendTx(b *sink.Batch, arena *[]byte, termsOf func(*audit.Event) *audit.Terms) {
	n := min(g.txSize(), g.w.Events-g.made)
	// Exponential gaps: bursts and lulls, at the workload's mean rate.
	g.now = g.now.Add(time.Duration(g.rng.ExpFloat64()*float64(g.gap)) + time.Microsecond)
	g.xid++
	g.lsn += 0x400 + uint64(n)*0x180
	commit := g.lsn
	actor := g.actor()

	var events []*audit.Event
	if g.rng.IntN(4000) == 0 {
		if t := g.transientTable(); t != nil {
			events = append(events, g.truncate(t))
		}
	}
	for len(events) < n {
		t := g.tables[g.byTable.Uint64()]
		events = append(events, g.change(t, actor)...)
	}
	events = events[:n]
	for i, e := range events {
		e.LSN, e.CommitLSN, e.Ordinal, e.XID, e.CommitTime, e.Database = commit-0x100+uint64(i)*0x10, commit, uint32(i+1), g.xid, g.now, "odoo"
		if e.Op != audit.OpTruncate {
			e.Actor = actor
		}
		body := appendBody(arena, e)
		enc := sink.Encoded{Key: e.StoreKey(), Body: body}
		if termsOf != nil {
			enc.Terms = termsOf(e)
		}
		b.Events = append(b.Events, enc)
	}
	g.made += n
	b.Checkpoint = commit + 8
	b.CommitTime = g.now
}

// appendBody encodes e into the arena, leaving room for its seal (Append
// seals in place), and returns its slice: capped, so it owns that room.
func appendBody(arena *[]byte, e *audit.Event) []byte {
	start := len(*arena)
	*arena = e.AppendBody(*arena)
	end := len(*arena)
	sealed := audit.SealedLen(end - start)
	*arena = append(*arena, make([]byte, sealed-(end-start))...)
	return (*arena)[start : end : start+sealed]
}

func (g *Generator) transientTable() *table {
	for _, t := range g.tables {
		if t.transient && len(t.versions) > 0 {
			return t
		}
	}
	return nil
}

// actor picks who makes the next transaction: mostly a user in a session;
// some cron jobs (no user); some with an ambiguous session; a few known by
// id only.
func (g *Generator) actor() audit.Actor {
	switch p := g.rng.Float64(); {
	case p < 0.08:
		return audit.Actor{UserVia: "none", SessionVia: "none"}
	case p < 0.09:
		id := int64(1000 + g.rng.IntN(50))
		return audit.Actor{UserID: &id, UserVia: "row_user", SessionVia: "none"}
	}
	u := &g.users[g.byUser.Uint64()]
	if u.session == "" || g.now.Sub(u.sessionStart) > u.sessionLen {
		g.session++
		var raw [12]byte
		for i := range raw {
			raw[i] = byte(g.rng.Uint32())
		}
		u.session, u.sessionStart = "s"+hex.EncodeToString(raw[:]), g.now
		u.sessionLen = time.Duration(1+g.rng.IntN(8)) * time.Hour
		// Reservoir sample of the sessions, from its own generator.
		if len(g.sample.Sessions) < 1000 {
			g.sample.Sessions = append(g.sample.Sessions, u.session)
		} else if j := g.picks.Uint64N(g.session); j < 1000 {
			g.sample.Sessions[j] = u.session
		}
	}
	id := u.id
	a := audit.Actor{UserID: &id, Login: u.login, UserVia: "session_row", SessionID: u.session, SessionVia: "same_tx"}
	if g.rng.IntN(40) == 0 {
		a.SessionID, a.SessionVia = "", "ambiguous"
	}
	return a
}

func (g *Generator) truncate(t *table) *audit.Event {
	for i := range t.versions {
		t.versions[i] = gone
	}
	return &audit.Event{Schema: t.schema, Table: t.name, Model: t.model, Op: audit.OpTruncate}
}

// change makes one change to a record of t (an insert when it finds none).
func (g *Generator) change(t *table, actor audit.Actor) []*audit.Event {
	p := g.rng.Float64()
	if len(t.versions) == 0 || p < 0.2 || t.kind == pairKey && p < 0.7 {
		return []*audit.Event{g.insert(t, actor)}
	}
	id := g.pick(t)
	if id == 0 {
		return []*audit.Event{g.insert(t, actor)}
	}
	v := t.versions[id-1]
	switch {
	case p < 0.26 || t.kind == pairKey:
		t.versions[id-1] = gone
		before := g.row(t, id, v, actor)
		return []*audit.Event{{Schema: t.schema, Table: t.name, Model: t.model, Op: audit.OpDelete,
			Key: g.key(t, id), Before: before, BeforeSource: audit.BeforeWAL, Changed: []string{}}}
	case t.kind == textKey && p < 0.27:
		// A key change: the record moves to a new key (a new id slot).
		t.versions[id-1] = gone
		t.versions = append(t.versions, v+1)
		nid := len(t.versions)
		before, after := g.row(t, id, v, actor), g.row(t, nid, v+1, actor)
		return []*audit.Event{{Schema: t.schema, Table: t.name, Model: t.model, Op: audit.OpUpdate,
			Key: g.key(t, nid), Before: before, After: after, BeforeSource: audit.BeforeWAL, Changed: changed(before, after)}}
	}
	t.versions[id-1] = v + 1
	before, after := g.row(t, id, v, actor), g.row(t, id, v+1, actor)
	e := &audit.Event{Schema: t.schema, Table: t.name, Model: t.model, Op: audit.OpUpdate,
		Key: g.key(t, id), Before: before, After: after, BeforeSource: audit.BeforeWAL, Changed: changed(before, after)}
	if g.rng.IntN(200) == 0 {
		e.Flags = []string{"orm_bypass"}
	}
	return []*audit.Event{e}
}

// pick chooses a live record of t, Zipf-distributed by recency; 0 when it
// finds none quickly.
func (g *Generator) pick(t *table) int {
	n := uint64(len(t.versions))
	for range 4 {
		r := t.recent.Uint64()
		if r >= n {
			r = g.rng.Uint64N(n)
		}
		id := int(n - r)
		if t.versions[id-1] != gone && t.versions[id-1] < gone-1 {
			return id
		}
	}
	return 0
}

func (g *Generator) insert(t *table, actor audit.Actor) *audit.Event {
	t.versions = append(t.versions, 0)
	id := len(t.versions)
	after := g.row(t, id, 0, actor)
	names := make([]string, len(after))
	for i, c := range after {
		names[i] = c.Name
	}
	return &audit.Event{Schema: t.schema, Table: t.name, Model: t.model, Op: audit.OpInsert,
		Key: g.key(t, id), After: after, Changed: names}
}

// key is record id's key in t.
func (g *Generator) key(t *table, id int) audit.Row {
	switch t.kind {
	case pairKey:
		a, b := PairOf(id)
		return audit.Row{{Name: "order_id", Value: strconv.AppendInt(nil, int64(a), 10)}, {Name: "tag_id", Value: strconv.AppendInt(nil, int64(b), 10)}}
	case textKey:
		return audit.Row{{Name: "code", Value: audit.AppendString(nil, TextKeyOf(id))}}
	}
	return audit.Row{{Name: "id", Value: strconv.AppendInt(nil, int64(id), 10)}}
}

// PairOf is the key of record id of a relation table.
func PairOf(id int) (a, b int) { return id/7 + 1, id%7 + 1 }

// TextKeyOf is the key of record id of a table with a text key.
func TextKeyOf(id int) string { return "REF/" + strconv.Itoa(2026) + "/" + strconv.Itoa(100000+id) }

var states = []string{`"draft"`, `"sent"`, `"sale"`, `"done"`, `"cancel"`}
var words = []string{"delivery", "invoice", "urgent", "customer", "called", "back", "price", "agreed", "partial", "stock", "pallet", "late", "ok", "Müller GmbH", "€", "see attachment", "per contract"}

// row is version v of record id: the same (t, id, v) always gives the same
// row, so an update's before-image is the row the change before it wrote.
func (g *Generator) row(t *table, id int, v uint16, actor audit.Actor) audit.Row {
	h := uint64(id)*0x9E3779B97F4A7C15 ^ uint64(v)*0xBF58476D1CE4E5B9 ^ g.w.Seed
	h ^= h >> 31
	key := g.key(t, id)
	r := append(audit.Row{}, key...)
	if t.kind == pairKey {
		return r
	}
	num := func(n uint64) []byte { return strconv.AppendUint(nil, n, 10) }
	note := make([]byte, 0, 200)
	for i := 0; i < int(h%24); i++ {
		if i > 0 {
			note = append(note, ' ')
		}
		note = append(note, words[(h>>(i%40))%uint64(len(words))]...)
	}
	amount := strconv.FormatUint(h%1_000_000, 10)
	amount = amount[:max(len(amount)-2, 1)] + "." + "05"
	writeUID := int64(1)
	if actor.UserID != nil && v > 0 {
		writeUID = int64(h%uint64(len(g.users))) + 2
	}
	stamp := g.w.Start.Add(time.Duration(h%(180*24*3600)) * time.Second)
	r = append(r,
		audit.Column{Name: "name", Value: audit.AppendString(nil, t.name[:3]+"/"+strconv.Itoa(id))},
		audit.Column{Name: "state", Value: []byte(states[(int(v)+id)%len(states)])},
		audit.Column{Name: "amount_total", Value: audit.AppendString(nil, amount)},
		audit.Column{Name: "partner_id", Value: num(h%5000 + 1)},
		audit.Column{Name: "company_id", Value: []byte("1")},
		audit.Column{Name: "note", Value: audit.AppendString(nil, note)},
		audit.Column{Name: "active", Value: []byte("true")},
		audit.Column{Name: "create_uid", Value: []byte("2")},
		audit.Column{Name: "create_date", Value: audit.AppendString(nil, g.w.Start.Add(time.Duration(id)*time.Second).Format("2006-01-02 15:04:05.999999"))},
		audit.Column{Name: "write_uid", Value: num(uint64(writeUID))},
		audit.Column{Name: "write_date", Value: audit.AppendString(nil, stamp.Format("2006-01-02 15:04:05.999999"))},
	)
	return r
}

// changed lists the columns whose values differ.
func changed(before, after audit.Row) []string {
	var out []string
	for _, c := range after {
		if v, ok := before.Get(c.Name); !ok || string(v) != string(c.Value) {
			out = append(out, c.Name)
		}
	}
	return out
}
