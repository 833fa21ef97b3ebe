package sessions

import (
	"encoding/json"
	"fmt"
	"sort"
	"strconv"
	"strings"
	"time"
)

// End reasons.
const (
	EndRevoked         = "revoked"          // the application revoked it (Odoo: "log out of this device")
	EndDeleted         = "deleted"          // its session-table row was deleted (logout)
	EndLoggedOut       = "logged_out"       // its row was marked ended, or lost its user
	EndExpired         = "expired"          // no activity for the session lifetime
	EndPasswordChanged = "password_changed" // the user's password changed (Odoo: "log out everywhere")
)

// States.
const (
	StateActive = "active"
	StateIdle   = "idle"
	StateEnded  = "ended"
)

// Session is one login session as rebuilt from the stream. ID is a
// pseudonym ("s" + 24 hex digits of the SHA-256 of the application's
// identifier, or "l" + the login row's id for applications that record
// logins only); the application's identifier itself is never kept.
type Session struct {
	ID            string    `json:"id"`
	UserID        int64     `json:"user_id,omitempty"`
	Login         string    `json:"login,omitempty"`
	IP            string    `json:"ip,omitempty"`
	Browser       string    `json:"browser,omitempty"`
	OS            string    `json:"os,omitempty"`
	Device        string    `json:"device,omitempty"`
	Country       string    `json:"country,omitempty"`
	City          string    `json:"city,omitempty"`
	UserAgent     string    `json:"user_agent,omitempty"`
	FirstActivity time.Time `json:"first_activity"`
	LastActivity  time.Time `json:"last_activity"`
	Ended         time.Time `json:"ended,omitzero"`
	EndReason     string    `json:"end_reason,omitempty"` // revoked|deleted|logged_out|expired|password_changed|terminated
	EndedBy       *int64    `json:"ended_by,omitempty"`   // who ended it, when the application says
	Source        string    `json:"source"`               // the table that opened it (schema.table)
	// StoreWatched: a table of the session store itself names the session
	// (kind session: OCA session_db's http_sessions), so its logout is seen.
	// Otherwise (Odoo's res_device_log, login rows) the application writes
	// nothing when the user logs out: its end can only be inferred.
	StoreWatched bool `json:"store_watched,omitempty"`
}

// EndInferred reports whether the session's end is an inference rather
// than something the application recorded: an end by expiry or by a
// password change; or, while it is open, that its logout would not be seen
// (it may have ended already: it will be found expired). Revoked, deleted
// and logged_out ends were recorded.
func (s Session) EndInferred(now time.Time, lifetime time.Duration) bool {
	switch _, reason := s.End(now, lifetime); reason {
	case EndExpired, EndPasswordChanged:
		return true
	case "":
		return !s.StoreWatched
	}
	return false
}

// open reports whether the session has not ended (explicitly or by
// expiry) at now.
func (s *Session) open(now time.Time, lifetime time.Duration) bool {
	return s.Ended.IsZero() && now.Sub(s.LastActivity) < lifetime
}

// End returns when and why the session ended as of now: the recorded end,
// or its expiry (last activity + lifetime) once that has passed; zero and
// "" while it is open.
func (s Session) End(now time.Time, lifetime time.Duration) (time.Time, string) {
	if !s.Ended.IsZero() {
		return s.Ended, s.EndReason
	}
	lifetime = orDefault(lifetime, DefaultLifetime)
	if now.Sub(s.LastActivity) >= lifetime {
		return s.LastActivity.Add(lifetime), EndExpired
	}
	return time.Time{}, ""
}

// State returns active, idle (open, but no activity for idleAfter) or ended
// (explicitly, or no activity for lifetime) at now. Zero durations mean the
// defaults.
func (s Session) State(now time.Time, idleAfter, lifetime time.Duration) string {
	if end, _ := s.End(now, lifetime); !end.IsZero() {
		return StateEnded
	}
	if now.Sub(s.LastActivity) >= orDefault(idleAfter, DefaultIdleAfter) {
		return StateIdle
	}
	return StateActive
}

// Duration is how long the session lasted: from its first activity to its
// end, to its last activity when it expired (the unused lifetime is not
// part of it), or to now while it is open. Never negative.
func (s Session) Duration(now time.Time, lifetime time.Duration) time.Duration {
	end, reason := s.End(now, lifetime)
	switch {
	case reason == EndExpired:
		end = s.LastActivity
	case end.IsZero():
		end = now
	}
	if d := end.Sub(s.FirstActivity); d > 0 {
		return d
	}
	return 0
}

// Login is one successful login, from a login table (Odoo: res_users_log).
type Login struct {
	UserID    int64     `json:"user_id"`
	Login     string    `json:"login,omitempty"`
	At        time.Time `json:"at"`
	Source    string    `json:"source"`               // the login table
	SessionID string    `json:"session_id,omitempty"` // the session it opened (applications without session tables)
	EventID   string    `json:"event_id"`             // the audit event of the login row
}

// State is everything the tracker persisted, decoded.
type State struct {
	Sessions []Session        // most recently active first
	Logins   []Login          // in time order
	Users    map[int64]string // id → login
	// Clock is the commit time of the latest change the daemon had seen when
	// it last persisted its clock (about a minute's precision); IdleAfter and
	// Lifetime are its settings. All zero when not recorded.
	Clock               time.Time
	IdleAfter, Lifetime time.Duration
}

// ReadAll decodes persisted records (for the CLI and the API): load calls
// fn for every record, as sink's LoadState("sessions", fn) does.
func ReadAll(load func(fn func(key, value []byte) error) error) (sessions []Session, logins []Login, users map[int64]string, err error) {
	st, err := ReadState(load)
	if err != nil {
		return nil, nil, nil, err
	}
	return st.Sessions, st.Logins, st.Users, nil
}

// ReadState is ReadAll with the daemon's clock and settings.
func ReadState(load func(fn func(key, value []byte) error) error) (*State, error) {
	st := &State{Users: map[int64]string{}}
	err := load(func(k, v []byte) error {
		key := string(k)
		switch {
		case strings.HasPrefix(key, keySession):
			var s Session
			if err := json.Unmarshal(v, &s); err != nil {
				return fmt.Errorf("sessions: state record %s: %w", key, err)
			}
			st.Sessions = append(st.Sessions, s)
		case strings.HasPrefix(key, keyLogin):
			var l Login
			if err := json.Unmarshal(v, &l); err != nil {
				return fmt.Errorf("sessions: state record %s: %w", key, err)
			}
			st.Logins = append(st.Logins, l)
		case strings.HasPrefix(key, keyUser):
			id, login, err := decodeUser(key, v)
			if err != nil {
				return err
			}
			st.Users[id] = login
		case key == keyClock:
			c, err := decodeClock(v)
			if err != nil {
				return err
			}
			st.Clock, st.IdleAfter, st.Lifetime = c.Now, c.idleAfter(), c.lifetime()
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	for i := range st.Sessions {
		if s := &st.Sessions[i]; s.Login == "" && s.UserID > 0 {
			s.Login = st.Users[s.UserID]
		}
	}
	SortSessions(st.Sessions)
	sort.SliceStable(st.Logins, func(i, j int) bool { return st.Logins[i].At.Before(st.Logins[j].At) })
	return st, nil
}

// SortSessions orders sessions most recently active first.
func SortSessions(s []Session) {
	sort.SliceStable(s, func(i, j int) bool { return before(&s[j], &s[i]) })
}

// before orders sessions by last activity, then first activity, then id.
func before(a, b *Session) bool {
	if !a.LastActivity.Equal(b.LastActivity) {
		return a.LastActivity.Before(b.LastActivity)
	}
	if !a.FirstActivity.Equal(b.FirstActivity) {
		return a.FirstActivity.Before(b.FirstActivity)
	}
	return a.ID < b.ID
}

// Persisted records. Keys sort by kind, then as noted.
const (
	keyClock   = "c"  // {"now","idle_after","lifetime"}
	keyLogin   = "l/" // l/<user id, 20 digits>/<time>/<event id>: a Login
	keySession = "s/" // s/<session id>: a Session
	keyUser    = "u/" // u/<user id, 20 digits>: {"login"}
)

func sessionKey(id string) string { return keySession + id }

func userKey(id int64) string { return keyUser + pad(id) }

func loginKey(l *Login) string {
	return keyLogin + pad(l.UserID) + "/" + l.At.UTC().Format("20060102T150405.000000000Z") + "/" + l.EventID
}

func pad(n int64) string {
	s := strconv.FormatInt(n, 10)
	if len(s) < 20 {
		s = strings.Repeat("0", 20-len(s)) + s
	}
	return s
}

type userRecord struct {
	Login string `json:"login"`
}

func decodeUser(key string, v []byte) (int64, string, error) {
	id, err := strconv.ParseInt(strings.TrimLeft(key[len(keyUser):], "0"), 10, 64)
	var u userRecord
	if err == nil {
		err = json.Unmarshal(v, &u)
	}
	if err != nil {
		return 0, "", fmt.Errorf("sessions: state record %s: malformed", key)
	}
	return id, u.Login, nil
}

type clockRecord struct {
	Now       time.Time `json:"now"`
	IdleAfter string    `json:"idle_after"`
	Lifetime  string    `json:"lifetime"`
}

func decodeClock(v []byte) (clockRecord, error) {
	var c clockRecord
	if err := json.Unmarshal(v, &c); err != nil {
		return c, fmt.Errorf("sessions: state record %s: %w", keyClock, err)
	}
	return c, nil
}

func (c clockRecord) idleAfter() time.Duration { d, _ := time.ParseDuration(c.IdleAfter); return d }
func (c clockRecord) lifetime() time.Duration  { d, _ := time.ParseDuration(c.Lifetime); return d }

func orDefault(d, def time.Duration) time.Duration {
	if d <= 0 {
		return def
	}
	return d
}
