// Package odoosim drives the Odoo 18 fixture (schema.sql, embedded as
// Schema) with the SQL that Odoo itself sends to PostgreSQL, so that
// cdcaudit's attribution can be tested — and demonstrated — on the WAL that
// a real Odoo produces, without running Odoo.
//
// What it reproduces (facts from odoo/odoo 18.0 and ../../../shared/ODOO.md):
//
//   - Logins: one res_users_log INSERT per successful login, on a
//     transaction of its own, create_uid = the user (Sim.Login).
//   - Sessions: an 84-character url-safe session id, of which the first 42
//     characters are the session_identifier stored in res_device_log. A
//     device row is INSERTed by raw SQL (audit columns NULL) when the
//     session shows up on a new (platform, browser, IP) or when its trace
//     for that device is at least an hour old; for read-write requests on
//     the request's own transaction, before the request's business writes
//     (Session.Request), for read-only requests on a transaction of its own
//     (Session.Visit).
//   - ORM writes, in the shapes recorded from Odoo 18.0
//     (testdata/odoo18/traces; TestSQLIsRecordedOdoos): INSERT INTO "t"
//     (…) VALUES (…) RETURNING "id", UPDATE "t" SET … FROM (VALUES …) AS
//     "__tmp"(…), DELETE FROM "t" WHERE id IN (…), values as literals;
//     create_uid/write_uid = the acting user and create_date/write_date =
//     now() AT TIME ZONE 'UTC' — the transaction's timestamp, read once and
//     written as a literal, so the same value for every row the
//     transaction writes, also when it writes a row twice (a create
//     followed by the flush of a stored computed field).
//   - unlink: a bare DELETE that records nothing about who deleted; the
//     recompute of a parent record (sale_order's totals after a line is
//     deleted) stamps the parent with the deleter.
//   - many2many: INSERT … ON CONFLICT DO NOTHING and DELETE on the relation
//     table, plus the write of the owning record, in one transaction.
//   - Odoo's own raw SQL: the password hash (UPDATE res_users SET password),
//     the TOTP secret (UPDATE res_users SET totp_secret), API keys (INSERT
//     INTO res_users_apikeys), each next to the ORM's stamp of the same
//     record where Odoo has one (and, for the first two, the "Security
//     Update" e-mail: mail_message + mail_mail).
//   - What Odoo never does: Sim.RawSQLEdit changes a business column with
//     psql-style SQL, leaving write_date/write_uid alone.
//
// A Sim runs its transactions on the DB it is given; with a *pgx.Conn it
// serves one goroutine at a time (give each goroutine a Sim of its own).
package odoosim

import (
	"context"
	"crypto/rand"
	_ "embed"
	"encoding/base64"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
)

// Schema is the Odoo 18 fixture: tables, REPLICA IDENTITY FULL and data.
//
//go:embed schema.sql
var Schema string

// The fixture's users.
const (
	Root   int64 = 1 // __system__, the superuser (inactive)
	Admin  int64 = 2 // admin
	Portal int64 = 5 // a portal (share) user
	Alice  int64 = 6 // alice@example.com, salesperson
	Bob    int64 = 7 // bob@example.com, salesperson
	Carol  int64 = 8 // carol@example.com, sales administrator, TOTP on
)

// Logins are the fixture's users' logins.
var Logins = map[int64]string{
	Root: "__system__", Admin: "admin", 3: "default", 4: "public", Portal: "portal",
	Alice: "alice@example.com", Bob: "bob@example.com", Carol: "carol@example.com",
}

// The fixture's groups (res_groups ids).
const (
	GroupUser         int64 = 1 // Internal User
	GroupERPManager   int64 = 2 // Access Rights
	GroupSystem       int64 = 3 // Settings
	GroupPortal       int64 = 4
	GroupPublic       int64 = 5
	GroupSaleSalesman int64 = 6 // Sales / User: Own Documents Only
	GroupSaleAllLeads int64 = 7 // Sales / User: All Documents
	GroupSaleManager  int64 = 8 // Sales / Administrator
)

// The fixture's customers (res_partner ids 10 to 14) and orders (sale_order
// ids 1 to 4; 1 and 2 by alice, 3 by bob, 4 by carol; 1 and 4 have two
// lines each).
var (
	Customers = []int64{10, 11, 12, 13, 14}
	Orders    = []int64{1, 2, 3, 4}
)

// DatabaseSecret is the fixture's 'database.secret' parameter.
const DatabaseSecret = "a39c6fa2-7d4e-4b1f-9e0b-5c2d8f7a6e13"

// PasswordHashes are the fixture's password hashes, by user.
var PasswordHashes = map[int64]string{
	Admin:  "$pbkdf2-sha512$600000$YRBPfWj.UtTNr0q51xu04A$pUZ51O44LDAexUBrCDbIYZYgj7t8kyCJ/RMdwuoWKXljaLuzEMip/gtlHfzWKKu6qsNTgm56vXD4h5uR1w.aeQ",
	Portal: "$pbkdf2-sha512$600000$VGt2eUmSU3/1Ip7QrLFwZw$0lsVuHkZCycWzV.EnrmLpydJEfCYX.XKPSDRqtjJK765AOd.fEd0J83ctZSk/QeFaryK6dn7VCehNk1.nQl0JA",
	Alice:  "$pbkdf2-sha512$600000$RlH/b8xyPkz6n0.S4hYM8A$25ivD9VdVqCmjPYNgztDFXAtQ6EyFNvhS.6GVAqY.j.6pnL13hod96o1wlEi5xwQ7e1UUhuhBdko/RqQbj5sLQ",
	Bob:    "$pbkdf2-sha512$600000$XKaS2QWp5SuGYFscv7o0Tg$se.JKxWM3J6tbkNA796NIhyxsjBSybdvq0UuLTWP2Y9yqPMoLFfV/JaUNxA75BAsHUJVhux4JNFRC9/.NJEDDg",
	Carol:  "$pbkdf2-sha512$600000$y9YdztTriN.2.KcW5cLbIg$ZElAXB9L78e/0G9/zCJQJTc3kTnkv/lJNyd.IJxbGHoeZblkQMni/.OM3xOATr1ZnarP9aIdK/aqLYZobQFMCA",
}

// CarolTOTPSecret is carol's TOTP secret in the fixture.
const CarolTOTPSecret = "O2W6CVBGXYG6HTBGSU2NAKKLZT23CNRM"

// Load creates the fixture in the (empty) database db is connected to.
func Load(ctx context.Context, db *pgx.Conn) error {
	if _, err := db.Exec(ctx, Schema); err != nil {
		return fmt.Errorf("odoosim: load the Odoo 18 fixture: %w", err)
	}
	return nil
}

// DB is where a Sim runs its transactions: a *pgx.Conn (one goroutine at a
// time) or anything else that begins pgx transactions.
type DB interface {
	Begin(ctx context.Context) (pgx.Tx, error)
}

// Sim plays Odoo against a database holding the fixture.
type Sim struct {
	db DB
	// Now is the clock of device traces (first/last activity); the default
	// is time.Now.
	Now func() time.Time
}

// New returns a Sim running its transactions on db.
func New(db DB) *Sim { return &Sim{db: db, Now: time.Now} }

// ErrRevoked is returned by requests of a revoked session: Odoo has deleted
// its session file, the browser must log in again.
var ErrRevoked = errors.New("odoosim: the session was revoked")

// nowUTC is the ORM's timestamp: the transaction's start, in UTC, without
// time zone (env.cr.now()).
const nowUTC = "(now() AT TIME ZONE 'UTC')"

// tx runs fn in a transaction and returns the transaction's id (the 32-bit
// xid that the replication stream reports).
func (s *Sim) tx(ctx context.Context, fn func(tx pgx.Tx) error) (uint32, error) {
	tx, err := s.db.Begin(ctx)
	if err != nil {
		return 0, err
	}
	defer tx.Rollback(context.Background())
	var xid int64
	if err := tx.QueryRow(ctx, "SELECT txid_current()").Scan(&xid); err != nil {
		return 0, err
	}
	if err := fn(tx); err != nil {
		return 0, err
	}
	if err := tx.Commit(ctx); err != nil {
		return 0, err
	}
	return uint32(xid), nil
}

// Login records a successful login of uid as res.users._update_last_login
// does: the ORM creates a res_users_log row on a cursor of its own, as the
// user. It returns the transaction's xid.
func (s *Sim) Login(ctx context.Context, uid int64) (uint32, error) {
	return s.tx(ctx, func(tx pgx.Tx) error {
		_, err := (&Env{Ctx: ctx, Tx: tx, UID: uid}).Create("res_users_log", nil)
		return err
	})
}

// Transaction runs fn as uid outside any HTTP request, as a scheduled
// action (cron) or `odoo-bin shell` does: ORM writes, no device trace.
func (s *Sim) Transaction(ctx context.Context, uid int64, fn func(e *Env) error) (uint32, error) {
	return s.tx(ctx, func(tx pgx.Tx) error {
		return fn(&Env{Ctx: ctx, Tx: tx, UID: uid})
	})
}

// RawSQL runs one statement on a transaction of its own, as someone at a
// psql prompt would (no ORM, no audit columns touched unless the statement
// says so).
func (s *Sim) RawSQL(ctx context.Context, sql string, args ...any) (uint32, error) {
	return s.tx(ctx, func(tx pgx.Tx) error {
		_, err := tx.Exec(ctx, sql, args...)
		return err
	})
}

// RawSQLEdit changes an order's total the way a DBA "fixing" data at a
// psql prompt does: UPDATE sale_order SET amount_total = … WHERE id = …,
// leaving write_date and write_uid as they were — which the ORM never does.
func (s *Sim) RawSQLEdit(ctx context.Context, orderID int64, amountTotal string) (uint32, error) {
	return s.RawSQL(ctx, "UPDATE sale_order SET amount_total = $1 WHERE id = $2", amountTotal, orderID)
}

// Device is where requests come from, as Odoo 18 records it: werkzeug's
// user-agent platform and browser (lower case: "linux", "windows",
// "macos", "iphone", "android"; "chrome", "firefox", "safari", "edge"), the
// remote address, and GeoIP's country name and city.
type Device struct {
	IP, Platform, Browser, Country, City string
}

// Type is Odoo's device_type: "mobile" for phone and tablet platforms,
// else "computer".
func (d Device) Type() string {
	switch d.Platform {
	case "android", "iphone", "ipad", "ipod", "blackberry", "windows phone", "webos":
		return "mobile"
	}
	return "computer"
}

// trace is one device of a session's trace list (Odoo keeps it in the
// session file).
type trace struct {
	platform, browser, ip string
	first, last           time.Time
}

// Session is a logged-in browser session.
type Session struct {
	sim *Sim
	// UID is the session's user.
	UID int64
	// SID is the session id (the cookie): 84 url-safe base64 characters,
	// as Odoo 18's FilesystemSessionStore.generate_key makes them.
	SID string
	// Device is where the next request comes from; change it (e.g. the IP)
	// and the next request leaves a new device row.
	Device  Device
	traces  []trace
	revoked bool
}

// NewDevice starts a session of uid on a device. Nothing is written until
// its first request.
func (s *Sim) NewDevice(uid int64, d Device) *Session {
	return &Session{sim: s, UID: uid, SID: NewSessionID(), Device: d}
}

// NewSessionID returns a random Odoo 18 session id: 63 random bytes in
// url-safe base64 (84 characters).
func NewSessionID() string {
	b := make([]byte, 63)
	rand.Read(b)
	return base64.URLEncoding.EncodeToString(b)
}

// IdentifierLen is how much of the session id res_device_log stores.
const IdentifierLen = 42

// Identifier is the session_identifier of the session's device rows: the
// first 42 characters of its id. It is a credential (it feeds the CSRF
// token and names the session file).
func (s *Session) Identifier() string { return s.SID[:IdentifierLen] }

// Revoked reports whether the session was revoked.
func (s *Session) Revoked() bool { return s.revoked }

// Age makes the session's traces d older, as if its last requests had been
// made d earlier: after Age(time.Hour) the next request leaves a new device
// row.
func (s *Session) Age(d time.Duration) {
	for i := range s.traces {
		s.traces[i].first = s.traces[i].first.Add(-d)
		s.traces[i].last = s.traces[i].last.Add(-d)
	}
}

// deviceLog is a pending res_device_log row.
type deviceLog struct {
	first, last time.Time
}

// updateTrace is Odoo 18's session.update_trace: a device row is due when
// the (platform, browser, IP) is new to the session or its trace is an
// hour old. Times are whole seconds, as Odoo keeps them.
func (s *Session) updateTrace() *deviceLog {
	now := s.sim.Now().UTC().Truncate(time.Second)
	d := s.Device
	for i := range s.traces {
		t := &s.traces[i]
		if t.platform == d.Platform && t.browser == d.Browser && t.ip == d.IP {
			if now.Sub(t.last) >= time.Hour {
				t.last = now
				return &deviceLog{first: t.first, last: now}
			}
			return nil
		}
	}
	s.traces = append(s.traces, trace{platform: d.Platform, browser: d.Browser, ip: d.IP, first: now, last: now})
	return &deviceLog{first: now, last: now}
}

// insertDeviceLog is res.device.log._update_device's raw INSERT.
func (s *Session) insertDeviceLog(ctx context.Context, tx pgx.Tx, l *deviceLog) error {
	d := s.Device
	_, err := tx.Exec(ctx, `INSERT INTO res_device_log (session_identifier, platform, browser, ip_address, country, city, device_type, user_id, first_activity, last_activity, revoked)
		VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)`,
		s.Identifier(), nullIfEmpty(d.Platform), nullIfEmpty(d.Browser), d.IP, nullIfEmpty(d.Country), nullIfEmpty(d.City),
		d.Type(), s.UID, l.first, l.last, false)
	return err
}

func nullIfEmpty(s string) any {
	if s == "" {
		return nil
	}
	return s
}

// Request runs a read-write HTTP request of the session: when a device row
// is due, Odoo 18 inserts it on the request's own cursor first, then fn
// makes the request's business writes as the session's user, all in one
// transaction. It returns the transaction's xid.
func (s *Session) Request(ctx context.Context, fn func(e *Env) error) (uint32, error) {
	if s.revoked {
		return 0, ErrRevoked
	}
	saved := append([]trace(nil), s.traces...)
	log := s.updateTrace()
	xid, err := s.sim.tx(ctx, func(tx pgx.Tx) error {
		if log != nil {
			if err := s.insertDeviceLog(ctx, tx, log); err != nil {
				return err
			}
		}
		return fn(&Env{Ctx: ctx, Tx: tx, UID: s.UID, Session: s})
	})
	if err != nil {
		s.traces = saved // the session file is not saved either
	}
	return xid, err
}

// Visit runs a read-only request: a device row that is due goes on a
// transaction of its own (Odoo 18 opens a read-write cursor for it). It
// returns that transaction's xid, or 0 when nothing was written.
func (s *Session) Visit(ctx context.Context) (uint32, error) {
	if s.revoked {
		return 0, ErrRevoked
	}
	saved := append([]trace(nil), s.traces...)
	log := s.updateTrace()
	if log == nil {
		return 0, nil
	}
	xid, err := s.sim.tx(ctx, func(tx pgx.Tx) error { return s.insertDeviceLog(ctx, tx, log) })
	if err != nil {
		s.traces = saved
	}
	return xid, err
}
