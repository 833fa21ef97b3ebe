package sessions

import (
	"bytes"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"slices"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/cdcaudit/cdcaudit/audit"
	"github.com/cdcaudit/cdcaudit/profile"
)

// Defaults of Options.
const (
	DefaultIdleAfter = 5 * time.Minute
	DefaultLifetime  = 7 * 24 * time.Hour // Odoo's SESSION_LIFETIME
)

// maxSkew is how far in the future of its commit a time a row records may
// be (the application's clock against the database's); later is garbage.
const maxSkew = time.Hour

// sweepEvery is how often (in stream time) expired sessions are ended and
// long-ended ones forgotten; clockEvery how often the stream clock is
// persisted.
const (
	sweepEvery = time.Minute
	clockEvery = time.Minute
)

// Options tune a Tracker.
type Options struct {
	// IdleAfter: an open session without activity for this long is idle
	// (default 5m).
	IdleAfter time.Duration
	// Lifetime: an open session without activity for this long has ended,
	// reason "expired" (default 7 days, Odoo's session lifetime).
	Lifetime time.Duration
	// GeoIPPath is an optional MaxMind or DB-IP .mmdb file (country or
	// city): it fills country and city from the IP when the application did
	// not record them.
	GeoIPPath string
	// PresentTables are the profile's session tables ("schema.table") that
	// exist in the database. When none does (Odoo 16/17), every login opens
	// a session of its own; otherwise logins are recorded as logins only.
	PresentTables []string
	// TouchEvery limits how often activity reported by Touch alone is
	// persisted: at most once per TouchEvery of stream time per session
	// (0: on every change). The tracker's own view is always exact; only the
	// persisted last activity (what a restart or the CLI sees) may lag.
	TouchEvery time.Duration
}

// RowSession is the session a session-table row of an event names, when the
// row opens or refreshes it: changes of the same transaction were made in
// that session.
type RowSession struct {
	UserID    int64 // 0 when the table names no user
	SessionID string
	// Opened: the row opened the session (the tracker held no session of
	// that id): a login, as far as the session tables tell.
	Opened bool
}

// StateUpdate is one record to persist (Value nil: delete the key).
type StateUpdate struct {
	Key   string
	Value []byte
}

// Stats counts what the tracker did with what it saw.
type Stats struct {
	Open     int    // sessions open (active or idle) now
	InMemory int    // sessions held in memory (open, and recently ended)
	Users    int    // users known
	Skipped  uint64 // rows of the application's tables skipped for missing or malformed values
	AfterEnd uint64 // rows naming a session that had already ended (ignored)
	Reopened uint64 // sessions that showed activity after an assumed end (expiry, password change)
	Started  uint64 // sessions the stream opened (a login), each once: not those loaded from the store
}

// Tracker rebuilds the application's users, logins and sessions from the
// change stream. Its methods are safe for concurrent use.
type Tracker struct {
	idleAfter, lifetime, touchEvery time.Duration
	tables                          map[tableName]*tableRoles
	users                           *profile.UsersTable // nil when the profile maps no users table
	geo                             *geoIP
	idLength                        int // the shortest IDLength of the session tables: what names a session

	mu            sync.Mutex
	loginSessions bool // no session table: each login is a session
	names         map[int64]string
	sessions      map[string]*tracked
	byUser        map[int64][]*tracked
	fingerprints  map[int64][16]byte // salted hashes of password values, memory only
	salt          [16]byte
	now           time.Time // the stream clock: latest commit time seen
	nextSweep     time.Time
	clockSaved    time.Time
	dirty         map[string]struct{}
	logins        []StateUpdate
	stats         Stats
	announced     map[string]struct{} // sessions a Signal showed active before the stream named them
	pending       []passwordChange    // of the transaction being observed
	staged        []stagedPrint       // fingerprints it saw, kept once attributed
}

// passwordChange is a password change seen in the transaction being
// observed, whose sessions end once it is attributed.
// stagedPrint is a password fingerprint seen in the transaction being
// received: it replaces the user's fingerprint only once its event is
// attributed, so a transaction given up and streamed again is judged
// against the fingerprint from before it.
type stagedPrint struct {
	user int64
	fp   [16]byte
	e    *audit.Event
}

type passwordChange struct {
	user int64
	at   time.Time
	e    *audit.Event
}

// tracked is a session held in memory.
type tracked struct {
	Session
	// rows are the live rows of session-kind tables naming the session, by
	// the pseudonym of their full identifier: with IDLength, several rows
	// name one session (Odoo's soft rotation keeps the first 42 characters
	// of the sid, inserts a row for the new sid and later deletes the old
	// one). The session ends when its last known row is deleted.
	rows      []string
	persisted time.Time // LastActivity as last written out
}

// maxRows bounds tracked.rows.
const maxRows = 8

// record is the persisted form of a session.
type record struct {
	Session
	Rows []string `json:"rows,omitempty"`
}

func (s *tracked) addRow(key string) {
	if slices.Contains(s.rows, key) {
		return
	}
	if len(s.rows) == maxRows {
		s.rows = slices.Delete(s.rows, 0, 1)
	}
	s.rows = append(s.rows, key)
}

type tableName struct{ schema, table string }

// tableRoles is what a table is to the tracker.
type tableRoles struct {
	name     string // schema.table
	users    bool
	logins   []profile.LoginTable
	sessions []profile.SessionTable
}

// New makes a tracker for profile p.
func New(p profile.Profile, opts Options) (*Tracker, error) {
	t := &Tracker{
		idleAfter:    orDefault(opts.IdleAfter, DefaultIdleAfter),
		lifetime:     orDefault(opts.Lifetime, DefaultLifetime),
		touchEvery:   max(opts.TouchEvery, 0),
		tables:       map[tableName]*tableRoles{},
		names:        map[int64]string{},
		sessions:     map[string]*tracked{},
		byUser:       map[int64][]*tracked{},
		fingerprints: map[int64][16]byte{},
		dirty:        map[string]struct{}{},
		announced:    map[string]struct{}{},
	}
	if err := ValidateIdleAfter(t.idleAfter); err != nil {
		return nil, fmt.Errorf("sessions: idle after: %w", err)
	}
	if err := ValidateLifetime(t.lifetime, t.idleAfter); err != nil {
		return nil, fmt.Errorf("sessions: lifetime: %w", err)
	}
	if _, err := rand.Read(t.salt[:]); err != nil {
		return nil, err
	}
	roles := func(table string) (*tableRoles, error) {
		schema, name, ok := strings.Cut(table, ".")
		if !ok || schema == "" || name == "" {
			return nil, fmt.Errorf("sessions: profile %s: table %q is not schema.table", p.Name, table)
		}
		k := tableName{schema, name}
		if t.tables[k] == nil {
			t.tables[k] = &tableRoles{name: table}
		}
		return t.tables[k], nil
	}
	if p.Users.Table != "" {
		if p.Users.ID == "" || p.Users.Login == "" {
			return nil, fmt.Errorf("sessions: profile %s: users table %s needs its id and login columns", p.Name, p.Users.Table)
		}
		r, err := roles(p.Users.Table)
		if err != nil {
			return nil, err
		}
		r.users = true
		u := p.Users
		t.users = &u
	}
	for _, l := range p.Logins {
		if l.User == "" {
			return nil, fmt.Errorf("sessions: profile %s: login table %s needs its user column", p.Name, l.Table)
		}
		r, err := roles(l.Table)
		if err != nil {
			return nil, err
		}
		r.logins = append(r.logins, l)
	}
	t.loginSessions = true
	for _, s := range p.Sessions {
		if s.ID == "" {
			return nil, fmt.Errorf("sessions: profile %s: session table %s needs its id column", p.Name, s.Table)
		}
		if s.Kind != "device_log" && s.Kind != "session" {
			return nil, fmt.Errorf("sessions: profile %s: session table %s: kind %q (want device_log or session)", p.Name, s.Table, s.Kind)
		}
		if s.IDLength > 0 && (t.idLength == 0 || s.IDLength < t.idLength) {
			t.idLength = s.IDLength
		}
		r, err := roles(s.Table)
		if err != nil {
			return nil, err
		}
		r.sessions = append(r.sessions, s)
		if slices.Contains(opts.PresentTables, s.Table) {
			t.loginSessions = false
		}
	}
	if opts.GeoIPPath != "" {
		g, err := openGeoIP(opts.GeoIPPath)
		if err != nil {
			return nil, err
		}
		t.geo = g
	}
	return t, nil
}

// Close releases the GeoIP database.
func (t *Tracker) Close() error { return t.geo.close() }

// Pseudonym is the session id cdcaudit uses for an application's raw
// session identifier: "s" + the first 24 hex digits of its SHA-256.
func Pseudonym(raw string) string {
	sum := sha256.Sum256([]byte(raw))
	var b [25]byte
	b[0] = 's'
	hex.Encode(b[1:], sum[:12])
	return string(b[:])
}

// SessionID returns the pseudonym of an application session identifier
// given from outside the session tables (a cdcaudit logical message), cut
// like the session tables cut theirs, so both name the same session. The raw
// identifier is not kept.
func (t *Tracker) SessionID(raw string) string {
	return Pseudonym(prefixRunes(raw, t.idLength))
}

// Observe takes one event, in stream order, before redaction. It updates
// users, logins and sessions, and returns the session a session-table row
// of the event names when that row opens or refreshes a session (nil
// otherwise). It keeps nothing of the event but what it records.
func (t *Tracker) Observe(e *audit.Event) *RowSession {
	if e == nil {
		return nil
	}
	r := t.tables[tableName{e.Schema, e.Table}]
	t.mu.Lock()
	defer t.mu.Unlock()
	t.advance(e.CommitTime)
	if r == nil {
		return nil
	}
	if r.users {
		t.observeUser(e)
	}
	var row *RowSession
	for i := range r.logins {
		if rs := t.observeLogin(e, r.name, &r.logins[i]); rs != nil {
			row = rs
		}
	}
	for i := range r.sessions {
		t.loginSessions = false // the table exists after all
		if rs := t.observeSession(e, r.name, &r.sessions[i]); rs != nil {
			row = rs
		}
	}
	return row
}

// at is the time of e: its commit time, or the stream clock for an event
// without one.
func (t *Tracker) at(e *audit.Event) time.Time {
	if e.CommitTime.IsZero() {
		return t.now
	}
	return e.CommitTime.UTC()
}

// keyValue returns a column of the event's row identity: the key, else the
// before-image, else the after-image.
func keyValue(e *audit.Event, col string) ([]byte, bool) {
	for _, r := range []audit.Row{e.Key, e.Before, e.After} {
		if v, ok := r.Get(col); ok && string(v) != "null" {
			return v, true
		}
	}
	return nil, false
}

// ---- users

func (t *Tracker) observeUser(e *audit.Event) {
	u := t.users
	switch e.Op {
	case audit.OpInsert, audit.OpUpdate:
		v, _ := e.After.Get(u.ID)
		id, ok := userValue(v)
		if !ok {
			if v, ok = keyValue(e, u.ID); ok {
				id, ok = userValue(v)
			}
		}
		if !ok {
			t.stats.Skipped++
			return
		}
		if v, ok := e.After.Get(u.Login); ok {
			if login, ok := textValue(v); ok {
				t.setName(id, clip(login, maxLogin))
			} else if string(v) != "null" {
				t.stats.Skipped++
			}
		}
		if u.Password != "" && t.passwordChanged(e, id, u.Password) && e.Op == audit.OpUpdate {
			// Ended once the transaction is attributed (Attributed): its
			// own changes were made in one of these sessions, and who
			// changed the password is who the transaction is attributed
			// to, not the row's write_uid (Odoo hashes by a raw UPDATE that
			// leaves a stale one).
			t.pending = append(t.pending, passwordChange{user: id, at: t.at(e), e: e})
		}
	case audit.OpDelete:
		v, ok := keyValue(e, u.ID)
		id, ok2 := userValue(v)
		if !ok || !ok2 {
			t.stats.Skipped++
			return
		}
		if _, known := t.names[id]; known {
			delete(t.names, id)
			t.dirty[userKey(id)] = struct{}{}
		}
		delete(t.fingerprints, id)
	}
}

func (t *Tracker) setName(id int64, login string) {
	if old, ok := t.names[id]; ok && old == login {
		return
	}
	t.names[id] = login
	t.dirty[userKey(id)] = struct{}{}
}

// passwordChanged reports whether the event changed the user's password:
// from Changed when the event has it, else by comparing with the
// before-image, else with a salted fingerprint of the value last seen
// (kept in memory only; after a restart the first update sets it; a
// transaction's fingerprints count once it is attributed, see stagedPrint).
func (t *Tracker) passwordChanged(e *audit.Event, id int64, col string) bool {
	if slices.Contains(e.UnchangedToast, col) {
		return false
	}
	after, ok := e.After.Get(col)
	if !ok {
		return false
	}
	h := sha256.New()
	h.Write(t.salt[:])
	h.Write(after)
	var fp [16]byte
	copy(fp[:], h.Sum(nil))
	old, had := t.fingerprints[id]
	for _, p := range t.staged {
		if p.user == id {
			old, had = p.fp, true // the transaction's own earlier update
		}
	}
	t.staged = append(t.staged, stagedPrint{user: id, fp: fp, e: e})
	switch {
	case e.Op != audit.OpUpdate:
		return false
	case e.Changed != nil:
		return slices.Contains(e.Changed, col)
	}
	if before, ok := e.Before.Get(col); ok {
		return !bytes.Equal(before, after)
	}
	return had && old != fp
}

// ---- logins

func (t *Tracker) observeLogin(e *audit.Event, table string, l *profile.LoginTable) *RowSession {
	if e.Op != audit.OpInsert {
		return nil // the cleanup job's deletes are no history
	}
	v, _ := e.After.Get(l.User)
	user, ok := userValue(v)
	if !ok {
		t.stats.Skipped++
		return nil
	}
	at := t.at(e)
	if l.At != "" {
		if v, ok := e.After.Get(l.At); ok {
			if ts, ok := timeValue(v); ok && !ts.After(at.Add(maxSkew)) {
				at = ts
			}
		}
	}
	login := Login{UserID: user, Login: t.names[user], At: at, Source: table, EventID: e.ID()}
	var row *RowSession
	if t.loginSessions {
		rowID := ""
		for _, c := range e.Key {
			if s, ok := textValue(c.Value); ok {
				rowID = clip(s, 40)
				break
			}
		}
		if rowID == "" {
			rowID = login.EventID
		}
		id := "l" + rowID
		s := t.sessions[id]
		if s == nil {
			s = &tracked{Session: Session{ID: id, UserID: user, Login: login.Login,
				FirstActivity: at, LastActivity: at, Source: table}}
			t.add(s)
			t.stats.Started++
			t.touched(s, true)
			row = &RowSession{Opened: true}
		} else {
			row = &RowSession{}
		}
		login.SessionID = id
		row.UserID, row.SessionID = user, id
	}
	b, _ := json.Marshal(&login)
	t.logins = append(t.logins, StateUpdate{Key: loginKey(&login), Value: b})
	return row
}

// ---- session tables

func (t *Tracker) observeSession(e *audit.Event, table string, st *profile.SessionTable) *RowSession {
	switch e.Op {
	case audit.OpTruncate:
		if st.Kind == "session" {
			for _, s := range t.sessions {
				if s.Source == table {
					t.end(s, t.at(e), EndDeleted, nil)
				}
			}
		}
		return nil
	case audit.OpDelete:
		// A device log's rows are deleted by its cleanup job, which ends
		// nothing; a session row's deletion is its logout.
		if st.Kind != "session" {
			return nil
		}
		v, ok := keyValue(e, st.ID)
		if !ok {
			t.stats.Skipped++
			return nil
		}
		id, rowKey, ok := t.sessionID(st, v)
		if !ok {
			t.stats.Skipped++
			return nil
		}
		if s := t.sessions[id]; s != nil && s.Ended.IsZero() {
			if i := slices.Index(s.rows, rowKey); i >= 0 {
				s.rows = slices.Delete(s.rows, i, i+1)
				t.touched(s, true)
			}
			if len(s.rows) == 0 {
				t.end(s, t.at(e), EndDeleted, nil)
			}
		}
		return nil
	case audit.OpInsert, audit.OpUpdate:
	default:
		return nil
	}
	row := e.After
	v, ok := row.Get(st.ID)
	if !ok {
		v, ok = keyValue(e, st.ID)
	}
	id, rowKey, ok := t.sessionID(st, v)
	if !ok {
		t.stats.Skipped++
		return nil
	}
	at := t.at(e)
	s := t.sessions[id]

	// Does the row end the session?
	if st.Revoked != "" {
		if v, ok := row.Get(st.Revoked); ok {
			if revoked, ok := boolValue(v); ok && revoked {
				// An update of a row revoked earlier that leaves revoked as
				// it was revokes nothing now.
				again := e.Op == audit.OpUpdate && e.Changed != nil && !slices.Contains(e.Changed, st.Revoked)
				if s != nil && !again {
					var by *int64
					if st.RevokedBy != "" {
						if v, ok := row.Get(st.RevokedBy); ok {
							if w, ok := userValue(v); ok {
								by = &w
							}
						}
					}
					if s.EndReason == EndDeleted && st.Kind == "device_log" {
						// Its files were seen removed (Signal) before the
						// revoke that removed them arrived: say who did it.
						s.EndReason, s.EndedBy = EndRevoked, by
						t.touched(s, true)
					} else {
						t.end(s, at, EndRevoked, by)
					}
				}
				return nil
			}
		}
	}
	if st.Ended != "" {
		if v, ok := row.Get(st.Ended); ok && string(v) != "null" {
			if s != nil {
				end := at
				if ts, ok := timeValue(v); ok {
					end = ts
				}
				t.end(s, end, EndLoggedOut, nil)
			}
			return nil
		}
	}

	// Whose session is it?
	user, userState := t.rowUser(st, row)
	if userState == userMalformed {
		t.stats.Skipped++
	}
	if userState == userNone && s != nil && s.Ended.IsZero() && e.Op == audit.OpUpdate {
		t.end(s, at, EndLoggedOut, nil) // the session lost its user
		return nil
	}

	// When? A row without a last-seen time was written now; one from the
	// future (beyond clock skew) was not.
	last := at
	if st.LastSeen != "" {
		if v, ok := row.Get(st.LastSeen); ok && string(v) != "null" {
			if ts, ok := timeValue(v); ok && !ts.After(at.Add(maxSkew)) {
				last = ts
			} else {
				t.stats.Skipped++
			}
		}
	}
	first := last
	if st.Created != "" {
		if v, ok := row.Get(st.Created); ok && string(v) != "null" {
			if ts, ok := timeValue(v); ok && !ts.After(last) {
				first = ts
			}
		}
	}

	opened := s == nil
	if s == nil {
		if userState != userKnown && st.User != "" {
			return nil // anonymous (or unreadable) until a row names its user
		}
		s = &tracked{Session: Session{ID: id, UserID: user, Login: t.names[user],
			FirstActivity: first, LastActivity: last, Source: table}}
		t.device(s, st, row, true)
		if _, ok := t.announced[id]; ok {
			delete(t.announced, id)
			s.StoreWatched = true
		}
		t.add(s)
		t.stats.Started++
	} else {
		if !s.Ended.IsZero() && !t.reopen(s, last) {
			t.stats.AfterEnd++
			return nil
		}
		if userState == userKnown && user != s.UserID {
			t.move(s, user)
		}
		if user := s.UserID; user > 0 && s.Login == "" {
			s.Login = t.names[user]
		}
		if first.Before(s.FirstActivity) {
			s.FirstActivity = first
		}
		if last.After(s.LastActivity) {
			s.LastActivity = last
		}
		// Rows arrive in commit order: the latest one describes the device
		// now, whatever its own clock says (the application's clock may lag
		// the database's, and attributed changes move LastActivity too).
		t.device(s, st, row, true)
	}
	if st.Kind == "session" {
		s.addRow(rowKey)
		s.StoreWatched = true
	}
	t.touched(s, true)
	return &RowSession{UserID: s.UserID, SessionID: s.ID, Opened: opened}
}

// sessionID reads and pseudonymizes a session identifier: the session's
// id, and the row's (the whole identifier's pseudonym). The raw text lives
// only in this call.
func (t *Tracker) sessionID(st *profile.SessionTable, v []byte) (id, rowKey string, ok bool) {
	raw, ok := textValue(v)
	if !ok || raw == "" {
		return "", "", false
	}
	id = Pseudonym(prefixRunes(raw, st.IDLength))
	rowKey = id
	if short := prefixRunes(raw, st.IDLength); len(short) != len(raw) {
		rowKey = Pseudonym(raw)
	}
	return id, rowKey, true
}

const (
	userUnknown   = iota // the row does not say (column absent or not mapped)
	userKnown            // a user id
	userNone             // explicitly nobody (NULL, or a document without the user)
	userMalformed        // a value that is no user id
)

func (t *Tracker) rowUser(st *profile.SessionTable, row audit.Row) (int64, int) {
	if st.User == "" {
		return 0, userUnknown
	}
	v, ok := row.Get(st.User)
	if !ok {
		return 0, userUnknown
	}
	if string(v) == "null" {
		return 0, userNone
	}
	if st.UserKey != "" {
		id, present := userFromDocument(v, st.UserKey)
		switch {
		case !present:
			return 0, userMalformed
		case id == 0:
			return 0, userNone
		}
		return id, userKnown
	}
	if id, ok := userValue(v); ok {
		return id, userKnown
	}
	return 0, userMalformed
}

// device takes what the row says of the device. Only the newest row's
// device is kept; a row of another IP replaces the location too.
func (t *Tracker) device(s *tracked, st *profile.SessionTable, row audit.Row, newer bool) {
	if !newer {
		return
	}
	get := func(col string, n int) string {
		if col == "" {
			return ""
		}
		if v, ok := row.Get(col); ok {
			if s, ok := textValue(v); ok {
				return clip(s, n)
			}
		}
		return ""
	}
	ip := get(st.IP, maxText)
	if ip != "" && ip != s.IP {
		s.IP, s.Country, s.City = ip, "", ""
	}
	if ua := get(st.UserAgent, maxUserAgent); ua != "" {
		s.UserAgent = ua
		c := parseUserAgent(ua)
		s.Browser, s.OS, s.Device = c.Browser, c.OS, c.Device
	}
	for _, f := range []struct {
		dst *string
		col string
	}{{&s.OS, st.Platform}, {&s.Browser, st.Browser}, {&s.Device, st.Device}, {&s.Country, st.Country}, {&s.City, st.City}} {
		if v := get(f.col, maxText); v != "" {
			*f.dst = v
		}
	}
	if s.IP != "" && (s.Country == "" || s.City == "") && t.geo != nil {
		country, city := t.geo.lookup(s.IP)
		if s.Country == "" {
			s.Country = country
		}
		if s.City == "" && (country == "" || country == s.Country) {
			s.City = city
		}
	}
}

// reopen revives a session whose end was an inference (expiry, a password
// change) when it shows later activity. Explicit ends are final.
func (t *Tracker) reopen(s *tracked, activity time.Time) bool {
	switch {
	case s.EndReason == EndExpired && activity.After(s.LastActivity),
		s.EndReason == EndPasswordChanged && activity.After(s.Ended):
		s.Ended, s.EndReason, s.EndedBy = time.Time{}, "", nil
		t.stats.Reopened++
		return true
	}
	return false
}

// end ends an open session at `at`. A session past its lifetime already
// ended then, by expiry, whatever ends it later.
func (t *Tracker) end(s *tracked, at time.Time, reason string, by *int64) {
	if !s.Ended.IsZero() {
		return
	}
	if expiry := s.LastActivity.Add(t.lifetime); !at.Before(expiry) {
		at, reason, by = expiry, EndExpired, nil
	}
	if at.Before(s.FirstActivity) {
		at = s.FirstActivity
	}
	s.Ended, s.EndReason, s.EndedBy = at, reason, by
	t.touched(s, true)
}

func (t *Tracker) add(s *tracked) {
	t.sessions[s.ID] = s
	if s.UserID > 0 {
		t.byUser[s.UserID] = append(t.byUser[s.UserID], s)
	}
}

func (t *Tracker) move(s *tracked, user int64) {
	t.unindex(s)
	s.UserID, s.Login = user, t.names[user]
	if user > 0 {
		t.byUser[user] = append(t.byUser[user], s)
	}
}

func (t *Tracker) unindex(s *tracked) {
	list := t.byUser[s.UserID]
	if i := slices.Index(list, s); i >= 0 {
		list = slices.Delete(list, i, i+1)
	}
	if len(list) == 0 {
		delete(t.byUser, s.UserID)
	} else {
		t.byUser[s.UserID] = list
	}
}

// Settle marks for writing every session whose last activity moved since it
// was last written (TouchEvery holds such writes back), and the clock: what
// the final Dirty before a clean stop must carry.
func (t *Tracker) Settle() {
	t.mu.Lock()
	defer t.mu.Unlock()
	for _, s := range t.sessions {
		if s.LastActivity.After(s.persisted) {
			t.dirty[sessionKey(s.ID)] = struct{}{}
		}
	}
	t.clockSaved = time.Time{}
}

// touched marks the session's record for writing: always when force, else
// when its last activity moved on by TouchEvery since it was last written.
func (t *Tracker) touched(s *tracked, force bool) {
	if force || s.LastActivity.Sub(s.persisted) >= t.touchEvery {
		t.dirty[sessionKey(s.ID)] = struct{}{}
	}
}

// advance moves the stream clock; every sweepEvery it ends sessions past
// their lifetime and forgets those ended for a lifetime (late rows naming
// them are absorbed until then).
func (t *Tracker) advance(at time.Time) {
	if at.IsZero() || !at.After(t.now) {
		return
	}
	t.now = at.UTC()
	if t.now.Before(t.nextSweep) {
		return
	}
	t.nextSweep = t.now.Add(sweepEvery)
	for id, s := range t.sessions {
		if s.Ended.IsZero() && !s.open(t.now, t.lifetime) {
			t.end(s, t.now, EndExpired, nil)
		}
		if !s.Ended.IsZero() && t.now.Sub(s.Ended) >= t.lifetime {
			if _, pending := t.dirty[sessionKey(id)]; !pending {
				delete(t.sessions, id)
				t.unindex(s)
			}
		}
	}
}

// Active returns the ids of the user's open sessions at `at` (not ended,
// not expired; idle ones included), most recently active first.
func (t *Tracker) Active(userID int64, at time.Time) []string {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.advance(at)
	var open []*tracked
	for _, s := range t.byUser[userID] {
		if s.open(at, t.lifetime) {
			open = append(open, s)
		}
	}
	if len(open) == 0 {
		return nil
	}
	sort.Slice(open, func(i, j int) bool { return before(&open[j].Session, &open[i].Session) })
	ids := make([]string, len(open))
	for i, s := range open {
		ids[i] = s.ID
	}
	return ids
}

// ActiveUsers returns at most limit users with an open session at `at`,
// most recently active first.
func (t *Tracker) ActiveUsers(at time.Time, limit int) []int64 {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.advance(at)
	type active struct {
		user int64
		last time.Time
	}
	var users []active
	for user, list := range t.byUser {
		var last time.Time
		for _, s := range list {
			if s.open(at, t.lifetime) && s.LastActivity.After(last) {
				last = s.LastActivity
			}
		}
		if !last.IsZero() {
			users = append(users, active{user, last})
		}
	}
	sort.Slice(users, func(i, j int) bool {
		if !users[i].last.Equal(users[j].last) {
			return users[i].last.After(users[j].last)
		}
		return users[i].user < users[j].user
	})
	ids := make([]int64, 0, min(len(users), limit))
	for _, u := range users[:min(len(users), limit)] {
		ids = append(ids, u.user)
	}
	return ids
}

// Attributed is told the events of a transaction (or of the part of a huge
// one observed so far) once correlate has set their actors: only then does
// a password change among them end the user's sessions, so that the
// transaction's own changes were put on the session they were made in. It
// ends all of them — Odoo 18 logs out the session the change was made in
// too (recorded: its next request gets the login page; an application that
// keeps it shows it again, and its next session row reopens it) — by the
// user the change is attributed to (nobody when that is unknown), not the
// row's write_uid. Pending changes of events not among them belong to a
// transaction given up (a reconnect) and are dropped: its replay sees them
// again.
func (t *Tracker) Attributed(events []*audit.Event) {
	t.mu.Lock()
	defer t.mu.Unlock()
	for _, p := range t.staged {
		if slices.Contains(events, p.e) {
			t.fingerprints[p.user] = p.fp
		}
	}
	clear(t.staged)
	t.staged = t.staged[:0]
	if len(t.pending) == 0 {
		return
	}
	for _, p := range t.pending {
		if !slices.Contains(events, p.e) {
			continue
		}
		var by *int64
		if id := p.e.Actor.UserID; id != nil {
			v := *id
			by = &v
		}
		for _, s := range slices.Clone(t.byUser[p.user]) {
			t.end(s, p.at, EndPasswordChanged, by)
		}
	}
	clear(t.pending)
	t.pending = t.pending[:0]
}

// Abandon forgets what was deferred for the transaction being received:
// the connection was lost, and the transaction will be streamed again.
func (t *Tracker) Abandon() {
	t.mu.Lock()
	defer t.mu.Unlock()
	clear(t.pending)
	t.pending = t.pending[:0]
	clear(t.staged)
	t.staged = t.staged[:0]
}

// Login returns the login name of a user.
func (t *Tracker) Login(userID int64) (string, bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	l, ok := t.names[userID]
	return l, ok
}

// SeedUser records a user's login unless the stream already has: for users
// that existed before the stream started (one read of the users table at
// first start). It is persisted like a user seen in the stream.
func (t *Tracker) SeedUser(userID int64, login string) {
	if userID <= 0 {
		return
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	if _, ok := t.names[userID]; !ok {
		t.setName(userID, clip(login, maxLogin))
	}
}

// Touch records activity of a session (a change attributed to it) at `at`.
func (t *Tracker) Touch(sessionID string, at time.Time) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.advance(at)
	s := t.sessions[sessionID]
	if s == nil || !s.Ended.IsZero() || !at.After(s.LastActivity) {
		return
	}
	if !s.open(at, t.lifetime) {
		t.end(s, at, EndExpired, nil)
		return
	}
	s.LastActivity = at.UTC()
	t.touched(s, t.touchEvery == 0)
}

// Session returns a session held in memory (open, or recently ended).
func (t *Tracker) Session(id string) (Session, bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if s := t.sessions[id]; s != nil {
		return s.Session, true
	}
	return Session{}, false
}

// Sessions returns the sessions held in memory (open, and recently ended),
// most recently active first.
func (t *Tracker) Sessions() []Session {
	t.mu.Lock()
	out := make([]Session, 0, len(t.sessions))
	for _, s := range t.sessions {
		out = append(out, s.Session)
	}
	t.mu.Unlock()
	SortSessions(out)
	return out
}

// Settings returns the idle and lifetime durations in force.
func (t *Tracker) Settings() (idleAfter, lifetime time.Duration) { return t.idleAfter, t.lifetime }

// Stats returns counters for metrics.
func (t *Tracker) Stats() Stats {
	t.mu.Lock()
	defer t.mu.Unlock()
	st := t.stats
	st.InMemory, st.Users = len(t.sessions), len(t.names)
	for _, s := range t.sessions {
		if s.open(t.now, t.lifetime) {
			st.Open++
		}
	}
	return st
}

// OpenBy counts the sessions open now by browser, OS, device and country
// (each as the session shows it; "" when unknown), for metrics.
func (t *Tracker) OpenBy() (browser, os, device, country map[string]int) {
	browser, os, device, country = map[string]int{}, map[string]int{}, map[string]int{}, map[string]int{}
	t.mu.Lock()
	defer t.mu.Unlock()
	for _, s := range t.sessions {
		if s.open(t.now, t.lifetime) {
			browser[s.Browser]++
			os[s.OS]++
			device[s.Device]++
			country[s.Country]++
		}
	}
	return browser, os, device, country
}

// Dirty returns the records changed since the last call, to persist in the
// same store transaction as the events that changed them, in key order.
func (t *Tracker) Dirty() []StateUpdate {
	t.mu.Lock()
	defer t.mu.Unlock()
	if len(t.dirty) == 0 && len(t.logins) == 0 && t.now.Sub(t.clockSaved) < clockEvery {
		return nil
	}
	out := make([]StateUpdate, 0, len(t.dirty)+len(t.logins)+1)
	if !t.now.IsZero() && t.now.Sub(t.clockSaved) >= clockEvery {
		b, _ := json.Marshal(clockRecord{Now: t.now, IdleAfter: t.idleAfter.String(), Lifetime: t.lifetime.String()})
		out = append(out, StateUpdate{Key: keyClock, Value: b})
		t.clockSaved = t.now
	}
	out = append(out, t.logins...)
	t.logins = nil
	for key := range t.dirty {
		u := StateUpdate{Key: key}
		switch {
		case strings.HasPrefix(key, keySession):
			if s := t.sessions[key[len(keySession):]]; s != nil {
				u.Value, _ = json.Marshal(&record{Session: s.Session, Rows: s.rows})
				s.persisted = s.LastActivity
			} else {
				continue
			}
		case strings.HasPrefix(key, keyUser):
			id, _, err := decodeUser(key, []byte(`{}`))
			if login, ok := t.names[id]; ok && err == nil {
				u.Value, _ = json.Marshal(userRecord{Login: login})
			}
		}
		out = append(out, u)
	}
	clear(t.dirty)
	sort.SliceStable(out, func(i, j int) bool { return out[i].Key < out[j].Key })
	return out
}

// Load restores one persisted record, at start-up, before any Observe.
// Sessions ended longer than a lifetime before the persisted clock stay on
// disk only.
func (t *Tracker) Load(key string, value []byte) error {
	t.mu.Lock()
	defer t.mu.Unlock()
	switch {
	case key == keyClock:
		c, err := decodeClock(value)
		if err != nil {
			return err
		}
		if c.Now.After(t.now) {
			t.now, t.clockSaved = c.Now.UTC(), c.Now.UTC()
		}
	case strings.HasPrefix(key, keySession):
		var r record
		if err := json.Unmarshal(value, &r); err != nil {
			return fmt.Errorf("sessions: state record %s: %w", key, err)
		}
		s := r.Session
		if s.ID != key[len(keySession):] {
			return fmt.Errorf("sessions: state record %s holds session %q", key, s.ID)
		}
		end, _ := s.End(t.now, t.lifetime)
		if !t.now.IsZero() && !end.IsZero() && t.now.Sub(end) >= t.lifetime {
			return nil
		}
		if old := t.sessions[s.ID]; old != nil {
			delete(t.sessions, s.ID)
			t.unindex(old)
		}
		if len(r.Rows) > maxRows {
			r.Rows = r.Rows[len(r.Rows)-maxRows:]
		}
		t.add(&tracked{Session: s, rows: r.Rows, persisted: s.LastActivity})
	case strings.HasPrefix(key, keyUser):
		id, login, err := decodeUser(key, value)
		if err != nil {
			return err
		}
		t.names[id] = login
	case strings.HasPrefix(key, keyLogin):
		// History only: nothing of it is needed in memory.
	default:
		return fmt.Errorf("sessions: unknown state record %q", key)
	}
	return nil
}
