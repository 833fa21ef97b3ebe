package e2e

import (
	"context"
	"math/rand/v2"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kfake"
)

// TestTwoSourcesIntoOneAuditTableAndTopic: two ERP databases, two daemons
// (each with its own data dir, slot and source: one the default, its
// database's name, one set with --source), both delivering into one audit
// table (on a cluster of its own) and one Kafka topic (a kfake cluster both
// reach over TCP), while a workload runs on each database; one daemon is
// SIGKILLed once. Then the audit table holds exactly each store's records
// under its source — the ids both stores have (every genesis record is
// 0000000000000000-000000) twice, once per source — `verify --postgres`
// finds both chains intact, and Kafka holds every record of both stores.
func TestTwoSourcesIntoOneAuditTableAndTopic(t *testing.T) {
	s := seed(t)
	rng := rand.New(rand.NewPCG(s, 4))
	_, auditDSN := startAuditDB(t)
	kc, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.AllowAutoTopicCreation(), kfake.DefaultNumPartitions(3))
	if err != nil {
		t.Fatal(err)
	}
	defer kc.Close()

	type erp struct {
		db          testDB
		source, dir string
		d           *daemon
		wl          *workload
		done        chan error
	}
	erps := []*erp{{}, {source: "erp_b"}}
	for _, e := range erps {
		e.db = newDB(t)
		mustExec(t, connect(t, e.db.dsn), workloadDDL)
		e.dir = t.TempDir()
		args := []string{"--dsn", e.db.dsn, "--data-dir", e.dir, "--slot", e.db.slot,
			"--sink-postgres-dsn", auditDSN, "--sink-postgres-batch", "200",
			"--sink-kafka-brokers", strings.Join(kc.ListenAddrs(), ","), "--sink-kafka-topic", "audit"}
		if e.source != "" {
			args = append(args, "--source", e.source)
		} else {
			e.source = e.db.name // the default
		}
		e.d = startDaemon(t, args...)
	}
	for _, e := range erps {
		waitSlotActive(t, e.db.dsn, e.db.slot, 0, e.d)
		waitLog(t, e.d.log, "snapshot complete", 1, e.d)
	}
	stop := make(chan struct{})
	for i, e := range erps {
		e.wl, e.done = newWorkload(s+uint64(i)<<32, 4000), make(chan error, 1)
		go func() { e.done <- e.wl.run(e.db.dsn, stop) }()
	}
	time.Sleep(time.Duration(300+rng.IntN(1000)) * time.Millisecond)
	killed := erps[rng.IntN(len(erps))]
	killed.d.kill()
	t.Logf("SIGKILL of the daemon of %s", killed.source)
	killed.d.start()
	close(stop)
	for _, e := range erps {
		if err := <-e.done; err != nil {
			t.Fatalf("workload on %s: %v", e.source, err)
		}
	}
	for _, e := range erps {
		waitCaughtUp(t, e.db.dsn, e.db.slot, currentLSN(t, e.db.dsn), e.d)
		e.d.stopClean()
	}

	// Each store holds its workload; then, started again, the daemons
	// deliver what is left.
	wants := map[string]map[string][]byte{}
	orders := map[string][]string{}
	total := 0
	for _, e := range erps {
		e.wl.check(t, e.db.dsn, readStore(t, e.dir))
		wants[e.source], orders[e.source] = storeRecords(t, e.dir)
		total += len(orders[e.source])
		t.Logf("%s: %d changes, %d records in its store", e.source, e.wl.total, len(orders[e.source]))
	}
	for _, e := range erps {
		e.d.start()
	}
	aconn := connect(t, auditDSN)
	for _, e := range erps {
		waitTableRows(t, aconn, e.source, len(wants[e.source]), erps[0].d, erps[1].d)
	}
	for {
		got := readKafka(t, kc.ListenAddrs(), "audit")
		if len(got[erps[0].source]) >= len(wants[erps[0].source]) && len(got[erps[1].source]) >= len(wants[erps[1].source]) {
			break
		}
		for _, e := range erps {
			if err := e.d.exited(); err != nil {
				t.Fatal(err)
			}
		}
		time.Sleep(200 * time.Millisecond)
	}
	for _, e := range erps {
		e.d.stopClean()
	}

	got := readKafka(t, kc.ListenAddrs(), "audit")
	if len(got) != 2 {
		t.Errorf("%d sources in Kafka, want 2", len(got))
	}
	for _, e := range erps {
		checkTableRows(t, aconn, e.source, wants[e.source], orders[e.source])
		dups := checkKafka(t, e.source, wants[e.source], got[e.source])
		t.Logf("%s: every record in the audit table once and in Kafka (%d duplicates)", e.source, dups)
	}
	var rows, shared, genesis int
	if err := aconn.QueryRow(context.Background(), `SELECT count(*), count(*) - count(DISTINCT id),
		count(*) FILTER (WHERE id = '0000000000000000-000000') FROM cdcaudit_events`).Scan(&rows, &shared, &genesis); err != nil {
		t.Fatal(err)
	}
	if rows != total || genesis != 2 || shared < 1 {
		t.Fatalf("audit table: %d rows (the stores have %d records), %d genesis rows, %d ids shared by both sources", rows, total, genesis, shared)
	}
	out, errOut, code := runCLI(t, "verify", "--postgres", auditDSN)
	if code != 0 {
		t.Fatalf("verify --postgres: exit %d\n%s%s", code, out, errOut)
	}
	for _, e := range erps {
		if !strings.Contains(out, "OK: source "+e.source+": ") {
			t.Errorf("verify --postgres does not report %s:\n%s", e.source, out)
		}
	}
	t.Logf("verify --postgres:\n%s", out)
}
