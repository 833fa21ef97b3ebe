package e2e

import (
	"bytes"
	"context"
	"math/rand/v2"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

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
	s, rng, db, dataDir := workloadDB(t, 2)

	audit2, auditDSN := startAuditDB(t)

	// While the audit database is down the daemon runs until it has
	// failed a delivery, so the outage is one it went through.
	failed := func(d *daemon) { waitLog(t, d.log, "delivery failed", strings.Count(d.log(), "delivery failed")+1, d) }
	d, wl := sinkUnderFaults(t, s, rng, db, dataDir, []string{"--sink-postgres-dsn", auditDSN, "--sink-postgres-batch", "150"},
		4, "audit database", audit2.Crash, func() {
			if err := audit2.StartAgain(); err != nil {
				t.Fatal(err)
			}
		}, failed)

	want, order := storeRecords(t, dataDir)
	evs := readStore(t, dataDir)
	wl.check(t, db.dsn, evs)

	// Started again, the daemon delivers what is left; the table then has
	// exactly as many rows as the store records.
	d.start()
	aconn := connect(t, auditDSN)
	waitTableRows(t, aconn, db.name, len(want), d)
	d.stopClean()
	checkTableRows(t, aconn, db.name, want, order)
	out, errOut, code := runCLI(t, "verify", "--postgres", auditDSN)
	if code != 0 {
		t.Fatalf("verify --postgres: exit %d\n%s%s", code, out, errOut)
	}
	t.Logf("%s (%d events in the store)", out, changeCount(evs))
	if !bytes.Contains([]byte(d.log()), []byte("delivery failed")) {
		t.Error("no delivery failed while the audit database was down")
	}
}

// startAuditDB starts a PostgreSQL cluster of its own for an audit
// database (a test may crash it without touching the ERP's), stopped at the
// end of the test, and returns it and the DSN of its database "audit".
func startAuditDB(t *testing.T) (*pgtest.Cluster, string) {
	t.Helper()
	c, err := pgtest.Start(pgtest.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Stop)
	if err := c.CreateDatabase(context.Background(), "audit"); err != nil {
		t.Fatal(err)
	}
	return c, c.DSN("audit")
}

// storeRecords reads every record of the store in dataDir (chain records
// too): by id, and the ids in order.
func storeRecords(t *testing.T, dataDir string) (map[string][]byte, []string) {
	t.Helper()
	want := map[string][]byte{}
	var order []string
	st, err := sink.OpenReadOnly(dataDir)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	if err := st.Records(context.Background(), nil, 0, func(k, v []byte) error {
		lsn, ord, _ := audit.SplitKey(k)
		id := audit.FormatID(lsn, ord)
		want[id] = bytes.Clone(v)
		order = append(order, id)
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	return want, order
}

// waitTableRows waits until the audit table (cdcaudit_events) holds n rows
// of source while the daemons run; more is a failure.
func waitTableRows(t *testing.T, aconn *pgx.Conn, source string, n int, ds ...*daemon) {
	t.Helper()
	for {
		var got int
		if err := aconn.QueryRow(context.Background(), `SELECT count(*) FROM cdcaudit_events WHERE source = $1`, source).Scan(&got); err != nil {
			t.Fatal(err)
		}
		if got == n {
			return
		}
		if got > n {
			t.Fatalf("%d rows of source %s, its store has %d records", got, source, n)
		}
		for _, d := range ds {
			if err := d.exited(); err != nil {
				t.Fatal(err)
			}
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// checkTableRows requires the audit table's rows of source to be exactly
// the store's records: in id order, byte for byte.
func checkTableRows(t *testing.T, aconn *pgx.Conn, source string, want map[string][]byte, order []string) {
	t.Helper()
	rows, err := aconn.Query(context.Background(), `SELECT id, record FROM cdcaudit_events WHERE source = $1 ORDER BY id`, source)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	i := 0
	for rows.Next() {
		var id, rec string
		if err := rows.Scan(&id, &rec); err != nil {
			t.Fatal(err)
		}
		if i >= len(order) || id != order[i] {
			t.Fatalf("source %s: row %d is %s, the store's record %d is %s", source, i, id, i, order[min(i, len(order)-1)])
		}
		if rec != string(want[id]) {
			t.Fatalf("source %s: row %s differs from the stored record:\n%s\n%s", source, id, rec, want[id])
		}
		i++
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	if i != len(order) {
		t.Fatalf("source %s: %d rows, %d records", source, i, len(order))
	}
}

// sigkillsWithOutage SIGKILLs the daemon kills times at random moments
// (and starts it again), and takes a destination (what) down after one of
// the kills and back after the next — or, after the last, with the daemon
// running for a second.
// sinkUnderFaults starts the daemon with a sink (sinkArgs) while a
// workload runs, SIGKILLs it kills to kills+2 times with the destination
// down after one of them (sigkillsWithOutage), and returns it stopped
// cleanly once the store holds everything, and the workload.
func sinkUnderFaults(t *testing.T, s uint64, rng *rand.Rand, db testDB, dataDir string, sinkArgs []string, kills int, what string, down, back func(), whileDown func(*daemon)) (*daemon, *workload) {
	t.Helper()
	d := startDaemon(t, append([]string{"--dsn", db.dsn, "--data-dir", dataDir, "--slot", db.slot}, sinkArgs...)...)
	waitSlotActive(t, db.dsn, db.slot, 0, d)
	waitLog(t, d.log, "snapshot complete", 1, d)

	wl := newWorkload(s, 20_000)
	stop := make(chan struct{})
	wlDone := make(chan error, 1)
	go func() { wlDone <- wl.run(db.dsn, stop) }()
	sigkillsWithOutage(t, rng, d, kills+rng.IntN(3), what, down, back, whileDown)
	close(stop)
	if err := <-wlDone; err != nil {
		t.Fatalf("workload: %v", err)
	}
	t.Logf("workload: %d changes; %s", wl.total, wl.summary())
	waitCaughtUp(t, db.dsn, db.slot, currentLSN(t, db.dsn), d)
	d.stopClean()
	return d, wl
}

func sigkillsWithOutage(t *testing.T, rng *rand.Rand, d *daemon, kills int, what string, down, back func(), whileDown func(*daemon)) {
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
		if i == at && whileDown != nil {
			whileDown(d)
		}
	}
	if at == kills-1 {
		time.Sleep(time.Second) // down for a while with the daemon running
		back()
		t.Logf("%s back", what)
	}
}
