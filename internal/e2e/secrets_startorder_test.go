package e2e

import (
	"context"
	"encoding/json"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/cdcaudit/cdcaudit/internal/odoosim"
)

// odooWizards are Odoo 18's transient models that hold typed passwords and
// TOTP secrets in plain text for a moment (base/models/res_users.py,
// auth_totp/wizard/auth_totp_wizard.py), as the ORM creates them: id, the
// fields, the log-access columns. IF NOT EXISTS: the fixture may have them.
// REPLICA IDENTITY FULL as the docs recommend, so before-images carry the
// plain text too.
const odooWizards = `
CREATE TABLE IF NOT EXISTS change_password_own (
    id serial PRIMARY KEY,
    new_password varchar,
    confirm_password varchar,
    create_uid integer, create_date timestamp without time zone,
    write_uid integer, write_date timestamp without time zone);
CREATE TABLE IF NOT EXISTS change_password_wizard (
    id serial PRIMARY KEY,
    create_uid integer, create_date timestamp without time zone,
    write_uid integer, write_date timestamp without time zone);
CREATE TABLE IF NOT EXISTS change_password_user (
    id serial PRIMARY KEY,
    wizard_id integer NOT NULL REFERENCES change_password_wizard(id) ON DELETE CASCADE,
    user_id integer NOT NULL REFERENCES res_users(id) ON DELETE CASCADE,
    user_login varchar,
    new_passwd varchar,
    create_uid integer, create_date timestamp without time zone,
    write_uid integer, write_date timestamp without time zone);
CREATE TABLE IF NOT EXISTS res_users_identitycheck (
    id serial PRIMARY KEY,
    request varchar,
    auth_method varchar,
    password varchar,
    create_uid integer, create_date timestamp without time zone,
    write_uid integer, write_date timestamp without time zone);
CREATE TABLE IF NOT EXISTS auth_totp_wizard (
    id serial PRIMARY KEY,
    user_id integer NOT NULL REFERENCES res_users(id) ON DELETE CASCADE,
    secret varchar NOT NULL,
    url varchar,
    qrcode bytea,
    code varchar(7),
    create_uid integer, create_date timestamp without time zone,
    write_uid integer, write_date timestamp without time zone);
ALTER TABLE change_password_own REPLICA IDENTITY FULL;
ALTER TABLE change_password_user REPLICA IDENTITY FULL;
ALTER TABLE res_users_identitycheck REPLICA IDENTITY FULL;
ALTER TABLE auth_totp_wizard REPLICA IDENTITY FULL;
-- portal.mixin: the capability token of a document's customer link.
ALTER TABLE sale_order ADD COLUMN IF NOT EXISTS access_token varchar;
`

// startOnEmpty starts cdcaudit with the default profile (auto) on an empty
// database, as a sidecar started before the application: it must start
// without a profile. The rig has no simulator.
func startOnEmpty(t *testing.T) *odooRig {
	t.Helper()
	db := newDB(t)
	r := &odooRig{t: t, ctx: context.Background(), db: db, dataDir: t.TempDir(), ctl: connect(t, db.dsn)}
	r.args = []string{"--dsn", db.dsn, "--data-dir", r.dataDir, "--slot", db.slot, "--log-level", "debug"}
	r.d = startDaemon(t, r.args...)
	waitSlotActive(t, db.dsn, db.slot, 0, r.d)
	if !strings.Contains(r.d.log(), "no application profile") {
		t.Fatalf("the daemon did not start without a profile on an empty database:\n%s", tail(r.d.log(), 3000))
	}
	return r
}

// checkRedacted checks that an event lists cols in redacted and carries
// none of their values.
func checkRedacted(t testing.TB, e *event, cols ...string) {
	t.Helper()
	var got []string
	json.Unmarshal(e.Redacted, &got)
	for _, c := range cols {
		if !slices.Contains(got, c) {
			t.Errorf("%s: redacted %v lacks %s", describe(e), got, c)
		}
		for name, img := range map[string]row{"before": e.BeforeRow, "after": e.AfterRow} {
			if v, ok := img.get(c); ok && string(v) != `"[redacted]"` && string(v) != "null" {
				t.Errorf("%s: %s.%s = %s, want \"[redacted]\"", describe(e), name, c, v)
			}
		}
	}
}

// TestSecretsWhateverTheStartOrder: cdcaudit starts first, as in a compose
// file, on an empty database with the default profile (auto); then Odoo
// creates its schema, users log in, change passwords through Odoo's
// wizards, set up TOTP, make an API key, share an order's portal link, and
// the database secret is set. No secret reaches the store, the exports,
// the log or the metrics; the events of those tables exist with the secret
// columns redacted; once Odoo's tables appeared, changes are attributed
// and the log says when the profile was detected.
func TestSecretsWhateverTheStartOrder(t *testing.T) {
	r := startOnEmpty(t)
	ctx := r.ctx

	// Odoo creates its database.
	if err := odoosim.Load(ctx, r.ctl); err != nil {
		t.Fatal(err)
	}
	mustExec(t, r.ctl, odooWizards)
	// Updates are captured once cdcaudit lists the table in its changes
	// publication (docs/operations.md): without this wait, alice's first
	// update could commit before sale_order is listed and go uncaptured.
	waitListed(t, r, "cdcaudit_changes")
	r.sim = r.newSim()

	var secrets []secret
	keep := func(what, v string) string { secrets = append(secrets, secret{what, v}); return v }
	for uid, h := range odoosim.PasswordHashes {
		keep("the fixture's password hash of "+odoosim.Logins[uid], h)
	}
	keep("carol's TOTP secret", odoosim.CarolTOTPSecret)
	keep("the fixture's database.secret", odoosim.DatabaseSecret)

	// Logins, each with its device row.
	for _, uid := range []int64{odoosim.Alice, odoosim.Admin} {
		r.ok(r.sim.Login(ctx, uid))
	}
	alice := r.sim.NewDevice(odoosim.Alice, aliceLaptop)
	admin := r.sim.NewDevice(odoosim.Admin, adminDesk)
	first := r.request(alice, writeOrder(1, odoosim.Vals{"note": "first"}))
	r.request(admin, writePartner(1, odoosim.Vals{"phone": "+32 2 555 00 00"}))
	for _, s := range []*odoosim.Session{alice, admin} {
		keep("the session identifier of "+odoosim.Logins[s.UID], s.Identifier())
		keep("the session id of "+odoosim.Logins[s.UID], s.SID)
	}

	// alice changes her own password: change.password.own holds the new
	// one twice, res.users.identitycheck her current one, until the check
	// clears it and the wizard is unlinked.
	oldPlain := keep("alice's current password, typed", "alice-Old-Pass-2026!")
	newPlain := keep("alice's new password, typed", "alice-Spring-2027!x")
	newHash := keep("alice's new password hash", odoosim.HashPassword(newPlain))
	var ownID, checkID int64
	ownXID := r.request(alice, func(e *odoosim.Env) (err error) {
		ownID, err = e.Create("change_password_own", odoosim.Vals{"new_password": newPlain, "confirm_password": newPlain})
		return err
	})
	checkXID := r.request(alice, func(e *odoosim.Env) (err error) {
		checkID, err = e.Create("res_users_identitycheck", odoosim.Vals{"auth_method": "password", "password": oldPlain,
			"request": `[{}, "change.password.own", [1], "change_password", [], {}]`})
		return err
	})
	changeXID := r.request(alice, func(e *odoosim.Env) error {
		if err := e.Write("res_users_identitycheck", []int64{checkID}, odoosim.Vals{"password": nil}); err != nil {
			return err
		}
		if err := e.ChangePassword(odoosim.Alice, newHash); err != nil {
			return err
		}
		return e.Unlink("change_password_own", ownID)
	})

	// admin sets bob's password with change.password.wizard.
	bobPlain := keep("bob's new password, typed by admin", "Bob-Temp-Pass-99?")
	bobHash := keep("bob's new password hash", odoosim.HashPassword(bobPlain))
	var lineID int64
	wizXID := r.request(admin, func(e *odoosim.Env) error {
		w, err := e.Create("change_password_wizard", odoosim.Vals{})
		if err != nil {
			return err
		}
		lineID, err = e.Create("change_password_user", odoosim.Vals{"wizard_id": w, "user_id": odoosim.Bob,
			"user_login": odoosim.Logins[odoosim.Bob], "new_passwd": bobPlain})
		return err
	})
	bobXID := r.request(admin, func(e *odoosim.Env) error {
		if err := e.ChangePassword(odoosim.Bob, bobHash); err != nil {
			return err
		}
		return e.Write("change_password_user", []int64{lineID}, odoosim.Vals{"new_passwd": nil})
	})

	// alice sets up TOTP through auth_totp.wizard.
	totp := keep("alice's new TOTP secret", odoosim.NewTOTPSecret())
	totpXID := r.request(alice, func(e *odoosim.Env) error {
		if _, err := e.Create("auth_totp_wizard", odoosim.Vals{"user_id": odoosim.Alice, "secret": totp,
			"url": "otpauth://totp/alice?secret=" + totp + "&issuer=My+Company", "qrcode": []byte("PNG " + totp)}); err != nil {
			return err
		}
		return e.SetTOTP(odoosim.Alice, totp)
	})

	// An API key, a shared order link, the database secret.
	var key odoosim.APIKey
	keyXID := r.request(alice, func(e *odoosim.Env) (err error) { key, err = e.CreateAPIKey("CI pipeline", "rpc"); return err })
	keep("the API key", key.Key)
	keep("the API key's hash", key.Hash)
	keep("the API key's index", key.Index)
	token := keep("the order's portal access token", "3f6c1b52-0d7e-4a29-9b8e-5e1f2a7c4d90")
	tokenXID := r.request(alice, writeOrder(2, odoosim.Vals{"access_token": token}))
	dbSecret := keep("the new database.secret", "0c5e8a71-2b9d-4f36-a1e4-7d8c9b0a3f52")
	secretXID := r.request(admin, func(e *odoosim.Env) error { return e.SetConfigParameter("database.secret", dbSecret) })

	evs := r.stopSearching(secrets)

	// The log says when the profile was settled.
	if !strings.Contains(r.d.log(), "application profile detected in the stream") || !strings.Contains(r.d.log(), "profile=odoo") {
		t.Errorf("the log does not say when the Odoo profile was detected:\n%s", tail(r.d.log(), 3000))
	}

	// The events are there, their secrets redacted, still listed as changed.
	redacted := func(e *event, cols ...string) { t.Helper(); checkRedacted(t, e, cols...) }
	changed := func(e *event, cols ...string) {
		t.Helper()
		for _, c := range cols {
			if !slices.Contains(e.ChangedList, c) {
				t.Errorf("%s: changed %v lacks %s", describe(e), e.ChangedList, c)
			}
		}
	}
	var users, params int
	for _, e := range evs {
		switch e.Table {
		case "res_users":
			users++
			if e.Op != "delete" {
				redacted(e, "password", "totp_secret")
			}
		case "ir_config_parameter":
			if v := value(e.AfterRow, "key"); v == `"database.secret"` {
				params++
				redacted(e, "value")
			}
		}
	}
	if users < 5 || params < 2 {
		t.Errorf("%d res_users events, %d of database.secret: want the fixture's users and both values of the secret captured", users, params)
	}
	e := one(t, evs, ownXID, "change_password_own", "insert")
	redacted(e, "new_password", "confirm_password")
	changed(e, "new_password", "confirm_password")
	redacted(one(t, evs, changeXID, "change_password_own", "delete"), "new_password", "confirm_password")
	e = one(t, evs, checkXID, "res_users_identitycheck", "insert")
	redacted(e, "password")
	if v := value(e.AfterRow, "auth_method"); v != `"password"` {
		t.Errorf("%s: auth_method %s: only secrets are redacted", describe(e), v)
	}
	e = one(t, evs, changeXID, "res_users_identitycheck", "update")
	redacted(e, "password")
	changed(e, "password")
	e = one(t, evs, wizXID, "change_password_user", "insert")
	redacted(e, "new_passwd")
	if v := value(e.AfterRow, "user_login"); v != `"bob@example.com"` {
		t.Errorf("%s: user_login %s: only secrets are redacted", describe(e), v)
	}
	redacted(one(t, evs, bobXID, "change_password_user", "update"), "new_passwd")
	e = one(t, evs, totpXID, "auth_totp_wizard", "insert")
	redacted(e, "secret", "url", "qrcode")
	e = one(t, evs, keyXID, "res_users_apikeys", "insert")
	redacted(e, "key", "index")
	if v := value(e.AfterRow, "name"); v != `"CI pipeline"` {
		t.Errorf("%s: the key's name %s: only secrets are redacted", describe(e), v)
	}
	e = one(t, evs, tokenXID, "sale_order", "update")
	redacted(e, "access_token")
	changed(e, "access_token")
	redacted(one(t, evs, secretXID, "ir_config_parameter", "update"), "value")
	for _, e := range pick(evs, first, "res_device_log", "insert") {
		redacted(e, "session_identifier")
	}
	if len(pick(evs, first, "res_device_log", "insert")) != 1 {
		t.Errorf("alice's first request: want its device row captured")
	}

	// Attribution works once the profile is detected: the users and the
	// sessions are known (the ORM's stamp of the user record, the last
	// res_users update of each change, names the user).
	last := func(xid uint32, table string) *event {
		t.Helper()
		got := pick(evs, xid, table, "update")
		if len(got) == 0 {
			t.Fatalf("transaction %d: no update of %s", xid, table)
		}
		return got[len(got)-1]
	}
	checkActor(t, last(changeXID, "res_users"), who{user: odoosim.Alice, session: "*"}, "alice's own password change")
	checkActor(t, last(bobXID, "res_users"), who{user: odoosim.Admin, session: "*"}, "admin setting bob's password")
	checkActor(t, one(t, evs, first, "sale_order", "update"), who{user: odoosim.Alice, session: sid(alice)}, "alice's first request")
	checkActor(t, one(t, evs, tokenXID, "sale_order", "update"), who{user: odoosim.Alice, session: "*"}, "alice sharing an order")
	if t.Failed() {
		return
	}
	verifyOK(t, r.dataDir, changeCount(evs))

	// A restart keeps the profile (and the redaction).
	r.restart()
	again := keep("alice's third password hash", odoosim.HashPassword("alice-Summer-2027#"))
	againXID := r.request(alice, func(e *odoosim.Env) error { return e.ChangePassword(odoosim.Alice, again) })
	evs = r.stop()
	for p, b := range storeFiles(t, r.dataDir) {
		findSecrets(t, "store file "+filepath.Base(p)+" after a restart", b, secrets)
	}
	for _, e := range pick(evs, againXID, "res_users", "update") {
		redacted(e, "password")
	}
	checkActor(t, last(againXID, "res_users"), who{user: odoosim.Alice, session: "*"}, "alice's password change after a restart")
}
