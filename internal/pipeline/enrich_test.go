package pipeline

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/cdcaudit/cdcaudit/audit"
	"github.com/cdcaudit/cdcaudit/replication"
	"github.com/cdcaudit/cdcaudit/sink"
)

// Profile auto on an empty database settles on Odoo when Odoo's users
// table appears in the stream, before its first row is stored (the row's
// password is redacted, its actor attributed), and a restart keeps the
// profile even when the catalog would no longer say Odoo.
func TestProfileAutoSettlesInTheStream(t *testing.T) {
	dsn, conn := newDB(t)
	dir := t.TempDir()
	var log1 bytes.Buffer
	runUntilLogged(t, dsn, dir, "auto", conn, currentLSN(t, conn), slog.New(slog.NewTextHandler(&log1, nil)))
	if !strings.Contains(log1.String(), "no application profile") {
		t.Fatalf("on an empty database: want no profile yet; log:\n%s", log1.String())
	}

	var log2 bytes.Buffer
	runWhile(t, dsn, dir, "auto", conn, slog.New(slog.NewTextHandler(&log2, nil)), func() {
		exec(t, conn, `CREATE TABLE res_users (id serial PRIMARY KEY, login varchar NOT NULL, password varchar,
			create_uid int, create_date timestamp, write_uid int, write_date timestamp)`)
		exec(t, conn, `CREATE TABLE res_users_log (id serial PRIMARY KEY, create_uid int, create_date timestamp, write_uid int, write_date timestamp)`)
		exec(t, conn, `INSERT INTO res_users (id, login, password, create_uid, write_uid, create_date, write_date)
			VALUES (2, 'admin', '$pbkdf2-sha512$600000$salt$check', 1, 1, now(), now())`)
		// A table created while cdcaudit runs has its updates captured once
		// the changes publication lists it (docs/operations.md).
		waitListed(t, conn, "auto_changes", "public.res_users")
		exec(t, conn, `UPDATE res_users SET login = 'root', write_uid = 2, write_date = now() AT TIME ZONE 'UTC' WHERE id = 2`)
	})
	if !strings.Contains(log2.String(), `msg="application profile detected in the stream" profile=odoo table=public.res_users`) {
		t.Errorf("the log does not say when the profile was detected:\n%s", log2.String())
	}
	events := storedRecords(t, dir)
	if len(events) != 2 {
		t.Fatalf("%d events, want the insert and the update", len(events))
	}
	for _, e := range events {
		if v := member(t, e.After, "password"); v != `"[redacted]"` {
			t.Errorf("%s of res_users: password %s, want redacted", e.Op, v)
		}
	}
	if a := events[1].Actor; member(t, a, "user_id") != "2" {
		t.Errorf("the update by write_uid 2: actor %s, want user 2", a)
	}
	st, err := sink.OpenReadOnly(dir)
	if err != nil {
		t.Fatal(err)
	}
	var stored string
	err = st.LoadState("profile", func(k, v []byte) error { stored = string(k) + "=" + string(v); return nil })
	st.Close()
	if err != nil || stored != "auto=odoo" {
		t.Errorf("stored profile %q (%v), want auto=odoo", stored, err)
	}

	// Without res_users_log, the catalog alone would not say Odoo; the
	// store remembers what the stream said.
	exec(t, conn, "DROP TABLE res_users_log")
	var log3 bytes.Buffer
	runUntilLogged(t, dsn, dir, "auto", conn, currentLSN(t, conn), slog.New(slog.NewTextHandler(&log3, nil)))
	if !strings.Contains(log3.String(), `msg="application profile" profile=odoo`) {
		t.Errorf("after a restart: want the Odoo profile from the start; log:\n%s", log3.String())
	}
}

// With profile none, a table that Odoo's ORM made still has its secret
// columns redacted: redaction does not depend on the profile.
func TestProfileNoneRedactsOdooSecrets(t *testing.T) {
	dsn, conn := newDB(t)
	dir := t.TempDir()
	discard := slog.New(slog.NewTextHandler(io.Discard, nil))
	runWhile(t, dsn, dir, "none", conn, discard, func() {
		exec(t, conn, `CREATE TABLE change_password_user (id serial PRIMARY KEY, user_login varchar, new_passwd varchar,
			create_uid int, create_date timestamp, write_uid int, write_date timestamp)`)
		exec(t, conn, `INSERT INTO change_password_user (user_login, new_passwd) VALUES ('bob', 'Typed-Secret-1')`)
	}, "none")
	events := storedRecords(t, dir)
	if len(events) != 1 {
		t.Fatalf("%d events, want 1", len(events))
	}
	e := events[0]
	if v := member(t, e.After, "new_passwd"); v != `"[redacted]"` || string(e.Redacted) != `["new_passwd"]` {
		t.Errorf("new_passwd %s, redacted %s: want it redacted", v, e.Redacted)
	}
	if v := member(t, e.After, "user_login"); v != `"bob"` {
		t.Errorf("user_login %s: only secrets are redacted", v)
	}
}

// member returns the JSON of a member of a stored object ("" when absent).
func member(t testing.TB, object json.RawMessage, name string) string {
	t.Helper()
	var m map[string]json.RawMessage
	if err := json.Unmarshal(object, &m); err != nil {
		t.Fatalf("%s: %v", object, err)
	}
	return string(m[name])
}

// runWhile runs the pipeline, waits until it streams, runs during, waits
// until what during wrote is confirmed, and stops the pipeline.
func runWhile(t testing.TB, dsn, dir, slot string, conn *pgx.Conn, log *slog.Logger, during func(), profile ...string) {
	t.Helper()
	// The walsender of a previous run may linger: taking it for this run's
	// would run during before this run has looked at the catalog.
	for deadline := time.Now().Add(time.Minute); ; time.Sleep(10 * time.Millisecond) {
		var active bool
		err := conn.QueryRow(context.Background(), "SELECT coalesce(bool_or(active), false) FROM pg_replication_slots WHERE slot_name = $1", slot).Scan(&active)
		if err != nil {
			t.Fatal(err)
		}
		if !active {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the slot stayed active for a minute")
		}
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		cfg := Config{Replication: replication.Config{DSN: dsn, Slot: slot, Publication: slot}, DataDir: dir, Logger: log}
		if len(profile) > 0 {
			cfg.Profile = profile[0]
		}
		done <- Run(ctx, cfg)
	}()
	waitSlot := func(lsn uint64) {
		t.Helper()
		for deadline := time.Now().Add(time.Minute); ; {
			var s string
			err := conn.QueryRow(context.Background(), `SELECT coalesce(s.confirmed_flush_lsn::text, '0/0') FROM pg_replication_slots s
				JOIN pg_stat_replication r ON r.pid = s.active_pid WHERE s.slot_name = $1 AND r.state = 'streaming'`, slot).Scan(&s)
			if v, _ := audit.ParseLSN(s); err == nil && v >= lsn {
				return
			}
			select {
			case err := <-done:
				t.Fatalf("pipeline stopped early: %v", err)
			case <-time.After(10 * time.Millisecond):
			}
			if time.Now().After(deadline) {
				t.Fatal("pipeline did not catch up in a minute")
			}
		}
	}
	waitSlot(0)
	during()
	waitSlot(currentLSN(t, conn))
	cancel()
	if err := <-done; err != nil {
		t.Fatalf("pipeline: %v", err)
	}
}

// waitListed waits until publication pub lists table (schema.table).
func waitListed(t testing.TB, conn *pgx.Conn, pub, table string) {
	t.Helper()
	for deadline := time.Now().Add(time.Minute); ; time.Sleep(20 * time.Millisecond) {
		var listed bool
		err := conn.QueryRow(context.Background(), `SELECT EXISTS (SELECT 1 FROM pg_publication_tables
			WHERE pubname = $1 AND schemaname || '.' || tablename = $2)`, pub, table).Scan(&listed)
		if err != nil {
			t.Fatal(err)
		}
		if listed {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("publication %s did not list %s within a minute", pub, table)
		}
	}
}
