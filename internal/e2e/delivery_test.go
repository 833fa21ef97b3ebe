package e2e

import (
	"context"
	"math/rand/v2"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/cdcaudit/cdcaudit/audit"
	"github.com/cdcaudit/cdcaudit/internal/pgtest"
	"github.com/jackc/pgx/v5"
)

// seed returns the seed of a randomized test and logs it; E2E_SEED=<seed>
// replays a run (as far as the timing of the server allows).
// workloadDB is the set-up of a fault-injection test: its seed and the
// random source of its faults (stream: the test's own), a database with
// the workload's tables (the connection that made them closed: a server
// restart would break it), and a data directory.
func workloadDB(t *testing.T, stream uint64) (s uint64, rng *rand.Rand, db testDB, dataDir string) {
	t.Helper()
	s = seed(t)
	db = newDB(t)
	conn := connect(t, db.dsn)
	mustExec(t, conn, workloadDDL)
	conn.Close(context.Background())
	return s, rand.New(rand.NewPCG(s, stream)), db, t.TempDir()
}

func seed(t *testing.T) uint64 {
	s := uint64(time.Now().UnixNano())
	if v := os.Getenv("E2E_SEED"); v != "" {
		var err error
		if s, err = strconv.ParseUint(v, 10, 64); err != nil {
			t.Fatalf("E2E_SEED=%q: %v", v, err)
		}
	}
	t.Logf("random seed %d (E2E_SEED=%d replays it)", s, s)
	return s
}

// TestExactlyOnceAcrossSIGKILL: the daemon is SIGKILLed 4–6 times at random
// moments while a workload of 100k changes runs, and restarted each time.
// It is also stopped once with SIGTERM under load. Afterwards the store
// holds every change exactly once and verifies, and the daemon exits 0 on
// SIGTERM.
func TestExactlyOnceAcrossSIGKILL(t *testing.T) {
	s, rng, db, dataDir := workloadDB(t, 1)

	d := startDaemon(t, "--dsn", db.dsn, "--data-dir", dataDir, "--slot", db.slot)
	// The slot must exist before the first change, or the change is not
	// in its stream at all.
	waitSlotActive(t, db.dsn, db.slot, 0, d)
	// The initial snapshot of the empty tables must be durable before the
	// first SIGKILL: a restarted daemon resumes it and (rightly) copies
	// rows inserted meanwhile, which this test would count as extra.
	waitLog(t, d.log, "snapshot complete", 1, d)

	wl := newWorkload(s, 100_000)
	stop := make(chan struct{})
	wlDone := make(chan error, 1)
	go func() { wlDone <- wl.run(db.dsn, stop) }()

	kills := 4 + rng.IntN(3)
	for i := range kills {
		// Random moments: some land while the daemon starts up or catches
		// up after the previous kill, some in the middle of streaming.
		delay := time.Duration(100+rng.IntN(1500)) * time.Millisecond
		time.Sleep(delay)
		d.kill()
		// What a crash leaves verifies (and a stale pid file does not
		// lock the store).
		out, errOut, code := runCLI(t, "verify", "--data-dir", dataDir)
		if code != 0 {
			t.Fatalf("verify after SIGKILL %d: exit %d\n%s%s", i+1, code, out, errOut)
		}
		t.Logf("SIGKILL %d/%d, %s after the previous start; %s", i+1, kills, delay, strings.SplitN(out, "\n", 2)[0])
		d.start()
	}
	// A clean stop under load, too: exit status 0 after its final checkpoint.
	time.Sleep(time.Duration(100+rng.IntN(1500)) * time.Millisecond)
	d.stopClean()
	t.Logf("SIGTERM under load: exit status 0")
	d.start()
	close(stop)
	if err := <-wlDone; err != nil {
		t.Fatalf("workload: %v", err)
	}
	t.Logf("workload: %d changes; %s", wl.total, wl.summary())

	waitCaughtUp(t, db.dsn, db.slot, currentLSN(t, db.dsn), d)
	d.stopClean()

	evs := readStore(t, dataDir)
	wl.check(t, db.dsn, evs)
	verifyOK(t, dataDir, changeCount(evs))
}

// TestReconnect: while a workload runs, the walsender is terminated twice
// and the server restarted once; the pipeline reconnects and resumes from
// its checkpoint, losing and duplicating nothing.
func TestReconnect(t *testing.T) {
	s, rng, db, dataDir := workloadDB(t, 2)

	p := startPipeline(t, db, dataDir)
	pid := waitSlotActive(t, db.dsn, db.slot, 0, p)

	wl := newWorkload(s, 20_000)
	stop := make(chan struct{})
	wlDone := make(chan error, 1)
	go func() { wlDone <- wl.run(db.dsn, stop) }()

	pause := func() { time.Sleep(time.Duration(200+rng.IntN(800)) * time.Millisecond) }
	for i := 1; i <= 2; i++ {
		pause()
		var ok bool
		err := withConn(db.dsn, func(c *pgx.Conn) error {
			return c.QueryRow(context.Background(), "SELECT pg_terminate_backend($1)", pid).Scan(&ok)
		})
		if err != nil || !ok {
			t.Fatalf("pg_terminate_backend(%d): %v, %v", pid, ok, err)
		}
		t.Logf("terminated walsender %d", pid)
		pid = waitSlotActive(t, db.dsn, db.slot, pid, p)
	}
	pause()
	// No workload transaction is in flight during the restart, so none has
	// an unknown outcome; the workers reconnect afterwards.
	wl.pause(func() {
		if err := pgtest.Shared(t).Restart(); err != nil {
			t.Fatalf("restart: %v", err)
		}
	})
	t.Logf("server restarted")
	waitSlotActive(t, db.dsn, db.slot, 0, p)
	pause()

	close(stop)
	if err := <-wlDone; err != nil {
		t.Fatalf("workload: %v", err)
	}
	t.Logf("workload: %d changes; %s", wl.total, wl.summary())
	waitCaughtUp(t, db.dsn, db.slot, currentLSN(t, db.dsn), p)
	p.stop(t)

	evs := readStore(t, dataDir)
	wl.check(t, db.dsn, evs)
	if n := len(evs); n > 0 {
		if cp := storeCheckpoint(t, dataDir); cp <= evs[n-1].commitLSN {
			t.Errorf("store checkpoint %s is not past the last stored commit %s", audit.FormatLSN(cp), evs[n-1].CommitLSN)
		}
	}
}
