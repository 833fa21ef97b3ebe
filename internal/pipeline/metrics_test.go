package pipeline

import (
	"context"
	"log/slog"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/cdcaudit/cdcaudit/metrics"
	"github.com/cdcaudit/cdcaudit/replication"
)

// runWithMetrics runs the pipeline with a metrics registry until the test
// ends, once the slot streams.
func runWithMetrics(t *testing.T, dsn, dir, slot string, conn *pgx.Conn, opts ...func(*Config)) (*metrics.Metrics, <-chan error) {
	t.Helper()
	m := metrics.New()
	var logs lockedLog
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("pipeline log:\n%s", logs.String())
		}
	})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	cfg := Config{
		// The Observer as `cdcaudit run` wires it.
		Replication: replication.Config{DSN: dsn, Slot: slot, Publication: slot, Observer: m},
		DataDir:     dir,
		Logger:      slog.New(slog.NewTextHandler(&logs, nil)),
		Metrics:     m,
	}
	for _, o := range opts {
		o(&cfg)
	}
	go func() { done <- Run(ctx, cfg) }()
	t.Cleanup(func() { cancel(); <-done })
	walsender(t, conn, slot, 0, done)
	return m, done
}

// walsender waits until a walsender other than not streams from the slot
// and returns its pid.
func walsender(t *testing.T, conn *pgx.Conn, slot string, not int32, done <-chan error) int32 {
	t.Helper()
	deadline := time.Now().Add(2 * time.Minute)
	for time.Now().Before(deadline) {
		select {
		case err := <-done:
			t.Fatalf("pipeline stopped: %v", err)
		case <-time.After(20 * time.Millisecond):
		}
		var pid int32
		err := conn.QueryRow(context.Background(), `SELECT r.pid FROM pg_replication_slots s
			JOIN pg_stat_replication r ON r.pid = s.active_pid
			WHERE s.slot_name = $1 AND r.state = 'streaming'`, slot).Scan(&pid)
		if err == nil && pid != not {
			return pid
		}
	}
	t.Fatal("the slot never streamed")
	return 0
}

// metricSum is the sum of all series of a metric family (0 when absent).
func metricSum(t *testing.T, m *metrics.Metrics, name string) float64 {
	t.Helper()
	mfs, err := m.Registry().Gather()
	if err != nil {
		t.Fatal(err)
	}
	sum := 0.0
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, s := range mf.GetMetric() {
			switch {
			case s.Counter != nil:
				sum += s.Counter.GetValue()
			case s.Gauge != nil:
				sum += s.Gauge.GetValue()
			}
		}
	}
	return sum
}

// watchTx polls the metrics until the checkpoint reaches end and calls
// inFlight for every sample taken while a transaction of 200k rows or more
// (60 MB of records and more) was surely being stored in chunks and not yet
// committed: 1 to 20 MB of its records written. It fails when no such
// sample was seen: then the test proved nothing.
func watchTx(t *testing.T, m *metrics.Metrics, end uint64, done <-chan error, inFlight func()) {
	t.Helper()
	written := metricSum(t, m, "cdcaudit_store_written_bytes_total")
	seen := 0
	watchStored(t, m, end, done, func() {
		if w := metricSum(t, m, "cdcaudit_store_written_bytes_total") - written; w >= 1<<20 && w <= 20<<20 &&
			uint64(metricSum(t, m, "cdcaudit_checkpoint_lsn")) < end {
			seen++
			inFlight()
		}
	})
	if seen == 0 {
		t.Fatal("never saw the transaction in flight (stored in part, not committed)")
	}
}

// watchStored waits until the checkpoint reaches end (5 minutes at most),
// calling each (when not nil) every 5 ms meanwhile.
func watchStored(t *testing.T, m *metrics.Metrics, end uint64, done <-chan error, each func()) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Minute)
	for uint64(metricSum(t, m, "cdcaudit_checkpoint_lsn")) < end {
		if time.Now().After(deadline) {
			t.Fatal("the transaction was not stored in 5 minutes")
		}
		select {
		case err := <-done:
			t.Fatalf("pipeline stopped: %v", err)
		case <-time.After(5 * time.Millisecond):
		}
		if each != nil {
			each()
		}
	}
}

// While a big transaction is received and stored in chunks, the lag
// metrics count it (they read 0 for seconds before: the idle advance had
// confirmed past its changes while the server was still writing it).
func TestLagCountsTransactionInFlight(t *testing.T) {
	dsn, conn := newDB(t)
	exec(t, conn, "CREATE TABLE big (id int PRIMARY KEY, pad text)")
	m, done := runWithMetrics(t, dsn, t.TempDir(), "lag", conn)
	exec(t, conn, "INSERT INTO big VALUES (0, 'first')")
	exec(t, conn, "INSERT INTO big SELECT g, 'row ' || g FROM generate_series(1, 300000) g")
	end := currentLSN(t, conn)
	samples, zeroBytes, zeroSeconds := 0, 0, 0
	watchTx(t, m, end, done, func() {
		lagBytes := metricSum(t, m, "cdcaudit_replication_lag_bytes")
		lagSeconds := metricSum(t, m, "cdcaudit_replication_lag_seconds")
		// The commit may land between the reads (then both read 0
		// rightly): count only samples the transaction was in flight for.
		if uint64(metricSum(t, m, "cdcaudit_checkpoint_lsn")) >= end {
			return
		}
		samples++
		if lagBytes <= 0 {
			zeroBytes++
		}
		if lagSeconds <= 0 {
			zeroSeconds++
		}
	})
	if zeroBytes > 0 || zeroSeconds > 0 {
		t.Fatalf("of %d samples taken while the 300k-row transaction was in flight, replication_lag_bytes read 0 in %d and replication_lag_seconds in %d",
			samples, zeroBytes, zeroSeconds)
	}
	waitMetric(t, m, "cdcaudit_replication_lag_bytes", 0, done)
}

// waitMetric waits until a metric reads want.
func waitMetric(t *testing.T, m *metrics.Metrics, name string, want float64, done <-chan error) {
	t.Helper()
	deadline := time.Now().Add(time.Minute)
	for metricSum(t, m, name) != want {
		if time.Now().After(deadline) {
			t.Fatalf("%s = %v, want %v", name, metricSum(t, m, name), want)
		}
		select {
		case err := <-done:
			t.Fatalf("pipeline stopped: %v", err)
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// A transaction replayed after a reconnect (its first chunks already
// stored) counts its events once: events_total counts what the store holds.
func TestEventsCountedOnceAcrossReplay(t *testing.T) {
	const rows = 200_000
	dsn, conn := newDB(t)
	exec(t, conn, "CREATE TABLE big (id int PRIMARY KEY, pad text)")
	m, done := runWithMetrics(t, dsn, t.TempDir(), "replay", conn)
	pid := walsender(t, conn, "replay", 0, done)
	exec(t, conn, "INSERT INTO big VALUES (0, 'first')")
	exec(t, conn, "INSERT INTO big SELECT g, 'row ' || g FROM generate_series(1, $1::int) g", rows)
	end := currentLSN(t, conn)
	killed := false
	watchTx(t, m, end, done, func() {
		if !killed {
			exec(t, conn, "SELECT pg_terminate_backend($1)", pid)
			killed = true
		}
	})
	if n := metricSum(t, m, "cdcaudit_events_total"); n != rows+1 {
		t.Errorf("events_total = %v after a replay, want the %d distinct events stored", n, rows+1)
	}
	if n := metricSum(t, m, "cdcaudit_transactions_total"); n != 2 {
		t.Errorf("transactions_total = %v, want 2", n)
	}
	// The replay did happen (else the test proves nothing).
	if n := metricSum(t, m, "cdcaudit_duplicate_events_total"); n == 0 {
		t.Error("duplicate_events_total = 0: nothing was replayed")
	}
	if n := metricSum(t, m, "cdcaudit_reconnects_total"); n < 1 {
		t.Errorf("reconnects_total = %v: the walsender was not terminated mid-transaction", n)
	}
}

// A flagged transaction replayed after a reconnect (its first chunks
// already stored) counts its flags once, like its events:
// flagged_events_total{flag="orm_bypass"} is what the store holds.
func TestFlaggedCountedOnceAcrossReplay(t *testing.T) {
	const rows = 200_000
	dsn, conn := newDB(t)
	exec(t, conn, "CREATE TABLE big (id int PRIMARY KEY, pad text, write_uid int, write_date timestamp)")
	m, done := runWithMetrics(t, dsn, t.TempDir(), "flags", conn, func(c *Config) { c.Profile = "odoo" })
	flagged := func(flag string) float64 {
		mfs, err := m.Registry().Gather()
		if err != nil {
			t.Fatal(err)
		}
		for _, mf := range mfs {
			if mf.GetName() == "cdcaudit_flagged_events_total" {
				for _, s := range mf.GetMetric() {
					if s.GetLabel()[0].GetValue() == flag {
						return s.GetCounter().GetValue()
					}
				}
			}
		}
		return -1
	}
	if n := flagged("orm_bypass"); n != 0 {
		t.Fatalf("orm_bypass at start = %v, want the series at 0", n)
	}
	// Through the application: stamped, not flagged.
	exec(t, conn, "INSERT INTO big SELECT g, 'row ' || g, 2, now() AT TIME ZONE 'UTC' FROM generate_series(1, $1::int) g", rows)
	exec(t, conn, "UPDATE big SET pad = 'orm', write_uid = 3, write_date = now() AT TIME ZONE 'UTC' WHERE id <= 10")
	watchStored(t, m, currentLSN(t, conn), done, nil)
	if n := flagged("orm_bypass"); n != 0 {
		t.Fatalf("orm_bypass = %v after the application's own writes", n)
	}
	// Raw SQL that leaves write_date alone, the walsender killed while it
	// is stored in part.
	pid := walsender(t, conn, "flags", 0, done)
	exec(t, conn, "UPDATE big SET pad = pad || ' raw'")
	end := currentLSN(t, conn)
	killed := false
	watchTx(t, m, end, done, func() {
		if !killed {
			exec(t, conn, "SELECT pg_terminate_backend($1)", pid)
			killed = true
		}
	})
	if n := flagged("orm_bypass"); n != rows {
		t.Errorf("orm_bypass = %v after a replay, want the %d flagged events stored", n, rows)
	}
	if n := metricSum(t, m, "cdcaudit_duplicate_events_total"); n == 0 {
		t.Error("duplicate_events_total = 0: nothing was replayed")
	}
	exec(t, conn, "TRUNCATE big RESTART IDENTITY")
	watchStored(t, m, currentLSN(t, conn), done, nil)
	if a, b := flagged("truncate_restart_identity"), flagged("truncate_cascade"); a != 1 || b != 0 {
		t.Errorf("truncate_restart_identity = %v, truncate_cascade = %v; want 1 and 0", a, b)
	}
}
