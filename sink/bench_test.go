package sink

import (
	"math/rand/v2"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/cdcaudit/cdcaudit/audit"
	"github.com/cdcaudit/cdcaudit/internal/selfusage"
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
	var stored int64
	for b.Loop() {
		commit += 0x100
		for i := range batch.Events {
			ev := &batch.Events[i]
			ev.Key = audit.MakeKey(commit, uint32(i+1))
			copy(ev.Body[len(`{"id":"`):], audit.FormatID(commit, uint32(i+1)))
		}
		batch.Checkpoint = commit + 8
		res, err := s.Append([]Batch{batch})
		if err != nil {
			b.Fatal(err)
		}
		stored += res.Bytes
	}
	b.ReportMetric(float64(b.N*perBatch)/b.Elapsed().Seconds(), "events/s")
	b.ReportMetric(float64(stored)/float64(b.N*perBatch), "stored-B/event")
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

// orderLine is a body like the bench workload's: an update of a 15-column
// order line with REPLICA IDENTITY FULL, values varying from row to row.
func orderLine(commit uint64, ord uint32, r *rand.Rand) []byte {
	id := r.IntN(5_000_000)
	row := func(qty int, state string) audit.Row {
		v := func(s string) []byte { return []byte(s) }
		return audit.Row{
			{Name: "id", Value: v(strconv.Itoa(id))}, {Name: "order_id", Value: v(strconv.Itoa(id / 7))},
			{Name: "product_id", Value: v(strconv.Itoa(r.IntN(20000)))}, {Name: "name", Value: v(`"[FURN_` + strconv.Itoa(r.IntN(9999)) + `] Office chair, black"`)},
			{Name: "product_uom_qty", Value: v(`"` + strconv.Itoa(qty) + `.00"`)}, {Name: "price_unit", Value: v(`"` + strconv.Itoa(r.IntN(100000)) + `.` + strconv.Itoa(r.IntN(100)) + `"`)},
			{Name: "discount", Value: v(`"0.00"`)}, {Name: "price_subtotal", Value: v(`"` + strconv.Itoa(r.IntN(1000000)) + `.50"`)},
			{Name: "state", Value: v(`"` + state + `"`)}, {Name: "currency_id", Value: v("1")}, {Name: "company_id", Value: v("1")},
			{Name: "create_uid", Value: v(strconv.Itoa(2 + r.IntN(300)))}, {Name: "write_uid", Value: v(strconv.Itoa(2 + r.IntN(300)))},
			{Name: "create_date", Value: v(`"2026-11-23 13:` + strconv.Itoa(10+r.IntN(49)) + `:12.` + strconv.Itoa(r.IntN(999999)) + `"`)},
			{Name: "write_date", Value: v(`"2026-11-23 14:` + strconv.Itoa(10+r.IntN(49)) + `:40.` + strconv.Itoa(r.IntN(999999)) + `"`)},
		}
	}
	uid := int64(2 + r.IntN(300))
	e := &audit.Event{
		LSN: commit - 0x10, CommitLSN: commit, Ordinal: ord, XID: uint32(commit >> 8), CommitTime: t0.Add(time.Duration(commit)),
		Database: "odoo", Schema: "public", Table: "sale_order_line", Model: "sale.order.line", Op: audit.OpUpdate,
		Key: audit.Row{{Name: "id", Value: []byte(strconv.Itoa(id))}}, Before: row(1+r.IntN(9), "draft"), After: row(1+r.IntN(9), "sale"),
		Changed: []string{"product_uom_qty", "state", "write_date"},
		Actor:   audit.Actor{UserID: &uid, UserVia: "row_user", SessionID: strconv.Itoa(r.IntN(1 << 30)), SessionVia: "only_active"},
	}
	return e.AppendBody(nil)
}

// BenchmarkAppendOrderLines stores 1000-event batches of varied order-line
// updates, as the bench workload makes them: what blocks cost and save.
func BenchmarkAppendOrderLines(b *testing.B) {
	const perBatch = 1000
	s := mustOpen(b, b.TempDir())
	defer s.Close()
	r := rand.New(rand.NewPCG(1, 2))
	const distinct = 8 // batches of distinct bodies, cycled
	var bodies [distinct][perBatch][]byte
	for i := range bodies {
		for j := range bodies[i] {
			bodies[i][j] = orderLine(0, uint32(j+1), r)
		}
	}
	batch := Batch{Events: make([]Encoded, perBatch)}
	commit := uint64(0x1000)
	var stored, raw int64
	b.ReportAllocs()
	b.ResetTimer()
	n := 0
	cpu0 := selfusage.CPU()
	for b.Loop() {
		commit += 0x100
		for i := range batch.Events {
			ev := &batch.Events[i]
			ev.Key = audit.MakeKey(commit, uint32(i+1))
			body := bodies[n%distinct][i]
			ev.Body = append(make([]byte, 0, audit.SealedLen(len(body))), body...)
			copy(ev.Body[len(`{"id":"`):], audit.FormatID(commit, uint32(i+1)))
			raw += int64(audit.SealedLen(len(body)))
		}
		n++
		batch.Checkpoint = commit + 8
		res, err := s.Append([]Batch{batch})
		if err != nil {
			b.Fatal(err)
		}
		stored += res.Bytes
	}
	b.ReportMetric(float64(b.N*perBatch)/b.Elapsed().Seconds(), "events/s")
	b.ReportMetric(float64((selfusage.CPU()-cpu0).Nanoseconds())/float64(b.N*perBatch), "cpu-ns/event")
	b.ReportMetric(float64(raw)/float64(b.N*perBatch), "record-B/event")
	b.ReportMetric(float64(stored)/float64(b.N*perBatch), "stored-B/event")
}

// BenchmarkScan reads 100,000 stored order-line events back, checked, as
// an export does: what decoding the blocks costs.
func BenchmarkScan(b *testing.B) {
	s := mustOpen(b, b.TempDir())
	defer s.Close()
	r := rand.New(rand.NewPCG(1, 2))
	for c := uint64(1); c <= 100; c++ {
		batch := Batch{Checkpoint: c<<8 + 8}
		for i := uint32(1); i <= 1000; i++ {
			body := orderLine(0, i, r)
			copy(body[len(`{"id":"`):], audit.FormatID(c<<8, i))
			batch.Events = append(batch.Events, Encoded{Key: audit.MakeKey(c<<8, i), Body: body})
		}
		if _, err := s.Append([]Batch{batch}); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportAllocs()
	b.ResetTimer()
	cpu0 := selfusage.CPU()
	for b.Loop() {
		n := 0
		if err := s.Scan(nil, nil, func(k, v []byte) error { n++; return nil }); err != nil || n != 100_000 {
			b.Fatal(n, err)
		}
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*100_000), "ns/event")
	b.ReportMetric(float64((selfusage.CPU()-cpu0).Nanoseconds())/float64(b.N*100_000), "cpu-ns/event")
}

// BenchmarkWriterTrickle submits 4-event transactions at 4,000 a second, as
// pgbench's commits arrive from the stream (in bursts every 2 ms, so that
// the benchmark's own sleeping costs little): the writer should gather
// them rather than fsync each. cpu-µs/tx counts every goroutine.
func BenchmarkWriterTrickle(b *testing.B) {
	const rate = 4000 // transactions a second
	s := mustOpen(b, b.TempDir())
	defer s.Close()
	var appends int
	w := NewWriter(s, WriterOptions{Queue: 1024, OnCommit: func(CommitInfo) { appends++ }})
	c := uint64(0)
	cpu0 := selfusage.CPU()
	start := time.Now()
	for b.Loop() {
		c++
		if err := w.Submit(b.Context(), txBatch(c<<8, 4)); err != nil {
			b.Fatal(err)
		}
		if due := start.Add(time.Duration(c) * time.Second / rate); time.Until(due) > 2*time.Millisecond {
			time.Sleep(time.Until(due))
		}
	}
	if err := w.Close(); err != nil {
		b.Fatal(err)
	}
	cpu := selfusage.CPU() - cpu0
	b.ReportMetric(float64(cpu.Microseconds())/float64(b.N), "cpu-µs/tx")
	b.ReportMetric(float64(b.N)/float64(max(appends, 1)), "tx/append")
}
