package alerts

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/cdcaudit/cdcaudit/audit"
	"github.com/cdcaudit/cdcaudit/sessions"
	"github.com/cdcaudit/cdcaudit/sink"
)

// StateBucket holds the stage's own state: the devices seen per user and
// the users' mail addresses.
const StateBucket = "alertstate"

// DefaultNewDeviceWindow: a device not seen for a user within this long is
// new again.
const DefaultNewDeviceWindow = 90 * 24 * time.Hour

// maxEvidence bounds the event ids an orm_bypass alert lists (Detail
// "changes" counts them all).
const maxEvidence = 100

// Keys of StateBucket.
const (
	keyVersion = "v"  // written once: the stage has run (no seeding again)
	keyDevice  = "d/" // d/<user id, 20 digits>/<fingerprint>: deviceRecord
	keyAddress = "a/" // a/<user id, 20 digits>: addressRecord
)

// StageOptions tune a Stage.
type StageOptions struct {
	// NewDeviceWindow: default DefaultNewDeviceWindow.
	NewDeviceWindow time.Duration
	// Logins raises a login alert for every login (off by default).
	Logins bool
	// Directory says where users' mail addresses are in the stream; nil:
	// none are learnt (mail goes to the security mailbox only).
	Directory *Directory
	// Secret, when set, reports a redacted column of an event: an address
	// in one is not learnt.
	Secret func(e *audit.Event, column string) bool
}

// Directory names the tables and columns that give a user's mail address
// through its contact: users.partner → partners.email.
type Directory struct {
	Users, UserID, UserPartner        string // schema.table, columns
	Partners, PartnerID, PartnerEmail string
}

// OdooDirectory is Odoo's: res_users.partner_id → res_partner.email.
func OdooDirectory() *Directory {
	return &Directory{Users: "public.res_users", UserID: "id", UserPartner: "partner_id",
		Partners: "public.res_partner", PartnerID: "id", PartnerEmail: "email"}
}

// SessionView is what the stage reads of the session tracker
// (*sessions.Tracker).
type SessionView interface {
	Session(id string) (sessions.Session, bool)
}

// Stage raises alerts from the change stream: new_device and login when
// a session opens, orm_bypass once per transaction with such changes. It
// decides from event data and commit times only, so a replay from the
// checkpoint raises the same alerts with the same ids (and the queue
// records, written with the events that caused them, are the same). It is
// used from the pipeline's goroutine only.
type Stage struct {
	opts     StageOptions
	sessions SessionView
	loaded   bool
	devices  map[int64]map[string]deviceRecord // user → fingerprint → record
	addrs    map[int64]addressRecord
	partners map[int64][]int64 // partner → users
	txEmails map[int64]string  // emails of partners changed in the transaction in progress
	dirty    map[string]struct{}
	queued   []sink.StateRecord
	bypass   bypassTx
}

type deviceRecord struct {
	Browser string    `json:"browser,omitempty"`
	OS      string    `json:"os,omitempty"`
	Device  string    `json:"device,omitempty"`
	Country string    `json:"country,omitempty"`
	Last    time.Time `json:"last"`
}

type addressRecord struct {
	Partner int64  `json:"partner,omitempty"`
	Email   string `json:"email,omitempty"`
}

// bypassTx collects the orm_bypass changes of the transaction in progress.
type bypassTx struct {
	n      int
	events []string
	tables []string
}

// NewStage returns a stage reading sessions from view.
func NewStage(opts StageOptions, view SessionView) *Stage {
	if opts.NewDeviceWindow <= 0 {
		opts.NewDeviceWindow = DefaultNewDeviceWindow
	}
	return &Stage{opts: opts, sessions: view,
		devices: map[int64]map[string]deviceRecord{}, addrs: map[int64]addressRecord{},
		partners: map[int64][]int64{}, txEmails: map[int64]string{}, dirty: map[string]struct{}{}}
}

// Load restores one record of StateBucket, at start-up, before anything
// else.
func (s *Stage) Load(key string, value []byte) error {
	s.loaded = true
	switch {
	case strings.HasPrefix(key, keyDevice):
		user, fp, ok := strings.Cut(key[len(keyDevice):], "/")
		id, err := strconv.ParseInt(user, 10, 64)
		var r deviceRecord
		if !ok || err != nil || json.Unmarshal(value, &r) != nil {
			return fmt.Errorf("alerts: state record %s: malformed", key)
		}
		s.device(id)[fp] = r
	case strings.HasPrefix(key, keyAddress):
		id, err := strconv.ParseInt(key[len(keyAddress):], 10, 64)
		var r addressRecord
		if err != nil || json.Unmarshal(value, &r) != nil {
			return fmt.Errorf("alerts: state record %s: malformed", key)
		}
		s.setAddress(id, r, false)
	}
	return nil
}

// SeedDevices takes the devices of sessions known before the stage ever
// ran (an upgrade): their users' next sessions are judged against them.
// Once the stage has stored anything it does nothing.
func (s *Stage) SeedDevices(known []sessions.Session) {
	if s.loaded {
		return
	}
	for _, ss := range known {
		fp, rec := fingerprint(ss)
		if ss.UserID <= 0 || fp == "" {
			continue
		}
		rec.Last = ss.LastActivity.UTC()
		if old, ok := s.device(ss.UserID)[fp]; ok && !old.Last.Before(rec.Last) {
			continue
		}
		s.device(ss.UserID)[fp] = rec
		s.dirty[deviceKey(ss.UserID, fp)] = struct{}{}
	}
}

// SeedAddress records a user's contact and address unless the stream
// already told them: for users that predate the stream (read at start).
func (s *Stage) SeedAddress(userID, partnerID int64, email string) {
	if userID <= 0 {
		return
	}
	if _, ok := s.addrs[userID]; ok {
		return
	}
	s.setAddress(userID, addressRecord{Partner: partnerID, Email: cleanEmail(email)}, true)
}

func (s *Stage) device(user int64) map[string]deviceRecord {
	m := s.devices[user]
	if m == nil {
		m = map[string]deviceRecord{}
		s.devices[user] = m
	}
	return m
}

func (s *Stage) setAddress(user int64, r addressRecord, dirty bool) {
	if old, ok := s.addrs[user]; ok && old.Partner != r.Partner {
		s.partners[old.Partner] = slices.DeleteFunc(s.partners[old.Partner], func(u int64) bool { return u == user })
	}
	if old, ok := s.addrs[user]; !ok || old.Partner != r.Partner {
		if r.Partner > 0 {
			s.partners[r.Partner] = append(s.partners[r.Partner], user)
		}
	}
	if old, ok := s.addrs[user]; ok && old == r {
		return
	}
	s.addrs[user] = r
	if dirty {
		s.dirty[keyAddress+pad(user)] = struct{}{}
	}
}

// Observe sees every event in stream order, before redaction (snapshot
// rows too): users' contacts and their addresses.
func (s *Stage) Observe(e *audit.Event) {
	d := s.opts.Directory
	if d == nil || e.Op == audit.OpTruncate {
		return
	}
	table := e.Schema + "." + e.Table
	switch table {
	case d.Users:
		id, ok := intColumn(e, d.UserID)
		if !ok {
			return
		}
		if e.Op == audit.OpDelete {
			if _, ok := s.addrs[id]; ok {
				s.setAddress(id, addressRecord{}, false) // unlinks its contact
				delete(s.addrs, id)
				s.dirty[keyAddress+pad(id)] = struct{}{} // stored as deleted
			}
			return
		}
		partner, ok := intValue(e.After, d.UserPartner)
		if !ok {
			return
		}
		r := s.addrs[id]
		if r.Partner != partner {
			r = addressRecord{Partner: partner, Email: s.emailOf(partner)}
		}
		s.setAddress(id, r, true)
	case d.Partners:
		id, ok := intColumn(e, d.PartnerID)
		if !ok || e.Op == audit.OpDelete {
			return
		}
		v, present := e.After.Get(d.PartnerEmail)
		if !present || s.opts.Secret != nil && s.opts.Secret(e, d.PartnerEmail) {
			return
		}
		var email string
		_ = json.Unmarshal(v, &email) // null: none
		email = cleanEmail(email)
		s.txEmails[id] = email // for a user of it inserted later in the transaction
		for _, u := range s.partners[id] {
			s.setAddress(u, addressRecord{Partner: id, Email: email}, true)
		}
	}
}

// emailOf is what the stage knows of a contact's address: from the
// transaction in progress, or from another user of the same contact.
func (s *Stage) emailOf(partner int64) string {
	if email, ok := s.txEmails[partner]; ok {
		return email
	}
	for _, u := range s.partners[partner] {
		if email := s.addrs[u].Email; email != "" {
			return email
		}
	}
	return ""
}

// cleanEmail keeps an address that can be one: no spaces or line breaks
// (it goes into a mail header), one @, at most 254 bytes.
func cleanEmail(s string) string {
	s = strings.TrimSpace(s)
	if len(s) > 254 || strings.Count(s, "@") != 1 || strings.ContainsAny(s, " \t\r\n<>,;\"") {
		return ""
	}
	return s
}

// Opened judges a session that event e opened (the tracker's view of it
// after e): a login.
func (s *Stage) Opened(e *audit.Event, sessionID string) {
	ss, ok := s.sessions.Session(sessionID)
	if !ok || ss.UserID <= 0 {
		return
	}
	at := e.CommitTime.UTC()
	a := Alert{Time: at, UserID: ss.UserID, Login: ss.Login, Session: ss.ID, IP: ss.IP,
		Browser: ss.Browser, OS: ss.OS, Device: ss.Device, Country: ss.Country, City: ss.City,
		Events: []string{e.ID()}, Sessions: []string{ss.ID}}
	who := ss.Login
	if who == "" {
		who = "user " + strconv.FormatInt(ss.UserID, 10)
	}
	if s.opts.Logins {
		l := a
		l.ID, l.Kind = KindLogin+"/"+ss.ID, KindLogin
		l.Summary = fmt.Sprintf("%s signed in%s", who, describe(ss))
		s.queue(l)
	}
	fp, rec := fingerprint(ss)
	if fp == "" {
		return // nothing to tell one device from another
	}
	seen := s.device(ss.UserID)
	first := len(seen) == 0
	old, known := seen[fp]
	if !first && (!known || at.Sub(old.Last) > s.opts.NewDeviceWindow) {
		a.ID, a.Kind = KindNewDevice+"/"+ss.ID, KindNewDevice
		a.Summary = fmt.Sprintf("%s signed in from a new device%s", who, describe(ss))
		s.queue(a)
	}
	if known && !at.After(old.Last) {
		return
	}
	rec.Last = at
	seen[fp] = rec
	s.dirty[deviceKey(ss.UserID, fp)] = struct{}{}
}

// describe says " from IP, with Browser on OS (device), in City, Country".
func describe(ss sessions.Session) string {
	var b strings.Builder
	if ss.IP != "" {
		b.WriteString(" from " + ss.IP)
	}
	if ss.Browser != "" || ss.OS != "" {
		b.WriteString(", with " + orUnknown(ss.Browser) + " on " + orUnknown(ss.OS))
	}
	if ss.Device != "" {
		b.WriteString(" (" + ss.Device + ")")
	}
	if place := Place(ss.City, ss.Country); place != "" {
		b.WriteString(", in " + place)
	}
	return b.String()
}

// Place joins a city and a country.
func Place(city, country string) string {
	switch {
	case city != "" && country != "":
		return city + ", " + country
	case country != "":
		return country
	}
	return city
}

func orUnknown(s string) string {
	if s == "" {
		return "an unknown browser"
	}
	return s
}

// fingerprint names a session's device: browser, OS, device and country
// (case aside). "" when the session tells none of them.
func fingerprint(ss sessions.Session) (string, deviceRecord) {
	r := deviceRecord{Browser: norm(ss.Browser), OS: norm(ss.OS), Device: norm(ss.Device), Country: norm(ss.Country)}
	if r.Browser == "" && r.OS == "" && r.Device == "" && r.Country == "" {
		return "", r
	}
	sum := sha256.Sum256([]byte(r.Browser + "\x00" + r.OS + "\x00" + r.Device + "\x00" + r.Country))
	return hex.EncodeToString(sum[:8]), r
}

func norm(s string) string { return strings.ToLower(strings.TrimSpace(s)) }

// Attributed sees the events of the transaction in progress once they are
// attributed (flags set): a part of a huge one, or all of it.
func (s *Stage) Attributed(events []*audit.Event) {
	for _, e := range events {
		if e.Op == audit.OpSnapshot || !slices.Contains(e.Flags, FlagORMBypass) {
			continue
		}
		s.bypass.n++
		if len(s.bypass.events) < maxEvidence {
			s.bypass.events = append(s.bypass.events, e.ID())
		}
		if t := e.Schema + "." + e.Table; !slices.Contains(s.bypass.tables, t) && len(s.bypass.tables) < 20 {
			s.bypass.tables = append(s.bypass.tables, t)
		}
	}
}

// FlagORMBypass is the event flag of a change made outside the
// application (correlate.FlagORMBypass).
const FlagORMBypass = "orm_bypass"

// Committed ends the transaction in progress: its orm_bypass changes make
// one alert.
func (s *Stage) Committed(xid uint32, commitTime time.Time) {
	clear(s.txEmails)
	b := s.bypass
	s.bypass = bypassTx{}
	if b.n == 0 {
		return
	}
	slices.Sort(b.tables)
	noun := "changes"
	if b.n == 1 {
		noun = "change"
	}
	s.queue(Alert{ID: KindORMBypass + "/" + b.events[0], Kind: KindORMBypass, Time: commitTime.UTC(),
		Events:  b.events,
		Summary: fmt.Sprintf("%d %s to %s made outside the application (orm_bypass)", b.n, noun, strings.Join(b.tables, ", ")),
		Detail:  map[string]string{"changes": strconv.Itoa(b.n), "tables": strings.Join(b.tables, ","), "xid": strconv.FormatUint(uint64(xid), 10)}})
}

// Abandon forgets the transaction in progress: the connection was lost
// and it will be streamed again.
func (s *Stage) Abandon() {
	clear(s.txEmails)
	s.bypass = bypassTx{}
}

func (s *Stage) queue(a Alert) { s.queued = append(s.queued, Queue(a)) }

// Dirty returns the records to store with the batch of the events that
// caused them: the alerts queued (bucket Bucket) and the stage's changed
// state (StateBucket).
func (s *Stage) Dirty() []sink.StateRecord {
	if !s.loaded {
		s.loaded = true
		s.dirty[keyVersion] = struct{}{}
	}
	if len(s.dirty) == 0 && len(s.queued) == 0 {
		return nil
	}
	out := s.queued
	s.queued = nil
	keys := make([]string, 0, len(s.dirty))
	for k := range s.dirty {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	for _, k := range keys {
		r := sink.StateRecord{Bucket: StateBucket, Key: k}
		switch {
		case k == keyVersion:
			r.Value = []byte("1")
		case strings.HasPrefix(k, keyDevice):
			user, fp, _ := strings.Cut(k[len(keyDevice):], "/")
			id, _ := strconv.ParseInt(user, 10, 64)
			r.Value, _ = json.Marshal(s.devices[id][fp])
		case strings.HasPrefix(k, keyAddress):
			id, _ := strconv.ParseInt(k[len(keyAddress):], 10, 64)
			if a, ok := s.addrs[id]; ok {
				r.Value, _ = json.Marshal(a)
			} // else nil: deleted
		}
		out = append(out, r)
	}
	clear(s.dirty)
	return out
}

func deviceKey(user int64, fp string) string { return keyDevice + pad(user) + "/" + fp }

func pad(n int64) string {
	s := strconv.FormatInt(n, 10)
	if len(s) < 20 {
		s = strings.Repeat("0", 20-len(s)) + s
	}
	return s
}

// intColumn reads an integer column of the row's identity (key, then
// after-image, then before-image).
func intColumn(e *audit.Event, col string) (int64, bool) {
	for _, r := range []audit.Row{e.Key, e.After, e.Before} {
		if id, ok := intValue(r, col); ok {
			return id, true
		}
	}
	return 0, false
}

func intValue(r audit.Row, col string) (int64, bool) {
	v, ok := r.Get(col)
	if !ok {
		return 0, false
	}
	var id int64
	if string(v) == "null" {
		return 0, true
	}
	if json.Unmarshal(v, &id) != nil {
		return 0, false
	}
	return id, true
}

// Addresses reads the users' mail addresses from StateBucket (load is a
// store's LoadState of that bucket).
func Addresses(load func(bucket string, fn func(key, value []byte) error) error) (map[int64]string, error) {
	out := map[int64]string{}
	err := load(StateBucket, func(k, v []byte) error {
		key := string(k)
		if !strings.HasPrefix(key, keyAddress) {
			return nil
		}
		id, err := strconv.ParseInt(key[len(keyAddress):], 10, 64)
		var r addressRecord
		if err != nil || json.Unmarshal(v, &r) != nil {
			return fmt.Errorf("alerts: state record %s: malformed", key)
		}
		if r.Email != "" {
			out[id] = r.Email
		}
		return nil
	})
	return out, err
}

// ValidateNewDeviceWindow accepts a window of one hour to ten years.
func ValidateNewDeviceWindow(d time.Duration) error {
	if d < time.Hour || d > 10*365*24*time.Hour {
		return fmt.Errorf("%s is out of range (1h to 87600h)", d)
	}
	return nil
}
