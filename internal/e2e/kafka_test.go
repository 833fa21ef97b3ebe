package e2e

import (
	"bytes"
	"context"
	"math/rand/v2"
	"net"
	"strconv"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/cdcaudit/cdcaudit/audit"
	"github.com/cdcaudit/cdcaudit/internal/kafkatest"
	"github.com/cdcaudit/cdcaudit/sink"
)

// TestKafkaSinkAcrossSIGKILLAndOutage: the daemon delivers the trail to a
// kfake cluster (franz-go's in-process Kafka) while a workload runs; the
// daemon is SIGKILLed at random moments, and the whole cluster is closed
// for a while in the middle and started again on its ports and data
// directory. In the end Kafka holds every record of the store at least
// once, byte for byte, with the headers and key of its record.
func TestKafkaSinkAcrossSIGKILLAndOutage(t *testing.T) {
	s := seed(t)
	rng := rand.New(rand.NewPCG(s, 3))
	db := newDB(t)
	conn := connect(t, db.dsn)
	mustExec(t, conn, workloadDDL)
	dataDir := t.TempDir()

	kdir := t.TempDir()
	kopts := []kfake.Opt{kfake.NumBrokers(3), kfake.AllowAutoTopicCreation(), kfake.DefaultNumPartitions(3), kfake.DataDir(kdir)}
	kc, err := kfake.NewCluster(kopts...)
	if err != nil {
		t.Fatal(err)
	}
	addrs := kc.ListenAddrs()
	var ports []int
	for _, a := range addrs {
		_, p, _ := net.SplitHostPort(a)
		n, err := strconv.Atoi(p)
		if err != nil {
			t.Fatal(err)
		}
		ports = append(ports, n)
	}
	defer func() { kc.Close() }()

	d := startDaemon(t, "--dsn", db.dsn, "--data-dir", dataDir, "--slot", db.slot,
		"--sink-kafka-brokers", addrs[0]+","+addrs[1], "--sink-kafka-topic", "audit")
	waitSlotActive(t, db.dsn, db.slot, 0, d)
	waitLog(t, d.log, "snapshot complete", 1, d)

	wl := newWorkload(s, 20_000)
	stop := make(chan struct{})
	wlDone := make(chan error, 1)
	go func() { wlDone <- wl.run(db.dsn, stop) }()

	sigkillsWithOutage(t, rng, d, 3+rng.IntN(3), "Kafka", kc.Close, func() {
		if kc, err = kfake.NewCluster(append(kopts, kfake.Ports(ports...))...); err != nil {
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

	want := map[string][]byte{}
	st, err := sink.OpenReadOnly(dataDir)
	if err != nil {
		t.Fatal(err)
	}
	if err := st.Records(context.Background(), nil, 0, func(k, v []byte) error {
		lsn, ord, _ := audit.SplitKey(k)
		want[audit.FormatID(lsn, ord)] = bytes.Clone(v)
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	st.Close()

	// Started again, the daemon delivers what is left: wait until every
	// record is in Kafka.
	d.start()
	var got map[string][]*kgo.Record
	for {
		got = readKafka(t, kc.ListenAddrs(), "audit")
		if len(got) >= len(want) {
			break
		}
		if err := d.exited(); err != nil {
			t.Fatal(err)
		}
		time.Sleep(200 * time.Millisecond)
	}
	d.stopClean()
	dups := 0
	for id, v := range want {
		rs := got[id]
		if len(rs) == 0 {
			t.Fatalf("record %s is not in Kafka", id)
		}
		dups += len(rs) - 1
		for _, r := range rs {
			if !bytes.Equal(r.Value, v) {
				t.Fatalf("record %s in Kafka differs from the store's:\n%s\n%s", id, r.Value, v)
			}
		}
	}
	if len(got) != len(want) {
		t.Fatalf("%d ids in Kafka, %d records in the store", len(got), len(want))
	}
	t.Logf("%d records in the store, all in Kafka, %d duplicates (at least once)", len(want), dups)
	if !bytes.Contains([]byte(d.log()), []byte("delivery failed")) {
		t.Log("no delivery failed while Kafka was down (the daemon may have been down then too)")
	}
}

// readKafka reads a topic up to its current end offsets, by id header.
func readKafka(t *testing.T, addrs []string, topic string) map[string][]*kgo.Record {
	t.Helper()
	out := map[string][]*kgo.Record{}
	for _, r := range kafkatest.ReadAll(t, addrs, nil, topic) {
		id, ok := kafkatest.Header(r, "id")
		if !ok {
			t.Errorf("record %d/%d without an id header", r.Partition, r.Offset)
		}
		out[id] = append(out[id], r)
	}
	return out
}
