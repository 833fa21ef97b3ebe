package correlate

import (
	"bytes"
	"encoding/json"
	"math"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/cdcaudit/cdcaudit/audit"
	"github.com/cdcaudit/cdcaudit/profile"
)

// Values of actor.user_via.
const (
	ViaMessage    = "message"
	ViaSessionRow = "session_row"
	ViaRowUser    = "row_user"
	ViaTxPeer     = "tx_peer"
	ViaNone       = "none"
)

// Values of actor.session_via (and none).
const (
	SessionMessage    = "message"
	SessionSameTx     = "same_tx"
	SessionOnlyActive = "only_active"
	SessionAmbiguous  = "ambiguous"
)

// Flags.
const (
	// FlagORMBypass marks an update that changed business columns without
	// the application stamping its audit columns: raw SQL.
	FlagORMBypass = "orm_bypass"
	// FlagSchemaMigration marks such an update made by a transaction that
	// changed its table's shape (or, for the application's reflection
	// tables, any table's): the application installing or upgrading a
	// module.
	FlagSchemaMigration = "schema_migration"
	// FlagCdcaudit marks the changes cdcaudit itself made (ending a
	// session: sessionctl), as its message in the transaction says
	// ("by":"cdcaudit"). Like the message's user, it is what the message
	// claims: whoever may emit logical decoding messages could claim it.
	FlagCdcaudit = "cdcaudit"
)

// maxTxAge is longer than any application transaction runs: an updated_at
// older than the commit by more was not stamped by this transaction.
const maxTxAge = 24 * time.Hour

// MessagePrefix is the prefix of the logical decoding messages that name the
// acting user: pg_logical_emit_message(true, 'cdcaudit', '{"user_id":…}').
const MessagePrefix = "cdcaudit"

// Limits on untrusted message content.
const (
	maxMessageLen   = 4096
	maxSessionIDLen = 256
)

// SessionSource is implemented by sessions.Tracker.
type SessionSource interface {
	// Active returns the open session ids of the user at t, most recently
	// active first.
	Active(userID int64, at time.Time) []string
	// ActiveUsers returns at most limit users with an open session at t,
	// most recently active first.
	ActiveUsers(at time.Time, limit int) []int64
	// Login returns the user's login name.
	Login(userID int64) (string, bool)
	// SessionID returns the pseudonym of an application session identifier
	// (a message's session_id): the raw identifier is a secret, never kept.
	SessionID(raw string) string
	// Touch records activity of a session: called for the session every
	// attributed change is put on, with the commit time.
	Touch(sessionID string, at time.Time)
}

// Message is a transactional logical decoding message of the transaction.
type Message struct {
	Prefix  string
	Content []byte
}

// SessionRow is a session-table row of the transaction, as the Tracker read
// it: the session's user (0 when the row does not name one) and its id.
type SessionRow struct {
	UserID    int64
	SessionID string
}

// Tx is a transaction (or the part received so far of a huge one).
type Tx struct {
	XID         uint32
	CommitTime  time.Time
	Events      []*audit.Event
	Messages    []Message
	SessionRows []SessionRow
	// SchemaChanged names ("schema.table") the tables whose shape the
	// transaction changed (decoder.Tx.SchemaChanged).
	SchemaChanged []string
}

// StateUpdate is one record of derived state; a nil Value deletes the key.
type StateUpdate struct {
	Key   string
	Value []byte
}

type tableRef struct{ schema, table string }

// tableInfo is what the profile says about one table, worked out once.
type tableInfo struct {
	isModels   bool
	reflection bool                 // the application describes its schema here
	full       bool                 // its updates come with a whole before-image
	since      int64                // its rows are in recentStamps since (µs): when it last stopped being full
	rawAll     bool                 // RawWrites allowlist the whole table
	raw        []profile.ColumnRule // RawWrites rules of some of its columns
	// column position hints for the after-image
	createdBy, updatedBy, updatedAt colHint
	model                           string
	modelGen                        uint64
}

// colHint finds a column in a row, remembering where it was last: rows of
// one table share their layout, so this is one comparison per lookup.
type colHint struct {
	name string
	idx  int
}

func (h *colHint) get(r audit.Row) ([]byte, bool) {
	if h.name == "" {
		return nil, false
	}
	if h.idx < len(r) && r[h.idx].Name == h.name {
		return r[h.idx].Value, true
	}
	for i := range r {
		if r[i].Name == h.name {
			h.idx = i
			return r[i].Value, true
		}
	}
	return nil, false
}

// modelRow is one row of the model table.
type modelRow struct {
	Schema string `json:"schema"`
	Model  string `json:"model"`
}

// Correlator attributes changes. See the package documentation.
type Correlator struct {
	p      profile.Profile
	s      SessionSource
	tables map[tableRef]*tableInfo
	last   tableRef // the table of the last lookup: changes come in runs
	lastTI *tableInfo
	// The model table when it is a plain name (not a glob): Observe then
	// costs two string comparisons.
	modelsRef   tableRef
	modelsPlain bool

	// The model map: rows of the model table by state key, and the tables
	// they name. gen changes with every change of models.
	rows   map[string]modelRow
	models map[tableRef]string
	gen    uint64
	dirty  map[string]bool

	// The updated_at values rows carried lately, for updates without a
	// before-image.
	recent recentStamps

	// Scratch of Attribute, reused.
	evs        []evInfo
	stamps     []stamp
	open       []stamp // updated_at values of updates without a before-image, undecided
	txStamps   []int64 // the transaction's plausible stamps (µs since the epoch)
	manyStamps bool    // more distinct ones than txStamps holds
	reflected  bool    // the transaction inserted into a reflection table: a new model or field
	users      []userCount
	sess       []userSession
	maybes     []maybeUser
	active     *audit.Candidates // users active at commit time, once per transaction
	activeDone bool
	ids        map[int64]*int64
}

type evInfo struct {
	ti    *tableInfo
	own   int64 // the row's own user (row_user), 0 = none
	maybe int64 // an update not known to be the application's: the user its updated_by names
	at    int64 // updated_at in µs since the epoch, when atOK
	atOK  bool
	state uint8
	key   string // rowKey's cache
	keyOK bool
}

// evInfo.state: what is left to judge of an update.
const (
	evPlain     = iota // nothing: stamped, or nothing to go by
	evUnchanged        // a whole before-image, updated_at unchanged
	evUnknown          // no before-image: updated_at's value must tell
)

// What judge finds.
const (
	stampOpen = iota
	stampORM
	stampRaw
)

type maybeUser struct {
	id    int64
	cands *audit.Candidates
}

type stamp struct {
	ti    *tableInfo
	value []byte
}

type userCount struct {
	id    int64
	count int
}

type userSession struct {
	user       int64
	id         *int64
	login      string
	session    string
	via        string
	candidates *audit.Candidates // the open sessions, when ambiguous
}

// New returns a Correlator for a profile. s may be nil (no session is ever
// found).
func New(p profile.Profile, s SessionSource) *Correlator {
	c := &Correlator{
		p:      p,
		s:      s,
		tables: map[tableRef]*tableInfo{},
		rows:   map[string]modelRow{},
		models: map[tableRef]string{},
		dirty:  map[string]bool{},
		ids:    map[int64]*int64{},
		recent: newRecentStamps(),
	}
	if m := p.Models; m != nil && !strings.ContainsAny(m.Table, `*?[\`) {
		if schema, table, ok := strings.Cut(m.Table, "."); ok {
			c.modelsRef, c.modelsPlain = tableRef{schema, table}, true
		}
	}
	return c
}

func (c *Correlator) table(schema, table string) *tableInfo {
	ref := tableRef{schema, table}
	if c.lastTI != nil && ref == c.last {
		return c.lastTI
	}
	ti, ok := c.tables[ref]
	if !ok {
		ti = c.newTable(schema, table)
		c.tables[ref] = ti
	}
	c.last, c.lastTI = ref, ti
	return ti
}

func (c *Correlator) newTable(schema, table string) *tableInfo {
	name := schema + "." + table
	cols := c.p.Columns
	ti := &tableInfo{
		createdBy: colHint{name: cols.CreatedBy},
		updatedBy: colHint{name: cols.UpdatedBy},
		updatedAt: colHint{name: cols.UpdatedAt},
		modelGen:  ^uint64(0),
	}
	if m := c.p.Models; m != nil && profile.Match(m.Table, name) {
		ti.isModels = true
	}
	for _, g := range c.p.Reflection {
		ti.reflection = ti.reflection || profile.Match(g, name)
	}
	for _, r := range c.p.RawWrites {
		if !profile.Match(r.Table, name) {
			continue
		}
		if r.Column == "*" && r.Where == "" {
			ti.rawAll = true
		} else {
			ti.raw = append(ti.raw, r)
		}
	}
	return ti
}

// Observe sees every event in stream order and keeps the model map current.
func (c *Correlator) Observe(e *audit.Event) {
	if c.p.Models == nil {
		return
	}
	if c.modelsPlain {
		if e.Table != c.modelsRef.table || e.Schema != c.modelsRef.schema {
			return
		}
	} else if !c.table(e.Schema, e.Table).isModels {
		return
	}
	switch e.Op {
	case audit.OpInsert, audit.OpUpdate:
		v, ok := e.After.Get(c.p.Models.Model)
		model, isStr := stringValue(v)
		if !ok || !isStr || model == "" {
			return
		}
		c.setModel(stateKey(e.Schema, e.Key, model), modelRow{Schema: e.Schema, Model: model})
	case audit.OpDelete:
		fallback := ""
		if v, ok := e.Before.Get(c.p.Models.Model); ok {
			fallback, _ = stringValue(v)
		}
		c.deleteModel(stateKey(e.Schema, e.Key, fallback))
	case audit.OpTruncate:
		for k, r := range c.rows {
			if r.Schema == e.Schema {
				c.deleteModel(k)
			}
		}
	}
}

// SeedModel records a row of the model table that predates the stream
// (the rows Odoo wrote at install time are never in it), unless the stream
// already has that row: for one read of the model table at first start.
// key is the row's key as the decoder encodes it (Odoo:
// audit.Row{{Name: "id", Value: []byte("42")}}); the row is persisted like
// one seen in the stream.
func (c *Correlator) SeedModel(schema string, key audit.Row, model string) {
	if model == "" {
		return
	}
	k := stateKey(schema, key, model)
	if _, ok := c.rows[k]; ok {
		return
	}
	c.setModel(k, modelRow{Schema: schema, Model: model})
}

// ModelOf returns the application model of a table ("" when unknown):
// what Attribute sets on its events, for rows that are not attributed.
func (c *Correlator) ModelOf(schema, table string) string {
	return c.models[tableRef{schema, table}]
}

// stateKey names a model-table row: by its key ("model:public:id=42"), or by
// the model name when the table has no key.
func stateKey(schema string, key audit.Row, model string) string {
	var b strings.Builder
	b.WriteString("model:")
	b.WriteString(schema)
	b.WriteByte(':')
	if len(key) == 0 {
		b.WriteString("model=")
		b.WriteString(model)
		return b.String()
	}
	for i, k := range key {
		if i > 0 {
			b.WriteByte(',')
		}
		b.WriteString(k.Name)
		b.WriteByte('=')
		b.Write(k.Value)
	}
	return b.String()
}

// tableOf returns the table of a model: its name with '.' → '_'.
func tableOf(schema, model string) tableRef {
	return tableRef{schema, strings.ReplaceAll(model, ".", "_")}
}

func (c *Correlator) setModel(key string, r modelRow) {
	if old, ok := c.rows[key]; ok {
		if old == r {
			return
		}
		delete(c.rows, key)
		c.unmap(old)
	}
	c.rows[key] = r
	c.models[tableOf(r.Schema, r.Model)] = r.Model
	c.gen++
	c.dirty[key] = true
}

func (c *Correlator) deleteModel(key string) {
	old, ok := c.rows[key]
	if !ok {
		return
	}
	delete(c.rows, key)
	c.unmap(old)
	c.gen++
	c.dirty[key] = true
}

// unmap removes the table of a model row that is gone, unless another row
// still names a model of that table.
func (c *Correlator) unmap(old modelRow) {
	t := tableOf(old.Schema, old.Model)
	if c.models[t] != old.Model {
		return
	}
	delete(c.models, t)
	for _, r := range c.rows {
		if tableOf(r.Schema, r.Model) == t {
			c.models[t] = r.Model
			return
		}
	}
}

// Model returns the model name of a table ("" when unknown).
func (c *Correlator) Model(schema, table string) string {
	return c.models[tableRef{schema, table}]
}

// Dirty returns the state records changed since the last call, in key
// order (Value nil: delete the key), for the store to write with the events
// of the transaction that changed them.
func (c *Correlator) Dirty() []StateUpdate {
	if len(c.dirty) == 0 {
		return nil
	}
	out := make([]StateUpdate, 0, len(c.dirty))
	for k := range c.dirty {
		u := StateUpdate{Key: k}
		if r, ok := c.rows[k]; ok {
			u.Value, _ = json.Marshal(r)
		}
		out = append(out, u)
	}
	clear(c.dirty)
	slices.SortFunc(out, func(a, b StateUpdate) int { return strings.Compare(a.Key, b.Key) })
	return out
}

// Load restores one record written by Dirty (before streaming starts).
func (c *Correlator) Load(key string, value []byte) error {
	if !strings.HasPrefix(key, "model:") {
		return &stateError{key, "unknown key"}
	}
	var r modelRow
	if err := json.Unmarshal(value, &r); err != nil || r.Model == "" {
		return &stateError{key, "malformed value"}
	}
	c.rows[key] = r
	c.models[tableOf(r.Schema, r.Model)] = r.Model
	c.gen++
	return nil
}

type stateError struct{ key, msg string }

func (e *stateError) Error() string { return "correlate: state " + strconv.Quote(e.key) + ": " + e.msg }

// Attribute sets Actor, Model and Flags on every event of the transaction.
func (c *Correlator) Attribute(tx *Tx) {
	if len(tx.Events) == 0 {
		return
	}
	c.recent.advance(tx.CommitTime)
	commit := tx.CommitTime.UnixMicro()
	c.reflected = false

	// Pass 1: each event's table, own user, and what its updated_at says.
	evs := slices.Grow(c.evs[:0], len(tx.Events))[:len(tx.Events)]
	judge := false
	for i, e := range tx.Events {
		ti := c.table(e.Schema, e.Table)
		ev := evInfo{ti: ti}
		switch e.Op {
		case audit.OpInsert:
			c.reflected = c.reflected || ti.reflection
			if v, ok := ti.createdBy.get(e.After); ok {
				ev.own = userID(v)
			} else if v, ok := ti.updatedBy.get(e.After); ok {
				ev.own = userID(v)
			}
			if v, ok := ti.updatedAt.get(e.After); ok {
				c.addStamp(ti, v)
			}
		case audit.OpUpdate:
			v, hasAt := ti.updatedAt.get(e.After)
			switch {
			case !hasAt:
				if v, ok := ti.updatedBy.get(e.After); ok {
					ev.own = userID(v)
				}
			case e.Changed != nil:
				// A whole before-image: the change set says it.
				ti.full = true
				if slices.Contains(e.Changed, c.p.Columns.UpdatedAt) {
					c.addStamp(ti, v)
					if v, ok := ti.updatedBy.get(e.After); ok {
						ev.own = userID(v)
					}
				} else {
					ev.state, judge = evUnchanged, true
				}
			default:
				// No before-image: the stamp's value must prove it.
				if ti.full {
					ti.full, ti.since = false, commit // remembered from now on
				}
				ev.state, judge = evUnknown, true
				ev.at, ev.atOK = parseStamp(v)
				if ev.atOK && c.recent.fresh(&ev, e, ev.at, tx.XID, commit) {
					c.addStamp(ti, v)
				}
			}
		}
		evs[i] = ev
	}

	// Pass 2: updates that may not have gone through the application. See
	// the package documentation ("Through the application?"). Updates
	// without a before-image first: one judged the application's stamped
	// its table, and an update with a whole before-image that repeats that
	// stamp (its image may be the one that update left) is the ORM's
	// second write of the row; one undecided leaves the repeat undecided.
	if judge {
		c.txStamps, c.manyStamps = txStamps(c.txStamps[:0], c.stamps, commit)
		for i, e := range tx.Events {
			ev := &evs[i]
			if ev.state != evUnknown {
				continue
			}
			at, _ := ev.ti.updatedAt.get(e.After)
			switch c.judge(ev, e, tx.XID, commit) {
			case stampORM:
				ev.own = c.updatedBy(ev.ti, e)
				c.addStamp(ev.ti, at)
			case stampRaw:
				// The change set is unknown: a table with allowlisted
				// raw columns may have had only those changed.
				if !ev.ti.rawAll && len(ev.ti.raw) == 0 {
					c.flag(tx, e, ev.ti)
				}
			default:
				ev.maybe = c.updatedBy(ev.ti, e)
				if !audit.IsNull(at) {
					c.open = append(c.open, stamp{ev.ti, at})
				}
			}
		}
		for i, e := range tx.Events {
			ev := &evs[i]
			if ev.state != evUnchanged {
				continue
			}
			at, _ := ev.ti.updatedAt.get(e.After)
			switch {
			case c.stamped(ev.ti, at):
				ev.own = c.updatedBy(ev.ti, e)
			case slices.ContainsFunc(c.open, func(s stamp) bool { return s.ti == ev.ti && bytes.Equal(s.value, at) }):
				ev.maybe = c.updatedBy(ev.ti, e)
			case c.bypass(e, ev.ti):
				c.flag(tx, e, ev.ti)
			}
		}
	}
	c.recent.record(tx, evs, commit)

	// The transaction's user by strength: message, session row, then per
	// event row_user, else the peers' majority.
	msgUser, msgSession, msgOK := firstMessage(tx.Messages)
	if byCdcaudit(tx.Messages) {
		for _, e := range tx.Events {
			if !slices.Contains(e.Flags, FlagCdcaudit) {
				e.Flags = append(e.Flags, FlagCdcaudit)
			}
		}
	}
	var rowUser int64
	for _, r := range tx.SessionRows {
		if r.UserID > 0 {
			rowUser = r.UserID
			break
		}
	}
	var peer int64
	if !msgOK && rowUser == 0 {
		peer = c.majority(evs)
	}

	c.sess = c.sess[:0]
	c.maybes = c.maybes[:0]
	c.active, c.activeDone = nil, false
	for i, e := range tx.Events {
		ev := &evs[i]
		var uid int64
		via := ViaNone
		switch {
		case msgOK:
			uid, via = msgUser, ViaMessage
		case rowUser != 0:
			uid, via = rowUser, ViaSessionRow
		case ev.own != 0:
			uid, via = ev.own, ViaRowUser
		case peer != 0:
			uid, via = peer, ViaTxPeer
		}
		e.Actor = audit.Actor{UserVia: via, SessionVia: ViaNone}
		switch {
		case uid != 0:
			us := c.session(tx, uid, msgOK && uid == msgUser, msgSession)
			e.Actor.UserID, e.Actor.Login = us.id, us.login
			if us.via != "" {
				e.Actor.SessionID, e.Actor.SessionVia = us.session, us.via
			}
			e.Actor.Candidates = us.candidates
		case ev.maybe != 0:
			e.Actor.Candidates = c.maybeCandidates(ev.maybe)
		default:
			e.Actor.Candidates = c.activeCandidates(tx.CommitTime)
		}
		if ti := ev.ti; ti.modelGen != c.gen {
			ti.model, ti.modelGen = c.models[tableRef{e.Schema, e.Table}], c.gen
		}
		if ev.ti.model != "" {
			e.Model = ev.ti.model
		}
	}

	// Touch each session changes were put on, once.
	if c.s != nil {
		for i := range c.sess {
			us := &c.sess[i]
			if us.session == "" || slices.ContainsFunc(c.sess[:i], func(o userSession) bool { return o.session == us.session }) {
				continue
			}
			c.s.Touch(us.session, tx.CommitTime)
		}
	}

	// Keep the scratch small after a huge transaction.
	clear(evs)
	c.evs = evs[:0]
	if cap(c.evs) > 1<<16 {
		c.evs = nil
	}
	clear(c.stamps)
	c.stamps = c.stamps[:0]
	clear(c.open)
	c.open = c.open[:0]
	c.txStamps = c.txStamps[:0]
	c.manyStamps = false
	if len(c.ids) > 1024 {
		clear(c.ids)
	}
}

// updatedBy returns the user the row's updated_by column names.
func (c *Correlator) updatedBy(ti *tableInfo, e *audit.Event) int64 {
	if v, ok := ti.updatedBy.get(e.After); ok {
		return userID(v)
	}
	return 0
}

// flag marks an update that did not go through the application:
// schema_migration when its transaction changed the shape of its table (or,
// for the application's reflection tables, of any table, or reflected a new
// model or field), else orm_bypass. The decoder sees a shape change only of a
// table it described before in this stream; a module's new tables, and
// tables altered before their first row of the stream, are invisible to it,
// but their new model and fields are inserted into the reflection tables.
func (c *Correlator) flag(tx *Tx, e *audit.Event, ti *tableInfo) {
	f := FlagORMBypass
	if ti.reflection && c.reflected || len(tx.SchemaChanged) > 0 && (ti.reflection || slices.Contains(tx.SchemaChanged, e.Schema+"."+e.Table)) {
		f = FlagSchemaMigration
	}
	if !slices.Contains(e.Flags, f) {
		e.Flags = append(e.Flags, f)
	}
}

// addStamp records an updated_at value the transaction wrote, once per
// table: an update with a whole before-image that left updated_at as it
// was is the ORM's second write of the row when another event of its table
// stamped that same value.
func (c *Correlator) addStamp(ti *tableInfo, v []byte) {
	const maxStamps = 256
	if !audit.IsNull(v) && !c.stamped(ti, v) && len(c.stamps) < maxStamps {
		c.stamps = append(c.stamps, stamp{ti, v})
	}
}

// txStamps appends to dst the distinct values of stamps that are plausible
// stamps of the transaction (not after the commit, not older than any
// transaction runs), in µs; many reports more than it keeps.
func txStamps(dst []int64, stamps []stamp, commit int64) (_ []int64, many bool) {
	for _, s := range stamps {
		at, ok := parseStamp(s.value)
		if !ok || at > commit || commit-at > maxTxAge.Microseconds() || slices.Contains(dst, at) {
			continue
		}
		if len(dst) >= 8 {
			return dst, true // a bulk write with its own dates: judge none by them
		}
		dst = append(dst, at)
	}
	return dst, false
}

func (c *Correlator) stamped(ti *tableInfo, v []byte) bool {
	if audit.IsNull(v) {
		return false
	}
	for _, s := range c.stamps {
		if s.ti == ti && bytes.Equal(s.value, v) {
			return true
		}
	}
	return false
}

// judge decides whether an update without a before-image went through the
// application (stampORM), provably did not (stampRaw), or cannot be told
// (stampOpen).
func (c *Correlator) judge(ev *evInfo, e *audit.Event, xid uint32, commit int64) uint8 {
	if !ev.atOK {
		if v, _ := ev.ti.updatedAt.get(e.After); audit.IsNull(v) {
			return stampRaw // the application stamps every write
		}
		return stampOpen // a value we cannot read
	}
	single := len(c.txStamps) == 1 && !c.manyStamps
	if slices.Contains(c.txStamps, ev.at) {
		if single {
			return stampORM
		}
		return stampOpen // stamps disagree: not all of them are the application's
	}
	switch {
	case c.recent.same(ev, e, ev.at, xid, commit):
		return stampRaw // an earlier transaction left this very value
	case len(c.txStamps) > 0 && !c.manyStamps && ev.at < slices.Min(c.txStamps):
		return stampRaw // older than this transaction's own stamp
	case commit-ev.at > maxTxAge.Microseconds():
		return stampRaw // older than any transaction runs
	}
	return stampOpen
}

// bypass reports whether an unstamped update changed business columns that
// the profile's RawWrites do not allowlist.
func (c *Correlator) bypass(e *audit.Event, ti *tableInfo) bool {
	if ti.rawAll {
		return false
	}
	cols := c.p.Columns
	for _, name := range e.Changed {
		if name == cols.UpdatedAt || name == cols.UpdatedBy || name == cols.CreatedBy {
			continue
		}
		if !rawAllowed(e, ti.raw, name) {
			return true
		}
	}
	return false
}

// rawAllowed reports whether a RawWrites rule covers a changed column.
func rawAllowed(e *audit.Event, rules []profile.ColumnRule, col string) bool {
	for i := range rules {
		r := &rules[i]
		if !profile.Match(r.Column, col) {
			continue
		}
		if r.Where == "" || whereHolds(e, r) {
			return true
		}
	}
	return false
}

func whereHolds(e *audit.Event, r *profile.ColumnRule) bool {
	for _, row := range [...]audit.Row{e.After, e.Before} {
		v, ok := row.Get(r.Where)
		if !ok {
			continue
		}
		s, isStr := stringValue(v)
		if !isStr {
			s = string(v)
		}
		for _, g := range r.Values {
			if profile.Match(g, s) {
				return true
			}
		}
	}
	return false
}

// majority returns the user that row_user found for the most events of the
// transaction (on a tie, the one found first), 0 when none.
func (c *Correlator) majority(evs []evInfo) int64 {
	users := c.users[:0]
	for i := range evs {
		u := evs[i].own
		if u == 0 {
			continue
		}
		j := slices.IndexFunc(users, func(x userCount) bool { return x.id == u })
		if j < 0 {
			users = append(users, userCount{id: u, count: 1})
		} else {
			users[j].count++
		}
		if len(users) > 64 {
			break // a bulk load by many users: the first 64 decide
		}
	}
	c.users = users
	var best userCount
	for _, u := range users {
		if u.count > best.count {
			best = u
		}
	}
	return best.id
}

// session resolves (once per transaction and user) the user's id pointer,
// login and session.
func (c *Correlator) session(tx *Tx, uid int64, fromMessage bool, msgSession string) *userSession {
	for i := range c.sess {
		if c.sess[i].user == uid {
			return &c.sess[i]
		}
	}
	id, ok := c.ids[uid]
	if !ok {
		id = new(int64)
		*id = uid
		c.ids[uid] = id
	}
	us := userSession{user: uid, id: id}
	if c.s != nil {
		us.login, _ = c.s.Login(uid)
	}
	switch {
	case fromMessage && msgSession != "" && c.s != nil:
		// Only ever the pseudonym: the identifier itself is a secret.
		us.session, us.via = c.s.SessionID(msgSession), SessionMessage
	default:
		for _, r := range tx.SessionRows {
			if r.UserID == uid && r.SessionID != "" {
				us.session, us.via = r.SessionID, SessionSameTx
				break
			}
		}
		if us.session == "" && c.s != nil {
			switch act := c.s.Active(uid, tx.CommitTime); {
			case len(act) == 1:
				us.session, us.via = act[0], SessionOnlyActive
			case len(act) > 1:
				// Nothing in the transaction decides: say so, never guess.
				us.via = SessionAmbiguous
				us.candidates = &audit.Candidates{Sessions: act[:min(len(act), audit.MaxCandidates)]}
			}
		}
	}
	c.sess = append(c.sess, us)
	return &c.sess[len(c.sess)-1]
}

// maybeCandidates lists the one user an update not known to be the
// application's may have been made by (its updated_by), once per
// transaction and user.
func (c *Correlator) maybeCandidates(uid int64) *audit.Candidates {
	for _, m := range c.maybes {
		if m.id == uid {
			return m.cands
		}
	}
	cands := &audit.Candidates{Users: []audit.CandidateUser{c.candidate(uid)}}
	c.maybes = append(c.maybes, maybeUser{uid, cands})
	return cands
}

// activeCandidates lists the users with an open session at commit time
// (nil when none), once per transaction.
func (c *Correlator) activeCandidates(at time.Time) *audit.Candidates {
	if c.activeDone || c.s == nil {
		return c.active
	}
	c.activeDone = true
	users := c.s.ActiveUsers(at, audit.MaxCandidates)
	if len(users) == 0 {
		return nil
	}
	cands := &audit.Candidates{Users: make([]audit.CandidateUser, 0, len(users))}
	for _, u := range users[:min(len(users), audit.MaxCandidates)] {
		cands.Users = append(cands.Users, c.candidate(u))
	}
	c.active = cands
	return cands
}

func (c *Correlator) candidate(uid int64) audit.CandidateUser {
	u := audit.CandidateUser{ID: uid}
	if c.s != nil {
		u.Login, _ = c.s.Login(uid)
	}
	return u
}

// firstMessage returns the user and session of the first valid cdcaudit
// message.
func firstMessage(msgs []Message) (int64, string, bool) {
	for _, m := range msgs {
		if m.Prefix != MessagePrefix {
			continue
		}
		if u, s, ok := parseMessage(m.Content); ok {
			return u, s, true
		}
	}
	return 0, "", false
}

// byCdcaudit reports whether a message of the transaction says cdcaudit
// itself made it: {"user_id": N, …, "by": "cdcaudit"}.
func byCdcaudit(msgs []Message) bool {
	for _, m := range msgs {
		if m.Prefix != MessagePrefix || len(m.Content) > maxMessageLen {
			continue
		}
		var by struct {
			By string `json:"by"`
		}
		if _, _, ok := parseMessage(m.Content); ok && json.Unmarshal(m.Content, &by) == nil && by.By == "cdcaudit" {
			return true
		}
	}
	return false
}

// parseMessage reads {"user_id": N, "session_id": "…"} strictly: user_id a
// positive integer, session_id absent, null or a string.
func parseMessage(content []byte) (int64, string, bool) {
	if len(content) == 0 || len(content) > maxMessageLen {
		return 0, "", false
	}
	var m struct {
		UserID    json.RawMessage `json:"user_id"`
		SessionID json.RawMessage `json:"session_id"`
	}
	if err := json.Unmarshal(content, &m); err != nil {
		return 0, "", false
	}
	uid, err := strconv.ParseInt(string(m.UserID), 10, 64)
	if err != nil || uid <= 0 {
		return 0, "", false
	}
	var sid string
	if len(m.SessionID) > 0 && string(m.SessionID) != "null" {
		if m.SessionID[0] != '"' || json.Unmarshal(m.SessionID, &sid) != nil || len(sid) > maxSessionIDLen {
			return 0, "", false
		}
	}
	return uid, sid, true
}

// userID reads a user id: a positive JSON integer, or a string of digits
// (numeric columns); anything else is no user.
func userID(v []byte) int64 {
	if len(v) >= 2 && v[0] == '"' && v[len(v)-1] == '"' {
		v = v[1 : len(v)-1]
	}
	if len(v) == 0 {
		return 0
	}
	var n int64
	for _, c := range v {
		if c < '0' || c > '9' || n > (math.MaxInt64-int64(c-'0'))/10 {
			return 0
		}
		n = n*10 + int64(c-'0')
	}
	if n <= 0 {
		return 0
	}
	return n
}

// stringValue returns the text of an encoded JSON string value.
func stringValue(v []byte) (string, bool) {
	if len(v) < 2 || v[0] != '"' {
		return "", false
	}
	if bytes.IndexByte(v, '\\') < 0 {
		return string(v[1 : len(v)-1]), true
	}
	var s string
	if json.Unmarshal(v, &s) != nil {
		return "", false
	}
	return s, true
}
