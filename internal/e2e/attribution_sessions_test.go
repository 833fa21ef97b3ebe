package e2e

import (
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/cdcaudit/cdcaudit/internal/odoosim"
)

// Devices of the attribution tests, as Odoo 18 records them.
var (
	aliceLaptop = odoosim.Device{IP: "198.51.100.10", Platform: "linux", Browser: "chrome", Country: "France", City: "Lyon"}
	alicePhone  = odoosim.Device{IP: "198.51.100.11", Platform: "android", Browser: "chrome", Country: "France", City: "Lyon"}
	bobDesktop  = odoosim.Device{IP: "198.51.100.20", Platform: "windows", Browser: "firefox", Country: "Belgium", City: "Namur"}
	carolMac    = odoosim.Device{IP: "203.0.113.30", Platform: "macos", Browser: "safari", Country: "Belgium", City: "Ghent"}
	carolPhone  = odoosim.Device{IP: "203.0.113.31", Platform: "iphone", Browser: "safari", Country: "Belgium", City: "Ghent"}
	adminDesk   = odoosim.Device{IP: "192.0.2.2", Platform: "linux", Browser: "firefox", Country: "Belgium", City: "Brussels"}
)

func writeOrder(id int64, vals odoosim.Vals) func(e *odoosim.Env) error {
	return func(e *odoosim.Env) error { return e.WriteOrder(id, vals) }
}

func writePartner(id int64, vals odoosim.Vals) func(e *odoosim.Env) error {
	return func(e *odoosim.Env) error { return e.WritePartner(id, vals) }
}

// TestAttributionConcurrentUsers: alice and bob work at the same time, each
// in a session of their own, with transactions that overlap. Every change
// is theirs, in their session: the first request of each session through
// the device row in its transaction (session_row, same_tx), the others
// through write_uid (row_user) and the user's only session (only_active).
func TestAttributionConcurrentUsers(t *testing.T) {
	r := startOdoo(t)
	loginAlice := r.ok(r.sim.Login(r.ctx, odoosim.Alice))
	loginBob := r.ok(r.sim.Login(r.ctx, odoosim.Bob))
	a := r.newSim().NewDevice(odoosim.Alice, aliceLaptop)
	b := r.newSim().NewDevice(odoosim.Bob, bobDesktop)
	firstA := r.request(a, writeOrder(1, odoosim.Vals{"state": "sent"}))
	firstB := r.request(b, writePartner(12, odoosim.Vals{"phone": "+1 555 0112"}))

	// Overlapping requests: alice's transaction is open while bob's
	// commits, so bob's change reaches the stream first.
	type result struct {
		xid uint32
		err error
	}
	var aliceTx, bobTx []uint32
	for i := range 4 {
		inside, release, done := make(chan struct{}), make(chan struct{}), make(chan result, 1)
		go func() {
			xid, err := a.Request(r.ctx, func(e *odoosim.Env) error {
				err := e.WriteOrder(2, odoosim.Vals{"note": fmt.Sprintf("call back (%d)", i)})
				close(inside)
				<-release
				return err
			})
			done <- result{xid, err}
		}()
		select {
		case <-inside:
		case res := <-done:
			t.Fatalf("alice's request ended early: %v", res.err)
		}
		bobTx = append(bobTx, r.request(b, writeOrder(3, odoosim.Vals{"client_order_ref": fmt.Sprintf("PO-77%d", i)})))
		close(release)
		res := <-done
		aliceTx = append(aliceTx, r.ok(res.xid, res.err))
	}
	evs := r.stop()

	for _, l := range []struct {
		xid  uint32
		user int64
	}{{loginAlice, odoosim.Alice}, {loginBob, odoosim.Bob}} {
		e := one(t, evs, l.xid, "res_users_log", "insert")
		checkActor(t, e, who{user: l.user, userVia: "row_user"}, "a login (res_users_log, create_uid = the user)")
		if model(e) != "res.users.log" {
			t.Errorf("%s: model %q, want res.users.log", describe(e), model(e))
		}
	}
	first := []struct {
		xid         uint32
		user        int64
		s           *odoosim.Session
		table, what string
	}{{firstA, odoosim.Alice, a, "sale_order", "alice's first request"}, {firstB, odoosim.Bob, b, "res_partner", "bob's first request"}}
	for _, f := range first {
		w := who{user: f.user, userVia: "session_row", session: sid(f.s), sessionVia: "same_tx"}
		checkActor(t, one(t, evs, f.xid, "res_device_log", "insert"), w, f.what+": its device row")
		checkActor(t, one(t, evs, f.xid, f.table, "update"), w, f.what+": the business write next to the device row")
	}
	for i := range aliceTx {
		checkActor(t, one(t, evs, aliceTx[i], "sale_order", "update"),
			who{user: odoosim.Alice, userVia: "row_user", session: sid(a), sessionVia: "only_active"},
			fmt.Sprintf("alice's overlapping request %d", i))
		checkActor(t, one(t, evs, bobTx[i], "sale_order", "update"),
			who{user: odoosim.Bob, userVia: "row_user", session: sid(b), sessionVia: "only_active"},
			fmt.Sprintf("bob's request %d, committed inside alice's", i))
	}
	if pick(evs, aliceTx[0], "res_device_log", "") != nil {
		t.Error("a request of a known device an instant later left a device row")
	}

	list := listSessions(t, r.dataDir)
	if got, want := sessionIDs(list), sortedIDs(sid(a), sid(b)); !slices.Equal(got, want) {
		t.Fatalf("cdcaudit sessions lists %v, want %v:\n%v", got, want, list)
	}
	for _, c := range []struct {
		s *odoosim.Session
		d odoosim.Device
	}{{a, aliceLaptop}, {b, bobDesktop}} {
		m := findSession(list, sid(c.s))
		checkSessionFields(t, m, map[string]string{
			"login": odoosim.Logins[c.s.UID], "user_id": fmt.Sprint(c.s.UID), "ip": c.d.IP, "browser": c.d.Browser,
			"os": c.d.Platform, "device": c.d.Type(), "country": c.d.Country, "city": c.d.City, "state": "active",
		})
	}
}

func sortedIDs(ids ...string) []string {
	slices.Sort(ids)
	return ids
}

// checkSessionFields checks members of a listed session; a key may name
// alternatives ("ip|ip_address").
func checkSessionFields(t *testing.T, m map[string]any, want map[string]string) {
	t.Helper()
	if m == nil {
		t.Error("session not listed")
		return
	}
	for k, w := range want {
		got, ok := field(m, strings.Split(k, "|")...)
		if !ok || got != w {
			t.Errorf("session %v: %s = %q (present %v), want %q", m["id"], k, got, ok, w)
		}
	}
}

// TestAttributionOneUserTwoSessions: carol works from her Mac and her
// phone. A change that names only her (write_uid, no device row) cannot be
// put on either session: none is named (ambiguous), both are listed as
// candidates; a session's own device row decides for its transaction
// (same_tx).
func TestAttributionOneUserTwoSessions(t *testing.T) {
	r := startOdoo(t)
	mac := r.sim.NewDevice(odoosim.Carol, carolMac)
	phone := r.sim.NewDevice(odoosim.Carol, carolPhone)
	tx1 := r.request(mac, writeOrder(4, odoosim.Vals{"note": "from the office"}))
	tx2 := r.request(phone, writeOrder(4, odoosim.Vals{"client_order_ref": "on the road"}))
	// From the Mac again, no device row: the phone is the most recent.
	tx3 := r.request(mac, writePartner(14, odoosim.Vals{"phone": "+32 9 555 01 14"}))
	// An hour later the Mac leaves a device row again: from then on it is
	// the most recent.
	mac.Age(time.Hour)
	tx4 := r.request(mac, writePartner(14, odoosim.Vals{"website": "https://woodcorner.example.com"}))
	tx5 := r.request(mac, writeOrder(4, odoosim.Vals{"note": "back at the office"}))
	evs := r.stop()

	carol := odoosim.Carol
	checkActor(t, one(t, evs, tx1, "sale_order", "update"), who{carol, "session_row", sid(mac), "same_tx"}, "carol's first request from the Mac")
	checkActor(t, one(t, evs, tx2, "sale_order", "update"), who{carol, "session_row", sid(phone), "same_tx"}, "carol's first request from the phone")
	ambiguous := func(e *event, why string) {
		t.Helper()
		checkActor(t, e, who{carol, "row_user", "", "ambiguous"}, why)
		if got := actorOf(t, e).Candidates; got == nil || !slices.Equal(sortedIDs(got.Sessions...), sortedIDs(sid(mac), sid(phone))) || len(got.Users) != 0 {
			t.Errorf("%s: %s: candidates %+v, want her two sessions", why, describe(e), got)
		}
	}
	ambiguous(one(t, evs, tx3, "res_partner", "update"), "carol's write with two open sessions and nothing to tell them apart")
	if pick(evs, tx3, "res_device_log", "") != nil {
		t.Error("the Mac's second request left a device row")
	}
	checkActor(t, one(t, evs, tx4, "res_device_log", "insert"), who{carol, "session_row", sid(mac), "same_tx"}, "the Mac's device row an hour later")
	checkActor(t, one(t, evs, tx4, "res_partner", "update"), who{carol, "session_row", sid(mac), "same_tx"}, "the write next to it")
	ambiguous(one(t, evs, tx5, "sale_order", "update"), "carol's write after the Mac's device row: still two open sessions")

	all := listSessions(t, r.dataDir, "--user", "carol@example.com", "--active")
	if got, want := sessionIDs(all), sortedIDs(sid(mac), sid(phone)); !slices.Equal(got, want) {
		t.Errorf("carol's active sessions: %v, want %v:\n%v", got, want, all)
	}
	checkSessionFields(t, findSession(all, sid(phone)), map[string]string{"os": "iphone", "device": "mobile", "ip": carolPhone.IP})
	checkSessionFields(t, findSession(all, sid(mac)), map[string]string{"os": "macos", "device": "computer", "ip": carolMac.IP})
}

// TestAttributionNewDeviceLogin: alice, already working on her laptop,
// logs in on her phone. The phone's first request carries its device row:
// everything in that transaction is hers, in the new session. A read-only
// request leaves its device row on a transaction of its own; a new IP of
// the same session is a new device row of the same session, and the
// session shows its new IP.
//
// Odoo's clock runs 2 s behind the database's here, as an application
// host's often does: device rows carry Odoo's time (in whole seconds),
// commits the database's.
func TestAttributionNewDeviceLogin(t *testing.T) {
	r := startOdoo(t)
	r.sim.Now = func() time.Time { return time.Now().Add(-2 * time.Second) }
	laptop := r.sim.NewDevice(odoosim.Alice, aliceLaptop)
	tx1 := r.request(laptop, writeOrder(1, odoosim.Vals{"note": "laptop"}))
	login := r.ok(r.sim.Login(r.ctx, odoosim.Alice))
	phone := r.sim.NewDevice(odoosim.Alice, alicePhone)
	var partner int64
	tx2 := r.request(phone, func(e *odoosim.Env) (err error) {
		partner, err = e.CreatePartner("Ready Mat", "ready.mat28@example.com", "Fremont", "US")
		return err
	})
	// The laptop, an hour later: a read-only page view leaves the device
	// row alone on its transaction; the laptop is the most recent again.
	laptop.Age(time.Hour)
	visit := r.ok(laptop.Visit(r.ctx))
	tx3 := r.request(laptop, writePartner(partner, odoosim.Vals{"phone": "+1 555 0128"}))
	// The phone moves to another network: a new device row, same session.
	phone.Device.IP = "198.51.100.99"
	tx4 := r.request(phone, writePartner(partner, odoosim.Vals{"city": "Oakland"}))
	evs := r.stop()

	alice := odoosim.Alice
	checkActor(t, one(t, evs, tx1, "sale_order", "update"), who{alice, "session_row", sid(laptop), "same_tx"}, "the laptop's first request")
	checkActor(t, one(t, evs, login, "res_users_log", "insert"), who{user: alice, userVia: "row_user", session: "*"}, "the phone's login")
	for _, e := range txEvents(evs, tx2) {
		checkActor(t, e, who{alice, "session_row", sid(phone), "same_tx"}, "the new device's first request (its device row, the partner's insert and the flush of its computed field)")
	}
	if n := len(txEvents(evs, tx2)); n != 3 {
		t.Errorf("the phone's first request: %d events, want 3 (device row, partner insert, commercial_partner_id flush)", n)
	}
	if got := txEvents(evs, visit); len(got) != 1 || got[0].Table != "res_device_log" {
		t.Fatalf("the read-only visit: %d events, want its device row alone", len(got))
	}
	checkActor(t, txEvents(evs, visit)[0], who{alice, "session_row", sid(laptop), "same_tx"}, "the read-only visit's device row")
	checkActor(t, one(t, evs, tx3, "res_partner", "update"), who{alice, "row_user", "", "ambiguous"}, "the laptop's write after its visit, the phone open too")
	checkActor(t, one(t, evs, tx4, "res_device_log", "insert"), who{alice, "session_row", sid(phone), "same_tx"}, "the phone's device row from its new IP")
	checkActor(t, one(t, evs, tx4, "res_partner", "update"), who{alice, "session_row", sid(phone), "same_tx"}, "the phone's write from its new IP")

	list := listSessions(t, r.dataDir, "--user", "alice@example.com")
	if got, want := sessionIDs(list), sortedIDs(sid(laptop), sid(phone)); !slices.Equal(got, want) {
		t.Fatalf("alice's sessions: %v, want %v:\n%v", got, want, list)
	}
	checkSessionFields(t, findSession(list, sid(phone)), map[string]string{"ip": "198.51.100.99", "device": "mobile", "os": "android", "state": "active"})
}

// TestAttributionRevokedSession: admin logs alice's laptop out ("log out of
// this device"). The revocation is admin's; alice's session is ended,
// revoked by admin, and no longer receives her changes.
func TestAttributionRevokedSession(t *testing.T) {
	r := startOdoo(t)
	admin := r.sim.NewDevice(odoosim.Admin, adminDesk)
	laptop := r.sim.NewDevice(odoosim.Alice, aliceLaptop)
	bob := r.sim.NewDevice(odoosim.Bob, bobDesktop)
	r.request(admin, func(e *odoosim.Env) error { return e.SetConfigParameter("web.base.url", "https://erp.example.com") })
	tx1 := r.request(laptop, writeOrder(1, odoosim.Vals{"note": "before the revocation"}))
	r.request(bob, writeOrder(3, odoosim.Vals{"note": "bob was here"}))
	revoke := r.request(admin, func(e *odoosim.Env) error { return e.RevokeSession(laptop) })
	if _, err := laptop.Request(r.ctx, writeOrder(1, odoosim.Vals{"note": "after"})); !errors.Is(err, odoosim.ErrRevoked) {
		t.Fatalf("a request of the revoked session: %v, want ErrRevoked", err)
	}
	// A scheduled action running as alice still writes as her, in no session.
	cron := r.ok(r.sim.Transaction(r.ctx, odoosim.Alice, writePartner(10, odoosim.Vals{"comment": "follow-up activity"})))
	evs := r.stop()

	checkActor(t, one(t, evs, tx1, "sale_order", "update"), who{odoosim.Alice, "session_row", sid(laptop), "same_tx"}, "alice's request before the revocation")
	rev := one(t, evs, revoke, "res_device_log", "update")
	checkActor(t, rev, who{odoosim.Admin, "row_user", sid(admin), "only_active"}, "the revocation (an ORM write of revoked = true by admin)")
	if len(rev.FlagList) != 0 {
		t.Errorf("the revocation is flagged %v", rev.FlagList)
	}
	checkActor(t, one(t, evs, cron, "res_partner", "update"), who{user: odoosim.Alice, userVia: "row_user"},
		"alice's cron write after her only session was revoked: no session")

	list := listSessions(t, r.dataDir)
	m := findSession(list, sid(laptop))
	if m == nil {
		t.Fatalf("the revoked session %s is not listed:\n%v", sid(laptop), list)
	}
	checkSessionFields(t, m, map[string]string{"state": "ended", "end_reason": "revoked", "login": "alice@example.com"})
	by, _ := field(m, "ended_by", "revoked_by", "ended_by_login", "revoked_by_login")
	if by != "2" && !strings.Contains(by, "admin") {
		t.Errorf("the revoked session does not say admin (2) revoked it: ended_by %q in %v", by, m)
	}
	active := listSessions(t, r.dataDir, "--active")
	if got, want := sessionIDs(active), sortedIDs(sid(admin), sid(bob)); !slices.Equal(got, want) {
		t.Errorf("active sessions: %v, want admin's and bob's %v", got, want)
	}
	if got := sessionIDs(listSessions(t, r.dataDir, "--user", "alice@example.com")); !slices.Equal(got, []string{sid(laptop)}) {
		t.Errorf("alice's sessions: %v, want [%s]", got, sid(laptop))
	}
}

// TestAttributionSessionStateSurvivesRestart: sessions opened before the
// daemon stops (cleanly, then by SIGKILL) still receive their users'
// changes after it starts again, and tables keep their model names.
func TestAttributionSessionStateSurvivesRestart(t *testing.T) {
	r := startOdoo(t)
	a := r.sim.NewDevice(odoosim.Alice, aliceLaptop)
	b := r.sim.NewDevice(odoosim.Bob, bobDesktop)
	c := r.sim.NewDevice(odoosim.Carol, carolMac)
	r.request(a, writeOrder(1, odoosim.Vals{"note": "run 1"}))
	r.request(b, writeOrder(3, odoosim.Vals{"note": "run 1"}))
	r.catchUp()
	r.d.stopClean()

	// While the daemon is down: the slot keeps the changes.
	down := r.request(a, writeOrder(2, odoosim.Vals{"note": "while cdcaudit was down"}))
	r.restart()
	run2a := r.request(a, writeOrder(1, odoosim.Vals{"note": "run 2"}))
	run2b := r.request(b, writeOrder(3, odoosim.Vals{"note": "run 2"}))
	run2c := r.request(c, writeOrder(4, odoosim.Vals{"note": "run 2"}))
	r.catchUp()
	r.d.kill()

	r.restart()
	run3a := r.request(a, writeOrder(1, odoosim.Vals{"note": "run 3"}))
	run3c := r.request(c, writeOrder(4, odoosim.Vals{"note": "run 3"}))
	evs := r.stop()
	verifyOK(t, r.dataDir, changeCount(evs))

	for _, x := range []struct {
		xid  uint32
		user int64
		s    *odoosim.Session
		what string
	}{
		{down, odoosim.Alice, a, "alice's write while the daemon was down"},
		{run2a, odoosim.Alice, a, "alice's write after a clean restart"},
		{run2b, odoosim.Bob, b, "bob's write after a clean restart"},
		{run3a, odoosim.Alice, a, "alice's write after a SIGKILL"},
		{run3c, odoosim.Carol, c, "carol's write after a SIGKILL (her session opened in between)"},
	} {
		e := one(t, evs, x.xid, "sale_order", "update")
		checkActor(t, e, who{x.user, "row_user", sid(x.s), "only_active"}, x.what)
		if model(e) != "sale.order" {
			t.Errorf("%s: %s: model %q, want sale.order", x.what, describe(e), model(e))
		}
	}
	checkActor(t, one(t, evs, run2c, "sale_order", "update"), who{odoosim.Carol, "session_row", sid(c), "same_tx"}, "carol's first request, after the clean restart")
	if got, want := sessionIDs(listSessions(t, r.dataDir, "--active")), sortedIDs(sid(a), sid(b), sid(c)); !slices.Equal(got, want) {
		t.Errorf("active sessions after the restarts: %v, want %v", got, want)
	}
}
