package pgsink

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/cdcaudit/cdcaudit/audit"
	"github.com/cdcaudit/cdcaudit/internal/outboxtest"
	"github.com/cdcaudit/cdcaudit/internal/pgtest"
	"github.com/cdcaudit/cdcaudit/outbox"
	"github.com/cdcaudit/cdcaudit/sink"
)

// The audit database is this package's own cluster (pgtest.Main): the
// tests stop and crash it, so it is not shared with an ERP.
func TestMain(m *testing.M) { pgtest.Main(m, pgtest.Options{}) }

var base = time.Date(2026, 1, 30, 12, 0, 0, 0, time.UTC)

// appendTx stores transaction i: three events of various shapes, commit
// times spread over three months so that several partitions are used.
var appendTx = outboxtest.Tx{
	At: func(i uint64) time.Time { return base.Add(time.Duration(i) * 17 * time.Hour) },
	// A json column's value with a NUL escape (jsonb refuses it) and an
	// escaped backslash before u0000 (not one).
	Extra: audit.Row{{Name: "data", Value: []byte(`{"k":"a\u0000b","e":"\\u0000"}`)}},
}.Append

var stateOf = outboxtest.State

type metrics struct {
	mu     sync.Mutex
	failed int
}

func (m *metrics) SinkDelivered(string, int)       {}
func (m *metrics) SinkFailed(string)               { m.mu.Lock(); m.failed++; m.mu.Unlock() }
func (m *metrics) SinkLag(string, uint64, float64) {}
func (m *metrics) failures() int                   { m.mu.Lock(); defer m.mu.Unlock(); return m.failed }

var waitFor = outboxtest.WaitFor

// checkTable compares the audit table's rows of source with the store:
// exactly one row per record, its record column byte for byte the stored
// record, its columns agreeing.
func checkTable(t *testing.T, s *sink.Store, dsn, table, source string) {
	t.Helper()
	want := map[string][]byte{}
	if err := s.Records(t.Context(), nil, 0, func(k, v []byte) error {
		lsn, ord, _ := audit.SplitKey(k)
		want[audit.FormatID(lsn, ord)] = bytes.Clone(v)
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	conn, err := pgx.Connect(t.Context(), dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(context.Background())
	rows, err := conn.Query(t.Context(), `SELECT id, record, op, login, session_id, key->>'id', commit_time FROM `+ident(table)+` WHERE source = $1`, source)
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for rows.Next() {
		var id, rec, op string
		var login, sess, key *string
		var at time.Time
		if err := rows.Scan(&id, &rec, &op, &login, &sess, &key, &at); err != nil {
			t.Fatal(err)
		}
		n++
		w, ok := want[id]
		if !ok {
			t.Fatalf("row %s is not in the store", id)
		}
		if rec != string(w) {
			t.Fatalf("row %s: record %q, stored %q", id, rec, w)
		}
		if op != "genesis" && (login == nil || sess == nil || key == nil || op == "") {
			t.Fatalf("row %s: columns login %v session %v key %v op %q", id, login, sess, key, op)
		}
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	if n != len(want) {
		t.Fatalf("%d rows, the store has %d records", n, len(want))
	}
}

func run(t *testing.T, s *sink.Store, w *sink.Writer, pg *Sink, m *metrics) (stop func()) {
	r, err := outbox.New(s, pg, outbox.Options{Batch: 10, Poll: 10 * time.Millisecond, MinBackoff: 10 * time.Millisecond, MaxBackoff: 100 * time.Millisecond, Metrics: m})
	if err != nil {
		t.Fatal(err)
	}
	return outboxtest.Start(t, w, r.Run)
}

func caughtUp(t *testing.T, s *sink.Store) func() bool {
	return func() bool {
		c, _, err := outbox.LoadCursor(s, "postgres")
		if err != nil {
			t.Fatal(err)
		}
		k, _, _ := s.Head()
		lsn, ord, _ := audit.SplitKey(k)
		return c.After == audit.FormatID(lsn, ord)
	}
}

// Everything arrives exactly once, across an outage of the audit database
// (crashed, then back), a restart of the runner, and a batch delivered
// twice; the table verifies, and an edited row does not.
func TestDeliverAcrossOutageExactlyOnce(t *testing.T) {
	dsn, _ := pgtest.NewDB(t)
	s, w := outboxtest.Store(t, 40, appendTx)
	pg, err := New(dsn, "", "odoo")
	if err != nil {
		t.Fatal(err)
	}
	defer pg.Close()
	m := &metrics{}
	stop := run(t, s, w, pg, m)
	waitFor(t, caughtUp(t, s))

	// The audit database goes down (killed); events keep coming.
	c := pgtest.Shared(t)
	c.Crash()
	outboxtest.Fill(t, w, 41, 80, appendTx)
	f0 := m.failures()
	waitFor(t, func() bool { return m.failures() >= f0+3 })
	if caughtUp(t, s)() {
		t.Fatal("caught up while the audit database was down")
	}
	if err := c.StartAgain(); err != nil {
		t.Fatal(err)
	}
	waitFor(t, caughtUp(t, s))
	stop()

	// A batch delivered again (a lost acknowledgement) changes nothing.
	if err := pg.Deliver(t.Context(), records(t, s, 25)); err != nil {
		t.Fatal(err)
	}
	// Restarted, with more events.
	outboxtest.Fill(t, w, 81, 90, appendTx)
	stop = run(t, s, w, pg, m)
	waitFor(t, caughtUp(t, s))
	stop()

	checkTable(t, s, dsn, DefaultTable, "odoo")
	if res := verifyOne(t, dsn, DefaultTable); res.Err != nil || res.Source != "odoo" || res.Rows != 1+90*3 || res.Breaks != 0 {
		t.Fatalf("verify: %+v", res)
	}
	// Monthly partitions.
	conn, err := pgx.Connect(t.Context(), dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(context.Background())
	var parts int
	conn.QueryRow(t.Context(), `SELECT count(*) FROM pg_inherits WHERE inhparent = $1::regclass`, DefaultTable).Scan(&parts)
	if parts < 3 {
		t.Fatalf("%d partitions, want one per month (at least 3)", parts)
	}
	var version int
	conn.QueryRow(t.Context(), `SELECT max(version) FROM `+MigrationsTable+` WHERE table_name = $1`, DefaultTable).Scan(&version)
	if version != Version() {
		t.Fatalf("migrated to %d, want %d", version, Version())
	}

	// The jsonb columns: a NUL escape is U+FFFD there, the record keeps it.
	var k, e string
	if err := conn.QueryRow(t.Context(), `SELECT after->'data'->>'k', after->'data'->>'e' FROM `+DefaultTable+` WHERE op = 'insert' LIMIT 1`).Scan(&k, &e); err != nil {
		t.Fatal(err)
	}
	if k != "a\ufffdb" || e != `\u0000` {
		t.Fatalf("jsonb data: k %q e %q", k, e)
	}

	// Tampering: an edited value, then a removed row.
	if _, err := conn.Exec(t.Context(), `UPDATE `+DefaultTable+` SET record = replace(record, '120.00', '12.00') WHERE id = (SELECT min(id) FROM `+DefaultTable+` WHERE op = 'update')`); err != nil {
		t.Fatal(err)
	}
	if res := verifyOne(t, dsn, DefaultTable); !errors.Is(res.Err, ErrBroken) {
		t.Fatalf("an edited record verified: %+v", res)
	}
	conn.Exec(t.Context(), `DELETE FROM `+DefaultTable+` WHERE id = (SELECT min(id) FROM `+DefaultTable+` WHERE op = 'update')`)
	if res := verifyOne(t, dsn, DefaultTable); !errors.Is(res.Err, ErrBroken) {
		t.Fatalf("a removed row went unnoticed: %+v", res)
	}
}

// verifyOne verifies a table that holds one source.
func verifyOne(t *testing.T, dsn, table string) VerifyResult {
	t.Helper()
	res, err := Verify(t.Context(), dsn, table, "")
	if err != nil || len(res) != 1 {
		t.Fatalf("verify: %+v %v", res, err)
	}
	return res[0]
}

// records are the store's first n records (0: all) as the outbox hands
// them to a sink.
func records(t *testing.T, s *sink.Store, n int) []outbox.Record {
	t.Helper()
	var out []outbox.Record
	if err := s.Records(t.Context(), nil, n, func(k, v []byte) error {
		r := outbox.Record{JSON: bytes.Clone(v), Chain: sink.IsChainRecord(k)}
		copy(r.Key[:], k)
		lsn, ord, _ := audit.SplitKey(k)
		r.ID = audit.FormatID(lsn, ord)
		h, _ := audit.RecordHead(v)
		r.CommitTime = h.CommitTime
		if r.Chain {
			r.CommitTime = mustTime(t, v)
		}
		out = append(out, r)
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	return out
}

// A batch copied straight into the table the first time, and one that
// overlaps what the table holds (the first half delivered before): each
// record stored once, the new ones of the overlapping batch included.
func TestDeliverOverlappingBatchStoresTheNewRecords(t *testing.T) {
	dsn, _ := pgtest.NewDB(t)
	s, _ := outboxtest.Store(t, 10, appendTx)
	all := records(t, s, 0)
	pg, err := New(dsn, "", "odoo")
	if err != nil {
		t.Fatal(err)
	}
	defer pg.Close()
	half := len(all) / 2
	if err := pg.Deliver(t.Context(), all[:half]); err != nil {
		t.Fatal(err)
	}
	if err := pg.Deliver(t.Context(), all[half/2:]); err != nil {
		t.Fatal(err)
	}
	checkTable(t, s, dsn, DefaultTable, "odoo")
}

func mustTime(t *testing.T, rec []byte) time.Time {
	t.Helper()
	var v struct {
		CommitTime time.Time `json:"commit_time"`
	}
	if err := json.Unmarshal(rec, &v); err != nil {
		t.Fatal(err)
	}
	return v.CommitTime
}

// Migrating twice, or from two connections, is one migration.
func TestMigrateIsIdempotent(t *testing.T) {
	dsn, _ := pgtest.NewDB(t)
	var wg sync.WaitGroup
	errs := make(chan error, 4)
	for range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			conn, err := pgx.Connect(t.Context(), dsn)
			if err != nil {
				errs <- err
				return
			}
			defer conn.Close(context.Background())
			errs <- Migrate(t.Context(), conn, "audit_x", "erp")
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	conn, err := pgx.Connect(t.Context(), dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(context.Background())
	var n int
	conn.QueryRow(t.Context(), `SELECT count(*) FROM `+MigrationsTable+` WHERE table_name = 'audit_x'`).Scan(&n)
	if n != Version() {
		t.Fatalf("%d migrations recorded, want %d", n, Version())
	}
	if _, err := conn.Exec(t.Context(), `INSERT INTO `+MigrationsTable+` (table_name, version) VALUES ('audit_x', 99)`); err != nil {
		t.Fatal(err)
	}
	if err := Migrate(t.Context(), conn, "audit_x", "erp"); err == nil {
		t.Fatal("a table from a newer cdcaudit was accepted")
	}
}

// A record that cannot be made a row fails its batch, and nothing of the
// batch is stored.
func TestDeliverMalformedRecordFailsTheBatch(t *testing.T) {
	dsn, _ := pgtest.NewDB(t)
	s, _ := outboxtest.Store(t, 3, appendTx)
	batch := records(t, s, 0)
	bad := batch[len(batch)-1]
	bad.JSON = []byte(`{"id":"x"}`) // no op
	batch[len(batch)-1] = bad
	pg, err := New(dsn, "", "odoo")
	if err != nil {
		t.Fatal(err)
	}
	defer pg.Close()
	if err := pg.Deliver(t.Context(), batch); err == nil || !strings.Contains(err.Error(), "has no op") {
		t.Fatalf("Deliver = %v, want the record's error", err)
	}
	conn, err := pgx.Connect(t.Context(), dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(context.Background())
	var n int
	if err := conn.QueryRow(t.Context(), `SELECT count(*) FROM `+DefaultTable).Scan(&n); err != nil {
		t.Fatal(err)
	}
	if n != 0 {
		t.Fatalf("%d rows stored from a failed batch", n)
	}
}
