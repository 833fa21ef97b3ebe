package sessions

import (
	"bytes"
	"encoding/json"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/cdcaudit/cdcaudit/audit"
	"github.com/cdcaudit/cdcaudit/profile"
)

const (
	usersT   = "public.res_users"
	loginsT  = "public.res_users_log"
	devicesT = "public.res_device_log"
	httpT    = "public.http_sessions"
)

// odoo18 is a tracker for an Odoo 18 database (res_device_log present),
// with alice (6) and bob (7) known.
func odoo18(t *testing.T, opts Options) *stream {
	t.Helper()
	opts.PresentTables = []string{devicesT}
	s := newStream(t, profile.Odoo(), opts)
	s.insert(usersT, t0, userRow(6, "alice@example.com", "$pbkdf2-sha512$alice1", 2))
	s.insert(usersT, t0, userRow(7, "bob@example.com", "$pbkdf2-sha512$bob1", 2))
	return s
}

func TestSessionsTwoUsersConcurrent(t *testing.T) {
	s := odoo18(t, Options{})
	alice, bob := Pseudonym(sid42("a1")), Pseudonym(sid42("b2"))

	rs := s.insert(devicesT, t0.Add(time.Minute), deviceRow18(sid42("a1"), 6, "10.0.0.5", "windows", "chrome", "computer", t0.Add(time.Minute), t0.Add(time.Minute)))
	if rs == nil || rs.UserID != 6 || rs.SessionID != alice {
		t.Fatalf("alice's device row: RowSession %+v, want user 6 session %s", rs, alice)
	}
	rs = s.insert(devicesT, t0.Add(2*time.Minute), deviceRow18(sid42("b2"), 7, "10.0.0.9", "macos", "safari", "computer", t0.Add(2*time.Minute), t0.Add(2*time.Minute)))
	if rs == nil || rs.UserID != 7 || rs.SessionID != bob {
		t.Fatalf("bob's device row: RowSession %+v", rs)
	}

	now := t0.Add(3 * time.Minute)
	if got := s.tr.Active(6, now); !slices.Equal(got, []string{alice}) {
		t.Errorf("Active(alice) = %v, want [%s]", got, alice)
	}
	if got := s.tr.Active(7, now); !slices.Equal(got, []string{bob}) {
		t.Errorf("Active(bob) = %v, want [%s]", got, bob)
	}
	if got := s.tr.Active(8, now); got != nil {
		t.Errorf("Active(nobody) = %v", got)
	}
	if l, ok := s.tr.Login(6); !ok || l != "alice@example.com" {
		t.Errorf("Login(6) = %q %v", l, ok)
	}
	a := mustSession(t, s.tr, alice)
	want := Session{ID: alice, UserID: 6, Login: "alice@example.com", IP: "10.0.0.5", Browser: "chrome", OS: "windows",
		Device: "computer", FirstActivity: t0.Add(time.Minute), LastActivity: t0.Add(time.Minute), Source: devicesT}
	if !sameSession(a, want) {
		t.Errorf("alice's session:\n got %+v\nwant %+v", a, want)
	}
	if st := a.State(now, 0, 0); st != StateActive {
		t.Errorf("state %s, want active", st)
	}
	// A login row is a login, not a session, when res_device_log exists.
	if rs := s.insert(loginsT, t0.Add(time.Minute), row("id", 1, "create_uid", 6, "create_date", t0.Add(time.Minute), "write_uid", 6, "write_date", t0.Add(time.Minute))); rs != nil {
		t.Errorf("login row with a device log present returned %+v", rs)
	}
	if got := s.tr.Active(6, now); len(got) != 1 {
		t.Errorf("after a login row, Active(alice) = %v", got)
	}
}

func sameSession(a, b Session) bool {
	ja, _ := json.Marshal(a)
	jb, _ := json.Marshal(b)
	return bytes.Equal(ja, jb)
}

func TestSessionsOneUserTwoSessionsActiveOrder(t *testing.T) {
	s := odoo18(t, Options{})
	laptop, phone := Pseudonym(sid42("la")), Pseudonym(sid42("ph"))
	s.insert(devicesT, t0.Add(time.Minute), deviceRow18(sid42("la"), 6, "10.0.0.5", "windows", "chrome", "computer", t0.Add(time.Minute), t0.Add(time.Minute)))
	s.insert(devicesT, t0.Add(2*time.Minute), deviceRow18(sid42("ph"), 6, "172.16.0.7", "iphone", "safari", "mobile", t0.Add(2*time.Minute), t0.Add(2*time.Minute)))

	if got := s.tr.Active(6, t0.Add(3*time.Minute)); !slices.Equal(got, []string{phone, laptop}) {
		t.Errorf("Active = %v, want [phone laptop] = %v", got, []string{phone, laptop})
	}
	// A change attributed to the laptop makes it the most recent.
	s.tr.Touch(laptop, t0.Add(4*time.Minute))
	if got := s.tr.Active(6, t0.Add(4*time.Minute)); !slices.Equal(got, []string{laptop, phone}) {
		t.Errorf("after Touch(laptop): Active = %v, want [laptop phone]", got)
	}
	if got := mustSession(t, s.tr, laptop).LastActivity; !got.Equal(t0.Add(4 * time.Minute)) {
		t.Errorf("laptop last activity %v", got)
	}
	// Touch never moves activity back, nor revives an unknown session.
	s.tr.Touch(laptop, t0.Add(time.Minute))
	s.tr.Touch("s000000000000000000000000", t0.Add(5*time.Minute))
	if got := mustSession(t, s.tr, laptop).LastActivity; !got.Equal(t0.Add(4 * time.Minute)) {
		t.Errorf("laptop last activity moved back to %v", got)
	}
	// Idle sessions are still open: Active lists them.
	later := t0.Add(2 * time.Hour)
	if got := s.tr.Active(6, later); len(got) != 2 {
		t.Errorf("Active two hours later = %v, want both (idle)", got)
	}
	if st := mustSession(t, s.tr, phone).State(later, 0, 0); st != StateIdle {
		t.Errorf("phone state %s, want idle", st)
	}
}

func TestSessionsRefreshFromSecondDeviceRow(t *testing.T) {
	s := odoo18(t, Options{})
	id := Pseudonym(sid42("rf"))
	first := t0.Add(time.Minute)
	s.insert(devicesT, first, with(deviceRow18(sid42("rf"), 6, "10.0.0.5", "windows", "chrome", "computer", first, first), "country", "Belgium", "city", "Brussels"))
	// An hour later the same session shows up from another network.
	later := first.Add(70 * time.Minute)
	rs := s.insert(devicesT, later, deviceRow18(sid42("rf"), 6, "192.0.2.33", "windows", "chrome", "computer", first, later))
	if rs == nil || rs.SessionID != id {
		t.Fatalf("refresh row: RowSession %+v", rs)
	}
	got := mustSession(t, s.tr, id)
	if !got.FirstActivity.Equal(first) || !got.LastActivity.Equal(later) {
		t.Errorf("first/last = %v/%v, want %v/%v", got.FirstActivity, got.LastActivity, first, later)
	}
	if got.IP != "192.0.2.33" || got.Country != "" || got.City != "" {
		t.Errorf("device after refresh: ip %q country %q city %q (a new IP replaces the location)", got.IP, got.Country, got.City)
	}
	if n := len(s.tr.Sessions()); n != 1 {
		t.Errorf("%d sessions, want 1", n)
	}
	// A row committed later whose own clock reads earlier (the
	// application's host lags the database): its device facts are the
	// newest — rows arrive in commit order — but activity never goes back.
	s.insert(devicesT, later.Add(time.Second), deviceRow18(sid42("rf"), 6, "10.0.0.5", "windows", "chrome", "computer", first, first.Add(30*time.Minute)))
	got = mustSession(t, s.tr, id)
	if !got.LastActivity.Equal(later) || got.IP != "10.0.0.5" {
		t.Errorf("later-committed row: last %v ip %s, want last %v and the new row's ip", got.LastActivity, got.IP, later)
	}
}

func TestSessionsRevoke(t *testing.T) {
	s := odoo18(t, Options{})
	id, other := Pseudonym(sid42("rv")), Pseudonym(sid42("ot"))
	at := t0.Add(time.Minute)
	dev := deviceRow18(sid42("rv"), 6, "10.0.0.5", "linux", "firefox", "computer", at, at)
	s.insert(devicesT, at, dev)
	dev2 := deviceRow18(sid42("rv"), 6, "10.0.0.6", "linux", "firefox", "computer", at, at.Add(time.Hour))
	s.insert(devicesT, at.Add(time.Hour), dev2)
	s.insert(devicesT, at, deviceRow18(sid42("ot"), 6, "10.0.0.5", "linux", "chrome", "computer", at, at))

	// Odoo's cleanup deletes an old device row: that ends nothing.
	s.delete(devicesT, at.Add(61*time.Minute), dev)
	if got := s.tr.Active(6, at.Add(62*time.Minute)); len(got) != 2 {
		t.Fatalf("after a device-log DELETE, Active = %v, want 2 sessions", got)
	}

	// The admin (2) revokes: an ORM write on every row of the session.
	revokeAt := at.Add(90 * time.Minute)
	if rs := s.update(devicesT, revokeAt, dev2, with(dev2, "revoked", true, "write_uid", 2, "write_date", revokeAt)); rs != nil {
		t.Errorf("revoke returned RowSession %+v", rs)
	}
	got := mustSession(t, s.tr, id)
	if got.EndReason != EndRevoked || !got.Ended.Equal(revokeAt) || got.EndedBy == nil || *got.EndedBy != 2 {
		t.Errorf("after revoke: ended %v reason %q by %v", got.Ended, got.EndReason, got.EndedBy)
	}
	if st := got.State(revokeAt, 0, 0); st != StateEnded {
		t.Errorf("state %s", st)
	}
	if d := got.Duration(revokeAt.Add(time.Hour), 0); d != 90*time.Minute {
		t.Errorf("duration %s, want 1h30m", d)
	}
	if got := s.tr.Active(6, revokeAt); !slices.Equal(got, []string{other}) {
		t.Errorf("Active after revoke = %v, want [%s]", got, other)
	}
	// The same revoke applied to a second row (key-only before-image),
	// and a later device row of the revoked session, change nothing.
	s.update(devicesT, revokeAt.Add(time.Second), nil, with(dev, "revoked", true, "write_uid", 9))
	s.insert(devicesT, revokeAt.Add(time.Minute), deviceRow18(sid42("rv"), 6, "10.0.0.6", "linux", "firefox", "computer", at, revokeAt.Add(time.Minute)))
	got = mustSession(t, s.tr, id)
	if *got.EndedBy != 2 || !got.Ended.Equal(revokeAt) || !got.LastActivity.Equal(at.Add(time.Hour)) {
		t.Errorf("after a second revoke and a late row: %+v", got)
	}
	if st := s.tr.Stats(); st.AfterEnd != 1 {
		t.Errorf("stats %+v, want AfterEnd 1", st)
	}
}

func TestSessionsPasswordChange(t *testing.T) {
	s := odoo18(t, Options{})
	at := t0.Add(time.Minute)
	s.insert(devicesT, at, deviceRow18(sid42("p1"), 6, "10.0.0.5", "windows", "chrome", "computer", at, at))
	s.insert(devicesT, at, deviceRow18(sid42("p2"), 6, "10.0.0.6", "android", "chrome", "mobile", at, at))
	s.insert(devicesT, at, deviceRow18(sid42("p3"), 7, "10.0.0.7", "windows", "edge", "computer", at, at))

	// An update that does not touch the password ends nothing (full
	// before-image: Changed known).
	u := userRow(6, "alice@example.com", "$pbkdf2-sha512$alice1", 2)
	s.update(usersT, at.Add(time.Minute), u, with(u, "active", true, "write_date", at.Add(time.Minute)))
	if got := s.tr.Active(6, at.Add(time.Minute)); len(got) != 2 {
		t.Fatalf("Active after a non-password update = %v", got)
	}
	// Alice changes her password in session p1: Odoo's raw UPDATE of the
	// hash leaves a stale write_uid (the superuser); correlate attributed
	// the transaction to alice in p1. Her sessions end (Odoo 18 logs out
	// p1 too), by her.
	change := at.Add(2 * time.Minute)
	alice, p1 := int64(6), Pseudonym(sid42("p1"))
	s.actor = audit.Actor{UserID: &alice, UserVia: "tx_peer", SessionID: p1, SessionVia: "only_active"}
	s.update(usersT, change, u, with(u, "write_uid", 1, "password", "$pbkdf2-sha512$alice2"))
	s.actor = audit.Actor{}
	if got := s.tr.Active(6, change); got != nil {
		t.Errorf("Active(alice) after password change = %v", got)
	}
	for _, seed := range []string{"p1", "p2"} {
		got := mustSession(t, s.tr, Pseudonym(sid42(seed)))
		if got.EndReason != EndPasswordChanged || !got.Ended.Equal(change) || got.EndedBy == nil || *got.EndedBy != 6 {
			t.Errorf("session %s: ended %v reason %q by %v, want password_changed by 6 (not the stale write_uid 1)", seed, got.Ended, got.EndReason, got.EndedBy)
		}
	}
	if got := s.tr.Active(7, change); len(got) != 1 {
		t.Errorf("bob's session ended too: %v", got)
	}

	// Without a before-image (REPLICA IDENTITY DEFAULT: Changed unknown),
	// the change is told from the value last seen.
	s.insert(devicesT, change, deviceRow18(sid42("p4"), 7, "10.0.0.8", "windows", "edge", "computer", change, change))
	b := userRow(7, "bob@example.com", "$pbkdf2-sha512$bob1", 2)
	s.update(usersT, change.Add(time.Minute), nil, with(b, "write_date", change.Add(time.Minute)))
	if got := s.tr.Active(7, change.Add(time.Minute)); len(got) != 2 {
		t.Fatalf("same password without before-image ended sessions: %v", got)
	}
	s.update(usersT, change.Add(2*time.Minute), nil, with(b, "password", "$pbkdf2-sha512$bob2"))
	if got := s.tr.Active(7, change.Add(2*time.Minute)); got != nil {
		t.Errorf("password change without before-image: Active(bob) = %v", got)
	}

	// Ends by a password change are inferences: a later device row of the
	// ended session reopens it.
	rs := s.insert(devicesT, change.Add(time.Hour), deviceRow18(sid42("p2"), 6, "10.0.0.6", "android", "chrome", "mobile", at, change.Add(time.Hour)))
	if rs == nil {
		t.Fatal("a device row after the password change did not refresh the session")
	}
	if got := s.tr.Active(6, change.Add(time.Hour)); !slices.Equal(got, []string{Pseudonym(sid42("p2"))}) {
		t.Errorf("Active(alice) after reopen = %v", got)
	}
	if st := s.tr.Stats(); st.Reopened != 1 {
		t.Errorf("stats %+v, want Reopened 1", st)
	}
}

func TestSessionsOdoo16LoginIsSession(t *testing.T) {
	// Odoo 16/17: no res_device_log.
	s := newStream(t, profile.Odoo(), Options{})
	s.insert(usersT, t0, userRow(6, "alice@example.com", "$pbkdf2-sha512$alice1", 2))
	login := func(id int, user int, at time.Time) *RowSession {
		return s.insert(loginsT, at.Add(time.Second), row("id", id, "create_uid", user, "create_date", at, "write_uid", user, "write_date", at))
	}
	at1, at2 := t0.Add(time.Minute), t0.Add(10*time.Minute)
	if rs := login(41, 6, at1); rs == nil || rs.SessionID != "l41" || rs.UserID != 6 {
		t.Fatalf("login 41: %+v", rs)
	}
	login(42, 6, at2)
	if got := s.tr.Active(6, at2); !slices.Equal(got, []string{"l42", "l41"}) {
		t.Errorf("Active = %v, want [l42 l41]", got)
	}
	sess := mustSession(t, s.tr, "l42")
	if !sess.FirstActivity.Equal(at2) || sess.Login != "alice@example.com" || sess.Source != loginsT {
		t.Errorf("login session %+v", sess)
	}
	// The cleanup job deletes old login rows: nothing ends.
	s.delete(loginsT, at2, row("id", 41))
	if got := s.tr.Active(6, at2); len(got) != 2 {
		t.Errorf("after cleanup Active = %v", got)
	}
	// Log out everywhere = a password change.
	u := userRow(6, "alice@example.com", "$pbkdf2-sha512$alice1", 2)
	s.update(usersT, at2.Add(time.Minute), u, with(u, "password", "$pbkdf2-sha512$alice2"))
	if got := s.tr.Active(6, at2.Add(time.Minute)); got != nil {
		t.Errorf("after password change Active = %v", got)
	}
	// The logins are persisted.
	var logins []Login
	persistedSessions := 0
	for _, u := range s.tr.Dirty() {
		if strings.HasPrefix(u.Key, "s/l4") && bytes.Contains(u.Value, []byte(`"end_reason":"password_changed"`)) {
			persistedSessions++
		}
		if strings.HasPrefix(u.Key, "l/") {
			var l Login
			if err := json.Unmarshal(u.Value, &l); err != nil {
				t.Fatal(err)
			}
			logins = append(logins, l)
		}
	}
	if persistedSessions != 2 {
		t.Errorf("%d login sessions persisted, want 2", persistedSessions)
	}
	if len(logins) != 2 || logins[0].SessionID != "l41" || !logins[0].At.Equal(at1) || logins[1].Login != "alice@example.com" {
		t.Errorf("logins %+v", logins)
	}

	// With a device log present, a login opens nothing.
	s2 := newStream(t, profile.Odoo(), Options{PresentTables: []string{devicesT, httpT}})
	if rs := s2.insert(loginsT, at1, row("id", 1, "create_uid", 6, "create_date", at1)); rs != nil {
		t.Errorf("Odoo 18 login returned %+v", rs)
	}
	if got := s2.tr.Sessions(); len(got) != 0 {
		t.Errorf("Odoo 18 login opened %v", ids(got))
	}
	if d := s2.tr.Dirty(); len(d) != 2 || !strings.HasPrefix(d[1].Key, "l/") {
		t.Errorf("Odoo 18 login not recorded: %v", d)
	}
}

func TestSessionsUserAgent19(t *testing.T) {
	s := odoo18(t, Options{})
	const (
		chromeWin = "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Safari/537.36"
		safariIPh = "Mozilla/5.0 (iPhone; CPU iPhone OS 17_4 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.4 Mobile/15E148 Safari/604.1"
	)
	at := t0.Add(time.Minute)
	s.insert(devicesT, at, deviceRow19(sid42("cw"), 6, "10.0.0.5", chromeWin, at, at))
	s.insert(devicesT, at, deviceRow19(sid42("si"), 7, "10.0.0.6", safariIPh, at, at))
	for _, tc := range []struct {
		seed, browser, os, device, ua string
	}{
		{"cw", "Chrome 131", "Windows 10", "computer", chromeWin},
		{"si", "Mobile Safari 17", "iOS 17.4", "mobile (iPhone)", safariIPh},
	} {
		got := mustSession(t, s.tr, Pseudonym(sid42(tc.seed)))
		if got.Browser != tc.browser || got.OS != tc.os || got.Device != tc.device || got.UserAgent != tc.ua {
			t.Errorf("%s: browser %q os %q device %q ua %q; want %q %q %q", tc.seed, got.Browser, got.OS, got.Device, got.UserAgent, tc.browser, tc.os, tc.device)
		}
	}
	// Oddities parse to nothing, without failing.
	for _, ua := range []string{"", "\xff\xfe", strings.Repeat("A", 5000), "python-requests/2.31"} {
		c := parseUserAgent(ua)
		if len(c.Browser)+len(c.OS)+len(c.Device) > 3*maxText {
			t.Errorf("parseUserAgent(%.20q) = %+v", ua, c)
		}
	}
	if c := parseUserAgent("Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)"); c.Device != "bot" {
		t.Errorf("Googlebot: %+v", c)
	}
}

// genericProfile is an application configured in YAML alone, with
// http_sessions(sid, user_id, ip, user_agent, created_at, last_seen,
// ended_at, revoked, revoked_by).
func genericProfile() profile.Profile {
	return profile.Profile{
		Name:  "generic",
		Users: profile.UsersTable{Table: "app.users", ID: "id", Login: "email"},
		Sessions: []profile.SessionTable{{
			Table: "app.http_sessions", Kind: "session", ID: "sid", User: "user_id", IP: "ip",
			UserAgent: "user_agent", Created: "created_at", LastSeen: "last_seen",
			Ended: "ended_at", Revoked: "revoked", RevokedBy: "revoked_by",
		}},
		Columns: profile.Columns{CreatedBy: "created_by", UpdatedBy: "updated_by"},
	}
}

func TestSessionsGenericTable(t *testing.T) {
	s := newStream(t, genericProfile(), Options{PresentTables: []string{"app.http_sessions"}})
	s.insert("app.users", t0, row("id", 11, "email", "carol@example.org"))
	const ua = "Mozilla/5.0 (X11; Linux x86_64; rv:133.0) Gecko/20100101 Firefox/133.0"
	sess := func(sidv string, user any, created, seen time.Time) audit.Row {
		return row("sid", sidv, "user_id", user, "ip", "203.0.113.8", "user_agent", ua,
			"created_at", raw(`"`+created.Format("2006-01-02 15:04:05.999999-07")+`"`), "last_seen", seen,
			"ended_at", nil, "revoked", false, "revoked_by", nil)
	}
	a1, a2, a3 := "tok-aaaaaaaaaaaaaaaa", "tok-bbbbbbbbbbbbbbbb", "tok-cccccccccccccccc"
	at := t0.Add(time.Minute)
	// INSERT opens (created_at is a timestamptz with an offset).
	r1 := sess(a1, 11, at.In(time.FixedZone("", 3600)), at)
	if rs := s.insert("app.http_sessions", at, r1); rs == nil || rs.UserID != 11 || rs.SessionID != Pseudonym(a1) {
		t.Fatalf("insert: %+v", rs)
	}
	got := mustSession(t, s.tr, Pseudonym(a1))
	if !got.FirstActivity.Equal(at) || got.Browser != "Firefox 133" || got.OS != "Linux" || got.Device != "computer" || got.Login != "carol@example.org" {
		t.Errorf("opened %+v", got)
	}
	// UPDATE of last_seen refreshes.
	seen := at.Add(20 * time.Minute)
	if rs := s.update("app.http_sessions", seen, r1, with(r1, "last_seen", seen)); rs == nil {
		t.Error("refresh returned nil")
	}
	if got := mustSession(t, s.tr, Pseudonym(a1)); !got.LastActivity.Equal(seen) {
		t.Errorf("last activity %v, want %v", got.LastActivity, seen)
	}
	// DELETE is a logout.
	s.delete("app.http_sessions", seen.Add(time.Minute), row("sid", a1))
	if got := mustSession(t, s.tr, Pseudonym(a1)); got.EndReason != EndDeleted || !got.Ended.Equal(seen.Add(time.Minute)) {
		t.Errorf("after delete: %+v", got)
	}
	// ended_at set: logged out at that time; revoked: revoked by whom.
	r2, r3 := sess(a2, 11, at, at), sess(a3, 11, at, at)
	s.insert("app.http_sessions", at, r2)
	s.insert("app.http_sessions", at, r3)
	s.update("app.http_sessions", seen, nil, with(r2, "ended_at", at.Add(5*time.Minute)))
	s.update("app.http_sessions", seen, nil, with(r3, "revoked", true, "revoked_by", 1))
	if got := mustSession(t, s.tr, Pseudonym(a2)); got.EndReason != EndLoggedOut || !got.Ended.Equal(at.Add(5*time.Minute)) {
		t.Errorf("ended_at: %+v", got)
	}
	if got := mustSession(t, s.tr, Pseudonym(a3)); got.EndReason != EndRevoked || got.EndedBy == nil || *got.EndedBy != 1 {
		t.Errorf("revoked: %+v", got)
	}
	if got := s.tr.Active(11, seen); got != nil {
		t.Errorf("Active = %v", got)
	}
	// A row without a user (user_id NULL: anonymous) opens nothing.
	if rs := s.insert("app.http_sessions", seen, sess("anon-1", nil, seen, seen)); rs != nil || len(s.tr.Sessions()) != 3 {
		t.Errorf("anonymous row: %+v, sessions %v", rs, ids(s.tr.Sessions()))
	}
}

func TestSessionsOdooSessionDB(t *testing.T) {
	// OCA session_db: http_sessions(sid, write_date, payload) where the
	// payload is the serialized session; with Odoo 18's device log, the
	// device row's identifier is the sid's first 42 characters.
	s := odoo18(t, Options{PresentTables: []string{devicesT, httpT}})
	full := sid("zq")
	id := Pseudonym(full[:42])
	at := t0.Add(time.Minute)
	// Before login the session is anonymous: not a login session.
	anon := row("sid", full, "write_date", at, "payload", `{"db":"odoo","uid":null,"context":{}}`)
	if rs := s.insert(httpT, at, anon); rs != nil {
		t.Errorf("anonymous session row returned %+v", rs)
	}
	// Login: the same row now names its user.
	loggedIn := with(anon, "payload", `{"db":"odoo","login":"alice@example.com","uid":6,"session_token":"secret-token"}`, "write_date", at.Add(time.Second))
	if rs := s.update(httpT, at.Add(time.Second), nil, loggedIn); rs == nil || rs.UserID != 6 || rs.SessionID != id {
		t.Fatalf("login update: %+v (want session %s)", rs, id)
	}
	// The device row of that session refreshes the same session.
	s.insert(devicesT, at.Add(2*time.Second), deviceRow18(full[:42], 6, "10.1.1.1", "linux", "chrome", "computer", at, at.Add(2*time.Second)))
	if got := s.tr.Sessions(); len(got) != 1 || got[0].IP != "10.1.1.1" || got[0].Source != httpT {
		t.Errorf("sessions %+v", got)
	}
	// Soft rotation (Odoo 18+, every few hours): a row for a new sid with
	// the same first 42 characters, then the old row deleted. The session
	// goes on.
	rotated := full[:42] + strings.Repeat("R", 42)
	if rs := s.insert(httpT, at.Add(3*time.Hour), row("sid", rotated, "write_date", at.Add(3*time.Hour), "payload", `{"uid":6}`)); rs == nil || rs.SessionID != id {
		t.Errorf("rotated row: %+v", rs)
	}
	s.delete(httpT, at.Add(3*time.Hour+time.Minute), row("sid", full))
	if got := s.tr.Active(6, at.Add(3*time.Hour+time.Minute)); !slices.Equal(got, []string{id}) {
		t.Fatalf("after soft rotation Active = %v", got)
	}
	// Logout deletes the (last) row.
	s.delete(httpT, at.Add(4*time.Hour), row("sid", rotated))
	if got := mustSession(t, s.tr, id); got.EndReason != EndDeleted || !got.Ended.Equal(at.Add(4*time.Hour)) {
		t.Errorf("after logout: %+v", got)
	}
	for _, u := range s.tr.Dirty() {
		if bytes.Contains(u.Value, []byte("secret-token")) || strings.Contains(u.Key, full[:20]) || bytes.Contains(u.Value, []byte(full[:20])) {
			t.Errorf("state record %s leaks the session: %s", u.Key, u.Value)
		}
	}
}

func TestSessionsStatesAndDurations(t *testing.T) {
	first, last := t0, t0.Add(30*time.Minute)
	s := Session{ID: "s1", FirstActivity: first, LastActivity: last}
	for _, tc := range []struct {
		now   time.Time
		state string
		dur   time.Duration
	}{
		{last.Add(time.Minute), StateActive, 31 * time.Minute},
		{last.Add(5 * time.Minute), StateIdle, 35 * time.Minute},
		{last.Add(6 * 24 * time.Hour), StateIdle, 30*time.Minute + 6*24*time.Hour},
		{last.Add(7 * 24 * time.Hour), StateEnded, 30 * time.Minute}, // expired: used for 30 minutes
	} {
		if st := s.State(tc.now, 0, 0); st != tc.state {
			t.Errorf("at %v: state %s, want %s", tc.now.Sub(last), st, tc.state)
		}
		if d := s.Duration(tc.now, 0); d != tc.dur {
			t.Errorf("at %v: duration %s, want %s", tc.now.Sub(last), d, tc.dur)
		}
	}
	if end, reason := s.End(last.Add(8*24*time.Hour), 0); reason != EndExpired || !end.Equal(last.Add(7*24*time.Hour)) {
		t.Errorf("End = %v %s", end, reason)
	}
	// Custom settings.
	if st := s.State(last.Add(2*time.Minute), time.Minute, time.Hour); st != StateIdle {
		t.Errorf("idle after 1m: %s", st)
	}
	if st := s.State(last.Add(time.Hour), time.Minute, time.Hour); st != StateEnded {
		t.Errorf("lifetime 1h: %s", st)
	}
	// An explicit end.
	s.Ended, s.EndReason = last.Add(time.Minute), EndLoggedOut
	if st, d := s.State(last, 0, 0), s.Duration(last.Add(time.Hour), 0); st != StateEnded || d != 31*time.Minute {
		t.Errorf("logged out: %s %s", st, d)
	}
	// Bad data never gives a negative duration.
	if d := (Session{FirstActivity: last, LastActivity: first, Ended: first, EndReason: EndRevoked}).Duration(last, 0); d != 0 {
		t.Errorf("negative duration %s", d)
	}

	// The tracker ends sessions past their lifetime as the stream moves on
	// and persists the end; activity afterwards reopens them.
	tr := odoo18(t, Options{IdleAfter: time.Minute, Lifetime: time.Hour})
	id := Pseudonym(sid42("ex"))
	tr.insert(devicesT, t0, deviceRow18(sid42("ex"), 6, "10.0.0.5", "windows", "chrome", "computer", t0, t0))
	tr.tr.Dirty()
	tr.insert(usersT, t0.Add(61*time.Minute), userRow(8, "dave@example.com", "x", 2)) // any event moves the clock
	got := mustSession(t, tr.tr, id)
	if got.EndReason != EndExpired || !got.Ended.Equal(t0.Add(time.Hour)) {
		t.Errorf("after the lifetime: %+v", got)
	}
	found := false
	for _, u := range tr.tr.Dirty() {
		found = found || u.Key == "s/"+id && bytes.Contains(u.Value, []byte(`"end_reason":"expired"`))
	}
	if !found {
		t.Error("the expiry was not persisted")
	}
	if got := tr.tr.Active(6, t0.Add(61*time.Minute)); got != nil {
		t.Errorf("Active after expiry = %v", got)
	}
	// A revoke after expiry (Odoo's cron, once the session file is gone)
	// keeps the expiry.
	tr.update(devicesT, t0.Add(62*time.Minute), nil, with(deviceRow18(sid42("ex"), 6, "10.0.0.5", "windows", "chrome", "computer", t0, t0), "revoked", true, "write_uid", 1))
	if got := mustSession(t, tr.tr, id); got.EndReason != EndExpired || got.EndedBy != nil {
		t.Errorf("revoke after expiry: %+v", got)
	}
	// Two lifetimes after its end the session leaves memory (not the store).
	tr.insert(usersT, t0.Add(3*time.Hour), userRow(9, "erin@example.com", "x", 2))
	if _, ok := tr.tr.Session(id); ok {
		t.Error("an expired session stays in memory forever")
	}
	// Expiry given by a later end event: a DELETE of a session row after the
	// lifetime records "expired" at last activity + lifetime.
	g := newStream(t, genericProfile(), Options{Lifetime: time.Hour})
	g.insert("app.http_sessions", t0, row("sid", "x1", "user_id", 5, "last_seen", t0))
	g.delete("app.http_sessions", t0.Add(2*time.Hour), row("sid", "x1"))
	// (the clock sweep may have ended it first; either way the reason is expired)
	if s, _ := g.tr.Session(Pseudonym("x1")); s.EndReason != EndExpired || !s.Ended.Equal(t0.Add(time.Hour)) {
		t.Errorf("delete after lifetime: %+v", s)
	}
}

func TestSessionsDirtyLoadRoundTrip(t *testing.T) {
	store := persisted{}
	s := odoo18(t, Options{})
	at := t0.Add(time.Minute)
	s.insert(devicesT, at, deviceRow18(sid42("k1"), 6, "10.0.0.5", "windows", "chrome", "computer", at, at))
	s.insert(devicesT, at, deviceRow18(sid42("k2"), 6, "10.0.0.6", "iphone", "safari", "mobile", at, at.Add(time.Minute)))
	dev3 := deviceRow18(sid42("k3"), 7, "10.0.0.7", "linux", "firefox", "computer", at, at)
	s.insert(devicesT, at, dev3)
	s.insert(loginsT, at, row("id", 5, "create_uid", 6, "create_date", at))
	s.update(devicesT, at.Add(2*time.Minute), nil, with(dev3, "revoked", true, "write_uid", 2))
	s.insert(usersT, at, userRow(8, "gone@example.com", "x", 2))
	hs1, hs2 := sid("h1"), sid("h1")[:42]+strings.Repeat("Z", 42) // a session_db session, soft-rotated
	s.insert(httpT, at, row("sid", hs1, "write_date", at, "payload", `{"uid":7}`))
	s.insert(httpT, at, row("sid", hs2, "write_date", at, "payload", `{"uid":7}`))
	store.take(s.tr)
	s.delete(usersT, at.Add(3*time.Minute), row("id", 8))
	s.tr.Touch(Pseudonym(sid42("k1")), at.Add(4*time.Minute))
	store.take(s.tr)
	if len(s.tr.Dirty()) != 0 {
		t.Error("Dirty returned records twice")
	}
	if _, ok := store["u/00000000000000000008"]; ok {
		t.Error("a deleted user stays persisted")
	}

	// Restart.
	r := newStream(t, profile.Odoo(), Options{PresentTables: []string{devicesT}})
	if err := store.load(func(k, v []byte) error { return r.tr.Load(string(k), v) }); err != nil {
		t.Fatal(err)
	}
	if a, b := s.tr.Sessions(), r.tr.Sessions(); !slices.EqualFunc(a, b, sameSession) {
		t.Errorf("sessions after restart:\n got %+v\nwant %+v", b, a)
	}
	now := at.Add(5 * time.Minute)
	if got, want := r.tr.Active(6, now), s.tr.Active(6, now); !slices.Equal(got, want) || len(got) != 2 || got[0] != Pseudonym(sid42("k1")) {
		t.Errorf("Active after restart = %v, want %v", got, want)
	}
	if l, ok := r.tr.Login(7); !ok || l != "bob@example.com" {
		t.Errorf("Login(7) after restart = %q %v", l, ok)
	}
	if _, ok := r.tr.Login(8); ok {
		t.Error("deleted user back after restart")
	}
	// The restarted tracker carries on: revoke a session opened before.
	r.update(devicesT, now, nil, with(deviceRow18(sid42("k2"), 6, "10.0.0.6", "iphone", "safari", "mobile", at, at), "revoked", true, "write_uid", 6))
	if got := r.tr.Active(6, now); !slices.Equal(got, []string{Pseudonym(sid42("k1"))}) {
		t.Errorf("Active after revoke following restart = %v", got)
	}
	// The session's rows survived too: deleting the old one ends nothing,
	// deleting the last one does.
	hs := Pseudonym(hs1[:42])
	r.delete(httpT, now, row("sid", hs1))
	if got := r.tr.Active(7, now); !slices.Equal(got, []string{hs}) {
		t.Errorf("after deleting the rotated-out row: Active(7) = %v", got)
	}
	r.delete(httpT, now, row("sid", hs2))
	if got := r.tr.Active(7, now); got != nil {
		t.Errorf("after deleting the last row: Active(7) = %v", got)
	}
	store.take(r.tr)

	// ReadAll decodes the same records for the CLI.
	sessions, logins, users, err := ReadAll(store.load)
	if err != nil {
		t.Fatal(err)
	}
	if len(sessions) != 4 || sessions[0].ID != Pseudonym(sid42("k1")) || users[6] != "alice@example.com" || len(users) != 2 {
		t.Errorf("ReadAll: sessions %v users %v", ids(sessions), users)
	}
	if len(logins) != 1 || logins[0].UserID != 6 || logins[0].Login != "alice@example.com" {
		t.Errorf("ReadAll logins %+v", logins)
	}
	st, err := ReadState(store.load)
	if err != nil || st.Lifetime != DefaultLifetime || st.IdleAfter != DefaultIdleAfter || st.Clock.IsZero() {
		t.Errorf("ReadState: %v %+v", err, st)
	}
	// A corrupt record is an error, not a silent loss.
	if err := r.tr.Load("s/sabc", []byte("{")); err == nil {
		t.Error("Load accepted a corrupt record")
	}
	if err := r.tr.Load("zz", []byte("{}")); err == nil {
		t.Error("Load accepted an unknown record")
	}
}

func TestSessionsNoRawIdentifierInState(t *testing.T) {
	store := persisted{}
	s := odoo18(t, Options{PresentTables: []string{devicesT, httpT}})
	raws := []string{sid("Xy9"), sid("Qw3"), sid("Zt7")}
	at := t0.Add(time.Minute)
	for i, r := range raws {
		s.insert(devicesT, at, deviceRow18(r[:42], 6+i%2, "10.0.0.5", "windows", "chrome", "computer", at, at))
		s.insert(httpT, at, row("sid", r, "write_date", at, "payload", `{"uid":6,"session_token":"tk-`+r[:10]+`"}`))
	}
	dev := deviceRow18(raws[0][:42], 6, "10.0.0.5", "windows", "chrome", "computer", at, at)
	s.update(devicesT, at.Add(time.Minute), nil, with(dev, "revoked", true, "write_uid", 2))
	s.delete(httpT, at.Add(time.Minute), row("sid", raws[1]))
	s.delete(devicesT, at.Add(time.Minute), dev)
	ups := store.take(s.tr)
	if len(ups) == 0 {
		t.Fatal("no state")
	}
	var all bytes.Buffer
	for _, u := range ups {
		all.WriteString(u.Key)
		all.Write(u.Value)
	}
	for _, sess := range s.tr.Sessions() {
		b, _ := json.Marshal(sess)
		all.Write(b)
	}
	for _, r := range raws {
		for _, needle := range []string{r, r[:42], r[:16], r[42:], "tk-" + r[:10]} {
			if bytes.Contains(all.Bytes(), []byte(needle)) {
				t.Errorf("state contains the raw session identifier %q", needle)
			}
		}
	}
}

func TestSessionsUntrustedValues(t *testing.T) {
	s := odoo18(t, Options{})
	at := t0.Add(time.Minute)
	bad := []raw{"null", `""`, `"x"`, "-1", "0", "1e400", `"2026-13-45 99:99:99"`, `"infinity"`, `{"a":1}`, `[1]`, "tru", `"\u0000"`, raw(`"` + strings.Repeat("é", 3000) + `"`), ""}
	cols := []string{"id", "session_identifier", "user_id", "ip_address", "platform", "browser", "device_type",
		"country", "city", "first_activity", "last_activity", "revoked", "write_uid", "user_agent"}
	good := deviceRow18(sid42("ok"), 6, "10.0.0.5", "windows", "chrome", "computer", at, at)
	for _, c := range cols {
		for _, v := range bad {
			r := with(good, c, v)
			for _, op := range []audit.Op{audit.OpInsert, audit.OpUpdate, audit.OpDelete} {
				for _, table := range []string{devicesT, httpT, usersT, loginsT} {
					e := s.event(op, table, at, keyOf(r), r, r, nil)
					if op == audit.OpDelete {
						e.After = nil
					}
					s.send(e)
				}
			}
		}
	}
	// Events with nothing at all.
	for _, table := range []string{devicesT, httpT, usersT, loginsT} {
		for _, op := range []audit.Op{audit.OpInsert, audit.OpUpdate, audit.OpDelete, audit.OpTruncate, 0, 99} {
			s.send(s.event(op, table, time.Time{}, nil, nil, nil, nil))
		}
	}
	s.tr.Observe(nil)
	// A last activity far in the future is garbage: the commit time stands.
	s.insert(devicesT, at, deviceRow18(sid42("fu"), 6, "10.0.0.5", "windows", "chrome", "computer", at, time.Date(9999, 1, 1, 0, 0, 0, 0, time.UTC)))
	if got := mustSession(t, s.tr, Pseudonym(sid42("fu"))); !got.LastActivity.Equal(at) {
		t.Errorf("future last activity kept: %v", got.LastActivity)
	}
	if st := s.tr.Stats(); st.Skipped == 0 {
		t.Errorf("no skipped values counted: %+v", st)
	}
	for _, sess := range s.tr.Sessions() {
		if len(sess.Country) > maxText || len(sess.IP) > maxText || len(sess.UserAgent) > maxUserAgent {
			t.Errorf("unbounded text kept: %d %d %d", len(sess.Country), len(sess.IP), len(sess.UserAgent))
		}
	}
	for _, u := range s.tr.Dirty() {
		if u.Value != nil && !json.Valid(u.Value) {
			t.Errorf("record %s is not JSON: %s", u.Key, u.Value)
		}
	}
}

func TestSessionsValueParsing(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want time.Time
	}{
		{`"2026-11-23 13:34:33.559831"`, time.Date(2026, 11, 23, 13, 34, 33, 559831000, time.UTC)},
		{`"2026-11-23 13:34:33"`, time.Date(2026, 11, 23, 13, 34, 33, 0, time.UTC)},
		{`"2026-11-23 14:34:33.5+01"`, time.Date(2026, 11, 23, 13, 34, 33, 500000000, time.UTC)},
		{`"2026-11-23 19:04:33+05:30"`, time.Date(2026, 11, 23, 13, 34, 33, 0, time.UTC)},
		{`"2026-11-23T13:34:33Z"`, time.Date(2026, 11, 23, 13, 34, 33, 0, time.UTC)},
		{`"2026-11-23"`, time.Date(2026, 11, 23, 0, 0, 0, 0, time.UTC)},
	} {
		got, ok := timeValue([]byte(tc.in))
		if !ok || !got.Equal(tc.want) {
			t.Errorf("timeValue(%s) = %v %v, want %v", tc.in, got, ok, tc.want)
		}
	}
	for _, in := range []string{`"infinity"`, `"0044-03-15 12:00:00 BC"`, `null`, `12`, `"2026-11-23 25:00:00"`, `"`} {
		if got, ok := timeValue([]byte(in)); ok {
			t.Errorf("timeValue(%s) = %v", in, got)
		}
	}
	if id, ok := userFromDocument([]byte(`"{\"uid\": 6, \"login\": \"a\"}"`), "uid"); !ok || id != 6 {
		t.Errorf("payload text: %d %v", id, ok)
	}
	if id, ok := userFromDocument([]byte(`{"uid": "7"}`), "uid"); !ok || id != 7 {
		t.Errorf("jsonb: %d %v", id, ok)
	}
	if id, ok := userFromDocument([]byte(`{"uid": null}`), "uid"); !ok || id != 0 {
		t.Errorf("anonymous: %d %v", id, ok)
	}
	if _, ok := userFromDocument([]byte(`"not json"`), "uid"); ok {
		t.Error("garbage payload read")
	}
	if got := prefixRunes("ééé", 2); got != "éé" {
		t.Errorf("prefixRunes = %q", got)
	}
	if got := Pseudonym("abc"); got != "sba7816bf8f01cfea414140de" || len(got) != 25 {
		t.Errorf("Pseudonym = %q", got)
	}
}

func TestSessionsNewRejectsBadSettings(t *testing.T) {
	if _, err := New(profile.Odoo(), Options{IdleAfter: time.Hour, Lifetime: time.Minute}); err == nil {
		t.Error("idle after > lifetime accepted")
	}
	if _, err := New(profile.Odoo(), Options{GeoIPPath: "/nonexistent.mmdb"}); err == nil {
		t.Error("missing geoip file accepted")
	}
	p := genericProfile()
	p.Sessions[0].Kind = "cookie"
	if _, err := New(p, Options{}); err == nil {
		t.Error("bad kind accepted")
	}
}

func TestSessionsConcurrentUse(t *testing.T) {
	s := odoo18(t, Options{})
	done := make(chan struct{})
	go func() {
		defer close(done)
		for i := 0; i < 200; i++ {
			s.tr.Active(6, t0.Add(time.Duration(i)*time.Second))
			s.tr.Touch(Pseudonym(sid42("cc")), t0.Add(time.Duration(i)*time.Second))
			s.tr.Stats()
			s.tr.Sessions()
			s.tr.Dirty()
		}
	}()
	for i := 0; i < 200; i++ {
		at := t0.Add(time.Duration(i) * time.Second)
		s.insert(devicesT, at, deviceRow18(sid42("cc"), 6, "10.0.0.5", "windows", "chrome", "computer", at, at))
	}
	<-done
}

func FuzzSessionsObserve(f *testing.F) {
	f.Add(0, 0, []byte(`"abc"`))
	f.Add(1, 2, []byte(`null`))
	f.Add(2, 9, []byte(`"2026-11-23 13:34:33.559831+05:30"`))
	f.Add(3, 10, []byte(`true`))
	f.Add(1, 13, []byte(`"{\"uid\": 6}"`))
	tables := []string{devicesT, httpT, usersT, loginsT, "app.http_sessions"}
	ops := []audit.Op{audit.OpInsert, audit.OpUpdate, audit.OpDelete, audit.OpTruncate}
	f.Fuzz(func(t *testing.T, which, col int, v []byte) {
		p := profile.Odoo()
		p.Sessions = append(p.Sessions, genericProfile().Sessions...)
		tr, err := New(p, Options{})
		if err != nil {
			t.Fatal(err)
		}
		base := with(deviceRow18(sid42("fz"), 6, "10.0.0.5", "windows", "chrome", "computer", t0, t0),
			"sid", "fz", "payload", `{"uid":6}`, "login", "x", "password", "y", "create_uid", 6, "user_agent", "Mozilla/5.0")
		if col < 0 {
			col = -col
		}
		base[col%len(base)].Value = v
		if which < 0 {
			which = -which
		}
		schema, name, _ := strings.Cut(tables[which%len(tables)], ".")
		for _, op := range ops {
			e := &audit.Event{CommitTime: t0, Schema: schema, Table: name, Op: op, Key: base[:1], Before: base, After: base, Changed: []string{base[col%len(base)].Name}}
			tr.Observe(e)
		}
		for _, u := range tr.Dirty() {
			if u.Value != nil && !json.Valid(u.Value) {
				t.Fatalf("record %s not JSON: %q", u.Key, u.Value)
			}
		}
	})
}

// A session identifier handed over in a cdcaudit message (the full Odoo
// session id) gets the same pseudonym as the device rows that name its first
// 42 characters, and never itself.
func TestSessionIDFromMessage(t *testing.T) {
	s := odoo18(t, Options{})
	full := sid("msg")
	got := s.tr.SessionID(full)
	if got != Pseudonym(sid42("msg")) {
		t.Fatalf("SessionID(full id) = %s, want the pseudonym of its first 42 characters", got)
	}
	if strings.Contains(got, full[:42]) {
		t.Fatal("the pseudonym contains the identifier")
	}
}

// Activity held back by TouchEvery is written by Settle before a stop.
func TestSettleWritesHeldBackActivity(t *testing.T) {
	s := odoo18(t, Options{TouchEvery: time.Hour})
	at := t0.Add(time.Minute)
	s.insert(devicesT, at, deviceRow18(sid42("st"), 6, "10.0.0.9", "linux", "firefox", "computer", at, at))
	s.tr.Dirty()
	id := Pseudonym(sid42("st"))
	s.tr.Touch(id, at.Add(10*time.Minute))
	for _, u := range s.tr.Dirty() {
		if u.Key == "s/"+id {
			t.Fatal("a touch within TouchEvery was written at once")
		}
	}
	s.tr.Settle()
	found := false
	for _, u := range s.tr.Dirty() {
		if u.Key == "s/"+id {
			found = strings.Contains(string(u.Value), at.Add(10*time.Minute).Format("15:04:05"))
		}
	}
	if !found {
		t.Fatal("Settle did not write the held-back last activity")
	}
}

// A password change ends sessions only once its transaction is attributed:
// until then the transaction's own changes still find the user's sessions
// (Active); then they end, by the user it is attributed to — not the stale
// write_uid of Odoo's raw hash UPDATE.
func TestPasswordChangeEndsAfterAttribution(t *testing.T) {
	s := odoo18(t, Options{})
	at := t0.Add(time.Minute)
	s.insert(devicesT, at, deviceRow18(sid42("c1"), 6, "10.0.0.5", "windows", "chrome", "computer", at, at))
	s.insert(devicesT, at, deviceRow18(sid42("c2"), 6, "10.0.0.6", "iphone", "safari", "mobile", at, at))
	c1, c2 := Pseudonym(sid42("c1")), Pseudonym(sid42("c2"))
	u := userRow(6, "alice@example.com", "$pbkdf2-sha512$alice1", 1)
	change := at.Add(time.Minute)
	hash := s.event(audit.OpUpdate, usersT, change, keyOf(u), nil, with(u, "password", "$pbkdf2-sha512$alice2"), nil)
	s.update(usersT, at, nil, u) // the hash first seen (no before-image: fingerprinted)
	s.tr.Observe(hash)
	if got := s.tr.Active(6, change); len(got) != 2 {
		t.Fatalf("sessions ended before the transaction was attributed: Active = %v", got)
	}
	alice := int64(6)
	hash.Actor = audit.Actor{UserID: &alice, UserVia: "session_row", SessionID: c2, SessionVia: "same_tx"}
	s.tr.Attributed([]*audit.Event{hash})
	if got := s.tr.Active(6, change); got != nil {
		t.Errorf("Active = %v after the change", got)
	}
	for _, id := range []string{c1, c2} {
		if got := mustSession(t, s.tr, id); got.EndReason != EndPasswordChanged || got.EndedBy == nil || *got.EndedBy != 6 {
			t.Errorf("%s: %q by %v, want password_changed by 6 (not the stale write_uid 1)", id, got.EndReason, got.EndedBy)
		}
	}

	// The admin resets alice's password from its own session: by the admin.
	reset := change.Add(time.Minute)
	s.insert(devicesT, reset, deviceRow18(sid42("c4"), 6, "10.0.0.9", "linux", "chrome", "computer", reset, reset))
	e := s.event(audit.OpUpdate, usersT, reset, keyOf(u), nil, with(u, "password", "$pbkdf2-sha512$alice3"), nil)
	s.tr.Observe(e)
	admin := int64(2)
	e.Actor = audit.Actor{UserID: &admin, UserVia: "tx_peer", SessionID: "s-admin", SessionVia: "only_active"}
	s.tr.Attributed([]*audit.Event{e})
	if got := s.tr.Active(6, reset); got != nil {
		t.Errorf("Active after the admin's reset = %v", got)
	}
	if got := mustSession(t, s.tr, Pseudonym(sid42("c4"))); got.EndReason != EndPasswordChanged || got.EndedBy == nil || *got.EndedBy != 2 {
		t.Errorf("c4: %q by %v, want password_changed by 2", got.EndReason, got.EndedBy)
	}

	// A change whose transaction was given up (a reconnect) ends nothing.
	s.insert(devicesT, reset.Add(time.Hour), deviceRow18(sid42("c3"), 6, "10.0.0.7", "linux", "firefox", "computer", reset.Add(time.Hour), reset.Add(time.Hour)))
	s.tr.Observe(s.event(audit.OpUpdate, usersT, reset.Add(time.Hour), keyOf(u), nil, with(u, "password", "$pbkdf2-sha512$alice4"), nil))
	s.tr.Attributed(nil)
	if got := s.tr.Active(6, reset.Add(time.Hour)); len(got) != 1 {
		t.Errorf("a given-up change ended sessions: %v", got)
	}
}

// A password change whose transaction was given up (a reconnect) and then
// streamed again is seen again: the given-up part moved nothing, not even
// the fingerprint that tells a change without a before-image.
func TestPasswordChangeSeenAgainAfterReconnect(t *testing.T) {
	s := odoo18(t, Options{})
	at := t0.Add(time.Minute)
	s.insert(devicesT, at, deviceRow18(sid42("r1"), 6, "10.0.0.5", "windows", "chrome", "computer", at, at))
	u := userRow(6, "alice@example.com", "$pbkdf2-sha512$alice1", 1)
	s.update(usersT, at, nil, u) // the hash first seen (no before-image: fingerprinted)
	change := at.Add(time.Minute)
	alice := int64(6)
	changed := func() *audit.Event {
		e := s.event(audit.OpUpdate, usersT, change, keyOf(u), nil, with(u, "password", "$pbkdf2-sha512$alice2"), nil)
		e.Actor = audit.Actor{UserID: &alice, UserVia: "session_row", SessionVia: "same_tx"}
		return e
	}
	s.tr.Observe(changed()) // received, then the connection is lost
	s.tr.Abandon()
	replayed := changed()
	s.tr.Observe(replayed)
	s.tr.Attributed([]*audit.Event{replayed})
	if got := mustSession(t, s.tr, Pseudonym(sid42("r1"))); got.EndReason != EndPasswordChanged {
		t.Errorf("after the replay: %q, want password_changed", got.EndReason)
	}
}

// ActiveUsers: users with an open session, most recently active first.
func TestActiveUsers(t *testing.T) {
	s := odoo18(t, Options{})
	at := t0.Add(time.Minute)
	s.insert(devicesT, at, deviceRow18(sid42("a1"), 6, "10.0.0.5", "windows", "chrome", "computer", at, at))
	s.insert(devicesT, at.Add(time.Minute), deviceRow18(sid42("a2"), 7, "10.0.0.6", "linux", "firefox", "computer", at, at.Add(time.Minute)))
	s.insert(devicesT, at.Add(2*time.Minute), deviceRow18(sid42("a3"), 8, "10.0.0.7", "linux", "firefox", "computer", at, at.Add(2*time.Minute)))
	now := at.Add(3 * time.Minute)
	if got := s.tr.ActiveUsers(now, 16); !slices.Equal(got, []int64{8, 7, 6}) {
		t.Errorf("ActiveUsers = %v", got)
	}
	if got := s.tr.ActiveUsers(now, 2); !slices.Equal(got, []int64{8, 7}) {
		t.Errorf("ActiveUsers limit 2 = %v", got)
	}
	if got := s.tr.ActiveUsers(now.Add(DefaultLifetime), 16); len(got) != 0 {
		t.Errorf("ActiveUsers after the lifetime = %v", got)
	}
}

// Odoo 18 writes nothing on logout: a session known from res_device_log
// only may have ended while it looks open (EndInferred); one whose session
// store is watched (http_sessions) shows its logout. Expiry and password
// changes are inferences, revocation is recorded.
func TestEndInferred(t *testing.T) {
	s := odoo18(t, Options{})
	at := t0.Add(time.Minute)
	s.insert(devicesT, at, deviceRow18(sid42("d1"), 6, "10.0.0.5", "windows", "chrome", "computer", at, at))
	s.insert(httpT, at, row("sid", sid42("w1")+"tail-of-the-session-id", "write_date", at, "payload", `{"uid":7}`))
	dev, web := mustSession(t, s.tr, Pseudonym(sid42("d1"))), mustSession(t, s.tr, Pseudonym(sid42("w1")))
	if !dev.EndInferred(at, DefaultLifetime) || dev.StoreWatched {
		t.Errorf("device-log session: EndInferred false or store watched: %+v", dev)
	}
	if web.EndInferred(at, DefaultLifetime) || !web.StoreWatched {
		t.Errorf("watched session: EndInferred true: %+v", web)
	}
	if !web.EndInferred(at.Add(DefaultLifetime), DefaultLifetime) {
		t.Error("an expiry is an inference")
	}
	web.Ended, web.EndReason = at, EndDeleted
	if web.EndInferred(at, DefaultLifetime) {
		t.Error("a logout seen (deleted) is no inference")
	}
}
