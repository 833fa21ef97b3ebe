package e2e

import (
	"bytes"
	"context"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/cdcaudit/cdcaudit/audit"
	"github.com/cdcaudit/cdcaudit/internal/pgtest"
	"github.com/cdcaudit/cdcaudit/sink"
)

// TestPostgresSinkAcrossSIGKILLAndOutage: the daemon delivers the trail to
// an audit database on a second PostgreSQL cluster of its own while a
// workload runs; the daemon is SIGKILLed at random moments, and the audit
// cluster is killed for a while (and started again) in the middle. In the
// end the audit table holds every record of the store exactly once (count
// and content, byte for byte), and `verify --postgres` finds its chain
// intact.
func TestPostgresSinkAcrossSIGKILLAndOutage(t *testing.T) {
	s := seed(t)
	rng := rand.New(rand.NewPCG(s, 2))
	db := newDB(t)
	conn := connect(t, db.dsn)
	mustExec(t, conn, workloadDDL)
	dataDir := t.TempDir()

	audit2, err := pgtest.Start(pgtest.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer audit2.Stop()
	if err := audit2.CreateDatabase(context.Background(), "audit"); err != nil {
		t.Fatal(err)
	}
	auditDSN := audit2.DSN("audit")

	d := startDaemon(t, "--dsn", db.dsn, "--data-dir", dataDir, "--slot", db.slot,
		"--sink-postgres-dsn", auditDSN, "--sink-postgres-batch", "150")
	waitSlotActive(t, db.dsn, db.slot, 0, d)
	waitLog(t, d.log, "snapshot complete", 1, d)

	wl := newWorkload(s, 20_000)
	stop := make(chan struct{})
	wlDone := make(chan error, 1)
	go func() { wlDone <- wl.run(db.dsn, stop) }()

	sigkillsWithOutage(t, rng, d, 4+rng.IntN(3), "audit database", audit2.Crash, func() {
		if err := audit2.StartAgain(); err != nil {
			t.Fatal(err)
		}
	})
	close(stop)
	if err := <-wlDone; err != nil {
		t.Fatalf("workload: %v", err)
	}
	t.Logf("workload: %d changes; %s", wl.total, wl.summary())
	waitCaughtUp(t, db.dsn, db.slot, currentLSN(t, db.dsn), d)
	d.stopClean()

	// The store's records, every one (chain records too).
	want := map[string][]byte{}
	var order []string
	st, err := sink.OpenReadOnly(dataDir)
	if err != nil {
		t.Fatal(err)
	}
	if err := st.Records(context.Background(), nil, 0, func(k, v []byte) error {
		lsn, ord, _ := audit.SplitKey(k)
		id := audit.FormatID(lsn, ord)
		want[id] = bytes.Clone(v)
		order = append(order, id)
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	st.Close()
	evs := readStore(t, dataDir)
	wl.check(t, db.dsn, evs)

	// Started again, the daemon delivers what is left; the table then has
	// exactly as many rows as the store records.
	d.start()
	aconn := connect(t, auditDSN)
	for {
		var n int
		if err := aconn.QueryRow(context.Background(), `SELECT count(*) FROM cdcaudit_events`).Scan(&n); err != nil {
			t.Fatal(err)
		}
		if n == len(want) {
			break
		}
		if n > len(want) {
			t.Fatalf("%d rows, the store has %d records", n, len(want))
		}
		if err := d.exited(); err != nil {
			t.Fatal(err)
		}
		time.Sleep(100 * time.Millisecond)
	}
	d.stopClean()

	rows, err := aconn.Query(context.Background(), `SELECT id, record FROM cdcaudit_events ORDER BY id`)
	if err != nil {
		t.Fatal(err)
	}
	i := 0
	for rows.Next() {
		var id, rec string
		if err := rows.Scan(&id, &rec); err != nil {
			t.Fatal(err)
		}
		if i >= len(order) || id != order[i] {
			t.Fatalf("row %d is %s, the store's record %d is %s", i, id, i, order[min(i, len(order)-1)])
		}
		if rec != string(want[id]) {
			t.Fatalf("row %s differs from the stored record:\n%s\n%s", id, rec, want[id])
		}
		i++
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	if i != len(order) {
		t.Fatalf("%d rows, %d records", i, len(order))
	}
	out, errOut, code := runCLI(t, "verify", "--postgres", auditDSN)
	if code != 0 {
		t.Fatalf("verify --postgres: exit %d\n%s%s", code, out, errOut)
	}
	t.Logf("%s (%d events in the store)", out, changeCount(evs))
	if !bytes.Contains([]byte(d.log()), []byte("delivery failed")) {
		t.Error("no delivery failed while the audit database was down")
	}
}

// sigkillsWithOutage SIGKILLs the daemon kills times at random moments
// (and starts it again), and takes a destination (what) down after one of
// the kills and back after the next — or, after the last, with the daemon
// running for a second.
func sigkillsWithOutage(t *testing.T, rng *rand.Rand, d *daemon, kills int, what string, down, back func()) {
	t.Helper()
	at := rng.IntN(kills) // the kill after which the destination is down
	for i := range kills {
		time.Sleep(time.Duration(100+rng.IntN(1200)) * time.Millisecond)
		d.kill()
		t.Logf("SIGKILL %d/%d", i+1, kills)
		switch i {
		case at:
			down()
			t.Logf("%s down", what)
		case at + 1:
			back()
			t.Logf("%s back", what)
		}
		d.start()
	}
	if at == kills-1 {
		time.Sleep(time.Second) // down for a while with the daemon running
		back()
		t.Logf("%s back", what)
	}
}
