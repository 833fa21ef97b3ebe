package auth

import (
	"context"
	"fmt"
	"net/http"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/cdcaudit/cdcaudit/access"
	"github.com/cdcaudit/cdcaudit/internal/odootrace"
	"github.com/cdcaudit/cdcaudit/internal/pgtest"
)

func TestMain(m *testing.M) { pgtest.Main(m, pgtest.Options{}) }

// The lab's passwords (internal/odoolab, the driver that recorded the
// traces): admin's is Odoo's default, alice's and bob's were changed in
// the passwords scenario.
const (
	labAdminPW    = "admin"
	labAliceOldPW = "alice-lab-pw-1"
	labAliceNewPW = "alice-lab-pw-2"
	labBobOldPW   = "bob-lab-pw-1"
	labBobNewPW   = "bob-lab-pw-2"
	labCarolPW    = "carol-lab-pw-1"
)

// recordedOdoo restores the recorded Odoo 18 database, replays every trace
// onto it (the passwords scenario changes alice's password, sets bob's and
// turns on alice's two-factor authentication) and returns a connection and
// a pool to it.
func recordedOdoo(t *testing.T) (*pgx.Conn, *pgxpool.Pool) {
	t.Helper()
	ctx := context.Background()
	dsn, _ := pgtest.NewDB(t)
	if err := odootrace.Restore(ctx, pgtest.Shared(t).BinDir, dsn, "../testdata/odoo18/erp.sql.gz"); err != nil {
		t.Fatal(err)
	}
	conn, err := pgx.Connect(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close(context.Background()) })
	traces, err := odootrace.LoadDir(tracesDir)
	if err != nil {
		t.Fatal(err)
	}
	for _, tr := range traces {
		if _, err := odootrace.Replay(ctx, conn, tr); err != nil {
			t.Fatalf("%s: %v", tr.Header.Scenario, err)
		}
	}
	pool, err := pgxpool.New(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(pool.Close)
	return conn, pool
}

// How Odoo 18 stores what decides a role, as recorded: memberships in
// res_groups_users_rel with implied groups written out, totp_secret on
// res_users, share for portal and public users.
func TestOdooUsersLookupRecorded(t *testing.T) {
	ctx := context.Background()
	_, pool := recordedOdoo(t)
	users, err := NewOdooUsers(pool, "sales_team.group_sale_manager")
	if err != nil {
		t.Fatal(err)
	}
	for login, want := range map[string]struct {
		role access.Role
		totp bool
	}{
		"admin":          {access.Admin, false},
		"alice":          {access.Self, true},
		"bob":            {access.Viewer, false}, // made Sales / Administrator in the edits scenario
		"carol":          {access.Self, false},
		"public":         {"", false}, // archived, share
		"portaltemplate": {"", false}, // archived, share
		"__system__":     {"", false}, // archived, no password
		"default":        {"", false}, // archived template user
	} {
		a, err := users.Lookup(ctx, login)
		if err != nil {
			t.Fatalf("%s: %v", login, err)
		}
		if a.Role != want.role || (a.TOTPSecret != "") != want.totp {
			t.Errorf("%s: role %q, two-factor %t; want %q, %t", login, a.Role, a.TOTPSecret != "", want.role, want.totp)
		}
	}
	// Odoo 18 writes implied groups into res_groups_users_rel (admin is in
	// base.group_user directly, not only through Settings): no membership of
	// the recording is implied without being written.
	var missing int
	if err := pool.QueryRow(ctx, `
		SELECT count(*) FROM res_groups_users_rel r
		JOIN res_groups_implied_rel i ON i.gid = r.gid
		WHERE NOT EXISTS (SELECT 1 FROM res_groups_users_rel r2 WHERE r2.uid = r.uid AND r2.gid = i.hid)`).Scan(&missing); err != nil || missing != 0 {
		t.Errorf("implied memberships not written out: %d (%v)", missing, err)
	}
	if _, err := users.Lookup(ctx, "nobody"); err != ErrNoAccount {
		t.Errorf("unknown login: %v", err)
	}
	if _, err := users.Lookup(ctx, "Alice"); err != ErrNoAccount {
		t.Errorf("logins are exact: %v", err)
	}
	// Without a viewer group bob is an internal user like any other.
	plain, _ := NewOdooUsers(pool, "")
	if a, _ := plain.Lookup(ctx, "bob"); a.Role != access.Self {
		t.Errorf("bob without a viewer group: %q", a.Role)
	}
	for _, bad := range []string{"group_system", "base.", ".x", "base.group system", "Base.group_user", "base.group_user;--"} {
		if _, err := NewOdooUsers(pool, bad); err == nil {
			t.Errorf("viewer group %q accepted", bad)
		}
	}
}

// A membership given only through an implied group counts: Odoo 18
// writes implied groups out, but a group added by hand (or by an older
// version) still means what Odoo makes of it.
func TestOdooUsersImpliedGroups(t *testing.T) {
	ctx := context.Background()
	conn, pool := recordedOdoo(t)
	// carol keeps only Sales / Administrator, which implies Internal User
	// through Sales / User: All Documents → … → base.group_user.
	_, err := conn.Exec(ctx, `
		DELETE FROM res_groups_users_rel WHERE uid = (SELECT id FROM res_users WHERE login = 'carol');
		INSERT INTO res_groups_users_rel (gid, uid)
		SELECT d.res_id, u.id FROM ir_model_data d, res_users u
		WHERE d.model = 'res.groups' AND d.module = 'sales_team' AND d.name = 'group_sale_manager' AND u.login = 'carol'`)
	if err != nil {
		t.Fatal(err)
	}
	users, _ := NewOdooUsers(pool, "")
	if a, err := users.Lookup(ctx, "carol"); err != nil || a.Role != access.Self {
		t.Errorf("carol through implied groups: %q %v", a.Role, err)
	}
	// A cycle of implications ends.
	if _, err := conn.Exec(ctx, `INSERT INTO res_groups_implied_rel (gid, hid)
		SELECT g.id, d.res_id FROM res_groups g, ir_model_data d
		WHERE d.model = 'res.groups' AND d.module = 'sales_team' AND d.name = 'group_sale_manager'
		  AND g.id = (SELECT res_id FROM ir_model_data WHERE model = 'res.groups' AND module = 'base' AND name = 'group_user')
		ON CONFLICT DO NOTHING`); err != nil {
		t.Fatal(err)
	}
	if a, err := users.Lookup(ctx, "carol"); err != nil || a.Role != access.Self {
		t.Errorf("with a cycle: %q %v", a.Role, err)
	}
}

// Sign-in through the HTTP flow against the recorded Odoo, at the moment
// alice turned two-factor on: the code the recording's authenticator
// typed then is the current code.
func TestSignInRecordedOdoo(t *testing.T) {
	ctx := context.Background()
	conn, pool := recordedOdoo(t)
	users, err := NewOdooUsers(pool, "sales_team.group_sale_manager")
	if err != nil {
		t.Fatal(err)
	}
	secret, recordedCode, at := recordedTOTP(t)
	var dbSecret string
	if err := conn.QueryRow(ctx, `SELECT totp_secret FROM res_users WHERE login = 'alice'`).Scan(&dbSecret); err != nil || dbSecret != secret {
		t.Fatalf("alice's secret in the replayed database is not the recorded one (%v)", err)
	}
	h := newHarness(t, Options{Users: users})
	h.now = at
	addr := 0
	next := func() reqOpt { addr++; return from(fmt.Sprintf("192.0.2.%d:1", addr)) }
	refused := func(login, password, totp string) map[string]any {
		t.Helper()
		w := h.do("POST", "/api/v1/signin", signInBody(login, password, totp), next())
		if w.Code != http.StatusUnauthorized || len(w.Result().Cookies()) != 0 {
			t.Fatalf("%s: %d %s", login, w.Code, w.Body)
		}
		return errorBody(t, w)
	}

	c, _ := h.signIn("admin", labAdminPW, "", next())
	if code, m := h.whoami(withCookie(c)); code != 200 || m["role"] != "admin" || m["login"] != "admin" {
		t.Errorf("admin: %d %v", code, m)
	}

	// alice: her new password and a code; without one she is asked for it,
	// only once the password was right.
	if m := refused("alice", labAliceNewPW, ""); m["totp_required"] != true {
		t.Errorf("alice without a code: %v", m)
	}
	if m := refused("alice", labAliceOldPW, ""); m["totp_required"] != nil {
		t.Errorf("alice's old password got the two-factor hint: %v", m)
	}
	refused("alice", labAliceOldPW, recordedCode)
	key, _ := decodeTOTPSecret(secret)
	wrong := hotp(key, uint64(at.Unix()/totpStep)+5)
	refused("alice", labAliceNewPW, wrong)
	c, _ = h.signIn("alice", labAliceNewPW, recordedCode, next())
	if code, m := h.whoami(withCookie(c)); code != 200 || m["role"] != "self" || m["login"] != "alice" || m["via"] != "password" {
		t.Errorf("alice: %d %v", code, m)
	}
	// A code computed from her recorded secret at a later fixed clock.
	h.now = time.Date(2027, 1, 15, 8, 0, 0, 0, time.UTC)
	h.signIn("alice", labAliceNewPW, hotp(key, uint64(h.now.Unix()/totpStep)), next())

	// bob: the password admin set, not his first one; a viewer through
	// Sales / Administrator.
	refused("bob", labBobOldPW, "")
	c, _ = h.signIn("bob", labBobNewPW, "", next())
	if code, m := h.whoami(withCookie(c)); code != 200 || m["role"] != "viewer" {
		t.Errorf("bob: %d %v", code, m)
	}
	c, _ = h.signIn("carol", labCarolPW, "", next())
	if code, m := h.whoami(withCookie(c)); code != 200 || m["role"] != "self" || m["login"] != "carol" {
		t.Errorf("carol: %d %v", code, m)
	}

	// Archived: carol, with her right password. Portal: bob made a portal
	// user as Odoo stores one (only base.group_portal, share).
	if _, err := conn.Exec(ctx, `
		UPDATE res_users SET active = false WHERE login = 'carol';
		DELETE FROM res_groups_users_rel WHERE uid = (SELECT id FROM res_users WHERE login = 'bob');
		INSERT INTO res_groups_users_rel (gid, uid)
		SELECT d.res_id, u.id FROM ir_model_data d, res_users u
		WHERE d.model = 'res.groups' AND d.module = 'base' AND d.name = 'group_portal' AND u.login = 'bob';
		UPDATE res_users SET share = true WHERE login = 'bob'`); err != nil {
		t.Fatal(err)
	}
	refused("carol", labCarolPW, "")
	refused("bob", labBobNewPW, "")
	refused("public", "public", "")
	refused("__system__", "anything", "")

	var results []string
	for _, e := range h.rec.all() {
		results = append(results, e.Login+":"+e.Result)
	}
	want := []string{"admin:ok", "alice:totp_required", "alice:refused", "alice:refused", "alice:refused", "alice:ok", "alice:ok",
		"bob:refused", "bob:ok", "carol:ok", "carol:refused", "bob:refused", "public:refused", "__system__:refused"}
	if len(results) != len(want) {
		t.Fatalf("recorded %v, want %v", results, want)
	}
	for i := range want {
		if results[i] != want[i] {
			t.Errorf("recorded %v, want %v", results, want)
			break
		}
	}
	h.noSecrets(labAliceNewPW, labAliceOldPW, labBobNewPW, labBobOldPW, labCarolPW, recordedCode, secret)
}
