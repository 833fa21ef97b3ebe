package pipeline

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"os"
	osexec "os/exec"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/cdcaudit/cdcaudit/alerts"
	"github.com/cdcaudit/cdcaudit/audit"
	"github.com/cdcaudit/cdcaudit/profile"
	"github.com/cdcaudit/cdcaudit/replication"
	"github.com/cdcaudit/cdcaudit/sessions"
	"github.com/cdcaudit/cdcaudit/sink"
)

// Sources run beside the stream: what one stores through its StateSink is
// durable when the call returns, also its last write after the pipeline
// was told to stop; a source that fails is logged and stops nothing.
func TestSources(t *testing.T) {
	dsn, _ := newDB(t)
	dir := t.TempDir()
	store, err := sink.Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer store.Close()
	stored := make(chan error, 1)
	var mu sync.Mutex
	var durable bool
	writer := func(ctx context.Context, state StateSink) error {
		err := state(ctx, []sink.StateRecord{{Bucket: "test", Key: "first", Value: []byte("1")}})
		if err == nil {
			// Durable now: readable from the store.
			store.LoadState("test", func(k, v []byte) error {
				mu.Lock()
				durable = durable || string(k) == "first"
				mu.Unlock()
				return nil
			})
		}
		stored <- err
		<-ctx.Done()
		return state(context.Background(), []sink.StateRecord{{Bucket: "test", Key: "last", Value: []byte("2")}})
	}
	failing := func(context.Context, StateSink) error { return errors.New("the watcher cannot read its directory") }
	var log lockedLog
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		done <- Run(ctx, Config{Replication: replication.Config{DSN: dsn, Slot: "sources", Publication: "sources"},
			Store: store, Logger: slog.New(slog.NewTextHandler(&log, nil)), Profile: "none", Snapshot: "never",
			Sources: []Source{writer, failing}})
	}()
	select {
	case err := <-stored:
		if err != nil {
			t.Fatal(err)
		}
	case err := <-done:
		t.Fatalf("the pipeline stopped: %v", err)
	case <-time.After(2 * time.Minute):
		t.Fatal("the source's write did not return")
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatalf("pipeline: %v", err)
	}
	mu.Lock()
	if !durable {
		t.Error("the record was not in the store when the StateSink returned")
	}
	mu.Unlock()
	var keys []string
	store.LoadState("test", func(k, v []byte) error { keys = append(keys, string(k)); return nil })
	if strings.Join(keys, ",") != "first,last" {
		t.Errorf("stored %v, want first and last (written while stopping)", keys)
	}
	if !log.has("the watcher cannot read its directory") {
		t.Error("the failing source is not logged")
	}
}

// The users' addresses are read at start through their contacts, unless
// the address column is redacted: then they are not kept at all.
func TestAddressesSeededUnlessRedacted(t *testing.T) {
	for _, redacted := range []bool{false, true} {
		dsn, conn := newDB(t)
		exec(t, conn, `CREATE TABLE res_partner (id serial PRIMARY KEY, name varchar, email varchar)`)
		exec(t, conn, `CREATE TABLE res_users (id serial PRIMARY KEY, login varchar NOT NULL, password varchar, partner_id int,
			create_uid int, create_date timestamp, write_uid int, write_date timestamp)`)
		exec(t, conn, `CREATE TABLE res_users_log (id serial PRIMARY KEY, create_uid int, create_date timestamp, write_uid int, write_date timestamp)`)
		exec(t, conn, `INSERT INTO res_partner (id, name, email) VALUES (7, 'Alice', 'alice.martin@mail.example'), (8, 'Bob', NULL)`)
		exec(t, conn, `INSERT INTO res_users (id, login, partner_id) VALUES (6, 'alice', 7), (7, 'bob', 8)`)
		slot := fmt.Sprintf("addresses_%v", redacted)
		cfg := Config{Replication: replication.Config{DSN: dsn, Slot: slot, Publication: slot},
			DataDir: t.TempDir(), Profile: "odoo", Snapshot: "never"}
		if redacted {
			rule, err := profile.ParseColumnRule("public.res_partner.email")
			if err != nil {
				t.Fatal(err)
			}
			cfg.Redact = []profile.ColumnRule{rule}
		}
		runImages(t, cfg, conn, currentLSN(t, conn))
		st, err := sink.OpenReadOnly(cfg.DataDir)
		if err != nil {
			t.Fatal(err)
		}
		addrs, err := alerts.Addresses(st.LoadState)
		st.Close()
		if err != nil {
			t.Fatal(err)
		}
		want := map[int64]string{6: "alice.martin@mail.example"}
		if redacted {
			want = map[int64]string{}
		}
		if !maps.Equal(addrs, want) {
			t.Errorf("redacted %v: addresses %v, want %v", redacted, addrs, want)
		}
	}
}

const alertsChildEnv = "CDCAUDIT_ALERTS_CHILD"

// runAlertsChild is TestAlertsAcrossSIGKILL's pipeline process.
func runAlertsChild() {
	v := strings.Split(os.Getenv(alertsChildEnv), "\n")
	err := Run(context.Background(), Config{
		Replication: replication.Config{DSN: v[0], Slot: v[1], Publication: v[1]},
		DataDir:     v[2], Logger: slog.New(slog.NewTextHandler(io.Discard, nil)),
		Profile: "odoo", Snapshot: "never",
	})
	fmt.Fprintln(os.Stderr, "child stopped:", err)
	os.Exit(3)
}

// waitSlotFree waits until no walsender holds the slot (a killed one may
// linger a moment).
func waitSlotFree(t *testing.T, conn *pgx.Conn, slot string) {
	t.Helper()
	for deadline := time.Now().Add(time.Minute); ; time.Sleep(10 * time.Millisecond) {
		var active bool
		if err := conn.QueryRow(context.Background(), "SELECT coalesce(bool_or(active), false) FROM pg_replication_slots WHERE slot_name = $1", slot).Scan(&active); err != nil {
			t.Fatal(err)
		}
		if !active {
			return
		}
		if time.Now().After(deadline) {
			t.Fatal("the slot stayed active for a minute")
		}
	}
}

// Sign-ins stream while the pipeline is SIGKILLed twice and restarted: the
// alerts queued are exactly those one uninterrupted run raises — every new
// device once, no first sign-in, nothing lost, nothing twice.
func TestAlertsAcrossSIGKILL(t *testing.T) {
	dsn, conn := newDB(t)
	exec(t, conn, `CREATE TABLE res_users (id serial PRIMARY KEY, login varchar NOT NULL, password varchar, partner_id int,
		create_uid int, create_date timestamp, write_uid int, write_date timestamp)`)
	exec(t, conn, `CREATE TABLE res_users_log (id serial PRIMARY KEY, create_uid int, create_date timestamp, write_uid int, write_date timestamp)`)
	exec(t, conn, `CREATE TABLE res_device_log (id serial PRIMARY KEY, session_identifier varchar, platform varchar, browser varchar,
		ip_address varchar, country varchar, city varchar, device_type varchar, user_id int, first_activity timestamp,
		last_activity timestamp, revoked boolean, write_uid int)`)
	exec(t, conn, `INSERT INTO res_users (id, login) SELECT g, 'user' || g FROM generate_series(1, 20) g`)
	exec(t, conn, `CREATE TABLE filler (id serial PRIMARY KEY, s text)`)
	slot := "alertskill"
	dir := t.TempDir()
	cfg := Config{Replication: replication.Config{DSN: dsn, Slot: slot, Publication: slot}, DataDir: dir, Profile: "odoo", Snapshot: "never"}
	runImages(t, cfg, conn, currentLSN(t, conn))

	// The sign-ins, and what one run makes of them.
	platforms := []string{"windows", "linux", "iphone"}
	browsers := []string{"chrome", "firefox"}
	seen := map[int]map[string]bool{}
	want := map[string]bool{}
	n := 0
	signIn := func(user, round int) {
		n++
		sid := fmt.Sprintf("%042d", n)
		p, b := platforms[(user*round)%len(platforms)], browsers[(user+round/2)%len(browsers)]
		exec(t, conn, `INSERT INTO res_device_log (session_identifier, platform, browser, ip_address, device_type, user_id,
			first_activity, last_activity, revoked) VALUES ($1, $2, $3, '192.0.2.1', 'computer', $4, now(), now(), false)`, sid, p, b, user)
		fp := p + "/" + b
		if seen[user] == nil {
			seen[user] = map[string]bool{}
		} else if !seen[user][fp] {
			want["q/new_device/"+sessions.Pseudonym(sid)] = true
		}
		seen[user][fp] = true
	}
	child := func() *osexec.Cmd {
		waitSlotFree(t, conn, slot)
		c := osexec.Command(os.Args[0], "-test.run=^$")
		c.Env = append(os.Environ(), alertsChildEnv+"="+strings.Join([]string{dsn, slot, dir}, "\n"))
		c.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
		if err := c.Start(); err != nil {
			t.Fatal(err)
		}
		return c
	}
	for kill := range 2 {
		var mid uint64
		for round := 3 * kill; round < 3*kill+3; round++ {
			for user := 1; user <= 20; user++ {
				signIn(user, round)
			}
			// Other work between the sign-ins: the stream takes a while.
			exec(t, conn, `INSERT INTO filler (s) SELECT repeat('x', 100) FROM generate_series(1, 30000)`)
			if round == 3*kill {
				mid = currentLSN(t, conn)
			}
		}
		// A backlog; killed once a third of it is confirmed: mid-stream.
		c := child()
		for deadline := time.Now().Add(time.Minute); ; time.Sleep(time.Millisecond) {
			var confirmed uint64
			conn.QueryRow(context.Background(), "SELECT coalesce(confirmed_flush_lsn - '0/0', 0)::int8 FROM pg_replication_slots WHERE slot_name = $1", slot).Scan(&confirmed)
			if confirmed >= mid || time.Now().After(deadline) {
				break
			}
		}
		c.Process.Signal(syscall.SIGKILL)
		c.Wait()
		if st, err := sink.OpenReadOnly(dir); err == nil {
			t.Logf("killed with checkpoint %s (now %s)", audit.FormatLSN(st.Checkpoint()), audit.FormatLSN(currentLSN(t, conn)))
			st.Close()
		}
	}
	for user := 1; user <= 20; user++ {
		signIn(user, 7)
	}
	waitSlotFree(t, conn, slot)
	runImages(t, cfg, conn, currentLSN(t, conn))

	st, err := sink.OpenReadOnly(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	got := map[string]bool{}
	st.LoadState(alerts.Bucket, func(k, v []byte) error {
		if strings.HasPrefix(string(k), "q/") {
			got[string(k)] = true
		}
		return nil
	})
	if len(want) < 20 || !maps.Equal(got, want) {
		var missing, extra []string
		for k := range want {
			if !got[k] {
				missing = append(missing, k)
			}
		}
		for k := range got {
			if !want[k] {
				extra = append(extra, k)
			}
		}
		t.Errorf("%d alerts queued, want %d; missing %v; extra %v", len(got), len(want), missing, extra)
	}
}
