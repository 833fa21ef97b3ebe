package console

import (
	"context"
	"crypto/hmac"
	"crypto/pbkdf2"
	"crypto/rand"
	"crypto/sha1"
	"crypto/sha512"
	"encoding/base32"
	"encoding/base64"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/cdcaudit/cdcaudit/access"
	"github.com/cdcaudit/cdcaudit/api"
	"github.com/cdcaudit/cdcaudit/auth"
	"github.com/cdcaudit/cdcaudit/instancekey"
	"github.com/cdcaudit/cdcaudit/internal/odoosim"
	"github.com/cdcaudit/cdcaudit/internal/pgtest"
	"github.com/cdcaudit/cdcaudit/internal/pipeline"
	"github.com/cdcaudit/cdcaudit/replication"
	"github.com/cdcaudit/cdcaudit/sink"
)

func TestMain(m *testing.M) { pgtest.Main(m, pgtest.Options{}) }

// The passwords the test gives the fixture's users (Odoo's hashes, fewer
// rounds: the check is the same, only cheaper).
const (
	alicePassword = "alice-console-pw"
	bobPassword   = "bob-console-pw"
	carolPassword = "carol-console-pw" // carol has two-factor on
)

// daemon is what `cdcaudit run` serves, assembled in the test: an Odoo 18
// database in miniature (internal/odoosim) streamed by the real pipeline
// into a real store, the API and sign-in on it, and the console, on one
// server.
type daemon struct {
	URL        string
	store      *sink.Store
	key        *instancekey.Key
	sim        *odoosim.Sim
	auth       *auth.Auth
	adminToken string
	tokenName  string
	// recorded are the databases it records, in the order of its sources.
	recorded []*recorded

	// What the workload did: a session of alice's on a phone in which she
	// edited order 1, then bob's session on a laptop, bob's phone session
	// logged out by admin, and a psql edit of order 1's total.
	aliceSession, bobSession *odoosim.Session
}

// newDaemon starts it all and returns once the store holds the workload
// (none when !work).
func newDaemon(t *testing.T, work bool) *daemon {
	t.Helper()
	return newDaemonOf(t, work, []string{""})
}

// recorded is one ERP database recorded by the real pipeline into a store
// of its own, with its own instance key.
type recorded struct {
	dsn, name string
	conn      *pgx.Conn
	store     *sink.Store
	key       *instancekey.Key
}

// record makes an Odoo 18 database in miniature and streams it into a new
// store; its sign-in tables, and a table named table when given.
func record(t *testing.T, table string) *recorded {
	t.Helper()
	ctx := context.Background()
	dsn, name := pgtest.NewDB(t)
	conn, err := pgx.Connect(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close(context.Background()) })
	if err := odoosim.Load(ctx, conn); err != nil {
		t.Fatal(err)
	}
	// What Odoo's sign-in reads beyond the fixture: groups by xml id.
	if _, err := conn.Exec(ctx, `
		CREATE TABLE ir_model_data (id serial PRIMARY KEY, module varchar NOT NULL, name varchar NOT NULL, model varchar NOT NULL, res_id integer);
		INSERT INTO ir_model_data (module, name, model, res_id) VALUES
			('base', 'group_user', 'res.groups', 1), ('base', 'group_system', 'res.groups', 3),
			('sales_team', 'group_sale_manager', 'res.groups', 8);
		CREATE TABLE res_groups_implied_rel (gid integer NOT NULL, hid integer NOT NULL);
		-- A document written before capture began and left out of the
		-- snapshot: its next update shows what the trail cannot know.
		CREATE TABLE doc_note (id serial PRIMARY KEY, title text, body text);
		ALTER TABLE doc_note ALTER COLUMN body SET STORAGE EXTERNAL;
		INSERT INTO doc_note (title, body) VALUES ('v1', repeat('large value ', 1000))`); err != nil {
		t.Fatal(err)
	}
	if table != "" {
		if _, err := conn.Exec(ctx, `CREATE TABLE `+pgx.Identifier{table}.Sanitize()+` (id serial PRIMARY KEY, note text)`); err != nil {
			t.Fatal(err)
		}
	}

	dir := t.TempDir()
	store, err := sink.Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	slot := name
	if len(slot) > 63 {
		slot = slot[:63]
	}
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
	pctx, stop := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() {
		done <- pipeline.Run(pctx, pipeline.Config{
			Replication: replication.Config{DSN: dsn, Slot: slot, StatusInterval: 200 * time.Millisecond},
			Store:       store, Profile: "odoo", Logger: quiet,
			SnapshotTables: []string{"public.res_*", "public.sale_*"},
		})
	}()
	t.Cleanup(func() {
		stop()
		if err := <-done; err != nil {
			t.Errorf("pipeline: %v", err)
		}
		store.Close()
	})
	waitStreaming(t, conn, slot, done)

	key, err := instancekey.LoadOrCreate(dir)
	if err != nil {
		t.Fatal(err)
	}
	return &recorded{dsn: dsn, name: name, conn: conn, store: store, key: key}
}

// newDaemonOf is a daemon recording one database per name: a name of ""
// is the database's own, any other gets a table of that name, only_in_NAME.
// Password sign-in reads the first database's users; d.store, d.key and
// d.sim are the first's.
func newDaemonOf(t *testing.T, work bool, names []string) *daemon {
	t.Helper()
	ctx := context.Background()
	d := &daemon{tokenName: "console-test"}
	var srcs []api.Source
	for _, n := range names {
		table := ""
		if n != "" {
			table = "only_in_" + n
		}
		r := record(t, table)
		d.recorded = append(d.recorded, r)
		if n == "" {
			n = r.name
		}
		srcs = append(srcs, api.Source{Name: n, Database: r.name, Store: r.store, Signer: r.key})
	}
	first := d.recorded[0]
	dsn, store, conn := first.dsn, first.store, first.conn
	d.store, d.key = store, first.key
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
	h, err := api.New(api.Options{Sources: srcs, Log: quiet})
	if err != nil {
		t.Fatal(err)
	}
	var tok auth.Token
	d.adminToken, tok, err = auth.NewToken(access.Principal{Role: access.Admin}, d.tokenName, time.Time{})
	if err != nil {
		t.Fatal(err)
	}
	pool, err := pgxpool.New(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(pool.Close)
	users, err := auth.NewOdooUsers(pool, "sales_team.group_sale_manager")
	if err != nil {
		t.Fatal(err)
	}
	a, err := auth.New(auth.Options{Tokens: []auth.Token{tok}, Users: users, Access: accessLog{store}, Log: quiet})
	if err != nil {
		t.Fatal(err)
	}
	d.auth = a
	mux := http.NewServeMux()
	mux.Handle(api.Prefix, a.Middleware(h))
	a.Routes(mux)
	mux.Handle("/", Handler())
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	d.URL = srv.URL

	d.sim = odoosim.New(conn)
	if work {
		d.work(t, ctx)
	}
	return d
}

// work is the workload the pages are checked against.
func (d *daemon) work(t *testing.T, ctx context.Context) {
	t.Helper()
	must := func(_ uint32, err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(d.sim.Transaction(ctx, odoosim.Admin, func(e *odoosim.Env) error {
		if err := e.ChangePassword(odoosim.Alice, odooHash(alicePassword)); err != nil {
			return err
		}
		if err := e.ChangePassword(odoosim.Bob, odooHash(bobPassword)); err != nil {
			return err
		}
		return e.ChangePassword(odoosim.Carol, odooHash(carolPassword))
	}))
	must(d.sim.Login(ctx, odoosim.Alice))
	d.aliceSession = d.sim.NewDevice(odoosim.Alice, odoosim.Device{IP: "198.51.100.11", Platform: "android", Browser: "chrome", Country: "France", City: "Lyon"})
	must(d.aliceSession.Request(ctx, func(e *odoosim.Env) error {
		return e.WriteOrder(1, odoosim.Vals{"note": "Deliver before noon", "client_order_ref": "PO-4242"})
	}))
	must(d.sim.Login(ctx, odoosim.Bob))
	d.bobSession = d.sim.NewDevice(odoosim.Bob, odoosim.Device{IP: "198.51.100.20", Platform: "windows", Browser: "firefox", Country: "Belgium", City: "Namur"})
	must(d.bobSession.Request(ctx, func(e *odoosim.Env) error {
		return e.WritePartner(odoosim.Customers[0], odoosim.Vals{"city": "Namur"})
	}))
	// bob's phone session, logged out by admin from the device list.
	bobPhone := d.sim.NewDevice(odoosim.Bob, odoosim.Device{IP: "198.51.100.21", Platform: "iphone", Browser: "safari", Country: "Belgium", City: "Namur"})
	must(bobPhone.Visit(ctx))
	must(d.sim.Login(ctx, odoosim.Admin))
	adminSession := d.sim.NewDevice(odoosim.Admin, odoosim.Device{IP: "192.0.2.2", Platform: "linux", Browser: "firefox", Country: "Belgium", City: "Brussels"})
	must(adminSession.Request(ctx, func(e *odoosim.Env) error { return e.RevokeSession(bobPhone) }))
	must(d.sim.RawSQL(ctx, "UPDATE doc_note SET title = 'v2' WHERE id = 1"))
	xid, err := d.sim.RawSQLEdit(ctx, 1, "999.00")
	must(xid, err)
	d.waitXID(t, xid)
}

// waitXID waits until the store holds the transaction xid.
func (d *daemon) waitXID(t *testing.T, xid uint32) {
	t.Helper()
	deadline := time.Now().Add(2 * time.Minute)
	for {
		var p struct {
			Events []struct {
				XID uint32 `json:"xid"`
			} `json:"events"`
		}
		d.getJSON(t, "/api/v1/events?order=desc&limit=1", &p)
		if len(p.Events) == 1 && p.Events[0].XID >= xid {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("transaction %d not stored after 2 minutes", xid)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// getJSON reads an API route as the admin token.
func (d *daemon) getJSON(t *testing.T, path string, v any) {
	t.Helper()
	req, _ := http.NewRequest("GET", d.URL+path, nil)
	req.Header.Set("Authorization", "Bearer "+d.adminToken)
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	if res.StatusCode != 200 {
		b, _ := io.ReadAll(res.Body)
		t.Fatalf("GET %s: %d %s", path, res.StatusCode, b)
	}
	if err := json.NewDecoder(res.Body).Decode(v); err != nil {
		t.Fatal(err)
	}
}

// sessionOf is the id of login's one active session.
func (d *daemon) sessionOf(t *testing.T, login string) string {
	t.Helper()
	var p struct {
		Sessions []struct {
			ID string `json:"id"`
		} `json:"sessions"`
	}
	d.getJSON(t, "/api/v1/sessions?state=active&user="+url.QueryEscape(login), &p)
	if len(p.Sessions) != 1 {
		t.Fatalf("%s has %d sessions", login, len(p.Sessions))
	}
	return p.Sessions[0].ID
}

// waitStreaming waits until the pipeline streams from its slot.
func waitStreaming(t *testing.T, conn *pgx.Conn, slot string, done <-chan error) {
	t.Helper()
	deadline := time.Now().Add(2 * time.Minute)
	for {
		var n int
		err := conn.QueryRow(context.Background(), `
			SELECT count(*) FROM pg_replication_slots s JOIN pg_stat_replication r ON r.pid = s.active_pid
			WHERE s.slot_name = $1 AND r.state IN ('catchup', 'streaming')`, slot).Scan(&n)
		if err == nil && n == 1 {
			return
		}
		select {
		case err := <-done:
			t.Fatalf("the pipeline stopped: %v", err)
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("slot %s not streaming after 2 minutes (%v)", slot, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// odooHash hashes password as Odoo (passlib's pbkdf2_sha512) stores it.
func odooHash(password string) string {
	salt := make([]byte, 16)
	rand.Read(salt)
	const rounds = 2000
	sum, err := pbkdf2.Key(sha512.New, password, salt, rounds, 64)
	if err != nil {
		panic(err)
	}
	ab64 := func(b []byte) string {
		return strings.ReplaceAll(base64.RawStdEncoding.EncodeToString(b), "+", ".")
	}
	return "$pbkdf2-sha512$" + strconv.Itoa(rounds) + "$" + ab64(salt) + "$" + ab64(sum)
}

// totpNow is the current RFC 6238 code of a base32 secret (what carol's
// authenticator app shows).
func totpNow(t *testing.T, secret string) string {
	t.Helper()
	key, err := base32.StdEncoding.WithPadding(base32.NoPadding).DecodeString(strings.TrimRight(secret, "="))
	if err != nil {
		t.Fatal(err)
	}
	var msg [8]byte
	binary.BigEndian.PutUint64(msg[:], uint64(time.Now().Unix()/30))
	m := hmac.New(sha1.New, key)
	m.Write(msg[:])
	sum := m.Sum(nil)
	off := sum[len(sum)-1] & 0xf
	n := binary.BigEndian.Uint32(sum[off:off+4]) & 0x7fffffff
	return fmt.Sprintf("%06d", n%1000000)
}

// accessLog records sign-ins in the store's access log, as the daemon does.
type accessLog struct{ s *sink.Store }

func (l accessLog) Record(_ context.Context, e auth.AccessEvent) error {
	entry := sink.AccessEntry{Time: e.Time, Action: e.Action, Result: e.Result, Login: e.Login, Via: e.Via, Address: e.Address}
	if p, err := access.ParseRole(e.Principal); err == nil {
		entry.Role = string(p.Role)
	}
	_, err := l.s.AppendAccess(entry)
	return err
}
