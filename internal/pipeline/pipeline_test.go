package pipeline

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/cdcaudit/cdcaudit/audit"
	"github.com/cdcaudit/cdcaudit/internal/pgtest"
	"github.com/cdcaudit/cdcaudit/replication"
	"github.com/cdcaudit/cdcaudit/sink"
)

func TestMain(m *testing.M) {
	if os.Getenv(childEnv) != "" {
		runChild() // TestImagesAcrossSIGKILL's pipeline process
	}
	if os.Getenv(alertsChildEnv) != "" {
		runAlertsChild()
	}
	pgtest.Main(m, pgtest.Options{Settings: map[string]string{"wal_sender_timeout": "'2s'"}})
}

func exec(t testing.TB, conn *pgx.Conn, sql string, args ...any) {
	t.Helper()
	if _, err := conn.Exec(context.Background(), sql, args...); err != nil {
		t.Fatalf("%s: %v", sql, err)
	}
}

// currentLSN is the server's WAL write position.
func currentLSN(t testing.TB, conn *pgx.Conn) uint64 { return queryLSN(t, conn, "pg_current_wal_lsn") }

// currentInsertLSN is the WAL insert position: inside a transaction, an LSN
// after its last change and before its commit.
func currentInsertLSN(t testing.TB, conn *pgx.Conn) uint64 {
	return queryLSN(t, conn, "pg_current_wal_insert_lsn")
}

func queryLSN(t testing.TB, conn *pgx.Conn, fn string) uint64 {
	t.Helper()
	var s string
	if err := conn.QueryRow(context.Background(), "SELECT "+fn+"()::text").Scan(&s); err != nil {
		t.Fatal(err)
	}
	lsn, err := audit.ParseLSN(s)
	if err != nil {
		t.Fatal(err)
	}
	return lsn
}

// newDB makes a fresh database for the test and a connection to it.
func newDB(t testing.TB) (string, *pgx.Conn) {
	t.Helper()
	dsn, _ := pgtest.NewDB(t)
	return dsn, connect(t, dsn)
}

// runUntil runs the pipeline until the slot is confirmed at or past lsn,
// then stops it and returns how long that took.
func runUntil(t testing.TB, dsn, dataDir, slot string, conn *pgx.Conn, lsn uint64) time.Duration {
	t.Helper()
	return runUntilLogged(t, dsn, dataDir, slot, conn, lsn, slog.New(slog.NewTextHandler(io.Discard, nil)))
}

func runUntilLogged(t testing.TB, dsn, dataDir, slot string, conn *pgx.Conn, lsn uint64, log *slog.Logger) time.Duration {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	start := time.Now()
	go func() {
		done <- Run(ctx, Config{
			Replication: replication.Config{DSN: dsn, Slot: slot, Publication: slot},
			DataDir:     dataDir,
			Logger:      log,
		})
	}()
	waitConfirmed(t, conn, slot, lsn, done)
	took := time.Since(start)
	cancel()
	if err := <-done; err != nil {
		t.Fatalf("pipeline: %v", err)
	}
	return took
}

// A store opened by the caller: Run writes to it and leaves it open, and a
// reader in the same process follows the trail through the store's query
// API while Run holds it: every event once, in commit order, readable once
// the checkpoint covers it.
func TestRunWritesToTheStoreItIsGiven(t *testing.T) {
	dsn, conn := newDB(t)
	exec(t, conn, "CREATE TABLE item (id int PRIMARY KEY, name text); ALTER TABLE item REPLICA IDENTITY FULL")
	dir := t.TempDir()
	st, err := sink.Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	if err := Run(context.Background(), Config{Store: st, DataDir: t.TempDir(),
		Replication: replication.Config{DSN: dsn, Slot: "given", Publication: "given"}}); err == nil || !strings.Contains(err.Error(), dir) {
		t.Fatalf("Run with a store of another directory: %v", err)
	}

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan error, 1)
	go func() {
		done <- Run(ctx, Config{Store: st, Logger: slog.New(slog.NewTextHandler(io.Discard, nil)),
			Replication: replication.Config{DSN: dsn, Slot: "given", Publication: "given"}})
	}()
	waitConfirmed(t, conn, "given", currentLSN(t, conn), done)
	exec(t, conn, "INSERT INTO item SELECT g, 'n' || g FROM generate_series(1, 3000) g")
	exec(t, conn, "UPDATE item SET name = 'x' WHERE id <= 10")
	exec(t, conn, "DELETE FROM item WHERE id = 1")
	end := currentLSN(t, conn)

	// Read page by page while Run writes; a page cut short by the end of
	// what is stored is read again with the next look.
	var got []*audit.Record
	cursor := ""
	for deadline := time.Now().Add(time.Minute); len(got) < 3011; {
		durable := st.Checkpoint() // before the look: all it covers is readable
		var page []*audit.Record
		next, err := st.Query(ctx, sink.Query{Limit: 500, Cursor: cursor}, func(_, rec []byte) error {
			r, err := audit.ParseRecord(rec)
			page = append(page, r)
			return err
		})
		if err != nil {
			t.Fatal(err)
		}
		if next != "" {
			got, cursor = append(got, page...), next
			continue
		}
		if len(got)+len(page) == 3011 {
			got = append(got, page...)
			break
		}
		if durable >= end {
			t.Fatalf("the store's checkpoint passed the workload with %d events readable", len(got)+len(page))
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d events readable after a minute", len(got)+len(page))
		}
		time.Sleep(10 * time.Millisecond)
	}
	for i := 1; i < len(got); i++ {
		if got[i-1].ID >= got[i].ID {
			t.Fatalf("out of order at %d: %s then %s", i, got[i-1].ID, got[i].ID)
		}
	}
	if got[0].Op != "insert" || got[3000].Op != "update" || got[3010].Op != "delete" {
		t.Fatalf("unexpected ops %s %s %s", got[0].Op, got[3000].Op, got[3010].Op)
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatalf("pipeline: %v", err)
	}
	// Still open: the caller closes it.
	if _, _, n := st.Head(); n != 3011 {
		t.Fatalf("store holds %d events", n)
	}
	if _, err := st.Get(got[3010].ID); err != nil {
		t.Fatalf("after Run: %v", err)
	}
}

// BenchmarkDrain measures the whole in-process path (stream, decode, encode,
// seal, store, confirm) draining a backlog of ERP-line updates and inserts.
// One iteration drains rows inserts + rows updates; use -benchtime=1x with
// -cpuprofile to see where the time goes.
func BenchmarkDrain(b *testing.B) {
	const rows = 100_000
	dsn, conn := newDB(b)
	exec(b, conn, `CREATE TABLE line (id bigserial PRIMARY KEY, order_id int, product_id int, name text, qty numeric(16,3),
		price numeric(16,2), discount numeric(5,2), subtotal numeric(16,2), state varchar(16), seq int, down bool,
		create_uid int, create_date timestamp, write_uid int, write_date timestamp)`)
	exec(b, conn, "ALTER TABLE line REPLICA IDENTITY FULL")
	for i := 0; b.Loop(); i++ {
		b.StopTimer()
		slot := fmt.Sprintf("drain%d", i)
		dir := b.TempDir()
		runUntil(b, dsn, dir, slot, conn, currentLSN(b, conn))
		exec(b, conn, "TRUNCATE line RESTART IDENTITY")
		for lo := 1; lo <= rows; lo += 1000 {
			exec(b, conn, `INSERT INTO line (order_id, product_id, name, qty, price, discount, subtotal, state, seq, down, create_uid, create_date, write_uid, write_date)
				SELECT g/10, g%997, 'Product ' || g, g%50 + 0.5, 12.34 + g%100, 0, (g%50 + 0.5) * 12.34, 'draft', g%10, false, 2, now(), 2, now()
				FROM generate_series($1::int, $1::int + 999) g`, lo)
		}
		var end uint64
		for lo := 1; lo <= rows; lo += 1000 {
			// An LSN taken inside the transaction, after its change: once the
			// slot is confirmed past it, this transaction is stored (no wait
			// for an idle advance).
			exec(b, conn, "BEGIN")
			exec(b, conn, "UPDATE line SET state='sale', discount=5, write_uid=6, write_date=now() WHERE id BETWEEN $1 AND $1 + 999", lo)
			end = currentInsertLSN(b, conn)
			exec(b, conn, "COMMIT")
		}
		b.StartTimer()
		took := runUntil(b, dsn, dir, slot, conn, end)
		b.ReportMetric(float64(2*rows)/took.Seconds(), "changes/s")
	}
}

// A sidecar may start before its database: Run waits for it instead of
// failing, then streams.
func TestWaitsForTheDatabaseAtStart(t *testing.T) {
	dsn, _ := pgtest.NewDB(t)
	c := pgtest.Shared(t)
	c.Crash()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan error, 1)
	go func() {
		done <- Run(ctx, Config{
			Replication: replication.Config{DSN: dsn, Slot: "waiter", Publication: "waiter"},
			DataDir:     t.TempDir(),
			Logger:      slog.New(slog.NewTextHandler(io.Discard, nil)),
		})
	}()
	select {
	case err := <-done:
		t.Fatalf("Run gave up while the database was down: %v", err)
	case <-time.After(2 * time.Second):
	}
	if err := c.StartAgain(); err != nil {
		t.Fatal(err)
	}
	conn, err := pgx.Connect(context.Background(), dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(context.Background())
	deadline := time.Now().Add(90 * time.Second)
	for {
		var active bool
		err := conn.QueryRow(context.Background(), "SELECT active FROM pg_replication_slots WHERE slot_name = 'waiter'").Scan(&active)
		if err == nil && active {
			break
		}
		select {
		case err := <-done:
			t.Fatalf("Run stopped: %v", err)
		default:
		}
		if time.Now().After(deadline) {
			t.Fatal("Run did not start streaming after the database came up")
		}
		time.Sleep(100 * time.Millisecond)
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatalf("Run: %v", err)
	}
}

// The chain head is logged (at stop, and every anchorEvery while events
// flow), so shipped logs anchor the chain outside the store.
func TestChainHeadIsLogged(t *testing.T) {
	dsn, conn := newDB(t)
	exec(t, conn, "CREATE TABLE item (id int PRIMARY KEY)")
	dir := t.TempDir()
	runUntil(t, dsn, dir, "anchor", conn, currentLSN(t, conn))
	exec(t, conn, "INSERT INTO item SELECT generate_series(1, 5)")
	var buf bytes.Buffer
	runUntilLogged(t, dsn, dir, "anchor", conn, currentLSN(t, conn), slog.New(slog.NewTextHandler(&buf, nil)))
	st, err := sink.OpenReadOnly(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	_, head, n := st.Head()
	for _, want := range []string{"msg=\"chain head\"", "msg=stopped", "head_hash=" + head.String(), fmt.Sprintf("events=%d", n)} {
		if !strings.Contains(buf.String(), want) {
			t.Errorf("log lacks %s:\n%s", want, buf.String())
		}
	}
}
