package dbsessions

import (
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/cdcaudit/cdcaudit/alerts"
	"github.com/cdcaudit/cdcaudit/audit"
	"github.com/cdcaudit/cdcaudit/correlate"
	"github.com/cdcaudit/cdcaudit/sink"
)

// FlagDirectDB marks a change that no application user made while a
// database session outside the application was open.
const FlagDirectDB = "direct_db"

// maxWait bounds how long a flag waits for the sample it asked for.
const maxWait = 2 * time.Second

// maxAlertEvents bounds the event ids an alert carries as evidence.
const maxAlertEvents = audit.MaxCandidates

// Flagger flags the changes of a transaction: a pipeline stage, on the
// pipeline's goroutine.
type Flagger struct {
	book *Book
	// alerted is the commit LSN of the last transaction alerted: a huge
	// transaction comes in chunks, alerted once.
	alerted uint64
}

// NewFlagger returns a flagger deciding from book.
func NewFlagger(book *Book) *Flagger { return &Flagger{book: book} }

// Flag gives every event of the transaction (committed at commitLSN and
// commitTime) that no application user made (actor.user_via none) the flag
// direct_db and the sessions open at commitTime as candidates, when any
// was; it returns the alert to queue with the events (none when nothing was
// flagged, or for a later chunk of a transaction already alerted).
//
// When no stored sample is as recent as the commit and a sampler runs, it
// asks for one and waits for it (at most maxWait): a session still open
// then is found. The decision itself reads only stored sessions.
func (f *Flagger) Flag(commitLSN uint64, commitTime time.Time, events []*audit.Event) []sink.StateRecord {
	if !slices.ContainsFunc(events, noUser) {
		return nil
	}
	f.book.awaitSample(commitTime, maxWait)
	open := f.book.OpenAt(commitTime)
	if len(open) == 0 {
		return nil
	}
	ids := make([]string, len(open))
	for i := range open {
		ids[i] = open[i].ID
	}
	var flagged []*audit.Event
	for _, e := range events {
		if !noUser(e) {
			continue
		}
		if !slices.Contains(e.Flags, FlagDirectDB) {
			e.Flags = append(e.Flags, FlagDirectDB)
		}
		addCandidates(&e.Actor, ids)
		flagged = append(flagged, e)
	}
	if commitLSN == f.alerted {
		return nil
	}
	f.alerted = commitLSN
	return []sink.StateRecord{alerts.Queue(alertOf(commitTime, flagged, open))}
}

func noUser(e *audit.Event) bool {
	return e.Op != audit.OpSnapshot && e.Actor.UserVia == correlate.ViaNone
}

// addCandidates adds ids to the actor's candidate sessions, after those it
// has, up to audit.MaxCandidates.
func addCandidates(a *audit.Actor, ids []string) {
	if a.Candidates == nil {
		a.Candidates = &audit.Candidates{}
	}
	c := a.Candidates
	for _, id := range ids {
		if len(c.Sessions) >= audit.MaxCandidates {
			return
		}
		if !slices.Contains(c.Sessions, id) {
			c.Sessions = append(c.Sessions, id)
		}
	}
}

// alertOf is the alert of a flagged transaction; its id is the first
// flagged event's.
func alertOf(at time.Time, flagged []*audit.Event, open []Session) alerts.Alert {
	first := &open[0]
	a := alerts.Alert{
		ID:      alerts.KindDirectDB + "/" + flagged[0].ID(),
		Kind:    alerts.KindDirectDB,
		Time:    at,
		Session: first.ID,
		Detail: map[string]string{
			"changes":          strconv.Itoa(len(flagged)),
			"role":             first.Role,
			"application_name": first.Application,
			"client":           first.Client,
		},
	}
	if first.Client != Local {
		a.IP = first.Client
	}
	for _, e := range flagged[:min(len(flagged), maxAlertEvents)] {
		a.Events = append(a.Events, e.ID())
	}
	for _, s := range open[:min(len(open), audit.MaxCandidates)] {
		a.Sessions = append(a.Sessions, s.ID)
	}
	var tables []string
	for _, e := range flagged {
		if t := e.Schema + "." + e.Table; !slices.Contains(tables, t) && len(tables) < 3 {
			tables = append(tables, t)
		}
	}
	changes := "a change"
	if len(flagged) > 1 {
		changes = strconv.Itoa(len(flagged)) + " changes"
	}
	others := ""
	if len(open) > 1 {
		others = fmt.Sprintf(" (and %d more)", len(open)-1)
	}
	a.Summary = fmt.Sprintf("%s to %s with no application user while database session %s was open%s: role %s, application %q, from %s",
		changes, strings.Join(tables, ", "), first.ID, others, printable(first.Role), printable(first.Application), first.Client)
	return a
}

// printable keeps a value from the database (a role, an application_name:
// anyone connecting names it) to one line of plain characters.
func printable(s string) string {
	return strings.Map(func(r rune) rune {
		if r < ' ' || r == 0x7f {
			return ' '
		}
		return r
	}, s)
}
