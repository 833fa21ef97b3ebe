package pipeline

import (
	"context"
	"fmt"
	"log/slog"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/cdcaudit/cdcaudit/audit"
	"github.com/cdcaudit/cdcaudit/correlate"
	"github.com/cdcaudit/cdcaudit/decoder"
	"github.com/cdcaudit/cdcaudit/profile"
	"github.com/cdcaudit/cdcaudit/redact"
	"github.com/cdcaudit/cdcaudit/sessions"
	"github.com/cdcaudit/cdcaudit/sink"
)

// State buckets of the stages that derive state from the stream.
const (
	stateSessions  = "sessions"
	stateCorrelate = "correlate"
)

// enricher is what happens to events between the decoder and the store:
// session tracking and redaction per event in stream order, attribution per
// transaction. Without an application profile only redaction (of the
// configured columns) is left.
type enricher struct {
	tracker *sessions.Tracker     // nil without a profile
	corr    *correlate.Correlator // nil without a profile
	redact  *redact.Redactor      // nil without rules

	// Of the transaction in progress.
	rows []correlate.SessionRow
	msgs []correlate.Message
}

func newEnricher(ctx context.Context, cfg Config, store *sink.Store, log *slog.Logger) (*enricher, error) {
	conn, err := pgx.Connect(ctx, cfg.Replication.DSN)
	if err != nil {
		return nil, fmt.Errorf("looking up the application's tables: %w", err)
	}
	defer conn.Close(context.Background())
	prof, present, err := resolveProfile(ctx, conn, cfg)
	if err != nil {
		return nil, err
	}
	x := &enricher{}
	rules := cfg.Redact
	if prof != nil {
		rules = append(prof.SecretRules(), rules...)
		x.tracker, err = sessions.New(*prof, sessions.Options{
			IdleAfter: cfg.IdleAfter, Lifetime: cfg.SessionLifetime,
			GeoIPPath: cfg.GeoIPPath, PresentTables: present,
			// A session's last activity is persisted at most once a minute
			// when only attributed changes move it; the tracker's view is exact.
			TouchEvery: time.Minute,
		})
		if err != nil {
			return nil, err
		}
		x.corr = correlate.New(*prof, x.tracker)
		if err := store.LoadState(stateSessions, func(k, v []byte) error { return x.tracker.Load(string(k), v) }); err != nil {
			return nil, fmt.Errorf("loading session state: %w", err)
		}
		if err := store.LoadState(stateCorrelate, func(k, v []byte) error { return x.corr.Load(string(k), v) }); err != nil {
			return nil, fmt.Errorf("loading attribution state: %w", err)
		}
		if err := x.seed(ctx, conn, *prof, log); err != nil {
			return nil, err
		}
		log.Info("application profile", "profile", prof.Name, "session_tables", present)
	} else {
		log.Info("no application profile: events are not attributed to users", "profile", cfg.Profile)
	}
	if len(rules) > 0 {
		if x.redact, err = redact.New(rules, cfg.RedactKey); err != nil {
			return nil, err
		}
	}
	return x, nil
}

// seed fills what the stream cannot tell about rows written before capture
// began: the logins of existing users and the model names of existing
// tables. Only unknown entries are filled; the stream keeps them current.
func (x *enricher) seed(ctx context.Context, conn *pgx.Conn, p profile.Profile, log *slog.Logger) error {
	exists := func(table string) bool {
		var ok bool
		err := conn.QueryRow(ctx, "SELECT to_regclass($1) IS NOT NULL", table).Scan(&ok)
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
// "auto" (the default) Odoo when its tables are there. It also returns which
// of the profile's session tables exist.
func resolveProfile(ctx context.Context, conn *pgx.Conn, cfg Config) (*profile.Profile, []string, error) {
	var p profile.Profile
	switch cfg.Profile {
	case "none":
		return nil, nil, nil
	case "odoo":
		p = profile.Odoo()
	case "generic":
		var err error
		if p, err = profile.Load(cfg.ProfileFile); err != nil {
			return nil, nil, err
		}
	case "", "auto":
		p = profile.Odoo()
	default:
		return nil, nil, fmt.Errorf("unknown profile %q (want auto, odoo, generic or none)", cfg.Profile)
	}
	exists := func(table string) (bool, error) {
		var ok bool
		err := conn.QueryRow(ctx, "SELECT to_regclass($1) IS NOT NULL", table).Scan(&ok)
		return ok, err
	}
	if cfg.Profile == "" || cfg.Profile == "auto" {
		users, err := exists(p.Users.Table)
		if err != nil {
			return nil, nil, err
		}
		logins, err := exists("public.res_users_log")
		if err != nil {
			return nil, nil, err
		}
		devices, err := exists("public.res_device_log")
		if err != nil {
			return nil, nil, err
		}
		if !users || !(logins || devices) {
			return nil, nil, nil
		}
	}
	var present []string
	for _, st := range p.Sessions {
		ok, err := exists(st.Table)
		if err != nil {
			return nil, nil, err
		}
		if ok {
			present = append(present, st.Table)
		}
	}
	return &p, present, nil
}

// observe sees every event in stream order, before anything is stored: the
// tracker reads raw session identifiers (and keeps pseudonyms only), then
// secrets are redacted.
func (x *enricher) observe(e *audit.Event) {
	if x.tracker != nil {
		if row := x.tracker.Observe(e); row != nil {
			x.rows = append(x.rows, correlate.SessionRow{UserID: row.UserID, SessionID: row.SessionID})
		}
		x.corr.Observe(e)
	}
	if x.redact != nil {
		x.redact.Apply(e)
	}
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
	x.corr.Attribute(&correlate.Tx{XID: tx.XID, CommitTime: tx.CommitTime, Events: events, Messages: x.msgs,
		SessionRows: x.rows, SchemaChanged: tx.SchemaChanged})
	x.tracker.Attributed(events) // what the tracker deferred until attribution: password changes
}

// state returns the derived state changed since the last call.
func (x *enricher) state() []sink.StateRecord {
	if x.tracker == nil {
		return nil
	}
	var recs []sink.StateRecord
	for _, u := range x.tracker.Dirty() {
		recs = append(recs, sink.StateRecord{Bucket: stateSessions, Key: u.Key, Value: u.Value})
	}
	for _, u := range x.corr.Dirty() {
		recs = append(recs, sink.StateRecord{Bucket: stateCorrelate, Key: u.Key, Value: u.Value})
	}
	return recs
}

// settle returns all derived state not written yet, for a clean stop.
func (x *enricher) settle() []sink.StateRecord {
	if x.tracker == nil {
		return nil
	}
	x.tracker.Settle()
	return x.state()
}

// endTx forgets the transaction's session rows and messages.
func (x *enricher) endTx() {
	x.rows, x.msgs = x.rows[:0], x.msgs[:0]
}
