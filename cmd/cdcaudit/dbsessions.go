package main

import (
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"text/tabwriter"
	"time"

	"github.com/cdcaudit/cdcaudit/dbsessions"
	"github.com/cdcaudit/cdcaudit/internal/config"
	"github.com/cdcaudit/cdcaudit/internal/pipeline"
	"github.com/cdcaudit/cdcaudit/sink"
)

// watchDBSessions adds to pc the pg_stat_activity sampler (a source beside
// the stream) and the direct_db flag, unless db_sessions_interval is 0.
func watchDBSessions(cfg *config.Config, store *sink.Store, pc *pipeline.Config, log *slog.Logger) error {
	if cfg.DBSessionsInterval == 0 {
		return nil
	}
	book, err := dbsessions.ReadBook(func(fn func(k, v []byte) error) error { return store.LoadState(dbsessions.Bucket, fn) })
	if err != nil {
		return err
	}
	s, err := dbsessions.NewSampler(dbsessions.Options{DSN: cfg.DSN, Interval: cfg.DBSessionsInterval,
		App: cfg.DBSessionsApp(), Log: log}, book)
	if err != nil {
		return err
	}
	pc.Sources = append(pc.Sources, s.Run)
	pc.DirectDB = dbsessions.NewFlagger(book)
	return nil
}

// readDBSessions reads the database sessions the store keeps.
func readDBSessions(store trail) (*dbsessions.Book, error) {
	return dbsessions.ReadBook(func(fn func(k, v []byte) error) error { return store.LoadState(dbsessions.Bucket, fn) })
}

// dbSessions is sessions --db.
func (c *cli) dbSessions(store trail, active bool, user, format string) int {
	if user != "" {
		return c.usageErr("sessions", fmt.Errorf("--user: database sessions have a role, not an application user"))
	}
	book, err := readDBSessions(store)
	if err != nil {
		return c.fail("sessions", err)
	}
	if err := writeDBSessions(c.stdout, book, active, format, sessionsNow().UTC()); err != nil {
		return c.fail("sessions", err)
	}
	return exitOK
}

// writeDBSessions lists database sessions (sessions --db): open ones first.
func writeDBSessions(w io.Writer, book *dbsessions.Book, activeOnly bool, format string, now time.Time) error {
	var list []dbsessions.Session
	for _, s := range book.List() {
		if !activeOnly || s.Closed == nil {
			list = append(list, s)
		}
	}
	if format == "json" {
		if list == nil {
			list = []dbsessions.Session{}
		}
		b, err := json.MarshalIndent(list, "", " ")
		if err != nil {
			return err
		}
		_, err = fmt.Fprintf(w, "%s\n", b)
		return err
	}
	if len(list) == 0 {
		fmt.Fprintln(w, "No database sessions outside the application: none seen (or 'cdcaudit run' does not sample them: db_sessions_interval 0).")
		return nil
	}
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "SESSION\tROLE\tCLIENT\tAPPLICATION\tCONNECTED\tLAST STATE CHANGE\tSTATE\tCLOSED")
	open := 0
	for i := range list {
		s := &list[i]
		closed := "open"
		if s.Closed != nil {
			closed = timeCell(*s.Closed)
		} else {
			open++
		}
		change := "-"
		if s.StateChange != nil {
			change = timeCell(*s.StateChange)
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", s.ID, cell(s.Role), cell(s.Client), cell(s.Application),
			timeCell(s.Start), change, cell(s.State), closed)
	}
	tw.Flush()
	fmt.Fprintf(w, "\n%s: %d open, %d closed (as of %s UTC; a session closed after the sample before CLOSED, by CLOSED).\n",
		plural(len(list), "database session", "database sessions"), open, len(list)-open, now.Format("2006-01-02 15:04:05"))
	return nil
}
