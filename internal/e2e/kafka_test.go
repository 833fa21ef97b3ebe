package e2e

import (
	"bytes"
	"net"
	"strconv"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/cdcaudit/cdcaudit/internal/kafkatest"
)

// TestKafkaSinkAcrossSIGKILLAndOutage: the daemon delivers the trail to a
// kfake cluster (franz-go's in-process Kafka) while a workload runs; the
// daemon is SIGKILLed at random moments, and the whole cluster is closed
// for a while in the middle and started again on its ports and data
// directory. In the end Kafka holds every record of the store at least
// once, byte for byte, with the headers and key of its record.
func TestKafkaSinkAcrossSIGKILLAndOutage(t *testing.T) {
	s, rng, db, dataDir := workloadDB(t, 3)

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

	d, _ := sinkUnderFaults(t, s, rng, db, dataDir, []string{"--sink-kafka-brokers", addrs[0] + "," + addrs[1], "--sink-kafka-topic", "audit"},
		3, "Kafka", kc.Close, func() {
			if kc, err = kfake.NewCluster(append(kopts, kfake.Ports(ports...))...); err != nil {
				t.Fatal(err)
			}
		}, nil)

	want, _ := storeRecords(t, dataDir)

	// Started again, the daemon delivers what is left: wait until every
	// record is in Kafka.
	d.start()
	var got map[string][]*kgo.Record
	for {
		got = readKafka(t, kc.ListenAddrs(), "audit")[db.name] // the default source
		if len(got) >= len(want) {
			break
		}
		if err := d.exited(); err != nil {
			t.Fatal(err)
		}
		time.Sleep(200 * time.Millisecond)
	}
	d.stopClean()
	dups := checkKafka(t, db.name, want, got)
	t.Logf("%d records in the store, all in Kafka, %d duplicates (at least once)", len(want), dups)
	if !bytes.Contains([]byte(d.log()), []byte("delivery failed")) {
		t.Log("no delivery failed while Kafka was down (the daemon may have been down then too)")
	}
}

// readKafka reads a topic up to its current end offsets, by source and id
// header (the deduplication key).
func readKafka(t *testing.T, addrs []string, topic string) map[string]map[string][]*kgo.Record {
	t.Helper()
	out := map[string]map[string][]*kgo.Record{}
	for _, r := range kafkatest.ReadAll(t, addrs, nil, topic) {
		id, ok := kafkatest.Header(r, "id")
		source, sok := kafkatest.Header(r, "source")
		if !ok || !sok {
			t.Errorf("record %d/%d without an id or source header", r.Partition, r.Offset)
		}
		if out[source] == nil {
			out[source] = map[string][]*kgo.Record{}
		}
		out[source][id] = append(out[source][id], r)
	}
	return out
}

// checkKafka requires every record of a store of source (want, by id) in
// Kafka (got, by id) at least once, byte for byte and keyed by its source,
// and nothing else; it returns the number of duplicates.
func checkKafka(t *testing.T, source string, want map[string][]byte, got map[string][]*kgo.Record) (dups int) {
	t.Helper()
	for id, v := range want {
		rs := got[id]
		if len(rs) == 0 {
			t.Fatalf("record %s of source %s is not in Kafka", id, source)
		}
		dups += len(rs) - 1
		for _, r := range rs {
			if !bytes.Equal(r.Value, v) {
				t.Fatalf("record %s of source %s in Kafka differs from the store's:\n%s\n%s", id, source, r.Value, v)
			}
			if !bytes.HasPrefix(r.Key, []byte(source+"/")) {
				t.Fatalf("record %s of source %s keyed %q", id, source, r.Key)
			}
		}
	}
	if len(got) != len(want) {
		t.Fatalf("%d ids of source %s in Kafka, %d records in its store", len(got), source, len(want))
	}
	return dups
}
