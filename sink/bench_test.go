package sink

import (
	"strconv"
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
	w := NewWriter(s, 1024)
	var appends int
	w.OnCommit = func(CommitInfo) { appends++ }
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

// BenchmarkAppendIndex stores 1000-event batches of varied events (every
// key its own record, 300 users, 3000 sessions, 50 tables) without
// indexes, with them (terms given, as the pipeline does), and with terms
// parsed from the records (as an index build does). cpu-µs/event is the
// process's user+system CPU per event (the fsync's wait excluded).
func BenchmarkAppendIndex(b *testing.B) {
	for _, mode := range []string{"none", "terms-given", "terms-parsed"} {
		b.Run(mode, func(b *testing.B) {
			const perBatch = 1000
			s := mustOpen(b, b.TempDir())
			defer s.Close()
			if mode == "none" {
				s.index = noIndex{}
			}
			batch := Batch{Events: make([]Encoded, perBatch)}
			commit := uint64(0x1000)
			n := 0
			fill := func() {
				commit += 0x100
				for i := range batch.Events {
					n++
					uid := int64(n % 300)
					e := &audit.Event{
						LSN: commit - 1, CommitLSN: commit, Ordinal: uint32(i + 1), XID: 741, CommitTime: t0.Add(time.Duration(n) * time.Millisecond),
						Database: "odoo", Schema: "public", Table: "sale_order_" + strconv.Itoa(n%50), Op: audit.OpUpdate,
						Key:     audit.Row{{Name: "id", Value: strconv.AppendInt(nil, int64(n), 10)}},
						Before:  audit.Row{{Name: "state", Value: []byte(`"draft"`)}, {Name: "note", Value: []byte(`"` + strings.Repeat("x", 90) + `"`)}},
						After:   audit.Row{{Name: "state", Value: []byte(`"sale"`)}, {Name: "note", Value: []byte(`"` + strings.Repeat("y", 90) + `"`)}},
						Changed: []string{"state", "note", "write_date", "write_uid"},
						Actor: audit.Actor{UserID: &uid, Login: "user" + strconv.Itoa(int(uid)) + "@example.com", UserVia: "row_user",
							SessionID: "sess" + strconv.Itoa(n%3000), SessionVia: "only_active"},
					}
					ev := &batch.Events[i]
					ev.Key, ev.Body, ev.Terms = e.StoreKey(), e.AppendBody(ev.Body[:0]), nil
					if mode == "terms-given" {
						t := e.Terms()
						ev.Terms = &t
					}
				}
				batch.Checkpoint = commit + 8
			}
			var cpu time.Duration
			for b.Loop() {
				b.StopTimer()
				fill()
				c0 := cpuTime()
				b.StartTimer()
				if _, err := s.Append([]Batch{batch}); err != nil {
					b.Fatal(err)
				}
				cpu += cpuTime() - c0
			}
			b.ReportMetric(float64(cpu.Microseconds())/float64(b.N*perBatch), "cpu-µs/event")
		})
	}
}

func cpuTime() time.Duration {
	var ru syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
