package pipeline

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/jackc/pglogrepl"
	"github.com/jackc/pgx/v5"

	"github.com/cdcaudit/cdcaudit/alerts"
	"github.com/cdcaudit/cdcaudit/audit"
	"github.com/cdcaudit/cdcaudit/correlate"
	"github.com/cdcaudit/cdcaudit/decoder"
	"github.com/cdcaudit/cdcaudit/profile"
	"github.com/cdcaudit/cdcaudit/redact"
	"github.com/cdcaudit/cdcaudit/rules"
	"github.com/cdcaudit/cdcaudit/sessions"
	"github.com/cdcaudit/cdcaudit/sink"
)

// State buckets of the stages that derive state from the stream.
const (
	stateSessions  = "sessions"
	stateCorrelate = "correlate"
	// stateProfile holds the profile that auto settled on (key "auto"):
	// written with the events that revealed it, so a restart resumes with
	// it whatever the catalog says then.
	stateProfile = "profile"
)

// enricher is what happens to events between the decoder and the store:
// session tracking and redaction per event in stream order, attribution per
// transaction. Without an application profile only redaction is left.
//
// Redaction never depends on the profile: Odoo's secret columns (its
// explicit list, and its naming rules on tables its ORM made) and the
// configured ones are hidden whatever profile is in use, decided per table
// from the stream's Relation message before its first change is stored.
type enricher struct {
	cfg   Config
	store *sink.Store
	log   *slog.Logger

	// auto: profile auto found no application at start; the first of
	// Odoo's tables to appear in the stream switches to the Odoo profile.
	auto    bool
	settled string            // the profile auto settled on ("" before)
	prof    profile.Profile   // in use, when tracker is set
	tracker *sessions.Tracker // nil without a profile
	// published is tracker, for the metrics' scrapes (other goroutines).
	published atomic.Pointer[sessions.Tracker]
	corr      *correlate.Correlator // nil without a profile
	rules     *rules.Stage          // suspicious activity; nil without a profile
	alerts    *alerts.Stage         // nil without a profile
	redact    *redact.Redactor
	pending   []sink.StateRecord // state to store with the next batch

	// Of the transaction in progress.
	rows []correlate.SessionRow
	msgs []correlate.Message
}

func newEnricher(ctx context.Context, cfg Config, store *sink.Store, log *slog.Logger) (*enricher, error) {
	conn, err := connectNamed(ctx, cfg.Replication.DSN)
	if err != nil {
		return nil, fmt.Errorf("looking up the application's tables: %w", err)
	}
	defer conn.Close(context.Background())
	prof, present, err := resolveProfile(ctx, conn, cfg, store)
	if err != nil {
		return nil, err
	}
	x := &enricher{cfg: cfg, store: store, log: log}
	rules := profile.Odoo().SecretRules()
	if cfg.Profile == profile.ChoiceGeneric {
		rules = append(rules, prof.SecretRules()...)
	}
	rules = append(rules, cfg.Redact...)
	if x.redact, err = redact.New(rules, cfg.RedactKey, profile.OdooSecretColumns); err != nil {
		return nil, err
	}
	switch {
	case prof != nil:
		if err := x.start(*prof, present); err != nil {
			return nil, err
		}
		if err := x.seed(ctx, conn, *prof, log); err != nil {
			return nil, err
		}
		if isAuto(cfg.Profile) {
			x.settleProfile(prof.Name)
		}
		log.Info("application profile", "profile", prof.Name, "session_tables", present)
	case isAuto(cfg.Profile):
		x.auto = true
		log.Info("no application profile yet: events are not attributed to users until the application's tables appear in the stream; secrets are redacted meanwhile", "profile", profile.ChoiceAuto)
	default:
		log.Info("no application profile: events are not attributed to users; secrets are still redacted", "profile", cfg.Profile)
	}
	return x, nil
}

// connectNamed opens an ordinary connection that names itself cdcaudit in
// pg_stat_activity (unless the DSN names it): the database sessions
// sampler takes it for cdcaudit's own, not for someone else's.
func connectNamed(ctx context.Context, dsn string) (*pgx.Conn, error) {
	cc, err := pgx.ParseConfig(dsn)
	if err != nil {
		return nil, err
	}
	if cc.RuntimeParams["application_name"] == "" {
		cc.RuntimeParams["application_name"] = "cdcaudit"
	}
	return pgx.ConnectConfig(ctx, cc)
}

func isAuto(name string) bool { return name == "" || name == profile.ChoiceAuto }

// start sets up attribution with profile p: the session tracker and the
// correlator, with their stored state.
func (x *enricher) start(p profile.Profile, present []string) error {
	var err error
	x.prof = p
	x.tracker, err = sessions.New(p, sessions.Options{
		IdleAfter: x.cfg.IdleAfter, Lifetime: x.cfg.SessionLifetime,
		GeoIPPath: x.cfg.GeoIPPath, PresentTables: present,
		// A session's last activity is persisted at most once a minute
		// when only attributed changes move it; the tracker's view is exact.
		TouchEvery: time.Minute,
	})
	if err != nil {
		return err
	}
	x.published.Store(x.tracker)
	if x.cfg.OnTracker != nil {
		x.cfg.OnTracker(x.tracker)
	}
	x.corr = correlate.New(p, x.tracker)
	if err := x.store.LoadState(stateSessions, func(k, v []byte) error { return x.tracker.Load(string(k), v) }); err != nil {
		return fmt.Errorf("loading session state: %w", err)
	}
	if err := x.store.LoadState(stateCorrelate, func(k, v []byte) error { return x.corr.Load(string(k), v) }); err != nil {
		return fmt.Errorf("loading attribution state: %w", err)
	}
	x.rules = rules.New(x.cfg.Rules, x.tracker)
	if err := x.store.LoadState(rules.Bucket, func(k, v []byte) error { return x.rules.Load(string(k), v) }); err != nil {
		return fmt.Errorf("loading the suspicious-activity rules' state: %w", err)
	}
	return x.startAlerts(p)
}

// startAlerts sets up the alerts raised from the stream, with their stored
// state; before it ever ran, the sessions known seed the devices seen.
func (x *enricher) startAlerts(p profile.Profile) error {
	opts := x.cfg.Alerts
	if opts.Directory == nil && p.Name == profile.Odoo().Name {
		opts.Directory = alerts.OdooDirectory()
	}
	opts.Secret = x.redact.Secret
	x.alerts = alerts.NewStage(opts, x.tracker)
	if err := x.store.LoadState(alerts.StateBucket, func(k, v []byte) error { return x.alerts.Load(string(k), v) }); err != nil {
		return fmt.Errorf("loading alert state: %w", err)
	}
	x.alerts.SeedDevices(x.tracker.Sessions())
	return nil
}

// relation sees every Relation message of the stream, before any change of
// its table: the table's secret columns are decided, and profile auto
// switches to Odoo when the table is one of Odoo's users, logins or device
// logs tables.
func (x *enricher) relation(ctx context.Context, tx *decoder.Tx, data []byte) error {
	m, err := pglogrepl.Parse(data)
	if err != nil {
		return nil // the decoder judges the message; nothing to learn here
	}
	rel, ok := m.(*pglogrepl.RelationMessage)
	if !ok {
		return nil
	}
	cols := make([]profile.Column, len(rel.Columns))
	for i, c := range rel.Columns {
		cols[i] = profile.Column{Name: c.Name, Type: c.DataType}
	}
	if secret := x.redact.Relation(rel.Namespace, rel.RelationName, cols); len(secret) > 0 {
		x.log.Debug("secret columns", "table", rel.Namespace+"."+rel.RelationName, "columns", secret)
	}
	if !x.auto || !odooTable(rel.Namespace+"."+rel.RelationName, cols) {
		return nil
	}
	return x.switchToOdoo(ctx, tx, rel.Namespace+"."+rel.RelationName)
}

// odooTable reports whether a table is one of those by which profile auto
// recognises Odoo: its users table (with login and password), its logins
// table, or its device log (with session_identifier).
func odooTable(table string, cols []profile.Column) bool {
	has := func(names ...string) bool {
		for _, n := range names {
			if !slices.ContainsFunc(cols, func(c profile.Column) bool { return c.Name == n }) {
				return false
			}
		}
		return true
	}
	p := profile.Odoo()
	switch table {
	case p.Users.Table:
		return has(p.Users.Login, p.Users.Password)
	case p.Logins[0].Table:
		return has(p.Logins[0].User)
	case p.Sessions[0].Table:
		return has(p.Sessions[0].ID)
	}
	return false
}

// switchToOdoo starts attributing with the Odoo profile from the change
// about to be decoded on (in tx), and records the choice with the next
// batch.
func (x *enricher) switchToOdoo(ctx context.Context, tx *decoder.Tx, table string) error {
	x.auto = false
	p := profile.Odoo()
	cctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	var present []string
	conn, err := connectNamed(cctx, x.cfg.Replication.DSN)
	if err == nil {
		defer conn.Close(context.Background())
		vctx, vcancel := context.WithTimeout(cctx, 5*time.Second)
		if verr := awaitVisible(vctx, conn, table); verr != nil {
			x.log.Debug("profile auto: reading the catalog as it is", "err", verr)
		}
		vcancel()
		present, err = presentSessionTables(cctx, conn, p)
	}
	if err := x.start(p, present); err != nil {
		return fmt.Errorf("profile auto: starting the %s profile: %w", p.Name, err)
	}
	if err == nil {
		err = x.seed(cctx, conn, p, x.log)
	}
	if err != nil {
		// Attribution starts all the same: the stream keeps users and
		// models current from here on; only older ones stay unknown.
		x.log.Warn("profile auto: cannot read the application's tables; users and models that predate the stream stay unknown", "err", err)
	}
	x.settleProfile(p.Name)
	var xid uint32
	var lsn string
	if tx != nil {
		xid, lsn = tx.XID, audit.FormatLSN(tx.CommitLSN)
	}
	x.log.Info("application profile detected in the stream", "profile", p.Name, "table", table,
		"xid", xid, "commit_lsn", lsn, "session_tables", present)
	return nil
}

// settleProfile records the profile auto settled on, to be stored with
// the next batch.
func (x *enricher) settleProfile(name string) {
	x.settled = name
	x.pending = []sink.StateRecord{{Bucket: stateProfile, Key: "auto", Value: []byte(name)}}
}

// awaitVisible waits until the table is in the catalog. The stream can
// deliver a transaction a moment before other sessions see it committed;
// the table whose description just arrived is visible once it is.
func awaitVisible(ctx context.Context, conn *pgx.Conn, table string) error {
	for delay := 10 * time.Millisecond; ; delay = min(2*delay, time.Second) {
		ok, err := tableExists(ctx, conn, table)
		if err != nil || ok {
			return err
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("%s is not in the catalog (dropped since?): %w", table, ctx.Err())
		case <-time.After(delay):
		}
	}
}

// seed fills what the stream cannot tell about rows written before capture
// began: the logins of existing users and the model names of existing
// tables. Only unknown entries are filled; the stream keeps them current.
func (x *enricher) seed(ctx context.Context, conn *pgx.Conn, p profile.Profile, log *slog.Logger) error {
	exists := func(table string) bool {
		ok, err := tableExists(ctx, conn, table)
		if err == nil && !ok {
			log.Warn("the profile's table does not exist: nothing to seed from it", "table", table)
		}
		return err == nil && ok
	}
	if p.Users.Table != "" && p.Users.ID != "" && p.Users.Login != "" && exists(p.Users.Table) {
		q := fmt.Sprintf("SELECT %s::int8, %s::text FROM %s WHERE %s IS NOT NULL",
			pgx.Identifier{p.Users.ID}.Sanitize(), pgx.Identifier{p.Users.Login}.Sanitize(),
			qualified(p.Users.Table), pgx.Identifier{p.Users.Login}.Sanitize())
		if err := forRows(ctx, conn, q, func(id int64, login string) { x.tracker.SeedUser(id, login) }); err != nil {
			return fmt.Errorf("reading the users table %s: %w", p.Users.Table, err)
		}
	}
	if err := x.seedAddresses(ctx, conn); err != nil {
		return err
	}
	if m := p.Models; m != nil && exists(m.Table) {
		schema, _, _ := strings.Cut(m.Table, ".")
		q := fmt.Sprintf("SELECT id::int8, %s::text FROM %s", pgx.Identifier{m.Model}.Sanitize(), qualified(m.Table))
		err := forRows(ctx, conn, q, func(id int64, model string) {
			x.corr.SeedModel(schema, audit.Row{{Name: "id", Value: strconv.AppendInt(nil, id, 10)}}, model)
		})
		if err != nil {
			return fmt.Errorf("reading the models table %s: %w", m.Table, err)
		}
	}
	return nil
}

// seedAddresses reads the mail addresses of the users (through their
// contacts) that the stream has not told yet.
func (x *enricher) seedAddresses(ctx context.Context, conn *pgx.Conn) error {
	d := x.cfg.Alerts.Directory
	if d == nil && x.prof.Name == profile.Odoo().Name {
		d = alerts.OdooDirectory()
	}
	if d == nil || d.Users == "" || d.Partners == "" {
		return nil
	}
	// A redacted address column is never learnt, from the stream or here.
	schema, table, _ := strings.Cut(d.Partners, ".")
	probe := &audit.Event{Schema: schema, Table: table, After: audit.Row{{Name: d.PartnerEmail, Value: []byte("null")}}}
	if x.redact.Secret(probe, d.PartnerEmail) {
		return nil
	}
	for _, t := range []string{d.Users, d.Partners} {
		if ok, err := tableExists(ctx, conn, t); err != nil || !ok {
			return err
		}
	}
	q := fmt.Sprintf("SELECT u.%s::int8, p.%s::int8, coalesce(p.%s::text, '') FROM %s u JOIN %s p ON p.%s = u.%s",
		pgx.Identifier{d.UserID}.Sanitize(), pgx.Identifier{d.PartnerID}.Sanitize(), pgx.Identifier{d.PartnerEmail}.Sanitize(),
		qualified(d.Users), qualified(d.Partners), pgx.Identifier{d.PartnerID}.Sanitize(), pgx.Identifier{d.UserPartner}.Sanitize())
	rows, err := conn.Query(ctx, q)
	if err != nil {
		return fmt.Errorf("reading the users' addresses: %w", err)
	}
	var user, partner int64
	var email string
	_, err = pgx.ForEachRow(rows, []any{&user, &partner, &email}, func() error {
		x.alerts.SeedAddress(user, partner, email)
		return nil
	})
	if err != nil {
		return fmt.Errorf("reading the users' addresses: %w", err)
	}
	return nil
}

func forRows(ctx context.Context, conn *pgx.Conn, q string, fn func(int64, string)) error {
	rows, err := conn.Query(ctx, q)
	if err != nil {
		return err
	}
	var id int64
	var s string
	_, err = pgx.ForEachRow(rows, []any{&id, &s}, func() error { fn(id, s); return nil })
	return err
}

// qualified quotes "schema.table" as an identifier.
func qualified(table string) string {
	schema, name, ok := strings.Cut(table, ".")
	if !ok {
		return pgx.Identifier{table}.Sanitize()
	}
	return pgx.Identifier{schema, name}.Sanitize()
}

// close releases what the stages hold (the GeoIP database).
func (x *enricher) close() {
	if x.tracker != nil {
		x.tracker.Close()
	}
}

// resolveProfile picks the application profile: the configured one, or for
// "auto" (the default) Odoo when it settled on it before (stored) or when
// its tables are there now. It also returns which of the profile's session
// tables exist.
func resolveProfile(ctx context.Context, conn *pgx.Conn, cfg Config, store *sink.Store) (*profile.Profile, []string, error) {
	pp, err := profile.Choose(cfg.Profile, cfg.ProfileFile)
	if pp == nil || err != nil {
		return nil, nil, err
	}
	p := *pp
	if isAuto(cfg.Profile) {
		var settled bool
		err := store.LoadState(stateProfile, func(k, v []byte) error {
			settled = settled || string(k) == "auto" && string(v) == p.Name
			return nil
		})
		if err != nil {
			return nil, nil, fmt.Errorf("loading the detected profile: %w", err)
		}
		if !settled {
			ok, err := odooInstalled(ctx, conn, p)
			if err != nil || !ok {
				return nil, nil, err
			}
		}
	}
	present, err := presentSessionTables(ctx, conn, p)
	if err != nil {
		return nil, nil, err
	}
	return &p, present, nil
}

func tableExists(ctx context.Context, conn *pgx.Conn, table string) (bool, error) {
	var ok bool
	err := conn.QueryRow(ctx, "SELECT to_regclass($1) IS NOT NULL", table).Scan(&ok)
	return ok, err
}

// odooInstalled reports whether the database holds Odoo's users table and
// its logins or device log table.
func odooInstalled(ctx context.Context, conn *pgx.Conn, p profile.Profile) (bool, error) {
	for _, tables := range [][]string{{p.Users.Table}, {p.Logins[0].Table, p.Sessions[0].Table}} {
		var any bool
		for _, t := range tables {
			ok, err := tableExists(ctx, conn, t)
			if err != nil {
				return false, err
			}
			any = any || ok
		}
		if !any {
			return false, nil
		}
	}
	return true, nil
}

// presentSessionTables returns which of the profile's session tables exist.
func presentSessionTables(ctx context.Context, conn *pgx.Conn, p profile.Profile) ([]string, error) {
	var present []string
	for _, st := range p.Sessions {
		ok, err := tableExists(ctx, conn, st.Table)
		if err != nil {
			return nil, err
		}
		if ok {
			present = append(present, st.Table)
		}
	}
	return present, nil
}

// observe sees every event in stream order, before anything is stored: the
// tracker reads raw session identifiers (and keeps pseudonyms only), then
// secrets are redacted.
func (x *enricher) observe(e *audit.Event) {
	if e.Op == audit.OpSnapshot {
		x.learn(e)
		if x.rules != nil {
			x.rules.Learn(e)
		}
		x.redact.Apply(e)
		return
	}
	if x.tracker != nil {
		if row := x.tracker.Observe(e); row != nil {
			x.rows = append(x.rows, correlate.SessionRow{UserID: row.UserID, SessionID: row.SessionID})
			if row.Opened {
				x.alerts.Opened(e, row.SessionID)
			}
		}
		x.corr.Observe(e)
		x.alerts.Observe(e)
	}
	x.redact.Apply(e)
}

func (x *enricher) message(m decoder.Message) {
	if x.corr != nil && m.Transactional {
		x.msgs = append(x.msgs, correlate.Message{Prefix: m.Prefix, Content: m.Content})
	}
}

// attribute sets actor, model and flags on events of tx: the whole
// transaction, or the part received so far of a huge one.
func (x *enricher) attribute(tx *decoder.Tx, events []*audit.Event) {
	if x.corr == nil || len(events) == 0 {
		return
	}
	events = x.notSnapshots(events)
	if len(events) == 0 {
		return
	}
	x.corr.Attribute(&correlate.Tx{XID: tx.XID, CommitTime: tx.CommitTime, Events: events, Messages: x.msgs,
		SessionRows: x.rows, SchemaChanged: tx.SchemaChanged})
	x.tracker.Attributed(events) // what the tracker deferred until attribution: password changes
	if x.cfg.DirectDB != nil {
		x.pending = append(x.pending, x.cfg.DirectDB.Flag(tx.CommitLSN, tx.CommitTime, events)...)
	}
	x.rules.Observe(events)
	x.alerts.Attributed(events)
}

// DirectDB is the stage after attribution that flags the changes of a
// transaction made outside the application while a database session was
// open, and returns the state (alerts) to store with them. It decides from
// stored state only, so a replay decides the same.
type DirectDB interface {
	Flag(commitLSN uint64, commitTime time.Time, events []*audit.Event) []sink.StateRecord
}

// committed ends the transaction whose last events were attributed: the
// alerts it raised are queued with its batch.
func (x *enricher) committed(tx *decoder.Tx) {
	if x.alerts != nil {
		x.alerts.Committed(tx.XID, tx.CommitTime)
	}
}

// state returns the derived state changed since the last call.
func (x *enricher) state() []sink.StateRecord {
	recs := x.pending
	x.pending = nil
	if x.tracker == nil {
		return recs
	}
	for _, u := range x.tracker.Dirty() {
		recs = append(recs, sink.StateRecord{Bucket: stateSessions, Key: u.Key, Value: u.Value})
	}
	for _, u := range x.corr.Dirty() {
		recs = append(recs, sink.StateRecord{Bucket: stateCorrelate, Key: u.Key, Value: u.Value})
	}
	recs = append(recs, x.rules.Dirty()...)
	return append(recs, x.alerts.Dirty()...)
}

// settle returns all derived state not written yet, for a clean stop.
func (x *enricher) settle() []sink.StateRecord {
	if x.tracker != nil {
		x.tracker.Settle()
	}
	return x.state()
}

// reset forgets what was not stored after a reconnect: the transaction in
// progress, and the batch that would have stored the settled profile (the
// replay does not settle it again).
func (x *enricher) reset() {
	x.endTx()
	if x.tracker != nil {
		x.tracker.Abandon()
		x.alerts.Abandon()
	}
	if x.settled != "" {
		x.settleProfile(x.settled)
	}
}

// endTx forgets the transaction's session rows and messages.
func (x *enricher) endTx() {
	x.rows, x.msgs = x.rows[:0], x.msgs[:0]
}

// learn takes from a snapshot row what the stream would teach about it:
// a user's login, a table's model name. It is never a login or a session
// (an old row is no activity), and a snapshot row has no actor.
func (x *enricher) learn(e *audit.Event) {
	if x.tracker == nil {
		return
	}
	x.alerts.Observe(e)
	p := x.prof
	table := e.Schema + "." + e.Table
	switch {
	case table == p.Users.Table && p.Users.ID != "" && p.Users.Login != "":
		id, okID := e.After.Get(p.Users.ID)
		login, okLogin := e.After.Get(p.Users.Login)
		var uid int64
		var name string
		if okID && okLogin && json.Unmarshal(id, &uid) == nil && json.Unmarshal(login, &name) == nil {
			x.tracker.SeedUser(uid, name)
		}
	case p.Models != nil && table == p.Models.Table:
		v, ok := e.After.Get(p.Models.Model)
		var model string
		if ok && json.Unmarshal(v, &model) == nil {
			x.corr.SeedModel(e.Schema, e.Key, model)
		}
	}
}

// notSnapshots returns the events that are changes, and gives snapshot
// rows their model (they are not attributed). events is left as it is.
func (x *enricher) notSnapshots(events []*audit.Event) []*audit.Event {
	n := 0
	for _, e := range events {
		if e.Op == audit.OpSnapshot {
			e.Model = x.corr.ModelOf(e.Schema, e.Table)
			continue
		}
		n++
	}
	if n == len(events) {
		return events
	}
	changes := make([]*audit.Event, 0, n)
	for _, e := range events {
		if e.Op != audit.OpSnapshot {
			changes = append(changes, e)
		}
	}
	return changes
}

// snapshotTables are the profile's tables every store loads once: users,
// models and sessions, so attribution knows what predates the stream.
func (x *enricher) snapshotTables() []string {
	if x.tracker == nil {
		return nil
	}
	p := x.prof
	var tables []string
	if p.Users.Table != "" {
		tables = append(tables, p.Users.Table)
	}
	if p.Models != nil && p.Models.Table != "" {
		tables = append(tables, p.Models.Table)
	}
	for _, st := range p.Sessions {
		tables = append(tables, st.Table)
	}
	return tables
}

// sessionDetail is what the sessions' counter and breakdown show (zero
// without a profile).
func (x *enricher) sessionDetail() (started uint64, browser, os, device, country map[string]int) {
	t := x.published.Load()
	if t == nil {
		return 0, nil, nil, nil, nil
	}
	browser, os, device, country = t.OpenBy()
	return t.Stats().Started, browser, os, device, country
}

// sessionFigures is what the session gauges show (zero without a profile).
func (x *enricher) sessionFigures() (open, users int, skipped uint64) {
	t := x.published.Load()
	if t == nil {
		return 0, 0, 0
	}
	st := t.Stats()
	return st.Open, st.Users, st.Skipped
}

// signals applies the session signals waiting (without blocking) to the
// tracker, and reports whether any changed a session. Signals that come
// before attribution starts are dropped: there is no session to end.
func (x *enricher) signals() bool {
	changed := false
	for range maxSignals {
		select {
		case sig := <-x.cfg.SessionSignals:
			if x.tracker != nil && x.tracker.Apply(sig) {
				changed = true
			}
		default:
			return changed
		}
	}
	return changed
}

// maxSignals bounds the signals applied between two transactions: a flood
// never holds the stream up; the rest wait for the next turn.
const maxSignals = 256
