package pipeline

import (
	"context"
	"log/slog"
	"testing"
	"time"

	"github.com/cdcaudit/cdcaudit/internal/pgtest"
	"github.com/cdcaudit/cdcaudit/metrics"
	"github.com/cdcaudit/cdcaudit/outbox"
	"github.com/cdcaudit/cdcaudit/pgsink"
	"github.com/cdcaudit/cdcaudit/replication"
	"github.com/cdcaudit/cdcaudit/sink"
)

// With a 2-second retention and a PostgreSQL audit database (a cluster of
// its own) that is down, retention prunes nothing the sink has not
// acknowledged, and says so in the log and the metrics; once the audit
// database is back, everything is delivered, and only then pruned.
func TestRetentionHeldBySink(t *testing.T) {
	dsn, conn := newDB(t)
	exec(t, conn, "CREATE TABLE item (id int PRIMARY KEY, name text); ALTER TABLE item REPLICA IDENTITY FULL")
	dir := t.TempDir()
	runUntil(t, dsn, dir, "hold", conn, currentLSN(t, conn))
	exec(t, conn, "INSERT INTO item SELECT g, 'n' || g FROM generate_series(1, 2000) g")

	audit, err := pgtest.Start(pgtest.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer audit.Stop()
	if err := audit.CreateDatabase(context.Background(), "audit"); err != nil {
		t.Fatal(err)
	}
	auditDSN := audit.DSN("audit")
	audit.Crash() // down from the start

	store, err := sink.Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer store.Close()
	pg, err := pgsink.New(auditDSN, "", "erp")
	if err != nil {
		t.Fatal(err)
	}
	defer pg.Close()
	m := metrics.New()
	m.Sinks(pg.Name())
	logs := &lockedLog{}
	log := slog.New(slog.NewTextHandler(logs, nil))
	r, err := outbox.New(store, pg, outbox.Options{Metrics: m, Logger: log, MinBackoff: 10 * time.Millisecond, MaxBackoff: 200 * time.Millisecond, LagEvery: time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan error, 1)
	go func() {
		done <- Run(ctx, Config{
			Replication: replication.Config{DSN: dsn, Slot: "hold", Publication: "hold"},
			Store:       store, Metrics: m, Logger: log,
			Retention: sink.Retention{Default: 2 * time.Second, Hold: outbox.Hold(store, []string{pg.Name()})},
			Sources:   []Source{r.Run},
		})
	}()
	waitConfirmed(t, conn, "hold", currentLSN(t, conn), done)
	wait := func(cond func() bool) {
		t.Helper()
		for !cond() {
			select {
			case err := <-done:
				t.Fatalf("pipeline stopped: %v", err)
			case <-time.After(50 * time.Millisecond):
			}
		}
	}
	// Expired, held: nothing pruned, the log and the metric say why.
	wait(func() bool {
		return metricSum(t, m, "cdcaudit_retention_held_seconds") > 0 && logs.has("retention: held back by a sink")
	})
	if n := metricSum(t, m, "cdcaudit_retention_pruned_events_total"); n != 0 {
		t.Fatalf("%v records pruned that the sink had not acknowledged", n)
	}
	if metricSum(t, m, "cdcaudit_sink_errors_total") == 0 || metricSum(t, m, "cdcaudit_sink_lag_records") < 2000 {
		t.Fatalf("errors %v, lag %v records", metricSum(t, m, "cdcaudit_sink_errors_total"), metricSum(t, m, "cdcaudit_sink_lag_records"))
	}

	// Back: delivered, then pruned.
	if err := audit.StartAgain(); err != nil {
		t.Fatal(err)
	}
	wait(func() bool { return metricSum(t, m, "cdcaudit_retention_pruned_events_total") >= 2000 })
	wait(func() bool { return metricSum(t, m, "cdcaudit_retention_held_seconds") == 0 })
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	delivered := metricSum(t, m, "cdcaudit_sink_delivered_records_total")
	all, err := pgsink.Verify(context.Background(), auditDSN, "", "")
	if err != nil || len(all) != 1 || all[0].Err != nil {
		t.Fatalf("verify: %+v %v", all, err)
	}
	if res := all[0]; res.Rows < 2001 || float64(res.Rows) != delivered {
		t.Fatalf("audit table: %d rows, %v delivered", res.Rows, delivered)
	}
}
