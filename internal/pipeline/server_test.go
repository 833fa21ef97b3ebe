package pipeline

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/cdcaudit/cdcaudit/audit"
	"github.com/cdcaudit/cdcaudit/internal/pgtest"
	"github.com/cdcaudit/cdcaudit/replication"
	"github.com/cdcaudit/cdcaudit/sink"
)

// connect opens a connection closed when the test ends.
func connect(t testing.TB, dsn string) *pgx.Conn {
	t.Helper()
	conn, err := pgx.Connect(context.Background(), dsn)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close(context.Background()) })
	return conn
}

// A daemon that lost its server and reconnects to a different cluster at
// the same address must refuse it, naming the mismatch, and store nothing
// of it — even when that cluster has a slot and publication of the same
// names (a restore elsewhere, a test cluster, a failover to a stranger).
func TestRunRefusesAnotherServerAfterReconnect(t *testing.T) {
	t.Parallel()
	a, err := pgtest.Start(pgtest.Options{Settings: map[string]string{"wal_sender_timeout": "'2s'"}})
	if err != nil {
		t.Fatal(err)
	}
	defer a.Stop()
	b, err := pgtest.Start(pgtest.Options{Settings: map[string]string{"wal_sender_timeout": "'2s'"}})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Stop()
	setup := "CREATE TABLE item (id int PRIMARY KEY, name text)"
	exec(t, connect(t, a.DSN("postgres")), setup)

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	st, err := sink.Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	done := make(chan error, 1)
	go func() {
		done <- Run(ctx, Config{
			Replication: replication.Config{DSN: a.DSN("postgres")},
			Store:       st,
			Logger:      slog.New(slog.NewTextHandler(io.Discard, nil)),
		})
	}()
	// seen reads the store, which Run shares, for an item of that name.
	seen := func(name string) bool {
		found := false
		_, err := st.Query(context.Background(), sink.Query{Tables: []string{"item"}}, func(_, rec []byte) error {
			r, err := audit.ParseRecord(rec)
			if err == nil && strings.Contains(string(r.After), `"name":"`+name+`"`) {
				found = true
			}
			return err
		})
		if err != nil {
			t.Fatal(err)
		}
		return found
	}
	// Inserted until one arrives: the slot is created after Run starts.
	aconn := connect(t, a.DSN("postgres"))
	for i, deadline := 1, time.Now().Add(time.Minute); !seen("from-a"); i++ {
		exec(t, aconn, "INSERT INTO item VALUES ($1, 'from-a')", i)
		time.Sleep(100 * time.Millisecond)
		select {
		case err := <-done:
			t.Fatalf("Run ended before the first insert arrived: %v", err)
		default:
		}
		if time.Now().After(deadline) {
			t.Fatal("the insert on the first server never arrived")
		}
	}

	// The other cluster looks just like it: same table, publications, slot.
	bconn := connect(t, b.DSN("postgres"))
	exec(t, bconn, setup)
	exec(t, bconn, "CREATE PUBLICATION cdcaudit FOR ALL TABLES WITH (publish = 'insert, truncate'); CREATE PUBLICATION cdcaudit_changes FOR TABLE item WITH (publish = 'update, delete')")
	exec(t, bconn, "SELECT pg_create_logical_replication_slot('cdcaudit', 'pgoutput')")
	exec(t, bconn, "INSERT INTO item VALUES (1, 'from-b')")
	bconn.Close(context.Background())
	aconn.Close(context.Background())
	b.Crash()
	a.Crash()
	b.Port = a.Port
	if err := b.StartAgain(); err != nil {
		t.Fatal(err)
	}

	var runErr error
	select {
	case runErr = <-done:
	case <-time.After(2 * time.Minute):
		cancel()
		<-done
		t.Fatalf("still running two minutes after the server was replaced (from-b stored: %v)", seen("from-b"))
	}
	t.Logf("Run: %v", runErr)
	if seen("from-b") {
		t.Fatal("streamed the other cluster's change into this store")
	}
	if runErr == nil || !strings.Contains(runErr.Error(), "system") || !replication.IsFatal(runErr) {
		t.Fatalf("Run: %v; want a refusal naming the other system", runErr)
	}
	if strings.Contains(runErr.Error(), "gap") {
		t.Fatalf("another server reported as a gap: %v", runErr)
	}
}

// A store used against another database of the same cluster: refused as a
// different database before the slot is even looked at — not reported as a
// gap, and with nothing created in that database.
func TestRunRefusesAnotherDatabase(t *testing.T) {
	t.Parallel()
	dsn, conn := newDB(t)
	other, oconn := newDB(t)
	exec(t, conn, "CREATE TABLE item (id int PRIMARY KEY)")
	dir := t.TempDir()
	runUntil(t, dsn, dir, "wrongdb", conn, currentLSN(t, conn))
	exec(t, conn, "INSERT INTO item VALUES (1)")
	runUntil(t, dsn, dir, "wrongdb", conn, currentLSN(t, conn))

	err := Run(context.Background(), Config{
		Replication: replication.Config{DSN: other, Slot: "wrongdb_other", Publication: "wrongdb"},
		DataDir:     dir,
		Logger:      slog.New(slog.NewTextHandler(io.Discard, nil)),
	})
	if err == nil || strings.Contains(err.Error(), "gap") || !strings.Contains(err.Error(), "database") {
		t.Fatalf("Run against another database: %v", err)
	}
	var n int
	if err := oconn.QueryRow(context.Background(), "SELECT count(*)::int FROM pg_publication").Scan(&n); err != nil {
		t.Fatal(err)
	}
	if n != 0 {
		t.Fatalf("%d publications created in the wrong database", n)
	}
}

// Coverage changes are recorded in the store: inserts of every table, and
// updates and deletes of each table with a usable replica identity.
func TestRunRecordsCoverage(t *testing.T) {
	t.Parallel()
	dsn, conn := newDB(t)
	exec(t, conn, "CREATE TABLE item (id int PRIMARY KEY); CREATE TABLE loose (v text)")
	dir := t.TempDir()
	runUntil(t, dsn, dir, "coverage", conn, currentLSN(t, conn))
	st, err := sink.OpenReadOnly(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	got := map[string]coverageRecord{}
	if err := st.LoadState(stateCoverage, func(k, v []byte) error {
		var r coverageRecord
		if err := json.Unmarshal(v, &r); err != nil {
			return err
		}
		got[string(k[:bytes.LastIndexByte(k, ' ')])] = r // the key without its LSN
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	all, ok1 := got["* insert, truncate"]
	item, ok2 := got["public.item update, delete"]
	if !ok1 || !ok2 || !all.Captured || !item.Captured || item.LSN == "" || item.Time.IsZero() {
		t.Fatalf("coverage records: %+v", got)
	}
	if _, ok := got["public.loose update, delete"]; ok {
		t.Fatalf("a table without replica identity recorded as covered: %+v", got)
	}
}

// A coverage change never overwrites an earlier one: the window in which a
// table's updates were not captured stays on record after they are again.
func TestCoverageKeepsHistory(t *testing.T) {
	dir := t.TempDir()
	st, err := sink.Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	w := sink.NewWriter(st, sink.WriterOptions{Queue: 16})
	r := &coverageRecords{log: slog.New(slog.NewTextHandler(io.Discard, nil))}
	if err := r.attach(w); err != nil {
		t.Fatal(err)
	}
	r.add(replication.Coverage{Table: "public.item", Ops: "update, delete", Captured: false, LSN: 0x100, Reason: "REPLICA IDENTITY NOTHING"})
	r.add(replication.Coverage{Table: "public.item", Ops: "update, delete", Captured: true, LSN: 0x200})
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	var keys []string
	if err := st.LoadState(stateCoverage, func(k, v []byte) error { keys = append(keys, string(k)); return nil }); err != nil {
		t.Fatal(err)
	}
	st.Close()
	want := []string{"public.item update, delete 0000000000000100", "public.item update, delete 0000000000000200"}
	if !slices.Equal(keys, want) {
		t.Errorf("coverage keys %q, want %q", keys, want)
	}
}
