package odoosim

import (
	"bytes"
	"context"
	"crypto/pbkdf2"
	"crypto/sha512"
	"encoding/base64"
	"errors"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/cdcaudit/cdcaudit/internal/pgtest"
	"github.com/jackc/pgx/v5"
)

func TestMain(m *testing.M) { pgtest.Main(m, pgtest.Options{}) }

// TestSchemaCopy: testdata/odoo18/schema.sql is the embedded schema, byte
// for byte.
func TestSchemaCopy(t *testing.T) {
	copyPath := filepath.Join("..", "..", "testdata", "odoo18", "schema.sql")
	b, err := os.ReadFile(copyPath)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(b, []byte(Schema)) {
		t.Fatalf("%s differs from internal/odoosim/schema.sql: copy the canonical file over it "+
			"(cp internal/odoosim/schema.sql testdata/odoo18/schema.sql)", copyPath)
	}
}

func TestHashes(t *testing.T) {
	h := hashPBKDF2("s3cret", 1000)
	parts := strings.Split(h, "$")
	if len(parts) != 5 || parts[1] != "pbkdf2-sha512" || parts[2] != "1000" || len(parts[3]) != 22 || len(parts[4]) != 86 {
		t.Fatalf("hash %q is not passlib's pbkdf2_sha512 format", h)
	}
	unab := func(s string) []byte {
		b, err := base64.RawStdEncoding.DecodeString(strings.ReplaceAll(s, ".", "+"))
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	dk, _ := pbkdf2.Key(sha512.New, "s3cret", unab(parts[3]), 1000, 64)
	if !bytes.Equal(dk, unab(parts[4])) {
		t.Fatal("the checksum does not verify")
	}
	for uid, h := range PasswordHashes {
		if !strings.HasPrefix(h, "$pbkdf2-sha512$600000$") || !strings.Contains(Schema, "'"+h+"'") {
			t.Errorf("user %d: hash %q is not the fixture's", uid, h)
		}
	}
	if s := NewTOTPSecret(); len(s) != 32 || strings.Trim(s, "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567") != "" {
		t.Errorf("TOTP secret %q", s)
	}
	if !strings.Contains(Schema, "'"+CarolTOTPSecret+"'") || !strings.Contains(Schema, "'"+DatabaseSecret+"'") {
		t.Error("CarolTOTPSecret or DatabaseSecret is not the fixture's")
	}
	sid := NewSessionID()
	if len(sid) != 84 || strings.ContainsAny(sid, "+/=") {
		t.Errorf("session id %q: want 84 url-safe base64 characters", sid)
	}
}

type fixture struct {
	t    *testing.T
	ctx  context.Context
	conn *pgx.Conn // the sim's
	ctl  *pgx.Conn // the test's own queries
	sim  *Sim
}

func newFixture(t *testing.T) *fixture {
	dsn, _ := pgtest.NewDB(t)
	ctx := context.Background()
	f := &fixture{t: t, ctx: ctx}
	var err error
	if f.conn, err = pgx.Connect(ctx, dsn); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.conn.Close(ctx) })
	if f.ctl, err = pgx.Connect(ctx, dsn); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.ctl.Close(ctx) })
	if err := Load(ctx, f.conn); err != nil {
		t.Fatal(err)
	}
	f.sim = New(f.conn)
	return f
}

// query returns the first column of every row, as text.
func (f *fixture) query(sql string, args ...any) []string {
	f.t.Helper()
	rows, err := f.ctl.Query(f.ctx, sql, args...)
	if err != nil {
		f.t.Fatalf("%s: %v", sql, err)
	}
	out, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (string, error) {
		var s *string
		err := r.Scan(&s)
		if s == nil {
			return "NULL", err
		}
		return *s, err
	})
	if err != nil {
		f.t.Fatalf("%s: %v", sql, err)
	}
	return out
}

func (f *fixture) one(sql string, args ...any) string {
	f.t.Helper()
	r := f.query(sql, args...)
	if len(r) != 1 {
		f.t.Fatalf("%s: %d rows, want 1: %v", sql, len(r), r)
	}
	return r[0]
}

func (f *fixture) ok(xid uint32, err error) string {
	f.t.Helper()
	if err != nil {
		f.t.Fatal(err)
	}
	if xid == 0 {
		f.t.Fatal("no transaction")
	}
	return strconv.FormatUint(uint64(xid), 10)
}

func eq(t *testing.T, what, got, want string) {
	t.Helper()
	if got != want {
		t.Errorf("%s = %s, want %s", what, got, want)
	}
}

var laptop = Device{IP: "198.51.100.7", Platform: "linux", Browser: "chrome", Country: "Belgium", City: "Brussels"}

// TestSQLPatterns runs every helper against the fixture and checks the
// rows each left, and in which transaction (a row's xmin is the xid of the
// transaction that wrote it last).
func TestSQLPatterns(t *testing.T) { runSQLPatterns(t, newFixture(t)) }

func runSQLPatterns(t *testing.T, f *fixture) {
	ctx := f.ctx
	// A slot, to see the logical message in the WAL.
	if _, err := f.ctl.Exec(ctx, "SELECT pg_create_logical_replication_slot('odoosim_test', 'test_decoding')"); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.ctl.Exec(context.Background(), "SELECT pg_drop_replication_slot('odoosim_test')") })

	eq(t, "tables without REPLICA IDENTITY FULL", f.one(`SELECT count(*)::text FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
		WHERE n.nspname = 'public' AND c.relkind = 'r' AND c.relreplident <> 'f'`), "0")
	eq(t, "ir_model of sale_order", f.one("SELECT model FROM ir_model WHERE replace(model, '.', '_') = 'sale_order'"), "sale.order")

	// Login: its own transaction, create_uid = the user.
	xid := f.ok(f.sim.Login(ctx, Alice))
	eq(t, "login row", f.one("SELECT create_uid || ' ' || write_uid || ' ' || xmin FROM res_users_log ORDER BY id DESC LIMIT 1"), "6 6 "+xid)

	// First request of a new session: the device row and the business
	// write in one transaction; the device row's audit columns NULL.
	s := f.sim.NewDevice(Alice, laptop)
	if len(s.SID) != 84 || s.Identifier() != s.SID[:42] {
		t.Fatalf("session id %q, identifier %q", s.SID, s.Identifier())
	}
	var partner int64
	xid = f.ok(s.Request(ctx, func(e *Env) (err error) {
		partner, err = e.CreatePartner("Ready Mat", "ready.mat28@example.com", "Fremont", "US")
		return err
	}))
	eq(t, "device row", f.one(`SELECT concat_ws(' ', session_identifier, platform, browser, ip_address, country, city, device_type, user_id,
		revoked, create_uid IS NULL AND create_date IS NULL AND write_uid IS NULL AND write_date IS NULL, first_activity = last_activity, xmin) FROM res_device_log`),
		s.Identifier()+" linux chrome 198.51.100.7 Belgium Brussels computer 6 f t t "+xid)
	eq(t, "partner", f.one(`SELECT concat_ws(' ', name, commercial_partner_id = id, create_uid, write_uid, create_date = write_date, xmin)
		FROM res_partner WHERE id = $1`, partner), "Ready Mat t 6 6 t "+xid)

	// The next request from the same device leaves no device row; one from
	// another IP does; so does one an hour later.
	f.ok(s.Request(ctx, func(e *Env) error { return e.WritePartner(partner, Vals{"phone": "+1 555 0100"}) }))
	eq(t, "device rows after a second request", f.one("SELECT count(*)::text FROM res_device_log"), "1")
	s.Device.IP = "203.0.113.9"
	xid = f.ok(s.Request(ctx, func(e *Env) error { return e.WritePartner(partner, Vals{"phone": "+1 555 0101"}) }))
	eq(t, "device row of the new IP", f.one("SELECT ip_address || ' ' || xmin FROM res_device_log ORDER BY id DESC LIMIT 1"), "203.0.113.9 "+xid)
	first := f.one("SELECT first_activity::text FROM res_device_log ORDER BY id DESC LIMIT 1")
	s.Age(time.Hour)
	xid = f.ok(s.Visit(ctx))
	eq(t, "refreshed device row", f.one("SELECT (first_activity < last_activity)::text || ' ' || xmin FROM res_device_log ORDER BY id DESC LIMIT 1"), "true "+xid)
	if got := f.one("SELECT first_activity::text FROM res_device_log ORDER BY id DESC LIMIT 1"); got == first {
		t.Errorf("Age did not move first_activity back (%s)", got)
	}
	if xid, err := s.Visit(ctx); xid != 0 || err != nil {
		t.Errorf("a second visit wrote (xid %d, err %v)", xid, err)
	}

	// An order with lines: the INSERTs and the recompute in one
	// transaction, all with the same write_date.
	var order int64
	var lines []int64
	xid = f.ok(s.Request(ctx, func(e *Env) (err error) {
		order, lines, err = e.CreateOrderWithLines(10, []Line{{"[FURN_7800] Desk Combination", 2, 450, 0}, {"[FURN_0269] Office Chair Black", 3, 170, 10}})
		return err
	}))
	eq(t, "order", f.one(`SELECT concat_ws(' ', name, state, amount_untaxed, amount_tax, amount_total, user_id, create_uid, write_uid,
		create_date = write_date, date_order = write_date, xmin) FROM sale_order WHERE id = $1`, order),
		"S00005 draft 1359.00 285.39 1644.39 6 6 6 t t "+xid)
	eq(t, "distinct write_dates of the transaction", f.one(`SELECT count(DISTINCT write_date)::text FROM
		(SELECT write_date FROM sale_order WHERE id = $1 UNION ALL SELECT write_date FROM sale_order_line WHERE order_id = $1) w`, order), "1")

	// Bob deletes a line: DELETE + the order stamped by bob.
	sb := f.sim.NewDevice(Bob, Device{IP: "192.0.2.44", Platform: "windows", Browser: "firefox"})
	f.ok(sb.Request(ctx, func(e *Env) error { return e.WriteOrder(3, Vals{"client_order_ref": "PO-2291"}) }))
	xid = f.ok(sb.Request(ctx, func(e *Env) error { return e.DeleteOrderLine(lines[0]) }))
	eq(t, "order after the line's delete", f.one("SELECT concat_ws(' ', amount_untaxed, amount_total, write_uid, xmin) FROM sale_order WHERE id = $1", order),
		"459.00 555.39 7 "+xid)
	eq(t, "lines", f.one("SELECT count(*)::text FROM sale_order_line WHERE order_id = $1", order), "1")
	f.ok(sb.Request(ctx, func(e *Env) error { return e.DeleteOrder(order) }))
	eq(t, "lines of the deleted order", f.one("SELECT count(*)::text FROM sale_order_line WHERE order_id = $1", order), "0")

	// Groups, as admin.
	sa := f.sim.NewDevice(Admin, Device{IP: "10.0.0.2", Platform: "macos", Browser: "safari"})
	xid = f.ok(sa.Request(ctx, func(e *Env) error {
		return e.SetGroups(Bob, []int64{GroupSaleAllLeads, GroupSaleSalesman}, []int64{GroupUser})
	}))
	eq(t, "bob's groups", strings.Join(f.query("SELECT gid::text FROM res_groups_users_rel WHERE uid = 7 ORDER BY gid"), ","), "6,7")
	eq(t, "bob's user row", f.one("SELECT write_uid || ' ' || xmin FROM res_users WHERE id = 7"), "2 "+xid)

	// Secrets through Odoo's raw SQL.
	hash := hashPBKDF2("correct horse", 1000)
	xid = f.ok(sa.Request(ctx, func(e *Env) error { return e.ChangePassword(Alice, hash) }))
	eq(t, "alice's password", f.one("SELECT password || ' ' || write_uid || ' ' || xmin FROM res_users WHERE id = 6"), hash+" 2 "+xid)
	eq(t, "the security e-mail", f.one(`SELECT concat_ws(' | ', m.subject, m.create_uid, m.author_id, m.email_from, mm.email_to, m.xmin, mm.xmin)
		FROM mail_message m JOIN mail_mail mm ON mm.mail_message_id = m.id`),
		`Security Update: Password Changed | 2 | 3 | "Mitchell Admin" <admin@yourcompany.example.com> | "Alice Martin" <alice@example.com> | `+xid+" | "+xid)
	totp := NewTOTPSecret()
	f.ok(s.Request(ctx, func(e *Env) error { return e.SetTOTP(Alice, totp) }))
	eq(t, "alice's TOTP secret", f.one("SELECT totp_secret FROM res_users WHERE id = 6"), totp)
	var key APIKey
	f.ok(s.Request(ctx, func(e *Env) (err error) { key, err = e.CreateAPIKey("CI", "rpc"); return err }))
	if len(key.Key) != 40 || key.Index != key.Key[:8] || !strings.HasPrefix(key.Hash, "$pbkdf2-sha512$6000$") {
		t.Errorf("API key %+v", key)
	}
	eq(t, "API key row", f.one("SELECT concat_ws(' ', name, user_id, scope, index, key) FROM res_users_apikeys WHERE id = $1", key.ID),
		"CI 6 rpc "+key.Index+" "+key.Hash)
	f.ok(sa.Request(ctx, func(e *Env) error { return e.SetConfigParameter("database.secret", "new-secret") }))
	f.ok(sa.Request(ctx, func(e *Env) error { return e.SetConfigParameter("mail.catchall.domain", "example.com") }))
	eq(t, "parameters", strings.Join(f.query("SELECT key || '=' || value || ' ' || write_uid FROM ir_config_parameter WHERE key IN ('database.secret', 'mail.catchall.domain') ORDER BY key"), ","),
		"database.secret=new-secret 2,mail.catchall.domain=example.com 2")

	// Revocation: every device row of the session, stamped by admin.
	xid = f.ok(sa.Request(ctx, func(e *Env) error { return e.RevokeSession(s) }))
	want := "t 2 " + xid
	eq(t, "revoked rows", strings.Join(f.query("SELECT concat_ws(' ', revoked, write_uid, xmin) FROM res_device_log WHERE session_identifier = $1 ORDER BY id", s.Identifier()), ","),
		want+","+want+","+want)
	if _, err := s.Request(ctx, func(e *Env) error { return nil }); !errors.Is(err, ErrRevoked) {
		t.Errorf("request of a revoked session: %v", err)
	}

	// A psql edit: business column changed, audit columns not.
	before := f.one("SELECT write_uid || ' ' || write_date FROM sale_order WHERE id = 2")
	xid = f.ok(f.sim.RawSQLEdit(ctx, 2, "1.00"))
	eq(t, "raw edit", f.one("SELECT concat_ws(' ', amount_total, write_uid || ' ' || write_date, xmin) FROM sale_order WHERE id = 2"), "1.00 "+before+" "+xid)

	// A message in a transaction.
	xid = f.ok(f.sim.Transaction(ctx, Carol, func(e *Env) error {
		if err := e.EmitMessage(Carol, "abc"); err != nil {
			return err
		}
		return e.DeletePartner(partner)
	}))
	msgs := f.query("SELECT data FROM pg_logical_slot_get_changes('odoosim_test', NULL, NULL) WHERE xid = $1::text::xid", xid)
	if len(msgs) < 3 || !strings.Contains(strings.Join(msgs, "\n"), `message: transactional: 1 prefix: cdcaudit, sz: 32 content:{"session_id":"abc","user_id":8}`) {
		t.Errorf("the transaction's changes:\n%s", strings.Join(msgs, "\n"))
	}
}
