package history_test

import (
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/cdcaudit/cdcaudit/audit"
	"github.com/cdcaudit/cdcaudit/history"
	"github.com/cdcaudit/cdcaudit/internal/selfusage"
	"github.com/cdcaudit/cdcaudit/sink"
)

// BenchmarkAt answers --at for one record of sale_order (50 events) in a
// store of 200,000 update events (~600-byte records) over 4 tables, a
// quarter of them sale_order's, 1000 records each. Before the record index
// this read the whole store (about 0.4 s of CPU an answer); now the
// record's events, its table's truncates and the count of its table's
// events.
func BenchmarkAt(b *testing.B) {
	const events, perTx = 200_000, 1000
	s, err := sink.Open(b.TempDir())
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	tables := []string{"sale_order", "res_partner", "account_move", "stock_move"}
	note := `"` + strings.Repeat("x", 200) + `"`
	lsn := uint64(0x1000)
	for n := 0; n < events; n += perTx {
		lsn += 0x10000
		batch := sink.Batch{Checkpoint: lsn + 8}
		for i := 0; i < perTx; i++ {
			id := strconv.Itoa((n + i) / 4 % 1000)
			e := &audit.Event{LSN: lsn - 1, CommitLSN: lsn, Ordinal: uint32(i + 1), XID: uint32(n), CommitTime: t0.Add(time.Duration(n+i) * time.Millisecond),
				Database: "odoo", Schema: "public", Table: tables[i%4], Op: audit.OpUpdate,
				Key:   audit.Row{{Name: "id", Value: []byte(id)}},
				After: audit.Row{{Name: "id", Value: []byte(id)}, {Name: "n", Value: []byte(strconv.Itoa(n + i))}, {Name: "note", Value: []byte(note)}},
				Actor: audit.Actor{Login: "alice@example.com", UserVia: "row_user", SessionVia: "only_active"}}
			batch.Events = append(batch.Events, sink.Encoded{Key: e.StoreKey(), Body: e.AppendBody(nil)})
		}
		if _, err := s.Append([]sink.Batch{batch}); err != nil {
			b.Fatal(err)
		}
	}
	r, _ := history.ParseRef("sale_order:42")
	end := t0.Add(events * time.Millisecond)
	cpu0 := selfusage.CPU()
	b.ResetTimer()
	for b.Loop() {
		im, err := history.At(s, r, end)
		if err != nil || im.State != history.Exists {
			b.Fatal(im, err)
		}
	}
	// CPU time is what a busy machine does not inflate as much as the clock.
	b.ReportMetric(float64((selfusage.CPU()-cpu0)/time.Millisecond)/float64(b.N), "cpu-ms/op")
}
