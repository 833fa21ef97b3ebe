package api

import (
	"encoding/base64"
	"encoding/json"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"time"

	"github.com/cdcaudit/cdcaudit/access"
	"github.com/cdcaudit/cdcaudit/audit"
	"github.com/cdcaudit/cdcaudit/sessions"
	"github.com/cdcaudit/cdcaudit/sink"
)

// sessionState reads the session state the daemon keeps in the store (one
// read transaction, decoded while it is open: the state is small next to
// the events), with the daemon's idle and lifetime settings.
type sessionState struct {
	*sessions.State
	now                 time.Time
	idleAfter, lifetime time.Duration
}

func (s *server) sessionState() (*sessionState, error) {
	st, err := sessions.ReadState(func(fn func(k, v []byte) error) error { return s.store.LoadState("sessions", fn) })
	if err != nil {
		return nil, err
	}
	v := &sessionState{State: st, now: s.now().UTC(), idleAfter: st.IdleAfter, lifetime: st.Lifetime}
	if v.idleAfter <= 0 {
		v.idleAfter = sessions.DefaultIdleAfter
	}
	if v.lifetime <= 0 {
		v.lifetime = sessions.DefaultLifetime
	}
	return v, nil
}

// userTerm is a user as the events name it: its login, or #ID.
func (v *sessionState) userTerm(id int64) string {
	if l := v.Users[id]; l != "" {
		return l
	}
	return "#" + strconv.FormatInt(id, 10)
}

// sessionUser is the user term of a session's user ("" when none).
func (v *sessionState) sessionUser(s *sessions.Session) string {
	switch {
	case s.Login != "":
		return s.Login
	case s.UserID > 0:
		return v.userTerm(s.UserID)
	}
	return ""
}

// sessionBody is a session as the API shows it: the persisted record with
// its login filled, its end made explicit (expiry included), its state and
// duration as of now.
type sessionBody struct {
	sessions.Session
	EndedByLogin    string `json:"ended_by_login,omitempty"`
	State           string `json:"state"`
	EndInferred     bool   `json:"end_inferred"`
	DurationSeconds int64  `json:"duration_seconds"`
}

// body is a session as p sees it. A self principal is not told who else
// ended its session (an admin's
// revocation shows as revoked, by nobody named).
func (v *sessionState) body(s sessions.Session, p access.Principal) sessionBody {
	if s.EndedBy != nil && !sees(p, v.userTerm(*s.EndedBy)) {
		s.EndedBy = nil
	}
	b := sessionBody{Session: s, State: s.State(v.now, v.idleAfter, v.lifetime),
		EndInferred: s.EndInferred(v.now, v.lifetime), DurationSeconds: int64(s.Duration(v.now, v.lifetime) / time.Second)}
	b.Login = v.sessionUser(&s)
	b.Ended, b.EndReason = s.End(v.now, v.lifetime)
	if s.EndedBy != nil {
		b.EndedByLogin = v.Users[*s.EndedBy]
	}
	return b
}

// sessionFilter selects sessions.
type sessionFilter struct {
	user         string // login or #ID
	state        string
	since, until time.Time // sessions active at some time in [since, until)
}

func (v *sessionState) match(s *sessions.Session, f *sessionFilter, p access.Principal) bool {
	user := v.sessionUser(s)
	switch {
	case !sees(p, user),
		f.user != "" && user != f.user && !(s.UserID > 0 && f.user == "#"+strconv.FormatInt(s.UserID, 10)),
		f.state != "" && s.State(v.now, v.idleAfter, v.lifetime) != f.state,
		!f.until.IsZero() && !s.FirstActivity.Before(f.until):
		return false
	}
	if !f.since.IsZero() {
		end, _ := s.End(v.now, v.lifetime)
		if !end.IsZero() && end.Before(f.since) {
			return false
		}
	}
	return true
}

// sessionCursor is the position after a session in the list's order (most
// recently active first).
type sessionCursor struct {
	Last  time.Time `json:"l"`
	First time.Time `json:"f"`
	ID    string    `json:"i"`
}

// after reports whether s comes after the cursor in the list's order.
func (c *sessionCursor) after(s *sessions.Session) bool {
	if !s.LastActivity.Equal(c.Last) {
		return s.LastActivity.Before(c.Last)
	}
	if !s.FirstActivity.Equal(c.First) {
		return s.FirstActivity.Before(c.First)
	}
	return s.ID < c.ID
}

func encodeCursor(v any) string {
	b, _ := json.Marshal(v)
	return base64.RawURLEncoding.EncodeToString(b)
}

func decodeCursor(v url.Values, into any) (bool, error) {
	c := v.Get("cursor")
	if c == "" {
		return false, nil
	}
	b, err := base64.RawURLEncoding.DecodeString(c)
	if err != nil || json.Unmarshal(b, into) != nil {
		return false, badRequest("cursor: not a cursor this route returned")
	}
	return true, nil
}

type sessionsBody struct {
	Sessions   []sessionBody `json:"sessions"`
	NextCursor string        `json:"next_cursor"`
}

func (s *server) sessions(w http.ResponseWriter, r *http.Request, p access.Principal) error {
	v, err := query(r, "user", "state", "since", "until", "limit", "cursor")
	if err != nil {
		return err
	}
	f := sessionFilter{user: v.Get("user"), state: v.Get("state")}
	switch f.state {
	case "", sessions.StateActive, sessions.StateIdle, sessions.StateEnded:
	default:
		return badRequest("state %q: want active, idle or ended", clip(f.state))
	}
	if f.since, err = parseTime(v, "since"); err != nil {
		return err
	}
	if f.until, err = parseTime(v, "until"); err != nil {
		return err
	}
	limit, err := parseLimit(v, defaultLimit, maxLimit)
	if err != nil {
		return err
	}
	var cur sessionCursor
	hasCursor, err := decodeCursor(v, &cur)
	if err != nil {
		return err
	}
	st, err := s.sessionState()
	if err != nil {
		return err
	}
	out := sessionsBody{Sessions: []sessionBody{}}
	for i := range st.Sessions {
		ss := &st.Sessions[i]
		if hasCursor && !cur.after(ss) || !st.match(ss, &f, p) {
			continue
		}
		if len(out.Sessions) == limit {
			last := out.Sessions[limit-1]
			out.NextCursor = encodeCursor(sessionCursor{last.LastActivity, last.FirstActivity, last.ID})
			break
		}
		out.Sessions = append(out.Sessions, st.body(*ss, p))
	}
	return writeJSON(w, http.StatusOK, out)
}

func (s *server) session(w http.ResponseWriter, r *http.Request, p access.Principal) error {
	v, err := query(r, pageParams...)
	if err != nil {
		return err
	}
	var q sink.Query
	if err := parsePage(v, &q); err != nil {
		return err
	}
	id := r.PathValue("id")
	if len(id) > maxValueLen {
		return errNotFound("no such session")
	}
	st, err := s.sessionState()
	if err != nil {
		return err
	}
	i := slices.IndexFunc(st.Sessions, func(ss sessions.Session) bool { return ss.ID == id })
	if i < 0 || !sees(p, st.sessionUser(&st.Sessions[i])) {
		return errNotFound("no such session")
	}
	q.Session = id
	var events [][]byte
	next := ""
	if keepToOwn(&q, p) {
		if events, next, err = s.page(r.Context(), q); err != nil {
			return err
		}
	}
	return writeEvents(w, events, next, "session", st.body(st.Sessions[i], p))
}

// userBody is a user of the application as the API shows it.
type userBody struct {
	ID    int64  `json:"id"`
	Login string `json:"login"`
	// LastActivity is the latest of its sessions' activity, its logins
	// and its events; null when none is known.
	LastActivity *time.Time `json:"last_activity"`
	OpenSessions int        `json:"open_sessions"`
	Sessions     int        `json:"sessions"`
}

type usersBody struct {
	Users      []userBody `json:"users"`
	NextCursor string     `json:"next_cursor"`
}

func (s *server) users(w http.ResponseWriter, r *http.Request, p access.Principal) error {
	v, err := query(r, "limit", "cursor")
	if err != nil {
		return err
	}
	limit, err := parseLimit(v, defaultLimit, maxLimit)
	if err != nil {
		return err
	}
	var after int64
	hasCursor, err := decodeCursor(v, &after)
	if err != nil {
		return err
	}
	st, err := s.sessionState()
	if err != nil {
		return err
	}
	ids := make([]int64, 0, len(st.Users))
	for id := range st.Users {
		if (!hasCursor || id > after) && sees(p, st.userTerm(id)) {
			ids = append(ids, id)
		}
	}
	slices.Sort(ids)
	out := usersBody{Users: []userBody{}}
	if len(ids) > limit {
		ids = ids[:limit]
		out.NextCursor = encodeCursor(ids[limit-1])
	}
	latest := map[int64]time.Time{}
	later := func(id int64, t time.Time) {
		if t.After(latest[id]) {
			latest[id] = t
		}
	}
	open, total := map[int64]int{}, map[int64]int{}
	for i := range st.Sessions {
		ss := &st.Sessions[i]
		later(ss.UserID, ss.LastActivity)
		total[ss.UserID]++
		if ss.State(st.now, st.idleAfter, st.lifetime) != sessions.StateEnded {
			open[ss.UserID]++
		}
	}
	for _, l := range st.Logins {
		later(l.UserID, l.At)
	}
	for _, id := range ids {
		term := st.userTerm(id)
		// The user's latest event, through the user index: one short read.
		_, err := s.query(r.Context(), sink.Query{User: term, Desc: true, Limit: 1}, func(_, rec []byte) error {
			t, err := audit.ParseTerms(rec)
			if err == nil {
				later(id, t.CommitTime)
			}
			return err
		})
		if err != nil {
			return err
		}
		u := userBody{ID: id, Login: st.Users[id], OpenSessions: open[id], Sessions: total[id]}
		if t, ok := latest[id]; ok && !t.IsZero() {
			t = t.UTC()
			u.LastActivity = &t
		}
		out.Users = append(out.Users, u)
	}
	return writeJSON(w, http.StatusOK, out)
}

// loginOf is a login row's user term.
func (v *sessionState) loginOf(l *sessions.Login) string {
	if l.Login != "" {
		return l.Login
	}
	return v.userTerm(l.UserID)
}
