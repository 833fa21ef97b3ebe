package main

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/cdcaudit/cdcaudit/internal/config"
	"github.com/cdcaudit/cdcaudit/sessions"
)

const sessionsAbout = `
List the application's login sessions, as 'cdcaudit run' rebuilt them from
the replication stream (with an application profile: Odoo is detected by
itself, other applications are described in a generic profile): user, IP,
browser, OS, device, location, first and last activity (UTC), duration and
state, most recently active first.

A session is active, idle (open, but no activity for the idle time: 5
minutes unless run was told otherwise), or ended: revoked, deleted (its
session row was deleted: a logout), logged_out, password_changed, terminated
(by cdcaudit: 'cdcaudit sessions end' or a policy), or expired
(no activity for the session lifetime, 7 days unless run was told
otherwise).

Ends that are inferred are marked so: Odoo 18 writes nothing to the
database when a user logs out, so an open session of its res_device_log may
already have ended (it is listed as open until it expires), and expired and
password_changed ends are inferences. Only a watched session store (OCA
session_db's http_sessions, a generic profile's session table) shows a
logout, as does Odoo's file session store when run watches it
(session_store: docs/session-control.md). In --format json, end_inferred
says it per session.

'cdcaudit sessions end ID' and 'cdcaudit sessions end --user LOGIN --all'
end sessions (see 'cdcaudit sessions end --help'); they end 'terminated'.

A session's id is a pseudonym, the actor.session_id of the
events made in it: the application's own session identifier is a secret and
is never stored.

With --db, the database sessions that are not the application's are listed
instead (psql, scripts, BI tools: sampled from pg_stat_activity every
db_sessions_interval): id (db:PID-START, as in the candidates of the events
flagged direct_db), role, client address, application_name, when it
connected, its last state change, and when it was first seen closed.

While 'cdcaudit run' holds the store, the daemon reads it for sessions (over
data-dir/cdcaudit.sock, which only the store's owner may use): the same
flags, the same output.

Exit status: 0 success, 1 unreadable store, 2 bad usage.`

const sessionsExamples = `  cdcaudit sessions --data-dir /var/lib/cdcaudit --active
  cdcaudit sessions --data-dir /var/lib/cdcaudit --user alice@example.com --format json
  cdcaudit sessions --data-dir /var/lib/cdcaudit --db --active`

// sessionsNow is the time states and durations are computed at; tests fix it.
var sessionsNow = time.Now

func (c *cli) sessions(args []string) int {
	if len(args) > 0 && args[0] == "end" {
		return c.sessionsEnd(args[1:])
	}
	fs := c.flagSet("sessions", "--data-dir DIR [--active] [--user LOGIN] [--format table|json] [--db]", sessionsAbout, sessionsExamples)
	set := config.Bind(fs.FlagSet, config.KeyDataDir).Require(config.KeyDataDir)
	fs.Lookup("data-dir").Usage = "`directory` of the audit store [CDCAUDIT_DATA_DIR]"
	active := fs.Bool("active", false, "only open sessions (active or idle)")
	user := fs.String("user", "", "only the sessions of the user with this `login` (or #ID for a user id)")
	format := fs.String("format", "table", "output `format`: table, or json (an array of sessions, with state and duration_seconds)")
	db := fs.Bool("db", false, "list the database sessions that are not the application's (psql, scripts: sampled from pg_stat_activity), open and recently closed, instead")
	fs.order = []string{"data-dir", "active", "user", "format", "db", "config"}
	if code, done := c.parse(fs, args); done {
		return code
	}
	cfg, err := set.Load(c.env)
	if err != nil {
		return c.usageErr("sessions", err)
	}
	switch *format {
	case "table", "json":
	default:
		return c.usageErr("sessions", fmt.Errorf("--format: %q is not a format (want table or json)", *format))
	}

	store, err := openTrail(cfg.DataDir)
	if err != nil {
		return c.fail("sessions", err)
	}
	defer store.Close()
	if *db {
		return c.dbSessions(store, *active, *user, *format)
	}
	st, err := readSessions(store)
	if err != nil {
		return c.fail("sessions", err)
	}

	view := newSessionView(st, sessionsNow().UTC())
	list, known := view.filter(*active, *user)
	if *user != "" && !known {
		fmt.Fprintf(c.stderr, "cdcaudit sessions: no user %q has been seen in the stream (logins are learnt from the users table's changes)\n", *user)
	}
	if *format == "json" {
		if err := view.writeJSON(c.stdout, list); err != nil {
			return c.fail("sessions", err)
		}
		return exitOK
	}
	if len(st.Sessions) == 0 && len(st.Logins) == 0 && len(st.Users) == 0 {
		fmt.Fprintln(c.stdout, "No session state in this store: 'cdcaudit run' tracks sessions when it runs with an application profile.")
		return exitOK
	}
	view.writeTable(c.stdout, list, c.useColor(c.stdout))
	return exitOK
}

// sessionView renders persisted sessions as of now, with the daemon's
// idle and lifetime settings when it recorded them.
type sessionView struct {
	st                  *sessions.State
	now                 time.Time
	idleAfter, lifetime time.Duration
}

func newSessionView(st *sessions.State, now time.Time) *sessionView {
	v := &sessionView{st: st, now: now, idleAfter: st.IdleAfter, lifetime: st.Lifetime}
	if v.idleAfter <= 0 {
		v.idleAfter = sessions.DefaultIdleAfter
	}
	if v.lifetime <= 0 {
		v.lifetime = sessions.DefaultLifetime
	}
	return v
}

// filter selects sessions; known reports whether --user names a user the
// store knows of.
func (v *sessionView) filter(activeOnly bool, user string) (list []sessions.Session, known bool) {
	var id int64 = -1
	if n, err := strconv.ParseInt(strings.TrimPrefix(user, "#"), 10, 64); err == nil && strings.HasPrefix(user, "#") {
		id = n
		_, known = v.st.Users[n]
	} else if user != "" {
		for uid, login := range v.st.Users {
			if login == user {
				id, known = uid, true
			}
		}
	}
	for _, s := range v.st.Sessions {
		if user != "" {
			match := s.UserID == id || (s.Login == user && s.Login != "")
			if !match {
				continue
			}
			known = true
		}
		if activeOnly && s.State(v.now, v.idleAfter, v.lifetime) == sessions.StateEnded {
			continue
		}
		list = append(list, s)
	}
	return list, known
}

func (v *sessionView) login(id int64) string {
	if l := v.st.Users[id]; l != "" {
		return l
	}
	if id > 0 {
		return "#" + strconv.FormatInt(id, 10)
	}
	return "?"
}

func (v *sessionView) user(s *sessions.Session) string {
	if s.Login != "" {
		return s.Login
	}
	return v.login(s.UserID)
}

func (v *sessionView) state(s *sessions.Session) (state, detail string) {
	state = s.State(v.now, v.idleAfter, v.lifetime)
	if state != sessions.StateEnded {
		return state, ""
	}
	_, reason := s.End(v.now, v.lifetime)
	detail = strings.ReplaceAll(reason, "_", " ")
	if s.EndedBy != nil && reason == s.EndReason {
		detail += " by " + v.login(*s.EndedBy)
	}
	if s.EndInferred(v.now, v.lifetime) {
		detail += ", inferred"
	}
	return state, detail
}

func (v *sessionView) writeTable(w io.Writer, list []sessions.Session, color bool) {
	counts := map[string]int{}
	unseen := 0 // open sessions whose logout would not be seen
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	if len(list) > 0 {
		fmt.Fprintln(tw, "USER\tSESSION\tIP\tBROWSER\tOS\tDEVICE\tLOCATION\tFIRST ACTIVITY\tLAST ACTIVITY\tDURATION\tSTATE")
	}
	for i := range list {
		s := &list[i]
		state, detail := v.state(s)
		counts[state]++
		style := map[string]string{sessions.StateActive: ansiGreen, sessions.StateIdle: ansiYellow, sessions.StateEnded: ansiDim}[state]
		label := state
		if detail != "" {
			label += " (" + detail + ")"
		}
		if state != sessions.StateEnded && s.EndInferred(v.now, v.lifetime) {
			label += " *"
			unseen++
		}
		// The state comes last: its colour codes do not upset the alignment.
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n",
			cell(v.user(s)), cell(shortID(s.ID)), cell(s.IP), cell(s.Browser), cell(s.OS), cell(s.Device),
			cell(location(s)), timeCell(s.FirstActivity), timeCell(s.LastActivity),
			humanDuration(s.Duration(v.now, v.lifetime)), paint(color, style, label))
	}
	tw.Flush()
	if len(list) == 0 {
		fmt.Fprintln(w, "No sessions.")
		return
	}
	fmt.Fprintf(w, "\n%s: %d active, %d idle, %d ended (as of %s UTC; idle after %s, expired after %s without activity).\n",
		plural(len(list), "session", "sessions"), counts[sessions.StateActive], counts[sessions.StateIdle], counts[sessions.StateEnded],
		v.now.Format("2006-01-02 15:04:05"), humanDuration(v.idleAfter), humanDuration(v.lifetime))
	if unseen > 0 {
		fmt.Fprintln(w, "* open as far as the database shows: the application writes nothing on logout, so its end is inferred (idle, then expired) unless the session store is watched.")
	}
}

// sessionJSON is a session as --format json writes it: the persisted record
// with its login filled, its expiry made explicit, its state and duration.
type sessionJSON struct {
	sessions.Session
	EndedByLogin    string `json:"ended_by_login,omitempty"`
	State           string `json:"state"`
	EndInferred     bool   `json:"end_inferred"` // Session.EndInferred
	DurationSeconds int64  `json:"duration_seconds"`
}

func (v *sessionView) writeJSON(w io.Writer, list []sessions.Session) error {
	bw := bufio.NewWriter(w)
	bw.WriteString("[")
	for i, s := range list {
		out := sessionJSON{Session: s, State: s.State(v.now, v.idleAfter, v.lifetime),
			EndInferred: s.EndInferred(v.now, v.lifetime), DurationSeconds: int64(s.Duration(v.now, v.lifetime) / time.Second)}
		out.Login = v.user(&s)
		if out.Login == "?" {
			out.Login = ""
		}
		out.Ended, out.EndReason = s.End(v.now, v.lifetime)
		if s.EndedBy != nil {
			out.EndedByLogin = v.st.Users[*s.EndedBy]
		}
		b, err := json.Marshal(&out)
		if err != nil {
			return err
		}
		if i > 0 {
			bw.WriteString(",")
		}
		bw.WriteString("\n")
		bw.Write(b)
	}
	if len(list) > 0 {
		bw.WriteString("\n")
	}
	bw.WriteString("]\n")
	return bw.Flush()
}

func cell(s string) string {
	if s == "" {
		return "-"
	}
	// A value from the application must not break the table.
	return strings.Map(func(r rune) rune {
		if r < ' ' || r == 0x7f {
			return ' '
		}
		return r
	}, s)
}

func timeCell(t time.Time) string {
	if t.IsZero() {
		return "-"
	}
	return t.UTC().Format("2006-01-02 15:04:05")
}

func location(s *sessions.Session) string {
	switch {
	case s.City != "" && s.Country != "":
		return s.City + ", " + s.Country
	case s.City != "":
		return s.City
	}
	return s.Country
}

// shortID is enough of a session id to tell sessions apart and to grep
// events for (their actor.session_id holds the full id).
func shortID(id string) string {
	if len(id) > 13 {
		return id[:13]
	}
	return id
}

// humanDuration formats a duration for people: 42s, 12m, 3h05m, 2d04h.
func humanDuration(d time.Duration) string {
	switch {
	case d < time.Minute:
		return strconv.Itoa(int(d/time.Second)) + "s"
	case d < time.Hour:
		return strconv.Itoa(int(d/time.Minute)) + "m"
	case d < 24*time.Hour:
		return fmt.Sprintf("%dh%02dm", int(d/time.Hour), int(d%time.Hour/time.Minute))
	}
	return fmt.Sprintf("%dd%02dh", int(d/(24*time.Hour)), int(d%(24*time.Hour)/time.Hour))
}
