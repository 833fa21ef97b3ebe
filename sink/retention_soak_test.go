package sink

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"slices"
	"strconv"
	"testing"
	"time"

	"github.com/cdcaudit/cdcaudit/audit"
)

// soakEvent is an order-line update of about 1 KB, at commit time at, with
// a value that does not compress (a digest), as real rows have some.
func soakEvent(commit uint64, ord uint32, at time.Time) Encoded {
	uid := int64(6)
	n := strconv.Itoa(int(commit>>8)*100 + int(ord))
	digest := sha256.Sum256([]byte(n))
	row := audit.Row{
		{Name: "id", Value: []byte(n)}, {Name: "reference", Value: []byte(`"` + hex.EncodeToString(digest[:]) + `"`)},
		{Name: "order_id", Value: []byte(strconv.Itoa(int(commit >> 10)))},
		{Name: "name", Value: []byte(`"[FURN_8888] Office Lamp, black, 40 W (` + n + `)"`)},
		{Name: "price_unit", Value: []byte(`"123.45"`)}, {Name: "qty", Value: []byte(`"3.000"`)},
		{Name: "state", Value: []byte(`"sale"`)}, {Name: "write_uid", Value: []byte("6")},
		{Name: "write_date", Value: []byte(`"2026-11-23 13:34:33.559831"`)},
	}
	e := &audit.Event{
		LSN: commit - 0x10, CommitLSN: commit, Ordinal: ord, XID: uint32(commit >> 8), CommitTime: at,
		Database: "odoo", Schema: "public", Table: "sale_order_line", Model: "sale.order.line", Op: audit.OpUpdate,
		Key: row[:1], Before: row, After: row, Changed: []string{"state", "write_date"},
		Actor: audit.Actor{UserID: &uid, Login: "alice@example.com", UserVia: "row_user"},
	}
	return Encoded{Key: e.StoreKey(), Body: e.AppendBody(nil)}
}

// soakBatch is txs transactions of per events each, the first at commit
// c, one millisecond of commit time apart, from at.
func soakBatch(c uint64, txs, per int, at time.Time) (Batch, uint64, time.Time) {
	var b Batch
	for i := 0; i < txs; i++ {
		for j := 1; j <= per; j++ {
			b.Events = append(b.Events, soakEvent(c, uint32(j), at))
		}
		b.Checkpoint = c + 0x80
		c += 0x100
		at = at.Add(time.Millisecond)
	}
	return b, c, at
}

// With a short window, the file stops growing: the pages retention frees
// are reused for new events.
func TestRetentionSoak(t *testing.T) {
	if testing.Short() {
		t.Skip("soak")
	}
	s := mustOpen(t, t.TempDir())
	defer s.Close()
	const (
		rounds   = 60
		perRound = 6000 // events: 600 transactions of 10
	)
	// The window holds 10 rounds of events (commit time: 1 ms per transaction).
	window := 10 * perRound / 10 * time.Millisecond
	var now time.Time
	p, err := s.NewPruner(Retention{Default: window, Now: func() time.Time { return now }})
	if err != nil {
		t.Fatal(err)
	}
	c, at := uint64(0x1000), rbase
	sizes := make([]int64, rounds)
	var pruned uint64
	var written int64 // what the appends stored, compressed
	for r := 0; r < rounds; r++ {
		var b Batch
		b, c, at = soakBatch(c, perRound/10, 10, at)
		written += mustAppend(t, s, b).Bytes
		now = at
		st, err := p.Prune(t.Context())
		if err != nil {
			t.Fatal(err)
		}
		pruned += st.Removed
		sizes[r] = s.Size()
	}
	t.Logf("file size per round (MiB): %v", mib(sizes))
	res := mustVerify(t, s)
	if res.Events > 11*perRound || res.Pruned != pruned || pruned < (rounds-11)*perRound || res.Events+res.Pruned != rounds*perRound {
		t.Fatalf("events %d pruned %d/%d", res.Events, res.Pruned, pruned)
	}
	// The test proves reuse only if the records written would not have fit
	// in the final file without it.
	if written < 2*sizes[rounds-1] {
		t.Fatalf("only %d bytes of records written for a file of %d: write more rounds or bigger events", written, sizes[rounds-1])
	}
	// Levelled off: the last 20 rounds (a third of the events) grew the
	// file by less than a tenth of the size it reached after 40.
	if grew := sizes[rounds-1] - sizes[39]; grew > sizes[39]/10 {
		t.Fatalf("the file grew by %d bytes in the last 20 rounds (from %d): freed pages are not reused", grew, sizes[39])
	}
}

func mib(s []int64) []string {
	out := make([]string, len(s))
	for i, v := range s {
		out[i] = strconv.FormatFloat(float64(v)/(1<<20), 'f', 1, 64)
	}
	return out
}

// BenchmarkIngestWhilePruning: appending transactions (batches of 2,000
// events, as the writer's group commit makes them) into a store, in
// alternating phases without and with retention pruning a backlog of
// expired events from it (alternating, so that a neighbour's load
// affects both alike). Reports the median rate of each and their ratio.
func BenchmarkIngestWhilePruning(b *testing.B) {
	const phases, perPhase = 6, 30 // batches of 2,000 events per phase
	for b.Loop() {
		s := mustOpen(b, b.TempDir())
		// The backlog: 500,000 events a year old.
		c, at := uint64(0x1000), rbase
		for i := 0; i < 250; i++ {
			var bt Batch
			bt, c, at = soakBatch(c, 200, 10, at)
			mustAppend(b, s, bt)
		}
		now := rbase.Add(365 * 24 * time.Hour)
		at = now
		p, err := s.NewPruner(Retention{Default: 30 * 24 * time.Hour, Now: func() time.Time { return now }})
		if err != nil {
			b.Fatal(err)
		}
		ingest := func() float64 {
			start := time.Now()
			for i := 0; i < perPhase; i++ {
				var bt Batch
				bt, c, at = soakBatch(c, 200, 10, at)
				mustAppend(b, s, bt)
			}
			return float64(perPhase*2000) / time.Since(start).Seconds()
		}
		var alone, pruning []float64
		var removed uint64
		for ph := 0; ph < phases; ph++ {
			alone = append(alone, ingest())
			ctx, cancel := context.WithCancel(context.Background())
			done := make(chan PruneStats)
			go func() {
				st, err := p.Prune(ctx)
				if err != nil && ctx.Err() == nil {
					b.Error(err)
				}
				done <- st
			}()
			pruning = append(pruning, ingest())
			cancel()
			removed += (<-done).Removed
		}
		res, err := s.Verify(context.Background(), nil)
		if err != nil || res.Pruned != removed {
			b.Fatalf("verify: %v (pruned %d, removed %d)", err, res.Pruned, removed)
		}
		s.Close()
		a, p2 := median(alone), median(pruning)
		b.ReportMetric(a, "events/s_alone")
		b.ReportMetric(p2, "events/s_pruning")
		b.ReportMetric(p2/a, "ratio")
		b.ReportMetric(float64(removed), "pruned")
	}
}

func median(v []float64) float64 {
	s := slices.Clone(v)
	slices.Sort(s)
	return s[len(s)/2]
}
