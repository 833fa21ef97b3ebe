package kafkasink

import (
	"context"
	"sync"
	"testing"

	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"
)

// BenchmarkDeliver measures the sink against an in-process kfake cluster:
// batches of 1000 stored events (the outbox's default batch) over one
// topic of the given partitions, each Deliver waiting for every
// acknowledgement. It reports events/s, events/s per partition, and the
// bytes per event of the value (the stored JSON) and of the whole record
// as produced (key, value, headers), before compression, and as written
// (wire-B/event: the record batches as sent and stored by the broker,
// compressed, batch overhead included).
//
//	go test -run '^$' -bench BenchmarkDeliver -benchtime 20x ./kafkasink
func BenchmarkDeliver(b *testing.B) {
	for _, bc := range []struct {
		name        string
		partitions  int
		compression string
	}{
		{"p1-zstd", 1, CompressionZstd},
		{"p4-zstd", 4, CompressionZstd},
		{"p4-lz4", 4, CompressionLZ4},
		{"p4-none", 4, CompressionNone},
	} {
		b.Run(bc.name, func(b *testing.B) {
			c, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.SeedTopics(int32(bc.partitions), "bench"))
			if err != nil {
				b.Fatal(err)
			}
			defer c.Close()
			bytesW := &batchBytes{}
			s, err := New(Config{Brokers: c.ListenAddrs(), Source: testSource, Topic: "bench", Compression: bc.compression, ExtraOpts: []kgo.Opt{kgo.WithHooks(bytesW)}})
			if err != nil {
				b.Fatal(err)
			}
			defer s.Close()
			recs := trail(b, 1000, tables, 200)
			var value, whole int
			for i := range recs {
				r, err := s.record(&recs[i])
				if err != nil {
					b.Fatal(err)
				}
				value += len(r.Value)
				whole += len(r.Key) + len(r.Value)
				for _, h := range r.Headers {
					whole += len(h.Key) + len(h.Value)
				}
			}
			ctx := context.Background()
			if err := s.Deliver(ctx, recs); err != nil { // connect, producer id
				b.Fatal(err)
			}
			bytesW.reset()
			b.ResetTimer()
			for range b.N {
				if err := s.Deliver(ctx, recs); err != nil {
					b.Fatal(err)
				}
			}
			perSec := float64(b.N*len(recs)) / b.Elapsed().Seconds()
			b.ReportMetric(perSec, "events/s")
			b.ReportMetric(perSec/float64(bc.partitions), "events/s/partition")
			b.ReportMetric(float64(value)/float64(len(recs)), "value-B/event")
			b.ReportMetric(float64(whole)/float64(len(recs)), "record-B/event")
			b.ReportMetric(bytesW.perRecord(), "wire-B/event")
			b.ReportMetric(0, "ns/op")
		})
	}
}

// batchBytes counts the bytes of the record batches written (a franz-go
// hook).
type batchBytes struct {
	mu             sync.Mutex
	records, bytes int
}

func (h *batchBytes) OnProduceBatchWritten(_ kgo.BrokerMetadata, _ string, _ int32, m kgo.ProduceBatchMetrics) {
	h.mu.Lock()
	h.records += m.NumRecords
	h.bytes += m.CompressedBytes
	h.mu.Unlock()
}

func (h *batchBytes) reset() { h.mu.Lock(); h.records, h.bytes = 0, 0; h.mu.Unlock() }

func (h *batchBytes) perRecord() float64 {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.records == 0 {
		return 0
	}
	return float64(h.bytes) / float64(h.records)
}
