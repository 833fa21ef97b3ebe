package kafkasink

import (
	"bytes"
	"testing"
	"time"

	"github.com/cdcaudit/cdcaudit/audit"
	"github.com/cdcaudit/cdcaudit/internal/outboxtest"
	"github.com/cdcaudit/cdcaudit/outbox"
	"github.com/cdcaudit/cdcaudit/sink"
)

// appendTx stores transaction i: an insert, an update and (every fourth)
// a delete of record i%11 of one of the tables.
var appendTx = outboxtest.Tx{
	Table:  func(i uint64) string { return tables[i%uint64(len(tables))] },
	Key:    func(i uint64) uint64 { return i % 11 },
	Delete: func(i uint64) bool { return i%4 == 0 },
	At: func(i uint64) time.Time {
		return time.Date(2026, 11, 23, 13, 0, 0, 0, time.UTC).Add(time.Duration(i) * time.Second)
	},
}.Append

// storeRecords reads every record of the store as the outbox hands them.
func storeRecords(t *testing.T, s *sink.Store) []outbox.Record {
	t.Helper()
	var out []outbox.Record
	if err := s.Records(t.Context(), nil, 1<<30, func(k, v []byte) error {
		r := outbox.Record{JSON: bytes.Clone(v), Chain: sink.IsChainRecord(k)}
		copy(r.Key[:], k)
		lsn, ord, _ := audit.SplitKey(k)
		r.ID = audit.FormatID(lsn, ord)
		out = append(out, r)
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	return out
}

// TestOutboxRunner: the real outbox runner over a real store delivers the
// whole chain (the genesis record too) through the sink, while more
// transactions arrive and the partitions' leaders move; Kafka then holds
// every record, as stored, in order per key.
func TestOutboxRunner(t *testing.T) {
	c := newCluster(t)
	s, w := outboxtest.Store(t, 60, appendTx)
	k := newSink(t, Config{Brokers: c.ListenAddrs()})
	r, err := outbox.New(s, k, outbox.Options{Batch: 25, Poll: 10 * time.Millisecond, MinBackoff: 10 * time.Millisecond, MaxBackoff: 100 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	stop := outboxtest.Start(t, w, r.Run)
	defer stop()
	caughtUp := func() bool {
		cur, _, err := outbox.LoadCursor(s, Name)
		if err != nil {
			t.Fatal(err)
		}
		head, _, _ := s.Head()
		lsn, ord, _ := audit.SplitKey(head)
		return cur.After == audit.FormatID(lsn, ord)
	}
	for from := uint64(61); from <= 181; from += 40 {
		outboxtest.Fill(t, w, from, from+39, appendTx)
		c.ShufflePartitionLeaders()
	}
	outboxtest.WaitFor(t, caughtUp)

	want := storeRecords(t, s)
	topics := append(topicsOf(tables), "cdcaudit."+ChainSchema+"."+ChainTable)
	got := readAll(t, c.ListenAddrs(), nil, topics...)
	dups := checkDelivered(t, want, got, perTable)
	chain := 0
	for _, w := range want {
		if w.Chain {
			chain++
		}
	}
	if chain == 0 {
		t.Fatal("the store has no chain record to deliver")
	}
	t.Logf("%d records (%d chain records), %d duplicates", len(want), chain, dups)
}
