package pgsink

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/cdcaudit/cdcaudit/audit"
	"github.com/cdcaudit/cdcaudit/internal/outboxtest"
	"github.com/cdcaudit/cdcaudit/internal/pgtest"
	"github.com/cdcaudit/cdcaudit/outbox"
	"github.com/cdcaudit/cdcaudit/sink"
)

// Two instances deliver into one table: their ids collide (the same
// positions in two databases' WAL), both are kept, each source's rows are
// exactly its store's records, and each chain verifies on its own.
func TestTwoSourcesShareATable(t *testing.T) {
	dsn, _ := pgtest.NewDB(t)
	stores := map[string]*sink.Store{}
	for i, source := range []string{"erp_a", "erp_b"} {
		tx := outboxtest.Tx{Source: source, At: func(n uint64) time.Time {
			return base.Add(time.Duration(n)*17*time.Hour + time.Duration(i)*time.Minute)
		}}
		s, w := outboxtest.Store(t, 30, tx.Append)
		pg, err := New(dsn, "shared", source)
		if err != nil {
			t.Fatal(err)
		}
		defer pg.Close()
		stop := run(t, s, w, pg, &metrics{})
		waitFor(t, caughtUp(t, s))
		stop()
		stores[source] = s
	}
	for source, s := range stores {
		checkTable(t, s, dsn, "shared", source)
	}
	res, err := Verify(t.Context(), dsn, "shared", "")
	if err != nil || len(res) != 2 {
		t.Fatalf("verify: %+v %v", res, err)
	}
	for i, source := range []string{"erp_a", "erp_b"} {
		if r := res[i]; r.Source != source || r.Err != nil || r.Rows != 1+30*3 || r.First != "0000000000000000-000000" {
			t.Fatalf("verify %s: %+v", source, r)
		}
	}
	if res, err := Verify(t.Context(), dsn, "shared", "erp_b"); err != nil || len(res) != 1 || res[0].Source != "erp_b" || res[0].Rows != 91 {
		t.Fatalf("verify --source erp_b: %+v %v", res, err)
	}
	if res, err := Verify(t.Context(), dsn, "shared", "erp_c"); err != nil || len(res) != 1 || res[0].Rows != 0 || res[0].Err != nil {
		t.Fatalf("verify an absent source: %+v %v", res, err)
	}

	// A row moved to the other source breaks both chains.
	conn, err := pgx.Connect(t.Context(), dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(context.Background())
	if _, err := conn.Exec(t.Context(), `UPDATE shared SET source = 'erp_a' WHERE source = 'erp_b' AND id = '0000000000000A00-000002'`); err != nil {
		t.Fatal(err)
	}
	res, err = Verify(t.Context(), dsn, "shared", "")
	if err != nil || len(res) != 2 {
		t.Fatalf("verify: %+v %v", res, err)
	}
	if !errors.Is(res[0].Err, ErrBroken) || !strings.Contains(res[0].Err.Error(), "its source column says erp_a, its record erp_b") {
		t.Errorf("erp_a with erp_b's row: %v", res[0].Err)
	}
	if !errors.Is(res[1].Err, ErrBroken) {
		t.Errorf("erp_b without one of its rows: %+v", res[1])
	}
}

// A table of version 1 (one instance, no source column) holding rows is
// migrated: every row, chain records included, gets its database as its
// source; the instance goes on delivering into it without a duplicate,
// and the chain verifies. One holding two databases' rows is refused.
func TestMigrateFromVersion1(t *testing.T) {
	dsn, _ := pgtest.NewDB(t)
	s, _ := outboxtest.Store(t, 12, appendTx) // database "odoo", no source member
	conn, err := pgx.Connect(t.Context(), dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(context.Background())
	for _, table := range []string{"old", "old_mixed"} {
		writeVersion1(t, conn, table, s, 20)
	}
	if _, err := conn.Exec(t.Context(), `UPDATE old_mixed SET database = 'erp2' WHERE id = '0000000000000500-000001'`); err != nil {
		t.Fatal(err)
	}

	if _, err := Verify(t.Context(), dsn, "old", ""); err == nil || !strings.Contains(err.Error(), "table old is at schema version 1, this cdcaudit reads 2: a daemon of this version migrates it") {
		t.Fatalf("verify of a version-1 table: %v", err)
	}
	err = Migrate(t.Context(), conn, "old_mixed", "odoo")
	if err == nil || !strings.Contains(err.Error(), "migration 2 of old_mixed: its rows hold the events of several databases (erp2, odoo)") {
		t.Fatalf("a table of two databases: %v", err)
	}
	if v := version(t, conn, "old_mixed"); v != 1 {
		t.Fatalf("refused, yet at version %d", v)
	}

	if err := Migrate(t.Context(), conn, "old", "some_other_name"); err != nil {
		t.Fatal(err)
	}
	var n, odoo int
	conn.QueryRow(t.Context(), `SELECT count(*), count(*) FILTER (WHERE source = 'odoo') FROM old`).Scan(&n, &odoo)
	if n != 20 || odoo != 20 {
		t.Fatalf("%d rows, %d of source odoo", n, odoo)
	}
	var pkey string
	conn.QueryRow(t.Context(), `SELECT pg_get_constraintdef(oid) FROM pg_constraint WHERE conrelid = 'old'::regclass AND contype = 'p'`).Scan(&pkey)
	if pkey != "PRIMARY KEY (source, id, commit_time)" {
		t.Fatalf("primary key %s", pkey)
	}
	for _, idx := range []string{"old_record_history", "old_user_id", "old_session"} {
		var def string
		conn.QueryRow(t.Context(), `SELECT pg_get_indexdef($1::regclass)`, idx).Scan(&def)
		if !strings.Contains(def, "(source, ") {
			t.Errorf("index %s: %s", idx, def)
		}
	}

	// The instance delivers everything again (its cursor was lost, say):
	// nothing twice, the rest added.
	pg, err := New(dsn, "old", "odoo")
	if err != nil {
		t.Fatal(err)
	}
	defer pg.Close()
	if err := pg.Deliver(t.Context(), records(t, s, 0)); err != nil {
		t.Fatal(err)
	}
	checkTable(t, s, dsn, "old", "odoo")
	if res := verifyOne(t, dsn, "old"); res.Err != nil || res.Rows != 1+12*3 {
		t.Fatalf("verify: %+v", res)
	}
}

// writeVersion1 makes table as version 1 of the schema made it, holding
// the store's first n records as a version-1 sink wrote them.
func writeVersion1(t *testing.T, conn *pgx.Conn, table string, s *sink.Store, n int) {
	t.Helper()
	all := migrations
	migrations = all[:1]
	err := Migrate(t.Context(), conn, table, "")
	migrations = all
	if err != nil {
		t.Fatal(err)
	}
	old := &Sink{table: table, parts: map[string]bool{}}
	var rows [][]any
	for _, r := range records(t, s, n) {
		v, err := row("", r)
		if err != nil {
			t.Fatal(err)
		}
		rows = append(rows, v[1:]) // no source column
		tm := r.CommitTime.UTC()
		if err := old.partition(t.Context(), conn, time.Date(tm.Year(), tm.Month(), 1, 0, 0, 0, 0, time.UTC)); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := conn.CopyFrom(t.Context(), pgx.Identifier{table}, columns[1:], pgx.CopyFromRows(rows)); err != nil {
		t.Fatal(err)
	}
}

func version(t *testing.T, conn *pgx.Conn, table string) int {
	t.Helper()
	var v int
	if err := conn.QueryRow(t.Context(), `SELECT max(version) FROM `+MigrationsTable+` WHERE table_name = $1`, table).Scan(&v); err != nil {
		t.Fatal(err)
	}
	return v
}

// recordSource reads the source member of every event the encoding writes,
// whatever the names around it hold, and never takes a value of a row for
// it; it never fails on junk (the table's content is untrusted).
func FuzzRecordSource(f *testing.F) {
	f.Add("erp_a", "odoo", "public", `,"source":"x"`, []byte(`{"id":"1","source":1}`))
	f.Add("", `d","source":"y`, "s", "source", []byte(`,"schema":,"source":`))
	f.Fuzz(func(t *testing.T, source, database, schema, value string, junk []byte) {
		recordSource(junk)
		e := &audit.Event{CommitLSN: 0x100, Ordinal: 1, CommitTime: base, Database: database, Source: source, Schema: schema, Table: "t",
			Op: audit.OpInsert, After: audit.Row{{Name: "source", Value: audit.AppendString(nil, value)}}}
		rec, _ := audit.Seal(nil, e.AppendBody(nil), audit.Genesis)
		r, err := audit.ParseRecord(rec)
		if err != nil {
			t.Fatal(err)
		}
		got, ok := recordSource(rec)
		if ok != (source != "") || got != r.Source {
			t.Fatalf("%s: recordSource %q %v, the record's %q", rec, got, ok, r.Source)
		}
	})
}

// Two sinks of one table (two sources of one daemon, or two instances)
// reaching a new month at the same moment both create its partition: one
// waits for the other, neither fails (a failure would be a delivery error
// counted at every month's start).
func TestConcurrentPartitionCreation(t *testing.T) {
	dsn, _ := pgtest.NewDB(t)
	const months = 24
	sinks := map[string]*Sink{}
	recs := map[string][]outbox.Record{}
	for _, source := range []string{"erp_a", "erp_b"} {
		tx := outboxtest.Tx{Source: source, At: func(n uint64) time.Time { return base.AddDate(0, int(n), 0) }}
		s, _ := outboxtest.Store(t, months, tx.Append)
		pg, err := New(dsn, "racing", source)
		if err != nil {
			t.Fatal(err)
		}
		defer pg.Close()
		sinks[source], recs[source] = pg, records(t, s, 0)
	}
	// The table and its migrations first: that is not what races here.
	if err := sinks["erp_a"].Deliver(t.Context(), recs["erp_a"][:1]); err != nil {
		t.Fatal(err)
	}
	errs := make(chan error, 2)
	for source, pg := range sinks {
		go func() {
			for _, r := range recs[source] {
				if err := pg.Deliver(t.Context(), []outbox.Record{r}); err != nil {
					errs <- fmt.Errorf("%s: %w", source, err)
					return
				}
			}
			errs <- nil
		}()
	}
	for range sinks {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
	if res, err := Verify(t.Context(), dsn, "racing", ""); err != nil || len(res) != 2 || res[0].Err != nil || res[1].Err != nil {
		t.Fatalf("verify: %+v %v", res, err)
	}
}
