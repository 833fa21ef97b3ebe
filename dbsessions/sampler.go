package dbsessions

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/cdcaudit/cdcaudit/sink"
)

// minGap is the least time between two samples: a sample asked for sooner
// (by a commit with no application user) waits until then.
const minGap = time.Second

// sampleTimeout bounds one sample, connection included.
const sampleTimeout = 10 * time.Second

// ownName is how cdcaudit's own connections name themselves (prefix).
const ownName = "cdcaudit"

// Options are what a Sampler needs.
type Options struct {
	// DSN reaches the audited database; a replication parameter is
	// dropped (the sampler's is an ordinary connection).
	DSN string
	// Interval between samples (DefaultInterval when 0).
	Interval time.Duration
	// App says which sessions are the application's: they are not kept.
	App App
	Log *slog.Logger // nil: slog.Default()
}

// Sampler samples pg_stat_activity into a Book.
type Sampler struct {
	opts Options
	cc   *pgx.ConnConfig
	app  *appMatcher
	book *Book
	// ownNames are the application_names of cdcaudit's connections as the
	// DSN names them (beside the "cdcaudit" prefix).
	ownNames []string
	hidden   bool // told that sessions were hidden for want of privilege
	full     bool // told that MaxSessions was reached
}

// NewSampler returns a sampler that keeps book up to date.
func NewSampler(opts Options, book *Book) (*Sampler, error) {
	if opts.Interval == 0 {
		opts.Interval = DefaultInterval
	}
	if err := ValidateInterval(opts.Interval); err != nil {
		return nil, err
	}
	if opts.Log == nil {
		opts.Log = slog.Default()
	}
	app, err := opts.App.matcher()
	if err != nil {
		return nil, err
	}
	cc, err := pgx.ParseConfig(opts.DSN)
	if err != nil {
		return nil, errors.New("database sessions: the DSN does not parse") // the error may quote the password
	}
	delete(cc.RuntimeParams, "replication")
	s := &Sampler{opts: opts, cc: cc, app: app, book: book}
	if n := cc.RuntimeParams["application_name"]; n != "" {
		s.ownNames = append(s.ownNames, n)
	}
	cc.RuntimeParams["application_name"] = ownName + " dbsessions"
	return s, nil
}

// Run samples every Interval, and sooner when a flag asks (at most once a
// second), until ctx ends. store makes records durable (the pipeline's
// StateSink); what a sample found is in the book only once stored. A
// failed sample is logged and retried at the next tick.
func (s *Sampler) Run(ctx context.Context, store func(context.Context, []sink.StateRecord) error) error {
	var conn *pgx.Conn
	defer func() {
		s.book.setLive(false)
		if conn != nil {
			conn.Close(context.Background())
		}
	}()
	s.opts.Log.Info("database sessions: sampling pg_stat_activity", "every", s.opts.Interval,
		"app_roles", s.opts.App.Roles, "app_names", s.opts.App.Names, "app_addrs", s.opts.App.Addrs)
	tick := time.NewTicker(s.opts.Interval)
	defer tick.Stop()
	failing := false
	var last time.Time
	for {
		last = time.Now()
		err := s.sampleOnce(ctx, &conn, store)
		if ctx.Err() != nil {
			return nil
		}
		switch {
		case err != nil && !failing:
			s.opts.Log.Warn("database sessions: cannot sample pg_stat_activity; retrying", "err", err, "every", s.opts.Interval)
		case err == nil && failing:
			s.opts.Log.Info("database sessions: sampling again")
		}
		failing = err != nil
		s.book.setLive(!failing)
		if failing && conn != nil {
			conn.Close(context.Background())
			conn = nil
		}
		select {
		case <-ctx.Done():
			return nil
		case <-tick.C:
		case <-s.book.kick:
			if wait := minGap - time.Since(last); wait > 0 {
				select {
				case <-ctx.Done():
					return nil
				case <-time.After(wait):
				}
			}
		}
	}
}

func (s *Sampler) sampleOnce(ctx context.Context, conn **pgx.Conn, store func(context.Context, []sink.StateRecord) error) error {
	sctx, cancel := context.WithTimeout(ctx, sampleTimeout)
	defer cancel()
	if *conn == nil {
		c, err := pgx.ConnectConfig(sctx, s.cc)
		if err != nil {
			return err
		}
		*conn = c
	}
	at, seen, err := s.query(sctx, *conn)
	if err != nil {
		return err
	}
	u := s.diff(at, seen)
	// A sample that changed nothing is not written: the flag decides from
	// the sessions, which are all stored; only its time is not.
	if len(u.put) > 0 || len(u.dropped) > 0 {
		if err := store(sctx, u.records()); err != nil {
			return fmt.Errorf("storing the sample: %w", err)
		}
	}
	s.book.apply(u)
	return nil
}

// sampleQuery reads the client sessions of the audited database but the
// sampler's own, with the sample's time (a row even when there is none).
const sampleQuery = `SELECT t.at, current_user::text, a.pid, a.usename::text, a.application_name,
	host(a.client_addr), a.backend_start, a.state, a.state_change
FROM (SELECT statement_timestamp() AS at) t
LEFT JOIN pg_stat_activity a ON a.datname = current_database()
	AND a.backend_type = 'client backend' AND a.pid <> pg_backend_pid()`

// query samples: the sample's time (server clock, as commit times) and the
// sessions that are not the application's nor cdcaudit's.
func (s *Sampler) query(ctx context.Context, conn *pgx.Conn) (time.Time, []Session, error) {
	rows, err := conn.Query(ctx, sampleQuery)
	if err != nil {
		return time.Time{}, nil, err
	}
	var (
		at                        time.Time
		self                      string
		pid                       *int32
		role, name, client, state *string
		start, change             *time.Time
		seen                      []Session
		hidden                    int
	)
	_, err = pgx.ForEachRow(rows, []any{&at, &self, &pid, &role, &name, &client, &start, &state, &change}, func() error {
		if pid == nil {
			return nil // no session at all
		}
		if start == nil {
			hidden++ // another role's, and we may not see its details
			return nil
		}
		sess := Session{PID: *pid, Role: deref(role), Application: deref(name), Client: deref(client),
			Start: start.UTC(), State: deref(state)}
		if sess.Client == "" {
			sess.Client = Local
		}
		if change != nil {
			c := change.UTC()
			sess.StateChange = &c
		}
		if s.app.owns(sess.Role, sess.Application, sess.Client) || s.own(self, &sess) {
			return nil
		}
		sess.ID = SessionID(sess.PID, sess.Start)
		seen = append(seen, sess)
		return nil
	})
	if err != nil {
		return time.Time{}, nil, err
	}
	if hidden > 0 && !s.hidden {
		s.hidden = true
		s.opts.Log.Warn("database sessions: the sessions of other roles are hidden from cdcaudit's role: grant it pg_read_all_stats to see them", "hidden", hidden)
	}
	return at.UTC(), seen, nil
}

// own reports whether a session is cdcaudit's: its role and its name.
func (s *Sampler) own(self string, sess *Session) bool {
	return sess.Role == self && (strings.HasPrefix(sess.Application, ownName) || slices.Contains(s.ownNames, sess.Application))
}

func deref(p *string) string {
	if p == nil {
		return ""
	}
	return *p
}

// diff is what a sample taken at at that saw seen changes in the book: new
// sessions, changed states, sessions gone (closed at at), and, beyond
// MaxSessions, the closed sessions that closed first forgotten.
func (s *Sampler) diff(at time.Time, seen []Session) *update {
	u := &update{at: at}
	b := s.book
	b.mu.Lock()
	defer b.mu.Unlock()
	present := make(map[string]bool, len(seen))
	kept := len(b.sessions)
	var fresh []*Session
	for i := range seen {
		n := &seen[i]
		present[n.ID] = true
		old, ok := b.sessions[n.ID]
		switch {
		case !ok:
			fresh = append(fresh, n)
		case old.State != n.State || !equalTime(old.StateChange, n.StateChange) || old.Closed != nil:
			c := *n
			u.put = append(u.put, &c)
		}
	}
	var closed []*Session
	for id, old := range b.sessions {
		if old.Closed == nil && !present[id] {
			c := *old
			c.Closed = &at
			u.put = append(u.put, &c)
			closed = append(closed, &c)
		} else if old.Closed != nil {
			closed = append(closed, old)
		}
	}
	if over := kept + len(fresh) - MaxSessions; over > 0 {
		slices.SortFunc(closed, func(a, b *Session) int { return a.Closed.Compare(*b.Closed) })
		for _, c := range closed[:min(over, len(closed))] {
			u.dropped = append(u.dropped, c.ID)
			u.put = slices.DeleteFunc(u.put, func(p *Session) bool { return p.ID == c.ID })
		}
		kept -= min(over, len(closed))
	}
	if room := MaxSessions - kept; len(fresh) > room {
		if !s.full {
			s.full = true
			s.opts.Log.Warn("database sessions: too many open at once; those beyond the limit are not kept", "limit", MaxSessions, "not_kept", len(fresh)-room)
		}
		fresh = fresh[:max(room, 0)]
	}
	u.put = append(u.put, fresh...)
	return u
}

func equalTime(a, b *time.Time) bool {
	if a == nil || b == nil {
		return a == b
	}
	return a.Equal(*b)
}
