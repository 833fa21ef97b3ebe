package pipeline

import (
	"context"
	"io"
	"log/slog"
	"os"
	"strconv"
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
	runUntil(t, dsn, dir, "ret", conn, currentLSN(t, conn))
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
	// The records: 4,000 changes, and the rows of a snapshot of the table
	// if it was copied only now (the first run may have stopped before).
	total := func() float64 { return 4000 + metricSum(t, m, "cdcaudit_snapshot_rows_total") }
	for metricSum(t, m, "cdcaudit_retention_pruned_events_total") < total()-1 {
		select {
		case err := <-done:
			t.Fatalf("pipeline stopped: %v", err)
		case <-time.After(100 * time.Millisecond):
		}
	}
	if metricSum(t, m, "cdcaudit_retention_last_cut_timestamp_seconds") == 0 || metricSum(t, m, "cdcaudit_retention_cuts_total") == 0 {
		t.Fatal("no cut in the metrics")
	}
	records := uint64(total())
	cancel()
	if err := <-done; err != nil {
		t.Fatalf("pipeline: %v", err)
	}
	// Everything expired but the chain head: the last event, or (once a
	// cut is the head) not even that.
	res := verifyStore(t, dir)
	if res.Events > 1 || res.Events+res.Snapshots+res.Pruned != records || len(res.Cuts) == 0 {
		t.Fatalf("after pruning: %d events, %d snapshot records, %d pruned of %d, %d cuts", res.Events, res.Snapshots, res.Pruned, records, len(res.Cuts))
	}

	// Capture goes on after the cuts (without retention now).
	exec(t, conn, "DELETE FROM item WHERE id <= 10")
	runUntil(t, dsn, dir, "ret", conn, currentLSN(t, conn))
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

// The daemon with a short window (3s) under a steady workload: the store
// file levels off, bbolt reusing the pages retention frees. A soak: run it
// with CDCAUDIT_SOAK=1 (several minutes).
func TestRetentionSoakDaemon(t *testing.T) {
	if os.Getenv("CDCAUDIT_SOAK") == "" {
		t.Skip("set CDCAUDIT_SOAK=1 to run the soak")
	}
	dsn, conn := newDB(t)
	exec(t, conn, `CREATE TABLE line (id bigserial PRIMARY KEY, order_id int, name text, qty numeric(16,3), price numeric(16,2),
		state varchar(16), write_uid int, write_date timestamp); ALTER TABLE line REPLICA IDENTITY FULL`)
	dir := t.TempDir()
	runUntil(t, dsn, dir, "soak", conn, currentLSN(t, conn))
	m := metrics.New()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	window := 3 * time.Second
	if d, err := time.ParseDuration(os.Getenv("CDCAUDIT_SOAK_WINDOW")); err == nil {
		window = d
	}
	go func() {
		done <- Run(ctx, Config{
			Replication: replication.Config{DSN: dsn, Slot: "soak", Publication: "soak"},
			DataDir:     dir, Metrics: m, Logger: slog.New(slog.NewTextHandler(io.Discard, nil)),
			Retention: sink.Retention{Default: window},
		})
	}()
	rounds := 120
	if n, err := strconv.Atoi(os.Getenv("CDCAUDIT_SOAK_ROUNDS")); err == nil {
		rounds = n
	}
	// A table of a fixed 10,000 rows, updated whole every round with values
	// that do not compress: the records' images stay as many, and what the
	// file holds beyond them is the events of the window.
	const perRound = 10000
	exec(t, conn, `INSERT INTO line (order_id, name, qty, price, state, write_uid, write_date)
		SELECT g/10, 'Product ' || g, g%50 + 0.5, 12.34 + g%100, 'draft', 2, now() FROM generate_series(1, $1::int) g`, perRound)
	// The rounds wait for the pruner when it falls more than a few windows
	// behind: what the file holds is then what has not expired, and its
	// growth says whether bbolt reuses the freed pages, not how fast the
	// pruner is. (Without the wait, on a busy 2-core host, the pruner, which
	// rests four times as long as each batch took, had pruned 350,000 of
	// 1.2M changes at the end, and the file had grown to 196 MiB, 155 of
	// them in use: no page left to reuse, rather than pages not reused.)
	const behind = 8 * perRound
	var waited time.Duration
	sizes := make([]int64, rounds)
	for r := range sizes {
		exec(t, conn, "UPDATE line SET name = md5(random()::text), qty = qty + 1, write_date = now()")
		waitConfirmed(t, conn, "soak", currentLSN(t, conn), done)
		time.Sleep(500 * time.Millisecond)
		produced := float64(perRound*(r+2)) + metricSum(t, m, "cdcaudit_snapshot_rows_total")
		start := time.Now()
		for metricSum(t, m, "cdcaudit_retention_pruned_events_total") < produced-behind {
			if time.Since(start) > 5*time.Minute {
				t.Fatalf("round %d: the pruner is more than %d events behind after 5 minutes", r, behind)
			}
			select {
			case err := <-done:
				t.Fatalf("pipeline stopped: %v", err)
			case <-time.After(100 * time.Millisecond):
			}
		}
		waited += time.Since(start)
		sizes[r] = int64(metricSum(t, m, "cdcaudit_store_size_bytes"))
	}
	t.Logf("waited %v in all for the pruner to catch up", waited.Round(time.Second))
	written := int64(metricSum(t, m, "cdcaudit_store_written_bytes_total"))
	pruned := metricSum(t, m, "cdcaudit_retention_pruned_events_total")
	// Every change is stored, and the rows of a snapshot of the table if
	// the first run stopped before copying it: up to as many as the metric
	// counts, since a chunk whose rows the first rounds updated before its
	// marker came is dropped, row by row (imageCache.apply: the stream holds
	// newer states; seen once, a chunk of 2,000).
	changes := uint64(perRound + rounds*perRound)
	snapshotRows := uint64(metricSum(t, m, "cdcaudit_snapshot_rows_total"))
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	t.Logf("store size per round (MiB), %d changes, %.0f pruned: %v", perRound+rounds*perRound, pruned, mibs(sizes))
	res := verifyStore(t, dir)
	recut, kept := 0, uint64(0)
	for _, c := range res.Cuts {
		if c.Replaces != "" {
			recut++
		}
		kept += c.Kept
	}
	t.Logf("%d cuts in force (%d cut again), %d records kept in their ranges", len(res.Cuts), recut, kept)
	if n := res.Events + res.Snapshots + res.Pruned; res.Pruned == 0 || n < changes || n > changes+snapshotRows {
		t.Fatalf("verify: %d events, %d snapshot records, %d pruned of %d changes and %d snapshot rows", res.Events, res.Snapshots, res.Pruned, changes, snapshotRows)
	}
	if written < 2*sizes[rounds-1] {
		t.Fatalf("only %d bytes of records written for a file of %d: the soak proves nothing (more rounds)", written, sizes[rounds-1])
	}
	if grew := sizes[rounds-1] - sizes[rounds*2/3]; grew > sizes[rounds*2/3]/10 {
		t.Fatalf("the file grew by %d bytes in the last third (from %d): freed pages are not reused", grew, sizes[rounds*2/3])
	}
}

func mibs(s []int64) []string {
	out := make([]string, len(s))
	for i, v := range s {
		out[i] = strconv.FormatFloat(float64(v)/(1<<20), 'f', 1, 64)
	}
	return out
}
