package sink

import (
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/cdcaudit/cdcaudit/audit"
)

// BenchmarkAppend stores one 1000-event batch (~700-byte bodies) per
// operation: one bbolt transaction and its fsync each.
func BenchmarkAppend(b *testing.B) {
	const perBatch = 1000
	s := mustOpen(b, b.TempDir())
	defer s.Close()

	e := &audit.Event{
		LSN: 1, CommitLSN: 1, Ordinal: 1, XID: 741, CommitTime: t0,
		Database: "odoo", Schema: "public", Table: "sale_order", Model: "sale.order", Op: audit.OpUpdate,
		Key:     audit.Row{{Name: "id", Value: []byte("42")}},
		Before:  audit.Row{{Name: "state", Value: []byte(`"draft"`)}, {Name: "note", Value: []byte(`"` + strings.Repeat("x", 90) + `"`)}},
		After:   audit.Row{{Name: "state", Value: []byte(`"sale"`)}, {Name: "note", Value: []byte(`"` + strings.Repeat("y", 90) + `"`)}},
		Changed: []string{"state", "note", "write_date", "write_uid"},
		Actor:   audit.Actor{Login: "alice@example.com", UserVia: "row_user", SessionID: "a1b2c3d4", SessionVia: "only_active"},
	}
	template := e.AppendBody(nil)
	batch := Batch{Events: make([]Encoded, perBatch)}
	bodyBytes := 0
	for i := range batch.Events {
		batch.Events[i].Body = append([]byte(nil), template...)
		bodyBytes += len(template)
	}
	b.SetBytes(int64(bodyBytes))
	b.ReportAllocs()
	b.ResetTimer()
	commit := uint64(0x1000)
	for b.Loop() {
		commit += 0x100
		for i := range batch.Events {
			ev := &batch.Events[i]
			ev.Key = audit.MakeKey(commit, uint32(i+1))
			copy(ev.Body[len(`{"id":"`):], audit.FormatID(commit, uint32(i+1)))
		}
		batch.Checkpoint = commit + 8
		if _, err := s.Append([]Batch{batch}); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.N*perBatch)/b.Elapsed().Seconds(), "events/s")
	b.ReportMetric(float64(len(template)), "body-bytes")
}

// BenchmarkWriterSmallTx submits one 5-event transaction per operation; the
// writer groups them, so the cost per transaction is far below an fsync.
func BenchmarkWriterSmallTx(b *testing.B) {
	s := mustOpen(b, b.TempDir())
	defer s.Close()
	var appends int
	w := NewWriter(s, WriterOptions{Queue: 1024, OnCommit: func(CommitInfo) { appends++ }})
	c := uint64(0)
	for b.Loop() {
		c++
		if err := w.Submit(b.Context(), txBatch(c<<8, 5)); err != nil {
			b.Fatal(err)
		}
	}
	if err := w.Close(); err != nil {
		b.Fatal(err)
	}
	b.ReportMetric(float64(b.N*5)/b.Elapsed().Seconds(), "events/s")
	b.ReportMetric(float64(b.N)/float64(max(appends, 1)), "tx/append")
}

// BenchmarkWriterTrickle submits a 4-event transaction every 300 µs, as
// pgbench's commits arrive from the stream: the writer should gather them
// rather than fsync each. cpu-µs/tx counts every goroutine.
func BenchmarkWriterTrickle(b *testing.B) {
	s := mustOpen(b, b.TempDir())
	defer s.Close()
	var appends int
	w := NewWriter(s, WriterOptions{Queue: 1024, OnCommit: func(CommitInfo) { appends++ }})
	c := uint64(0)
	var ru0, ru1 syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &ru0)
	for b.Loop() {
		c++
		if err := w.Submit(b.Context(), txBatch(c<<8, 4)); err != nil {
			b.Fatal(err)
		}
		time.Sleep(300 * time.Microsecond)
	}
	if err := w.Close(); err != nil {
		b.Fatal(err)
	}
	syscall.Getrusage(syscall.RUSAGE_SELF, &ru1)
	cpu := time.Duration(ru1.Utime.Nano() + ru1.Stime.Nano() - ru0.Utime.Nano() - ru0.Stime.Nano())
	b.ReportMetric(float64(cpu.Microseconds())/float64(b.N), "cpu-µs/tx")
	b.ReportMetric(float64(b.N)/float64(max(appends, 1)), "tx/append")
}
