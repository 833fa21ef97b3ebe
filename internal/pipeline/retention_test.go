package pipeline

import (
	"context"
	"io"
	"log/slog"
	"testing"
	"time"

	"github.com/cdcaudit/cdcaudit/metrics"
	"github.com/cdcaudit/cdcaudit/replication"
	"github.com/cdcaudit/cdcaudit/sink"
)

// The daemon prunes while it captures: with a window of two seconds every
// event goes but the chain head, each batch under a cut, and the store
// still verifies; capture goes on after the cuts.
func TestRetentionWhileStreaming(t *testing.T) {
	dsn, conn := newDB(t)
	exec(t, conn, "CREATE TABLE item (id int PRIMARY KEY, name text); ALTER TABLE item REPLICA IDENTITY FULL")
	dir := t.TempDir()
	runUntil(t, dsn, dir, "ret", conn, currentLSN(t, conn), nil)
	exec(t, conn, "INSERT INTO item SELECT g, 'n' || g FROM generate_series(1, 3000) g")
	exec(t, conn, "UPDATE item SET name = 'x' WHERE id <= 1000")

	m := metrics.New()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		done <- Run(ctx, Config{
			Replication: replication.Config{DSN: dsn, Slot: "ret", Publication: "ret"},
			DataDir:     dir, Metrics: m, Logger: slog.New(slog.NewTextHandler(io.Discard, nil)),
			Retention: sink.Retention{Default: 2 * time.Second},
		})
	}()
	waitConfirmed(t, conn, "ret", currentLSN(t, conn), done)
	for metricSum(t, m, "cdcaudit_retention_pruned_events_total") < 3999 {
		select {
		case err := <-done:
			t.Fatalf("pipeline stopped: %v", err)
		case <-time.After(100 * time.Millisecond):
		}
	}
	if metricSum(t, m, "cdcaudit_retention_last_cut_timestamp_seconds") == 0 || metricSum(t, m, "cdcaudit_retention_cuts_total") == 0 {
		t.Fatal("no cut in the metrics")
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatalf("pipeline: %v", err)
	}
	// Everything expired but the chain head: the last event, or (once a
	// cut is the head) not even that.
	res := verifyStore(t, dir)
	if res.Events > 1 || res.Events+res.Pruned != 4000 || len(res.Cuts) == 0 {
		t.Fatalf("after pruning: %d events, %d pruned, %d cuts", res.Events, res.Pruned, len(res.Cuts))
	}

	// Capture goes on after the cuts (without retention now).
	exec(t, conn, "DELETE FROM item WHERE id <= 10")
	runUntil(t, dsn, dir, "ret", conn, currentLSN(t, conn), nil)
	if res2 := verifyStore(t, dir); res2.Events != res.Events+10 || res2.Pruned != res.Pruned {
		t.Fatalf("after more changes: %d events, %d pruned", res2.Events, res2.Pruned)
	}
}

func verifyStore(t *testing.T, dir string) sink.VerifyResult {
	t.Helper()
	st, err := sink.OpenReadOnly(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	res, err := st.Verify(context.Background(), nil)
	if err != nil {
		t.Fatalf("verify: %v", err)
	}
	return res
}
